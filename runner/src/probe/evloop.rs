//! evloop (userspace half): stall events from the `STALLS` ring buffer, and snapshots of the
//! cumulative loop figures (`LOOPS`) and blocking calls (`LOOP_CALLS`), diffed per window.

use std::collections::BTreeMap;

use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use probes_common::evloop::{LoopCallKey, LoopCallValue, LoopStats, LoopThread, StallEvent};

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
