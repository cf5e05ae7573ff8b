//! `runner probe`: attach the probes and the resource sampler to a target for a while (or
//! while load runs at `--url`), then write folded stacks, flamegraphs, syscall and run-queue
//! figures, resources and probe.json. A container is watched: if it stops or restarts, the
//! recording ends there, is written, and the exit is nonzero.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::bail;
use serde::Serialize;

use crate::{
    cgroup::CgroupTarget,
    host,
    launch::{self, Child},
    load::{self, LoadConfig},
    privilege::{Privileges, NEEDS_ROOT},
    probe::python::PythonReport,
    probe::{offcpu::OffcpuTotals, AttachedProgram, ProbeConfig, Target},
    record::Recorder,
    report,
    run_dir::RunDir,
    sampler::ResourceSummary,
    signals,
    stacks::symbolize::{SymbolStats, UnnamedNative},
    target::{self, cgroup::CgroupResources, process::ProcessFacts, Running, TargetFacts},
};

/// What to record.
#[derive(Clone, Debug)]
pub enum TargetSpec {
    /// Running processes and/or cgroup v2 subtrees.
    Processes {
        pids: Vec<u32>,
        cgroups: Vec<CgroupTarget>,
    },
    /// A running container (name, id or compose service).
    Container(String),
    /// A command to launch.
    Command(Vec<String>),
}

/// A validated `runner probe` invocation.
#[derive(Clone, Debug)]
pub struct ProbeRun {
    pub target: TargetSpec,
    /// How long to record without load.
    pub duration: Duration,
    /// Load to drive while recording (`--url`); the recording lasts as long.
    pub load: Option<LoadConfig>,
    pub config: ProbeConfig,
    pub out: PathBuf,
}

/// How a probe run ended.
#[derive(Clone, Debug)]
pub struct ProbeOutcome {
    pub out: PathBuf,
    pub interrupted: bool,
    /// The container stopped or restarted during the recording: why.
    pub target_gone: Option<String>,
}

/// Grace period between SIGTERM and SIGKILL for a launched command.
const STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct ProbeJson<'a> {
    schema: &'static str,
    runner_version: &'static str,
    kernel_release: String,
    started_at: String,
    duration_s: f64,
    interrupted: bool,
    target: TargetJson<'a>,
    config: &'a ProbeConfig,
    attached: Vec<AttachedProgram>,
    events: BTreeMap<&'static str, u64>,
    lost: BTreeMap<&'static str, u64>,
    lost_total: u64,
    oncpu_samples: u64,
    offcpu: OffcpuTotals,
    resources: ResourceSummary,
    symbolization: SymbolStats,
    /// The on-CPU samples with native frames that have no names, by object, why, and the fix.
    unnamed_native: Option<UnnamedNative>,
    python: PythonReport,
    /// Each target cgroup's own counters (CPU time, memory, throttling) and limits.
    cgroup_resources: &'a [CgroupResources],
    /// The load driven at `--url`, if any (load.json has all of it).
    load: Option<ProbeLoad>,
    files: Vec<String>,
}

/// The load's headline figures in probe.json.
#[derive(Serialize)]
struct ProbeLoad {
    url: String,
    requests: u64,
    ok: u64,
    errors: u64,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
}

#[derive(Serialize)]
struct TargetJson<'a> {
    pids: Vec<u32>,
    cgroups: &'a [CgroupTarget],
    command: Option<&'a [String]>,
    command_exit_status: Option<i32>,
    /// The container, as the engine described it at start.
    running: Option<&'a TargetFacts>,
    /// Why the recording ended early: the container stopped or restarted.
    gone: Option<&'a str>,
    processes_seen: Vec<u32>,
    /// Every process seen, with its PID inside its own namespace.
    processes: &'a [ProcessFacts],
}

