//! Event-loop diagnosis from what the evloop probe recorded: which threads are event loops,
//! how much of their time was blocked or CPU-bound, their stalls and blocking calls grouped by
//! culprit (cause and Python stack), and a verdict with advice per window.

use std::collections::{BTreeMap, BTreeSet};

use probes_common::{
    evloop::{nr, LoopCallKey, LoopStats, StackIds, StallEvent, NO_NR},
    hist::{slot_low, HIST_SLOTS},
};
use serde::{Deserialize, Serialize};

use crate::{
    folded::Folded,
    hist::{round1, round2},
    probe::syscalls::syscall_name,
    recording::{EvloopData, Window},
};

/// Schema name of diagnosis.json.
pub const SCHEMA: &str = "runner.diagnosis/v1";
/// A thread is an event loop when it waited in epoll at least this often in the window...
const MIN_WAITS: u64 = 10;
/// ...and ran at least this many iterations between the waits.
const MIN_ITERATIONS: u64 = 5;
/// Calls that block by nature (sleeps, file I/O, locks) per second on a loop from which the
/// loop is flagged, however short they were.
const FLAG_CALLS_PER_S: f64 = 1.0;
/// Other calls flag the loop only when they blocked it for this share of its wall time (an
/// mmap that waited on a lock now and then is not a finding).
const FLAG_BLOCKED_CALL_PCT: f64 = 1.0;
/// Share of the loops' wall time in stalls asleep in a syscall from which the loop is
/// flagged: a lone stall (a page fault storm, a slow disk) is reported but not flagged.
const FLAG_SYSCALL_STALL_PCT: f64 = 2.0;
/// The same for CPU-bound stalls and stalls waiting on a futex (the GIL or a lock). Higher:
/// under load a loop also runs long batches of small callbacks, and waits for the GIL while
/// worker threads run Python, without a culprit; a CPU-heavy handler or a lock held across
/// requests takes most of the loop's time under the same load.
const FLAG_CPU_STALL_PCT: f64 = 20.0;

/// diagnosis.json.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub schema: String,
    pub app: String,
    pub threshold_ms: f64,
    /// Ctrl-C stopped the run: the last entry may have had less load than asked.
    pub interrupted: bool,
    pub entries: Vec<Entry>,
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

/// Stalls or blocking calls with one cause at one place.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Culprit {
    /// "stall": iterations over the threshold; "call": blocking calls of any length.
    pub kind: String,
    /// "syscall" or "cpu".
    pub cause: String,
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

impl Culprit {
    /// `syscall via frame`, or `CPU in frame`.
    pub fn describe(&self) -> String {
        match &self.syscall {
            Some(sys) => format!("{sys} via {}", self.frame),
            None => format!("CPU in {}", self.frame),
        }
    }
}

/// Why a stall happened, from its figures.
fn stall_cause(e: &StallEvent) -> (Option<u32>, StackIds) {
    let half = e.dur_ns / 2;
    let first = |candidates: &[StackIds]| {
        candidates
            .iter()
            .copied()
            .find(StackIds::is_some)
            .unwrap_or(StackIds::NONE)
    };
    if e.top_nr != NO_NR && e.top_ns >= half {
        let stacks = if e.block_nr == e.top_nr {
            first(&[e.block_stacks, e.call_stacks, e.cpu_stacks])
        } else {
            first(&[e.call_stacks, e.cpu_stacks, e.block_stacks])
        };
        return (Some(e.top_nr), stacks);
    }
    if e.block_nr != NO_NR && e.blocked_ns >= half {
        return (Some(e.block_nr), first(&[e.block_stacks, e.call_stacks]));
    }
    (None, first(&[e.cpu_stacks, e.call_stacks, e.block_stacks]))
}

/// The frame a culprit is named by: the innermost Python frame of the application's own code,
/// else the innermost Python frame, else the innermost user frame.
pub fn culprit_frame(stack: &[String], library: &BTreeSet<String>) -> String {
    let app = stack
        .iter()
        .rev()
        .find(|f| is_python_frame(f) && !library.contains(*f));
    let python = stack.iter().rev().find(|f| is_python_frame(f));
    let native = stack.iter().rev().find(|f| !f.ends_with("_[k]"));
    app.or(python)
        .or(native)
        .cloned()
        .unwrap_or_else(|| "[unknown]".into())
}

