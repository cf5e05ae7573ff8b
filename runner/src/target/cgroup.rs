//! A target's cgroups as resources: its cgroup v2 directory and, on hybrid machines, the v1
//! controller directories of the same processes; their limits (CPU quota, cpuset, memory)
//! and usage (CPU time, memory, throttling), read from the cgroup files. Nothing is written.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use procfs::process::Process;
use serde::{Deserialize, Serialize};

/// The cgroup directories of a target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupSet {
    /// The cgroup v2 directory.
    pub v2: Option<PathBuf>,
    /// v1 controller -> directory, for controllers whose group is not the hierarchy's root.
    pub v1: BTreeMap<String, PathBuf>,
}

/// Mount points of the v1 controllers (`cpu`, `cpuacct`, `memory`, `cpuset`...).
fn v1_mounts() -> BTreeMap<String, PathBuf> {
    let mut mounts = BTreeMap::new();
    let Ok(info) = Process::myself().and_then(|p| p.mountinfo()) else {
        return mounts;
    };
    for m in info.into_iter().filter(|m| m.fs_type == "cgroup") {
        for controller in ["cpu", "cpuacct", "memory", "cpuset"] {
            if m.super_options.contains_key(controller) {
                mounts
                    .entry(controller.to_string())
                    .or_insert(m.mount_point.clone());
            }
        }
    }
    mounts
}

impl CgroupSet {
    /// The cgroups process `pid` is in.
    pub fn of_pid(pid: u32) -> Option<Self> {
        let groups = Process::new(pid as i32).ok()?.cgroups().ok()?;
        let mounts = v1_mounts();
        let mut set = CgroupSet::default();
        for g in groups.into_iter() {
            let rel = g.pathname.trim_start_matches('/');
            if g.hierarchy == 0 && g.controllers.is_empty() {
                set.v2 = crate::cgroup::v2_root().map(|root| root.join(rel));
                continue;
            }
            if rel.is_empty() {
                continue;
            }
            for c in &g.controllers {
                if let Some(mount) = mounts.get(c.as_str()) {
                    set.v1.insert(c.clone(), mount.join(rel));
                }
            }
        }
        Some(set)
    }

    /// The cgroup v2 directory `dir`, with the v1 groups of a process inside it whose v2
    /// group is `dir` itself.
    pub fn of_dir(dir: &Path) -> Self {
        let member = crate::cgroup::procs(dir)
            .into_iter()
            .filter_map(Self::of_pid)
            .find(|s| s.v2.as_deref() == Some(dir));
        CgroupSet {
            v2: Some(dir.to_path_buf()),
            v1: member.map(|m| m.v1).unwrap_or_default(),
        }
    }

