//! runqlat: the time a target thread waits between becoming runnable (sched_wakeup,
//! sched_wakeup_new, or preemption at sched_switch) and running, as a log2 histogram per
//! process and totals per thread.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use probes_common::{
    counters::Counter,
    hist::{log2_slot, HIST_SLOTS},
    runqlat::{RunqHist, RunqThread, RUNQ_HIST_ENTRIES, RUNQ_THREAD_ENTRIES},
    target::TaskState,
    tracepoint::Field,
    COMM_LEN,
};

use crate::{
    kit::{atomic_add, bump, get_or_insert, read_field},
    offcpu::{next_tid, prev_state, runnable},
    target::{switching_out, target_task},
};

#[map]
static RUNQ_HIST: HashMap<u32, RunqHist> = HashMap::with_max_entries(RUNQ_HIST_ENTRIES, 0);

#[map]
static RUNQ_THREADS: HashMap<u32, RunqThread> = HashMap::with_max_entries(RUNQ_THREAD_ENTRIES, 0);

#[no_mangle]
static mut WAKEUP_PID: Field = Field { offset: 0, size: 0 };
#[no_mangle]
static mut WAKEUP_NEW_PID: Field = Field { offset: 0, size: 0 };
#[no_mangle]
static mut SWITCH_NEXT_COMM: Field = Field { offset: 0, size: 0 };

#[tracepoint]
pub fn runq_wakeup(ctx: TracePointContext) -> u32 {
    enqueue(read_field(&ctx, &raw const WAKEUP_PID) as u32);
    0
}

#[tracepoint]
pub fn runq_wakeup_new(ctx: TracePointContext) -> u32 {
    enqueue(read_field(&ctx, &raw const WAKEUP_NEW_PID) as u32);
    0
}

#[inline(always)]
fn enqueue(tid: u32) {
    if let Some(state) = target_task(tid) {
        stamp(state);
    }
}

#[inline(always)]
fn stamp(state: *mut TaskState) {
    // SAFETY: plain helper call; `state` points into the thread's entry.
    unsafe { (*state).runq_ts = bpf_ktime_get_ns() };
}

#[tracepoint]
pub fn runq_switch(ctx: TracePointContext) -> u32 {
    try_runq_switch(&ctx);
    0
}

#[inline(always)]
fn try_runq_switch(ctx: &TracePointContext) {
    let state = prev_state(ctx);
    if let Some(prev) = switching_out(state) {
        if runnable(state) {
            stamp(prev.state);
        }
    }
    let next = next_tid(ctx);
    let Some(task) = target_task(next) else {
        return;
    };
    // SAFETY: `task` points into the thread's entry.
    let (enqueued, tgid) = unsafe {
        let enqueued = (*task).runq_ts;
        (*task).runq_ts = 0;
        (enqueued, (*task).tgid)
    };
    if enqueued == 0 {
        return;
    }
    // SAFETY: plain helper call.
    let delta = unsafe { bpf_ktime_get_ns() }.saturating_sub(enqueued);
    bump(Counter::RunqEvents);
    record_process(tgid, delta);
    record_thread(ctx, next, tgid, delta);
}

#[inline(always)]
fn record_process(tgid: u32, delta: u64) {
    let zero = RunqHist {
        slots: [0; HIST_SLOTS],
        count: 0,
        total_ns: 0,
    };
    let Some(hist) = get_or_insert(&RUNQ_HIST, &tgid, &zero, Counter::RunqHistFull) else {
        return;
    };
    let slot = log2_slot(delta / 1000) & (HIST_SLOTS - 1);
    // SAFETY: `hist` points into the map entry for `tgid`; `slot` is in bounds.
    unsafe {
        atomic_add(&raw mut (*hist).slots[slot], 1);
        atomic_add(&raw mut (*hist).count, 1);
        atomic_add(&raw mut (*hist).total_ns, delta);
    }
}

#[inline(always)]
fn record_thread(ctx: &TracePointContext, tid: u32, tgid: u32, delta: u64) {
    // SAFETY: the global is written by the loader before the program runs.
    let offset = unsafe { core::ptr::read_volatile(&raw const SWITCH_NEXT_COMM) }.offset as usize;
    // SAFETY: `read_at` uses bpf_probe_read on the tracepoint record.
    let comm = unsafe { ctx.read_at::<[u8; COMM_LEN]>(offset) }.unwrap_or([0; COMM_LEN]);
    let zero = RunqThread {
        tgid,
        _pad: 0,
        count: 0,
        total_ns: 0,
        max_ns: 0,
        comm,
    };
    let Some(thread) = get_or_insert(&RUNQ_THREADS, &tid, &zero, Counter::RunqThreadFull) else {
        return;
    };
    // SAFETY: a thread is switched in on one CPU at a time, so its entry has one writer.
    unsafe {
        (*thread).count += 1;
        (*thread).total_ns += delta;
        if delta > (*thread).max_ns {
            (*thread).max_ns = delta;
        }
    }
}
