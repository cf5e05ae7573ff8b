//! offcpu: at sched_switch, a target thread leaving the CPU is stamped with its stacks; when
//! it is switched in again, the time away is charged to those stacks, split into blocked
//! (it slept) and preempted (it was still runnable).

use core::ptr::read_volatile;

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap},
    programs::TracePointContext,
};
use probes_common::{
    counters::Counter,
    offcpu::{OffcpuStart, OffcpuValue, OFFCPU_ENTRIES, OFFCPU_START_ENTRIES},
    stack::StackKey,
    tracepoint::{Field, TASK_REPORT_MASK},
};

use crate::target::{
    atomic_add, bump, current_comm, current_target, get_or_insert, read_field, stack_ids,
};

#[map]
static OFFCPU_START: LruHashMap<u32, OffcpuStart> =
    LruHashMap::with_max_entries(OFFCPU_START_ENTRIES, 0);

#[map]
static OFFCPU_TOTALS: HashMap<StackKey, OffcpuValue> = HashMap::with_max_entries(OFFCPU_ENTRIES, 0);

/// Shortest off-CPU interval recorded, in ns.
#[no_mangle]
static mut OFFCPU_MIN_NS: u64 = 1000;
#[no_mangle]
static mut SWITCH_PREV_STATE: Field = Field { offset: 0, size: 0 };
#[no_mangle]
static mut SWITCH_NEXT_PID: Field = Field { offset: 0, size: 0 };

/// True when sched_switch's `prev_state` says the task was preempted while runnable.
#[inline(always)]
pub fn prev_was_runnable(ctx: &TracePointContext) -> bool {
    read_field(ctx, &raw const SWITCH_PREV_STATE) & TASK_REPORT_MASK == 0
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
    if let Some(prev) = current_target() {
        let (kstack, ustack) = stack_ids(ctx, Counter::OffcpuKstackLost, Counter::OffcpuUstackLost);
        let start = OffcpuStart {
            ts_ns: now,
            tgid: prev.tgid,
            kstack,
            ustack,
            runnable: u32::from(prev_was_runnable(ctx)),
            comm: current_comm(),
        };
        if OFFCPU_START.insert(&prev.tid, &start, 0).is_err() {
            bump(Counter::OffcpuStartFull);
        }
    }
    let next = next_tid(ctx);
    // SAFETY: the value is copied out before the entry is removed.
    let Some(start) = (unsafe { OFFCPU_START.get(&next) }).copied() else {
        return;
    };
    let _ = OFFCPU_START.remove(&next);
    let delta = now.saturating_sub(start.ts_ns);
    // SAFETY: the global is written by the loader before the program runs.
    if delta < unsafe { read_volatile(&raw const OFFCPU_MIN_NS) } {
        bump(Counter::OffcpuBelowMin);
        return;
    }
    bump(Counter::OffcpuSwitches);
    let key = StackKey {
        tgid: start.tgid,
        kstack: start.kstack,
        ustack: start.ustack,
        _pad: 0,
        comm: start.comm,
    };
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
        if start.runnable != 0 {
            atomic_add(&raw mut (*value).preempted_ns, delta);
            atomic_add(&raw mut (*value).preempted_count, 1);
        } else {
            atomic_add(&raw mut (*value).blocked_ns, delta);
            atomic_add(&raw mut (*value).blocked_count, 1);
        }
    }
}
