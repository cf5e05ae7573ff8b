//! The analysis of one window of event-loop data: which threads are loops, how busy they
//! were, what held them (stalls: one callback's stretch of work over the threshold, by cause),
//! the blocking calls they made, and the verdict. A pure function of what the probe recorded
//! and the load figures.

use std::collections::{BTreeMap, BTreeSet};

use probes_common::{
    evloop::{nr, LoopCallKey, StackIds, StallEvent, NO_NR},
    hist::{slot_low, HIST_SLOTS},
};

use super::{
    advice::advice,
    model::{Cause, Culprit, CulpritKind, Entry, LoadFigures, LoopThread, Verdict},
};
use crate::{
    num::{round1, round2},
    probe::{
        evloop::{EvloopData, Window},
        syscalls::syscall_name,
    },
    stacks::{assemble::is_python_frame, Folded},
};

/// A thread is an event loop when it has waited in epoll at least this often so far...
const MIN_WAITS: u64 = 10;
/// ...and ran at least this many iterations between the waits in the window.
const MIN_ITERATIONS: u64 = 1;
/// Calls that block by nature (sleeps, file I/O, locks) per second on a loop from which the
/// loop is flagged, however short they were...
const FLAG_CALLS_PER_S: f64 = 1.0;
/// ...when they are part of the requests' work: at least one per this many requests. (A
/// garbage collection on the loop that closes an idle worker thread's SQLite connection makes
/// a few file-lock calls now and then; a SQLite query on the loop makes several per request.)
const FLAG_CALLS_PER_REQUEST: f64 = 0.25;
/// Other calls flag the loop only when they slept for this share of its wall time (an mmap
/// that waited on a lock now and then is not a finding).
const FLAG_SLEPT_CALL_PCT: f64 = 1.0;
/// Share of the loops' wall time in blocking stalls from which the loop is flagged...
const FLAG_BLOCKING_STALL_PCT: f64 = 2.0;
/// ...when there were at least this many of them (one slow disk access is reported, not
/// flagged).
const FLAG_BLOCKING_STALLS: usize = 2;
/// The same for stalls running code or waiting for a lock or the GIL: a callback that
/// computes for longer than the threshold now and then is reported; one that takes a fifth of
/// the loop's time is a finding.
const FLAG_CPU_STALL_PCT: f64 = 20.0;
/// A loop that is not flagged but spent this share of the window working (run queue
/// excluded) is saturated.
const SATURATED_BUSY_PCT: f64 = 80.0;

/// What held the loop during a stall, and the stacks that show where.
fn classify(e: &StallEvent, data: &EvloopData) -> (Cause, Option<u32>, Vec<StackIds>) {
    let held = e.dur_ns.saturating_sub(e.runq_ns);
    let syscall_first = vec![e.sys_stacks, e.call_stacks, e.cpu_stacks];
    if e.sys_nr != NO_NR && e.sys_ns.saturating_mul(2) >= held {
        let nr = e.sys_nr;
        if e.sys_asleep_ns.saturating_mul(2) >= e.sys_ns {
            let in_runtime = data
                .runtimes
                .get(&e.tgid)
                .is_some_and(|(start, end)| (*start..*end).contains(&e.sys_arg));
            // A callback that computes and now and then waits for the GIL or a lock (handed
            // back late on a busy machine) is CPU-bound: the wait is charged to the futex only
            // when the callback hardly ran.
            let on_cpu = e
                .dur_ns
                .saturating_sub(e.asleep_ns)
                .saturating_sub(e.runq_ns);
            let cause = match nr {
                nr::FUTEX if on_cpu.saturating_mul(4) >= held => {
                    return (
                        Cause::Cpu,
                        None,
                        vec![e.cpu_stacks, e.sys_stacks, e.call_stacks],
                    )
                }
                nr::FUTEX if in_runtime => Cause::Gil,
                nr::FUTEX => Cause::Lock,
                _ => Cause::Blocking,
            };
            return (cause, Some(nr), syscall_first);
        }
        // On the CPU inside the call: file I/O is the app's blocking; a socket call that ran
        // long is kernel work or stolen time.
        let frames = data.frames(e.tgid, e.sys_stacks);
        let cause = if is_blocking_nature(nr) || touches_files(&frames) {
            Cause::Blocking
        } else {
            Cause::Kernel
        };
        return (cause, Some(nr), syscall_first);
    }
    if e.asleep_ns.saturating_mul(2) >= held {
        // Asleep outside any call: page faults waiting for the disk, or memory reclaim. On
        // a busy machine that is the machine's doing, not a call the app could make async:
        // reported as kernel time, which never flags the loop.
        return (Cause::Kernel, None, vec![e.cpu_stacks, e.call_stacks]);
    }
    (
        Cause::Cpu,
        None,
        vec![e.cpu_stacks, e.sys_stacks, e.call_stacks],
    )
}

