//! Log2 histograms, as kept by the kernel side.

/// Number of slots in a log2 histogram: slot `k` holds values in `[2^k, 2^(k+1))`, slot 0
/// also holds zero.
pub const HIST_SLOTS: usize = 32;

/// The slot of `value` in a log2 histogram.
#[inline(always)]
pub fn log2_slot(value: u64) -> usize {
    if value == 0 {
        return 0;
    }
    let slot = 63 - value.leading_zeros() as usize;
    if slot >= HIST_SLOTS {
        HIST_SLOTS - 1
    } else {
        slot
    }
}

/// Lower bound (inclusive) of a slot's range.
pub fn slot_low(slot: usize) -> u64 {
    if slot == 0 {
        0
    } else {
        1u64 << slot
    }
}

/// Upper bound (exclusive) of a slot's range.
pub fn slot_high(slot: usize) -> u64 {
    1u64 << (slot + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cover_powers_of_two() {
        assert_eq!(log2_slot(0), 0);
        assert_eq!(log2_slot(1), 0);
        assert_eq!(log2_slot(2), 1);
        assert_eq!(log2_slot(3), 1);
        assert_eq!(log2_slot(1024), 10);
        assert_eq!(log2_slot(2047), 10);
        assert_eq!(log2_slot(u64::MAX), HIST_SLOTS - 1);
        for v in [1u64, 5, 100, 1 << 20] {
            let s = log2_slot(v);
            assert!(slot_low(s) <= v && v < slot_high(s));
        }
    }
}
