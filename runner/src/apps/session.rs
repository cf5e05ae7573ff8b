//! An app brought up with what its scenarios need: its environment, the database, and the
//! app itself, ready to serve. Dropping the session stops everything it started.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};

use crate::cpython::install::{Choice, Install};

use super::{
    manifest::{Language, Manifest},
    postgres::{free_port, Postgres},
    process::{AppProcess, LaunchOptions},
    scenarios::Scenario,
    user::RunAs,
    venv,
};

/// How long an app may take to answer its health route after launch.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// What to bring up.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub workers: Option<u32>,
    pub app_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    pub memory: Option<u64>,
    /// Where the app's log goes (its writable state goes to a scratch folder of its own).
    pub run_dir: PathBuf,
    /// The interpreter of a Python app (`--python`; default: venv's choice).
    pub python: Option<Choice>,
}

/// Versions and settings to record with results.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SessionFacts {
    pub app: String,
    pub framework: String,
    pub server: String,
    pub concurrency: String,
    pub python: Option<String>,
    /// The interpreter the app's virtualenv is built on: version, build, path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<Install>,
    /// The app's interpreter, for version queries.
    #[serde(skip)]
    pub python_path: Option<String>,
    pub postgres: Option<String>,
    pub database: Option<String>,
    pub workers: u32,
    pub db_pool: u32,
    pub app_cpus: Vec<usize>,
    pub memory_bytes: Option<u64>,
    pub run_as: String,
    pub command: String,
    pub warnings: Vec<String>,
}

/// A running app and its database.
pub struct Session {
    pub app: AppProcess,
    pub database_url: Option<String>,
    pub facts: SessionFacts,
    // Dropped after the app: the app stops first.
    postgres: Option<Postgres>,
    _scratch: Scratch,
}

/// The app's writable state (TMPDIR, HOME, the SQLite file, the PostgreSQL cluster), owned
/// by the app's user in a folder of the system's temp folder, whatever `--out` or the working
/// folder allow that user. Short, because Unix socket paths made in TMPDIR (multiprocessing,
/// as Sanic's manager uses) must fit in 107 bytes. Journaled, and removed when the session
/// ends.
struct Scratch(PathBuf);

impl Scratch {
    fn create(user: &RunAs) -> anyhow::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("runner-{}-{n}", std::process::id()));
        crate::journal::add(crate::journal::Item::Scratch { path: dir.clone() });
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        user.own(&dir)?;
        Ok(Self(dir))
    }

    /// A folder inside, owned by the app's user.
    fn folder(&self, name: &str, user: &RunAs) -> anyhow::Result<PathBuf> {
        let dir = self.0.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        user.own(&dir)?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        crate::journal::remove(&crate::journal::Item::Scratch {
            path: self.0.clone(),
        });
    }
}

fn build_rust(app: &Manifest, progress: &mut dyn FnMut(&str)) -> anyhow::Result<PathBuf> {
    let workspace = app
        .dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    if let Some(build) = &app.build {
        progress(&format!("building {}: {build}", app.name));
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", build])
            .current_dir(workspace)
            .status()
            .with_context(|| format!("running `{build}`"))?;
        if !status.success() {
            bail!(
                "building {} failed: `{build}` exited with {status}",
                app.name
            );
        }
    }
    let binary = app
        .binary
        .as_ref()
        .map(|b| workspace.join(b))
        .with_context(|| format!("{}: a rust app needs `binary` in app.toml", app.name))?;
    if !binary.is_file() {
        bail!(
            "{} was not built: {} is missing",
            app.name,
            binary.display()
        );
    }
    Ok(binary)
}

impl Session {
    /// Processes of the session besides the app (the database's).
    pub fn helper_pids(&self) -> Vec<u32> {
        self.postgres
            .as_ref()
            .map(Postgres::pids)
            .unwrap_or_default()
    }

