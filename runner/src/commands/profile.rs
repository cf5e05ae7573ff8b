//! `runner profile APP SCENARIO`, a pipeline read top to bottom: provision and start the app
//! (and its database), verify, warm up, record (probes + sampler) while the load runs, stop
//! everything, analyse, write results/<run-id>/, print a summary. For a running target
//! (`--container`, `--pid`, `--cgroup`) the same pipeline skips what does not apply: it
//! provisions, starts, verifies and stops nothing, and watches the target instead.

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
    target::{self, Running, TargetFacts, TargetSpec},
};

/// What `runner profile` measures.
#[derive(Clone, Debug)]
pub enum ProfileTarget {
    /// A bundled app's name or the path of an app.toml: runner starts it.
    App(String),
    /// A service that already runs, answering at `url` (the URL to load, or the base URL of
    /// a scenario or a mix).
    Running { spec: TargetSpec, url: String },
}

/// A validated `runner profile` invocation.
#[derive(Clone, Debug)]
pub struct ProfileRun {
    pub target: ProfileTarget,
    /// A contract scenario, or None with `own`.
    pub scenario: Option<String>,
    /// Requests of the user's own (`--url` with -m, -H, --body..., or `--mix`), with a label
    /// for the folder name.
    pub own: Option<(String, Vec<RequestSpec>)>,
    /// The message of WebSocket echo load.
    pub ws_message: String,
    pub threads: usize,
    pub schedule: Schedule,
    pub max_requests: Option<u64>,
    pub timeout: Duration,
    pub think: Option<Duration>,
    /// A run with more failed requests than this share (percent) fails.
    pub max_error_rate: f64,
    pub warmup: Duration,
    pub workers: Option<u32>,
    /// The interpreter of a Python app (default: venv's choice).
    pub python: Option<Choice>,
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
    match profile(p) {
        Ok(profiled) => Ok(profiled.exit),
        Err(e) if e.is::<NothingMeasured>() => {
            eprintln!("runner: {e}");
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e),
    }
}

/// Stopped (Ctrl-C, SIGTERM, SIGHUP) before the load began: nothing was measured, and
/// nothing is kept.
#[derive(Debug, thiserror::Error)]
#[error("interrupted before the load began: nothing was measured")]
pub struct NothingMeasured;

