//! `cargo xtask bench probes`: the overhead the probes add to a workload, measured by the
//! workload itself, with and without `runner probe`, alternating A/B in one run.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;

use super::{
    bpf::{self, map_memory, ours, BpfStats, Program},
    compile_c, elapsed_ns, flag, median, round_ratios, until_line,
};
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
    /// The probes watch something else while the workload runs outside the target: what
    /// every other process on the machine pays.
    outside: Outside,
}

#[derive(Clone, Copy, PartialEq)]
enum Outside {
    /// The workload is the target.
    No,
    /// The probes watch a sleeping process (a pid target).
    Process,
    /// The probes watch a cgroup holding a sleeping process (how apps are targeted).
    Cgroup,
}

/// Every probe but evloop, as `--probes` takes them.
const ALL_PROBES: &str = "oncpu,offcpu,runqlat,syscalls";

const PLAIN: Variant = Variant {
    name: "plain",
    probes: None,
    freq: None,
    outside: Outside::No,
};
const ALL: Variant = Variant {
    name: "all probes",
    probes: Some(ALL_PROBES),
    freq: None,
    outside: Outside::No,
};
const ALL_999: Variant = Variant {
    name: "all at 999 Hz",
    probes: Some(ALL_PROBES),
    freq: Some(999),
    outside: Outside::No,
};
const SYSCALLS_ONLY: Variant = Variant {
    name: "syscalls only",
    probes: Some("syscalls"),
    freq: None,
    outside: Outside::No,
};
const OUTSIDE: Variant = Variant {
    name: "all, other pid",
    probes: Some(ALL_PROBES),
    freq: None,
    outside: Outside::Process,
};
const OUTSIDE_CGROUP: Variant = Variant {
    name: "all, other cgroup",
    probes: Some(ALL_PROBES),
    freq: None,
    outside: Outside::Cgroup,
};
const NO_SYSCALLS: Variant = Variant {
    name: "all but syscalls",
    probes: Some("oncpu,offcpu,runqlat"),
    freq: None,
    outside: Outside::No,
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
    match variant.probes.filter(|_| variant.outside == Outside::No) {
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
        "syscall-heavy" => &[
            PLAIN,
            ALL,
            SYSCALLS_ONLY,
            NO_SYSCALLS,
            OUTSIDE,
            OUTSIDE_CGROUP,
        ],
        "python-cpu" => &[PLAIN, ALL, ALL_999],
        _ => &[PLAIN, ALL],
    };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds as usize {
        // Rotate the order so that no variant always runs first.
        for k in 0..variants.len() {
            let i = (k + round) % variants.len();
            let watcher = Watcher::start_for(variants[i], runner, freq, out)?;
            let stdout = sh::output(&mut command(variants[i], runner, bin, w.arg, freq, out))?;
            if let Some(watcher) = watcher {
                watcher.stop()?;
            }
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
    for variant in variants
        .iter()
        .filter(|v| v.name == ALL.name || v.outside != Outside::No)
    {
        program_costs(*variant, runner, bin, w, freq, out, plain)?;
    }
    Ok(())
}

/// Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or its `unified` directory on
/// hybrid machines).
fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    procfs::process::Process::myself()?
        .mountinfo()?
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
        .context("no cgroup v2 hierarchy is mounted")
}

/// Reads the stderr of `child`, a `runner probe`, until its programs are attached; a thread
/// drains the rest.
fn until_attached(child: &mut std::process::Child) -> anyhow::Result<std::thread::JoinHandle<()>> {
    until_line(child, "attaching its programs", |l| {
        l.contains("programs attached")
    })
}

/// `runner probe` watching a process that only sleeps, or its cgroup, while a workload runs
/// outside the target.
struct Watcher {
    /// `runner probe` and the thread draining its stderr, until stopped.
    run: Option<(std::process::Child, std::thread::JoinHandle<()>)>,
    sleeper: Option<Sleeper>,
}

/// A `sleep` in a cgroup of its own, for the Cgroup variant; dropping it ends both.
struct Sleeper {
    sleep: Option<std::process::Child>,
    dir: PathBuf,
}

impl Sleeper {
    fn start() -> anyhow::Result<Self> {
        let dir = cgroup2_mount()?.join(BENCH_CGROUP);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut sleeper = Self { sleep: None, dir };
        let sleep = Command::new("sleep").arg("600").spawn()?;
        let pid = sleep.id();
        sleeper.sleep = Some(sleep);
        std::fs::write(sleeper.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving sleep into {}", sleeper.dir.display()))?;
        Ok(sleeper)
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        if let Some(mut sleep) = self.sleep.take() {
            let _ = sleep.kill();
            let _ = sleep.wait();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The cgroup the Cgroup variant watches, under the cgroup v2 mount.
const BENCH_CGROUP: &str = "runner-bench-outside";

impl Watcher {
    /// Starts one for an `outside` variant and returns once its programs are attached.
    fn start_for(
        variant: Variant,
        runner: &Path,
        freq: u32,
        out: &Path,
    ) -> anyhow::Result<Option<Self>> {
        let Some(probes) = variant.probes.filter(|_| variant.outside != Outside::No) else {
            return Ok(None);
        };
        let freq = variant.freq.unwrap_or(freq).to_string();
        let mut cmd = sh::as_root(runner);
        cmd.args(["probe", "-d", "600s", "--freq", &freq, "--probes", probes])
            .arg("--out")
            .arg(out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut watcher = Self {
            run: None,
            sleeper: None,
        };
        if variant.outside == Outside::Cgroup {
            let sleeper = Sleeper::start()?;
            cmd.arg("--cgroup").arg(&sleeper.dir);
            watcher.sleeper = Some(sleeper);
        } else {
            cmd.args(["--", "sleep", "600"]);
        }
        let mut child = cmd.spawn().with_context(|| format!("running {cmd:?}"))?;
        match until_attached(&mut child) {
            Ok(drain) => watcher.run = Some((child, drain)),
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err);
            }
        }
        Ok(Some(watcher))
    }

    /// Stops it as Ctrl-C would and waits for it to write its files and exit.
    fn stop(mut self) -> anyhow::Result<()> {
        let Some((mut child, drain)) = self.run.take() else {
            return Ok(());
        };
        let interrupted = sh::run(Command::new("kill").args(["-INT", &child.id().to_string()]));
        if interrupted.is_err() {
            let _ = child.kill();
        }
        let status = child.wait()?;
        let _ = drain.join();
        interrupted?;
        // Ctrl-C ends a run with 130, its files written.
        if !status.success() && status.code() != Some(130) {
            anyhow::bail!("runner probe (outside the workload) failed: {status}");
        }
        Ok(())
    }
}

impl Drop for Watcher {
    /// A watcher not stopped (the workload failed) is killed, so that no probe stays
    /// attached to skew what runs next.
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.run.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the workload once more under all probes with the kernel's BPF run-time statistics
/// on, and prints what each program costs per run: the share of the overhead spent inside
/// the programs, as opposed to the tracepoint and perf machinery that calls them.
fn program_costs(
    variant: Variant,
    runner: &Path,
    bin: &[String],
    w: &Workload,
    freq: u32,
    out: &Path,
    plain_ns: f64,
) -> anyhow::Result<()> {
    let Some(stats) = BpfStats::on() else {
        println!(
            "  (per-program costs need root to enable {}; skipped)",
            BpfStats::FILE
        );
        return Ok(());
    };
    let watcher = Watcher::start_for(variant, runner, freq, out)?;
    let mut child = command(variant, runner, bin, w.arg, freq, out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Under runner, the workload starts once the programs are attached.
    let drain = match watcher {
        Some(_) => None,
        None => Some(until_attached(&mut child)?),
    };
    let counted_from = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs_f64(plain_ns / 1e9 * 0.6));
    let listing = bpf::listing();
    let counted = counted_from.elapsed();
    let maps = sh::output(Command::new("bpftool").args(["map", "show", "--json"]));
    let _ = child.wait_with_output();
    if let Some(drain) = drain {
        let _ = drain.join();
    }
    drop(stats);
    if let Some(watcher) = watcher {
        watcher.stop()?;
    }
    let programs: Vec<Program> = ours(&listing?);
    println!("  in-program cost (kernel BPF stats, {}):", variant.name);
    for p in programs.iter().filter(|p| p.runs > 0) {
        println!(
            "    {:<16} {:>10} runs  {:>6.0} ns/run",
            p.name,
            p.runs,
            p.ns as f64 / p.runs as f64
        );
    }
    // The workload runs alone on its CPU, so this is the share of its CPU the programs took
    // (their runs on other CPUs, for other processes, included).
    let inside_ns: u64 = programs.iter().map(|p| p.ns).sum();
    println!(
        "    in all programs: {:.1} ms in {:.2} s, {:.3}% of one CPU",
        inside_ns as f64 / 1e6,
        counted.as_secs_f64(),
        inside_ns as f64 / 1e9 / counted.as_secs_f64() * 100.0
    );
    let ids: std::collections::BTreeSet<u64> = programs
        .iter()
        .flat_map(|p| p.map_ids.iter().copied())
        .collect();
    let mut held = map_memory(&maps?, &ids);
    held.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    let total: u64 = held.iter().map(|(_, bytes)| bytes).sum();
    let largest: Vec<String> = held
        .iter()
        .take(4)
        .map(|(name, bytes)| format!("{name} {:.1}", *bytes as f64 / 1048576.0))
        .collect();
    println!(
        "  kernel memory held by the {} maps: {:.1} MiB (largest, MiB: {})",
        held.len(),
        total as f64 / 1048576.0,
        largest.join(", ")
    );
    Ok(())
}
