//! `runner probe`: attach the probes and the resource sampler to a target for a while, then
//! write folded stacks, flamegraphs, syscall and run-queue figures, resources and probe.json.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context};
use probes_common::counters::Counter;
use serde::Serialize;

use crate::{
    cgroup::{self, CgroupTarget},
    flamegraph,
    folded::{fold_stacks, Folded},
    launch::{self, Child},
    privilege::{Privileges, NEEDS_ROOT},
    probe::{
        offcpu::{self, OffcpuTotals},
        oncpu, runqlat, syscalls, AttachedProgram, ProbeConfig, Probes, Target,
    },
    sampler::{ResourceSampler, ResourceSummary, INTERVAL},
    symbolize::{ProcessMaps, SymbolStats, Symbolizer},
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

/// The files `runner probe` writes.
pub const FILES: [&str; 9] = [
    "oncpu.folded",
    "oncpu.svg",
    "offcpu.folded",
    "offcpu.svg",
    "syscalls.json",
    "runqlat.json",
    "resources.csv",
    "probe.json",
    "probe.log",
];

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
    files: Vec<&'static str>,
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
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    fs::create_dir_all(&run.out).with_context(|| format!("creating {}", run.out.display()))?;

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
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut probes = match Probes::attach(&run.config, &target) {
        Ok(probes) => probes,
        Err(err) => {
            if let Some(gated) = gated {
                gated.abort();
            }
            return Err(anyhow::Error::new(err).context("attaching the probes"));
        }
    };
    let mut child: Option<Child> = gated.map(|g| g.release()).transpose()?;
    let links: usize = probes.attached().iter().map(|a| a.links).sum();
    eprintln!(
        "runner: {} programs attached ({links} links); recording {} for up to {} (Ctrl-C stops early)",
        probes.attached().len(),
        describe(&run.target),
        humantime::format_duration(run.duration)
    );

    let started = Instant::now();
    let mut sampler = ResourceSampler::new();
    let mut maps = ProcessMaps::default();
    let mut seen: BTreeSet<u32> = BTreeSet::new();
    let mut command_exit_status = None;
    let interrupted = loop {
        let pids = target_pids(&probes, &cgroups);
        for &pid in &pids {
            maps.refresh(pid);
        }
        seen.extend(&pids);
        sampler.sample(&pids);
        if stop.load(Ordering::Relaxed) {
            break true;
        }
        if let Some(status) = child.as_mut().and_then(Child::try_status) {
            command_exit_status = Some(status);
            break false;
        }
        let elapsed = started.elapsed();
        if elapsed >= run.duration {
            break false;
        }
        std::thread::sleep(INTERVAL.min(run.duration - elapsed));
    };
    let duration = started.elapsed();
    probes.detach();
    let counters = probes.counters()?;
    for pid in probes.target_tgids()? {
        maps.ensure(pid);
        seen.insert(pid);
    }
    let stacks = probes.stacks()?;
    let oncpu_data = oncpu::read(&probes)?;
    let offcpu_data = offcpu::read(&probes)?;
    let runq_data = runqlat::read(&probes)?;
    let syscall_data = syscalls::read(&probes)?;
    drop(probes);
    if let Some(child) = child.as_mut() {
        if command_exit_status.is_none() {
            command_exit_status = child.stop(STOP_GRACE);
        }
    }
    if interrupted {
        eprintln!("runner: interrupted; writing what was recorded");
    }

    eprintln!("runner: symbolizing");
    let mut symbolizer = Symbolizer::new(maps);
    let oncpu_folded = fold_stacks(&oncpu_data, |c| *c, &stacks, &mut symbolizer);
    let offcpu_folded = fold_stacks(&offcpu_data, offcpu::weight_us, &stacks, &mut symbolizer);
    let syscall_report = syscalls::report(&syscall_data);
    let runq_report = runqlat::report(&runq_data);
    let offcpu_totals = offcpu::totals(&offcpu_data);

    let out = &run.out;
    write_flame(
        out,
        "oncpu",
        &oncpu_folded,
        &format!("On-CPU samples ({} Hz)", run.config.freq_hz),
        "samples",
    )?;
    write_flame(
        out,
        "offcpu",
        &offcpu_folded,
        "Off-CPU time (microseconds)",
        "us",
    )?;
    write(
        out,
        "syscalls.json",
        serde_json::to_vec_pretty(&syscall_report)?,
    )?;
    write(
        out,
        "runqlat.json",
        serde_json::to_vec_pretty(&runq_report)?,
    )?;
    write(out, "resources.csv", sampler.to_csv())?;
    let (command, pids) = match &run.target {
        TargetSpec::Command(argv) => (Some(argv.as_slice()), Vec::new()),
        TargetSpec::Processes { pids, .. } => (None, pids.clone()),
    };
    let probe_json = ProbeJson {
        schema: "runner.probe/v1",
        runner_version: env!("CARGO_PKG_VERSION"),
        kernel_release: super::kernel_release(),
        started_at,
        duration_s: crate::hist::round1(duration.as_secs_f64() * 10.0) / 10.0,
        interrupted,
        target: TargetJson {
            pids,
            cgroups: &cgroups,
            command,
            command_exit_status,
            processes_seen: seen.into_iter().collect(),
        },
        config: &run.config,
        attached: run_attached(&run.config),
        events: counters.events(),
        lost: counters.losses(),
        lost_total: counters.lost_total(),
        oncpu_samples: counters.get(Counter::OncpuSamples),
        offcpu: offcpu_totals.clone(),
        resources: sampler.summary(),
        symbolization: symbolizer.stats().clone(),
        files: FILES[..8].to_vec(),
    };
    write(out, "probe.json", serde_json::to_vec_pretty(&probe_json)?)?;

    println!(
        "{}",
        summary_text(&probe_json, &oncpu_folded, &syscall_report, &runq_report)
    );
    println!("wrote {}", out.display());
    Ok(ProbeOutcome {
        out: out.clone(),
        interrupted,
    })
}

