//! `runner profile APP SCENARIO`, a pipeline read top to bottom: provision and start the app
//! (and its database), verify, warm up, record (probes + sampler) while the load runs, stop
//! everything, analyse, write results/<run-id>/, print a summary.

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
        self,
        manifest::{self, apps_dir, Manifest},
        scenarios::{Scenario, Scenarios},
        session::{Session, SessionFacts, SessionOptions},
        venv, verify,
    },
    diagnose::{self, LoadFigures},
    host,
    interference::{Interference, Watch},
    load::{self, request::RequestSpec, schedule::Schedule, LoadConfig, LoadOutcome, LoadShape},
    privilege::{Privileges, NEEDS_ROOT},
    probe::{ProbeConfig, Target},
    record::{Recorder, Recording},
    report,
    results::{
        run::{ClientUsage, LoadSettings, RunInfo, SCHEMA as RUN_SCHEMA},
        summary::{LoadSummary, ProbeSummary, Resources, RunStatus, Summary, SCHEMA},
    },
    run_dir::{timestamp, RunDir},
    sampler::TOTAL_PID,
    signals,
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

/// How long the app's loops get to finish what the load left queued.
const SETTLE: Duration = Duration::from_secs(10);

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

/// The profile pipeline; prints progress and the summary, and returns the results.
pub fn profile(p: &ProfileRun) -> anyhow::Result<Profiled> {
    if !p.no_probes && !Privileges::current().can_probe() {
        bail!(
            "runner profile: {NEEDS_ROOT} (or pass --no-probes for load and procfs figures only)"
        );
    }
    let stop = signals::stop_flag()?;
    let plan = Plan::of(p)?;
    let mut dir = RunDir::create(&p.out, &plan.run_id())?;

    phase(1, &format!("provisioning and starting {}", plan.app.name));
    let session = match start(&plan, p, &dir) {
        Ok(session) => session,
        Err(e) => {
            dir.discard();
            return Err(e.context(format!("starting {}", plan.app.name)));
        }
    };
    if let Err(e) = check(&plan, &session) {
        drop(session);
        dir.discard();
        return Err(e);
    }
    let config = apps::load_config(
        session.app.addr,
        plan.requests.clone(),
        plan.scenario.as_ref(),
        plan.shape(p),
    )?;
    warm_up(&config, p, &stop)?;

    phase(4, &recording_what(p));
    let (session, measured) = record(&config, session, p, &plan.scenario_name, &stop)?;

    phase(5, "detaching and stopping the app and database");
    let stopped = stop_app(session, p, &stop, &dir);

    phase(6, "writing results");
    let diagnosis = measured.recording.evloop.as_ref().and_then(|data| {
        let window = data.windows.first()?;
        let load = &measured.load.report.total;
        Some(diagnose::analyse(
            data,
            window,
            LoadFigures {
                rps: load.rps,
                errors: load.error_total,
            },
        ))
    });
    write_measurements(&mut dir, &measured.recording, &measured.load)?;
    let summary = summarise(&plan, &dir, &measured, &stopped, diagnosis);
    write_reports(&mut dir, &summary, &plan, p, &stopped, &measured.client)?;
    let final_dir = dir.finish()?;

    println!(
        "{}",
        report::terminal::profile(
            &summary,
            &report::recording::lines(&measured.recording),
            measured.elapsed,
            &measured.client
        )
    );
    print!(
        "{}",
        report::terminal::results_list(&final_dir, &summary.artifacts)
    );
    let exit = match summary.status {
        RunStatus::Failed => {
            if let Some(failure) = &summary.failure {
                eprintln!("runner: {failure}");
            }
            ExitCode::FAILURE
        }
        RunStatus::Interrupted => ExitCode::from(130),
        RunStatus::Ok => ExitCode::SUCCESS,
    };
    Ok(Profiled {
        dir: final_dir,
        summary,
        exit,
    })
}

fn phase(n: usize, text: &str) {
    eprintln!("runner: [{n}/7] {text}");
}

/// What a profile runs: the app, and the scenario or the user's own request.
struct Plan {
    apps_dir: PathBuf,
    app: Manifest,
    /// The scenario's name, or `url-PATH` for a request of the user's own.
    scenario_name: String,
    scenario: Option<Scenario>,
    requests: Vec<RequestSpec>,
}

impl Plan {
    fn of(p: &ProfileRun) -> anyhow::Result<Self> {
        let apps_dir = apps_dir();
        let scenarios = Scenarios::read(&apps_dir)?;
        let app = manifest::find(&p.app, &apps_dir, &scenarios.names())?;
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
                (name.clone(), s.requests(), Some(s.clone()))
            }
            (None, None) => bail!(
                "name a scenario ({}) or --url PATH",
                scenarios.names().join(", ")
            ),
        };
        Ok(Self {
            apps_dir,
            app,
            scenario_name,
            scenario,
            requests,
        })
    }

    fn run_id(&self) -> String {
        format!(
            "{}-{}-{}",
            timestamp(),
            self.app.name,
            self.scenario_name.trim_matches('-')
        )
    }

    /// The CPUs of the app and of the client (and database).
    fn cpus(p: &ProfileRun) -> (Vec<usize>, Vec<usize>) {
        let (app, client) = host::default_cpus();
        (
            p.app_cpus.clone().unwrap_or(app),
            p.client_cpus.clone().unwrap_or(client),
        )
    }

    fn shape(&self, p: &ProfileRun) -> LoadShape {
        LoadShape {
            threads: p.threads,
            cpus: Self::cpus(p).1,
            schedule: p.schedule.clone(),
            max_requests: p.max_requests,
            timeout: p.timeout,
            think: p.think,
        }
    }
}

