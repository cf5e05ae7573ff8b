//! syscalls (userspace half): per-process, per-syscall statistics, named for x86_64.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuHashMap};
use probes_common::{
    hist::HIST_SLOTS,
    syscalls::{SyscallKey, SyscallStats},
};
use serde::Serialize;

use super::{Hook, ProbeError, Probes, ProgramSpec};
use crate::{hist::percentile, num::round1};

/// The programs on the sys_enter and sys_exit raw tracepoints.
pub const PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        name: "syscall_enter",
        hook: Hook::RawTracepoint { name: "sys_enter" },
    },
    ProgramSpec {
        name: "syscall_exit",
        hook: Hook::RawTracepoint { name: "sys_exit" },
    },
];

/// Cumulative statistics, summed over CPUs.
pub fn read(probes: &Probes) -> Result<Vec<(SyscallKey, SyscallStats)>, ProbeError> {
    let map: PerCpuHashMap<&MapData, SyscallKey, SyscallStats> = PerCpuHashMap::try_from(
        probes
            .ebpf()
            .map("SYSCALL_STATS")
            .ok_or(ProbeError::MissingMap("SYSCALL_STATS"))?,
    )
    .map_err(|source| ProbeError::Map {
        map: "SYSCALL_STATS",
        source,
    })?;
    let mut out = Vec::new();
    for entry in map.iter() {
        let (key, per_cpu) = entry.map_err(|source| ProbeError::Map {
            map: "SYSCALL_STATS",
            source,
        })?;
        let mut sum = SyscallStats {
            count: 0,
            errors: 0,
            total_ns: 0,
            slots: [0; HIST_SLOTS],
        };
        for stats in per_cpu.iter() {
            add(&mut sum, stats);
        }
        out.push((key, sum));
    }
    Ok(out)
}

fn add(sum: &mut SyscallStats, stats: &SyscallStats) {
    sum.count += stats.count;
    sum.errors += stats.errors;
    sum.total_ns += stats.total_ns;
    for (s, v) in sum.slots.iter_mut().zip(stats.slots.iter()) {
        *s += v;
    }
}

/// The x86_64 name of a syscall number.
pub fn syscall_name(nr: u32) -> String {
    match syscalls::Sysno::new(nr as usize) {
        Some(sysno) => sysno.name().to_string(),
        None => format!("syscall_{nr}"),
    }
}

/// One syscall's summary in syscalls.json.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SyscallSummary {
    pub nr: u32,
    pub count: u64,
    pub errors: u64,
    pub total_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// syscalls.json: totals per syscall name over the whole target, and per process.
#[derive(Clone, Debug, Serialize)]
pub struct SyscallReport {
    pub syscalls: BTreeMap<String, SyscallSummary>,
    pub processes: BTreeMap<u32, BTreeMap<String, SyscallSummary>>,
}

impl SyscallReport {
    /// Syscalls by total time, longest first.
    pub fn by_total_time(&self) -> Vec<(&str, &SyscallSummary)> {
        let mut rows: Vec<_> = self.syscalls.iter().map(|(n, s)| (n.as_str(), s)).collect();
        rows.sort_by(|a, b| b.1.total_us.total_cmp(&a.1.total_us).then(a.0.cmp(b.0)));
        rows
    }
}

/// Builds the report from the raw statistics.
pub fn report(data: &[(SyscallKey, SyscallStats)]) -> SyscallReport {
    let mut totals: BTreeMap<u32, SyscallStats> = BTreeMap::new();
    let mut processes: BTreeMap<u32, BTreeMap<String, SyscallSummary>> = BTreeMap::new();
    for (key, stats) in data {
        let sum = totals.entry(key.nr).or_insert(SyscallStats {
            count: 0,
            errors: 0,
            total_ns: 0,
            slots: [0; HIST_SLOTS],
        });
        add(sum, stats);
        processes
            .entry(key.tgid)
            .or_default()
            .insert(syscall_name(key.nr), summary(key.nr, stats));
    }
    SyscallReport {
        syscalls: totals
            .iter()
            .map(|(nr, stats)| (syscall_name(*nr), summary(*nr, stats)))
            .collect(),
        processes,
    }
}

fn summary(nr: u32, stats: &SyscallStats) -> SyscallSummary {
    SyscallSummary {
        nr,
        count: stats.count,
        errors: stats.errors,
        total_us: round1(stats.total_ns as f64 / 1000.0),
        p50_us: round1(percentile(&stats.slots, 0.5)),
        p99_us: round1(percentile(&stats.slots, 0.99)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_x86_64_syscalls() {
        assert_eq!(syscall_name(0), "read");
        assert_eq!(syscall_name(110), "getppid");
        assert_eq!(syscall_name(230), "clock_nanosleep");
        assert_eq!(syscall_name(9999), "syscall_9999");
    }

    #[test]
    fn report_merges_processes() {
        let mut slots = [0; HIST_SLOTS];
        slots[1] = 3;
        let stats = SyscallStats {
            count: 3,
            errors: 1,
            total_ns: 6000,
            slots,
        };
        let data = [
            (SyscallKey { tgid: 1, nr: 110 }, stats),
            (SyscallKey { tgid: 2, nr: 110 }, stats),
        ];
        let report = report(&data);
        let getppid = &report.syscalls["getppid"];
        assert_eq!(
            (getppid.count, getppid.errors, getppid.total_us),
            (6, 2, 12.0)
        );
        assert_eq!(report.processes.len(), 2);
    }
}
