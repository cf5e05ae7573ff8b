//! cgroup v2 lookups: a directory's id and level (what the probes filter on), the hierarchy
//! layout (pure v2, hybrid or v1 only), and the processes inside a subtree.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
use procfs::process::Process;
use serde::Serialize;

/// A cgroup v2 directory as a probe target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupTarget {
    pub path: PathBuf,
    /// The id `bpf_get_current_cgroup_id` reports: the directory's inode number.
    pub id: u64,
    /// Depth below the cgroup v2 root (the root is level 0).
    pub level: u32,
}

/// Errors from resolving a cgroup path.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{path} is a cgroup v1 directory, but the probes filter on cgroup v2 ids; use the matching directory under {v2_root}")]
    V1 { path: PathBuf, v2_root: String },
    #[error("{0} is not a cgroup directory")]
    NotCgroup(PathBuf),
    #[error("{0} is deeper than the 31 cgroup levels the probes can filter on")]
    TooDeep(PathBuf),
    #[error("cannot inspect {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How cgroups are mounted on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "v2_root")]
pub enum Layout {
    /// Pure cgroup v2: the v2 hierarchy is at /sys/fs/cgroup.
    Unified(PathBuf),
    /// v1 controllers plus a v2 hierarchy elsewhere (usually /sys/fs/cgroup/unified).
    Hybrid(PathBuf),
    /// No cgroup v2 hierarchy at all.
    Legacy,
}

/// The mount point of the cgroup v2 hierarchy, if any.
pub fn v2_root() -> Option<PathBuf> {
    let mounts = Process::myself().ok()?.mountinfo().ok()?;
    mounts
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
}

/// The cgroup layout of this machine.
pub fn layout() -> Layout {
    match v2_root() {
        Some(root) if root == Path::new("/sys/fs/cgroup") => Layout::Unified(root),
        Some(root) => Layout::Hybrid(root),
        None => Layout::Legacy,
    }
}

/// Resolves a cgroup v2 directory into a probe target.
pub fn resolve(path: &Path) -> Result<CgroupTarget, CgroupError> {
    if !path.exists() {
        return Err(CgroupError::Missing(path.to_path_buf()));
    }
    let path = fs::canonicalize(path).map_err(|source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let fs_type = statfs(&path)
        .map_err(|e| CgroupError::Io {
            path: path.clone(),
            source: e.into(),
        })?
        .filesystem_type();
    if fs_type == CGROUP_SUPER_MAGIC {
        let v2_root = v2_root()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "a cgroup v2 mount (none is mounted)".into());
        return Err(CgroupError::V1 { path, v2_root });
    }
    if fs_type != CGROUP2_SUPER_MAGIC || !path.is_dir() {
        return Err(CgroupError::NotCgroup(path));
    }
    let root = v2_root().ok_or_else(|| CgroupError::NotCgroup(path.clone()))?;
    let level = path
        .strip_prefix(&root)
        .map(|rel| rel.components().count() as u32)
        .map_err(|_| CgroupError::NotCgroup(path.clone()))?;
    if level > probes_common::target::MAX_CGROUP_LEVEL {
        return Err(CgroupError::TooDeep(path));
    }
    let id = fs::metadata(&path)
        .map_err(|source| CgroupError::Io {
            path: path.clone(),
            source,
        })?
        .ino();
    Ok(CgroupTarget { path, id, level })
}

/// The processes in a cgroup and all its descendants.
pub fn procs(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    collect_procs(dir, &mut pids);
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn collect_procs(dir: &Path, pids: &mut Vec<u32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_procs(&entry.path(), pids);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_paths_that_are_not_cgroups() {
        let err = resolve(Path::new("/tmp")).unwrap_err();
        assert!(matches!(err, CgroupError::NotCgroup(_)), "{err}");
        let err = resolve(Path::new("/no/such/cgroup")).unwrap_err();
        assert_eq!(err.to_string(), "/no/such/cgroup does not exist");
    }

    #[test]
    fn resolves_the_v2_root_of_this_machine() {
        let root = v2_root().expect("a cgroup v2 hierarchy");
        let target = resolve(&root).unwrap();
        assert_eq!(target.level, 0);
        assert!(target.id > 0);
    }
}

/// This process's cgroup path in the hierarchy named by `controller` ("" for cgroup v2).
fn own_path(controller: &str) -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_string())
    })
}