/// True for a frame named `qualname (file:LINE)`.
pub fn is_python_frame(frame: &str) -> bool {
    frame
        .strip_suffix(')')
        .and_then(|f| f.rsplit_once(':'))
        .is_some_and(|(head, line)| head.contains(" (") && line.parse::<u32>().is_ok())
}

/// Advice for a culprit.
pub fn advice(c: &Culprit) -> String {
    let sqlite = c.stack.iter().any(|f| f.contains("sqlite"));
    match c.syscall.as_deref() {
        None => "CPU-bound work on the loop: move it to a process pool (loop.run_in_executor with a ProcessPoolExecutor) or a worker thread".into(),
        Some("clock_nanosleep" | "nanosleep") => {
            "a blocking sleep on the loop: use `await asyncio.sleep(...)`".into()
        }
        Some(_) if sqlite => "synchronous sqlite3 on the loop: use an async driver (aiosqlite) or run it in a threadpool (run_in_executor / a plain def handler)".into(),
        Some("futex") => "the loop waited on a lock or the GIL held by another thread: keep work that holds it off the loop's path".into(),
        Some(
            "poll" | "ppoll" | "select" | "pselect6" | "recvfrom" | "recvmsg" | "connect"
            | "sendto" | "read" | "write",
        ) => "blocking network I/O on the loop: use an async client or driver (httpx.AsyncClient, asyncpg) or run it in a threadpool".into(),
        Some(_) => "blocking file I/O on the loop (sqlite3, file reads and writes, fsync, file locks): use an async driver or library (aiosqlite, aiofiles) or run it in a threadpool (run_in_executor / a plain def handler)".into(),
    }
}

