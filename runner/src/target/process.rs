//! Processes of a target as facts: the host PID beside the PID the process has inside its own
//! PID namespace (a container's), and its command; and whether a process is still the one
//! first seen.

use procfs::process::{ProcState, Process};
use serde::{Deserialize, Serialize};

/// One process of a target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessFacts {
    /// The PID as the host (and runner) sees it.
    pub pid: u32,
    /// The PID inside the process's own PID namespace, when that is not runner's (e.g. 1 for
    /// a container's first process).
    pub ns_pid: Option<u32>,
    pub comm: String,
    pub cmdline: String,
}

/// The facts of process `pid`, if it exists.
pub fn facts(pid: u32) -> Option<ProcessFacts> {
    let process = Process::new(pid as i32).ok()?;
    let status = process.status().ok()?;
    let cmdline = process
        .cmdline()
        .map(|args| args.join(" "))
        .unwrap_or_default();
    Some(ProcessFacts {
        pid,
        ns_pid: inner_pid(status.nspid.as_deref()),
        comm: status.name,
        cmdline,
    })
}

/// The innermost of a process's PIDs (`NSpid`) when it lives deeper than runner.
fn inner_pid(nspid: Option<&[i32]>) -> Option<u32> {
    let own_depth = Process::myself()
        .and_then(|p| p.status())
        .ok()
        .and_then(|s| s.nspid)
        .map_or(1, |n| n.len());
    let nspid = nspid?;
    nspid
        .last()
        .filter(|_| nspid.len() > own_depth)
        .map(|&pid| pid as u32)
}

/// The processes descended from `roots` now (children, their children...), roots excluded.
pub fn descendants(roots: &[u32]) -> Vec<u32> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = all
        .flatten()
        .filter_map(|p| p.stat().ok())
        .map(|s| (s.pid as u32, s.ppid as u32))
        .collect();
    let mut found: Vec<u32> = Vec::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && !found.contains(&pid) && !roots.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found.sort_unstable();
    found
}

/// A process as first seen: its start time tells it from a later one given the same PID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub pid: u32,
    start: u64,
}

impl Identity {
    /// The process `pid` now.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = Process::new(pid as i32).ok()?.stat().ok()?;
        Some(Self {
            pid,
            start: stat.starttime,
        })
    }

    /// True while the same process exists and has not exited (a zombie has).
    pub fn alive(&self) -> bool {
        Process::new(self.pid as i32)
            .and_then(|p| p.stat())
            .is_ok_and(|s| {
                s.starttime == self.start
                    && !matches!(s.state(), Ok(ProcState::Zombie | ProcState::Dead))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_of_this_namespace_has_no_inner_pid() {
        let me = facts(std::process::id()).unwrap();
        assert_eq!(me.ns_pid, None);
        assert!(!me.comm.is_empty());
        assert_eq!(inner_pid(Some(&[4242, 1])), Some(1));
        assert_eq!(inner_pid(Some(&[4242])), None);
    }

    #[test]
    fn finds_the_children_of_a_process() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5 & wait"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = Vec::new();
        while found.len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            found = descendants(&[child.id()]);
        }
        for &pid in &found {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(descendants(&[]).is_empty());
    }

    #[test]
    fn identity_ends_with_the_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let id = Identity::of(child.id()).unwrap();
        assert!(id.alive());
        child.kill().unwrap();
        // A zombie until reaped: already not alive.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!id.alive());
        child.wait().unwrap();
        assert!(!id.alive());
    }
}
