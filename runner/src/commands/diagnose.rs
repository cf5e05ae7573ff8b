//! `runner diagnose`: drives load at each scenario of an app (or at URLs of a running process
//! or a launched command) while the evloop probe follows its event loops, then prints a
//! verdict per scenario and writes diagnosis.json, diagnosis.md and the stall flamegraphs.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::profile::{give_to_invoker, load_config, LoadShape};
use crate::{
    apps::{
        manifest::{self, apps_dir},
        scenarios::{Scenario, Scenarios},
        session::{default_cpus, Session, SessionOptions},
    },
    diagnose::{self, Diagnosis},
    flamegraph,
    launch::{self, Child},
    load::{self, request::RequestSpec, schedule::Schedule, LoadConfig},
    privilege::{Privileges, NEEDS_ROOT},
    probe::{ProbeConfig, Target},
    recording::{write, Recorder},
    sampler::INTERVAL,
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
    /// Load per scenario or URL.
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub workers: Option<u32>,
    pub probe: ProbeConfig,
    pub out: PathBuf,
}

/// One stretch of load.
struct Job {
    label: String,
    config: LoadConfig,
}

/// How long a launched command gets to answer on its first URL.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(d: &DiagnoseRun) -> anyhow::Result<ExitCode> {
    if !Privileges::current().can_probe() {
        bail!("runner diagnose: {NEEDS_ROOT}");
    }
    let stop = super::stop_flag()?;
    let (client_cpus_default, app_cpus) = {
        let (app, client) = default_cpus();
        (client, app)
    };
    let shape = |cpus: Vec<usize>| LoadShape {
        threads: 1,
        cpus,
        schedule: Schedule::closed(d.connections, Some(d.duration)),
        max_requests: None,
        timeout: Duration::from_secs(10),
        think: None,
    };
    std::fs::create_dir_all(&d.out).with_context(|| format!("creating {}", d.out.display()))?;
    let out = std::path::absolute(&d.out)?;

    // Keep whatever runs the target alive until the end.
    let mut session: Option<Session> = None;
    let mut child: Option<Child> = None;
    let (name, target, jobs, mut recorder) = match &d.target {
        DiagnoseTarget::App { app, scenarios } => {
            let dir = apps_dir();
            let all = Scenarios::read(&dir)?;
            let app = manifest::find(app, &dir, &all.names())?;
            let chosen: Vec<&Scenario> = if scenarios.is_empty() {
                all.names()
                    .iter()
                    .filter(|n| app.unsupported_reason(n).is_none())
                    .map(|n| all.get(n))
                    .collect::<Result<_, _>>()?
            } else {
                let mut chosen = Vec::new();
                for n in scenarios {
                    if let Some(reason) = app.unsupported_reason(n) {
                        bail!("{} does not support {n}: {reason}", app.name);
                    }
                    chosen.push(all.get(n)?);
                }
                chosen
            };
            eprintln!(
                "runner: starting {} for {} scenario(s)",
                app.name,
                chosen.len()
            );
            let run_dir = out.join(format!(".{}-diagnose-{}.app", super::timestamp(), app.name));
            std::fs::create_dir_all(&run_dir)?;
            let opts = SessionOptions {
                workers: d.workers,
                app_cpus: app_cpus.clone(),
                client_cpus: client_cpus_default.clone(),
                memory: Some(2 << 30),
                run_dir,
            };
            let s = Session::start(&app, &chosen, &dir, &opts, &mut |m| {
                eprintln!("runner:   {m}")
            })
            .with_context(|| format!("starting {}", app.name))?;
            let addr = s.app.addr;
            let mut jobs = Vec::new();
            for sc in &chosen {
                jobs.push(Job {
                    label: format!("{} {}", sc.name, sc.path()),
                    config: load_config(
                        addr,
                        sc.requests(),
                        Some(sc),
                        shape(client_cpus_default.clone()),
                    )?,
                });
            }
            let cgroup = s.app.groups.target();
            let target = Target {
                tgids: if cgroup.is_some() {
                    Vec::new()
                } else {
                    s.app.pids()
                },
                cgroups: cgroup.into_iter().collect(),
            };
            let recorder =
                Recorder::start(&d.probe, &target, true).context("attaching the probes")?;
            session = Some(s);
            (app.name.clone(), target, jobs, recorder)
        }
        DiagnoseTarget::Pids { pids, urls } => {
            for pid in pids {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    bail!("no process {pid}");
                }
            }
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
            (name, target, url_jobs(urls, &shape(Vec::new()))?, recorder)
        }
        DiagnoseTarget::Command { argv, urls } => {
            let jobs = url_jobs(urls, &shape(Vec::new()))?;
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
            child = Some(gated.release()?);
            let first = &jobs[0].config.target;
            eprintln!("runner: waiting for {} to answer", first.authority);
            wait_ready(first.addr, child.as_mut(), &stop)?;
            let name = std::path::Path::new(&argv[0])
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "command".into());
            (name, target, jobs, recorder)
        }
    };
    let _ = &target;

    let mut results = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        eprintln!(
            "runner: [{}/{}] {} for {}",
            i + 1,
            jobs.len(),
            job.label,
            humantime::format_duration(d.duration)
        );
        if !d.warmup.is_zero() {
            let warm = LoadConfig {
                schedule: Schedule::closed(d.connections, Some(d.warmup)),
                ..job.config.clone()
            };
            load::run(&warm, stop.clone(), &mut |_| {})?;
        }
        recorder.window_start(&job.label)?;
        let outcome = run_load(&job.config, &stop, &mut recorder)?;
        recorder.window_end()?;
        results.push(outcome);
        if let Some(s) = session.as_mut() {
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
    let recording = recorder.finish()?;
    if let Some(mut c) = child.take() {
        c.stop(Duration::from_secs(5));
    }
    drop(session);
    let data = recording
        .evloop
        .as_ref()
        .context("the evloop probe recorded nothing")?;
    let mut diagnosis = Diagnosis::new(&name, d.probe.stall_threshold);
    diagnosis.interrupted = interrupted;
    let dir = out.join(format!("{}-diagnose-{name}", super::timestamp()));
    std::fs::create_dir_all(&dir)?;
    for (i, window) in data.windows.iter().enumerate() {
        let mut entry = diagnose::analyse(data, window);
        if let Some((rps, errors)) = results.get(i) {
            entry.rps = *rps;
            entry.errors = *errors;
        }
        let stalls = diagnose::stall_folded(data, window);
        if !stalls.is_empty() {
            let base = format!("stalls-{}", i + 1);
            write(&dir, &format!("{base}.folded"), stalls.to_bytes())?;
            let title = format!("Stall time of {} (microseconds)", window.label);
            write(
                &dir,
                &format!("{base}.svg"),
                flamegraph::render(&stalls, &title, "us")?,
            )?;
        }
        diagnosis.entries.push(entry);
    }
    write(
        &dir,
        "diagnosis.json",
        serde_json::to_vec_pretty(&diagnosis)?,
    )?;
    write(&dir, "diagnosis.md", diagnosis.to_markdown().into_bytes())?;
    give_to_invoker(&dir);
    print!("{}", diagnosis.table());
    println!("wrote {}", dir.display());
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// Jobs for `--url`s: a plain GET of each.
fn url_jobs(urls: &[String], shape: &LoadShape) -> anyhow::Result<Vec<Job>> {
    urls.iter()
        .map(|url| {
            let target = load::parse_url(url)?;
            let config = LoadConfig {
                requests: vec![RequestSpec::get(&target.path)],
                target,
                threads: shape.threads,
                cpus: shape.cpus.clone(),
                schedule: shape.schedule.clone(),
                max_requests: None,
                timeout: shape.timeout,
                think: None,
                ws_message: "runner-echo".into(),
            };
            config.validate()?;
            Ok(Job {
                label: url.clone(),
                config,
            })
        })
        .collect()
}

/// Runs one window of load, ticking the recorder; returns (ok/s, errors).
fn run_load(
    config: &LoadConfig,
    stop: &Arc<std::sync::atomic::AtomicBool>,
    recorder: &mut Recorder,
) -> anyhow::Result<(f64, u64)> {
    let config = config.clone();
    let load_stop = stop.clone();
    let load = std::thread::spawn(move || load::run(&config, load_stop, &mut |_| {}));
    while !load.is_finished() {
        std::thread::sleep(INTERVAL);
        recorder.tick();
    }
    let outcome = load.join().expect("the load thread panicked")?;
    let r = &outcome.report.total;
    Ok((r.rps, r.error_total))
}

/// Waits until `addr` accepts a connection, or the command exits.
fn wait_ready(
    addr: std::net::SocketAddr,
    child: Option<&mut Child>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut child = child;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.as_deref_mut().and_then(Child::try_status) {
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
