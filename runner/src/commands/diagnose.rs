//! `runner diagnose`: start the target (an app, running processes, or a command), then load
//! each scenario or URL in turn while the evloop probe follows its event loops, one window
//! each; analyse every window, write diagnosis.json, diagnosis.md and the stall flamegraphs,
//! and print the verdicts.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::{
    apps::{
        self, choose_scenarios,
        manifest::{self, apps_dir},
        scenarios::Scenarios,
        session::{Session, SessionOptions},
    },
    diagnose::{self, Diagnosis, LoadFigures},
    host,
    launch::{self, Child},
    load::{self, request::RequestSpec, schedule::Schedule, LoadConfig, LoadShape},
    privilege::{Privileges, NEEDS_ROOT},
    probe::{ProbeConfig, Target},
    record::Recorder,
    report,
    run_dir::{timestamp, RunDir},
    signals,
};

/// What to diagnose.
#[derive(Clone, Debug)]
pub enum DiagnoseTarget {
    /// A bundled app or an app.toml, and its scenarios (empty: every supported one).
    App { app: String, scenarios: Vec<String> },
    /// Running processes, loaded at these URLs.
    Pids { pids: Vec<u32>, urls: Vec<String> },
    /// A command to launch, loaded at these URLs once they answer.
    Command {
        argv: Vec<String>,
        urls: Vec<String>,
    },
}

/// A validated `runner diagnose` invocation.
#[derive(Clone, Debug)]
pub struct DiagnoseRun {
    pub target: DiagnoseTarget,
    /// Load per scenario or URL, at each of the connection counts.
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: Vec<usize>,
    pub workers: Option<u32>,
    pub probe: ProbeConfig,
    pub out: PathBuf,
}

/// One stretch of load.
struct Job {
    label: String,
    config: LoadConfig,
}

/// The jobs of `(label, config)` pairs at each of the connection counts; the label names the
/// count when there are several.
fn at_each_concurrency(d: &DiagnoseRun, jobs: Vec<(String, LoadConfig)>) -> Vec<Job> {
    let mut out = Vec::new();
    for (label, config) in jobs {
        for &c in &d.connections {
            out.push(Job {
                label: if d.connections.len() > 1 {
                    format!("{label} c={c}")
                } else {
                    label.clone()
                },
                config: LoadConfig {
                    schedule: Schedule::closed(c, Some(d.duration)),
                    ..config.clone()
                },
            });
        }
    }
    out
}

/// How long the loops get to finish what a window's load left queued.
const SETTLE: Duration = Duration::from_secs(10);

/// How long a launched command gets to answer on its first URL.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A target brought up and watched by the probes.
struct Started {
    name: String,
    jobs: Vec<Job>,
    recorder: Recorder,
    /// Keeps a started app (and its database) alive until the end.
    session: Option<Session>,
    /// A launched command, stopped at the end.
    child: Option<Child>,
    dir: RunDir,
}

pub fn run(d: &DiagnoseRun) -> anyhow::Result<ExitCode> {
    if !Privileges::current().can_probe() {
        bail!("runner diagnose: {NEEDS_ROOT}");
    }
    let stop = signals::stop_flag()?;
    let mut t = start(d, &stop)?;

    let mut figures = Vec::new();
    for (i, job) in t.jobs.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        eprintln!(
            "runner: [{}/{}] {} for {}",
            i + 1,
            t.jobs.len(),
            job.label,
            humantime::format_duration(d.duration)
        );
        if !d.warmup.is_zero() {
            let warm = LoadConfig {
                schedule: Schedule::closed(job.config.schedule.max_connections(), Some(d.warmup)),
                ..job.config.clone()
            };
            load::run(&warm, stop.clone(), &mut |_| {})?;
        }
        // What the warm-up (or the window before) left queued is not this window's.
        t.recorder.settle(SETTLE)?;
        t.recorder.window_start(&job.label)?;
        let outcome = t
            .recorder
            .record_while(|| load::run(&job.config, stop.clone(), &mut |_| {}), || {})?;
        // What this window's load left queued is.
        t.recorder.settle(SETTLE)?;
        t.recorder.window_end()?;
        let total = &outcome.report.total;
        figures.push(LoadFigures {
            rps: total.rps,
            errors: total.error_total,
        });
        if let Some(s) = t.session.as_mut() {
            if let Some(status) = s.app.exited() {
                bail!("the app exited during {}: {status}", job.label);
            }
        }
    }
    let interrupted = stop.load(Ordering::Relaxed);
    if interrupted {
        eprintln!("runner: interrupted; writing what was measured");
    }
    eprintln!("runner: symbolizing");
    let recording = t.recorder.finish("recording")?;
    if let Some(mut c) = t.child.take() {
        c.stop(Duration::from_secs(5));
    }
    if let Some(session) = t.session.take() {
        drop(session);
        for scratch in ["sqlite", "postgres", "home"] {
            let _ = std::fs::remove_dir_all(t.dir.path().join(scratch));
        }
        t.dir.note("app.log");
    }
    let data = recording
        .evloop
        .as_ref()
        .context("the evloop probe recorded nothing")?;
    let mut diagnosis = Diagnosis::new(&t.name, d.probe.stall_threshold);
    diagnosis.interrupted = interrupted;
    for (i, window) in data.windows.iter().enumerate() {
        let load = figures.get(i).copied().unwrap_or_default();
        diagnosis
            .entries
            .push(diagnose::analyse(data, window, load));
        let stalls = diagnose::stall_folded(data, window);
        if !stalls.is_empty() {
            let title = format!("Stall time of {} (microseconds)", window.label);
            t.dir
                .write(&format!("stalls-{}.folded", i + 1), stalls.to_bytes())?;
            t.dir.write(
                &format!("stalls-{}.svg", i + 1),
                report::flamegraph::render(&stalls, &title, "us")?,
            )?;
        }
    }
    t.dir
        .write("diagnosis.json", serde_json::to_vec_pretty(&diagnosis)?)?;
    t.dir
        .write("diagnosis.md", report::diagnosis::markdown(&diagnosis))?;
    let dir = t.dir.finish()?;
    print!("{}", report::diagnosis::table(&diagnosis));
    println!("wrote {}", dir.display());
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// The shape of each window's load: closed loop, one thread (the connections are set per job).
fn shape(d: &DiagnoseRun, cpus: Vec<usize>) -> LoadShape {
    LoadShape {
        threads: 1,
        cpus,
        schedule: Schedule::closed(1, Some(d.duration)),
        max_requests: None,
        timeout: Duration::from_secs(10),
        think: None,
    }
}

