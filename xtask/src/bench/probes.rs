//! `cargo xtask bench probes`: the overhead the probes add to a workload, measured by the
//! workload itself, with and without `runner probe`, alternating A/B in one run.

use std::{path::Path, process::Command};

use anyhow::Context;

use super::{compile_c, elapsed_ns, flag, median, round_ratios};
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
    let pythons = match args.iter().position(|a| a == "--python") {
        Some(i) => args
            .get(i + 1)
            .context("--python takes a list: 3.11,3.12,/path/to/python")?
            .split(',')
            .map(find_python)
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    for w in WORKLOADS
        .iter()
        .filter(|w| only.is_none_or(|o| o == w.name))
    {
        let source = sh::workspace().join(w.source);
        let runs: Vec<(String, Vec<String>)> = match w.interpreter {
            Some(default) => {
                let interpreters = if pythons.is_empty() {
                    vec![default.to_string()]
                } else {
                    pythons.clone()
                };
                interpreters
                    .into_iter()
                    .map(|python| {
                        let name = format!("{} {}", w.name, python_version(&python));
                        (name, vec![python, source.display().to_string()])
                    })
                    .collect()
            }
            None => vec![(
                w.name.to_string(),
                vec![compile_c(&format!("bench-{}", w.name), &source)?
                    .display()
                    .to_string()],
            )],
        };
        for (name, bin) in runs {
            measure(&name, w, &bin, &runner, rounds, freq, &out, &mut report)?;
        }
    }
    let dir = sh::workspace().join("results");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bench-probes.json");
    std::fs::write(&file, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("wrote {}", file.display());
    Ok(())
}

/// An interpreter named by version (pyenv's build first, then /usr/bin, /usr/local/bin) or
/// by path.
fn find_python(spec: &str) -> anyhow::Result<String> {
    if spec.contains('/') {
        return Ok(spec.to_string());
    }
    let pyenv = std::fs::read_dir("/root/.pyenv/versions")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.strip_prefix(spec).is_some_and(|r| r.starts_with('.')))
        })
        .map(|p| p.join(format!("bin/python{spec}")));
    let system = ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(format!("python{spec}")));
    pyenv
        .chain(system)
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
        .with_context(|| format!("no Python {spec} found (pyenv, /usr/bin, /usr/local/bin)"))
}

/// `3.12.1` for an interpreter, or its path when it does not run.
fn python_version(python: &str) -> String {
    sh::output(
        Command::new(python).args(["-c", "import platform; print(platform.python_version())"]),
    )
    .map(|v| v.trim().to_string())
    .unwrap_or_else(|_| python.to_string())
}

/// Runs one workload with one binary under each variant, alternating, and reports the
/// overhead of each against plain.
#[allow(clippy::too_many_arguments)]
fn measure(
    name: &str,
    w: &Workload,
    bin: &[String],
    runner: &Path,
    rounds: u32,
    freq: u32,
    out: &Path,
    report: &mut Vec<serde_json::Value>,
) -> anyhow::Result<()> {
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
            let stdout = sh::output(&mut command(variants[i], runner, bin, w.arg, freq, out))?;
            times[i].push(elapsed_ns(&stdout)?);
        }
    }
    let round_ratios = round_ratios(&times);
    let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    let plain = medians[0];
    println!(
        "{name:<14} plain {:>8.1} ms ({:.2}M ops/s)",
        plain / 1e6,
        w.ops / (plain / 1e9) / 1e6
    );
    for ((variant, &t), &ratio) in variants.iter().zip(&medians).zip(&round_ratios).skip(1) {
        println!(
            "  {:<17} {:>8.1} ms  round ratio {:.4}  overhead {:+.2}%  (ratio of medians {:.4}, +{:.0} ns per op)",
            variant.name,
            t / 1e6,
            ratio,
            (ratio - 1.0) * 100.0,
            t / plain,
            (t - plain) / w.ops
        );
        report.push(serde_json::json!({
            "workload": name,
            "interpreter": w.interpreter.map(|_| &bin[0]),
            "variant": variant.name,
            "rounds": rounds,
            "freq_hz": variant.freq.unwrap_or(freq),
            "plain_ms": plain / 1e6,
            "probed_ms": t / 1e6,
            "ratio": ratio,
            "ratio_of_medians": t / plain,
            "plain_ops_per_s": w.ops / (plain / 1e9),
            "extra_ns_per_op": (t - plain) / w.ops,
        }));
    }
    program_costs(runner, bin, w, freq, out, plain)
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
