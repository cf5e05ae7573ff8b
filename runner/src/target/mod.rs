//! Targets runner did not start: a container (through the Docker Engine API), running
//! processes, or a cgroup. A target is resolved into what the probes filter on, described
//! for run.json (`TargetFacts`), and watched, so that one that stops or restarts during a run
//! fails the run. runner never signals, stops, restarts or changes a target of this kind.

pub mod cgroup;
pub mod container;
pub mod file;
pub mod process;

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{cgroup::CgroupTarget, probe};
use cgroup::{CgroupSet, Limits};
use container::{ContainerError, ContainerFacts, Engine};
use process::{Identity, ProcessFacts};

/// A running target, as named on the command line or in targets.toml.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    /// A container name, id, id prefix, or compose service name.
    Container(String),
    /// Processes with their descendants, followed through fork.
    Pids(Vec<u32>),
    /// A cgroup v2 directory and its descendants.
    Cgroup(PathBuf),
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Container(name) => write!(f, "container {name}"),
            TargetSpec::Pids(pids) => {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                write!(f, "pid {}", pids.join(","))
            }
            TargetSpec::Cgroup(path) => write!(f, "cgroup {}", path.display()),
        }
    }
}

/// Why a target cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("no process with PID {0}")]
    NoProcess(u32),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error("cgroup {0} has no processes: is the service running?")]
    EmptyCgroup(PathBuf),
    #[error(
        "container `{name}`: its process {pid} is gone (the container is stopping or restarting)"
    )]
    Vanished { name: String, pid: u32 },
}

/// What a target is, for run.json and the reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetFacts {
    /// `container`, `pid` or `cgroup`.
    pub kind: String,
    pub name: String,
    pub container: Option<ContainerFacts>,
    /// The cgroup v2 directory the probes filter on.
    pub cgroup: Option<PathBuf>,
    /// v1 controller directories of the same processes (hybrid machines).
    #[serde(default)]
    pub cgroup_v1: BTreeMap<String, PathBuf>,
    /// Limits in force, from the cgroup's files.
    pub limits: Limits,
    /// The processes when the run started.
    pub processes: Vec<ProcessFacts>,
}

/// A resolved target.
pub struct Running {
    pub spec: TargetSpec,
    pub facts: TargetFacts,
    probe: probe::Target,
    engine: Option<Engine>,
    /// Processes whose end means the target stopped.
    watched: Vec<Identity>,
}