/// The programs a configuration attaches, for probe.json (the live list is gone after detach).
fn run_attached(config: &ProbeConfig) -> Vec<AttachedProgram> {
    let cpus = aya::util::online_cpus().map(|c| c.len()).unwrap_or(0);
    crate::probe::planned_programs(config)
        .into_iter()
        .map(|spec| AttachedProgram {
            program: spec.name,
            hook: spec.hook.to_string(),
            links: match spec.hook {
                crate::probe::Hook::CpuClock => cpus,
                crate::probe::Hook::Tracepoint { .. } => 1,
            },
        })
        .collect()
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

/// Live target processes: the tgid set in the kernel plus the processes of target cgroups.
fn target_pids(probes: &Probes, cgroups: &[CgroupTarget]) -> Vec<u32> {
    let mut pids = probes.target_tgids().unwrap_or_default();
    for c in cgroups {
        pids.extend(cgroup::procs(&c.path));
    }
    pids.sort_unstable();
    pids.dedup();
    pids.retain(|pid| Path::new(&format!("/proc/{pid}")).exists());
    pids
}

fn write(dir: &Path, name: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
    let path = dir.join(name);
    fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn write_flame(
    dir: &Path,
    stem: &str,
    folded: &Folded,
    title: &str,
    unit: &str,
) -> anyhow::Result<()> {
    write(dir, &format!("{stem}.folded"), folded.to_bytes())?;
    write(
        dir,
        &format!("{stem}.svg"),
        flamegraph::render(folded, title, unit)?,
    )
}

fn summary_text(
    probe: &ProbeJson<'_>,
    oncpu: &Folded,
    syscalls: &syscalls::SyscallReport,
    runq: &runqlat::RunqReport,
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "recorded {:.1}s over {} process(es){}\n",
        probe.duration_s,
        probe.target.processes_seen.len(),
        if probe.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    ));
    if let Some(status) = probe.target.command_exit_status {
        out.push_str(&format!("command exit status: {status}\n"));
    }
    out.push_str(&format!(
        "on-CPU   {} samples in {} stacks\n",
        probe.oncpu_samples,
        oncpu.iter().count()
    ));
    out.push_str(&format!(
        "off-CPU  {:.1} ms blocked, {:.1} ms preempted\n",
        probe.offcpu.blocked_us as f64 / 1000.0,
        probe.offcpu.preempted_us as f64 / 1000.0
    ));
    out.push_str(&format!(
        "run queue {} waits, p50 {} us, p99 {} us\n",
        runq.count, runq.p50_us, runq.p99_us
    ));
    out.push_str("syscalls (top 5 by time):\n");
    for (name, s) in syscalls.by_total_time().into_iter().take(5) {
        out.push_str(&format!(
            "  {name:<20} {:>10} calls {:>8} errors {:>12.1} us total  p99 {} us\n",
            s.count, s.errors, s.total_us, s.p99_us
        ));
    }
    out.push_str(&format!(
        "resources: cpu avg {:.1}% max {:.1}%, rss max {:.1} MB, threads max {}\n",
        probe.resources.cpu_pct_avg,
        probe.resources.cpu_pct_max,
        probe.resources.rss_mb_max,
        probe.resources.threads_max
    ));
    if probe.lost_total > 0 {
        let lost: Vec<String> = probe
            .lost
            .iter()
            .filter(|(_, &v)| v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "LOST {} records: {}\n",
            probe.lost_total,
            lost.join(", ")
        ));
    } else {
        out.push_str("lost: nothing\n");
    }
    out
}
