//! evloop: follows threads that wait in epoll from each return of the wait to the next wait
//! (an iteration), and splits each iteration into segments at the quick socket calls a loop
//! makes between callbacks. A segment that holds the loop for the threshold or longer, run
//! queue excluded, is a stall: sent through a ring buffer with its heaviest syscall, the time
//! it slept and its stacks. Blocking calls a loop makes are counted per call site. Hooked into
//! the syscalls, offcpu and oncpu programs (no tracepoint of its own), and only active when
//! EVLOOP_ON is set.

use core::ptr::read_volatile;

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::RawTracePointContext,
};
use probes_common::{
    counters::Counter,
    evloop::{
        is_blocking_call, is_loop_wait, is_switch_call, nr, LoopCallKey, LoopCallValue, LoopThread,
        StackIds, StallEvent, CAPTURE_GAP_NS, LOOP_CALL_ENTRIES, LOOP_ENTRIES, LOOP_MIN_WAITS,
        NO_NR, STALL_RING_BYTES, SYS_BLOCKING_CALL, SYS_SLEPT,
    },
    hist::{log2_slot, HIST_SLOTS},
    target::TaskState,
};

use crate::{
    kit::{atomic_add, bump, get_or_insert, stack_ids, Scratch},
    python::python_stack,
    target::Task,
};

/// Threads that have waited in epoll (key: tid).
#[map]
static LOOPS: HashMap<u32, LoopThread> = HashMap::with_max_entries(LOOP_ENTRIES, 0);

/// Blocking calls made by loops, per call site.
#[map]
static LOOP_CALLS: HashMap<LoopCallKey, LoopCallValue> =
    HashMap::with_max_entries(LOOP_CALL_ENTRIES, 0);

/// Stalls, one event each.
#[map]
static STALLS: RingBuf = RingBuf::with_byte_size(STALL_RING_BYTES, 0);

#[map]
static LOOP_SCRATCH: PerCpuArray<LoopThread> = PerCpuArray::with_max_entries(1, 0);

/// 1: follow loops.
#[no_mangle]
static mut EVLOOP_ON: u32 = 0;
/// 1: only loops matter (runner diagnose): the other probes skip every thread that is not a
/// loop between its waits, so the cost stays on the loops.
#[no_mangle]
static mut LOOPS_ONLY: u32 = 0;
/// Iterations at least this long are stalls.
#[no_mangle]
static mut STALL_NS: u64 = 10_000_000;

/// True when loops are followed.
#[inline(always)]
pub fn enabled() -> bool {
    // SAFETY: the global is written by the loader before the program runs.
    unsafe { read_volatile(&raw const EVLOOP_ON) != 0 }
}

/// True when the other probes record loop threads only.
#[inline(always)]
pub fn loops_only() -> bool {
    // SAFETY: the global is written by the loader before the program runs.
    unsafe { read_volatile(&raw const LOOPS_ONLY) != 0 }
}

/// True when `tid` is a loop thread between two waits.
#[inline(always)]
pub fn in_iteration(tid: u32) -> bool {
    // SAFETY: read only.
    unsafe { LOOPS.get(&tid) }.is_some_and(|l| l.iter.start != 0 && l.iter.in_wait == 0)
}

/// True when `tid` is a loop thread whose segment in progress has run for half the
/// threshold at `now` (the samples that can name a stall).
#[inline(always)]
pub fn past_threshold(tid: u32, now: u64) -> bool {
    // SAFETY: read only.
    unsafe { LOOPS.get(&tid) }.is_some_and(|l| {
        l.iter.start != 0
            && l.iter.in_wait == 0
            && now.saturating_sub(l.iter.seg_start) >= stall_ns() / 2
    })
}

#[inline(always)]
fn stall_ns() -> u64 {
    // SAFETY: as above.
    unsafe { read_volatile(&raw const STALL_NS) }
}

/// The loop entry of `task`, created on its first wait.
#[inline(always)]
fn loop_entry(task: &Task) -> Option<*mut LoopThread> {
    if let Some(entry) = LOOPS.get_ptr_mut(&task.tid) {
        return Some(entry);
    }
    let fresh = LOOP_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot.
    unsafe {
        (*fresh).stats = Default::default();
        (*fresh).stats.tgid = task.tgid;
        (*fresh).iter = Default::default();
        (*fresh).iter.sys_nr = NO_NR;
        (*fresh).iter.seg_nr = NO_NR;
        get_or_insert(&LOOPS, &task.tid, &*fresh, Counter::LoopMapFull)
    }
}

/// Argument `n` (0..=2) of the syscall whose registers (x86_64 `struct pt_regs`) are at
/// `regs`: di, si, dx.
#[inline(always)]
fn syscall_arg(regs: *const u64, n: usize) -> u64 {
    const DI: usize = 14;
    // SAFETY: a read of the syscall's saved registers through bpf_probe_read_kernel.
    unsafe { bpf_probe_read_kernel(regs.wrapping_add(DI - n)).unwrap_or(0) }
}

