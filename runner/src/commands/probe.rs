//! `runner probe`: attach the probes and the resource sampler to a target for a while, then
//! write folded stacks, flamegraphs, syscall and run-queue figures, resources and probe.json.

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
    privilege::{Privileges, NEEDS_ROOT},
    probe::python::PythonReport,
    probe::{offcpu::OffcpuTotals, AttachedProgram, ProbeConfig, Target},
    record::Recorder,
    report,
    run_dir::RunDir,
    sampler::ResourceSummary,
    signals,
    stacks::symbolize::SymbolStats,
};

/// What to record.
#[derive(Clone, Debug)]
pub enum TargetSpec {
    /// Running processes and/or cgroup v2 subtrees.
    Processes {
        pids: Vec<u32>,
        cgroups: Vec<CgroupTarget>,
    },
    /// A command to launch.
    Command(Vec<String>),
}

/// A validated `runner probe` invocation.
#[derive(Clone, Debug)]
pub struct ProbeRun {
    pub target: TargetSpec,
    pub duration: Duration,
    pub config: ProbeConfig,
    pub out: PathBuf,
}

/// How a probe run ended.
#[derive(Clone, Debug)]
pub struct ProbeOutcome {
    pub out: PathBuf,
    pub interrupted: bool,
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
    python: PythonReport,
    files: Vec<String>,
}

#[derive(Serialize)]
struct TargetJson<'a> {
    pids: Vec<u32>,
    cgroups: &'a [CgroupTarget],
    command: Option<&'a [String]>,
    command_exit_status: Option<i32>,
    processes_seen: Vec<u32>,
}

/// Runs `runner probe`.
pub fn run(run: &ProbeRun) -> anyhow::Result<ProbeOutcome> {
    if !Privileges::current().can_probe() {
        bail!("runner probe: {NEEDS_ROOT}");
    }
    let stop = signals::stop_flag()?;
    let (gated, target, cgroups) = match &run.target {
        TargetSpec::Command(argv) => {
            let gated = launch::spawn_gated(argv)?;
            let target = Target {
                tgids: vec![gated.pid()],
                cgroups: Vec::new(),
            };
            (Some(gated), target, Vec::new())
        }
        TargetSpec::Processes { pids, cgroups } => (
            None,
            Target {
                tgids: pids.clone(),
                cgroups: cgroups.clone(),
            },
            cgroups.clone(),
        ),
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
    eprintln!(
        "runner: {} programs attached ({links} links); recording {} for up to {} (Ctrl-C stops early)",
        recorder.attached().len(),
        describe(&run.target),
        humantime::format_duration(run.duration)
    );

    let started = Instant::now();
    let mut command_exit_status = None;
    let mut interrupted = false;
    recorder.record_until(true, || {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            return true;
        }
        if let Some(status) = child.as_mut().and_then(Child::try_status) {
            command_exit_status = Some(status);
            return true;
        }
        started.elapsed() >= run.duration
    });
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
    let files = dir.artifacts(&["probe.json"]).into_keys().collect();
    let counters = recording.counters.as_ref().expect("recorded with probes");
    let (command, pids) = match &run.target {
        TargetSpec::Command(argv) => (Some(argv.as_slice()), Vec::new()),
        TargetSpec::Processes { pids, .. } => (None, pids.clone()),
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
            processes_seen: recording.processes_seen.clone(),
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
        python: recording.python.clone(),
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
    print!("{}", report::recording::lines(&recording));
    println!("wrote {}", out.display());
    Ok(ProbeOutcome {
        out: out.clone(),
        interrupted,
    })
}

fn describe(target: &TargetSpec) -> String {
    match target {
        TargetSpec::Command(argv) => format!("`{}`", argv.join(" ")),
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