/// Provisions and starts the app (and its database), its files in the run folder.
fn start(plan: &Plan, p: &ProfileRun, dir: &RunDir) -> anyhow::Result<Session> {
    let (app_cpus, client_cpus) = Plan::cpus(p);
    let opts = SessionOptions {
        workers: p.workers,
        app_cpus,
        client_cpus,
        memory: p.memory,
        run_dir: dir.path().to_path_buf(),
    };
    let session = Session::start(
        &plan.app,
        &plan.scenario.iter().collect::<Vec<_>>(),
        &plan.apps_dir,
        &opts,
        &mut |m| eprintln!("runner:       {m}"),
    )?;
    for w in &session.facts.warnings {
        eprintln!("runner: warning: {w}");
    }
    Ok(session)
}

/// Verifies the scenario against the contract (a request of the user's own is not checked).
fn check(plan: &Plan, session: &Session) -> anyhow::Result<()> {
    let Some(s) = &plan.scenario else {
        phase(2, "custom --url: skipping contract verification");
        return Ok(());
    };
    phase(2, &format!("verifying {}", plan.scenario_name));
    let checks = verify::check(session.app.addr, s, session.database_url.as_deref());
    if checks.iter().any(|c| !c.ok) {
        print!("{}", report::verify::table(&plan.app.name, &checks));
        bail!(
            "{} fails verification of {}; nothing was measured",
            plan.app.name,
            plan.scenario_name
        );
    }
    Ok(())
}

/// Closed-loop load for the warm-up time, not measured.
fn warm_up(config: &LoadConfig, p: &ProfileRun, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    if p.warmup.is_zero() || stop.load(Ordering::Relaxed) {
        return Ok(());
    }
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
    Ok(())
}

fn recording_what(p: &ProfileRun) -> String {
    format!(
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
    )
}

/// What the recording stage measured.
struct Measured {
    recording: Recording,
    interference: Interference,
    load: LoadOutcome,
    /// The app's exit status, when it died during the load.
    app_died: Option<String>,
    elapsed: Duration,
    client: ClientUsage,
}

