//! Percentiles and buckets of the kernel's log2 histograms.

use probes_common::hist::{slot_high, slot_low};
use serde::Serialize;

/// One non-empty bucket, `[low, high)` in the histogram's unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    pub low: u64,
    pub high: u64,
    pub count: u64,
}

/// The non-empty buckets of a log2 histogram.
pub fn buckets(slots: &[u64]) -> Vec<Bucket> {
    slots
        .iter()
        .enumerate()
        .filter(|(_, &count)| count > 0)
        .map(|(slot, &count)| Bucket {
            low: slot_low(slot),
            high: slot_high(slot),
            count,
        })
        .collect()
}

/// The `q` quantile (0..=1) of a log2 histogram, interpolated linearly inside its bucket.
/// Zero for an empty histogram.
pub fn percentile(slots: &[u64], q: f64) -> f64 {
    let total: u64 = slots.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (slot, &count) in slots.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (below + count) as f64 >= rank {
            let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            let (low, high) = (slot_low(slot) as f64, slot_high(slot) as f64);
            return low + within * (high - low);
        }
        below += count;
    }
    let last = slots.iter().rposition(|&c| c > 0).unwrap_or(0);
    slot_high(last) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_inside_a_bucket() {
        let mut slots = [0u64; 32];
        slots[10] = 100; // [1024, 2048)
        assert_eq!(percentile(&slots, 0.5), 1536.0);
        assert_eq!(percentile(&slots, 1.0), 2048.0);
    }

    #[test]
    fn percentile_walks_buckets() {
        let mut slots = [0u64; 32];
        slots[0] = 90; // [0, 2)
        slots[20] = 10;
        assert!(percentile(&slots, 0.5) < 2.0);
        assert!(percentile(&slots, 0.99) >= (1 << 20) as f64);
        assert_eq!(percentile(&[0; 32], 0.5), 0.0);
    }

    #[test]
    fn buckets_skip_empty_slots() {
        let mut slots = [0u64; 32];
        slots[3] = 7;
        assert_eq!(
            buckets(&slots),
            vec![Bucket {
                low: 8,
                high: 16,
                count: 7
            }]
        );
    }
}
