//! `cargo xtask bench load`: runner load against wrk (throughput, closed loop) and oha (client
//! CPU per request at a fixed open-loop rate), both against nginx `return 200` on loopback,
//! pinned to another CPU, alternating in one run; then runner's RSS over a long run.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::{flag, median};
use crate::{setup, sh};

const PORT: u16 = 18_480;

struct Nginx {
    child: Child,
}

impl Drop for Nginx {
    /// SIGTERM, so the master stops its worker (SIGKILL would orphan the worker, still
    /// holding the port and any inherited pipe); SIGKILL if it is still there after 5 s.
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(dir: &Path) -> anyhow::Result<Nginx> {
    std::fs::create_dir_all(dir)?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {pid};\nerror_log {err};\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {tmp};\n  keepalive_requests 1000000;\n  server {{\n    listen 127.0.0.1:{PORT} backlog=4096;\n    location / {{ return 200; }}\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            err = dir.join("error.log").display(),
            tmp = dir.display(),
        ),
    )?;
    let child = Command::new("taskset")
        .args(["-c", "1", "nginx", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx (cargo xtask setup installs nginx-light)")?;
    let nginx = Nginx { child };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", PORT)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "nginx did not start listening on port {PORT}; see {}",
                dir.join("error.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(nginx)
}

/// CPU seconds (user + sys) used by waited-for children so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs a command to completion and returns its stdout and the CPU seconds it used.
fn measured(cmd: &mut Command) -> anyhow::Result<(String, f64)> {
    let before = children_cpu();
    let out = sh::output(cmd)?;
    Ok((out, children_cpu() - before))
}

fn oha() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    let bin = home.join(".cargo/bin/oha");
    if !bin.exists() {
        eprintln!("bench: installing oha with cargo (several minutes, once)");
        sh::run(Command::new("cargo").args(["install", "oha", "--locked"]))?;
    }
    Ok(bin)
}

fn json_field(path: &Path, field: &str) -> anyhow::Result<f64> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    v[field]
        .as_f64()
        .with_context(|| format!("{field} in {}", path.display()))
}

fn wrk_rps(stdout: &str) -> anyhow::Result<f64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output: {stdout}"))
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let rounds = flag(args, "--rounds", 10)?.max(1);
    let seconds = flag(args, "--seconds", 3)?.max(1);
    let soak = flag(args, "--soak", 60)?;
    setup::run()?;
    let oha = oha()?;
    let runner = sh::build_runner()?;
    let dir = std::env::temp_dir().join("runner-bench-load");
    let _nginx = start_nginx(&dir.join("nginx"))?;
    let url = format!("http://127.0.0.1:{PORT}/");
    let json = dir.join("runner.json");
    let d = format!("{seconds}s");
    println!("load bench: nginx `return 200` on CPU 1, clients on CPU 0, {rounds} rounds of {seconds}s, alternating");

    // Each round runs both, back to back in alternating order, and yields one ratio: the
    // machine's speed drifts over seconds, so a ratio of adjacent runs is the fair figure.
    let (mut ours, mut wrks, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (mut our_rps, mut wrk_rps_now) = (0.0, 0.0);
        for ours_first in [round % 2 == 0, round % 2 == 1] {
            if ours_first {
                sh::output(
                    Command::new(&runner)
                        .args(["load", &url, "-t1", "-c64", "--cpus", "0", "-d", &d])
                        .arg("--json")
                        .arg(&json),
                )?;
                our_rps = json_field(&json, "rps")?;
            } else {
                let out = sh::output(
                    Command::new("taskset").args(["-c", "0", "wrk", "-t1", "-c64", "-d", &d, &url]),
                )?;
                wrk_rps_now = wrk_rps(&out)?;
            }
        }
        ours.push(our_rps);
        wrks.push(wrk_rps_now);
        ratios.push(our_rps / wrk_rps_now);
    }
    let round_ratios = ratios.clone();
    // `median` sorts: afterwards `ratios` runs from the lowest to the highest.
    let (a, b, ratio) = (median(&mut ours), median(&mut wrks), median(&mut ratios));
    println!(
        "throughput -t1 -c64: runner {a:.0} req/s, wrk {b:.0} req/s (medians); ratio {ratio:.3} (median of {rounds} rounds, {:.3} to {:.3})",
        ratios[0],
        ratios[ratios.len() - 1],
    );

    let rate = "20000";
    let (mut our_cpu, mut oha_cpu, mut our_ok) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for ours_first in [round % 2 == 0, round % 2 == 1] {
            if ours_first {
                let (_, cpu) = measured(
                    Command::new(&runner)
                        .args([
                            "load", &url, "--rate", rate, "-c64", "--cpus", "0", "-d", &d,
                        ])
                        .arg("--json")
                        .arg(&json),
                )?;
                our_cpu.push(cpu);
                our_ok.push(json_field(&json, "achieved_rate")?);
            } else {
                let (_, cpu) = measured(
                    Command::new("taskset")
                        .args(["-c", "0"])
                        .arg(&oha)
                        .args(["--no-tui", "-q", rate, "-c", "64", "-z", &d, &url]),
                )?;
                oha_cpu.push(cpu);
            }
        }
    }
    let (a_cpu, b_cpu) = (median(&mut our_cpu), median(&mut oha_cpu));
    let requests = 20_000.0 * seconds as f64;
    println!(
        "CPU at open loop 20k/s: runner {:.2} s ({:.2} us/request, achieved {:.0}/s), oha {:.2} s ({:.2} us/request), ratio {:.3}",
        a_cpu,
        a_cpu / requests * 1e6,
        median(&mut our_ok),
        b_cpu,
        b_cpu / requests * 1e6,
        a_cpu / b_cpu
    );

    let mut soak_report = serde_json::Value::Null;
    if soak > 0 {
        let mut child = Command::new(&runner)
            .args([
                "load",
                &url,
                "-t1",
                "-c64",
                "--cpus",
                "0",
                "-d",
                &format!("{soak}s"),
            ])
            .stdout(Stdio::null())
            .spawn()?;
        let start = Instant::now();
        let (mut early, mut last, mut max) = (0u64, 0u64, 0u64);
        while child.try_wait()?.is_none() {
            if let Some(rss) = rss_kb(child.id()) {
                if start.elapsed() < Duration::from_secs(6) {
                    early = rss;
                }
                last = rss;
                max = max.max(rss);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        println!(
            "RSS over a {soak}s full-speed run: {:.1} MB after 5 s, {:.1} MB at the end, {:.1} MB max",
            early as f64 / 1024.0,
            last as f64 / 1024.0,
            max as f64 / 1024.0
        );
        soak_report = serde_json::json!({"seconds": soak, "rss_mb_5s": early as f64 / 1024.0, "rss_mb_end": last as f64 / 1024.0, "rss_mb_max": max as f64 / 1024.0});
    }
    let out = sh::workspace().join("results/bench-load.json");
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(
        &out,
        serde_json::to_vec_pretty(&serde_json::json!({
            "rounds": rounds, "seconds": seconds,
            "throughput": {"runner_rps": a, "wrk_rps": b, "ratio": ratio, "round_ratios": round_ratios},
            "cpu_at_20k": {"runner_cpu_s": a_cpu, "oha_cpu_s": b_cpu, "ratio": a_cpu / b_cpu},
            "soak": soak_report,
        }))?,
    )?;
    println!("wrote {}", out.display());
    Ok(())
}
