//! runqlat (userspace half): run-queue latency histograms per process and totals per thread.

use std::collections::BTreeMap;

use probes_common::{
    hist::HIST_SLOTS,
    runqlat::{RunqHist, RunqThread},
};
use serde::Serialize;

use super::{comm_str, read_hash, Hook, ProbeError, Probes, ProgramSpec};
use crate::{
    hist::{buckets, percentile, Bucket},
    num::round1,
};

/// The wakeup and switch programs.
pub const PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        name: "runq_wakeup",
        hook: Hook::Tracepoint {
            category: "sched",
            name: "sched_wakeup",
        },
    },
    ProgramSpec {
        name: "runq_wakeup_new",
        hook: Hook::Tracepoint {
            category: "sched",
            name: "sched_wakeup_new",
        },
    },
    ProgramSpec {
        name: "runq_switch",
        hook: Hook::Tracepoint {
            category: "sched",
            name: "sched_switch",
        },
    },
];

/// What the runqlat maps hold.
#[derive(Clone, Debug, Default)]
pub struct RunqData {
    pub processes: Vec<(u32, RunqHist)>,
    pub threads: Vec<(u32, RunqThread)>,
}

/// Reads the cumulative histograms and thread totals.
pub fn read(probes: &Probes) -> Result<RunqData, ProbeError> {
    Ok(RunqData {
        processes: read_hash(probes, "RUNQ_HIST")?,
        threads: read_hash(probes, "RUNQ_THREADS")?,
    })
}

/// runqlat.json.
#[derive(Clone, Debug, Serialize)]
pub struct RunqReport {
    pub unit: &'static str,
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub buckets: Vec<Bucket>,
    pub processes: Vec<ProcessRunq>,
    pub threads: Vec<ThreadRunq>,
}

/// One process's histogram summary.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessRunq {
    pub tgid: u32,
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub buckets: Vec<Bucket>,
}

/// One thread's totals.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadRunq {
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    pub count: u64,
    pub total_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
}

/// Summarises the whole target and each process and thread.
pub fn report(data: &RunqData) -> RunqReport {
    let mut all = [0u64; HIST_SLOTS];
    let mut total_ns = 0u64;
    let mut processes: BTreeMap<u32, ProcessRunq> = BTreeMap::new();
    for (tgid, hist) in &data.processes {
        for (sum, slot) in all.iter_mut().zip(hist.slots.iter()) {
            *sum += slot;
        }
        total_ns += hist.total_ns;
        processes.insert(
            *tgid,
            ProcessRunq {
                tgid: *tgid,
                count: hist.count,
                mean_us: mean_us(hist.total_ns, hist.count),
                p50_us: round1(percentile(&hist.slots, 0.5)),
                p99_us: round1(percentile(&hist.slots, 0.99)),
                buckets: buckets(&hist.slots),
            },
        );
    }
    let count = all.iter().sum();
    let mut threads: Vec<ThreadRunq> = data
        .threads
        .iter()
        .map(|(tid, t)| ThreadRunq {
            tid: *tid,
            tgid: t.tgid,
            comm: comm_str(&t.comm),
            count: t.count,
            total_us: round1(t.total_ns as f64 / 1000.0),
            mean_us: mean_us(t.total_ns, t.count),
            max_us: round1(t.max_ns as f64 / 1000.0),
        })
        .collect();
    threads.sort_by_key(|t| t.tid);
    RunqReport {
        unit: "us",
        count,
        mean_us: mean_us(total_ns, count),
        p50_us: round1(percentile(&all, 0.5)),
        p99_us: round1(percentile(&all, 0.99)),
        buckets: buckets(&all),
        processes: processes.into_values().collect(),
        threads,
    }
}

fn mean_us(total_ns: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        round1(total_ns as f64 / count as f64 / 1000.0)
    }
}