/// Calls that block by nature (their figures do not depend on the file's kind).
fn is_blocking_nature(nr: u32) -> bool {
    matches!(
        nr,
        nr::PREAD64
            | nr::PWRITE64
            | nr::PREADV
            | nr::PWRITEV
            | nr::PREADV2
            | nr::PWRITEV2
            | nr::FSYNC
            | nr::FDATASYNC
            | nr::SYNC
            | nr::SYNCFS
            | nr::SYNC_FILE_RANGE
            | nr::FLOCK
            | nr::NANOSLEEP
            | nr::CLOCK_NANOSLEEP
    )
}

/// True when kernel frames show file-system work (a read or write of a regular file).
pub fn touches_files(frames: &[String]) -> bool {
    const FILE_FRAMES: [&str; 8] = [
        "filemap_",
        "_file_read_iter",
        "_file_write_iter",
        "generic_perform_write",
        "ext4_",
        "xfs_",
        "btrfs_",
        "shmem_",
    ];
    frames
        .iter()
        .filter(|f| f.ends_with("_[k]"))
        .any(|f| FILE_FRAMES.iter().any(|n| f.contains(n)))
}

/// The frame a culprit is named by: the innermost frame of the app's own Python code (a
/// script's top level only when nothing deeper is known), else the innermost Python frame,
/// else the native leaf of a process that is not Python, else why there is none.
pub fn culprit_frame(stack: &[String], library: &BTreeSet<String>, python: bool) -> String {
    let frames: Vec<&String> = stack.iter().filter(|f| is_python_frame(f)).collect();
    let module = |f: &&&String| f.starts_with("<module> (");
    let named = frames
        .iter()
        .rev()
        .find(|f| is_own_frame(f, library))
        .or_else(|| frames.iter().rev().find(|f| !module(f)))
        .or_else(|| frames.last());
    if let Some(f) = named {
        return (*f).clone();
    }
    if python {
        return if stack.is_empty() {
            "[no Python frame: no stack was captured]".into()
        } else {
            "[no Python frame: the walker found none at this moment]".into()
        };
    }
    stack
        .iter()
        .rev()
        .find(|f| !f.ends_with("_[k]") && !f.starts_with('['))
        .cloned()
        .unwrap_or_else(|| "[no user frame: the user stack was not captured]".into())
}

/// A Python frame of the app's own code: not library code, not a script's top level.
fn is_own_frame(frame: &str, library: &BTreeSet<String>) -> bool {
    is_python_frame(frame) && !frame.starts_with("<module> (") && !library.contains(frame)
}

/// The first candidate stack with Python frames, else the first non-empty one.
fn pick_stack(data: &EvloopData, tgid: u32, candidates: &[StackIds]) -> Vec<String> {
    let stacks: Vec<Vec<String>> = candidates
        .iter()
        .filter(|ids| ids.is_some())
        .map(|ids| data.frames(tgid, *ids))
        .filter(|f| !f.is_empty())
        .collect();
    stacks
        .iter()
        .find(|s| s.iter().any(|f| is_python_frame(f)))
        .or_else(|| stacks.first())
        .cloned()
        .unwrap_or_default()
}