/// Attaches the probes and the sampler to the app, runs the load, and detaches.
fn record(
    config: &LoadConfig,
    mut session: Session,
    p: &ProfileRun,
    label: &str,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(Session, Measured)> {
    let cgroup = session.app.groups.target();
    let target = Target {
        tgids: if cgroup.is_some() {
            Vec::new()
        } else {
            session.app.pids()
        },
        cgroups: cgroup.into_iter().collect(),
    };
    let mut recorder =
        Recorder::start(&p.probe, &target, !p.no_probes).context("attaching the probes")?;
    let (app_cpus, client_cpus) = Plan::cpus(p);
    recorder.watch(Watch {
        app_cpus,
        client_cpus,
        ours: session.helper_pids(),
        cgroup: session.app.groups.v2.clone(),
    });
    let (user0, sys0, _) = host::self_usage();
    let bar = report::progress::bar(p.schedule.duration());
    let mut app_died = None;
    let started = Instant::now();
    // The event-loop window covers the load and what it left queued, nothing else.
    recorder.window_start(label)?;
    let load = recorder.record_while(
        || {
            load::run(config, stop.clone(), &mut |pr| {
                report::progress::show(&bar, pr)
            })
        },
        || {
            if app_died.is_none() {
                if let Some(status) = session.app.exited() {
                    app_died = Some(status);
                    stop.store(true, Ordering::Relaxed);
                }
            }
        },
    );
    let elapsed = started.elapsed();
    report::progress::finish(bar);
    recorder.settle(SETTLE)?;
    recorder.window_end()?;
    let load = load?;
    let (user1, sys1, max_rss_mb) = host::self_usage();
    let recording = recorder.finish(label)?;
    let series = &load.report.timeseries;
    let mut responses = vec![
        0u64;
        series
            .iter()
            .map(|r| r.second as usize + 1)
            .max()
            .unwrap_or(0)
    ];
    for r in series {
        responses[r.second as usize] += r.ok + r.errors;
    }
    let interference = recording.machine.assess(started, &responses);
    let measured = Measured {
        recording,
        interference,
        load,
        app_died,
        elapsed,
        client: ClientUsage {
            cpu_user_s: user1 - user0,
            cpu_sys_s: sys1 - sys0,
            max_rss_mb,
        },
    };
    Ok((session, measured))
}

/// What is known of the app once it is stopped.
struct Stopped {
    facts: SessionFacts,
    log_tail: String,
    framework_version: Option<String>,
}

/// Stops the app and its database (after Ctrl-C with --keep-running), and removes their
/// scratch files from the run folder; the log stays.
fn stop_app(session: Session, p: &ProfileRun, stop: &Arc<AtomicBool>, dir: &RunDir) -> Stopped {
    let stopped = Stopped {
        log_tail: session.app.log_tail(20),
        framework_version: venv::package_version(
            session.facts.python_path.as_deref(),
            &session.facts.framework,
        ),
        facts: session.facts.clone(),
    };
    if p.keep_running {
        eprintln!(
            "runner: {} keeps running at http://{} (Ctrl-C stops it)",
            session.app.name, session.app.addr
        );
        stop.store(false, Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(session);
    for scratch in ["sqlite", "postgres", "home"] {
        let _ = std::fs::remove_dir_all(dir.path().join(scratch));
    }
    stopped
}

/// Writes what the recording and the load measured.
fn write_measurements(
    dir: &mut RunDir,
    recording: &Recording,
    load: &LoadOutcome,
) -> anyhow::Result<()> {
    for (name, bytes) in report::recording::files(recording)? {
        dir.write(name, bytes)?;
    }
    if let Some((data, window)) = recording
        .evloop
        .as_ref()
        .and_then(|d| Some((d, d.windows.first()?)))
    {
        let stalls = diagnose::stall_folded(data, window);
        dir.write("stalls.folded", stalls.to_bytes())?;
        if !stalls.is_empty() {
            let title = format!(
                "Event-loop stalls over {} ms (microseconds)",
                data.threshold.as_millis()
            );
            dir.write(
                "stalls.svg",
                report::flamegraph::render(&stalls, &title, "us")?,
            )?;
        }
    }
    dir.write("latency.hgrm", report::load::to_hgrm(&load.histogram))?;
    dir.write(
        "timeseries.csv",
        report::load::to_csv(&load.report.timeseries),
    )?;
    dir.write("load.json", report::load::to_json(&load.report))?;
    dir.note("app.log");
    Ok(())
}

/// The files written last, which the summary lists too.
const REPORTS: [&str; 4] = ["summary.json", "run.json", "report.md", "report.html"];

/// summary.json's figures.
fn summarise(
    plan: &Plan,
    dir: &RunDir,
    m: &Measured,
    stopped: &Stopped,
    diagnosis: Option<diagnose::Entry>,
) -> Summary {
    let interrupted = m.load.report.interrupted && m.app_died.is_none();
    let status = if m.app_died.is_some() {
        RunStatus::Failed
    } else if interrupted {
        RunStatus::Interrupted
    } else {
        RunStatus::Ok
    };
    Summary {
        schema: SCHEMA.into(),
        run_id: dir.id().to_string(),
        app: plan.app.name.clone(),
        scenario: plan.scenario_name.clone(),
        status,
        failure: m.app_died.as_ref().map(|s| {
            format!(
                "the app died during the load ({s}); log tail:\n{}",
                stopped.log_tail
            )
        }),
        started_at: m.recording.started_at.clone(),
        load: LoadSummary::new(&m.load.report, spectrum(&m.load.histogram)),
        resources: Resources {
            summary: m.recording.sampler.summary(),
            cpu_series: m
                .recording
                .sampler
                .rows()
                .iter()
                .filter(|r| r.pid == TOTAL_PID)
                .skip(1)
                .map(|r| ((r.t_s * 10.0).round() / 10.0, r.cpu_pct))
                .collect(),
        },
        probes: ProbeSummary::of(&m.recording),
        diagnosis,
        interference: Some(m.interference.clone()),
        artifacts: dir.artifacts(&REPORTS),
    }
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

/// Writes summary.json, run.json, report.md and report.html.
fn write_reports(
    dir: &mut RunDir,
    summary: &Summary,
    plan: &Plan,
    p: &ProfileRun,
    stopped: &Stopped,
    client: &ClientUsage,
) -> anyhow::Result<()> {
    dir.write("summary.json", serde_json::to_vec_pretty(summary)?)?;
    let client_cpus = Plan::cpus(p).1;
    let run = RunInfo {
        schema: RUN_SCHEMA,
        run_id: &summary.run_id,
        status: summary.status.name(),
        runner_version: env!("CARGO_PKG_VERSION"),
        git_commit: host::git_commit(&plan.apps_dir),
        kernel_release: host::kernel_release(),
        cpu_model: host::cpu_model(),
        online_cpus: host::online_cpus().len(),
        app: &stopped.facts,
        framework_version: stopped.framework_version.clone(),
        scenario: &plan.scenario_name,
        client_cpus: &client_cpus,
        load: LoadSettings {
            threads: p.threads,
            schedule: &p.schedule,
            max_requests: p.max_requests,
            timeout_s: p.timeout.as_secs_f64(),
            warmup_s: p.warmup.as_secs_f64(),
            requests: &plan.requests,
        },
        probes: (!p.no_probes).then_some(&p.probe),
        client: client.clone(),
    };
    dir.write("run.json", serde_json::to_vec_pretty(&run)?)?;
    dir.write("report.md", report::run::markdown(summary))?;
    dir.write("report.html", report::run::html(summary))?;
    Ok(())
}
