//! Event-loop stalls: threads that wait in epoll are followed from each return of the wait
//! to the next wait ("iterations"). Each iteration's time is split into on-CPU, blocked and
//! run-queue time; iterations over a threshold are stalls, sent to userspace one by one with
//! their likely culprit. Blocking calls made by a loop (sleeps, file I/O, locks, anything that
//! blocked) are counted per call site, whatever their length.

use crate::{hist::HIST_SLOTS, pod};

/// Threads followed as possible loops (key: tid).
pub const LOOP_ENTRIES: u32 = 4096;
/// Distinct (process, syscall, call site) blocking calls.
pub const LOOP_CALL_ENTRIES: u32 = 8192;
/// Bytes of the stall ring buffer.
pub const STALL_RING_BYTES: u32 = 1 << 20;
/// Waits a thread must have made before its blocking calls get stacks.
pub const LOOP_MIN_WAITS: u64 = 8;
/// At most one stack capture per thread in this interval, for calls that do not block.
pub const CAPTURE_GAP_NS: u64 = 1_000_000;
/// A syscall number slot that is empty.
pub const NO_NR: u32 = u32::MAX;

/// x86_64 syscall numbers the loop logic looks at.
pub mod nr {
    pub const POLL: u32 = 7;
    pub const PREAD64: u32 = 17;
    pub const PWRITE64: u32 = 18;
    pub const SELECT: u32 = 23;
    pub const NANOSLEEP: u32 = 35;
    pub const FCNTL: u32 = 72;
    pub const FLOCK: u32 = 73;
    pub const FSYNC: u32 = 74;
    pub const FDATASYNC: u32 = 75;
    pub const SYNC: u32 = 162;
    pub const FUTEX: u32 = 202;
    pub const CLOCK_NANOSLEEP: u32 = 230;
    pub const EPOLL_WAIT: u32 = 232;
    pub const PSELECT6: u32 = 270;
    pub const PPOLL: u32 = 271;
    pub const SYNC_FILE_RANGE: u32 = 277;
    pub const EPOLL_PWAIT: u32 = 281;
    pub const PREADV: u32 = 295;
    pub const PWRITEV: u32 = 296;
    pub const SYNCFS: u32 = 306;
    pub const PREADV2: u32 = 327;
    pub const PWRITEV2: u32 = 328;
    pub const EPOLL_PWAIT2: u32 = 441;
}

/// The waits that delimit a loop's iterations.
#[inline(always)]
pub const fn is_loop_wait(nr: u32) -> bool {
    matches!(nr, nr::EPOLL_WAIT | nr::EPOLL_PWAIT | nr::EPOLL_PWAIT2)
}

/// Calls that block by nature, so that making one on a loop is a finding even when it was
/// quick: sleeps, positional file I/O, file syncs, file locks, and polls that may wait.
/// `arg1` and `arg2` are the call's second and third arguments.
#[inline(always)]
pub const fn is_blocking_call(nr: u32, arg1: u64, arg2: u64) -> bool {
    match nr {
        nr::NANOSLEEP | nr::CLOCK_NANOSLEEP => true,
        nr::PREAD64 | nr::PWRITE64 | nr::PREADV | nr::PWRITEV | nr::PREADV2 | nr::PWRITEV2 => true,
        nr::FSYNC | nr::FDATASYNC | nr::SYNC | nr::SYNCFS | nr::SYNC_FILE_RANGE | nr::FLOCK => true,
        // F_GETLK 5, F_SETLK 6, F_SETLKW 7, F_OFD_GETLK 36, F_OFD_SETLK 37, F_OFD_SETLKW 38.
        nr::FCNTL => matches!(arg1, 5 | 6 | 7 | 36 | 37 | 38),
        // poll(fds, nfds, timeout_ms): a zero timeout only checks.
        nr::POLL => arg2 != 0,
        nr::PPOLL | nr::SELECT | nr::PSELECT6 => true,
        _ => false,
    }
}

/// A thread's stacks at one moment: kernel and user stack ids, and a Python stack hash.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackIds {
    pub kstack: i32,
    pub ustack: i32,
    pub pystack: u64,
}

