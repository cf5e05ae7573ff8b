//! A bench as data (bench's summary.json, `runner.bench/v1`): the matrix of cells, each reduced
//! over its runs to medians.

use serde::{Deserialize, Serialize};

use super::summary::Summary;
use crate::num::median;

/// The schema tag of a bench's summary.json.
pub const SCHEMA: &str = "runner.bench/v1";

/// How a cell of the matrix ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellStatus {
    #[default]
    Ok,
    /// The app does not support the scenario.
    Unsupported,
    /// A run failed; the reason says why.
    Failed,
    /// Ctrl-C stopped the bench in this cell.
    Interrupted,
}

impl CellStatus {
    /// The status as written in the files.
    pub fn name(self) -> &'static str {
        match self {
            CellStatus::Ok => "ok",
            CellStatus::Unsupported => "unsupported",
            CellStatus::Failed => "failed",
            CellStatus::Interrupted => "interrupted",
        }
    }
}

/// One cell of the matrix, reduced over its runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    pub app: String,
    pub scenario: String,
    /// The interpreter of a Python app, when the bench has that dimension (`--python`):
    /// version and build as its runs recorded it, else as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    pub status: CellStatus,
    pub reason: Option<String>,
    pub runs: Vec<String>,
    pub rps: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub errors: f64,
    pub cpu_pct: f64,
    pub rss_mb: f64,
    /// (x, ok/s, p99 us) per schedule step: x is connections (sweep) or target rate.
    pub steps: Vec<(f64, f64, f64)>,
}

/// bench's summary.json.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Bench {
    pub schema: String,
    pub id: String,
    pub runs_per_cell: usize,
    pub cells: Vec<Cell>,
    pub interrupted: bool,
    /// What makes the comparison unfair (running targets with different limits).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The cell of `app` x `scenario` from the summaries of its runs (in `dirs`): medians.
pub fn reduce(app: &str, scenario: &str, runs: &[Summary], dirs: Vec<String>) -> Cell {
    let pick = |f: &dyn Fn(&Summary) -> f64| median(runs.iter().map(f).collect());
    let steps = match runs.first() {
        Some(first) => (0..first.load.steps.len())
            .map(|i| {
                let step = &first.load.steps[i];
                let x = step
                    .connections
                    .map(|c| c as f64)
                    .or(step.target_rate)
                    .unwrap_or(i as f64);
                let rps = median(
                    runs.iter()
                        .filter_map(|r| r.load.steps.get(i))
                        .map(|s| s.rps)
                        .collect(),
                );
                let p99 = median(
                    runs.iter()
                        .filter_map(|r| r.load.steps.get(i))
                        .map(|s| s.latency_us.p99 as f64)
                        .collect(),
                );
                (x, rps, p99)
            })
            .collect(),
        None => Vec::new(),
    };
    Cell {
        app: app.into(),
        scenario: scenario.into(),
        python: runs
            .first()
            .and_then(|r| r.python.as_ref())
            .map(|i| i.describe()),
        status: CellStatus::Ok,
        reason: None,
        runs: dirs,
        rps: pick(&|s| s.load.rps),
        p50_us: pick(&|s| s.load.latency_us.p50 as f64),
        p95_us: pick(&|s| s.load.latency_us.p95 as f64),
        p99_us: pick(&|s| s.load.latency_us.p99 as f64),
        errors: pick(&|s| s.load.error_total as f64),
        cpu_pct: pick(&|s| s.resources.summary.cpu_pct_avg),
        rss_mb: pick(&|s| s.resources.summary.rss_mb_max),
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
        let mut a = Summary::default();
        a.load.rps = 10.0;
        let mut b = Summary::default();
        b.load.rps = 30.0;
        let cell = reduce("x", "ping", &[a, b], vec![]);
        assert_eq!(cell.rps, 20.0);
        assert_eq!(cell.status, CellStatus::Ok);
    }
}
