//! System calls: raw_syscalls sys_enter/sys_exit, aggregated per process and syscall number.

use crate::{hist::HIST_SLOTS, pod};

/// (process, syscall) pairs with statistics.
pub const SYSCALL_ENTRIES: u32 = 16384;

/// Key of the syscall statistics map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyscallKey {
    pub tgid: u32,
    pub nr: u32,
}

/// Statistics for one syscall number in one process; the latency histogram is in microseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallStats {
    pub count: u64,
    pub errors: u64,
    pub total_ns: u64,
    pub slots: [u64; HIST_SLOTS],
}

pod!(SyscallKey, SyscallStats);