/// Analyses one window.
pub fn analyse(data: &EvloopData, window: &Window) -> Entry {
    let duration_ns = window
        .after
        .at_ns
        .saturating_sub(window.before.at_ns)
        .max(1);
    let duration_s = duration_ns as f64 / 1e9;
    let zero = LoopStats::default();
    let mut loops: Vec<(u32, LoopStats)> = Vec::new();
    for (tid, after) in &window.after.loops {
        let before = window.before.loops.get(tid).unwrap_or(&zero);
        let d = diff(after, before);
        if d.waits >= MIN_WAITS && d.iterations >= MIN_ITERATIONS {
            loops.push((*tid, d));
        }
    }
    let mut entry = Entry {
        target: window.label.clone(),
        duration_s: round1(duration_s),
        event_loop: !loops.is_empty(),
        ..Entry::default()
    };
    if loops.is_empty() {
        return entry;
    }
    let wall = duration_ns as f64 * loops.len() as f64;
    let mut hist = [0u64; HIST_SLOTS];
    for (tid, d) in &loops {
        for (h, v) in hist.iter_mut().zip(d.hist) {
            *h += v;
        }
        entry.loop_threads.push(LoopThread {
            pid: d.tgid,
            tid: *tid,
            name: window.comms.get(tid).cloned().unwrap_or_default(),
            iterations: d.iterations,
            stalls: d.stalls,
            busy_pct: round1(100.0 * d.busy_ns as f64 / duration_ns as f64),
        });
    }
    let blocked: u64 = loops.iter().map(|(_, d)| d.blocked_ns).sum();
    entry.blocked_pct = round1(100.0 * blocked as f64 / wall);
    entry.iteration_p50_us = percentile(&hist, 0.50);
    entry.iteration_p99_us = percentile(&hist, 0.99);
    entry.iteration_hist = hist
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(slot, &n)| [slot_low(slot), slot_low(slot + 1), n])
        .collect();

    let tids: Vec<u32> = loops.iter().map(|(t, _)| *t).collect();
    let stalls: Vec<&StallEvent> = data
        .stalls
        .iter()
        .filter(|e| {
            tids.contains(&e.tid)
                && e.start_ns >= window.before.at_ns
                && e.start_ns < window.after.at_ns
        })
        .collect();
    entry.stalls_per_s = round1(stalls.len() as f64 / duration_s);
    let mut groups: BTreeMap<(String, Option<String>, Vec<String>), Culprit> = BTreeMap::new();
    let mut cpu_ns = 0u64;
    let mut contended_ns = 0u64;
    let mut blocking_ns = 0u64;
    for e in &stalls {
        let (nr, stacks) = stall_cause(e);
        // A syscall blocks the loop when the thread sleeps in it. Time spent running inside
        // one (a long non-blocking send, or time the hypervisor took) is judged as CPU time.
        let asleep = e.blocked_ns.saturating_mul(2) >= e.dur_ns;
        let blocking = asleep && nr.is_some_and(|n| n != nr::FUTEX);
        match nr {
            Some(nr::FUTEX) => contended_ns += e.dur_ns,
            _ if blocking => blocking_ns += e.dur_ns,
            _ => cpu_ns += e.dur_ns.saturating_sub(e.blocked_ns + e.runq_ns),
        }
        let stack = data
            .stacks
            .get(&(e.tgid, stacks))
            .cloned()
            .unwrap_or_default();
        let frame = culprit_frame(&stack, &data.library_frames);
        let bar = if blocking {
            FLAG_SYSCALL_STALL_PCT
        } else {
            FLAG_CPU_STALL_PCT
        };
        let severity = 100.0 * e.dur_ns as f64 / wall / bar;
        add(
            &mut groups,
            "stall",
            nr,
            stack,
            frame,
            (1, e.dur_ns, e.dur_ns, severity),
        );
    }
    entry.cpu_bound_pct = round1(100.0 * cpu_ns as f64 / wall);
    let stall_ns: u64 = stalls.iter().map(|e| e.dur_ns).sum();
    entry.stall_pct = round1(100.0 * stall_ns as f64 / wall);
    let pids: Vec<u32> = loops.iter().map(|(_, d)| d.tgid).collect();
    let mut calls = 0u64;
    let mut nature_calls = 0u64;
    let mut blocked_call_ns = 0u64;
    for (key, after) in &window.after.calls {
        if !pids.contains(&key.tgid) {
            continue;
        }
        let before = window.before.calls.get(key).copied().unwrap_or_default();
        let count = after.count - before.count;
        if count == 0 {
            continue;
        }
        calls += count;
        let blocked = after.blocked - before.blocked;
        let total_ns = after.total_ns - before.total_ns;
        // Recorded without blocking means the kernel classed it as blocking by nature.
        let severity = if count > blocked || is_sleep(key.nr) {
            nature_calls += count;
            count as f64 / duration_s / FLAG_CALLS_PER_S
        } else {
            blocked_call_ns += total_ns;
            100.0 * total_ns as f64 / wall / FLAG_BLOCKED_CALL_PCT
        };
        let stack = call_stack(data, key);
        let frame = culprit_frame(&stack, &data.library_frames);
        add(
            &mut groups,
            "call",
            Some(key.nr),
            stack,
            frame,
            (count, total_ns, after.max_ns, severity),
        );
    }
    entry.blocking_calls_per_s = round1(calls as f64 / duration_s);
    let mut culprits: Vec<Culprit> = groups.into_values().collect();
    // Most over its bar first; among equals, stalls first, then by time.
    culprits.sort_by(|a, b| {
        b.severity
            .total_cmp(&a.severity)
            .then((b.kind == "stall").cmp(&(a.kind == "stall")))
            .then(b.total_ms.total_cmp(&a.total_ms))
    });
    for c in &mut culprits {
        c.severity = round2(c.severity);
    }
    let cpu_like_pct = 100.0 * (cpu_ns + contended_ns) as f64 / wall;
    entry.flagged = 100.0 * blocking_ns as f64 / wall >= FLAG_SYSCALL_STALL_PCT
        || cpu_like_pct >= FLAG_CPU_STALL_PCT
        || nature_calls as f64 / duration_s >= FLAG_CALLS_PER_S
        || 100.0 * blocked_call_ns as f64 / wall >= FLAG_BLOCKED_CALL_PCT;
    if entry.flagged {
        entry.advice = culprits.first().map(advice);
    }
    entry.culprits = culprits;
    entry
}

fn is_sleep(nr: u32) -> bool {
    matches!(nr, nr::NANOSLEEP | nr::CLOCK_NANOSLEEP)
}

fn call_stack(data: &EvloopData, key: &LoopCallKey) -> Vec<String> {
    data.stacks
        .get(&(key.tgid, key.stacks))
        .cloned()
        .unwrap_or_default()
}

