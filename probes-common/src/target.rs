//! What the probes record: a set of processes (tgids) and/or cgroup v2 subtrees, and the
//! state the probes keep per target thread.

use crate::{pod, COMM_LEN};

/// Processes named as targets, plus the children they fork (key: tgid, value: the process
/// whose address space it started from: itself when named or after an exec, else the parent).
pub const TARGET_TGID_ENTRIES: u32 = 8192;
/// Threads known to belong to the target (key: tid, value: [`TaskState`]).
pub const TARGET_TID_ENTRIES: u32 = 65536;
/// Target cgroup v2 ids (key: cgroup id, value: 1).
pub const TARGET_CGROUP_ENTRIES: u32 = 64;
/// Words of the id bitmaps: one bit per possible id, tgid or tid (the kernel's
/// PID_MAX_LIMIT, 4,194,304 on 64-bit), 512 KiB.
pub const TARGET_BIT_WORDS: u32 = 65536;

/// Where `id` lies in an id bitmap: the index of its word and its bit in that word.
#[inline(always)]
pub const fn id_bit(id: u32) -> (u32, u64) {
    (id >> 6, 1u64 << (id & 63))
}
/// Cgroups whose place inside or outside the target cgroups has been looked up.
pub const CGROUP_VERDICT_ENTRIES: u32 = 4096;
/// Deepest cgroup v2 level a target cgroup may sit at.
pub const MAX_CGROUP_LEVEL: u32 = 31;

/// Per-thread state of a target thread, the value of the target-threads map. Keeping every
/// probe's in-flight timestamps here means the hot paths only look entries up: nothing is
/// inserted or deleted per event, and nothing is evicted silently.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskState {
    pub tgid: u32,
    /// 1 when the last switch-out was a preemption (the thread was still runnable).
    pub offcpu_runnable: u32,
    /// Entry time of the syscall in progress, 0 when none.
    pub syscall_ts: u64,
    /// Id of the syscall in progress (valid while `syscall_ts` is set).
    pub syscall_nr: u32,
    pub _pad: u32,
    /// Switch-out time, 0 while the thread is on a CPU.
    pub offcpu_ts: u64,
    /// Time the thread became runnable, 0 while it is not waiting to run.
    pub runq_ts: u64,
    /// Stacks at the last switch-out.
    pub offcpu_kstack: u64,
    pub offcpu_ustack: u64,
    /// Python stack at the last switch-out.
    pub offcpu_pystack: u64,
    /// Address of the thread's PyThreadState, once found (checked again before each use).
    pub py_tstate: u64,
    /// Thread name at the last switch-out.
    pub comm: [u8; COMM_LEN],
}

pod!(TaskState);

/// 64 threads' "found outside the target cgroups" bits, valid while `epoch` is the current
/// one (every move of a task between cgroups starts a new epoch).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OutsideWord {
    pub epoch: u64,
    pub bits: u64,
}

pod!(OutsideWord);
