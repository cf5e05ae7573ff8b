//! The resource sampler: CPU (user and sys), RSS, threads and context switches for each
//! target process and in total, read through procfs at a fixed interval. CPU comes from the
//! scheduler's nanosecond counts (per-thread schedstat, the target cgroup's counters), never
//! from clock ticks, and is capped at what the CPUs a process may use allow. A process in
//! another PID namespace (a container's) also gets its PID there (`ns_pid`).

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    time::{Duration, Instant},
};

use procfs::process::Process;
use serde::Serialize;

use crate::{num::round1, target::cgroup::CgroupSet};

/// Sampling interval of the resource sampler (10 Hz).
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Pid used for the row that sums all target processes.
pub const TOTAL_PID: u32 = 0;

/// One row of resources.csv.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceRow {
    pub t_s: f64,
    pub pid: u32,
    pub comm: String,
    pub cpu_pct: f64,
    pub cpu_user_pct: f64,
    pub cpu_sys_pct: f64,
    pub rss_kb: u64,
    pub threads: u64,
    pub ctx_voluntary: u64,
    pub ctx_involuntary: u64,
    /// The PID inside the process's own PID namespace, when not runner's.
    pub ns_pid: Option<u32>,
}

/// Averages and maxima over the run, from the total rows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ResourceSummary {
    pub samples: usize,
    pub cpu_pct_avg: f64,
    pub cpu_pct_max: f64,
    pub rss_mb_avg: f64,
    pub rss_mb_max: f64,
    pub threads_max: u64,
    /// Context switches during the run (last total minus first).
    pub ctx_voluntary: u64,
    pub ctx_involuntary: u64,
}

/// CPU time of a process: on the CPU in nanoseconds (the scheduler's count, summed over its
/// threads), and the user/system split in clock ticks (only to divide the nanoseconds).
#[derive(Clone, Copy)]
struct CpuTime {
    ns: u64,
    utime: u64,
    stime: u64,
    at: Instant,
}

struct ProcessSample {
    comm: String,
    cpu: CpuTime,
    rss_kb: u64,
    threads: u64,
    ctx_voluntary: u64,
    ctx_involuntary: u64,
    /// CPUs the process may run on.
    cpus: Vec<usize>,
}

/// Collects resource rows over a run.
pub struct ResourceSampler {
    start: Instant,
    page_kb: u64,
    last: HashMap<u32, CpuTime>,
    ns_pids: HashMap<u32, Option<u32>>,
    /// The target's cgroup, whose counters include the CPU time of every process that ran in
    /// it, exited ones too.
    cgroup: Option<CgroupSet>,
    last_cgroup: Option<(u64, Instant)>,
    rows: Vec<ResourceRow>,
    /// The CPU time of the target so far, in nanoseconds, for other samplers.
    total_ns: u64,
}

impl Default for ResourceSampler {
    fn default() -> Self {
        Self::new(None)
    }
}

impl ResourceSampler {
    /// A sampler whose time axis starts now; with `cgroup`, the total's CPU comes from it.
    pub fn new(cgroup: Option<PathBuf>) -> Self {
        Self {
            start: Instant::now(),
            page_kb: procfs::page_size() / 1024,
            last: HashMap::new(),
            ns_pids: HashMap::new(),
            cgroup: cgroup.map(|dir| CgroupSet::of_dir(&dir)),
            last_cgroup: None,
            rows: Vec::new(),
            total_ns: 0,
        }
    }

    /// The target's CPU time so far (nanoseconds), as the total rows count it.
    pub fn total_cpu_ns(&self) -> u64 {
        self.total_ns
    }