/// sys_enter of a target thread; `regs` are its saved registers.
#[inline(always)]
pub fn sys_enter(ctx: &RawTracePointContext, regs: *const u64, task: &Task, nr: u32, now: u64) {
    if is_loop_wait(nr) {
        let Some(l) = loop_entry(task) else {
            return;
        };
        // SAFETY: the thread's own entry.
        unsafe {
            end_iteration(&mut *l, task, now);
            (*l).iter.in_wait = 1;
            (*l).iter.wait_start = now;
            (*l).stats.waits += 1;
        }
        return;
    }
    let Some(l) = LOOPS.get_ptr_mut(&task.tid) else {
        return;
    };
    // SAFETY: the thread's own entry.
    let l = unsafe { &mut *l };
    if l.iter.start == 0 || l.iter.in_wait != 0 {
        return;
    }
    l.iter.sys_nr = nr;
    l.iter.sys_ts = now;
    l.iter.sys_flags = 0;
    l.iter.sys_asleep_ns = 0;
    l.iter.sys_runq_ns = 0;
    l.iter.sys_stacks = StackIds::NONE;
    // Read only where they decide (each read is a helper call).
    let arg1 = if nr == nr::FCNTL {
        syscall_arg(regs, 1)
    } else {
        0
    };
    let arg2 = if nr == nr::POLL {
        syscall_arg(regs, 2)
    } else {
        0
    };
    // A futex's address tells the GIL (inside the interpreter's runtime) from other locks.
    l.iter.sys_arg = if nr == nr::FUTEX {
        syscall_arg(regs, 0)
    } else {
        0
    };
    if !is_blocking_call(nr, arg1, arg2) {
        return;
    }
    l.iter.sys_flags = SYS_BLOCKING_CALL;
    let fresh = l.iter.call_ts < l.iter.start || now - l.iter.call_ts >= CAPTURE_GAP_NS;
    if l.stats.waits >= LOOP_MIN_WAITS && fresh {
        let (kstack, ustack) = stack_ids(
            ctx,
            Scratch::Event,
            Counter::LoopStackLost,
            Counter::LoopStackLost,
        );
        l.iter.call_stacks = StackIds {
            kstack,
            ustack,
            pystack: python_stack(task, Scratch::Event),
        };
        l.iter.call_ts = now;
    }
}

/// sys_exit of a target thread; `ret` is the syscall's return value.
#[inline(always)]
pub fn sys_exit(task: &Task, nr: u32, ret: i64, now: u64) {
    let Some(l) = LOOPS.get_ptr_mut(&task.tid) else {
        return;
    };
    // SAFETY: the thread's own entry.
    let l = unsafe { &mut *l };
    if l.iter.in_wait != 0 {
        if is_loop_wait(nr) {
            l.stats.wait_ns += now.saturating_sub(l.iter.wait_start);
            if ret > 0 {
                l.stats.events += ret as u64;
            }
            start_iteration(l, now);
        }
        return;
    }
    if l.iter.start == 0 || l.iter.sys_nr != nr {
        return;
    }
    l.iter.sys_nr = NO_NR;
    let sys_ts = l.iter.sys_ts;
    let dur = now.saturating_sub(sys_ts);
    let held = dur.saturating_sub(l.iter.sys_runq_ns);
    let slept = l.iter.sys_flags & SYS_SLEPT != 0;
    if is_switch_call(nr) && !slept && held < stall_ns() {
        // The loop moving between callbacks: the segment ends where the call began.
        end_segment(l, task, sys_ts);
        start_segment(&mut l.iter, now);
    } else if held > l.iter.seg_sys_ns {
        let it = &mut l.iter;
        it.seg_nr = nr;
        it.seg_sys_ns = held;
        it.seg_sys_asleep_ns = it.sys_asleep_ns;
        it.seg_sys_arg = it.sys_arg;
        it.seg_sys_stacks = if it.sys_stacks.is_some() {
            it.sys_stacks
        } else {
            it.call_stacks
        };
    }
    let flags = l.iter.sys_flags;
    if flags == 0 || nr == nr::FUTEX {
        return;
    }
    let key = LoopCallKey {
        tgid: task.tgid,
        nr,
        stacks: if slept && l.iter.sys_stacks.is_some() {
            l.iter.sys_stacks
        } else {
            l.iter.call_stacks
        },
    };
    let Some(v) = get_or_insert(
        &LOOP_CALLS,
        &key,
        &LoopCallValue::default(),
        Counter::LoopCallMapFull,
    ) else {
        return;
    };
    // SAFETY: the entry for `key`; loops of one process may share it, so counts are atomic.
    unsafe {
        atomic_add(&raw mut (*v).count, 1);
        atomic_add(&raw mut (*v).total_ns, dur);
        if slept {
            atomic_add(&raw mut (*v).blocked, 1);
        }
        if dur > (*v).max_ns {
            (*v).max_ns = dur;
        }
    }
}

