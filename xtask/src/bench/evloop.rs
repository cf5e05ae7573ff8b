//! `cargo xtask bench evloop`: what watching event loops costs a non-blocking async app under
//! load. The app runs the same closed-loop load (-c 10, one client thread) under
//! `runner profile --no-probes`, under `runner diagnose` (evloop, loop threads only), and under
//! `runner profile` with every probe; variants alternate within each round, and the bench
//! reports ratios against no probes: of throughput, and of the app's CPU time per response
//! (steadier; with `--rate R` the load is an open loop the app keeps up with, so the probes'
//! cost shows as CPU rather than as lost throughput).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::{
    bpf::{self, BpfStats},
    flag, median, round_ratios, until_line,
};
use crate::{setup, sh};

struct Variant {
    name: &'static str,
    command: &'static str,
    args: &'static [&'static str],
}

/// `runner diagnose`: the variant the 3% bar is about.
const DIAGNOSE: Variant = Variant {
    name: "runner diagnose",
    command: "diagnose",
    args: &[],
};

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "no probes",
        command: "profile",
        args: &["--no-probes"],
    },
    DIAGNOSE,
    Variant {
        name: "profile, all probes",
        command: "profile",
        args: &[],
    },
];

/// The load every run of the bench drives.
struct Shape<'a> {
    app: &'a str,
    scenario: &'a str,
    seconds: u32,
    /// Open-loop rate, 0 for a closed loop.
    rate: u32,
}

impl Variant {
    /// The runner command of this variant, writing its run into `out`.
    fn runner_command(&self, runner: &Path, shape: &Shape, out: &Path) -> std::process::Command {
        let mut cmd = sh::as_root(runner);
        cmd.arg(self.command).arg(shape.app);
        if self.command == "diagnose" {
            cmd.arg("--scenario");
        }
        cmd.args([shape.scenario, "-c", "10", "--warmup", "2s"])
            .args(["-d", &format!("{}s", shape.seconds), "--out"])
            .arg(out)
            .args(self.args);
        if shape.rate > 0 {
            cmd.args(["--rate", &shape.rate.to_string()]);
        }
        cmd
    }
}

