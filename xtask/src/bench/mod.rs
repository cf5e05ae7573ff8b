//! `cargo xtask bench probes | load | evloop`: benchmarks that compare against other tools or
//! against a baseline in the same run, alternating, and report ratios.

mod bpf;
mod evloop;
mod load;
mod probes;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

use crate::sh;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("probes") => probes::run(&args[1..]),
        Some("load") => load::run(&args[1..]),
        Some("evloop") => evloop::run(&args[1..]),
        _ => bail!("usage: cargo xtask bench probes [--rounds N] [--freq HZ] [--workload NAME] [--python 3.11,3.12,PATH]\n       cargo xtask bench load [--rounds N] [--seconds S] [--soak S] [--only http1,open,https,h2c,h2,soak]\n       cargo xtask bench evloop [--rounds N] [--seconds S] [--rate R] [--app APP] [--scenario S]"),
    }
}

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

/// Reads the stderr of `child` (a runner) until a line passes `is_it`; a thread drains the
/// rest. Fails, naming `awaited`, when runner ends first.
pub fn until_line(
    child: &mut std::process::Child,
    awaited: &str,
    is_it: impl Fn(&str) -> bool,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    use std::io::BufRead;
    let stderr = child.stderr.take().context("runner's stderr")?;
    let mut lines = std::io::BufReader::new(stderr).lines();
    if !lines.by_ref().map_while(Result::ok).any(|l| is_it(&l)) {
        let status = child.wait()?;
        bail!("runner ended ({status}) before {awaited}");
    }
    Ok(std::thread::spawn(move || {
        lines.map_while(Result::ok).for_each(drop)
    }))
}

pub fn flag(args: &[String], name: &str, default: u32) -> anyhow::Result<u32> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} takes a number")),
        None => Ok(default),
    }
}

pub fn elapsed_ns(stdout: &str) -> anyhow::Result<f64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("elapsed_ns="))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no elapsed_ns= line in: {stdout}"))
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// For each variant, the median over rounds of its figure over the first variant's figure in
/// the same round: the machine's drift between rounds cancels out of these.
pub fn round_ratios(figures: &[Vec<f64>]) -> Vec<f64> {
    figures
        .iter()
        .map(|f| {
            let mut r: Vec<f64> = f.iter().zip(&figures[0]).map(|(x, b)| x / b).collect();
            median(&mut r)
        })
        .collect()
}
