//! oncpu: a perf_event program on the software CPU clock, one per CPU, counting samples of
//! target threads by (process, thread name, kernel stack, user stack).

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, perf_event},
    maps::HashMap,
    programs::PerfEventContext,
};
use probes_common::{counters::Counter, evloop::StackIds, oncpu::ONCPU_ENTRIES, stack::StackKey};

use crate::kit::{atomic_add, bump, current_comm, get_or_insert, stack_ids, Scratch};
use crate::target::current_target;
use crate::{evloop, python::python_stack};

#[map]
static ONCPU_COUNTS: HashMap<StackKey, u64> = HashMap::with_max_entries(ONCPU_ENTRIES, 0);

#[perf_event]
pub fn oncpu_sample(ctx: PerfEventContext) -> u32 {
    try_oncpu_sample(&ctx);
    0
}

#[inline(always)]
fn try_oncpu_sample(ctx: &PerfEventContext) {
    let Some(task) = current_target() else {
        return;
    };
    bump(Counter::OncpuSamples);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let loops_only = evloop::loops_only();
    if loops_only && !evloop::past_threshold(task.tid, now) {
        return;
    }
    let (kstack, ustack) = stack_ids(
        ctx,
        Scratch::Sample,
        Counter::OncpuKstackLost,
        Counter::OncpuUstackLost,
    );
    let pystack = python_stack(&task, Scratch::Sample);
    if evloop::enabled() {
        let stacks = StackIds {
            kstack,
            ustack,
            pystack,
        };
        evloop::sampled(task.tid, stacks);
        if loops_only {
            return;
        }
    }
    let key = StackKey {
        tgid: task.tgid,
        _pad: 0,
        kstack,
        ustack,
        pystack,
        comm: current_comm(),
    };
    if let Some(count) = get_or_insert(&ONCPU_COUNTS, &key, &0, Counter::OncpuMapFull) {
        atomic_add(count, 1);
    }
}