fn add(
    groups: &mut BTreeMap<(String, Option<String>, Vec<String>), Culprit>,
    kind: &str,
    nr: Option<u32>,
    stack: Vec<String>,
    frame: String,
    (count, total_ns, max_ns, severity): (u64, u64, u64, f64),
) {
    let syscall = nr.map(syscall_name);
    // Group by cause and Python stack (native and kernel frames vary within one call site).
    let python: Vec<String> = stack
        .iter()
        .filter(|f| is_python_frame(f))
        .cloned()
        .collect();
    let key_stack = if python.is_empty() {
        vec![frame.clone()]
    } else {
        python
    };
    let c = groups
        .entry((kind.to_string(), syscall.clone(), key_stack))
        .or_insert_with(|| Culprit {
            kind: kind.into(),
            cause: if syscall.is_some() { "syscall" } else { "cpu" }.into(),
            syscall,
            frame,
            stack,
            ..Culprit::default()
        });
    c.count += count;
    c.total_ms = round1(c.total_ms + total_ns as f64 / 1e6);
    c.max_ms = c.max_ms.max(round1(max_ns as f64 / 1e6));
    c.severity += severity;
}

fn diff(a: &LoopStats, b: &LoopStats) -> LoopStats {
    let mut d = LoopStats {
        tgid: a.tgid,
        waits: a.waits.saturating_sub(b.waits),
        wait_ns: a.wait_ns.saturating_sub(b.wait_ns),
        iterations: a.iterations.saturating_sub(b.iterations),
        busy_ns: a.busy_ns.saturating_sub(b.busy_ns),
        blocked_ns: a.blocked_ns.saturating_sub(b.blocked_ns),
        runq_ns: a.runq_ns.saturating_sub(b.runq_ns),
        stalls: a.stalls.saturating_sub(b.stalls),
        stall_ns: a.stall_ns.saturating_sub(b.stall_ns),
        ..LoopStats::default()
    };
    for (i, h) in d.hist.iter_mut().enumerate() {
        *h = a.hist[i].saturating_sub(b.hist[i]);
    }
    d
}

/// Upper bound (µs) of the log2 slot holding quantile `q`.
fn percentile(hist: &[u64; HIST_SLOTS], q: f64) -> u64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0;
    }
    let want = (q * total as f64).ceil() as u64;
    let mut seen = 0;
    for (slot, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= want {
            return slot_low(slot + 1);
        }
    }
    slot_low(HIST_SLOTS)
}

