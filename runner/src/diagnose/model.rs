//! The diagnosis as data: diagnosis.json and the `diagnosis` section of summary.json.

use serde::{Deserialize, Serialize};

/// Schema name of diagnosis.json.
pub const SCHEMA: &str = "runner.diagnosis/v1";

/// diagnosis.json.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub schema: String,
    pub app: String,
    pub threshold_ms: f64,
    /// Ctrl-C stopped the run: the last entry may have had less load than asked.
    pub interrupted: bool,
    pub entries: Vec<Entry>,
    /// The running target diagnosed (a container, processes, a cgroup), as it was at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::target::TargetFacts>,
    /// Why the run failed early (the target stopped or restarted); the entries cover the
    /// load until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl Diagnosis {
    /// A new diagnosis of `app` with the given threshold.
    pub fn new(app: &str, threshold: std::time::Duration) -> Self {
        Self {
            schema: SCHEMA.into(),
            app: app.into(),
            threshold_ms: threshold.as_secs_f64() * 1000.0,
            interrupted: false,
            entries: Vec::new(),
            target: None,
            failure: None,
        }
    }
}

/// The diagnosis of one window: one scenario or URL under load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The scenario or URL that was under load.
    pub target: String,
    pub duration_s: f64,
    /// Correct responses per second, and errors, of the load during the window.
    pub rps: f64,
    pub errors: u64,
    /// False when no thread of the app behaves as an event loop.
    pub event_loop: bool,
    pub loop_threads: Vec<LoopThread>,
    /// Share of the loops' wall time spent blocked (off-CPU, not in their wait).
    pub blocked_pct: f64,
    /// Share of the loops' wall time spent in CPU-bound stalls.
    pub cpu_bound_pct: f64,
    pub stalls_per_s: f64,
    /// Share of the loops' wall time spent in stalls.
    pub stall_pct: f64,
    /// Calls that block by nature (or that blocked) made on a loop, per second.
    pub blocking_calls_per_s: f64,
    pub iteration_p50_us: u64,
    pub iteration_p99_us: u64,
    /// Iteration lengths: [low µs, high µs, count] per non-empty log2 bucket.
    pub iteration_hist: Vec<[u64; 3]>,
    pub flagged: bool,
    /// Worst first.
    pub culprits: Vec<Culprit>,
    /// One line: what to do about the worst culprit.
    pub advice: Option<String>,
}

/// A thread found to be an event loop.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopThread {
    pub pid: u32,
    pub tid: u32,
    pub name: String,
    pub iterations: u64,
    pub stalls: u64,
    /// Share of the window the thread spent between its waits.
    pub busy_pct: f64,
}

/// What a culprit counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CulpritKind {
    /// Iterations over the threshold.
    #[default]
    Stall,
    /// Blocking calls of any length.
    Call,
}

/// What held the loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// A system call.
    Syscall,
    /// Work on the CPU.
    #[default]
    Cpu,
}

/// Stalls or blocking calls with one cause at one place.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Culprit {
    pub kind: CulpritKind,
    pub cause: Cause,
    pub syscall: Option<String>,
    /// The innermost Python frame, `qualname (file:line)`, else the native leaf.
    pub frame: String,
    pub count: u64,
    pub total_ms: f64,
    pub max_ms: f64,
    /// How far this culprit alone is over the bar that flags a loop (1.0: exactly at it).
    /// Culprits are ranked by it, so a lone long stall does not outrank a steady habit.
    pub severity: f64,
    /// An example stack, root first.
    pub stack: Vec<String>,
}

/// Load figures of a window, as the load engine measured them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadFigures {
    /// Correct responses per second.
    pub rps: f64,
    pub errors: u64,
}
