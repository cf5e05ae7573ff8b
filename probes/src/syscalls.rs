//! syscalls: raw_syscalls sys_enter/sys_exit for target threads, aggregated per process and
//! syscall number: count, errors, total time and a log2 latency histogram (µs).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_ktime_get_ns,
    macros::{map, tracepoint},
    maps::PerCpuHashMap,
    programs::TracePointContext,
};
use probes_common::{
    counters::Counter,
    hist::{log2_slot, HIST_SLOTS},
    syscalls::{SyscallKey, SyscallStats, SYSCALL_ENTRIES},
    tracepoint::Field,
};

use crate::{
    evloop,
    kit::{bump, read_field},
    target::current_target,
};

#[map]
static SYSCALL_STATS: PerCpuHashMap<SyscallKey, SyscallStats> =
    PerCpuHashMap::with_max_entries(SYSCALL_ENTRIES, BPF_F_NO_PREALLOC);

#[no_mangle]
static mut SYS_EXIT_ID: Field = Field { offset: 0, size: 0 };
#[no_mangle]
static mut SYS_EXIT_RET: Field = Field { offset: 0, size: 0 };

#[tracepoint]
pub fn syscall_enter(ctx: TracePointContext) -> u32 {
    if let Some(task) = current_target() {
        // SAFETY: plain helper call.
        let now = unsafe { bpf_ktime_get_ns() };
        // SAFETY: `task.state` points into the thread's own entry.
        unsafe { (*task.state).syscall_ts = now };
        if evloop::enabled() {
            evloop::sys_enter(&ctx, &task, now);
        }
    }
    0
}

#[tracepoint]
pub fn syscall_exit(ctx: TracePointContext) -> u32 {
    try_syscall_exit(&ctx);
    0
}

#[inline(always)]
fn try_syscall_exit(ctx: &TracePointContext) {
    let Some(task) = current_target() else {
        return;
    };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let nr = read_field(ctx, &raw const SYS_EXIT_ID) as u32;
    let ret = read_field(ctx, &raw const SYS_EXIT_RET) as i64;
    if evloop::enabled() {
        evloop::sys_exit(&task, nr, ret, now);
        if evloop::loops_only() {
            return;
        }
    }
    // SAFETY: `task.state` points into the thread's own entry.
    let entered = unsafe {
        let entered = (*task.state).syscall_ts;
        (*task.state).syscall_ts = 0;
        entered
    };
    if entered == 0 {
        bump(Counter::SyscallExitUnmatched);
        return;
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