/// Runs `runner probe`.
pub fn run(run: &ProbeRun) -> anyhow::Result<ProbeOutcome> {
    if !Privileges::current().can_probe() {
        bail!("runner probe: {NEEDS_ROOT}");
    }
    let stop = signals::stop_flag()?;
    let running = match &run.target {
        TargetSpec::Container(name) => Some(Running::resolve(&target::TargetSpec::Container(
            name.clone(),
        ))?),
        _ => None,
    };
    let (gated, target, cgroups) = match (&run.target, &running) {
        (TargetSpec::Command(argv), _) => {
            let gated = launch::spawn_gated(argv)?;
            let target = Target {
                tgids: vec![gated.pid()],
                cgroups: Vec::new(),
            };
            (Some(gated), target, Vec::new())
        }
        (TargetSpec::Processes { pids, cgroups }, _) => {
            // Followed processes include the children they have now (a server's workers).
            let mut tgids = pids.clone();
            if run.config.follow_fork {
                tgids.extend(target::process::descendants(pids));
            }
            (
                None,
                Target {
                    tgids,
                    cgroups: cgroups.clone(),
                },
                cgroups.clone(),
            )
        }
        (TargetSpec::Container(_), Some(r)) => {
            let target = r.probe_target();
            let cgroups = target.cgroups.clone();
            (None, target, cgroups)
        }
        (TargetSpec::Container(_), None) => unreachable!("resolved above"),
    };
    let mut recorder = match Recorder::start(&run.config, &target, true) {
        Ok(recorder) => recorder,
        Err(err) => {
            if let Some(gated) = gated {
                gated.abort();
            }
            return Err(anyhow::Error::new(err).context("attaching the probes"));
        }
    };
    let mut child: Option<Child> = gated.map(|g| g.release()).transpose()?;
    let links: usize = recorder.attached().iter().map(|a| a.links).sum();
    let how_long = match &run.load {
        Some(l) => format!(
            "while loading {} for {}",
            l.target.url,
            l.schedule
                .duration()
                .map(|d| humantime::format_duration(d).to_string())
                .unwrap_or_else(|| format!("{} requests", l.max_requests.unwrap_or(0)))
        ),
        None => format!("for up to {}", humantime::format_duration(run.duration)),
    };
    eprintln!(
        "runner: {} programs attached ({links} links); recording {} {how_long} (Ctrl-C stops early)",
        recorder.attached().len(),
        match &running {
            Some(r) => target::describe(&r.facts),
            None => describe(&run.target),
        },
    );

    let started = Instant::now();
    let mut command_exit_status = None;
    let mut interrupted = false;
    let mut gone: Option<String> = None;
    let mut load_outcome = None;
    match &run.load {
        None => recorder.record_until(true, || {
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                return true;
            }
            if let Some(status) = child.as_mut().and_then(Child::try_status) {
                command_exit_status = Some(status);
                return true;
            }
            if let Some(r) = &running {
                gone = r.gone();
                if gone.is_some() {
                    return true;
                }
            }
            started.elapsed() >= run.duration
        }),
        Some(config) => {
            let halt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let outcome = recorder.record_while(
                || load::run(config, halt.clone(), &mut |_| {}),
                || {
                    if stop.load(Ordering::Relaxed) {
                        interrupted = true;
                        halt.store(true, Ordering::Relaxed);
                    }
                    if let Some(status) = child.as_mut().and_then(Child::try_status) {
                        command_exit_status = Some(status);
                        halt.store(true, Ordering::Relaxed);
                    }
                    if let (None, Some(r)) = (&gone, &running) {
                        gone = r.gone();
                        if gone.is_some() {
                            halt.store(true, Ordering::Relaxed);
                        }
                    }
                },
            );
            load_outcome = Some(outcome?);
        }
    }
    if gone.is_none() {
        gone = running.as_ref().and_then(Running::confirm);
    }
    if let Some(why) = &gone {
        eprintln!("runner: {why}; writing what was recorded until then");
    }
    if interrupted {
        eprintln!("runner: interrupted; writing what was recorded");
    }
    eprintln!("runner: symbolizing");
    let recording = recorder.finish("recording")?;
    if let Some(child) = child.as_mut() {
        if command_exit_status.is_none() {
            command_exit_status = child.stop(STOP_GRACE);
        }
    }
    let out = &run.out;
    let mut dir = RunDir::at(out)?;
    for (name, bytes) in report::recording::files(&recording)? {
        dir.write(name, bytes)?;
    }
    if let Some(outcome) = &load_outcome {
        dir.write("load.json", report::load::to_json(&outcome.report))?;
        dir.write("latency.hgrm", report::load::to_hgrm(&outcome.histogram))?;
        dir.write(
            "timeseries.csv",
            report::load::to_csv(&outcome.report.timeseries),
        )?;
    }
    let files = dir.artifacts(&["probe.json"]).into_keys().collect();
    let counters = recording.counters.as_ref().expect("recorded with probes");
    let (command, pids) = match &run.target {
        TargetSpec::Command(argv) => (Some(argv.as_slice()), Vec::new()),
        TargetSpec::Processes { pids, .. } => (None, pids.clone()),
        TargetSpec::Container(_) => (None, Vec::new()),
    };
    let probe_json = ProbeJson {
        schema: "runner.probe/v1",
        runner_version: env!("CARGO_PKG_VERSION"),
        kernel_release: host::kernel_release(),
        started_at: recording.started_at.clone(),
        duration_s: (recording.duration.as_secs_f64() * 100.0).round() / 100.0,
        interrupted,
        target: TargetJson {
            pids,
            cgroups: &cgroups,
            command,
            command_exit_status,
            running: running.as_ref().map(|r| &r.facts),
            gone: gone.as_deref(),
            processes_seen: recording.processes_seen.clone(),
            processes: &recording.processes,
        },
        config: &run.config,
        attached: recording.attached.clone(),
        events: counters.events(),
        lost: counters.losses(),
        lost_total: counters.lost_total(),
        oncpu_samples: recording.oncpu_samples(),
        offcpu: recording.offcpu_totals.clone(),
        resources: recording.sampler.summary(),
        symbolization: recording.symbols.clone(),
        unnamed_native: recording.symbols.unnamed_in(&recording.oncpu),
        python: recording.python.clone(),
        cgroup_resources: &recording.cgroups,
        load: load_outcome.as_ref().zip(run.load.as_ref()).map(|(o, c)| {
            let t = &o.report.total;
            ProbeLoad {
                url: c.target.url.clone(),
                requests: t.requests,
                ok: t.ok,
                errors: t.error_total,
                rps: t.rps,
                p50_us: t.latency_us.p50,
                p99_us: t.latency_us.p99,
            }
        }),
        files,
    };
    dir.write("probe.json", serde_json::to_vec_pretty(&probe_json)?)?;
    dir.finish()?;

    println!(
        "recorded {:.1}s over {} process(es){}",
        probe_json.duration_s,
        probe_json.target.processes_seen.len(),
        if interrupted { " (interrupted)" } else { "" }
    );
    if let Some(status) = command_exit_status {
        println!("command exit status: {status}");
    }
    if let Some(l) = &probe_json.load {
        println!(
            "load       ok/s {:.1} · p50 {:.2} ms · p99 {:.2} ms · errors {}",
            l.rps,
            crate::num::ms(l.p50_us),
            crate::num::ms(l.p99_us),
            l.errors
        );
    }
    print!("{}", report::recording::lines(&recording));
    println!("wrote {}", out.display());
    if let Some(why) = &gone {
        eprintln!("runner: {why}; the recording is partial");
    }
    Ok(ProbeOutcome {
        out: out.clone(),
        interrupted,
        target_gone: gone,
    })
}

fn describe(target: &TargetSpec) -> String {
    match target {
        TargetSpec::Command(argv) => format!("`{}`", argv.join(" ")),
        TargetSpec::Container(name) => format!("container {name}"),
        TargetSpec::Processes { pids, cgroups } => {
            let mut parts: Vec<String> = pids.iter().map(|p| format!("pid {p}")).collect();
            parts.extend(
                cgroups
                    .iter()
                    .map(|c| format!("cgroup {}", c.path.display())),
            );
            parts.join(", ")
        }
    }
}