/// The cgroups an app runs in: a cgroup v2 child of runner's own cgroup (membership, probe
/// filtering, stopping), plus a v1 memory child on hybrid machines for the memory limit.
#[derive(Debug, Default)]
pub struct AppGroups {
    pub v2: Option<PathBuf>,
    pub v1_memory: Option<PathBuf>,
    /// Limits that could not be applied, with why.
    pub warnings: Vec<String>,
}

impl AppGroups {
    /// Creates the groups named `label` and applies `memory` (bytes) where a memory
    /// controller is available.
    pub fn create(label: &str, memory: Option<u64>) -> Result<Self, CgroupError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CgroupError::Io { path, source }
        };
        let mut groups = AppGroups::default();
        let root =
            v2_root().ok_or_else(|| CgroupError::NotCgroup(PathBuf::from("/sys/fs/cgroup")))?;
        let own = own_path("").unwrap_or_else(|| "/".into());
        let parent = root.join(own.trim_start_matches('/'));
        let v2 = parent.join(label);
        crate::journal::add(crate::journal::Item::Cgroup { path: v2.clone() });
        fs::create_dir_all(&v2).map_err(io(&v2))?;
        groups.v2 = Some(v2.clone());
        let Some(limit) = memory else {
            return Ok(groups);
        };
        let subtree = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
        if subtree.split_whitespace().any(|c| c == "memory") {
            fs::write(v2.join("memory.max"), limit.to_string()).map_err(io(&v2))?;
            return Ok(groups);
        }
        let v1_root = Path::new("/sys/fs/cgroup/memory");
        if let (true, Some(own_mem)) = (
            v1_root.join("memory.limit_in_bytes").exists(),
            own_path("memory"),
        ) {
            let dir = v1_root.join(own_mem.trim_start_matches('/')).join(label);
            crate::journal::add(crate::journal::Item::Cgroup { path: dir.clone() });
            fs::create_dir_all(&dir).map_err(io(&dir))?;
            fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).map_err(io(&dir))?;
            groups.v1_memory = Some(dir);
            return Ok(groups);
        }
        groups.warnings.push(format!(
            "memory limit not applied: the memory controller is not enabled for runner's cgroup ({}); enable it in its parent's cgroup.subtree_control",
            parent.display()
        ));
        Ok(groups)
    }

    /// The cgroup.procs files a new process must join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.v2
            .iter()
            .chain(self.v1_memory.iter())
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Every process in the app's v2 group.
    pub fn pids(&self) -> Vec<u32> {
        self.v2.as_deref().map(procs).unwrap_or_default()
    }

    /// The v2 group as a probe target.
    pub fn target(&self) -> Option<CgroupTarget> {
        self.v2.as_deref().and_then(|d| resolve(d).ok())
    }

    /// Processes the kernel killed for going over the memory limit (v2 memory.events, or the
    /// v1 group's memory.oom_control).
    pub fn oom_kills(&self) -> u64 {
        let read = |file: PathBuf| {
            fs::read_to_string(file)
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        self.v2
            .as_ref()
            .and_then(|d| read(d.join("memory.events")))
            .or_else(|| {
                self.v1_memory
                    .as_ref()
                    .and_then(|d| read(d.join("memory.oom_control")))
            })
            .unwrap_or(0)
    }

    /// Removes the groups (they must be empty); retries briefly while processes exit.
    pub fn remove(&self) {
        for dir in self.v2.iter().chain(self.v1_memory.iter()) {
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if !dir.exists() {
                crate::journal::remove(&crate::journal::Item::Cgroup { path: dir.clone() });
            }
        }
    }
}
