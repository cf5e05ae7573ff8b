//! Event-loop stalls: threads that wait in epoll are followed from each return of the wait
//! to the next wait ("iterations"). An iteration runs many callbacks; the socket I/O a loop
//! does between them (a quick, non-sleeping read, write, send, recv, accept, epoll_ctl...)
//! splits the iteration into *segments*, each one callback's stretch of work at most. A
//! segment that holds the loop for at least the threshold (run-queue time excluded) is a
//! stall, sent to userspace with its heaviest syscall, the time asleep, and stacks. A loop that
//! is merely saturated runs long iterations of short segments: busy, never stalled.
//! Blocking calls made by a loop (sleeps, file I/O, locks, anything that slept) are counted
//! per call site, whatever their length.

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
    pub const READ: u32 = 0;
    pub const WRITE: u32 = 1;
    pub const CLOSE: u32 = 3;
    pub const POLL: u32 = 7;
    pub const PREAD64: u32 = 17;
    pub const PWRITE64: u32 = 18;
    pub const READV: u32 = 19;
    pub const WRITEV: u32 = 20;
    pub const SELECT: u32 = 23;
    pub const NANOSLEEP: u32 = 35;
    pub const ACCEPT: u32 = 43;
    pub const SENDTO: u32 = 44;
    pub const RECVFROM: u32 = 45;
    pub const SENDMSG: u32 = 46;
    pub const RECVMSG: u32 = 47;
    pub const SHUTDOWN: u32 = 48;
    pub const FCNTL: u32 = 72;
    pub const FLOCK: u32 = 73;
    pub const FSYNC: u32 = 74;
    pub const FDATASYNC: u32 = 75;
    pub const SYNC: u32 = 162;
    pub const FUTEX: u32 = 202;
    pub const CLOCK_NANOSLEEP: u32 = 230;
    pub const EPOLL_WAIT: u32 = 232;
    pub const EPOLL_CTL: u32 = 233;
    pub const PSELECT6: u32 = 270;
    pub const PPOLL: u32 = 271;
    pub const SYNC_FILE_RANGE: u32 = 277;
    pub const EPOLL_PWAIT: u32 = 281;
    pub const PREADV: u32 = 295;
    pub const PWRITEV: u32 = 296;
    pub const RECVMMSG: u32 = 299;
    pub const ACCEPT4: u32 = 288;
    pub const SYNCFS: u32 = 306;
    pub const PREADV2: u32 = 327;
    pub const PWRITEV2: u32 = 328;
    pub const SENDMMSG: u32 = 307;
    pub const EPOLL_PWAIT2: u32 = 441;
}

/// The waits that delimit a loop's iterations.
#[inline(always)]
pub const fn is_loop_wait(nr: u32) -> bool {
    matches!(nr, nr::EPOLL_WAIT | nr::EPOLL_PWAIT | nr::EPOLL_PWAIT2)
}

/// The socket-style calls a loop makes between callbacks. One that does not sleep and lasts
/// less than the stall threshold ends a segment (the loop moving on to the next callback); a
/// longer one is part of the segment, and may be its stall.
#[inline(always)]
pub const fn is_switch_call(nr: u32) -> bool {
    matches!(
        nr,
        nr::READ
            | nr::WRITE
            | nr::READV
            | nr::WRITEV
            | nr::CLOSE
            | nr::ACCEPT
            | nr::ACCEPT4
            | nr::SENDTO
            | nr::RECVFROM
            | nr::SENDMSG
            | nr::RECVMSG
            | nr::SENDMMSG
            | nr::RECVMMSG
            | nr::SHUTDOWN
            | nr::EPOLL_CTL
    )
}

/// Calls that block by nature, so that making one on a loop is a finding even when it was
/// quick: sleeps, positional file I/O, file syncs, file locks (SQLite's F_SETLK locks are
/// often all a quick SQLite read on the loop shows), and polls that may wait.
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
    pub kstack: u64,
    pub ustack: u64,
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
    /// Segments over the threshold, and their time.
    pub stalls: u64,
    pub stall_ns: u64,
    /// Ready events the waits returned (what the iterations had to handle).
    pub events: u64,
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
            events: 0,
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
    /// Bit 0: the syscall in progress slept; bit 1: it is a blocking call by nature.
    pub sys_flags: u32,
    /// On-CPU samples taken in the segment in progress.
    pub cpu_samples: u32,
    /// Time of the iteration asleep (off-CPU, not runnable), and runnable but not running.
    pub blocked_ns: u64,
    pub runq_ns: u64,
    /// Time the syscall in progress spent asleep, and in the run queue.
    pub sys_asleep_ns: u64,
    pub sys_runq_ns: u64,
    /// Stacks of the syscall in progress: where it went to sleep, or an on-CPU sample in it.
    pub sys_stacks: StackIds,
    /// The first argument of the syscall in progress (a futex's address).
    pub sys_arg: u64,
    /// The segment in progress: its start, time asleep and in the run queue.
    pub seg_start: u64,
    pub seg_asleep_ns: u64,
    pub seg_runq_ns: u64,
    /// The segment's heaviest syscall (NO_NR: none yet), its time on the CPU or asleep, the
    /// time it slept, and its stacks.
    pub seg_nr: u32,
    pub _pad: u32,
    pub seg_sys_ns: u64,
    pub seg_sys_asleep_ns: u64,
    pub seg_sys_arg: u64,
    pub seg_sys_stacks: StackIds,
    /// The latest on-CPU sample of the segment.
    pub seg_cpu_stacks: StackIds,
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
pub const SYS_SLEPT: u32 = 1;
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

/// One stall (a segment over the threshold), as sent through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StallEvent {
    pub tgid: u32,
    pub tid: u32,
    /// Start (bpf_ktime_get_ns) and length of the segment.
    pub start_ns: u64,
    pub dur_ns: u64,
    /// Time of the segment asleep (off-CPU, not runnable), and in the run queue.
    pub asleep_ns: u64,
    pub runq_ns: u64,
    /// The segment's heaviest syscall (NO_NR: none), and on-CPU samples in the segment.
    pub sys_nr: u32,
    pub cpu_samples: u32,
    /// That syscall's time (run-queue time excluded), the part of it asleep, and its first
    /// argument (a futex's address tells the GIL from other locks).
    pub sys_ns: u64,
    pub sys_asleep_ns: u64,
    pub sys_arg: u64,
    /// Where that syscall slept, or an on-CPU sample inside it.
    pub sys_stacks: StackIds,
    /// The latest on-CPU sample of the segment.
    pub cpu_stacks: StackIds,
    /// Stacks at the latest blocking call captured in the segment's iteration.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_locks_block_by_nature_other_fcntls_do_not() {
        for cmd in [5, 6, 7, 36, 37, 38] {
            assert!(is_blocking_call(nr::FCNTL, cmd, 0), "fcntl lock cmd {cmd}");
        }
        for cmd in [1, 2, 3, 4, 1030] {
            assert!(!is_blocking_call(nr::FCNTL, cmd, 0), "fcntl cmd {cmd}");
        }
        assert!(is_blocking_call(nr::FLOCK, 2, 0), "LOCK_EX");
        assert!(is_blocking_call(nr::POLL, 0, 100));
        assert!(!is_blocking_call(nr::POLL, 0, 0));
    }
}
