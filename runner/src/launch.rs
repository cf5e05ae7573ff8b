//! Launching a command as a probe target. The child is forked, waits on a gate until the
//! probes are attached and its pid is in the target set, then execs; so nothing it does,
//! not even its first instruction, is missed.

use std::{
    ffi::CString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::{
        signal::{killpg, Signal},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::Pid,
};

/// Errors from launching a command.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("no command given")]
    Empty,
    #[error("the command contains a NUL byte")]
    Nul,
    #[error("cannot create a pipe")]
    Pipe(#[source] std::io::Error),
    #[error("cannot fork")]
    Fork(#[source] Errno),
    #[error("cannot start `{command}`")]
    Exec {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// A forked child waiting at its gate.
#[derive(Debug)]
pub struct Gated {
    pid: u32,
    /// Its journal entry, crossed out once it has ended.
    item: crate::journal::Item,
    command: String,
    gate: OwnedFd,
    exec_status: OwnedFd,
}

/// A launched command.
#[derive(Debug)]
pub struct Child {
    pid: u32,
    item: crate::journal::Item,
    status: Option<i32>,
}

/// How a child ended: its exit code, or 128 + the signal that killed it.
pub type ExitStatusCode = i32;

fn pipe() -> Result<(OwnedFd, OwnedFd), LaunchError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(LaunchError::Pipe(std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks `argv`; the child stops at a gate until [`Gated::release`].
pub fn spawn_gated(argv: &[String]) -> Result<Gated, LaunchError> {
    if argv.is_empty() {
        return Err(LaunchError::Empty);
    }
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| LaunchError::Nul))
        .collect::<Result<_, _>>()?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let (gate_read, gate_write) = pipe()?;
    let (status_read, status_write) = pipe()?;
    // SAFETY: the child only calls async-signal-safe functions before exec or _exit, on
    // memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(LaunchError::Fork(Errno::last()));
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls only; see above.
        unsafe {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // The parent's ends: holding the gate's write end here would keep the read
            // below from ever seeing EOF when the parent aborts.
            libc::close(gate_write.as_raw_fd());
            libc::close(status_read.as_raw_fd());
            let mut byte = 0u8;
            let n = libc::read(gate_read.as_raw_fd(), (&raw mut byte).cast(), 1);
            if n == 1 {
                libc::execvp(arg_ptrs[0], arg_ptrs.as_ptr());
            }
            let errno = *libc::__errno_location();
            let bytes = errno.to_ne_bytes();
            libc::write(status_write.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127);
        }
    }
    drop(gate_read);
    drop(status_write);
    let item = crate::journal::process_item(pid as u32);
    crate::journal::add(item.clone());
    Ok(Gated {
        pid: pid as u32,
        item,
        command: argv.join(" "),
        gate: gate_write,
        exec_status: status_read,
    })
}

impl Gated {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Lets the child exec, and reports whether the exec worked.
    pub fn release(self) -> Result<Child, LaunchError> {
        let one = [1u8];
        // SAFETY: writes one byte from a valid buffer to an owned descriptor.
        unsafe { libc::write(self.gate.as_raw_fd(), one.as_ptr().cast(), 1) };
        drop(self.gate);
        let mut errno = [0u8; 4];
        // SAFETY: reads into a valid buffer from an owned descriptor; EOF means exec worked.
        let n = unsafe {
            libc::read(
                self.exec_status.as_raw_fd(),
                errno.as_mut_ptr().cast(),
                errno.len(),
            )
        };
        let mut child = Child {
            pid: self.pid,
            item: self.item.clone(),
            status: None,
        };
        if n == 4 {
            child.wait_exit();
            return Err(LaunchError::Exec {
                command: self.command,
                source: std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno)),
            });
        }
        Ok(child)
    }

    /// Kills the child without letting it exec.
    pub fn abort(self) {
        drop(self.gate);
        let mut child = Child {
            pid: self.pid,
            item: self.item.clone(),
            status: None,
        };
        child.wait_exit();
    }
}

impl Child {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status, once the child has ended; reaps it.
    pub fn try_status(&mut self) -> Option<ExitStatusCode> {
        if self.status.is_none() {
            match waitpid(Pid::from_raw(self.pid as i32), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => self.status = Some(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => self.status = Some(128 + signal as i32),
                Err(Errno::ECHILD) => self.status = Some(-1),
                _ => {}
            }
            if self.status.is_some() {
                crate::journal::remove(&self.item);
            }
        }
        self.status
    }

    fn wait_exit(&mut self) {
        while self.status.is_none() {
            match waitpid(Pid::from_raw(self.pid as i32), None) {
                Ok(WaitStatus::Exited(_, code)) => self.status = Some(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => self.status = Some(128 + signal as i32),
                Err(Errno::EINTR) => {}
                Err(_) => self.status = Some(-1),
                _ => {}
            }
        }
        crate::journal::remove(&self.item);
    }

    /// Stops the child's whole process group: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatusCode> {
        if let Some(status) = self.try_status() {
            return Some(status);
        }
        let group = Pid::from_raw(self.pid as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_status() {
                let _ = killpg(group, Signal::SIGKILL);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        self.wait_exit();
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_ends_the_child_without_running_it() {
        let marker = std::env::temp_dir().join(format!("runner-abort-{}", std::process::id()));
        let gated = spawn_gated(&["touch".into(), marker.display().to_string()]).unwrap();
        let pid = gated.pid();
        gated.abort();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(!marker.exists(), "the aborted command ran");
    }

    #[test]
    fn reports_a_command_that_cannot_start() {
        let gated = spawn_gated(&["/no/such/program".into()]).unwrap();
        let err = format!("{:#}", anyhow::Error::new(gated.release().unwrap_err()));
        // The cause once, not twice.
        assert_eq!(
            err,
            "cannot start `/no/such/program`: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn runs_and_reaps_a_command() {
        let gated = spawn_gated(&["sh".into(), "-c".into(), "exit 3".into()]).unwrap();
        let mut child = gated.release().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_status().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(child.try_status(), Some(3));
    }

    #[test]
    fn stops_a_running_command() {
        let gated = spawn_gated(&["sleep".into(), "30".into()]).unwrap();
        let mut child = gated.release().unwrap();
        let status = child.stop(Duration::from_secs(2));
        assert_eq!(status, Some(128 + libc::SIGTERM));
    }
}
