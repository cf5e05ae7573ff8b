//! The kernel's view of runner's BPF programs, for the benches: run-time statistics (runs and
//! nanoseconds inside each program) and the memory their maps hold, from `bpftool`.

use std::process::Command;

use crate::sh;

/// The programs runner attaches, by the names bpftool shows (cut to 15 characters).
const OURS: [&str; 11] = [
    "oncpu_sample",
    "offcpu_switch",
    "runq_wakeup",
    "runq_wakeup_new",
    "runq_switch",
    "syscall_enter",
    "syscall_exit",
    "target_newtask",
    "target_exit",
    "target_exec",
    "target_migrate",
];

/// The kernel's BPF run-time statistics, on while this lives.
pub struct BpfStats {
    previous: String,
}

impl BpfStats {
    pub const FILE: &str = "/proc/sys/kernel/bpf_stats_enabled";

    /// None when they cannot be turned on (not root).
    pub fn on() -> Option<Self> {
        let previous = std::fs::read_to_string(Self::FILE).unwrap_or_else(|_| "0".into());
        std::fs::write(Self::FILE, "1").ok()?;
        Some(Self { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::FILE, self.previous.trim());
    }
}

/// A program in `bpftool prog show --json`.
pub struct Program {
    pub id: u64,
    pub name: String,
    pub runs: u64,
    pub ns: u64,
    pub map_ids: Vec<u64>,
}

/// `bpftool prog show --json` now.
pub fn listing() -> anyhow::Result<String> {
    sh::output(Command::new("bpftool").args(["prog", "show", "--json"]))
}

/// runner's programs in a `bpftool prog show --json` listing.
pub fn ours(json: &str) -> Vec<Program> {
    let list: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    list.iter()
        .map(|p| Program {
            id: p["id"].as_u64().unwrap_or(0),
            name: p["name"].as_str().unwrap_or("").to_string(),
            runs: p["run_cnt"].as_u64().unwrap_or(0),
            ns: p["run_time_ns"].as_u64().unwrap_or(0),
            map_ids: p["map_ids"]
                .as_array()
                .map(|ids| ids.iter().filter_map(|i| i.as_u64()).collect())
                .unwrap_or_default(),
        })
        .filter(|p| !p.name.is_empty() && OURS.iter().any(|o| o.starts_with(p.name.as_str())))
        .collect()
}

/// Nanoseconds and runs inside runner's programs between two listings (programs matched by
/// id; one attached in between counts from zero).
pub fn between(before: &[Program], after: &[Program]) -> (u64, u64) {
    after.iter().fold((0, 0), |(ns, runs), p| {
        let (ns0, runs0) = before
            .iter()
            .find(|b| b.id == p.id)
            .map_or((0, 0), |b| (b.ns, b.runs));
        (
            ns + p.ns.saturating_sub(ns0),
            runs + p.runs.saturating_sub(runs0),
        )
    })
}

/// (name, bytes_memlock) of the maps in `bpftool map show --json` whose ids are in `ids`.
pub fn map_memory(json: &str, ids: &std::collections::BTreeSet<u64>) -> Vec<(String, u64)> {
    let list: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    list.iter()
        .filter(|m| m["id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_string(),
                m["bytes_memlock"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}
