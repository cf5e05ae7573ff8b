//! syscalls: sys_enter/sys_exit raw tracepoints for target threads, aggregated per process and
//! syscall number: count, errors, total time and a log2 latency histogram (µs). Raw
//! tracepoints hand over the registers and the id or return value as they are, with no
//! trace record filled first: a syscall of a thread outside the target costs one thread
//! lookup.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_ktime_get_ns,
    macros::{map, raw_tracepoint},
    maps::PerCpuHashMap,
    programs::RawTracePointContext,
};
use probes_common::{
    counters::Counter,
    hist::{log2_slot, HIST_SLOTS},
    syscalls::{SyscallKey, SyscallStats, SYSCALL_ENTRIES},
};

use crate::{evloop, kit::bump, target::current_target};

#[map]
static SYSCALL_STATS: PerCpuHashMap<SyscallKey, SyscallStats> =
    PerCpuHashMap::with_max_entries(SYSCALL_ENTRIES, BPF_F_NO_PREALLOC);

/// sys_enter(struct pt_regs *regs, long id).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn syscall_enter(ctx: RawTracePointContext) -> i32 {
    if let Some(task) = current_target() {
        // SAFETY: plain helper call.
        let now = unsafe { bpf_ktime_get_ns() };
        let nr = ctx.arg::<u64>(1) as u32;
        // SAFETY: `task.state` points into the thread's own entry.
        unsafe {
            (*task.state).syscall_ts = now;
            (*task.state).syscall_nr = nr;
        }
        if evloop::enabled() {
            evloop::sys_enter(&ctx, ctx.arg::<*const u64>(0), &task, nr, now);
        }
    }
    0
}

/// sys_exit(struct pt_regs *regs, long ret).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn syscall_exit(ctx: RawTracePointContext) -> i32 {
    try_syscall_exit(&ctx);
    0
}

#[inline(always)]
fn try_syscall_exit(ctx: &RawTracePointContext) {
    let Some(task) = current_target() else {
        return;
    };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let ret = ctx.arg::<i64>(1);
    // SAFETY: `task.state` points into the thread's own entry. The id was stored at entry: a
    // syscall entered before the probes has none.
    let (entered, nr) = unsafe {
        let entered = (*task.state).syscall_ts;
        (*task.state).syscall_ts = 0;
        (entered, (*task.state).syscall_nr)
    };
    if entered == 0 {
        bump(Counter::SyscallExitUnmatched);
        return;
    }
    if evloop::enabled() {
        evloop::sys_exit(&task, nr, ret, now);
        if evloop::loops_only() {
            return;
        }
    }
    let delta = now.saturating_sub(entered);
    let key = SyscallKey {
        tgid: task.tgid,
        nr,
    };
    let stats = match SYSCALL_STATS.get_ptr_mut(&key) {
        Some(stats) => stats,
        None => {
            let zero = SyscallStats {
                count: 0,
                errors: 0,
                total_ns: 0,
                slots: [0; HIST_SLOTS],
            };
            if SYSCALL_STATS.insert(&key, &zero, 0).is_err() {
                bump(Counter::SyscallMapFull);
                return;
            }
            let Some(stats) = SYSCALL_STATS.get_ptr_mut(&key) else {
                return;
            };
            stats
        }
    };
    bump(Counter::SyscallEvents);
    let slot = log2_slot(delta / 1000) & (HIST_SLOTS - 1);
    // SAFETY: per-CPU value of the entry for `key`; `slot` is in bounds.
    unsafe {
        (*stats).count += 1;
        (*stats).total_ns += delta;
        (*stats).slots[slot] += 1;
        if (-4095..0).contains(&ret) {
            (*stats).errors += 1;
        }
    }
}