/// Analyses one window, with the load figures measured during it.
pub fn analyse(data: &EvloopData, window: &Window, load: LoadFigures) -> Entry {
    let duration_ns = window.duration_ns();
    let duration_s = duration_ns as f64 / 1e9;
    // A loop that blocks for seconds per turn makes few iterations in a window: it is a loop
    // when it has waited in epoll often enough so far, and turned in the window.
    let loops: Vec<_> = window
        .loop_deltas()
        .into_iter()
        .filter(|(tid, d)| {
            let waits_so_far = window.after.loops.get(tid).map_or(0, |l| l.waits);
            waits_so_far >= MIN_WAITS && d.iterations >= MIN_ITERATIONS
        })
        .collect();
    let mut entry = Entry {
        target: window.label.clone(),
        duration_s: round1(duration_s),
        rps: load.rps,
        errors: load.errors,
        cpu_us_per_request: load.cpu_us_per_request,
        event_loop: !loops.is_empty(),
        ..Entry::default()
    };
    if loops.is_empty() {
        return entry;
    }
    // Shares are of the time the loops could run: a busy machine that keeps a loop in the
    // run queue does not dilute its stalls (stall times leave the run queue out too).
    let wall = loops
        .iter()
        .map(|(_, d)| duration_ns.saturating_sub(d.runq_ns).max(1) as f64)
        .sum::<f64>();
    let pct = |ns: u64| 100.0 * ns as f64 / wall;
    let mut hist = [0u64; HIST_SLOTS];
    let (mut events, mut iterations) = (0u64, 0u64);
    for (tid, d) in &loops {
        for (h, v) in hist.iter_mut().zip(d.hist) {
            *h += v;
        }
        events += d.events;
        iterations += d.iterations;
        // Of the time the loop could run (not waiting in the run queue), the share it worked:
        // a loop that never waits for events is saturated, however much CPU it was given.
        let busy_pct = 100.0 * d.busy_ns.saturating_sub(d.runq_ns) as f64
            / duration_ns.saturating_sub(d.runq_ns).max(1) as f64;
        entry.busy_pct = entry.busy_pct.max(round1(busy_pct));
        entry.loop_threads.push(LoopThread {
            pid: d.tgid,
            tid: *tid,
            name: window.comms.get(tid).cloned().unwrap_or_default(),
            iterations: d.iterations,
            stalls: d.stalls,
            busy_pct: round1(busy_pct),
            events_per_iteration: round1(d.events as f64 / d.iterations.max(1) as f64),
        });
    }
    entry.events_per_iteration = round1(events as f64 / iterations.max(1) as f64);
    let blocked: u64 = loops.iter().map(|(_, d)| d.blocked_ns).sum();
    entry.blocked_pct = round1(pct(blocked));
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
    let mut by_cause: BTreeMap<Cause, (u64, usize)> = BTreeMap::new();
    // CPU stalls that count toward the CPU bar: those in the app's own code, and those that
    // come back at the same place. A Python loop's single stalls scattered over library code
    // (a vCPU the hypervisor paused, a busy machine) are listed, not counted.
    let mut cpu_counted = 0u64;
    let mut cpu_elsewhere: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in &stalls {
        let (cause, nr, candidates) = classify(e, data);
        let held = e.dur_ns.saturating_sub(e.runq_ns);
        let slot = by_cause.entry(cause).or_default();
        slot.0 += held;
        slot.1 += 1;
        let stack = pick_stack(data, e.tgid, &candidates);
        let frame = culprit_frame(
            &stack,
            &data.library_frames,
            data.python_pids.contains(&e.tgid),
        );
        if cause == Cause::Cpu {
            let own = stack.iter().any(|f| is_own_frame(f, &data.library_frames));
            if own || !data.python_pids.contains(&e.tgid) {
                cpu_counted += held;
            } else {
                let slot = cpu_elsewhere.entry(frame.clone()).or_default();
                slot.0 += 1;
                slot.1 += held;
            }
        }
        let severity = match cause {
            Cause::Blocking => pct(held) / FLAG_BLOCKING_STALL_PCT,
            Cause::Cpu | Cause::Lock | Cause::Gil => pct(held) / FLAG_CPU_STALL_PCT,
            // Never the app's doing: listed, never ranked above a finding.
            Cause::Kernel => 0.0,
        };
        groups.add(
            CulpritKind::Stall,
            cause,
            nr,
            stack,
            frame,
            (1, held, held, severity),
        );
    }
    let share = |c: Cause| by_cause.get(&c).copied().unwrap_or_default();
    entry.blocking_pct = round1(pct(share(Cause::Blocking).0));
    entry.cpu_bound_pct = round1(pct(share(Cause::Cpu).0));
    entry.lock_pct = round1(pct(share(Cause::Lock).0));
    entry.gil_pct = round1(pct(share(Cause::Gil).0));
    entry.kernel_pct = round1(pct(share(Cause::Kernel).0));
    let stall_ns: u64 = by_cause.values().map(|(ns, _)| ns).sum();
    entry.stall_pct = round1(pct(stall_ns));

    let pids: Vec<u32> = loops.iter().map(|(_, d)| d.tgid).collect();
    let mut calls = 0u64;
    let mut nature_calls = 0u64;
    let mut slept_call_ns = 0u64;
    for (key, d) in window.call_deltas() {
        if !pids.contains(&key.tgid) {
            continue;
        }
        calls += d.count;
        // Recorded without sleeping means the kernel classed it as blocking by nature.
        let severity = if d.count > d.blocked || is_sleep(key.nr) {
            nature_calls += d.count;
            d.count as f64 / duration_s / FLAG_CALLS_PER_S
        } else {
            slept_call_ns += d.total_ns;
            pct(d.total_ns) / FLAG_SLEPT_CALL_PCT
        };
        let stack = call_stack(data, &key);
        let frame = culprit_frame(
            &stack,
            &data.library_frames,
            data.python_pids.contains(&key.tgid),
        );
        groups.add(
            CulpritKind::Call,
            Cause::Blocking,
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
    let repeated: u64 = cpu_elsewhere
        .values()
        .filter(|(count, _)| *count >= 2)
        .map(|(_, ns)| ns)
        .sum();
    let blocking = share(Cause::Blocking);
    entry.flagged = (pct(blocking.0) >= FLAG_BLOCKING_STALL_PCT
        && blocking.1 >= FLAG_BLOCKING_STALLS)
        || pct(cpu_counted + repeated + share(Cause::Lock).0 + share(Cause::Gil).0)
            >= FLAG_CPU_STALL_PCT
        || (nature_calls as f64 / duration_s >= FLAG_CALLS_PER_S
            && (load.rps <= 0.0
                || nature_calls as f64 / duration_s / load.rps >= FLAG_CALLS_PER_REQUEST))
        || pct(slept_call_ns) >= FLAG_SLEPT_CALL_PCT;
    entry.verdict = if entry.flagged {
        Verdict::Flagged
    } else if entry.busy_pct >= SATURATED_BUSY_PCT {
        Verdict::Saturated
    } else {
        Verdict::Ok
    };
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

/// Culprits by (kind, cause, syscall, Python stack).
#[derive(Default)]
struct Groups(BTreeMap<(CulpritKind, Cause, Option<String>, Vec<String>), Culprit>);

impl Groups {
    fn add(
        &mut self,
        kind: CulpritKind,
        cause: Cause,
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
            .entry((kind, cause, syscall.clone(), key_stack))
            .or_insert_with(|| Culprit {
                kind,
                cause,
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
        let (cause, nr, candidates) = classify(e, data);
        let mut frames = vec![window
            .comms
            .get(&e.tid)
            .cloned()
            .unwrap_or_else(|| e.tid.to_string())];
        frames.extend(pick_stack(data, e.tgid, &candidates));
        if frames.len() == 1 {
            frames.push(match (nr, cause) {
                (Some(nr), _) => format!("[{}]", syscall_name(nr)),
                (None, Cause::Kernel) => "[asleep outside a call]".into(),
                _ => "[cpu]".into(),
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
    use probes_common::{
        evloop::{LoopCallValue, LoopStats},
        stack::NO_STACK,
    };

    #[test]
    fn cpu_per_response_needs_cpu_time_and_responses() {
        let cpu = |ns, ok| LoadFigures::new(1.0, 0, ns, ok).cpu_us_per_request;
        assert_eq!(cpu(Some(3_000_000), 1000), Some(3.0));
        assert_eq!(cpu(Some(1_234_567), 1000), Some(1.23));
        assert_eq!(cpu(None, 1000), None);
        assert_eq!(cpu(Some(5_000), 0), None);
    }

    fn strings(frames: &[&str]) -> Vec<String> {
        frames.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_the_innermost_frame_of_the_apps_own_code() {
        let stack = strings(&[
            "main (app.py:3)",
            "handler (app.py:41)",
            "clock_nanosleep",
            "do_nanosleep_[k]",
        ]);
        let none = BTreeSet::new();
        assert_eq!(culprit_frame(&stack, &none, true), "handler (app.py:41)");
        let mut with_lib = stack.clone();
        with_lib.insert(2, "SocketIO.readinto (socket.py:706)".into());
        let library: BTreeSet<String> = [with_lib[2].clone()].into();
        assert_eq!(
            culprit_frame(&with_lib, &library, true),
            "handler (app.py:41)"
        );
        assert_eq!(culprit_frame(&with_lib, &none, true), with_lib[2]);
        let native = strings(&["main", "work", "x_[k]"]);
        assert_eq!(culprit_frame(&native, &none, false), "work");
        assert!(culprit_frame(&[], &none, true).starts_with("[no Python frame"));
        assert!(culprit_frame(&native, &none, true).starts_with("[no Python frame"));
    }

    #[test]
    fn an_entry_scripts_top_level_is_named_only_when_nothing_deeper_is_known() {
        let stack = strings(&[
            "<module> (uvicorn:8)",
            "BaseEventLoop._run_once (asyncio/base_events.py:1922)",
            "_SelectorSocketTransport.write (asyncio/selector_events.py:1057)",
            "send",
        ]);
        let library: BTreeSet<String> = stack[1..3].iter().cloned().collect();
        assert_eq!(
            culprit_frame(&stack, &library, true),
            "_SelectorSocketTransport.write (asyncio/selector_events.py:1057)"
        );
        assert_eq!(
            culprit_frame(&stack[..1], &library, true),
            "<module> (uvicorn:8)"
        );
    }

    #[test]
    fn kernel_frames_tell_a_file_from_a_socket() {
        assert!(touches_files(&strings(&[
            "read",
            "ksys_read_[k]",
            "filemap_read_[k]"
        ])));
        assert!(!touches_files(&strings(&[
            "send",
            "tcp_sendmsg_[k]",
            "__dev_queue_xmit_[k]"
        ])));
        assert!(!touches_files(&strings(&["ext4_like_user_function"])));
    }

    const TGID: u32 = 7;
    const SECOND: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    /// A two-second window over one loop (1000 iterations, `busy_ms` of them busy), with
    /// `calls` made in it.
    fn window(busy_ms: u64, calls: Vec<(LoopCallKey, LoopCallValue)>) -> Window {
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
                events: 12_000,
                busy_ns: busy_ms * MS,
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

    /// A stall of the loop thread inside the window, `n` ms after its start.
    fn stall(n: u64, dur_ms: u64) -> StallEvent {
        StallEvent {
            tgid: TGID,
            tid: TGID,
            start_ns: SECOND + (n + 1) * MS,
            dur_ns: dur_ms * MS,
            sys_nr: NO_NR,
            sys_stacks: StackIds::NONE,
            cpu_stacks: StackIds::NONE,
            call_stacks: StackIds::NONE,
            ..StallEvent::default()
        }
    }

    fn data(stalls: Vec<StallEvent>) -> EvloopData {
        EvloopData {
            stalls,
            python_pids: [TGID].into(),
            ..EvloopData::default()
        }
    }

    #[test]
    fn a_busy_loop_of_short_callbacks_is_saturated_not_flagged() {
        let entry = analyse(
            &data(Vec::new()),
            &window(1960, Vec::new()),
            Default::default(),
        );
        assert_eq!(entry.verdict, Verdict::Saturated);
        assert!(!entry.flagged);
        assert_eq!(entry.busy_pct, 98.0);
        assert_eq!(entry.events_per_iteration, 12.0);
        let idle = analyse(
            &data(Vec::new()),
            &window(400, Vec::new()),
            Default::default(),
        );
        assert_eq!(idle.verdict, Verdict::Ok);
    }

    #[test]
    fn a_stall_is_charged_to_what_held_the_loop() {
        let sleep = StackIds {
            kstack: 1,
            ustack: 2,
            pystack: 3,
        };
        // Asleep in clock_nanosleep for most of a 60 ms segment: blocking.
        let mut e = stall(0, 60);
        e.sys_nr = nr::CLOCK_NANOSLEEP;
        e.sys_ns = 55 * MS;
        e.sys_asleep_ns = 55 * MS;
        e.asleep_ns = 55 * MS;
        e.sys_stacks = sleep;
        let d = data(vec![e]);
        assert_eq!(classify(&e, &d).0, Cause::Blocking);
        // The same time asleep in a futex: a lock, or the GIL when the futex lies inside the
        // interpreter's runtime state.
        e.sys_nr = nr::FUTEX;
        e.sys_arg = 0x5000;
        assert_eq!(classify(&e, &d).0, Cause::Lock);
        let mut with_runtime = data(vec![e]);
        with_runtime.runtimes.insert(TGID, (0x4000, 0x6000));
        assert_eq!(classify(&e, &with_runtime).0, Cause::Gil);
        // A callback that computed for a quarter of its time and waited for the GIL the rest
        // (the GIL handed back late on a busy machine): CPU-bound.
        let mut computing = e;
        computing.sys_ns = 40 * MS;
        computing.sys_asleep_ns = 40 * MS;
        computing.asleep_ns = 40 * MS;
        assert_eq!(classify(&computing, &with_runtime).0, Cause::Cpu);
        // Running 35 ms inside a send: kernel work or stolen time, never the app's blocking.
        e.sys_nr = nr::SENDTO;
        e.sys_asleep_ns = 0;
        assert_eq!(classify(&e, &d).0, Cause::Kernel);
        // Running inside a read whose kernel frames read a file: blocking file I/O.
        e.sys_nr = nr::READ;
        let mut d = data(vec![e]);
        d.stacks.insert(
            (TGID, sleep),
            strings(&["handler (app.py:9)", "read", "filemap_read_[k]"]),
        );
        assert_eq!(classify(&e, &d).0, Cause::Blocking);
        // No syscall to speak of: CPU.
        let hot = stall(0, 40);
        assert_eq!(classify(&hot, &d).0, Cause::Cpu);
        // Asleep outside any call (page faults, memory reclaim): the kernel's, never a flag.
        let mut faulted = stall(0, 40);
        faulted.asleep_ns = 30 * MS;
        assert_eq!(
            classify(&faulted, &d),
            (
                Cause::Kernel,
                None,
                vec![faulted.cpu_stacks, faulted.call_stacks]
            )
        );
    }

    #[test]
    fn time_running_inside_socket_calls_never_flags() {
        // 300 ms of a 2 s window inside sends that ran on the CPU (the clean-machine flake).
        let mut stalls = Vec::new();
        for i in 0..10 {
            let mut e = stall(i * 100, 30);
            e.sys_nr = nr::SENDTO;
            e.sys_ns = 29 * MS;
            stalls.push(e);
        }
        let entry = analyse(&data(stalls), &window(1000, Vec::new()), Default::default());
        assert!(!entry.flagged, "{entry:#?}");
        assert_eq!(entry.kernel_pct, 15.0);
        assert_eq!(entry.culprits[0].cause, Cause::Kernel);
    }

    #[test]
    fn blocking_stalls_flag_from_two_percent_and_two_stalls() {
        let asleep = |n: u64, ms: u64| {
            let mut e = stall(n, ms);
            e.sys_nr = nr::CLOCK_NANOSLEEP;
            e.sys_ns = ms * MS;
            e.sys_asleep_ns = ms * MS;
            e
        };
        // One 60 ms stall (3% of 2 s): reported, not flagged.
        let lone = analyse(
            &data(vec![asleep(0, 60)]),
            &window(500, Vec::new()),
            Default::default(),
        );
        assert!(!lone.flagged, "{lone:#?}");
        assert_eq!(lone.blocking_pct, 3.0);
        let habit = analyse(
            &data(vec![asleep(0, 30), asleep(100, 30)]),
            &window(500, Vec::new()),
            Default::default(),
        );
        assert!(habit.flagged);
        assert_eq!(habit.verdict, Verdict::Flagged);
        assert_eq!(habit.culprits[0].severity, 1.5);
        assert!(habit.advice.unwrap().contains("asyncio.sleep"));
    }

    #[test]
    fn scattered_single_cpu_stalls_in_library_code_do_not_flag() {
        // Nine 45 ms CPU stalls (405 ms of 2 s), each at another place in library code: a
        // busy machine's pauses, listed but not a finding. The same stalls under a handler of
        // the app's own are one.
        let build = |own: bool| {
            let mut d = data(Vec::new());
            for n in 0..9u64 {
                let ids = StackIds {
                    kstack: NO_STACK,
                    ustack: n + 10,
                    pystack: n + 100,
                };
                let mut e = stall(n * 50, 45);
                e.cpu_stacks = ids;
                d.stalls.push(e);
                let lib = format!("Framework.step{n} (framework/core.py:{})", n + 1);
                d.library_frames.insert(lib.clone());
                let mut frames = vec![lib];
                if own {
                    frames.insert(0, "handler (app.py:9)".to_string());
                }
                d.stacks.insert((TGID, ids), frames);
            }
            analyse(&d, &window(1000, Vec::new()), Default::default())
        };
        let scattered = build(false);
        assert!(!scattered.flagged, "{scattered:#?}");
        assert_eq!(scattered.cpu_bound_pct, 20.3);
        assert_eq!(scattered.culprits.len(), 9);
        assert!(build(true).flagged);
    }

    #[test]
    fn cpu_stalls_flag_from_a_fifth_of_the_loops_time() {
        let hot = |n: u64| stall(n * 50, 45);
        let some = analyse(
            &data((0..8).map(hot).collect()),
            &window(1000, Vec::new()),
            Default::default(),
        );
        assert!(!some.flagged, "360 ms of 2 s: {some:#?}");
        let most = analyse(
            &data((0..9).map(hot).collect()),
            &window(1000, Vec::new()),
            Default::default(),
        );
        assert!(most.flagged, "405 ms of 2 s");
        assert_eq!(most.culprits[0].cause, Cause::Cpu);
    }

    #[test]
    fn a_steady_blocking_call_outranks_a_lone_cpu_stall() {
        let write = StackIds {
            kstack: 1,
            ustack: 2,
            pystack: 3,
        };
        // 200 fdatasync calls that never slept: blocking by nature, 100/s.
        let calls = vec![(
            LoopCallKey {
                tgid: TGID,
                nr: nr::FDATASYNC,
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
            kstack: NO_STACK,
            ustack: 5,
            pystack: 6,
        };
        let mut e = stall(0, 16);
        e.cpu_stacks = hot;
        let mut d = data(vec![e]);
        d.stacks = [
            ((TGID, write), strings(&["handler (app.py:41)"])),
            (
                (TGID, hot),
                strings(&["call_later (asyncio/base_events.py:727)"]),
            ),
        ]
        .into();
        let entry = analyse(&d, &window(500, calls.clone()), Default::default());
        assert!(entry.flagged);
        // The same calls at 100/s are a finding with 300 requests/s (one per three
        // requests), housekeeping with 1,000 (one per ten).
        let with_rps = |rps: f64| {
            analyse(
                &d,
                &window(500, calls.clone()),
                LoadFigures::new(rps, 0, None, 0),
            )
            .flagged
        };
        assert!(with_rps(300.0));
        assert!(!with_rps(1000.0));
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
    fn percentiles_from_log2_slots() {
        let mut hist = [0u64; HIST_SLOTS];
        hist[3] = 90; // 8..16 µs
        hist[14] = 10; // 16..32 ms
        assert_eq!(percentile(&hist, 0.5), 16);
        assert_eq!(percentile(&hist, 0.99), 32768);
    }
}