/// Brings the target up and attaches the probes to it.
fn start(d: &DiagnoseRun, stop: &Arc<AtomicBool>) -> anyhow::Result<Started> {
    let folder = |name: &str| RunDir::create(&d.out, &format!("{}-diagnose-{name}", timestamp()));
    match &d.target {
        DiagnoseTarget::App { app, scenarios } => {
            let apps_dir = apps_dir();
            let all = Scenarios::read(&apps_dir)?;
            let app = manifest::find(app, &apps_dir, &all.names())?;
            let chosen = choose_scenarios(&app, &all, scenarios)?;
            eprintln!(
                "runner: starting {} for {} scenario(s)",
                app.name,
                chosen.len()
            );
            let dir = folder(&app.name)?;
            let (app_cpus, client_cpus) = host::default_cpus();
            let opts = SessionOptions {
                workers: d.workers,
                app_cpus,
                client_cpus: client_cpus.clone(),
                memory: Some(2 << 30),
                run_dir: dir.path().to_path_buf(),
            };
            let session = match Session::start(&app, &chosen, &apps_dir, &opts, &mut |m| {
                eprintln!("runner:   {m}")
            }) {
                Ok(s) => s,
                Err(e) => {
                    dir.discard();
                    return Err(e.context(format!("starting {}", app.name)));
                }
            };
            let jobs = chosen
                .iter()
                .map(|sc| {
                    Ok((
                        format!("{} {}", sc.name, sc.path()),
                        apps::load_config(
                            session.app.addr,
                            sc.requests(),
                            Some(sc),
                            shape(d, client_cpus.clone()),
                        )?,
                    ))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let jobs = at_each_concurrency(d, jobs);
            let cgroup = session.app.groups.target();
            let target = Target {
                tgids: if cgroup.is_some() {
                    Vec::new()
                } else {
                    session.app.pids()
                },
                cgroups: cgroup.into_iter().collect(),
            };
            let recorder =
                Recorder::start(&d.probe, &target, true).context("attaching the probes")?;
            Ok(Started {
                name: app.name.clone(),
                jobs,
                recorder,
                session: Some(session),
                child: None,
                dir,
            })
        }
        DiagnoseTarget::Pids { pids, urls } => {
            for pid in pids {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    bail!("no process {pid}");
                }
            }
            let jobs = at_each_concurrency(d, url_jobs(urls, &shape(d, Vec::new()))?);
            let target = Target {
                tgids: pids.clone(),
                cgroups: Vec::new(),
            };
            let recorder =
                Recorder::start(&d.probe, &target, true).context("attaching the probes")?;
            let name = format!(
                "pid-{}",
                pids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join("-")
            );
            Ok(Started {
                dir: folder(&name)?,
                name,
                jobs,
                recorder,
                session: None,
                child: None,
            })
        }
        DiagnoseTarget::Command { argv, urls } => {
            let jobs = at_each_concurrency(d, url_jobs(urls, &shape(d, Vec::new()))?);
            let gated = launch::spawn_gated(argv)?;
            let target = Target {
                tgids: vec![gated.pid()],
                cgroups: Vec::new(),
            };
            let recorder = match Recorder::start(&d.probe, &target, true) {
                Ok(r) => r,
                Err(e) => {
                    gated.abort();
                    return Err(anyhow::Error::new(e).context("attaching the probes"));
                }
            };
            let mut child = gated.release()?;
            let first = &jobs[0].config.target;
            eprintln!("runner: waiting for {} to answer", first.authority);
            wait_ready(first.addr, &mut child, stop)?;
            let name = std::path::Path::new(&argv[0])
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "command".into());
            Ok(Started {
                dir: folder(&name)?,
                name,
                jobs,
                recorder,
                session: None,
                child: Some(child),
            })
        }
    }
}

/// (label, load) for `--url`s: a plain GET of each.
fn url_jobs(urls: &[String], shape: &LoadShape) -> anyhow::Result<Vec<(String, LoadConfig)>> {
    urls.iter()
        .map(|url| {
            let target = load::parse_url(url)?;
            let requests = vec![RequestSpec::get(&target.path)];
            Ok((
                url.clone(),
                LoadConfig::new(target, requests, shape.clone()),
            ))
        })
        .collect()
}

/// Waits until `addr` accepts a connection, or the command exits.
fn wait_ready(
    addr: std::net::SocketAddr,
    child: &mut Child,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_status() {
            bail!("the command exited with status {status} before answering on {addr}");
        }
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!("nothing answered on {addr} within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
