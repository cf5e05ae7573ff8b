//! offcpu (userspace half): off-CPU time per stack from `OFFCPU_TOTALS`.

use probes_common::{offcpu::OffcpuValue, stack::StackKey};
use serde::Serialize;

use super::{read_hash, Hook, ProbeError, Probes, ProgramSpec};

/// The sched_switch program.
pub const PROGRAMS: &[ProgramSpec] = &[ProgramSpec {
    name: "offcpu_switch",
    hook: Hook::Tracepoint {
        category: "sched",
        name: "sched_switch",
    },
}];

/// Cumulative off-CPU time per stack.
pub fn read(probes: &Probes) -> Result<Vec<(StackKey, OffcpuValue)>, ProbeError> {
    read_hash(probes, "OFFCPU_TOTALS")
}

/// Off-CPU time of the whole target, split by cause.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OffcpuTotals {
    pub total_us: u64,
    pub blocked_us: u64,
    pub preempted_us: u64,
    pub blocked_count: u64,
    pub preempted_count: u64,
}

/// Sums the off-CPU time of every stack.
pub fn totals(data: &[(StackKey, OffcpuValue)]) -> OffcpuTotals {
    let mut totals = OffcpuTotals::default();
    for (_, v) in data {
        totals.blocked_us += v.blocked_ns / 1000;
        totals.preempted_us += v.preempted_ns / 1000;
        totals.blocked_count += v.blocked_count;
        totals.preempted_count += v.preempted_count;
    }
    totals.total_us = totals.blocked_us + totals.preempted_us;
    totals
}

/// The weight of one stack in the off-CPU flamegraph, in microseconds.
pub fn weight_us(value: &OffcpuValue) -> u64 {
    (value.blocked_ns + value.preempted_ns) / 1000
}
