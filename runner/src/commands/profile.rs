//! `runner profile APP SCENARIO`: provision, start the database and the app, verify, warm
//! up, record (probes + sampler) while the load runs, stop everything, then write
//! results/<run-id>/ and print a summary.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::{
    apps::{
        manifest::{self, apps_dir},
        scenarios::Scenarios,
        session::{default_cpus, online_cpus, Session, SessionFacts, SessionOptions},
        verify,
    },
    load::{self, report as load_report, request::RequestSpec, schedule::Schedule, LoadConfig},
    privilege::{Privileges, NEEDS_ROOT},
    probe::{ProbeConfig, Target},
    recording::Recorder,
    report::{
        self,
        summary::{LoadSummary, ProbeSummary, Resources, Summary, SCHEMA},
    },
    sampler::{INTERVAL, TOTAL_PID},
};

/// A validated `runner profile` invocation.
#[derive(Clone, Debug)]
pub struct ProfileRun {
    pub app: String,
    /// A contract scenario, or None with `url`.
    pub scenario: Option<String>,
    /// A request of the user's own (`--url PATH`).
    pub url: Option<RequestSpec>,
    pub threads: usize,
    pub schedule: Schedule,
    pub max_requests: Option<u64>,
    pub timeout: Duration,
    pub think: Option<Duration>,
    pub warmup: Duration,
    pub workers: Option<u32>,
    pub app_cpus: Option<Vec<usize>>,
    pub client_cpus: Option<Vec<usize>>,
    pub memory: Option<u64>,
    pub probe: ProbeConfig,
    pub no_probes: bool,
    pub keep_running: bool,
    /// The results folder (default: results).
    pub out: PathBuf,
}

#[derive(Serialize)]
struct RunJson<'a> {
    schema: &'static str,
    run_id: &'a str,
    status: &'a str,
    runner_version: &'static str,
    git_commit: Option<String>,
    kernel_release: String,
    cpu_model: Option<String>,
    online_cpus: usize,
    app: &'a SessionFacts,
    framework_version: Option<String>,
    scenario: &'a str,
    client_cpus: &'a [usize],
    load: LoadJson<'a>,
    probes: Option<&'a ProbeConfig>,
    client: ClientUsage,
}

#[derive(Serialize)]
struct LoadJson<'a> {
    threads: usize,
    schedule: &'a Schedule,
    max_requests: Option<u64>,
    timeout_s: f64,
    warmup_s: f64,
    requests: &'a [RequestSpec],
}

/// runner's own cost during the load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClientUsage {
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub max_rss_mb: f64,
}

fn usage() -> (f64, f64, f64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(u.ru_utime), tv(u.ru_stime), u.ru_maxrss as f64 / 1024.0)
}

