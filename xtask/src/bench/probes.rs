//! `cargo xtask bench probes`: the overhead the probes add to a workload, measured by the
//! workload itself, with and without `runner probe`, alternating A/B in one run.

use std::{path::Path, process::Command};

use super::{compile_c, elapsed_ns, flag, median};
use crate::{setup, sh};

struct Workload {
    name: &'static str,
    source: &'static str,
    /// Runs the source with this interpreter; C sources are compiled instead.
    interpreter: Option<&'static str>,
    arg: &'static str,
    ops: f64,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "cpu-bound",
        source: "xtask/bench/cpu_work.c",
        interpreter: None,
        arg: "600000000",
        ops: 600_000_000.0,
    },
    Workload {
        name: "syscall-heavy",
        source: "xtask/bench/syscall_work.c",
        interpreter: None,
        arg: "2000000",
        ops: 2_000_000.0,
    },
    // The Python stack walker at work: every sample walks 30+ Python frames.
    Workload {
        name: "python-cpu",
        source: "xtask/bench/py_work.py",
        interpreter: Some("/usr/bin/python3"),
        arg: "400",
        ops: 400.0 * 100_000.0,
    },
];

/// One way of running a workload: plain, or under `runner probe` with some probes.
#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    probes: Option<&'static str>,
    /// On-CPU frequency instead of --freq.
    freq: Option<u32>,
}

const PLAIN: Variant = Variant {
    name: "plain",
    probes: None,
    freq: None,
};
const ALL: Variant = Variant {
    name: "all probes",
    probes: Some("oncpu,offcpu,runqlat,syscalls"),
    freq: None,
};
const ALL_999: Variant = Variant {
    name: "all at 999 Hz",
    probes: Some("oncpu,offcpu,runqlat,syscalls"),
    freq: Some(999),
};
const SYSCALLS_ONLY: Variant = Variant {
    name: "syscalls only",
    probes: Some("syscalls"),
    freq: None,
};
const NO_SYSCALLS: Variant = Variant {
    name: "all but syscalls",
    probes: Some("oncpu,offcpu,runqlat"),
    freq: None,
};

