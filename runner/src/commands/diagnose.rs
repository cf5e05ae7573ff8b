//! `runner diagnose`: start the target (an app or a command) or take a running one (a
//! container, processes, a cgroup), then load each scenario or URL in turn while the evloop
//! probe follows its event loops, one window each; analyse every window, write
//! diagnosis.json, diagnosis.md and the stall flamegraphs, and print the verdicts. A running
//! target that stops or restarts ends the run early: what was measured is written and the
//! exit is nonzero.

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

use crate::cpython::install::Choice;
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
    target::{Running, TargetSpec},
};

/// What to diagnose.
#[derive(Clone, Debug)]
pub enum DiagnoseTarget {
    /// A bundled app or an app.toml, and its scenarios (empty: every supported one).
    App { app: String, scenarios: Vec<String> },
    /// A running container, processes or cgroup, loaded at these URLs.
    Running { spec: TargetSpec, jobs: Vec<UrlJob> },
    /// A command to launch, loaded at these URLs once they answer.
    Command {
        argv: Vec<String>,
        jobs: Vec<UrlJob>,
    },
}

/// One window of load at a URL: its requests (one, or a mix).
#[derive(Clone, Debug)]
pub struct UrlJob {
    pub label: String,
    pub url: String,
    pub requests: Vec<RequestSpec>,
}

/// A validated `runner diagnose` invocation.
#[derive(Clone, Debug)]
pub struct DiagnoseRun {
    pub target: DiagnoseTarget,
    /// The load of each window (its CPUs are chosen per target).
    pub shape: LoadShape,
    /// Several connection counts: each scenario or URL is loaded at each, closed loop, for
    /// the shape's duration.
    pub connections: Vec<usize>,
    pub ws_message: String,
    pub warmup: Duration,
    pub workers: Option<u32>,
    /// The interpreter of a Python app (default: venv's choice).
    pub python: Option<Choice>,
    pub probe: ProbeConfig,
    pub out: PathBuf,
}

/// One stretch of load.
struct Job {
    label: String,
    config: LoadConfig,
}

