//! evloop (userspace half): stall events from the `STALLS` ring buffer, and snapshots of the
//! cumulative loop figures (`LOOPS`) and blocking calls (`LOOP_CALLS`), diffed per window.
//! This is the event-loop data model; the verdict is `crate::diagnose`'s.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use probes_common::evloop::{
    LoopCallKey, LoopCallValue, LoopStats, LoopThread, StackIds, StallEvent,
};

use super::{ProbeError, Probes, ProgramSpec};

/// No programs of its own: it runs inside the syscalls, offcpu and oncpu programs.
pub const PROGRAMS: &[ProgramSpec] = &[];

/// Cumulative loop figures at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// CLOCK_MONOTONIC, the clock of the probes' timestamps.
    pub at_ns: u64,
    pub loops: BTreeMap<u32, LoopStats>,
    pub calls: BTreeMap<LoopCallKey, LoopCallValue>,
}

/// A stretch of a recording measured on its own (one scenario or URL).
#[derive(Clone, Debug)]
pub struct Window {
    pub label: String,
    pub before: Snapshot,
    pub after: Snapshot,
    /// Thread names of the loops, by tid.
    pub comms: BTreeMap<u32, String>,
}

impl Window {
    /// The window from `before` to `after`, naming the loop threads from /proc.
    pub fn new(label: &str, before: Snapshot, after: Snapshot) -> Self {
        let comms = thread_names(&after);
        Self {
            label: label.to_string(),
            before,
            after,
            comms,
        }
    }

    /// Length of the window in nanoseconds (at least 1).
    pub fn duration_ns(&self) -> u64 {
        self.after.at_ns.saturating_sub(self.before.at_ns).max(1)
    }

    /// True when `at_ns` falls inside the window.
    pub fn contains(&self, at_ns: u64) -> bool {
        at_ns >= self.before.at_ns && at_ns < self.after.at_ns
    }

    /// What each thread's loop figures grew by inside the window.
    pub fn loop_deltas(&self) -> Vec<(u32, LoopStats)> {
        let zero = LoopStats::default();
        self.after
            .loops
            .iter()
            .map(|(tid, after)| {
                let before = self.before.loops.get(tid).unwrap_or(&zero);
                (*tid, diff(after, before))
            })
            .collect()
    }

    /// The blocking calls made inside the window, by call site (sites with none left out).
    pub fn call_deltas(&self) -> Vec<(LoopCallKey, LoopCallValue)> {
        self.after
            .calls
            .iter()
            .filter_map(|(key, after)| {
                let before = self.before.calls.get(key).copied().unwrap_or_default();
                let d = LoopCallValue {
                    count: after.count - before.count,
                    total_ns: after.total_ns - before.total_ns,
                    max_ns: after.max_ns,
                    blocked: after.blocked - before.blocked,
                };
                (d.count > 0).then_some((*key, d))
            })
            .collect()
    }
}

/// What the evloop probe saw: windows, stall events, and the frames of every stack they name.
#[derive(Clone, Debug, Default)]
pub struct EvloopData {
    pub threshold: Duration,
    pub windows: Vec<Window>,
    pub stalls: Vec<StallEvent>,
    /// Frames (root first) of each (process, stacks) named by a stall or a blocking call.
    pub stacks: BTreeMap<(u32, StackIds), Vec<String>>,
    /// Python frames among those that are library code (standard library, packages).
    pub library_frames: BTreeSet<String>,
    /// Processes whose Python stacks were walked.
    pub python_pids: BTreeSet<u32>,
    /// Where each Python process's `_PyRuntime` lies (start, end): a futex inside it is the GIL.
    pub runtimes: BTreeMap<u32, (u64, u64)>,
}

impl EvloopData {
    /// The frames of a stack (empty when unknown).
    pub fn frames(&self, tgid: u32, ids: StackIds) -> Vec<String> {
        self.stacks.get(&(tgid, ids)).cloned().unwrap_or_default()
    }
}

/// The growth of cumulative loop figures from `b` to `a`.
pub fn diff(a: &LoopStats, b: &LoopStats) -> LoopStats {
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
        events: a.events.saturating_sub(b.events),
        ..LoopStats::default()
    };
    for (i, h) in d.hist.iter_mut().enumerate() {
        *h = a.hist[i].saturating_sub(b.hist[i]);
    }
    d
}

/// Names of the loop threads in a snapshot, read from /proc.
fn thread_names(snapshot: &Snapshot) -> BTreeMap<u32, String> {
    snapshot
        .loops
        .iter()
        .filter_map(|(tid, stats)| {
            let comm =
                std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", stats.tgid)).ok()?;
            Some((*tid, comm.trim().to_string()))
        })
        .collect()
}

/// Now, on the clock of `bpf_ktime_get_ns`.
pub fn now_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// Reads the loop figures now.
pub fn snapshot(probes: &Probes) -> Result<Snapshot, ProbeError> {
    let at_ns = now_ns();
    let loops: BpfHashMap<&MapData, u32, LoopThread> = probes.map("LOOPS")?;
    let loops = loops
        .iter()
        .filter_map(Result::ok)
        .map(|(tid, l)| (tid, l.stats))
        .collect();
    let calls: BpfHashMap<&MapData, LoopCallKey, LoopCallValue> = probes.map("LOOP_CALLS")?;
    let calls = calls.iter().filter_map(Result::ok).collect();
    Ok(Snapshot {
        at_ns,
        loops,
        calls,
    })
}

/// True when every thread that has behaved as a loop is waiting for events (idle): what it
/// had queued is done.
pub fn all_waiting(probes: &Probes) -> Result<bool, ProbeError> {
    let loops: BpfHashMap<&MapData, u32, LoopThread> = probes.map("LOOPS")?;
    Ok(loops.iter().filter_map(Result::ok).all(|(_, l)| {
        l.stats.waits < probes_common::evloop::LOOP_MIN_WAITS
            || l.iter.in_wait != 0
            || l.iter.start == 0
    }))
}

/// Moves the stall events waiting in the ring buffer into `into`.
pub fn drain(probes: &mut Probes, into: &mut Vec<StallEvent>) -> Result<(), ProbeError> {
    let mut ring: RingBuf<&mut MapData> = probes.map_mut("STALLS")?;
    while let Some(item) = ring.next() {
        if item.len() >= std::mem::size_of::<StallEvent>() {
            // SAFETY: the kernel wrote a whole StallEvent (plain data) at the start of the item.
            into.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<StallEvent>()) });
        }
    }
    Ok(())
}