fn git_commit(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cpu_model() -> Option<String> {
    use procfs::Current;
    procfs::CpuInfo::current()
        .ok()?
        .model_name(0)
        .map(str::to_string)
}

fn framework_version(python: Option<&str>, package: &str) -> Option<String> {
    let python = python?;
    let out = std::process::Command::new(python)
        .args([
            "-c",
            &format!("import importlib.metadata as m; print(m.version({package:?}))"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn phase(n: usize, text: &str) {
    eprintln!("runner: [{n}/7] {text}");
}

/// Quantile points of a latency histogram for the spectrum chart.
pub fn spectrum(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    [
        0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
    ]
    .iter()
    .map(|&p| (p, h.value_at_quantile(p / 100.0)))
    .collect()
}

/// A unique results folder name under `root`.
fn run_dir(root: &Path, run_id: &str) -> PathBuf {
    let mut dir = root.join(run_id);
    let mut n = 2;
    while dir.exists() {
        dir = root.join(format!("{run_id}-{n}"));
        n += 1;
    }
    dir
}

/// Under sudo, results belong to the invoking user.
pub fn give_to_invoker(path: &Path) {
    let id = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
    let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) else {
        return;
    };
    let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            give_to_invoker(&e.path());
        }
    }
}

/// A finished profile.
pub struct Profiled {
    pub dir: PathBuf,
    pub summary: Summary,
    /// 130 when interrupted, 1 when the app died, else 0.
    pub exit: ExitCode,
}

/// Runs `runner profile`.
pub fn run(p: &ProfileRun) -> anyhow::Result<ExitCode> {
    Ok(profile(p)?.exit)
}

/// How load is shaped, apart from what it requests.
pub struct LoadShape {
    pub threads: usize,
    pub cpus: Vec<usize>,
    pub schedule: Schedule,
    pub max_requests: Option<u64>,
    pub timeout: Duration,
    pub think: Option<Duration>,
}

/// The load of a scenario's requests (or a URL's) against the app at `addr`; WebSocket
/// scenarios get a ws:// target.
pub fn load_config(
    addr: std::net::SocketAddr,
    requests: Vec<RequestSpec>,
    scenario: Option<&crate::apps::scenarios::Scenario>,
    shape: LoadShape,
) -> anyhow::Result<LoadConfig> {
    let websocket = scenario.is_some_and(|s| s.websocket);
    let path = requests
        .first()
        .map(|r| r.path.clone())
        .or_else(|| scenario.map(|s| s.path().to_string()))
        .unwrap_or_else(|| "/".into());
    let scheme = if websocket { "ws" } else { "http" };
    let target = load::parse_url(&format!(
        "{scheme}://{addr}{}",
        if websocket { path.as_str() } else { "/" }
    ))?;
    let config = LoadConfig {
        target,
        requests,
        threads: shape.threads,
        cpus: shape.cpus,
        schedule: shape.schedule,
        max_requests: shape.max_requests,
        timeout: shape.timeout,
        think: shape.think,
        ws_message: "runner-echo".into(),
    };
    config.validate()?;
    Ok(config)
}

/// The profile pipeline; prints progress and the summary, and returns the results.
pub fn profile(p: &ProfileRun) -> anyhow::Result<Profiled> {
    if !p.no_probes && !Privileges::current().can_probe() {
        bail!(
            "runner profile: {NEEDS_ROOT} (or pass --no-probes for load and procfs figures only)"
        );
    }
    let stop = super::stop_flag()?;
    let dir = apps_dir();
    let scenarios = Scenarios::read(&dir)?;
    let app = manifest::find(&p.app, &dir, &scenarios.names())?;
    let (scenario_name, requests, scenario) = match (&p.scenario, &p.url) {
        (_, Some(spec)) => (
            format!(
                "url{}",
                spec.path.replace(['/', '?', '&', '=', '{', '}'], "-")
            ),
            vec![spec.clone()],
            None,
        ),
        (Some(name), None) => {
            let s = scenarios.get(name)?;
            if let Some(reason) = app.unsupported_reason(name) {
                bail!("{} does not support {name}: {reason}", app.name);
            }
            (name.clone(), s.requests(), Some(s))
        }
        (None, None) => bail!(
            "name a scenario ({}) or --url PATH",
            scenarios.names().join(", ")
        ),
    };
    let run_id = format!(
        "{}-{}-{}",
        super::timestamp(),
        app.name,
        scenario_name.trim_matches('-')
    );
    std::fs::create_dir_all(&p.out).with_context(|| format!("creating {}", p.out.display()))?;
    // Absolute: the app gets paths inside it (SQLITE_PATH, HOME) and runs in its own folder.
    let out =
        std::path::absolute(&p.out).with_context(|| format!("resolving {}", p.out.display()))?;
    let final_dir = run_dir(&out, &run_id);
    let work = out.join(format!(".{run_id}.partial"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let (default_app, default_client) = default_cpus();
    let app_cpus = p.app_cpus.clone().unwrap_or(default_app);
    let client_cpus = p.client_cpus.clone().unwrap_or(default_client);

    phase(1, &format!("provisioning and starting {}", app.name));
    let needed: Vec<&crate::apps::scenarios::Scenario> = scenario.into_iter().collect();
    let session_opts = SessionOptions {
        workers: p.workers,
        app_cpus: app_cpus.clone(),
        client_cpus: client_cpus.clone(),
        memory: p.memory,
        run_dir: work.clone(),
    };
    let session = match Session::start(&app, &needed, &dir, &session_opts, &mut |m| {
        eprintln!("runner:       {m}")
    }) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e.context(format!("starting {}", app.name)));
        }
    };
    for w in &session.facts.warnings {
        eprintln!("runner: warning: {w}");
    }
    let addr = session.app.addr;
    if let Some(s) = scenario {
        phase(2, &format!("verifying {scenario_name}"));
        let checks = verify::check(addr, s, session.database_url.as_deref());
        if checks.iter().any(|c| !c.ok) {
            print!("{}", verify::table(&app.name, &checks));
            drop(session);
            let _ = std::fs::remove_dir_all(&work);
            bail!(
                "{} fails verification of {scenario_name}; nothing was measured",
                app.name
            );
        }
    } else {
        phase(2, "custom --url: skipping contract verification");
    }
    let config = load_config(
        addr,
        requests.clone(),
        scenario,
        LoadShape {
            threads: p.threads,
            cpus: client_cpus.clone(),
            schedule: p.schedule.clone(),
            max_requests: p.max_requests,
            timeout: p.timeout,
            think: p.think,
        },
    )?;
    config.validate()?;
    if !p.warmup.is_zero() && !stop.load(Ordering::Relaxed) {
        phase(
            3,
            &format!("warming up for {}", humantime::format_duration(p.warmup)),
        );
        let warm = LoadConfig {
            schedule: Schedule::closed(p.schedule.max_connections(), Some(p.warmup)),
            max_requests: None,
            ..config.clone()
        };
        load::run(&warm, stop.clone(), &mut |_| {})?;
    }

    phase(
        4,
        &format!(
            "recording {}{}",
            if p.no_probes {
                "load and procfs"
            } else {
                "load, probes and procfs"
            },
            match p.schedule.duration() {
                Some(d) => format!(" for {}", humantime::format_duration(d)),
                None => String::new(),
            }
        ),
    );
    let cgroup = session.app.groups.target();
    let probe_target = Target {
        tgids: if cgroup.is_some() {
            Vec::new()
        } else {
            session.app.pids()
        },
        cgroups: cgroup.into_iter().collect(),
    };
    let mut recorder =
        Recorder::start(&p.probe, &probe_target, !p.no_probes).context("attaching the probes")?;
    let (cpu_user0, cpu_sys0, _) = usage();
    let load_stop = stop.clone();
    let bar = Arc::new(super::load::progress_bar(p.schedule.duration()));
    let bar2 = bar.clone();
    let load_thread = std::thread::spawn(move || {
        load::run(&config, load_stop, &mut |progress| {
            if let Some(bar) = bar2.as_ref() {
                bar.set_position(progress.elapsed.as_secs());
                bar.set_message(super::load::progress_message(progress));
            }
        })
    });
    let mut session = session;
    let mut app_died = None;
    let started = Instant::now();
    while !load_thread.is_finished() {
        std::thread::sleep(INTERVAL);
        recorder.tick();
        if app_died.is_none() {
            if let Some(status) = session.app.exited() {
                app_died = Some(status);
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    let load_elapsed = started.elapsed();
    if let Some(bar) = bar.as_ref() {
        bar.finish_and_clear();
    }
    let outcome = load_thread.join().expect("the load thread panicked")?;
    let (cpu_user1, cpu_sys1, max_rss) = usage();
    let interrupted = outcome.report.interrupted && app_died.is_none();

    phase(5, "detaching and stopping the app and database");
    let recording = recorder.finish()?;
    let log_tail = session.app.log_tail(20);
    let facts = session.facts.clone();
    let framework_version = framework_version(facts.python_path.as_deref(), &app.framework);
    if p.keep_running {
        eprintln!(
            "runner: {} keeps running at http://{addr} (Ctrl-C stops it)",
            app.name
        );
        stop.store(false, Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(session);
    let _ = std::fs::remove_dir_all(work.join("sqlite"));
    let _ = std::fs::remove_dir_all(work.join("postgres"));
    let _ = std::fs::remove_dir_all(work.join("home"));

    phase(6, "writing results");
    let mut artifacts: BTreeMap<String, String> = BTreeMap::new();
    for name in recording.write_artifacts(&work)? {
        artifacts.insert(name.into(), name.into());
    }
    let write = |name: &str, bytes: Vec<u8>| crate::recording::write(&work, name, bytes);
    write("latency.hgrm", load_report::to_hgrm(&outcome.histogram))?;
    write(
        "timeseries.csv",
        load_report::to_csv(&outcome.report.timeseries),
    )?;
    write("load.json", load_report::to_json(&outcome.report))?;
    for name in [
        "latency.hgrm",
        "timeseries.csv",
        "load.json",
        "app.log",
        "summary.json",
        "run.json",
        "report.md",
        "report.html",
    ] {
        artifacts.insert(name.into(), name.into());
    }
    let status = if app_died.is_some() {
        "failed"
    } else if interrupted {
        "interrupted"
    } else {
        "ok"
    };
    let resources = recording.sampler.summary();
    let summary = Summary {
        schema: SCHEMA.into(),
        run_id: final_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        app: app.name.clone(),
        scenario: scenario_name.clone(),
        status: status.into(),
        failure: app_died
            .as_ref()
            .map(|s| format!("the app died during the load ({s}); log tail:\n{log_tail}")),
        started_at: recording.started_at.clone(),
        load: LoadSummary::new(&outcome.report, spectrum(&outcome.histogram)),
        resources: Resources {
            summary: resources,
            cpu_series: recording
                .sampler
                .rows()
                .iter()
                .filter(|r| r.pid == TOTAL_PID)
                .skip(1)
                .map(|r| ((r.t_s * 10.0).round() / 10.0, r.cpu_pct))
                .collect(),
        },
        probes: ProbeSummary::of(&recording),
        diagnosis: recording.diagnosis().map(|mut d| {
            d.target = scenario_name.clone();
            d.rps = outcome.report.total.rps;
            d.errors = outcome.report.total.error_total;
            d
        }),
        artifacts,
    };
    write("summary.json", serde_json::to_vec_pretty(&summary)?)?;
    let client = ClientUsage {
        cpu_user_s: cpu_user1 - cpu_user0,
        cpu_sys_s: cpu_sys1 - cpu_sys0,
        max_rss_mb: max_rss,
    };
    let run_json = RunJson {
        schema: "runner.run/v1",
        run_id: &summary.run_id,
        status,
        runner_version: env!("CARGO_PKG_VERSION"),
        git_commit: git_commit(&dir),
        kernel_release: super::kernel_release(),
        cpu_model: cpu_model(),
        online_cpus: online_cpus().len(),
        app: &facts,
        framework_version,
        scenario: &scenario_name,
        client_cpus: &client_cpus,
        load: LoadJson {
            threads: p.threads,
            schedule: &p.schedule,
            max_requests: p.max_requests,
            timeout_s: p.timeout.as_secs_f64(),
            warmup_s: p.warmup.as_secs_f64(),
            requests: &requests,
        },
        probes: (!p.no_probes).then_some(&p.probe),
        client: client.clone(),
    };
    write("run.json", serde_json::to_vec_pretty(&run_json)?)?;
    write("report.md", report::markdown(&summary).into_bytes())?;
    write("report.html", report::html(&summary).into_bytes())?;
    std::fs::rename(&work, &final_dir)
        .with_context(|| format!("moving results to {}", final_dir.display()))?;
    give_to_invoker(&final_dir);

    println!(
        "{}",
        terminal_summary(&summary, &recording.summary_lines(), load_elapsed, &client)
    );
    println!("results: {}", final_dir.display());
    for name in [
        "report.html",
        "report.md",
        "oncpu.svg",
        "offcpu.svg",
        "stalls.svg",
        "summary.json",
    ] {
        if summary.artifacts.contains_key(name) {
            println!("  {}", final_dir.join(name).display());
        }
    }
    let exit = if let Some(failure) = &summary.failure {
        eprintln!("runner: {failure}");
        ExitCode::FAILURE
    } else if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    };
    Ok(Profiled {
        dir: final_dir,
        summary,
        exit,
    })
}

fn terminal_summary(s: &Summary, probes: &str, elapsed: Duration, client: &ClientUsage) -> String {
    let l = &s.load;
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out = format!(
        "{} · {} · {} · {:.1}s of load\n",
        s.app,
        s.scenario,
        s.status,
        elapsed.as_secs_f64()
    );
    out.push_str(&format!(
        "load       ok/s {:.1} · p50 {:.2} ms · p95 {:.2} ms · p99 {:.2} ms · errors {}\n",
        l.rps,
        ms(l.latency_us.p50),
        ms(l.latency_us.p95),
        ms(l.latency_us.p99),
        l.error_total
    ));
    out.push_str(probes);
    if let Some(d) = &s.diagnosis {
        let verdict = match (d.event_loop, d.flagged) {
            (false, _) => "no event loop".to_string(),
            (true, false) => format!(
                "{} loop(s), no blocking found ({:.1} stalls/s)",
                d.loop_threads.len(),
                d.stalls_per_s
            ),
            (true, true) => format!(
                "BLOCKED {:.1}% · cpu-bound {:.1}% · {:.1} stalls/s · worst: {}",
                d.blocked_pct,
                d.cpu_bound_pct,
                d.stalls_per_s,
                d.culprits
                    .first()
                    .map(crate::diagnose::Culprit::describe)
                    .unwrap_or_default()
            ),
        };
        out.push_str(&format!("event loop {verdict}\n"));
    }
    out.push_str(&format!(
        "client     runner used {:.2} s CPU, max RSS {:.1} MB\n",
        client.cpu_user_s + client.cpu_sys_s,
        client.max_rss_mb
    ));
    out
}