/// The jobs of `(label, config)` pairs, at each of the connection counts when there are
/// several (the label then names the count).
fn at_each_concurrency(d: &DiagnoseRun, jobs: Vec<(String, LoadConfig)>) -> Vec<Job> {
    let mut out = Vec::new();
    for (label, config) in jobs {
        if d.connections.len() < 2 {
            out.push(Job { label, config });
            continue;
        }
        for &c in &d.connections {
            out.push(Job {
                label: format!("{label} c={c}"),
                config: LoadConfig {
                    schedule: Schedule::closed(c, d.shape.schedule.duration()),
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
    /// A running target, watched and left running.
    running: Option<Running>,
    dir: RunDir,
}

pub fn run(d: &DiagnoseRun) -> anyhow::Result<ExitCode> {
    if !Privileges::current().can_probe() {
        bail!("runner diagnose: {NEEDS_ROOT}");
    }
    let stop = signals::stop_flag()?;
    let mut t = start(d, &stop)?;

    let mut figures = Vec::new();
    let mut failure = None;
    let each = match d.shape.schedule.duration() {
        Some(duration) => humantime::format_duration(duration).to_string(),
        None => format!("{} requests", d.shape.max_requests.unwrap_or(0)),
    };
    for (i, job) in t.jobs.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        eprintln!(
            "runner: [{}/{}] {} for {each}",
            i + 1,
            t.jobs.len(),
            job.label
        );
        if !d.warmup.is_zero() {
            let warm = LoadConfig {
                schedule: Schedule::closed(job.config.schedule.max_connections(), Some(d.warmup)),
                max_requests: None,
                ..job.config.clone()
            };
            load::run(&warm, stop.clone(), &mut |_| {})?;
        }
        // What the warm-up (or the window before) left queued is not this window's.
        t.recorder.settle(SETTLE)?;
        let cpu_before = t.recorder.cpu_ns_now();
        // The window's own stop: Ctrl-C, or the running target going away.
        let halt = Arc::new(AtomicBool::new(false));
        t.recorder.window_start(&job.label)?;
        let running = t.running.as_ref();
        let outcome = t.recorder.record_while(
            || load::run(&job.config, halt.clone(), &mut |_| {}),
            || {
                if stop.load(Ordering::Relaxed) {
                    halt.store(true, Ordering::Relaxed);
                }
                if failure.is_none() {
                    failure = running.and_then(Running::gone);
                    if failure.is_some() {
                        halt.store(true, Ordering::Relaxed);
                    }
                }
            },
        )?;
        // The CPU figure covers the load alone: requests still out when it ended are not
        // counted as responses, so the work they leave behind is not counted either.
        let cpu = t.recorder.cpu_ns_now().checked_sub(cpu_before);
        // What this window's load left queued is.
        t.recorder.settle(SETTLE)?;
        t.recorder.window_end()?;
        let total = &outcome.report.total;
        figures.push(LoadFigures::new(
            total.rps,
            total.error_total,
            cpu,
            total.ok,
        ));
        if failure.is_none() {
            failure = t.running.as_ref().and_then(Running::confirm);
        }
        if failure.is_some() {
            break;
        }
        if let Some(s) = t.session.as_mut() {
            if let Some(status) = s.app.exited() {
                bail!("the app exited during {}: {status}", job.label);
            }
        }
    }
    let interrupted = stop.load(Ordering::Relaxed) && failure.is_none();
    if let Some(why) = &failure {
        eprintln!("runner: {why}; writing what was measured until then");
    } else if interrupted {
        eprintln!("runner: interrupted; writing what was measured");
    }
    eprintln!("runner: symbolizing");
    let recording = t.recorder.finish("recording")?;
    if let Some(mut c) = t.child.take() {
        c.stop(Duration::from_secs(5));
    }
    let python = t.session.as_ref().and_then(|s| s.facts.interpreter.clone());
    if let Some(session) = t.session.take() {
        drop(session);
        t.dir.note("app.log");
    }
    let data = recording
        .evloop
        .as_ref()
        .context("the evloop probe recorded nothing")?;
    let mut diagnosis = Diagnosis::new(&t.name, d.probe.stall_threshold);
    diagnosis.interrupted = interrupted;
    diagnosis.target = t.running.as_ref().map(|r| r.facts.clone());
    diagnosis.python = python;
    diagnosis.failure = failure.clone();
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
    let mut markdown = report::diagnosis::markdown(&diagnosis);
    markdown.push_str(&report::target::diagnosis_section(&diagnosis));
    t.dir.write("diagnosis.md", markdown)?;
    let dir = t.dir.finish()?;
    print!("{}", report::diagnosis::table(&diagnosis));
    println!("wrote {}", dir.display());
    if let Some(why) = failure {
        eprintln!("runner: {why}; the diagnosis is partial");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// The shape of each window's load, on these client CPUs.
fn shape(d: &DiagnoseRun, cpus: Vec<usize>) -> LoadShape {
    LoadShape {
        cpus,
        ..d.shape.clone()
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
            for warning in crate::journal::claim_cpus(&app_cpus, &client_cpus) {
                eprintln!("runner: warning: {warning}");
            }
            let opts = SessionOptions {
                workers: d.workers,
                app_cpus,
                client_cpus: client_cpus.clone(),
                memory: Some(2 << 30),
                run_dir: dir.path().to_path_buf(),
                python: d.python.clone(),
            };
            let session = match Session::start(&app, &chosen, &apps_dir, &opts, &mut |m| {
                eprintln!("runner:   {m}")
            }) {
                Ok(s) => s,
                Err(e) => {
                    if let Some(log) = dir.keep_log() {
                        eprintln!("runner: the app's log is kept at {}", log.display());
                    }
                    return Err(e.context(format!("starting {}", app.name)));
                }
            };
            if let Some(i) = &session.facts.interpreter {
                eprintln!(
                    "runner: {} runs on {}",
                    app.name,
                    crate::report::run::interpreter_line(i)
                );
            }
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
                running: None,
                dir,
            })
        }
        DiagnoseTarget::Running { spec, jobs } => {
            let running = Running::resolve(spec)?;
            eprintln!(
                "runner: diagnosing the running {} (runner does not start, change or stop it)",
                crate::target::describe(&running.facts)
            );
            let client_cpus = running
                .cpuset()
                .map(|used| {
                    host::online_cpus()
                        .into_iter()
                        .filter(|c| !used.contains(c))
                        .collect()
                })
                .unwrap_or_default();
            let jobs =
                at_each_concurrency(d, url_jobs(jobs, &shape(d, client_cpus), &d.ws_message)?);
            let recorder = Recorder::start(&d.probe, &running.probe_target(), true)
                .context("attaching the probes")?;
            let name = running.name().to_string();
            Ok(Started {
                dir: folder(&name)?,
                name,
                jobs,
                recorder,
                session: None,
                child: None,
                running: Some(running),
            })
        }
        DiagnoseTarget::Command { argv, jobs } => {
            let jobs =
                at_each_concurrency(d, url_jobs(jobs, &shape(d, Vec::new()), &d.ws_message)?);
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
                running: None,
            })
        }
    }
}

/// (label, load) of each `--url` window.
fn url_jobs(
    jobs: &[UrlJob],
    shape: &LoadShape,
    ws_message: &str,
) -> anyhow::Result<Vec<(String, LoadConfig)>> {
    jobs.iter()
        .map(|job| {
            let target = load::parse_url(&job.url)?;
            let mut config = LoadConfig::new(target, job.requests.clone(), shape.clone());
            config.ws_message = ws_message.to_string();
            config.validate()?;
            Ok((job.label.clone(), config))
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