fn command(
    variant: Variant,
    runner: &Path,
    bin: &[String],
    arg: &str,
    freq: u32,
    out: &Path,
) -> Command {
    let freq = variant.freq.unwrap_or(freq);
    match variant.probes {
        None => {
            let mut cmd = Command::new(&bin[0]);
            cmd.args(&bin[1..]).args([arg, "1"]);
            cmd
        }
        Some(probes) => {
            let mut cmd = sh::as_root(runner);
            cmd.args([
                "probe",
                "-d",
                "600s",
                "--freq",
                &freq.to_string(),
                "--probes",
                probes,
            ])
            .arg("--out")
            .arg(out)
            .arg("--")
            .args(bin)
            .args([arg, "1"]);
            cmd
        }
    }
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let rounds = flag(args, "--rounds", 5)?.max(1);
    let freq = flag(args, "--freq", 99)?;
    setup::run()?;
    let runner = sh::build_runner()?;
    let out = std::env::temp_dir().join("runner-bench-probes");
    println!("probe overhead: {rounds} rounds, variants alternated within each round, oncpu at {freq} Hz, workload pinned to CPU 1");
    println!("figures are medians of the workload's own timing of a fixed amount of work");
    let mut report = Vec::new();
    let only = args
        .iter()
        .position(|a| a == "--workload")
        .and_then(|i| args.get(i + 1));
    for w in WORKLOADS
        .iter()
        .filter(|w| only.is_none_or(|o| o == w.name))
    {
        let source = sh::workspace().join(w.source);
        let bin: Vec<String> = match w.interpreter {
            Some(interpreter) => vec![interpreter.into(), source.display().to_string()],
            None => vec![compile_c(&format!("bench-{}", w.name), &source)?
                .display()
                .to_string()],
        };
        let variants: &[Variant] = match w.name {
            "syscall-heavy" => &[PLAIN, ALL, SYSCALLS_ONLY, NO_SYSCALLS],
            "python-cpu" => &[PLAIN, ALL, ALL_999],
            _ => &[PLAIN, ALL],
        };
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        for round in 0..rounds as usize {
            // Rotate the order so that no variant always runs first.
            for k in 0..variants.len() {
                let i = (k + round) % variants.len();
                let stdout =
                    sh::output(&mut command(variants[i], &runner, &bin, w.arg, freq, &out))?;
                times[i].push(elapsed_ns(&stdout)?);
            }
        }
        let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
        let plain = medians[0];
        println!(
            "{:<14} plain {:>8.1} ms ({:.2}M ops/s)",
            w.name,
            plain / 1e6,
            w.ops / (plain / 1e9) / 1e6
        );
        for (variant, &t) in variants.iter().zip(&medians).skip(1) {
            println!(
                "  {:<17} {:>8.1} ms  ratio {:.4}  overhead {:+.2}%  (+{:.0} ns per op)",
                variant.name,
                t / 1e6,
                t / plain,
                (t / plain - 1.0) * 100.0,
                (t - plain) / w.ops
            );
            report.push(format!(
                "{{\"workload\":\"{}\",\"variant\":\"{}\",\"rounds\":{rounds},\"freq_hz\":{},\"plain_ms\":{:.3},\"probed_ms\":{:.3},\"ratio\":{:.5},\"plain_ops_per_s\":{:.0},\"extra_ns_per_op\":{:.1}}}",
                w.name,
                variant.name,
                variant.freq.unwrap_or(freq),
                plain / 1e6,
                t / 1e6,
                t / plain,
                w.ops / (plain / 1e9),
                (t - plain) / w.ops
            ));
        }
        program_costs(&runner, &bin, w, freq, &out, plain)?;
    }
    let dir = sh::workspace().join("results");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bench-probes.json");
    std::fs::write(&file, format!("[{}]\n", report.join(",")))?;
    println!("wrote {}", file.display());
    Ok(())
}

/// Runs the workload once more under all probes with the kernel's BPF run-time statistics
/// on, and prints what each program costs per run: the share of the overhead spent inside
/// the programs, as opposed to the tracepoint and perf machinery that calls them.
fn program_costs(
    runner: &Path,
    bin: &[String],
    w: &Workload,
    freq: u32,
    out: &Path,
    plain_ns: f64,
) -> anyhow::Result<()> {
    const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let previous = std::fs::read_to_string(STATS).unwrap_or_else(|_| "0".into());
    if std::fs::write(STATS, "1").is_err() {
        println!("  (per-program costs need root to enable {STATS}; skipped)");
        return Ok(());
    }
    let child = command(ALL, runner, bin, w.arg, freq, out)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_secs_f64(
        0.3 + plain_ns / 1e9 * 0.6,
    ));
    let listing = sh::output(Command::new("bpftool").args(["prog", "show", "--json"]));
    let _ = child.wait_with_output();
    let _ = std::fs::write(STATS, previous.trim());
    let list: Vec<(String, u64, u64)> = parse_bpftool(&listing?);
    let ours = [
        "oncpu_sample",
        "offcpu_switch",
        "runq_wakeup",
        "runq_wakeup_new",
        "runq_switch",
        "syscall_enter",
        "syscall_exit",
        "target_newtask",
        "target_exit",
        "target_exec",
    ];
    println!("  in-program cost (kernel BPF stats, all probes):");
    for (name, runs, ns) in list
        .iter()
        .filter(|(n, _, _)| ours.iter().any(|o| o.starts_with(n.as_str())))
    {
        if *runs > 0 {
            println!(
                "    {name:<16} {runs:>10} runs  {:>6.0} ns/run",
                *ns as f64 / *runs as f64
            );
        }
    }
    Ok(())
}

/// (name, run_cnt, run_time_ns) of each program in `bpftool prog show --json`.
fn parse_bpftool(json: &str) -> Vec<(String, u64, u64)> {
    let list: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    list.iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_string(),
                p["run_cnt"].as_u64().unwrap_or(0),
                p["run_time_ns"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}