impl Running {
    /// Resolves `spec`: a container through the engine, processes through procfs, a cgroup
    /// through its directory.
    pub fn resolve(spec: &TargetSpec) -> Result<Self, TargetError> {
        match spec {
            TargetSpec::Container(name) => Self::container(spec, name),
            TargetSpec::Pids(pids) => {
                let watched = pids
                    .iter()
                    .map(|&pid| Identity::of(pid).ok_or(TargetError::NoProcess(pid)))
                    .collect::<Result<Vec<_>, _>>()?;
                let cgroups = pids.first().and_then(|&p| CgroupSet::of_pid(p));
                let name = format!(
                    "pid-{}",
                    pids.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join("-")
                );
                // Its children now (a pre-fork server's workers) and, through fork, later.
                let mut tgids = pids.clone();
                tgids.extend(process::descendants(pids));
                Ok(Self::new(
                    spec,
                    "pid",
                    name,
                    None,
                    probe::Target {
                        tgids,
                        cgroups: Vec::new(),
                    },
                    cgroups,
                    watched,
                ))
            }
            TargetSpec::Cgroup(path) => {
                let target = crate::cgroup::resolve(path)?;
                if crate::cgroup::procs(&target.path).is_empty() {
                    return Err(TargetError::EmptyCgroup(target.path));
                }
                let set = CgroupSet::of_dir(&target.path);
                let name = target
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "cgroup".into());
                Ok(Self::new(
                    spec,
                    "cgroup",
                    name,
                    None,
                    probe::Target {
                        tgids: Vec::new(),
                        cgroups: vec![target],
                    },
                    Some(set),
                    Vec::new(),
                ))
            }
        }
    }

    fn container(spec: &TargetSpec, name: &str) -> Result<Self, TargetError> {
        let engine = Engine::connect()?;
        let facts = engine.running(name)?;
        let vanished = || TargetError::Vanished {
            name: facts.name.clone(),
            pid: facts.pid,
        };
        let first = Identity::of(facts.pid).ok_or_else(vanished)?;
        let set = CgroupSet::of_pid(facts.pid).ok_or_else(vanished)?;
        // The probes filter on the container's cgroup v2 group, so processes it starts later
        // (a respawned worker) are recorded too. Without cgroup v2, its processes now and
        // what they fork.
        let cgroup: Option<CgroupTarget> = set
            .v2
            .as_deref()
            .and_then(|dir| crate::cgroup::resolve(dir).ok());
        let probe = match cgroup {
            Some(c) => probe::Target {
                tgids: Vec::new(),
                cgroups: vec![c],
            },
            None => probe::Target {
                tgids: set
                    .v1
                    .values()
                    .next()
                    .map(|d| crate::cgroup::procs(d))
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| vec![facts.pid]),
                cgroups: Vec::new(),
            },
        };
        let name = facts.name.clone();
        let mut running = Self::new(
            spec,
            "container",
            name,
            Some(facts),
            probe,
            Some(set),
            vec![first],
        );
        running.engine = Some(engine);
        Ok(running)
    }

    fn new(
        spec: &TargetSpec,
        kind: &str,
        name: String,
        container: Option<ContainerFacts>,
        probe: probe::Target,
        cgroups: Option<CgroupSet>,
        watched: Vec<Identity>,
    ) -> Self {
        let mut running = Self {
            spec: spec.clone(),
            facts: TargetFacts {
                kind: kind.into(),
                name,
                container,
                cgroup: cgroups.as_ref().and_then(|s| s.v2.clone()),
                cgroup_v1: cgroups.as_ref().map(|s| s.v1.clone()).unwrap_or_default(),
                limits: cgroups.as_ref().map(CgroupSet::limits).unwrap_or_default(),
                processes: Vec::new(),
            },
            probe,
            engine: None,
            watched,
        };
        running.facts.processes = running
            .pids()
            .into_iter()
            .filter_map(process::facts)
            .collect();
        running
    }

    /// The name used in run ids and reports.
    pub fn name(&self) -> &str {
        &self.facts.name
    }

    /// What the probes filter on.
    pub fn probe_target(&self) -> probe::Target {
        self.probe.clone()
    }

    /// The target's processes now.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.probe.tgids.clone();
        for c in &self.probe.cgroups {
            pids.extend(crate::cgroup::procs(&c.path));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// The CPUs the target may run on, when its cpuset leaves some of this machine's out.
    pub fn cpuset(&self) -> Option<Vec<usize>> {
        let cpus = crate::host::parse_cpu_list(self.facts.limits.cpuset.as_deref()?).ok()?;
        let online = crate::host::online_cpus();
        (online.iter().any(|c| !cpus.contains(c))).then_some(cpus)
    }

    /// Why the target is no longer the one measured, or None. Cheap (procfs only): call it
    /// on every tick. Asks the engine for details once something is wrong.
    pub fn gone(&self) -> Option<String> {
        if let Some(dead) = self.watched.iter().find(|w| !w.alive()) {
            return Some(match &self.facts.container {
                Some(c) => self.settled_change(c).unwrap_or_else(|| {
                    format!(
                        "container `{}` stopped during the run (its process {} ended)",
                        c.name, dead.pid
                    )
                }),
                None => format!("process {} exited during the run", dead.pid),
            });
        }
        if let TargetSpec::Cgroup(_) = self.spec {
            let dir = &self.probe.cgroups.first()?.path;
            if !dir.exists() {
                return Some(format!(
                    "cgroup {} was removed during the run",
                    dir.display()
                ));
            }
            if crate::cgroup::procs(dir).is_empty() {
                return Some(format!(
                    "cgroup {} has no processes left: the service stopped during the run",
                    dir.display()
                ));
            }
        }
        None
    }

    /// At the end of a run: what changed according to the engine (a restart, a stop), or
    /// None when the container is the one measured, still running.
    pub fn confirm(&self) -> Option<String> {
        if let Some(why) = self.gone() {
            return Some(why);
        }
        self.container_change(self.facts.container.as_ref()?)
    }

    /// What the engine says once it has caught up with the end of the container's first
    /// process (a restart takes it a moment): asked for up to two seconds.
    fn settled_change(&self, before: &ContainerFacts) -> Option<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let change = self.container_change(before);
            if change.is_some() || std::time::Instant::now() >= deadline {
                return change;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn container_change(&self, before: &ContainerFacts) -> Option<String> {
        let engine = self.engine.as_ref()?;
        let now = match engine.inspect(&before.id) {
            Ok(now) => now,
            Err(ContainerError::NoSuchContainer { .. }) => {
                return Some(format!(
                    "container `{}` was removed during the run",
                    before.name
                ))
            }
            Err(_) => return None,
        };
        if now.restart_count != before.restart_count || (now.pid != before.pid && now.pid != 0) {
            return Some(format!(
                "container `{}` restarted during the run (restart count {} -> {}, now {})",
                before.name, before.restart_count, now.restart_count, now.state
            ));
        }
        if now.state != "running" {
            return Some(format!(
                "container `{}` stopped during the run (now {})",
                before.name, now.state
            ));
        }
        None
    }
}

/// Short text of where a target's processes are, for progress lines.
pub fn describe(facts: &TargetFacts) -> String {
    let mut out = format!("{} {}", facts.kind, facts.name);
    if let Some(c) = &facts.container {
        out.push_str(&format!(
            " ({}, {}, pid {})",
            &c.id[..c.id.len().min(12)],
            c.image.as_deref().unwrap_or("no image"),
            c.pid
        ));
    }
    if let Some(dir) = &facts.cgroup {
        out.push_str(&format!(" in {}", dir.display()));
    }
    out
}
