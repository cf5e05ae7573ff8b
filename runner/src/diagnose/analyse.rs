//! The analysis of one window of event-loop data: which threads are loops, how much of their
//! time was blocked or CPU-bound, their culprits, and the verdict. A pure function of what the
//! probe recorded and the load figures.

use std::collections::{BTreeMap, BTreeSet};

use probes_common::{
    evloop::{nr, LoopCallKey, StackIds, StallEvent, NO_NR},
    hist::{slot_low, HIST_SLOTS},
};

use super::{
    advice::advice,
    model::{Cause, Culprit, CulpritKind, Entry, LoadFigures, LoopThread},
};
use crate::{
    num::{round1, round2},
    probe::{
        evloop::{EvloopData, Window},
        syscalls::syscall_name,
    },
    stacks::{assemble::is_python_frame, Folded},
};

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

/// Analyses one window, with the load figures measured during it.
pub fn analyse(data: &EvloopData, window: &Window, load: LoadFigures) -> Entry {
    let duration_ns = window.duration_ns();
    let duration_s = duration_ns as f64 / 1e9;
    let loops: Vec<_> = window
        .loop_deltas()
        .into_iter()
        .filter(|(_, d)| d.waits >= MIN_WAITS && d.iterations >= MIN_ITERATIONS)
        .collect();
    let mut entry = Entry {
        target: window.label.clone(),
        duration_s: round1(duration_s),
        rps: load.rps,
        errors: load.errors,
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
        .filter(|e| tids.contains(&e.tid) && window.contains(e.start_ns))
        .collect();
    entry.stalls_per_s = round1(stalls.len() as f64 / duration_s);
    let mut groups = Groups::default();
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
        let stack = data.frames(e.tgid, stacks);
        let frame = culprit_frame(&stack, &data.library_frames);
        let bar = if blocking {
            FLAG_SYSCALL_STALL_PCT
        } else {
            FLAG_CPU_STALL_PCT
        };
        let severity = 100.0 * e.dur_ns as f64 / wall / bar;
        groups.add(
            CulpritKind::Stall,
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
    for (key, d) in window.call_deltas() {
        if !pids.contains(&key.tgid) {
            continue;
        }
        calls += d.count;
        // Recorded without blocking means the kernel classed it as blocking by nature.
        let severity = if d.count > d.blocked || is_sleep(key.nr) {
            nature_calls += d.count;
            d.count as f64 / duration_s / FLAG_CALLS_PER_S
        } else {
            blocked_call_ns += d.total_ns;
            100.0 * d.total_ns as f64 / wall / FLAG_BLOCKED_CALL_PCT
        };
        let stack = call_stack(data, &key);
        let frame = culprit_frame(&stack, &data.library_frames);
        groups.add(
            CulpritKind::Call,
            Some(key.nr),
            stack,
            frame,
            (d.count, d.total_ns, d.max_ns, severity),
        );
    }
    entry.blocking_calls_per_s = round1(calls as f64 / duration_s);
    let mut culprits: Vec<Culprit> = groups.0.into_values().collect();
    // Most over its bar first; among equals, stalls first, then by time.
    culprits.sort_by(|a, b| {
        b.severity
            .total_cmp(&a.severity)
            .then(a.kind.cmp(&b.kind))
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
    data.frames(key.tgid, key.stacks)
}

/// Culprits by (kind, syscall, Python stack).
#[derive(Default)]
struct Groups(BTreeMap<(CulpritKind, Option<String>, Vec<String>), Culprit>);

impl Groups {
    fn add(
        &mut self,
        kind: CulpritKind,
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
        let c = self
            .0
            .entry((kind, syscall.clone(), key_stack))
            .or_insert_with(|| Culprit {
                kind,
                cause: if syscall.is_some() {
                    Cause::Syscall
                } else {
                    Cause::Cpu
                },
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
    for e in data.stalls.iter().filter(|e| window.contains(e.start_ns)) {
        let (nr, stacks) = stall_cause(e);
        let mut frames = vec![window
            .comms
            .get(&e.tid)
            .cloned()
            .unwrap_or_else(|| e.tid.to_string())];
        frames.extend(data.frames(e.tgid, stacks));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::evloop::Snapshot;
    use probes_common::evloop::LoopStats;

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
        let entry = analyse(&data, &window(calls), LoadFigures::default());
        assert!(entry.flagged);
        let kinds: Vec<(CulpritKind, &str, f64)> = entry
            .culprits
            .iter()
            .map(|c| (c.kind, c.frame.as_str(), c.severity))
            .collect();
        assert_eq!(
            kinds,
            [
                (CulpritKind::Call, "handler (app.py:41)", 100.0),
                (
                    CulpritKind::Stall,
                    "call_later (asyncio/base_events.py:727)",
                    0.04
                ),
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
            analyse(&data, &window(Vec::new()), LoadFigures::default())
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
}
