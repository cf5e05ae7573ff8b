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