fn arg<'a>(args: &'a [String], name: &str, default: &'a str) -> &'a str {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .unwrap_or(default)
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let rounds = flag(args, "--rounds", 5)?.max(1);
    let seconds = flag(args, "--seconds", 10)?.max(1);
    let rate = flag(args, "--rate", 0)?;
    let app = arg(args, "--app", "fastapi");
    let scenario = arg(args, "--scenario", "ping");
    let shape = Shape {
        app,
        scenario,
        seconds,
        rate,
    };
    setup::run()?;
    let runner = sh::build_runner()?;
    let out = std::env::temp_dir().join("runner-bench-evloop");
    let load = if rate > 0 {
        format!("open loop at {rate}/s")
    } else {
        "closed loop".into()
    };
    println!("evloop overhead: {app} {scenario}, {rounds} rounds of {seconds}s, {load} at -c 10, variants alternated; figures are medians of ok/s and of the app's CPU time per response");
    // Per variant, per round: ok/s, and the app's CPU per response (µs).
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..rounds as usize {
        for k in 0..VARIANTS.len() {
            let i = (k + round) % VARIANTS.len();
            let _ = std::fs::remove_dir_all(&out);
            let v = &VARIANTS[i];
            sh::output(&mut v.runner_command(&runner, &shape, &out))?;
            let run = figures_of(&out)?;
            println!(
                "  round {} {:<20} {:>9.1} ok/s {:>8.1} us CPU per response",
                round + 1,
                v.name,
                run.rps,
                run.cpu_us
            );
            rps[i].push(run.rps);
            cpu[i].push(run.cpu_us);
        }
    }
    let rps_ratios = round_ratios(&rps);
    let cpu_ratios = round_ratios(&cpu);
    let rps_medians: Vec<f64> = rps.iter_mut().map(|r| median(r)).collect();
    let cpu_medians: Vec<f64> = cpu.iter_mut().map(|c| median(c)).collect();
    let mut report = Vec::new();
    for (i, v) in VARIANTS.iter().enumerate() {
        println!(
            "{:<20} {:>9.1} ok/s  round ratio {:.4} (throughput {:+.2}%)  {:>8.1} us CPU per response  round ratio {:.4} (CPU {:+.2}%)",
            v.name,
            rps_medians[i],
            rps_ratios[i],
            (rps_ratios[i] - 1.0) * 100.0,
            cpu_medians[i],
            cpu_ratios[i],
            (cpu_ratios[i] - 1.0) * 100.0,
        );
        report.push(serde_json::json!({
            "app": app,
            "scenario": scenario,
            "variant": v.name,
            "rounds": rounds,
            "rate": (rate > 0).then_some(rate),
            "rps": rps_medians[i],
            "ratio": rps_ratios[i],
            "ratio_of_medians": rps_medians[i] / rps_medians[0],
            "cpu_us_per_response": cpu_medians[i],
            "cpu_ratio": cpu_ratios[i],
        }));
    }
    // A failure here costs the figure, not the rounds measured above.
    let inside = program_share(&runner, &shape, &out).unwrap_or_else(|e| {
        println!("(time inside the programs not measured: {e:#})");
        None
    });
    if let Some(share) = inside {
        report.push(serde_json::json!({
            "app": app,
            "scenario": scenario,
            "variant": "runner diagnose, inside the programs",
            "rate": (rate > 0).then_some(rate),
            "program_ms_per_s": share.program_ms_per_s,
            "share_of_app_cpu": share.of_app_cpu,
        }));
    }
    let dir = sh::workspace().join("results");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bench-evloop.json");
    std::fs::write(&file, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("wrote {}", file.display());
    Ok(())
}

/// Time inside the BPF programs during a diagnose run.
struct ProgramShare {
    program_ms_per_s: f64,
    /// Over the app's CPU time in the same stretch.
    of_app_cpu: f64,
}

/// Runs `runner diagnose` once more with the kernel's BPF statistics on and reads the time
/// spent inside runner's programs over the middle of the load, against the app's CPU time:
/// the part of the overhead that machine drift does not blur (the hooks' own dispatch is not
/// in it; the statistics' clock reads are).
fn program_share(runner: &Path, shape: &Shape, out: &Path) -> anyhow::Result<Option<ProgramShare>> {
    let Some(_stats) = BpfStats::on() else {
        println!(
            "(time inside the programs needs root to enable {}; skipped)",
            BpfStats::FILE
        );
        return Ok(None);
    };
    let _ = std::fs::remove_dir_all(out);
    let mut child = DIAGNOSE
        .runner_command(runner, shape, out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting runner diagnose")?;
    // "runner: [1/1] ping /ping for 10s": the warm-up starts, then the load.
    let drain = until_line(&mut child, "its load started", |l| {
        l.starts_with("runner: [1/")
    })?;
    let window = Duration::from_secs_f64((f64::from(shape.seconds) / 2.0).min(5.0));
    let listings = (|| -> anyhow::Result<_> {
        std::thread::sleep(Duration::from_secs(3));
        let before = bpf::ours(&bpf::listing()?);
        let at = Instant::now();
        std::thread::sleep(window);
        let after = bpf::ours(&bpf::listing()?);
        Ok((before, after, at.elapsed().as_secs_f64()))
    })();
    if listings.is_err() {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let _ = drain.join();
    let (before, after, counted) = listings?;
    anyhow::ensure!(status.success(), "runner diagnose failed: {status}");
    let (ns, runs) = bpf::between(&before, &after);
    let run = figures_of(out)?;
    let program_ms_per_s = ns as f64 / 1e6 / counted;
    let app_ms_per_s = run.cpu_us * run.rps / 1e3;
    let share = ProgramShare {
        program_ms_per_s,
        of_app_cpu: program_ms_per_s / app_ms_per_s,
    };
    println!(
        "inside the programs (kernel BPF stats, runner diagnose): {:.2} ms per second of load ({:.0} runs/s), {:.2}% of the app's CPU time",
        share.program_ms_per_s,
        runs as f64 / counted,
        share.of_app_cpu * 100.0
    );
    for p in &after {
        let (ns, runs) = bpf::between(&before, std::slice::from_ref(p));
        if runs as f64 >= counted {
            println!(
                "  {:<16} {:>8.0} runs/s {:>6.0} ns/run",
                p.name,
                runs as f64 / counted,
                ns as f64 / runs as f64
            );
        }
    }
    Ok(Some(share))
}

/// One run's figures.
struct RunFigures {
    rps: f64,
    /// The app's CPU time per correct response (µs).
    cpu_us: f64,
}

/// The figures of the single run in `out`: a profile's summary.json (CPU from the app's
/// cgroup) or a diagnosis.json (CPU of the load's window).
fn figures_of(out: &Path) -> anyhow::Result<RunFigures> {
    let run = std::fs::read_dir(out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("summary.json").exists() || p.join("diagnosis.json").exists())
        .context("no run folder")?;
    let read = |name: &str| -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(
            run.join(name),
        )?)?)
    };
    if run.join("diagnosis.json").exists() {
        let entry = &read("diagnosis.json")?["entries"][0];
        Ok(RunFigures {
            rps: entry["rps"].as_f64().context("diagnosis.json has no rps")?,
            cpu_us: entry["cpu_us_per_request"]
                .as_f64()
                .context("diagnosis.json has no cpu_us_per_request")?,
        })
    } else {
        let summary = read("summary.json")?;
        let ok = summary["load"]["ok"]
            .as_f64()
            .context("summary.json has no load.ok")?;
        let cpu_ns = summary["resources"]["cgroup"]["cpu_ns"]
            .as_f64()
            .context("summary.json has no resources.cgroup.cpu_ns")?;
        Ok(RunFigures {
            rps: summary["load"]["rps"]
                .as_f64()
                .context("summary.json has no load.rps")?,
            cpu_us: cpu_ns / 1e3 / ok.max(1.0),
        })
    }
}
