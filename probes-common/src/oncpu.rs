//! On-CPU sampling: a perf_event program on the software CPU clock counts samples per
//! [`StackKey`](crate::stack::StackKey).

/// Entries in the on-CPU counts map (key: `StackKey`, value: `u64` samples).
pub const ONCPU_ENTRIES: u32 = 16384;

/// Default sampling frequency in Hz.
pub const DEFAULT_FREQ_HZ: u64 = 99;

/// Highest accepted sampling frequency in Hz.
pub const MAX_FREQ_HZ: u64 = 10_000;
