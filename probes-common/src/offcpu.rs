//! Off-CPU time: sched_switch records the switch-out of each target thread and charges the
//! time until its next switch-in to the stacks it had when it left.

use crate::{pod, COMM_LEN};

/// Entries in the off-CPU totals map (key: `StackKey`, value: [`OffcpuValue`]).
pub const OFFCPU_ENTRIES: u32 = 16384;

/// Threads that can be switched out at once (an LRU map).
pub const OFFCPU_START_ENTRIES: u32 = 16384;

/// A thread's switch-out, kept until it runs again.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OffcpuStart {
    pub ts_ns: u64,
    pub tgid: u32,
    pub kstack: i32,
    pub ustack: i32,
    /// 1 when the thread was still runnable (preempted), 0 when it went to sleep.
    pub runnable: u32,
    pub comm: [u8; COMM_LEN],
}

/// Off-CPU time charged to one stack, split by why the thread was off the CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffcpuValue {
    pub blocked_ns: u64,
    pub preempted_ns: u64,
    pub blocked_count: u64,
    pub preempted_count: u64,
}

pod!(OffcpuStart, OffcpuValue);