impl StackIds {
    /// No stacks recorded.
    pub const NONE: StackIds = StackIds {
        kstack: crate::stack::NO_STACK,
        ustack: crate::stack::NO_STACK,
        pystack: crate::python::PY_NO_STACK,
    };

    /// True when some stack was recorded.
    pub fn is_some(&self) -> bool {
        *self != Self::NONE
    }
}

/// Cumulative figures of one thread that waits in epoll.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopStats {
    pub tgid: u32,
    pub _pad: u32,
    pub waits: u64,
    /// Time inside the waits.
    pub wait_ns: u64,
    pub iterations: u64,
    /// Time of the iterations (from a wait's return to the next wait).
    pub busy_ns: u64,
    /// Off-CPU time in iterations while not runnable.
    pub blocked_ns: u64,
    /// Time in iterations spent runnable but not running.
    pub runq_ns: u64,
    pub stalls: u64,
    pub stall_ns: u64,
    /// Iteration lengths, log2 of microseconds.
    pub hist: [u64; HIST_SLOTS],
}

impl Default for LoopStats {
    fn default() -> Self {
        Self {
            tgid: 0,
            _pad: 0,
            waits: 0,
            wait_ns: 0,
            iterations: 0,
            busy_ns: 0,
            blocked_ns: 0,
            runq_ns: 0,
            stalls: 0,
            stall_ns: 0,
            hist: [0; HIST_SLOTS],
        }
    }
}

/// The state of the iteration in progress. Only the thread itself (and its switch-in)
/// touches it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IterState {
    /// 1 between a wait's entry and its return.
    pub in_wait: u32,
    /// Syscall in progress (NO_NR when none).
    pub sys_nr: u32,
    pub wait_start: u64,
    /// Start of the iteration (return of the last wait); 0 before the first.
    pub start: u64,
    /// Entry time of the syscall in progress.
    pub sys_ts: u64,
    /// Bit 0: the syscall in progress blocked; bit 1: it is a blocking call by nature.
    pub sys_flags: u32,
    /// On-CPU samples taken after the iteration crossed the threshold.
    pub cpu_samples: u32,
    pub blocked_ns: u64,
    pub runq_ns: u64,
    /// The two syscalls with most time in this iteration (heavy hitters).
    pub top_nr: [u32; 2],
    pub top_ns: [u64; 2],
    /// The longest block of this iteration: its syscall, length and stacks.
    pub block_nr: u32,
    pub _pad: u32,
    pub block_ns: u64,
    pub block_stacks: StackIds,
    /// Stacks of the syscall in progress when it blocked.
    pub sys_block_stacks: StackIds,
    /// The latest on-CPU sample after the threshold.
    pub cpu_stacks: StackIds,
    /// Stacks at the latest captured blocking call, and when.
    pub call_stacks: StackIds,
    pub call_ts: u64,
}

/// Value of the loops map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopThread {
    pub stats: LoopStats,
    pub iter: IterState,
}

/// [`IterState::sys_flags`] bits.
pub const SYS_BLOCKED: u32 = 1;
pub const SYS_BLOCKING_CALL: u32 = 2;

/// Key of the blocking-calls map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoopCallKey {
    pub tgid: u32,
    pub nr: u32,
    pub stacks: StackIds,
}

/// Blocking calls made at one site.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopCallValue {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Calls during which the thread went off-CPU.
    pub blocked: u64,
}

/// One stall, as sent through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StallEvent {
    pub tgid: u32,
    pub tid: u32,
    /// Start (bpf_ktime_get_ns) and length of the iteration.
    pub start_ns: u64,
    pub dur_ns: u64,
    pub blocked_ns: u64,
    pub runq_ns: u64,
    /// The syscall with most time in the iteration, and that time.
    pub top_nr: u32,
    pub block_nr: u32,
    pub top_ns: u64,
    /// The longest block and its stacks.
    pub block_ns: u64,
    pub block_stacks: StackIds,
    /// The latest on-CPU sample after the threshold.
    pub cpu_stacks: StackIds,
    pub cpu_samples: u32,
    pub _pad: u32,
    /// Stacks of the latest blocking call captured in the iteration.
    pub call_stacks: StackIds,
}

pod!(
    StackIds,
    LoopStats,
    LoopThread,
    LoopCallKey,
    LoopCallValue,
    StallEvent
);
