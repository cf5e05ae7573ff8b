//! evloop: follows threads that wait in epoll from each return of the wait to the next wait,
//! splits each iteration into on-CPU, blocked and run-queue time, and reports iterations over
//! the threshold (stalls) through a ring buffer with their likely culprit. Blocking calls a
//! loop makes are counted per call site. Hooked into the syscalls, offcpu and oncpu programs
//! (no tracepoint of its own), and only active when EVLOOP_ON is set.

use core::ptr::read_volatile;

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use probes_common::{
    counters::Counter,
    evloop::{
        is_blocking_call, is_loop_wait, nr, LoopCallKey, LoopCallValue, LoopThread, StackIds,
        StallEvent, CAPTURE_GAP_NS, LOOP_CALL_ENTRIES, LOOP_ENTRIES, LOOP_MIN_WAITS, NO_NR,
        STALL_RING_BYTES, SYS_BLOCKED, SYS_BLOCKING_CALL,
    },
    hist::{log2_slot, HIST_SLOTS},
    target::TaskState,
    tracepoint::Field,
};

use crate::{
    kit::{atomic_add, bump, get_or_insert, read_field, stack_ids},
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
#[no_mangle]
static mut SYS_ENTER_ID: Field = Field { offset: 0, size: 0 };
#[no_mangle]
static mut SYS_ENTER_ARGS: Field = Field { offset: 0, size: 0 };

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

/// True when `tid` is a loop thread whose iteration has run past the threshold at `now`.
#[inline(always)]
pub fn past_threshold(tid: u32, now: u64) -> bool {
    // SAFETY: read only.
    unsafe { LOOPS.get(&tid) }.is_some_and(|l| {
        l.iter.start != 0 && l.iter.in_wait == 0 && now.saturating_sub(l.iter.start) >= stall_ns()
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
        get_or_insert(&LOOPS, &task.tid, &*fresh, Counter::LoopMapFull)
    }
}

/// sys_enter of a target thread.
#[inline(always)]
pub fn sys_enter(ctx: &TracePointContext, task: &Task, now: u64) {
    let nr = read_field(ctx, &raw const SYS_ENTER_ID) as u32;
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
    // SAFETY: the global is written by the loader before the program runs.
    let args = unsafe { read_volatile(&raw const SYS_ENTER_ARGS) }.offset as usize;
    // SAFETY: reads of the tracepoint record.
    let (arg1, arg2) = unsafe {
        (
            ctx.read_at::<u64>(args + 8).unwrap_or(0),
            ctx.read_at::<u64>(args + 16).unwrap_or(0),
        )
    };
    if !is_blocking_call(nr, arg1, arg2) {
        return;
    }
    l.iter.sys_flags = SYS_BLOCKING_CALL;
    let fresh = l.iter.call_ts < l.iter.start || now - l.iter.call_ts >= CAPTURE_GAP_NS;
    if l.stats.waits >= LOOP_MIN_WAITS && fresh {
        let (kstack, ustack) = stack_ids(ctx, Counter::LoopStackLost, Counter::LoopStackLost);
        l.iter.call_stacks = StackIds {
            kstack,
            ustack,
            pystack: python_stack(task),
        };
        l.iter.call_ts = now;
    }
}

/// sys_exit of a target thread.
#[inline(always)]
pub fn sys_exit(task: &Task, nr: u32, now: u64) {
    let Some(l) = LOOPS.get_ptr_mut(&task.tid) else {
        return;
    };
    // SAFETY: the thread's own entry.
    let l = unsafe { &mut *l };
    if l.iter.in_wait != 0 {
        if is_loop_wait(nr) {
            l.stats.wait_ns += now.saturating_sub(l.iter.wait_start);
            start_iteration(l, now);
        }
        return;
    }
    if l.iter.start == 0 || l.iter.sys_nr != nr {
        return;
    }
    let dur = now.saturating_sub(l.iter.sys_ts);
    add_top(l, nr, dur);
    let flags = l.iter.sys_flags;
    l.iter.sys_nr = NO_NR;
    if flags == 0 || nr == nr::FUTEX {
        return;
    }
    let key = LoopCallKey {
        tgid: task.tgid,
        nr,
        stacks: if flags & SYS_BLOCKED != 0 {
            l.iter.sys_block_stacks
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
        if flags & SYS_BLOCKED != 0 {
            atomic_add(&raw mut (*v).blocked, 1);
        }
        if dur > (*v).max_ns {
            (*v).max_ns = dur;
        }
    }
}

/// Adds `dur` of syscall `nr` to the iteration's two heaviest syscalls.
#[inline(always)]
fn add_top(l: &mut LoopThread, nr: u32, dur: u64) {
    let it = &mut l.iter;
    if it.top_nr[0] == nr {
        it.top_ns[0] += dur;
    } else if it.top_nr[1] == nr {
        it.top_ns[1] += dur;
    } else if it.top_nr[1] == NO_NR || it.top_ns[1] <= dur {
        it.top_nr[1] = nr;
        it.top_ns[1] = dur;
    }
    if it.top_ns[1] > it.top_ns[0] {
        it.top_nr.swap(0, 1);
        it.top_ns.swap(0, 1);
    }
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
    it.top_nr = [NO_NR; 2];
    it.top_ns = [0; 2];
    it.block_nr = NO_NR;
    it.block_ns = 0;
    it.block_stacks = StackIds::NONE;
    it.cpu_samples = 0;
    it.cpu_stacks = StackIds::NONE;
    it.call_stacks = StackIds::NONE;
}

/// Closes the iteration in progress at a wait's entry; a long one is a stall.
#[inline(always)]
fn end_iteration(l: &mut LoopThread, task: &Task, now: u64) {
    let start = l.iter.start;
    if start == 0 {
        return;
    }
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
    if dur < stall_ns() {
        return;
    }
    s.stalls += 1;
    s.stall_ns += dur;
    bump(Counter::LoopStalls);
    let it = &l.iter;
    let event = StallEvent {
        tgid: task.tgid,
        tid: task.tid,
        start_ns: start,
        dur_ns: dur,
        blocked_ns: it.blocked_ns,
        runq_ns: it.runq_ns,
        top_nr: it.top_nr[0],
        block_nr: it.block_nr,
        top_ns: it.top_ns[0],
        block_ns: it.block_ns,
        block_stacks: it.block_stacks,
        cpu_stacks: it.cpu_stacks,
        cpu_samples: it.cpu_samples,
        _pad: 0,
        call_stacks: it.call_stacks,
    };
    if STALLS.output::<StallEvent>(&event, 0).is_err() {
        bump(Counter::LoopStallsLost);
    }
}

/// A target thread is switched in after `delta` ns away; `state` holds its switch-out stacks.
#[inline(always)]
pub fn switched_in(tid: u32, state: *const TaskState, delta: u64, runnable: bool) {
    let Some(l) = LOOPS.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: the thread's entry; the thread is not running, so nothing else writes it.
    let l = unsafe { &mut *l };
    if l.iter.start == 0 || l.iter.in_wait != 0 {
        return;
    }
    if runnable {
        l.iter.runq_ns += delta;
        return;
    }
    l.iter.blocked_ns += delta;
    // SAFETY: `state` points into the thread's entry of the target-threads map.
    let stacks = unsafe {
        StackIds {
            kstack: (*state).offcpu_kstack,
            ustack: (*state).offcpu_ustack,
            pystack: (*state).offcpu_pystack,
        }
    };
    if l.iter.sys_nr != NO_NR {
        l.iter.sys_flags |= SYS_BLOCKED;
        l.iter.sys_block_stacks = stacks;
    }
    if delta > l.iter.block_ns {
        l.iter.block_ns = delta;
        l.iter.block_nr = l.iter.sys_nr;
        l.iter.block_stacks = stacks;
    }
}

/// An on-CPU sample of a target thread: kept as the stall's CPU stack when the iteration has
/// already run past the threshold.
#[inline(always)]
pub fn sampled(tid: u32, stacks: StackIds, now: u64) {
    let Some(l) = LOOPS.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: the thread's own entry (the sample runs in its context).
    let l = unsafe { &mut *l };
    if l.iter.start == 0 || l.iter.in_wait != 0 || now.saturating_sub(l.iter.start) < stall_ns() {
        return;
    }
    l.iter.cpu_samples += 1;
    l.iter.cpu_stacks = stacks;
}
