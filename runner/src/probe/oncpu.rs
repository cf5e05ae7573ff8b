//! oncpu (userspace half): samples per stack from `ONCPU_COUNTS`.

use probes_common::stack::StackKey;

use super::{read_hash, Hook, ProbeError, Probes, ProgramSpec};

/// The perf_event program, attached once per online CPU.
pub const PROGRAMS: &[ProgramSpec] = &[ProgramSpec {
    name: "oncpu_sample",
    hook: Hook::CpuClock,
}];

/// Cumulative sample counts per stack.
pub fn read(probes: &Probes) -> Result<Vec<(StackKey, u64)>, ProbeError> {
    read_hash(probes, "ONCPU_COUNTS")
}
