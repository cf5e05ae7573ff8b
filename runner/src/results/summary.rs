//! summary.json (`runner.summary/v1`): a run's figures and the data its charts are drawn
//! from, so `runner report DIR` can re-render from this file alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    cpython::install::Install,
    diagnose,
    load::figures::{LoadReport, Percentiles},
    probe::python::PythonReport,
    record::{Recording, TopFrame},
    sampler::ResourceSummary,
    stacks::symbolize::{SymbolStats, UnnamedNative},
    target::{cgroup::CgroupResources, process::ProcessFacts, TargetFacts},
};

/// Latency figures kept in a summary, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl From<&Percentiles> for Latency {
    fn from(p: &Percentiles) -> Self {
        Self {
            p50: p.p50,
            p90: p.p90,
            p95: p.p95,
            p99: p.p99,
            p999: p.p999,
            max: p.max,
            mean: p.mean,
        }
    }
}

/// One step of a schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub label: String,
    /// Connections (closed loop) or target rate (open loop), for charts.
    pub connections: Option<usize>,
    pub target_rate: Option<f64>,
    pub rps: f64,
    pub error_rps: f64,
    pub latency_us: Latency,
}

/// One second of the load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub second: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// The load figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub error_total: u64,
    pub duration_s: f64,
    pub rps: f64,
    pub error_rps: f64,
    pub latency_us: Latency,
    pub latency_uncorrected_us: Option<Latency>,
    pub target_rate: Option<f64>,
    pub achieved_rate: Option<f64>,
    pub steps: Vec<StepSummary>,
    pub timeseries: Vec<Second>,
    /// (percentile, latency in us) points of the corrected distribution.
    pub spectrum: Vec<(f64, u64)>,
}

impl LoadSummary {
    /// The summary of a load report; `spectrum` from its histogram.
    pub fn new(r: &LoadReport, spectrum: Vec<(f64, u64)>) -> Self {
        let t = &r.total;
        Self {
            requests: t.requests,
            ok: t.ok,
            errors: t.errors.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            error_total: t.error_total,
            duration_s: t.duration_s,
            rps: t.rps,
            error_rps: t.error_rps,
            latency_us: (&t.latency_us).into(),
            latency_uncorrected_us: t.latency_uncorrected_us.as_ref().map(Latency::from),
            target_rate: t.target_rate,
            achieved_rate: t.achieved_rate,
            steps: r
                .steps
                .iter()
                .map(|s| StepSummary {
                    label: s.label.clone(),
                    connections: match s.load {
                        crate::load::schedule::StepLoad::Closed { connections } => {
                            Some(connections)
                        }
                        _ => None,
                    },
                    target_rate: s.figures.target_rate,
                    rps: s.figures.rps,
                    error_rps: s.figures.error_rps,
                    latency_us: (&s.figures.latency_us).into(),
                })
                .collect(),
            timeseries: r
                .timeseries
                .iter()
                .map(|s| Second {
                    second: s.second,
                    ok: s.ok,
                    errors: s.errors,
                    p50_us: s.p50_us,
                    p99_us: s.p99_us,
                })
                .collect(),
            spectrum,
        }
    }
}

/// Resource figures of the app: the sampler's summary, and its CPU over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(flatten)]
    pub summary: ResourceSummary,
    /// (seconds, CPU %) of the app, summed over its processes.
    pub cpu_series: Vec<(f64, f64)>,
    /// The cgroup's own counters (CPU time, memory, throttling) and limits, when the target
    /// is a cgroup: a container, `--cgroup`, or an app runner started.
    #[serde(default)]
    pub cgroup: Option<CgroupResources>,
}

/// One syscall among the top ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyscallTop {
    pub name: String,
    pub count: u64,
    pub total_us: f64,
    pub p99_us: f64,
}

