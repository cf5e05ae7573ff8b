//! A running app: launched as an unprivileged user in its own cgroups, pinned to its CPUs,
//! with its output in a log file; ready when its health route answers; stopped with
//! SIGTERM to every process in its cgroup, then SIGKILL after 5 s.

use std::{
    ffi::CString,
    net::SocketAddr,
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

use super::{
    http,
    manifest::Manifest,
    postgres::{cpu_set, tail},
    user::RunAs,
};
use crate::cgroup::{AppGroups, CgroupError};

/// How long a stop waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Errors from launching an app.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot create the app's cgroups")]
    Cgroup(#[from] CgroupError),
    #[error("cannot create the log file {0}")]
    Log(PathBuf, #[source] std::io::Error),
    #[error("cannot start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{app} exited during start-up ({status}); log tail:\n{tail}")]
    Exited {
        app: String,
        status: String,
        tail: String,
    },
    #[error("{app} did not answer GET {path} with 2xx within {secs}s; log tail:\n{tail}")]
    NotReady {
        app: String,
        path: String,
        secs: u64,
        tail: String,
    },
}

/// What an app is launched with.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    pub port: u16,
    pub workers: u32,
    pub cpus: Vec<usize>,
    pub memory: Option<u64>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    /// Filled in for {bin}.
    pub binary: Option<PathBuf>,
    /// Filled in for {python}.
    pub python: Option<PathBuf>,
}

/// The app's start command with its placeholders filled in.
pub fn command_line(app: &Manifest, opts: &LaunchOptions) -> String {
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    app.start
        .replace("{python}", &path(&opts.python))
        .replace("{bin}", &path(&opts.binary))
        .replace("{port}", &opts.port.to_string())
        .replace("{workers}", &opts.workers.to_string())
        .replace("{app_dir}", &app.dir.display().to_string())
}

/// A launched app. Dropping it stops it.
pub struct AppProcess {
    pub name: String,
    pub addr: SocketAddr,
    pub command: String,
    pub log: PathBuf,
    pub groups: AppGroups,
    /// Its memory limit, to name it when it kills the app.
    memory: Option<u64>,
    child: Option<Child>,
}

impl AppProcess {
    /// Starts `app` in cgroups labelled `label`.
    pub fn start(
        app: &Manifest,
        opts: &LaunchOptions,
        user: &RunAs,
        label: &str,
    ) -> Result<Self, AppError> {
        let groups = match AppGroups::create(label, opts.memory) {
            Ok(groups) => groups,
            // Without root there is no cgroup to create: run pinned, in its own session.
            Err(e) if !nix::unistd::Uid::effective().is_root() => AppGroups {
                warnings: vec![format!(
                    "the app runs without its own cgroup (no memory limit): {e}"
                )],
                ..AppGroups::default()
            },
            Err(e) => return Err(e.into()),
        };
        let log =
            std::fs::File::create(&opts.log).map_err(|e| AppError::Log(opts.log.clone(), e))?;
        let command = command_line(app, opts);
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("exec {command}"))
            .current_dir(&app.dir)
            .env("HOST", "127.0.0.1")
            .env("PORT", opts.port.to_string())
            .env("WORKERS", opts.workers.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| AppError::Log(opts.log.clone(), e))?,
            )
            .stderr(log);
        let procs: Vec<CString> = groups
            .procs_files()
            .iter()
            .map(|p| CString::new(p.as_os_str().as_bytes()).expect("no NUL in cgroup paths"))
            .collect();
        let set = cpu_set(&opts.cpus);
        // SAFETY: only async-signal-safe calls (open, write, close, setsid, sched_setaffinity,
        // prctl) on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for file in &procs {
                    let fd = libc::open(file.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                    libc::close(fd);
                    if !ok {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(set) = &set {
                    nix::sched::sched_setaffinity(Pid::from_raw(0), set)
                        .map_err(std::io::Error::from)?;
                }
                libc::setsid();
                Ok(())
            });
        }
        user.switch_in_child(&mut cmd);
        // SAFETY: prctl is async-signal-safe; after the uid switch, which would clear it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| {
            groups.remove();
            AppError::Spawn {
                command: command.clone(),
                source,
            }
        })?;
        crate::journal::add(crate::journal::process_item(child.id()));
        Ok(Self {
            name: app.name.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], opts.port)),
            command,
            log: opts.log.clone(),
            groups,
            memory: opts.memory,
            child: Some(child),
        })
    }

    /// The last lines of the app's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The exit status, if the app's main process has exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().ok().flatten()?;
        Some(match (self.groups.oom_kills(), self.memory) {
            (n, Some(limit)) if n > 0 => format!(
                "{status}: killed by the memory limit ({}; raise it with --memory)",
                crate::num::size_text(limit)
            ),
            _ => status.to_string(),
        })
    }

    /// Waits until GET `path` answers 2xx.
    pub fn wait_ready(&mut self, path: &str, timeout: Duration) -> Result<(), AppError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(AppError::Exited {
                    app: self.name.clone(),
                    status,
                    tail: self.log_tail(20),
                });
            }
            if let Ok(r) = http::get(self.addr, path, Duration::from_secs(2)) {
                if r.status.is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(AppError::NotReady {
                    app: self.name.clone(),
                    path: path.into(),
                    secs: timeout.as_secs(),
                    tail: self.log_tail(20),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every process of the app.
    pub fn pids(&self) -> Vec<u32> {
        self.groups.pids()
    }

    /// SIGTERM to every process in the app's cgroup, SIGKILL to what is left after 5 s,
    /// then the cgroups are removed. Nothing is left running.
    pub fn stop(&mut self) {
        let signal_all = |signal: Signal, pids: &[u32]| {
            for pid in pids {
                let _ = nix::sys::signal::kill(Pid::from_raw(*pid as i32), signal);
            }
        };
        let mut pids = self.pids();
        let session = self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32));
        if let Some(leader) = session {
            pids.push(leader.as_raw() as u32);
            // The app leads its own session and process group: catch children outside a cgroup.
            let _ = nix::sys::signal::killpg(leader, Signal::SIGTERM);
        }
        signal_all(Signal::SIGTERM, &pids);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            let leader_gone = self
                .child
                .as_mut()
                .map(|c| matches!(c.try_wait(), Ok(Some(_))))
                .unwrap_or(true);
            let done = match &self.groups.v2 {
                Some(_) => self.pids().is_empty(),
                None => leader_gone,
            };
            if done {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(leader) = session {
            let _ = nix::sys::signal::killpg(leader, Signal::SIGKILL);
        }
        for _ in 0..3 {
            let left = self.pids();
            if left.is_empty() {
                break;
            }
            signal_all(Signal::SIGKILL, &left);
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(mut child) = self.child.take() {
            let item = crate::journal::process_item(child.id());
            let _ = child.kill();
            let _ = child.wait();
            crate::journal::remove(&item);
        }
        self.groups.remove();
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}
