//! The diagnosis as data: diagnosis.json and the `diagnosis` section of summary.json.

use serde::{Deserialize, Serialize};

/// Schema name of diagnosis.json.
pub const SCHEMA: &str = "runner.diagnosis/v2";

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
    /// The interpreter of a Python app runner started: version, build, path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<crate::cpython::install::Install>,
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
            python: None,
            failure: None,
        }
    }
}

/// The verdict on one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No thread behaved as an event loop.
    #[default]
    NoLoop,
    /// Loops, not blocked, with time to spare.
    Ok,
    /// Loops busy nearly all the time with short callbacks: saturated, not blocked.
    Saturated,
    /// Something blocked a loop: see the culprits.
    Flagged,
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
    /// The app's CPU time per correct response during the window's load (µs), from the
    /// scheduler's nanosecond counts; the probes' own cost shows here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_request: Option<f64>,
    /// False when no thread of the app behaves as an event loop.
    pub event_loop: bool,
    pub verdict: Verdict,
    pub loop_threads: Vec<LoopThread>,
    /// The busiest loop's utilisation: of the time it could run (not waiting in the run
    /// queue), the share it spent working between its waits.
    pub busy_pct: f64,
    /// Ready events per iteration (what each turn of a loop had to handle), over all loops.
    pub events_per_iteration: f64,
    /// Share of the loops' wall time spent asleep outside their waits.
    pub blocked_pct: f64,
    /// Shares of the loops' wall time in stalls by cause: asleep in a blocking call (or
    /// reading and writing files), running Python or native code, waiting for a lock or for
    /// the GIL, and running inside a socket call (kernel work or stolen time: never flagged).
    pub blocking_pct: f64,
    pub cpu_bound_pct: f64,
    pub lock_pct: f64,
    pub gil_pct: f64,
    pub kernel_pct: f64,
    pub stalls_per_s: f64,
    /// Share of the loops' wall time spent in stalls, all causes.
    pub stall_pct: f64,
    /// Calls that block by nature (or that slept) made on a loop, per second.
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
    /// Of the time the thread could run, the share it spent working between its waits.
    pub busy_pct: f64,
    /// Ready events per iteration.
    pub events_per_iteration: f64,
}

/// What a culprit counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CulpritKind {
    /// Stretches of one callback over the threshold.
    #[default]
    Stall,
    /// Blocking calls of any length.
    Call,
}

/// What held the loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// Asleep in a system call, or reading and writing files.
    Blocking,
    /// Waiting for a lock (a futex outside the interpreter).
    Lock,
    /// Waiting for the GIL (a futex inside the interpreter's runtime state).
    Gil,
    /// Work on the CPU (Python or native code).
    #[default]
    Cpu,
    /// Running inside a socket call: kernel work, or time the hypervisor took.
    Kernel,
}

/// Stalls or blocking calls with one cause at one place.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Culprit {
    pub kind: CulpritKind,
    pub cause: Cause,
    pub syscall: Option<String>,
    /// The innermost frame of the app's own Python code, `qualname (file:line)`; else the
    /// innermost Python frame; else why there is none, in brackets.
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
    /// The app's CPU time per correct response (µs), when known.
    pub cpu_us_per_request: Option<f64>,
}

impl LoadFigures {
    /// Figures with the app's CPU time per correct response, from `cpu_ns` of CPU time over
    /// `ok` correct responses (none when either is unknown or zero).
    pub fn new(rps: f64, errors: u64, cpu_ns: Option<u64>, ok: u64) -> Self {
        let cpu_us_per_request = cpu_ns
            .filter(|_| ok > 0)
            .map(|ns| (ns as f64 / 1e3 / ok as f64 * 100.0).round() / 100.0);
        Self {
            rps,
            errors,
            cpu_us_per_request,
        }
    }
}