    fn v2_file(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.v2.as_ref()?.join(name)).ok()
    }

    fn v1_file(&self, controller: &str, name: &str) -> Option<String> {
        fs::read_to_string(self.v1.get(controller)?.join(name)).ok()
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        let cpu_quota_cores = match self.v2_file("cpu.max") {
            Some(text) => {
                let mut parts = text.split_whitespace();
                match (parts.next(), parts.next()) {
                    (Some(q), Some(p)) => ratio(q, p),
                    _ => None,
                }
            }
            None => match (
                self.v1_file("cpu", "cpu.cfs_quota_us"),
                self.v1_file("cpu", "cpu.cfs_period_us"),
            ) {
                (Some(q), Some(p)) => ratio(q.trim(), p.trim()),
                _ => None,
            },
        };
        let cpuset = self
            .v2_file("cpuset.cpus.effective")
            .or_else(|| self.v1_file("cpuset", "cpuset.effective_cpus"))
            .or_else(|| self.v1_file("cpuset", "cpuset.cpus"))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let memory_max_bytes = self
            .v2_file("memory.max")
            .or_else(|| self.v1_file("memory", "memory.limit_in_bytes"))
            .and_then(|t| t.trim().parse::<u64>().ok())
            // v1 writes "no limit" as the largest page-aligned counter value.
            .filter(|&b| b < 1 << 62);
        Limits {
            cpu_quota_cores,
            cpuset,
            memory_max_bytes,
        }
    }

    /// Cumulative usage now.
    pub fn usage(&self) -> Usage {
        let mut u = Usage::default();
        let v2_cpu = self.v2_file("cpu.stat").map(|t| pairs(&t));
        if let Some(stat) = &v2_cpu {
            u.cpu_ns = stat.get("usage_usec").map(|v| v * 1000);
            u.user_ns = stat.get("user_usec").map(|v| v * 1000);
            u.system_ns = stat.get("system_usec").map(|v| v * 1000);
            u.nr_periods = stat.get("nr_periods").copied();
            u.nr_throttled = stat.get("nr_throttled").copied();
            u.throttled_ns = stat.get("throttled_usec").map(|v| v * 1000);
        }
        if u.cpu_ns.is_none() {
            u.cpu_ns = self
                .v1_file("cpuacct", "cpuacct.usage")
                .and_then(|t| t.trim().parse().ok());
            if let Some(stat) = self.v1_file("cpuacct", "cpuacct.stat").map(|t| pairs(&t)) {
                let ns_per_tick = 1e9 / procfs::ticks_per_second() as f64;
                let ns = |k: &str| stat.get(k).map(|t| (*t as f64 * ns_per_tick) as u64);
                u.user_ns = ns("user");
                u.system_ns = ns("system");
            }
        }
        if u.nr_periods.is_none() {
            if let Some(stat) = self.v1_file("cpu", "cpu.stat").map(|t| pairs(&t)) {
                u.nr_periods = stat.get("nr_periods").copied();
                u.nr_throttled = stat.get("nr_throttled").copied();
                u.throttled_ns = stat.get("throttled_time").copied();
            }
        }
        let number = |t: Option<String>| t.and_then(|t| t.trim().parse::<u64>().ok());
        u.memory_bytes = number(self.v2_file("memory.current"))
            .or_else(|| number(self.v1_file("memory", "memory.usage_in_bytes")));
        u.memory_peak_bytes = number(self.v2_file("memory.peak"))
            .or_else(|| number(self.v1_file("memory", "memory.max_usage_in_bytes")));
        u
    }
}

/// `quota/period` in CPUs; None when there is no quota (`max`, `-1`).
fn ratio(quota: &str, period: &str) -> Option<f64> {
    let q: f64 = quota.parse().ok().filter(|q: &f64| *q > 0.0)?;
    let p: f64 = period.parse().ok().filter(|p: &f64| *p > 0.0)?;
    Some(crate::num::round2(q / p))
}

/// The `key value` lines of a cgroup stat file.
fn pairs(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Limits of a cgroup, as its files say.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU bandwidth quota in CPUs (quota / period); None: no quota.
    pub cpu_quota_cores: Option<f64>,
    /// The CPUs its processes may run on, e.g. `0-1`.
    pub cpuset: Option<String>,
    /// Memory limit; None: no limit.
    pub memory_max_bytes: Option<u64>,
}

impl Limits {
    /// What differs between two targets' limits, as words ("CPU quota 1 vs none"...).
    pub fn differences(&self, other: &Limits) -> Vec<String> {
        let mut out = Vec::new();
        let show = |v: Option<String>| v.unwrap_or_else(|| "none".into());
        if self.cpu_quota_cores != other.cpu_quota_cores {
            out.push(format!(
                "CPU quota {} vs {}",
                show(self.cpu_quota_cores.map(|c| format!("{c} CPUs"))),
                show(other.cpu_quota_cores.map(|c| format!("{c} CPUs")))
            ));
        }
        if self.cpuset != other.cpuset {
            out.push(format!(
                "cpuset {} vs {}",
                show(self.cpuset.clone()),
                show(other.cpuset.clone())
            ));
        }
        if self.memory_max_bytes != other.memory_max_bytes {
            let mib = |b: Option<u64>| b.map(|b| format!("{} MiB", b >> 20));
            out.push(format!(
                "memory limit {} vs {}",
                show(mib(self.memory_max_bytes)),
                show(mib(other.memory_max_bytes))
            ));
        }
        out
    }
}

/// Cumulative counters of a cgroup at one moment; None where the file is missing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    pub cpu_ns: Option<u64>,
    pub user_ns: Option<u64>,
    pub system_ns: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// The kernel's high-water mark since the cgroup was created.
    pub memory_peak_bytes: Option<u64>,
    pub nr_periods: Option<u64>,
    pub nr_throttled: Option<u64>,
    pub throttled_ns: Option<u64>,
}