#[inline(always)]
fn start_segment(it: &mut probes_common::evloop::IterState, now: u64) {
    it.seg_start = now;
    it.seg_asleep_ns = 0;
    it.seg_runq_ns = 0;
    it.seg_nr = NO_NR;
    it.seg_sys_ns = 0;
    it.seg_sys_asleep_ns = 0;
    it.seg_sys_arg = 0;
    it.seg_sys_stacks = StackIds::NONE;
    it.seg_cpu_stacks = StackIds::NONE;
    it.cpu_samples = 0;
}

#[inline(always)]
fn start_iteration(l: &mut LoopThread, now: u64) {
    let it = &mut l.iter;
    it.in_wait = 0;
    it.start = now;
    it.sys_nr = NO_NR;
    it.sys_flags = 0;
    it.blocked_ns = 0;
    it.runq_ns = 0;
    it.call_stacks = StackIds::NONE;
    start_segment(it, now);
}

/// Closes the segment in progress at `end`; one that held the loop for the threshold or
/// longer (run queue excluded) is a stall.
#[inline(always)]
fn end_segment(l: &mut LoopThread, task: &Task, end: u64) {
    let it = &l.iter;
    let dur = end.saturating_sub(it.seg_start);
    if dur.saturating_sub(it.seg_runq_ns) < stall_ns() {
        return;
    }
    l.stats.stalls += 1;
    l.stats.stall_ns += dur;
    bump(Counter::LoopStalls);
    let event = StallEvent {
        tgid: task.tgid,
        tid: task.tid,
        start_ns: it.seg_start,
        dur_ns: dur,
        asleep_ns: it.seg_asleep_ns,
        runq_ns: it.seg_runq_ns,
        sys_nr: it.seg_nr,
        cpu_samples: it.cpu_samples,
        sys_ns: it.seg_sys_ns,
        sys_asleep_ns: it.seg_sys_asleep_ns,
        sys_arg: it.seg_sys_arg,
        sys_stacks: it.seg_sys_stacks,
        cpu_stacks: it.seg_cpu_stacks,
        call_stacks: it.call_stacks,
    };
    if STALLS.output::<StallEvent>(&event, 0).is_err() {
        bump(Counter::LoopStallsLost);
    }
}

/// Closes the iteration in progress at a wait's entry.
#[inline(always)]
fn end_iteration(l: &mut LoopThread, task: &Task, now: u64) {
    let start = l.iter.start;
    if start == 0 {
        return;
    }
    end_segment(l, task, now);
    l.iter.start = 0;
    let dur = now.saturating_sub(start);
    let s = &mut l.stats;
    s.iterations += 1;
    s.busy_ns += dur;
    s.blocked_ns += l.iter.blocked_ns;
    s.runq_ns += l.iter.runq_ns;
    let slot = log2_slot(dur / 1000) & (HIST_SLOTS - 1);
    s.hist[slot] += 1;
    bump(Counter::LoopIterations);
}

/// A target thread is switched in after `delta` ns away; `state` holds its switch-out stacks.
#[inline(always)]
pub fn switched_in(tid: u32, state: *const TaskState, delta: u64, runnable: bool) {
    let Some(l) = LOOPS.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: the thread's entry; the thread is not running, so nothing else writes it.
    let it = unsafe { &mut (*l).iter };
    if it.start == 0 || it.in_wait != 0 {
        return;
    }
    let in_syscall = it.sys_nr != NO_NR;
    if runnable {
        it.runq_ns += delta;
        it.seg_runq_ns += delta;
        if in_syscall {
            it.sys_runq_ns += delta;
        }
        return;
    }
    it.blocked_ns += delta;
    it.seg_asleep_ns += delta;
    if in_syscall {
        it.sys_flags |= SYS_SLEPT;
        it.sys_asleep_ns += delta;
        // SAFETY: `state` points into the thread's entry of the target-threads map.
        it.sys_stacks = unsafe {
            StackIds {
                kstack: (*state).offcpu_kstack,
                ustack: (*state).offcpu_ustack,
                pystack: (*state).offcpu_pystack,
            }
        };
    }
}

/// An on-CPU sample of a target thread: the segment's latest sample outside syscalls, or the
/// syscall's when it was taken inside one.
#[inline(always)]
pub fn sampled(tid: u32, stacks: StackIds) {
    let Some(l) = LOOPS.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: the thread's own entry (the sample runs in its context).
    let it = unsafe { &mut (*l).iter };
    if it.start == 0 || it.in_wait != 0 {
        return;
    }
    it.cpu_samples += 1;
    // A sample inside a syscall belongs to that call (which may end the segment, when it is
    // the loop moving on to the next callback); one outside is the segment's own work.
    if it.sys_nr != NO_NR {
        it.sys_stacks = stacks;
    } else {
        it.seg_cpu_stacks = stacks;
    }
}