/// What the probes saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeSummary {
    pub oncpu_samples: u64,
    pub offcpu_us: u64,
    pub offcpu_blocked_us: u64,
    pub offcpu_preempted_us: u64,
    pub lost: u64,
    /// The non-zero loss counters, and why stack ids failed (`stack_id_collisions`...).
    #[serde(default)]
    pub lost_detail: BTreeMap<String, u64>,
    pub syscalls_top: Vec<SyscallTop>,
    pub runqlat_us: BTreeMap<String, f64>,
    pub top_frames: Vec<(String, u64, f64)>,
    /// The same by innermost Python frame.
    #[serde(default)]
    pub top_python_frames: Vec<(String, u64, f64)>,
    /// Python interpreters found and what their stack walker saw.
    #[serde(default)]
    pub python: PythonReport,
    /// How native frames were named: stripped and unreadable objects among them.
    #[serde(default)]
    pub symbolization: SymbolStats,
    /// The on-CPU samples with native frames that have no names, by object, why, and the fix.
    #[serde(default)]
    pub unnamed_native: Option<UnnamedNative>,
}

impl ProbeSummary {
    /// The probe figures of a recording, when it had probes.
    pub fn of(rec: &Recording) -> Option<Self> {
        rec.counters.as_ref()?;
        Some(Self {
            oncpu_samples: rec.oncpu_samples(),
            offcpu_us: rec.offcpu_totals.total_us,
            offcpu_blocked_us: rec.offcpu_totals.blocked_us,
            offcpu_preempted_us: rec.offcpu_totals.preempted_us,
            lost: rec.lost_total(),
            lost_detail: rec.lost_detail(),
            syscalls_top: rec
                .syscalls
                .by_total_time()
                .into_iter()
                .take(5)
                .map(|(name, s)| SyscallTop {
                    name: name.into(),
                    count: s.count,
                    total_us: s.total_us,
                    p99_us: s.p99_us,
                })
                .collect(),
            runqlat_us: [
                ("p50".to_string(), rec.runq.p50_us),
                ("p99".to_string(), rec.runq.p99_us),
            ]
            .into_iter()
            .collect(),
            top_frames: rec
                .top_frames(5)
                .into_iter()
                .map(
                    |TopFrame {
                         frame,
                         samples,
                         share,
                     }| (frame, samples, share),
                )
                .collect(),
            top_python_frames: rec
                .top_python_frames(5)
                .into_iter()
                .map(|f| (f.frame, f.samples, f.share))
                .collect(),
            python: rec.python.clone(),
            symbolization: rec.symbols.clone(),
            unnamed_native: rec.symbols.unnamed_in(&rec.oncpu),
        })
    }
}

/// summary.json.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    pub run_id: String,
    pub app: String,
    pub scenario: String,
    pub status: RunStatus,
    pub failure: Option<String>,
    pub started_at: String,
    /// A running target runner profiled (container, processes, cgroup), as it was at start.
    #[serde(default)]
    pub target: Option<TargetFacts>,
    /// The interpreter of a Python app runner started: version, build flags, path.
    #[serde(default)]
    pub python: Option<Install>,
    /// Every process recorded, with its PID inside its own namespace (a container's).
    #[serde(default)]
    pub processes: Vec<ProcessFacts>,
    pub load: LoadSummary,
    pub resources: Resources,
    pub probes: Option<ProbeSummary>,
    /// The event-loop diagnosis of the run (see diagnosis.json of `runner diagnose`).
    #[serde(default)]
    pub diagnosis: Option<diagnose::Entry>,
    /// What else the machine did during the load, per second.
    #[serde(default)]
    pub interference: Option<crate::interference::Interference>,
    /// Artifact name -> path relative to the run directory.
    pub artifacts: BTreeMap<String, String>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    #[default]
    Ok,
    /// Stopped by Ctrl-C (or SIGTERM) before the load ended.
    Interrupted,
    /// The app died during the load.
    Failed,
}

impl RunStatus {
    /// The status as summary.json writes it.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The schema tag of summary.json.
pub const SCHEMA: &str = "runner.summary/v1";