/// A cgroup's resources over a run, from its own counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupResources {
    /// The cgroup v2 directory.
    pub path: PathBuf,
    /// v1 controller directories read as well (hybrid machines).
    #[serde(default)]
    pub v1: BTreeMap<String, PathBuf>,
    pub samples: usize,
    pub duration_s: f64,
    /// CPU time of every process in the cgroup during the run.
    pub cpu_ns: Option<u64>,
    pub cpu_user_ns: Option<u64>,
    pub cpu_system_ns: Option<u64>,
    /// `cpu_ns` over the wall time, in percent of one CPU.
    pub cpu_pct_avg: Option<f64>,
    /// Memory charged to the cgroup at the end, and the most seen at 10 Hz during the run.
    pub memory_bytes: Option<u64>,
    pub memory_max_bytes: Option<u64>,
    /// The kernel's high-water mark, since the cgroup was created (not just this run).
    pub memory_peak_bytes: Option<u64>,
    /// CFS periods, those throttled, and the time throttled, during the run.
    pub nr_periods: Option<u64>,
    pub nr_throttled: Option<u64>,
    pub throttled_ns: Option<u64>,
    pub limits: Limits,
}

/// Samples one cgroup's counters over a run.
#[derive(Debug)]
pub struct UsageSampler {
    set: CgroupSet,
    limits: Limits,
    first: Option<(Instant, Usage)>,
    last: Option<(Instant, Usage)>,
    memory_max: Option<u64>,
    samples: usize,
}

impl UsageSampler {
    /// A sampler of `set`; its limits are read now.
    pub fn new(set: CgroupSet) -> Self {
        Self {
            limits: set.limits(),
            set,
            first: None,
            last: None,
            memory_max: None,
            samples: 0,
        }
    }

    /// Reads the counters (a cgroup that is gone keeps its last reading).
    pub fn sample(&mut self) {
        if !self.set.v2.as_deref().is_some_and(Path::exists) {
            return;
        }
        let usage = self.set.usage();
        self.memory_max = self.memory_max.max(usage.memory_bytes);
        let now = Instant::now();
        if self.first.is_none() {
            self.first = Some((now, usage.clone()));
        }
        self.last = Some((now, usage));
        self.samples += 1;
    }