    /// Samples each of `pids` (processes that are gone are skipped) and adds a total row.
    /// CPU% comes from nanosecond counts and never exceeds 100% times the CPUs a process (or
    /// the target) may run on.
    pub fn sample(&mut self, pids: &[u32]) {
        let now = Instant::now();
        let t_s = (now - self.start).as_secs_f64();
        let mut total = ResourceRow {
            t_s,
            pid: TOTAL_PID,
            comm: "all".into(),
            cpu_pct: 0.0,
            cpu_user_pct: 0.0,
            cpu_sys_pct: 0.0,
            rss_kb: 0,
            threads: 0,
            ctx_voluntary: 0,
            ctx_involuntary: 0,
            ns_pid: None,
        };
        let mut allowed: BTreeSet<usize> = BTreeSet::new();
        let mut delta_ns = 0u64;
        for &pid in pids {
            let Some(sample) = read_process(pid, self.page_kb) else {
                self.last.remove(&pid);
                continue;
            };
            allowed.extend(&sample.cpus);
            // A process runs on at most as many CPUs as it may use, and as it has threads.
            let cap = sample.cpus.len().min(sample.threads as usize).max(1) as f64;
            let (user, sys) = match self.last.insert(pid, sample.cpu) {
                Some(prev) => {
                    delta_ns += sample.cpu.ns.saturating_sub(prev.ns);
                    split(&prev, &sample.cpu, cap)
                }
                None => (0.0, 0.0),
            };
            let row = ResourceRow {
                t_s,
                pid,
                comm: sample.comm,
                cpu_pct: user + sys,
                cpu_user_pct: user,
                cpu_sys_pct: sys,
                rss_kb: sample.rss_kb,
                threads: sample.threads,
                ctx_voluntary: sample.ctx_voluntary,
                ctx_involuntary: sample.ctx_involuntary,
                ns_pid: *self
                    .ns_pids
                    .entry(pid)
                    .or_insert_with(|| crate::target::process::facts(pid).and_then(|f| f.ns_pid)),
            };
            total.cpu_pct += row.cpu_pct;
            total.cpu_user_pct += row.cpu_user_pct;
            total.cpu_sys_pct += row.cpu_sys_pct;
            total.rss_kb += row.rss_kb;
            total.threads += row.threads;
            total.ctx_voluntary += row.ctx_voluntary;
            total.ctx_involuntary += row.ctx_involuntary;
            self.rows.push(row);
        }
        let cap = 100.0 * allowed.len().min(total.threads as usize).max(1) as f64;
        // The cgroup's count includes processes that exited between two samples.
        match self.cgroup.as_ref().and_then(|c| c.usage().cpu_ns) {
            Some(ns) => {
                if let Some((prev, at)) = self.last_cgroup.replace((ns, now)) {
                    let secs = (now - at).as_secs_f64().max(1e-3);
                    let pct = 100.0 * ns.saturating_sub(prev) as f64 / 1e9 / secs;
                    let share = if total.cpu_pct > 0.0 {
                        total.cpu_user_pct / total.cpu_pct
                    } else {
                        1.0
                    };
                    total.cpu_pct = pct;
                    total.cpu_user_pct = pct * share;
                    total.cpu_sys_pct = pct * (1.0 - share);
                }
                self.total_ns = ns;
            }
            None => self.total_ns += delta_ns,
        }
        if total.cpu_pct > cap {
            let scale = cap / total.cpu_pct;
            total.cpu_pct = cap;
            total.cpu_user_pct *= scale;
            total.cpu_sys_pct *= scale;
        }
        self.rows.push(total);
    }

    /// All rows so far.
    pub fn rows(&self) -> &[ResourceRow] {
        &self.rows
    }