    /// Provisions and starts `app` for `scenarios`.
    pub fn start(
        app: &Manifest,
        scenarios: &[&Scenario],
        apps_dir: &Path,
        opts: &SessionOptions,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&opts.run_dir)
            .with_context(|| format!("creating {}", opts.run_dir.display()))?;
        // The app runs in its own folder: every path it is given must be absolute.
        let opts = &SessionOptions {
            run_dir: std::path::absolute(&opts.run_dir)?,
            ..opts.clone()
        };
        let user = RunAs::for_apps();
        let workers = opts
            .workers
            .unwrap_or_else(|| app.workers.resolve(opts.app_cpus.len()));
        let mut facts = SessionFacts {
            app: app.name.clone(),
            framework: app.framework.clone(),
            server: app.server.clone(),
            concurrency: format!("{:?}", app.concurrency).to_lowercase(),
            workers,
            db_pool: app.db_pool,
            app_cpus: opts.app_cpus.clone(),
            memory_bytes: opts.memory,
            run_as: user.name.clone(),
            ..Default::default()
        };
        let (python, binary) = match app.language {
            Language::Python => {
                let env = venv::provision(
                    app,
                    opts.python.as_ref(),
                    &venv::cache_dir(),
                    &user,
                    progress,
                )?;
                facts.python = Some(format!("Python {}", env.base.version));
                facts.interpreter = Some(env.base.clone());
                facts.python_path = Some(env.python.display().to_string());
                (Some(env.python), None)
            }
            Language::Rust => (None, Some(build_rust(app, progress)?)),
        };
        let scratch = Scratch::create(&user)?;
        let needs_db = scenarios.iter().any(|s| s.needs_db);
        let mut postgres = None;
        let database_url = match std::env::var("DATABASE_URL") {
            Ok(url) if needs_db => {
                facts.database = Some("DATABASE_URL (external)".into());
                Some(url)
            }
            _ if needs_db => {
                progress("starting PostgreSQL");
                let pg = Postgres::start(
                    &scratch.0,
                    &apps_dir.join("shared/init.sql"),
                    &opts.client_cpus,
                    &RunAs::for_apps(),
                )
                .context("starting PostgreSQL")?;
                facts.postgres = Some(pg.version.clone());
                facts.database = Some(format!(
                    "ephemeral PostgreSQL {} on port {}",
                    pg.version, pg.port
                ));
                let url = pg.url.clone();
                postgres = Some(pg);
                Some(url)
            }
            _ => None,
        };
        let sqlite_dir = scratch.folder("sqlite", &user)?;
        // A home of the app's own: it runs as another user, and libraries look there (asyncpg
        // probes ~/.postgresql for client certificates).
        let home = scratch.folder("home", &user)?;
        let tmp = scratch.folder("tmp", &user)?;
        let mut env = vec![
            ("HOME".to_string(), home.display().to_string()),
            ("DB_POOL_SIZE".to_string(), app.db_pool.to_string()),
            (
                "SQLITE_PATH".to_string(),
                sqlite_dir.join("app.db").display().to_string(),
            ),
            ("TMPDIR".to_string(), tmp.display().to_string()),
            // The framework-neutral kit every bundled Python app imports (apps/shared/python).
            (
                "PYTHONPATH".to_string(),
                std::path::absolute(apps_dir)?
                    .join("shared/python")
                    .display()
                    .to_string(),
            ),
        ];
        if let Some(url) = &database_url {
            env.push(("DATABASE_URL".into(), url.clone()));
        }
        let port = free_port()?;
        let opts_launch = LaunchOptions {
            port,
            workers,
            cpus: opts.app_cpus.clone(),
            memory: opts.memory,
            env,
            log: opts.run_dir.join("app.log"),
            binary,
            python,
        };
        progress(&format!(
            "starting {} on 127.0.0.1:{port} ({workers} workers, CPUs {:?})",
            app.name, opts.app_cpus
        ));
        let label = format!("runner-{}-{}", app.name, std::process::id());
        let mut process = AppProcess::start(app, &opts_launch, &user, &label)?;
        facts.command = process.command.clone();
        facts.warnings = process.groups.warnings.clone();
        process.wait_ready(app.health(), READY_TIMEOUT)?;
        Ok(Self {
            app: process,
            database_url,
            facts,
            postgres,
            _scratch: scratch,
        })
    }
}
