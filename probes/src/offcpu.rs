//! offcpu: at sched_switch, a target thread leaving the CPU is stamped with its stacks; when
//! it is switched in again, the time away is charged to those stacks, split into blocked
//! (it slept) and preempted (it was still runnable).

use core::ptr::read_volatile;

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use probes_common::{
    counters::Counter,
    offcpu::{OffcpuValue, OFFCPU_ENTRIES},
    stack::StackKey,
    tracepoint::{Field, TASK_REPORT_MASK},
};

use crate::kit::{atomic_add, bump, current_comm, get_or_insert, read_field, stack_ids, Scratch};
use crate::target::{switching_out, target_task};
use crate::{evloop, python::python_stack};

#[map]
static OFFCPU_TOTALS: HashMap<StackKey, OffcpuValue> = HashMap::with_max_entries(OFFCPU_ENTRIES, 0);

/// Shortest off-CPU interval recorded, in ns.
#[no_mangle]
static mut OFFCPU_MIN_NS: u64 = 1000;
#[no_mangle]
static mut SWITCH_PREV_STATE: Field = Field { offset: 0, size: 0 };
#[no_mangle]
static mut SWITCH_NEXT_PID: Field = Field { offset: 0, size: 0 };

/// sched_switch's `prev_state`.
#[inline(always)]
pub fn prev_state(ctx: &TracePointContext) -> u64 {
    read_field(ctx, &raw const SWITCH_PREV_STATE)
}

/// True when `prev_state` says the task was preempted while runnable.
#[inline(always)]
pub fn runnable(prev_state: u64) -> bool {
    prev_state & TASK_REPORT_MASK == 0
}

/// The thread being switched in.
#[inline(always)]
pub fn next_tid(ctx: &TracePointContext) -> u32 {
    read_field(ctx, &raw const SWITCH_NEXT_PID) as u32
}

#[tracepoint]
pub fn offcpu_switch(ctx: TracePointContext) -> u32 {
    try_offcpu_switch(&ctx);
    0
}

#[inline(always)]
fn try_offcpu_switch(ctx: &TracePointContext) {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let state = prev_state(ctx);
    let prev =
        switching_out(state).filter(|p| !evloop::loops_only() || evloop::in_iteration(p.tid));
    if let Some(prev) = prev {
        let (kstack, ustack) = stack_ids(
            ctx,
            Scratch::Event,
            Counter::OffcpuKstackLost,
            Counter::OffcpuUstackLost,
        );
        let pystack = python_stack(&prev, Scratch::Event);
        // SAFETY: `prev.state` points into the thread's entry; only this thread's
        // switch-out writes these fields.
        unsafe {
            (*prev.state).offcpu_ts = now;
            (*prev.state).offcpu_kstack = kstack;
            (*prev.state).offcpu_ustack = ustack;
            (*prev.state).offcpu_pystack = pystack;
            (*prev.state).offcpu_runnable = u32::from(runnable(state));
            (*prev.state).comm = current_comm();
        }
    }
    let Some(next) = target_task(next_tid(ctx)) else {
        return;
    };
    // SAFETY: `next` points into the thread's entry; its switch-in is serialised with its
    // switch-out by the scheduler.
    let (start, key, runnable) = unsafe {
        let start = (*next).offcpu_ts;
        (*next).offcpu_ts = 0;
        let key = StackKey {
            tgid: (*next).tgid,
            _pad: 0,
            kstack: (*next).offcpu_kstack,
            ustack: (*next).offcpu_ustack,
            pystack: (*next).offcpu_pystack,
            comm: (*next).comm,
        };
        (start, key, (*next).offcpu_runnable != 0)
    };
    if start == 0 {
        return;
    }
    let delta = now.saturating_sub(start);
    if evloop::enabled() {
        evloop::switched_in(next_tid(ctx), next, delta, runnable);
        if evloop::loops_only() {
            return;
        }
    }
    // SAFETY: the global is written by the loader before the program runs.
    if delta < unsafe { read_volatile(&raw const OFFCPU_MIN_NS) } {
        bump(Counter::OffcpuBelowMin);
        return;
    }
    bump(Counter::OffcpuSwitches);
    let Some(value) = get_or_insert(
        &OFFCPU_TOTALS,
        &key,
        &OffcpuValue::default(),
        Counter::OffcpuMapFull,
    ) else {
        return;
    };
    // SAFETY: `value` points into the map entry for `key`.
    unsafe {
        if runnable {
            atomic_add(&raw mut (*value).preempted_ns, delta);
            atomic_add(&raw mut (*value).preempted_count, 1);
        } else {
            atomic_add(&raw mut (*value).blocked_ns, delta);
            atomic_add(&raw mut (*value).blocked_count, 1);
        }
    }
}