    /// resources.csv.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut out = String::from(
            "t_s,pid,comm,cpu_pct,cpu_user_pct,cpu_sys_pct,rss_kb,threads,ctx_voluntary,ctx_involuntary,ns_pid\n",
        );
        for r in &self.rows {
            out.push_str(&format!(
                "{:.3},{},{},{:.1},{:.1},{:.1},{},{},{},{},{}\n",
                r.t_s,
                r.pid,
                csv_field(&r.comm),
                r.cpu_pct,
                r.cpu_user_pct,
                r.cpu_sys_pct,
                r.rss_kb,
                r.threads,
                r.ctx_voluntary,
                r.ctx_involuntary,
                r.ns_pid.map(|p| p.to_string()).unwrap_or_default()
            ));
        }
        out.into_bytes()
    }

    /// Averages and maxima of the total rows.
    pub fn summary(&self) -> ResourceSummary {
        let totals: Vec<&ResourceRow> = self.rows.iter().filter(|r| r.pid == TOTAL_PID).collect();
        // The first total row has no CPU delta yet.
        let cpu: Vec<f64> = totals.iter().skip(1).map(|r| r.cpu_pct).collect();
        let rss: Vec<f64> = totals.iter().map(|r| r.rss_kb as f64 / 1024.0).collect();
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let (first, last) = (totals.first(), totals.last());
        let delta = |f: fn(&ResourceRow) -> u64| match (first, last) {
            (Some(a), Some(b)) => f(b).saturating_sub(f(a)),
            _ => 0,
        };
        ResourceSummary {
            samples: totals.len(),
            cpu_pct_avg: round1(mean(&cpu)),
            cpu_pct_max: round1(max(&cpu)),
            rss_mb_avg: round1(mean(&rss)),
            rss_mb_max: round1(max(&rss)),
            threads_max: totals.iter().map(|r| r.threads).max().unwrap_or(0),
            ctx_voluntary: delta(|r| r.ctx_voluntary),
            ctx_involuntary: delta(|r| r.ctx_involuntary),
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// User and system CPU% between two samples of a process, from its nanoseconds (split by
/// its ticks), at most 100% times `cap` CPUs.
fn split(prev: &CpuTime, now: &CpuTime, cap: f64) -> (f64, f64) {
    let secs = (now.at - prev.at).as_secs_f64().max(1e-3);
    let pct = (100.0 * now.ns.saturating_sub(prev.ns) as f64 / 1e9 / secs).min(100.0 * cap);
    let (u, s) = (
        now.utime.saturating_sub(prev.utime) as f64,
        now.stime.saturating_sub(prev.stime) as f64,
    );
    let user_share = if u + s > 0.0 { u / (u + s) } else { 1.0 };
    (pct * user_share, pct * (1.0 - user_share))
}

fn read_process(pid: u32, page_kb: u64) -> Option<ProcessSample> {
    let process = Process::new(pid as i32).ok()?;
    let stat = process.stat().ok()?;
    let (mut voluntary, mut involuntary, mut ns) = (0, 0, 0);
    if let Ok(tasks) = process.tasks() {
        for task in tasks.flatten() {
            if let Ok(status) = task.status() {
                voluntary += status.voluntary_ctxt_switches.unwrap_or(0);
                involuntary += status.nonvoluntary_ctxt_switches.unwrap_or(0);
            }
            if let Ok(s) = task.schedstat() {
                ns += s.sum_exec_runtime;
            }
        }
    }
    let cpus = process
        .status()
        .ok()
        .and_then(|s| s.cpus_allowed_list)
        .map(|ranges| {
            ranges
                .into_iter()
                .flat_map(|(a, b)| a as usize..=b as usize)
                .collect()
        })
        .unwrap_or_default();
    Some(ProcessSample {
        comm: stat.comm,
        cpu: CpuTime {
            ns,
            utime: stat.utime,
            stime: stat.stime,
            at: Instant::now(),
        },
        rss_kb: stat.rss * page_kb,
        threads: stat.num_threads.max(0) as u64,
        ctx_voluntary: voluntary,
        ctx_involuntary: involuntary,
        cpus,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_a_busy_child() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let ticks = || {
            let stat = Process::new(pid as i32).unwrap().stat().unwrap();
            stat.utime + stat.stime
        };
        let mut sampler = ResourceSampler::new(None);
        sampler.sample(&[pid, 999_999_999]);
        let (t0, began) = (ticks(), Instant::now());
        for _ in 0..5 {
            std::thread::sleep(INTERVAL);
            sampler.sample(&[pid, 999_999_999]);
        }
        // What the child really used over the same window, however busy the machine is.
        let used_pct = 100.0 * (ticks() - t0) as f64
            / procfs::ticks_per_second() as f64
            / began.elapsed().as_secs_f64();
        child.kill().unwrap();
        child.wait().unwrap();
        let summary = sampler.summary();
        assert_eq!(summary.samples, 6);
        assert!(used_pct > 5.0, "the child ran: {used_pct}");
        assert!(
            (summary.cpu_pct_avg - used_pct).abs() < 15.0,
            "{summary:?} against {used_pct:.1}%"
        );
        // One busy thread can use one CPU, whatever the clocks say.
        assert!(summary.cpu_pct_max <= 100.0, "{summary:?}");
        assert!(summary.rss_mb_max > 0.0);
        let csv = String::from_utf8(sampler.to_csv()).unwrap();
        assert!(csv.starts_with("t_s,pid,comm,cpu_pct"));
        assert_eq!(csv.lines().filter(|l| l.contains(",sh,")).count(), 6);
    }

    #[test]
    fn csv_quotes_awkward_names() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
