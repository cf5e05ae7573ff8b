//! `cargo xtask bench evloop`: what watching event loops costs a non-blocking async app under
//! load. The app runs the same closed-loop load (-c 10, one client thread) under
//! `runner profile --no-probes`, under `runner diagnose` (evloop, loop threads only), and under
//! `runner profile` with every probe; variants alternate within each round, and the bench
//! reports throughput ratios against no probes.

use std::path::Path;

use anyhow::Context;

use super::{flag, median, round_ratios};
use crate::{setup, sh};

struct Variant {
    name: &'static str,
    command: &'static str,
    args: &'static [&'static str],
}

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "no probes",
        command: "profile",
        args: &["--no-probes"],
    },
    Variant {
        name: "runner diagnose",
        command: "diagnose",
        args: &[],
    },
    Variant {
        name: "profile, all probes",
        command: "profile",
        args: &[],
    },
];

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
    let app = arg(args, "--app", "fastapi");
    let scenario = arg(args, "--scenario", "ping");
    setup::run()?;
    let runner = sh::build_runner()?;
    let out = std::env::temp_dir().join("runner-bench-evloop");
    println!("evloop overhead: {app} {scenario}, {rounds} rounds of {seconds}s at -c 10, variants alternated; figures are medians of ok/s");
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..rounds as usize {
        for k in 0..VARIANTS.len() {
            let i = (k + round) % VARIANTS.len();
            let _ = std::fs::remove_dir_all(&out);
            let v = &VARIANTS[i];
            let mut cmd = sh::as_root(&runner);
            cmd.arg(v.command).arg(app);
            if v.command == "diagnose" {
                cmd.arg("--scenario");
            }
            cmd.args([scenario, "-c", "10", "--warmup", "2s"])
                .args(["-d", &format!("{seconds}s"), "--out"])
                .arg(&out)
                .args(v.args);
            sh::output(&mut cmd)?;
            let r = rps_of(&out)?;
            println!(
                "  round {} {:<18} {:>9.1} ok/s",
                round + 1,
                VARIANTS[i].name,
                r
            );
            rps[i].push(r);
        }
    }
    let ratios = round_ratios(&rps);
    let medians: Vec<f64> = rps.iter_mut().map(|r| median(r)).collect();
    let mut report = Vec::new();
    for ((v, &m), &ratio) in VARIANTS.iter().zip(&medians).zip(&ratios) {
        println!(
            "{:<18} {:>9.1} ok/s  round ratio {:.4}  overhead {:+.2}%  (ratio of medians {:.4})",
            v.name,
            m,
            ratio,
            (1.0 - ratio) * 100.0,
            m / medians[0]
        );
        report.push(serde_json::json!({
            "app": app,
            "scenario": scenario,
            "variant": v.name,
            "rounds": rounds,
            "rps": m,
            "ratio": ratio,
            "ratio_of_medians": m / medians[0],
        }));
    }
    let dir = sh::workspace().join("results");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bench-evloop.json");
    std::fs::write(&file, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("wrote {}", file.display());
    Ok(())
}

/// ok/s of the single run in `out`: a profile's summary.json or a diagnosis.json.
fn rps_of(out: &Path) -> anyhow::Result<f64> {
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
        read("diagnosis.json")?["entries"][0]["rps"]
            .as_f64()
            .context("diagnosis.json has no rps")
    } else {
        read("summary.json")?["load"]["rps"]
            .as_f64()
            .context("summary.json has no load.rps")
    }
}