/// Stall time (µs) by culprit stack, for stalls.folded.
pub fn stall_folded(data: &EvloopData, window: &Window) -> Folded {
    let mut folded = Folded::default();
    for e in data
        .stalls
        .iter()
        .filter(|e| e.start_ns >= window.before.at_ns && e.start_ns < window.after.at_ns)
    {
        let (nr, stacks) = stall_cause(e);
        let mut frames = vec![window
            .comms
            .get(&e.tid)
            .cloned()
            .unwrap_or_else(|| e.tid.to_string())];
        frames.extend(
            data.stacks
                .get(&(e.tgid, stacks))
                .cloned()
                .unwrap_or_default(),
        );
        if frames.len() == 1 {
            frames.push(match nr {
                Some(nr) => format!("[{}]", syscall_name(nr)),
                None => "[cpu]".into(),
            });
        }
        folded.add(&frames, e.dur_ns / 1000);
    }
    folded
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
        }
    }

    /// The verdict table for the terminal.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<28} {:>9} {:>6} {:>9} {:>8}  {}\n",
            "target", "blocked%", "cpu%", "stalls/s", "calls/s", "worst culprit"
        );
        for e in &self.entries {
            let culprit = if !e.event_loop {
                "no event loop".to_string()
            } else if !e.flagged {
                "ok".to_string()
            } else {
                e.culprits
                    .first()
                    .map(Culprit::describe)
                    .unwrap_or_default()
            };
            out.push_str(&format!(
                "{:<28} {:>9.1} {:>6.1} {:>9.1} {:>8.1}  {}\n",
                truncate(&e.target, 28),
                e.blocked_pct,
                e.cpu_bound_pct,
                e.stalls_per_s,
                e.blocking_calls_per_s,
                culprit
            ));
            if let Some(a) = &e.advice {
                out.push_str(&format!("{:<28} -> {a}\n", ""));
            }
        }
        out
    }

    /// diagnosis.md.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# Event-loop diagnosis: {}\n\nStall threshold {} ms. *blocked%*: share of the loops' wall time spent off-CPU outside their wait; *cpu%*: share spent in CPU-bound stalls; *calls/s*: calls that block (sleeps, file I/O, locks, waits) made on a loop.\n\n",
            self.app, self.threshold_ms
        );
        out.push_str("| target | loops | blocked % | cpu % | stalls/s | calls/s | iteration p99 | verdict |\n|---|---|---|---|---|---|---|---|\n");
        for e in &self.entries {
            let verdict = if !e.event_loop {
                "no event loop".to_string()
            } else if e.flagged {
                format!(
                    "**flagged**: {}",
                    e.culprits
                        .first()
                        .map(Culprit::describe)
                        .unwrap_or_default()
                )
            } else {
                "ok".into()
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} µs | {} |\n",
                e.target,
                e.loop_threads.len(),
                e.blocked_pct,
                e.cpu_bound_pct,
                e.stalls_per_s,
                e.blocking_calls_per_s,
                e.iteration_p99_us,
                verdict.replace('|', "\\|")
            ));
        }
        for e in self.entries.iter().filter(|e| e.flagged) {
            out.push_str(&format!("\n## {}\n\n", e.target));
            if let Some(a) = &e.advice {
                out.push_str(&format!("Advice: {a}\n\n"));
            }
            out.push_str(
                "| kind | cause | count | total ms | max ms | where |\n|---|---|---|---|---|---|\n",
            );
            for c in e.culprits.iter().take(8) {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | `{}` |\n",
                    c.kind,
                    c.syscall.as_deref().unwrap_or("cpu"),
                    c.count,
                    c.total_ms,
                    c.max_ms,
                    c.frame
                ));
            }
            if let Some(c) = e.culprits.first() {
                out.push_str("\nExample stack of the worst culprit (root first):\n\n```\n");
                for f in &c.stack {
                    out.push_str(f);
                    out.push('\n');
                }
                out.push_str("```\n");
            }
        }
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_innermost_python_frame() {
        let stack: Vec<String> = [
            "main (app.py:3)",
            "handler (app.py:41)",
            "clock_nanosleep",
            "do_nanosleep_[k]",
        ]
        .map(String::from)
        .to_vec();
        let none = BTreeSet::new();
        assert_eq!(culprit_frame(&stack, &none), "handler (app.py:41)");
        let mut with_lib = stack.clone();
        with_lib.insert(2, "SocketIO.readinto (socket.py:706)".into());
        let library: BTreeSet<String> = [with_lib[2].clone()].into();
        assert_eq!(culprit_frame(&with_lib, &library), "handler (app.py:41)");
        assert_eq!(culprit_frame(&with_lib, &none), with_lib[2]);
        let native: Vec<String> = ["main", "work", "x_[k]"].map(String::from).to_vec();
        assert_eq!(culprit_frame(&native, &none), "work");
        assert_eq!(culprit_frame(&[], &none), "[unknown]");
    }

    fn event(dur_ms: u64) -> StallEvent {
        StallEvent {
            dur_ns: dur_ms * 1_000_000,
            top_nr: NO_NR,
            block_nr: NO_NR,
            block_stacks: StackIds::NONE,
            cpu_stacks: StackIds::NONE,
            call_stacks: StackIds::NONE,
            ..StallEvent::default()
        }
    }

    #[test]
    fn a_stall_is_charged_to_its_dominant_cause() {
        let sleep = StackIds {
            kstack: 1,
            ustack: 2,
            pystack: 3,
        };
        let mut e = event(60);
        e.top_nr = 230;
        e.top_ns = 50_000_000;
        e.block_nr = 230;
        e.blocked_ns = 50_000_000;
        e.block_stacks = sleep;
        assert_eq!(stall_cause(&e), (Some(230), sleep));

        let hot = StackIds {
            kstack: -1,
            ustack: 5,
            pystack: 6,
        };
        let mut e = event(40);
        e.top_nr = 0;
        e.top_ns = 1_000_000;
        e.cpu_stacks = hot;
        e.cpu_samples = 3;
        assert_eq!(stall_cause(&e), (None, hot));
    }

    use probes_common::evloop::LoopCallValue;

    const TGID: u32 = 7;
    const SECOND: u64 = 1_000_000_000;

    /// A two-second window over one loop (1000 iterations), with `calls` made in it.
    fn window(calls: Vec<(LoopCallKey, LoopCallValue)>) -> Window {
        use crate::probe::evloop::Snapshot;
        let mut before = Snapshot {
            at_ns: SECOND,
            ..Snapshot::default()
        };
        before.loops.insert(
            TGID,
            LoopStats {
                tgid: TGID,
                ..LoopStats::default()
            },
        );
        let mut after = Snapshot {
            at_ns: 3 * SECOND,
            ..Snapshot::default()
        };
        after.loops.insert(
            TGID,
            LoopStats {
                tgid: TGID,
                waits: 1000,
                iterations: 1000,
                busy_ns: SECOND,
                ..LoopStats::default()
            },
        );
        after.calls.extend(calls);
        Window {
            label: "w".into(),
            before,
            after,
            comms: Default::default(),
        }
    }

    /// A stall of the loop thread inside the window.
    fn loop_stall(dur_ms: u64) -> StallEvent {
        StallEvent {
            tgid: TGID,
            tid: TGID,
            start_ns: 2 * SECOND,
            ..event(dur_ms)
        }
    }

    #[test]
    fn a_steady_blocking_call_outranks_a_lone_cpu_stall() {
        let write = StackIds {
            kstack: 1,
            ustack: 2,
            pystack: 3,
        };
        // 200 fdatasync calls that never went off-CPU: blocking by nature, 100/s.
        let calls = vec![(
            LoopCallKey {
                tgid: TGID,
                nr: 75,
                stacks: write,
            },
            LoopCallValue {
                count: 200,
                total_ns: 4_000_000,
                max_ns: 100_000,
                blocked: 0,
            },
        )];
        let hot = StackIds {
            kstack: -1,
            ustack: 5,
            pystack: 6,
        };
        let mut stall = loop_stall(16);
        stall.cpu_stacks = hot;
        let data = EvloopData {
            stalls: vec![stall],
            stacks: [
                ((TGID, write), vec!["handler (app.py:41)".to_string()]),
                (
                    (TGID, hot),
                    vec!["call_later (asyncio/base_events.py:727)".to_string()],
                ),
            ]
            .into(),
            ..EvloopData::default()
        };
        let entry = analyse(&data, &window(calls));
        assert!(entry.flagged);
        let kinds: Vec<(&str, &str, f64)> = entry
            .culprits
            .iter()
            .map(|c| (c.kind.as_str(), c.frame.as_str(), c.severity))
            .collect();
        assert_eq!(
            kinds,
            [
                ("call", "handler (app.py:41)", 100.0),
                ("stall", "call_later (asyncio/base_events.py:727)", 0.04),
            ]
        );
    }

    #[test]
    fn only_a_stall_asleep_in_a_syscall_counts_as_blocking() {
        // 60 ms of a 2 s window (3%) inside sendto: over the 2% bar if the loop slept
        // there, not if it ran there (a slow loopback send, or time the hypervisor took).
        let analysed = |blocked_ms: u64| {
            let mut stall = loop_stall(60);
            stall.top_nr = 44;
            stall.top_ns = 59_000_000;
            stall.block_nr = 44;
            stall.blocked_ns = blocked_ms * 1_000_000;
            let data = EvloopData {
                stalls: vec![stall],
                ..EvloopData::default()
            };
            analyse(&data, &window(Vec::new()))
        };
        let running = analysed(0);
        assert!(!running.flagged, "{running:#?}");
        assert_eq!(
            running.culprits[0].severity, 0.15,
            "60 ms against the CPU bar"
        );
        let asleep = analysed(50);
        assert!(asleep.flagged, "{asleep:#?}");
        assert_eq!(
            asleep.culprits[0].severity, 1.5,
            "60 ms against the syscall bar"
        );
    }

    #[test]
    fn percentiles_from_log2_slots() {
        let mut hist = [0u64; HIST_SLOTS];
        hist[3] = 90; // 8..16 µs
        hist[14] = 10; // 16..32 ms
        assert_eq!(percentile(&hist, 0.5), 16);
        assert_eq!(percentile(&hist, 0.99), 32768);
    }

    #[test]
    fn advice_follows_the_cause() {
        let c = |sys: Option<&str>, stack: &[&str]| Culprit {
            syscall: sys.map(String::from),
            stack: stack.iter().map(|s| s.to_string()).collect(),
            ..Culprit::default()
        };
        assert!(advice(&c(Some("clock_nanosleep"), &[])).contains("asyncio.sleep"));
        assert!(advice(&c(Some("pread64"), &["_sqlite3.so"])).contains("aiosqlite"));
        assert!(advice(&c(None, &[])).contains("CPU-bound"));
        assert!(advice(&c(Some("poll"), &[])).contains("async client"));
    }
}
