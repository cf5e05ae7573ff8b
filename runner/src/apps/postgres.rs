//! An ephemeral PostgreSQL cluster from the distribution's binaries: initdb into a temp dir
//! as an unprivileged user (postgres refuses root), listening on 127.0.0.1 on a free port,
//! loaded with apps/shared/init.sql, pinned to given CPUs, and removed when dropped.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::user::RunAs;

/// Errors from starting the database.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres); run `cargo xtask setup` or apt-get install postgresql")]
    NotInstalled,
    #[error("cannot prepare {0}")]
    Dir(PathBuf, #[source] std::io::Error),
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
    #[error("PostgreSQL {0}; log tail:\n{1}")]
    NotReady(String, String),
}

/// A running cluster. Stopped and removed on drop.
pub struct Postgres {
    dir: PathBuf,
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    /// Server version, e.g. "15".
    pub version: String,
}

impl Postgres {
    /// The server's processes: the postmaster and its children.
    pub fn pids(&self) -> Vec<u32> {
        let Some(main) = self.child.as_ref().map(Child::id) else {
            return Vec::new();
        };
        let mut pids = vec![main];
        if let Ok(procs) = procfs::process::all_processes() {
            pids.extend(
                procs
                    .flatten()
                    .filter_map(|p| p.stat().ok())
                    .filter(|s| s.ppid == main as i32)
                    .map(|s| s.pid as u32),
            );
        }
        pids
    }
}

fn bin_dir() -> Result<PathBuf, PostgresError> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| PostgresError::NotInstalled)?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").is_file())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().ok_or(PostgresError::NotInstalled)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn run_step(step: &'static str, cmd: &mut Command) -> Result<String, PostgresError> {
    let out = cmd.output().map_err(|e| PostgresError::Step {
        step,
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(PostgresError::Step {
            step,
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Postgres {
    /// Starts a cluster under `parent`, runs `init_sql` in database `bench`.
    pub fn start(
        parent: &Path,
        init_sql: &Path,
        cpus: &[usize],
        user: &RunAs,
    ) -> Result<Self, PostgresError> {
        let bin = bin_dir()?;
        let version = bin
            .parent()
            .and_then(|p| p.file_name())
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = parent.join("postgres");
        std::fs::create_dir_all(&dir).map_err(|e| PostgresError::Dir(dir.clone(), e))?;
        user.own(&dir)
            .map_err(|e| PostgresError::Dir(dir.clone(), e))?;
        let data = dir.join("data");
        run_step(
            "initdb",
            user.command(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "runner", "--auth=trust", "-E", "UTF8", "--no-sync"]),
        )?;
        let port = free_port().map_err(|e| PostgresError::Dir(dir.clone(), e))?;
        let log = std::fs::File::create(dir.join("postgres.log"))
            .map_err(|e| PostgresError::Dir(dir.clone(), e))?;
        user.own(&dir.join("postgres.log"))
            .map_err(|e| PostgresError::Dir(dir.clone(), e))?;
        let mut cmd = user.command(&bin.join("postgres"));
        // TCP only: a Unix socket under a long results path would exceed the 107-byte limit.
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k", ""])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=500",
                "-c",
                "shared_buffers=128MB",
                "-c",
                "synchronous_commit=off",
            ])
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| PostgresError::Dir(dir.clone(), e))?,
            )
            .stderr(log);
        let cpus = cpus.to_vec();
        // SAFETY: sched_setaffinity is async-signal-safe; the set is built before the fork.
        let set = cpu_set(&cpus);
        unsafe {
            cmd.pre_exec(move || {
                if let Some(set) = &set {
                    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set)
                        .map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| PostgresError::Step {
            step: "starting postgres",
            detail: e.to_string(),
        })?;
        crate::journal::add(crate::journal::process_item(child.id()));
        let mut pg = Self {
            dir: dir.clone(),
            child: Some(child),
            port,
            url: format!("postgresql://runner:runner@127.0.0.1:{port}/bench"),
            version,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                break;
            }
            if pg.exited() {
                return Err(PostgresError::NotReady(
                    "exited during start-up".into(),
                    pg.log_tail(),
                ));
            }
            if Instant::now() > deadline {
                return Err(PostgresError::NotReady(
                    "did not accept connections within 30 s".into(),
                    pg.log_tail(),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let psql = bin.join("psql");
        let admin = format!("postgresql://runner@127.0.0.1:{port}/postgres");
        run_step(
            "creating database bench",
            Command::new(&psql).args([
                &admin,
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "CREATE DATABASE bench",
            ]),
        )?;
        run_step(
            "loading apps/shared/init.sql",
            Command::new(&psql)
                .args([&pg.url, "-q", "-v", "ON_ERROR_STOP=1", "-f"])
                .arg(init_sql),
        )?;
        Ok(pg)
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .map(|c| matches!(c.try_wait(), Ok(Some(_))))
            .unwrap_or(true)
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.join("postgres.log"), 20)
    }

    /// Runs one SQL query with psql and returns its unaligned output.
    pub fn query(url: &str, sql: &str) -> Result<String, PostgresError> {
        let psql = bin_dir()?.join("psql");
        Ok(run_step(
            "psql",
            Command::new(psql).args([url, "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql]),
        )?
        .trim()
        .to_string())
    }

    /// Stops the server (SIGINT: fast shutdown, then SIGKILL) and removes its files.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let item = crate::journal::process_item(child.id());
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            crate::journal::remove(&item);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CPU set for sched_setaffinity, or None for no pinning.
pub fn cpu_set(cpus: &[usize]) -> Option<nix::sched::CpuSet> {
    if cpus.is_empty() {
        return None;
    }
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        let _ = set.set(cpu);
    }
    Some(set)
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
