//! Run-queue latency: the time from becoming runnable (wakeup, new task, or preemption) to
//! running, as a log2 histogram per process plus totals per thread.

use crate::{hist::HIST_SLOTS, pod, COMM_LEN};

/// Processes with a histogram (key: tgid).
pub const RUNQ_HIST_ENTRIES: u32 = 4096;
/// Threads with totals (key: tid).
pub const RUNQ_THREAD_ENTRIES: u32 = 16384;

/// Log2 histogram of run-queue waits in microseconds, for one process.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RunqHist {
    pub slots: [u64; HIST_SLOTS],
    pub count: u64,
    pub total_ns: u64,
}

/// Run-queue totals for one thread.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RunqThread {
    pub tgid: u32,
    pub _pad: u32,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub comm: [u8; COMM_LEN],
}

pod!(RunqHist, RunqThread);
