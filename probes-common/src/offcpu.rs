//! Off-CPU time: sched_switch records the switch-out of each target thread and charges the
//! time until its next switch-in to the stacks it had when it left.

use crate::pod;

/// Entries in the off-CPU totals map (key: `StackKey`, value: [`OffcpuValue`]).
pub const OFFCPU_ENTRIES: u32 = 16384;

/// Off-CPU time charged to one stack, split by why the thread was off the CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffcpuValue {
    pub blocked_ns: u64,
    pub preempted_ns: u64,
    pub blocked_count: u64,
    pub preempted_count: u64,
}

pod!(OffcpuValue);
