//! `cargo xtask bench probes`: the overhead the probes add to a workload, measured by the
//! workload itself, with and without `runner probe`, alternating A/B in one run.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

use crate::{setup, sh};

/// Compiles a C file with frame pointers into target/xtask/NAME.
pub fn compile_c(name: &str, src: &Path) -> anyhow::Result<PathBuf> {
    let dir = sh::workspace().join("target/xtask");
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join(name);
    sh::run(
        Command::new("gcc")
            .args([
                "-O0",
                "-g",
                "-fno-omit-frame-pointer",
                "-mno-omit-leaf-frame-pointer",
                "-o",
            ])
            .arg(&bin)
            .arg(src),
    )
    .with_context(|| format!("compiling {}", src.display()))?;
    Ok(bin)
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("probes") => probes(&args[1..]),
        _ => bail!("usage: cargo xtask bench probes [--rounds N] [--freq HZ]"),
    }
}

struct Workload {
    name: &'static str,
    source: &'static str,
    arg: &'static str,
    ops: f64,
}

const WORKLOADS: [Workload; 2] = [
    Workload {
        name: "cpu-bound",
        source: "xtask/bench/cpu_work.c",
        arg: "600000000",
        ops: 600_000_000.0,
    },
    Workload {
        name: "syscall-heavy",
        source: "xtask/bench/syscall_work.c",
        arg: "3000000",
        ops: 3_000_000.0,
    },
];

fn flag(args: &[String], name: &str, default: u32) -> anyhow::Result<u32> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} takes a number")),
        None => Ok(default),
    }
}

fn elapsed_ns(stdout: &str) -> anyhow::Result<f64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("elapsed_ns="))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no elapsed_ns= line in: {stdout}"))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn probes(args: &[String]) -> anyhow::Result<()> {
    let rounds = flag(args, "--rounds", 5)?.max(1);
    let freq = flag(args, "--freq", 99)?;
    setup::run()?;
    sh::run(&mut sh::cargo(&[
        "build",
        "--release",
        "--locked",
        "-p",
        "runner",
    ]))?;
    let runner = sh::workspace().join("target/release/runner");
    let out = std::env::temp_dir().join("runner-bench-probes");
    println!(
        "probe overhead, {rounds} rounds A/B alternated, oncpu at {freq} Hz; workload on CPU 1"
    );
    let mut report = Vec::new();
    for w in &WORKLOADS {
        let bin = compile_c(
            &format!("bench-{}", w.name),
            &sh::workspace().join(w.source),
        )?;
        let (mut plain, mut probed) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for probed_first in [round % 2 == 1, round % 2 == 0] {
                if probed_first {
                    let mut cmd = sh::as_root(&runner);
                    cmd.args(["probe", "-d", "600s", "--freq", &freq.to_string(), "--out"])
                        .arg(&out)
                        .arg("--")
                        .arg(&bin)
                        .args([w.arg, "1"]);
                    probed.push(elapsed_ns(&sh::output(&mut cmd)?)?);
                } else {
                    plain.push(elapsed_ns(&sh::output(
                        Command::new(&bin).args([w.arg, "1"]),
                    )?)?);
                }
            }
        }
        let (a, b) = (median(&mut plain), median(&mut probed));
        let overhead = b / a - 1.0;
        let rate = w.ops / (a / 1e9);
        println!(
            "{:<14} plain {:>8.1} ms  probed {:>8.1} ms  ratio {:.4}  overhead {:+.2}%  ({:.0} ops/s plain, +{:.0} ns per op)",
            w.name,
            a / 1e6,
            b / 1e6,
            b / a,
            overhead * 100.0,
            rate,
            (b - a) / w.ops
        );
        report.push(format!(
            "{{\"workload\":\"{}\",\"rounds\":{rounds},\"freq_hz\":{freq},\"plain_ms\":{:.3},\"probed_ms\":{:.3},\"ratio\":{:.5},\"plain_ops_per_s\":{:.0}}}",
            w.name,
            a / 1e6,
            b / 1e6,
            b / a,
            rate
        ));
    }
    let dir = sh::workspace().join("results");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bench-probes.json");
    std::fs::write(&file, format!("[{}]\n", report.join(",")))?;
    println!("wrote {}", file.display());
    Ok(())
}