    /// The run's figures: differences between the first and the last reading.
    pub fn resources(&self) -> CgroupResources {
        let mut r = CgroupResources {
            path: self.set.v2.clone().unwrap_or_default(),
            v1: self.set.v1.clone(),
            samples: self.samples,
            memory_max_bytes: self.memory_max,
            limits: self.limits.clone(),
            ..Default::default()
        };
        let (Some((t0, a)), Some((t1, b))) = (&self.first, &self.last) else {
            return r;
        };
        let delta = |f: fn(&Usage) -> Option<u64>| Some(f(b)?.saturating_sub(f(a)?));
        let wall = (*t1 - *t0).as_secs_f64();
        r.duration_s = crate::num::round2(wall);
        r.cpu_ns = delta(|u| u.cpu_ns);
        r.cpu_user_ns = delta(|u| u.user_ns);
        r.cpu_system_ns = delta(|u| u.system_ns);
        r.cpu_pct_avg = r
            .cpu_ns
            .filter(|_| wall > 0.0)
            .map(|ns| crate::num::round1(100.0 * ns as f64 / 1e9 / wall));
        r.memory_bytes = b.memory_bytes;
        r.memory_peak_bytes = b.memory_peak_bytes;
        r.nr_periods = delta(|u| u.nr_periods);
        r.nr_throttled = delta(|u| u.nr_throttled);
        r.throttled_ns = delta(|u| u.throttled_ns);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quota_pairs_and_differences() {
        assert_eq!(ratio("50000", "100000"), Some(0.5));
        assert_eq!(ratio("max", "100000"), None);
        assert_eq!(ratio("-1", "100000"), None);
        let stat = pairs("usage_usec 41824\nuser_usec 19122\nnr_throttled 3\n");
        assert_eq!(stat["usage_usec"], 41824);
        assert_eq!(stat["nr_throttled"], 3);
        let a = Limits {
            cpu_quota_cores: Some(1.0),
            cpuset: None,
            memory_max_bytes: Some(512 << 20),
        };
        assert!(a.differences(&a.clone()).is_empty());
        let b = Limits::default();
        assert_eq!(
            a.differences(&b),
            vec![
                "CPU quota 1 CPUs vs none".to_string(),
                "memory limit 512 MiB vs none".to_string()
            ]
        );
    }

    /// A directory standing in for cgroup files.
    fn fake(files: &[(&str, &str)]) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("runner-cgroup-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn reads_a_pure_cgroup_v2_group() {
        let dir = fake(&[
            ("cpu.max", "50000 100000\n"),
            ("cpuset.cpus.effective", "1\n"),
            ("memory.max", "536870912\n"),
            (
                "cpu.stat",
                "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 300\n",
            ),
            ("memory.current", "1048576\n"),
            ("memory.peak", "2097152\n"),
        ]);
        let set = CgroupSet {
            v2: Some(dir.clone()),
            v1: BTreeMap::new(),
        };
        assert_eq!(
            set.limits(),
            Limits {
                cpu_quota_cores: Some(0.5),
                cpuset: Some("1".into()),
                memory_max_bytes: Some(512 << 20),
            }
        );
        let u = set.usage();
        assert_eq!(u.cpu_ns, Some(2_000_000));
        assert_eq!((u.user_ns, u.system_ns), (Some(1_500_000), Some(500_000)));
        assert_eq!((u.nr_periods, u.nr_throttled), (Some(10), Some(4)));
        assert_eq!(u.throttled_ns, Some(300_000));
        assert_eq!(
            (u.memory_bytes, u.memory_peak_bytes),
            (Some(1 << 20), Some(2 << 20))
        );
        fs::write(dir.join("cpu.max"), "max 100000\n").unwrap();
        fs::write(dir.join("memory.max"), "max\n").unwrap();
        let l = set.limits();
        assert_eq!((l.cpu_quota_cores, l.memory_max_bytes), (None, None));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reads_v1_controllers_beside_an_empty_v2_group() {
        // Hybrid: the v2 group only counts CPU time; limits, throttling and memory are v1's.
        let v2 = fake(&[("cpu.stat", "usage_usec 7\nuser_usec 4\nsystem_usec 3\n")]);
        let cpu = fake(&[
            ("cpu.cfs_quota_us", "200000\n"),
            ("cpu.cfs_period_us", "100000\n"),
            (
                "cpu.stat",
                "nr_periods 5\nnr_throttled 2\nthrottled_time 9000\n",
            ),
        ]);
        let memory = fake(&[
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.max_usage_in_bytes", "8192\n"),
        ]);
        let cpuset = fake(&[("cpuset.cpus", "0-1\n")]);
        let set = CgroupSet {
            v2: Some(v2.clone()),
            v1: [
                ("cpu".to_string(), cpu.clone()),
                ("memory".to_string(), memory.clone()),
                ("cpuset".to_string(), cpuset.clone()),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            set.limits(),
            Limits {
                cpu_quota_cores: Some(2.0),
                cpuset: Some("0-1".into()),
                memory_max_bytes: None,
            }
        );
        let u = set.usage();
        assert_eq!(u.cpu_ns, Some(7_000));
        assert_eq!(
            (u.nr_periods, u.nr_throttled, u.throttled_ns),
            (Some(5), Some(2), Some(9000))
        );
        assert_eq!(
            (u.memory_bytes, u.memory_peak_bytes),
            (Some(4096), Some(8192))
        );
        for d in [v2, cpu, memory, cpuset] {
            fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn samples_this_process_cgroup() {
        let set = CgroupSet::of_pid(std::process::id()).expect("own cgroups");
        let v2 = set.v2.clone().expect("a cgroup v2 directory");
        assert!(v2.join("cgroup.procs").exists(), "{v2:?}");
        let mut sampler = UsageSampler::new(set);
        sampler.sample();
        std::thread::sleep(std::time::Duration::from_millis(20));
        sampler.sample();
        let r = sampler.resources();
        assert_eq!(r.samples, 2);
        // cgroup v2 always counts CPU time (cpu.stat is a core file).
        assert!(r.cpu_ns.is_some(), "{r:?}");
        assert!(r.duration_s > 0.0, "{r:?}");
    }
}