/// The profile pipeline; prints progress and the summary, and returns the results.
pub fn profile(p: &ProfileRun) -> anyhow::Result<Profiled> {
    if !p.no_probes && !Privileges::current().can_probe() {
        bail!(
            "runner profile: {NEEDS_ROOT} (or pass --no-probes for load and procfs figures only)"
        );
    }
    let stop = signals::stop_flag()?;
    let plan = Plan::of(p)?;
    for warning in plan.cpu_warnings(p) {
        eprintln!("runner: warning: {warning}");
    }
    let mut dir = RunDir::create(&p.out, &plan.run_id())?;
    let interrupted = || stop.load(Ordering::Relaxed);

    let started = match &plan.running {
        None => {
            phase(1, &format!("provisioning and starting {}", plan.name));
            match start(&plan, p, &dir) {
                Ok(session) => Started::App(Box::new(session)),
                Err(e) => {
                    if let Some(log) = dir.keep_log() {
                        eprintln!("runner: the app's log is kept at {}", log.display());
                    }
                    return Err(e.context(format!("starting {}", plan.name)));
                }
            }
        }
        Some((running, _)) => {
            phase(
                1,
                &format!(
                    "profiling the running {} (runner does not start, change or stop it)",
                    target::describe(&running.facts)
                ),
            );
            Started::Running(running)
        }
    };
    if interrupted() {
        drop(started);
        dir.discard();
        return Err(NothingMeasured.into());
    }
    if let Err(e) = check(&plan, &started) {
        drop(started);
        dir.discard();
        return Err(e);
    }
    let config = plan.load_config(&started, p)?;
    warm_up(&config, p, &stop)?;
    if interrupted() {
        drop(started);
        dir.discard();
        return Err(NothingMeasured.into());
    }

    phase(4, &recording_what(p));
    let (started, measured) = record(&config, started, &plan, p, &stop)?;

    phase(
        5,
        match started {
            Started::App(_) => "detaching and stopping the app and database",
            Started::Running(_) => "detaching (the target keeps running)",
        },
    );
    // A stop asked for after the load (while stopping, or writing) still marks the run; with
    // --keep-running, Ctrl-C is how the app is stopped.
    let stopped_early = interrupted();
    let stopped = stop_app(started, p, &stop);
    let interrupted = stopped_early || (!p.keep_running && interrupted());

    phase(6, "writing results");
    let diagnosis = measured.recording.evloop.as_ref().and_then(|data| {
        let window = data.windows.first()?;
        let load = &measured.load.report.total;
        Some(diagnose::analyse(
            data,
            window,
            LoadFigures::new(load.rps, load.error_total, measured.load_cpu_ns, load.ok),
        ))
    });
    write_measurements(&mut dir, &measured.recording, &measured.load, &stopped)?;
    let summary = summarise(&plan, p, &dir, &measured, &stopped, diagnosis, interrupted);
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

/// What a profile runs: the app or the running target, and the scenario or the user's own
/// requests.
struct Plan {
    apps_dir: PathBuf,
    /// The app's or the target's name.
    name: String,
    /// The app to start (None for a running target).
    app: Option<Manifest>,
    /// The running target, resolved, and where it answers.
    running: Option<(Running, load::Target)>,
    /// The scenario's name, or the label of the user's own requests (`url-PATH`, `mix-NAME`).
    scenario_name: String,
    scenario: Option<Scenario>,
    requests: Vec<RequestSpec>,
}

impl Plan {
    fn of(p: &ProfileRun) -> anyhow::Result<Self> {
        // A running target first: what is wrong with it is the first thing to say.
        let running = match &p.target {
            ProfileTarget::Running { spec, url } => {
                Some((Running::resolve(spec)?, load::parse_url(url)?))
            }
            ProfileTarget::App(_) => None,
        };
        let apps_dir = apps_dir();
        let scenarios = Scenarios::read(&apps_dir)?;
        let (name, app) = match (&p.target, &running) {
            (ProfileTarget::App(app), _) => {
                let app = manifest::find(app, &apps_dir, &scenarios.names())?;
                (app.name.clone(), Some(app))
            }
            (_, Some((running, _))) => (running.name().to_string(), None),
            (ProfileTarget::Running { .. }, None) => unreachable!("resolved above"),
        };
        let (scenario_name, requests, scenario) = match (&p.scenario, &p.own) {
            (_, Some((label, requests))) => (label.clone(), requests.clone(), None),
            (Some(sc), None) => {
                let s = scenarios.get(sc)?;
                if let Some(reason) = app.as_ref().and_then(|a| a.unsupported_reason(sc)) {
                    bail!("{name} does not support {sc}: {reason}");
                }
                (sc.clone(), s.requests(), Some(s.clone()))
            }
            (None, None) => bail!(
                "name a scenario ({}) or --url PATH",
                scenarios.names().join(", ")
            ),
        };
        Ok(Self {
            apps_dir,
            name,
            app,
            running,
            scenario_name,
            scenario,
            requests,
        })
    }

    fn run_id(&self) -> String {
        let safe = |text: &str| {
            text.replace(
                |c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
                "-",
            )
            .trim_matches('-')
            .to_string()
        };
        format!(
            "{}-{}-{}",
            timestamp(),
            safe(&self.name),
            safe(&self.scenario_name)
        )
    }

    /// The CPUs of the app and of the client (and database). A running target keeps its
    /// own; the client avoids its cpuset when that leaves CPUs free, else is not pinned.
    fn cpus(&self, p: &ProfileRun) -> (Vec<usize>, Vec<usize>) {
        if let Some((running, _)) = &self.running {
            let client = p.client_cpus.clone().unwrap_or_else(|| {
                let used = running.cpuset().unwrap_or_default();
                let free: Vec<usize> = host::online_cpus()
                    .into_iter()
                    .filter(|c| !used.contains(c))
                    .collect();
                if used.is_empty() {
                    Vec::new()
                } else {
                    free
                }
            });
            return (running.cpuset().unwrap_or_default(), client);
        }
        let (app, client) = host::default_cpus();
        (
            p.app_cpus.clone().unwrap_or(app),
            p.client_cpus.clone().unwrap_or(client),
        )
    }

    /// Claims this run's CPUs; says what would distort the measurement.
    fn cpu_warnings(&self, p: &ProfileRun) -> Vec<String> {
        let (app, client) = self.cpus(p);
        crate::journal::claim_cpus(&app, &client)
    }

    fn shape(&self, p: &ProfileRun) -> LoadShape {
        LoadShape {
            threads: p.threads,
            cpus: self.cpus(p).1,
            schedule: p.schedule.clone(),
            max_requests: p.max_requests,
            timeout: p.timeout,
            think: p.think,
        }
    }

    /// The load: at the app's address, or at the target's URL (a scenario's path and
    /// scheme on the URL's host and port).
    fn load_config(&self, started: &Started, p: &ProfileRun) -> anyhow::Result<LoadConfig> {
        let mut config = match (started, &self.running) {
            (Started::App(session), _) => apps::load_config(
                session.app.addr,
                self.requests.clone(),
                self.scenario.as_ref(),
                self.shape(p),
            )?,
            (Started::Running(_), Some((_, url))) => {
                let mut target = url.clone();
                if let Some(s) = &self.scenario {
                    let scheme = if s.websocket { "ws" } else { "http" };
                    target = load::parse_url(&format!(
                        "{scheme}://{}{}",
                        url.authority,
                        if s.websocket { s.path() } else { "/" }
                    ))?;
                }
                LoadConfig::new(target, self.requests.clone(), self.shape(p))
            }
            (Started::Running(_), None) => unreachable!("a running target has a URL"),
        };
        config.ws_message = p.ws_message.clone();
        config.validate()?;
        Ok(config)
    }
}

/// The subject of the recording once up: an app runner started, or a running target.
enum Started<'p> {
    App(Box<Session>),
    Running(&'p Running),
}

/// Provisions and starts the app (and its database), its files in the run folder.
fn start(plan: &Plan, p: &ProfileRun, dir: &RunDir) -> anyhow::Result<Session> {
    let (app_cpus, client_cpus) = plan.cpus(p);
    let app = plan.app.as_ref().context("an app to start")?;
    let opts = SessionOptions {
        workers: p.workers,
        app_cpus,
        client_cpus,
        memory: p.memory,
        run_dir: dir.path().to_path_buf(),
        python: p.python.clone(),
    };
    let session = Session::start(
        app,
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

/// Verifies the scenario against the contract (a request of the user's own, or a running
/// target, is not checked: its responses are checked during the load).
fn check(plan: &Plan, started: &Started) -> anyhow::Result<()> {
    let session = match started {
        Started::App(session) => session,
        Started::Running(_) => {
            phase(
                2,
                "running target: skipping provisioning, start and verification",
            );
            return Ok(());
        }
    };
    let Some(s) = &plan.scenario else {
        phase(2, "custom --url: skipping contract verification");
        return Ok(());
    };
    phase(2, &format!("verifying {}", plan.scenario_name));
    let checks = verify::check(session.app.addr, s, session.database_url.as_deref());
    if checks.iter().any(|c| !c.ok) {
        print!("{}", report::verify::table(&plan.name, &checks));
        bail!(
            "{} fails verification of {}; nothing was measured",
            plan.name,
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

/// How the subject was lost during the load.
enum Lost {
    /// The app runner started died, with its exit status.
    AppDied(String),
    /// The running target stopped, restarted or went away: why.
    TargetGone(String),
}

/// What the recording stage measured.
struct Measured {
    recording: Recording,
    /// The target's CPU time during the load (not the settling after it).
    load_cpu_ns: Option<u64>,
    interference: Interference,
    load: LoadOutcome,
    lost: Option<Lost>,
    elapsed: Duration,
    client: ClientUsage,
}

impl Started<'_> {
    /// What the probes filter on.
    fn probe_target(&self) -> Target {
        match self {
            Started::App(session) => {
                let cgroup = session.app.groups.target();
                Target {
                    tgids: if cgroup.is_some() {
                        Vec::new()
                    } else {
                        session.app.pids()
                    },
                    cgroups: cgroup.into_iter().collect(),
                }
            }
            Started::Running(running) => running.probe_target(),
        }
    }

    /// What the run owns on the machine and where it runs, for the interference figures. A
    /// target that is not pinned may use every CPU.
    fn watch(&self, plan: &Plan, p: &ProfileRun) -> Watch {
        let (mut app_cpus, mut client_cpus) = plan.cpus(p);
        for cpus in [&mut app_cpus, &mut client_cpus] {
            if cpus.is_empty() {
                *cpus = host::online_cpus();
            }
        }
        match self {
            Started::App(session) => Watch {
                app_cpus,
                client_cpus,
                ours: session.helper_pids(),
                cgroup: session.app.groups.v2.clone(),
            },
            Started::Running(running) => Watch {
                app_cpus,
                client_cpus,
                ours: Vec::new(),
                cgroup: running
                    .probe_target()
                    .cgroups
                    .first()
                    .map(|c| c.path.clone()),
            },
        }
    }

    /// Checked on every tick: whether the subject is gone.
    fn lost(&mut self) -> Option<Lost> {
        match self {
            Started::App(session) => session.app.exited().map(Lost::AppDied),
            Started::Running(running) => running.gone().map(Lost::TargetGone),
        }
    }
}

/// Attaches the probes and the sampler to the subject, runs the load, and detaches.
fn record<'p>(
    config: &LoadConfig,
    mut started: Started<'p>,
    plan: &Plan,
    p: &ProfileRun,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(Started<'p>, Measured)> {
    let label = plan.scenario_name.as_str();
    let target = started.probe_target();
    let mut recorder =
        Recorder::start(&p.probe, &target, !p.no_probes).context("attaching the probes")?;
    recorder.watch(started.watch(plan, p));
    let (user0, sys0, _) = host::self_usage();
    let bar = report::progress::bar(p.schedule.duration());
    let mut lost = None;
    let began = Instant::now();
    // The event-loop window covers the load and what it left queued, nothing else.
    recorder.window_start(label)?;
    let cpu_before = recorder.cpu_ns_now();
    let load = recorder.record_while(
        || {
            load::run(config, stop.clone(), &mut |pr| {
                report::progress::show(&bar, pr)
            })
        },
        || {
            if lost.is_none() {
                lost = started.lost();
                if lost.is_some() {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        },
    );
    let elapsed = began.elapsed();
    let load_cpu_ns = recorder.cpu_ns_now().checked_sub(cpu_before);
    report::progress::finish(bar);
    recorder.settle(SETTLE)?;
    recorder.window_end()?;
    let load = load?;
    // A container that restarted between two ticks has a new process: the engine knows.
    if let (None, Started::Running(running)) = (&lost, &started) {
        lost = running.confirm().map(Lost::TargetGone);
    }
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
    let interference = recording.machine.assess(began, &responses);
    let measured = Measured {
        recording,
        load_cpu_ns,
        interference,
        load,
        lost,
        elapsed,
        client: ClientUsage {
            cpu_user_s: user1 - user0,
            cpu_sys_s: sys1 - sys0,
            max_rss_mb,
        },
    };
    Ok((started, measured))
}

/// What is known of the subject once the recording is over.
struct Stopped {
    /// The app runner started (None for a running target).
    facts: Option<SessionFacts>,
    log_tail: String,
    framework_version: Option<String>,
    /// The running target (None for an app).
    target: Option<TargetFacts>,
}

/// Stops the app and its database (after Ctrl-C with --keep-running); the log stays in the
/// run folder. A running target is left as it is.
fn stop_app(started: Started, p: &ProfileRun, stop: &Arc<AtomicBool>) -> Stopped {
    let session = match started {
        Started::App(session) => *session,
        Started::Running(running) => {
            return Stopped {
                facts: None,
                log_tail: String::new(),
                framework_version: None,
                target: Some(running.facts.clone()),
            }
        }
    };
    let stopped = Stopped {
        log_tail: session.app.log_tail(20),
        framework_version: venv::package_version(
            session.facts.python_path.as_deref(),
            &session.facts.framework,
        ),
        facts: Some(session.facts.clone()),
        target: None,
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
    stopped
}

/// Writes what the recording and the load measured.
fn write_measurements(
    dir: &mut RunDir,
    recording: &Recording,
    load: &LoadOutcome,
    stopped: &Stopped,
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
    if stopped.facts.is_some() {
        dir.note("app.log");
    }
    Ok(())
}

/// The files written last, which the summary lists too.
const REPORTS: [&str; 4] = ["summary.json", "run.json", "report.md", "report.html"];

/// summary.json's figures.
fn summarise(
    plan: &Plan,
    p: &ProfileRun,
    dir: &RunDir,
    m: &Measured,
    stopped: &Stopped,
    diagnosis: Option<diagnose::Entry>,
    interrupted: bool,
) -> Summary {
    let lost = m.lost.as_ref().map(|lost| match lost {
        Lost::AppDied(s) => format!(
            "the app died during the load ({s}); log tail:\n{}",
            stopped.log_tail
        ),
        Lost::TargetGone(why) => format!("{why}; the results are partial, up to that moment"),
    });
    let interrupted = (m.load.report.interrupted || interrupted) && lost.is_none();
    // An interrupted run is judged on what it did; a finished one also on its errors.
    let failure = lost.or_else(|| {
        (!interrupted)
            .then(|| m.load.report.total.failure(p.max_error_rate))
            .flatten()
    });
    let status = if failure.is_some() {
        RunStatus::Failed
    } else if interrupted {
        RunStatus::Interrupted
    } else {
        RunStatus::Ok
    };
    Summary {
        schema: SCHEMA.into(),
        run_id: dir.id().to_string(),
        app: plan.name.clone(),
        scenario: plan.scenario_name.clone(),
        status,
        failure,
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
            cgroup: m.recording.cgroups.first().cloned(),
        },
        target: stopped.target.clone(),
        python: stopped.facts.as_ref().and_then(|f| f.interpreter.clone()),
        processes: m.recording.processes.clone(),
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
    let client_cpus = plan.cpus(p).1;
    let run = RunInfo {
        schema: RUN_SCHEMA,
        run_id: &summary.run_id,
        status: summary.status.name(),
        runner_version: env!("CARGO_PKG_VERSION"),
        git_commit: host::git_commit(&plan.apps_dir),
        kernel_release: host::kernel_release(),
        cpu_model: host::cpu_model(),
        online_cpus: host::online_cpus().len(),
        app: stopped.facts.as_ref(),
        target: stopped.target.as_ref(),
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
