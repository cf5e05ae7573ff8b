//! `cargo xtask bench load`: runner load against other load generators, all against nginx
//! `return 200` (an empty body) pinned to CPU 1, each client on CPU 0, in paired rounds: each
//! round runs every client back to back, in an order that rotates, and yields ratios of
//! adjacent runs (these VMs drift by ±15% within seconds). Sections:
//!
//! - `http1`: -t1 -c64 throughput and client CPU per request against wrk;
//! - `open`: client CPU at an open-loop 20k req/s against oha;
//! - `https`: HTTPS keep-alive throughput against wrk (Debian's links OpenSSL);
//! - `h2c`, `h2`: HTTP/2 throughput, cleartext and TLS, against h2load and oha at the
//!   same connections x streams;
//! - `soak`: runner's RSS over a long full-speed run.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::{flag, median};
use crate::{setup, sh};

/// nginx listeners: HTTP/1.1, HTTPS, h2c, h2 over TLS.
const HTTP: u16 = 18_480;
const HTTPS: u16 = 18_481;
const H2C: u16 = 18_482;
const H2: u16 = 18_483;
/// HTTP/2 connections and streams per connection, for every HTTP/2 client.
const H2_CONNECTIONS: u32 = 8;
const H2_STREAMS: u32 = 16;
const SECTIONS: [&str; 6] = ["http1", "open", "https", "h2c", "h2", "soak"];

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

/// A self-signed ECDSA certificate for 127.0.0.1 and localhost: (certificate, key).
fn certificate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    sh::output(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
            .args([
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    )
    .context("making a certificate with openssl")?;
    Ok((cert, key))
}

fn start_nginx(dir: &Path) -> anyhow::Result<Nginx> {
    std::fs::create_dir_all(dir)?;
    let (cert, key) = certificate(dir)?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {pid};\nerror_log {err};\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {tmp};\n  keepalive_requests 1000000;\n\
             \x20 http2_max_concurrent_streams 256;\n  ssl_certificate {cert};\n  ssl_certificate_key {key};\n\
             \x20 ssl_session_cache shared:SSL:10m;\n\
             \x20 server {{\n    listen 127.0.0.1:{HTTP} backlog=4096;\n    listen 127.0.0.1:{HTTPS} ssl backlog=4096;\n\
             \x20   location / {{ return 200; }}\n  }}\n\
             \x20 server {{\n    listen 127.0.0.1:{H2C} http2 backlog=4096;\n    listen 127.0.0.1:{H2} ssl http2 backlog=4096;\n\
             \x20   location / {{ return 200; }}\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            err = dir.join("error.log").display(),
            tmp = dir.display(),
            cert = cert.display(),
            key = key.display(),
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
    for port in [HTTP, HTTPS, H2C, H2] {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "nginx did not start listening on port {port}; see {}",
                    dir.join("error.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(nginx)
}

/// Busy and total jiffies of CPU 1 (the server's) so far.
fn server_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu1 ")) else {
        return (0, 0);
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    let total: u64 = fields.iter().take(8).sum();
    (total - idle, total)
}

/// CPU seconds (user + sys) used by waited-for children so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs a command to completion and returns its stdout and the CPU seconds it used; notes
/// how busy the server's CPU was meanwhile in `SERVER_BUSY`.
fn measured(cmd: &mut Command) -> anyhow::Result<(String, f64)> {
    let before = children_cpu();
    let (busy, total) = server_cpu();
    let out = sh::output(cmd)?;
    let (busy2, total2) = server_cpu();
    SERVER_BUSY.with(|b| b.set((busy2 - busy) as f64 / (total2 - total).max(1) as f64));
    Ok((out, children_cpu() - before))
}

thread_local! {
    /// The share of CPU 1 (nginx) that was busy during the last measured run.
    static SERVER_BUSY: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

fn server_busy() -> f64 {
    SERVER_BUSY.with(|b| b.get())
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

/// The number after `prefix` on the first line that starts with it (after spaces).
fn number_after(stdout: &str, prefix: &str, tool: &str) -> anyhow::Result<f64> {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(prefix))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.trim_end_matches(',').parse().ok())
        .with_context(|| format!("no `{prefix}` in {tool}'s output: {stdout}"))
}

/// wrk: (requests per second, requests completed, non-2xx responses).
fn wrk_figures(stdout: &str) -> anyhow::Result<(f64, f64)> {
    let rps = number_after(stdout, "Requests/sec:", "wrk")?;
    let requests = stdout
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no request count in wrk's output: {stdout}"))?;
    if stdout.contains("Non-2xx") || stdout.contains("Socket errors") {
        bail!("wrk saw errors: {stdout}");
    }
    Ok((rps, requests))
}

/// h2load: requests per second of succeeded requests.
fn h2load_rps(stdout: &str) -> anyhow::Result<f64> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("requests:"))
        .with_context(|| format!("no requests line in h2load's output: {stdout}"))?;
    let succeeded: f64 = line
        .split(',')
        .find_map(|p| p.trim().strip_suffix(" succeeded"))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no succeeded count in `{line}`"))?;
    let seconds = stdout
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(',').next())
        .and_then(|t| t.trim().strip_suffix('s'))
        .and_then(|t| t.parse::<f64>().ok())
        .with_context(|| format!("no duration in h2load's output: {stdout}"))?;
    Ok(succeeded / seconds)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn on_cpu0(program: &Path) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"]).arg(program);
    cmd
}

/// One client run: its requests per second (correct responses) and CPU seconds per request.
type Measure<'a> = Box<dyn FnMut() -> anyhow::Result<(f64, f64)> + 'a>;

/// Per client, the (requests per second, CPU seconds per request) of every round.
type Rounds = Vec<Vec<(f64, f64)>>;

/// Paired rounds: each round runs every client once, in an order that rotates; per client,
/// the figures of every round, and the median share of the server's CPU that was busy.
fn rounds(rounds: u32, clients: &mut [(&str, Measure<'_>)]) -> anyhow::Result<(Rounds, Vec<f64>)> {
    let n = clients.len();
    let mut figures = vec![Vec::new(); n];
    let mut busy = vec![Vec::new(); n];
    for round in 0..rounds as usize {
        let mut this = vec![(0.0, 0.0); n];
        for i in 0..n {
            let which = (round + i) % n;
            this[which] = (clients[which].1)()?;
            busy[which].push(server_busy());
        }
        for (all, one) in figures.iter_mut().zip(this) {
            all.push(one);
        }
    }
    Ok((figures, busy.iter_mut().map(|b| median(b)).collect()))
}

/// Medians of per-round ratios of client 0 to client `other`: (throughput, CPU per request).
fn ratios(figures: &[Vec<(f64, f64)>], other: usize) -> (f64, f64, Vec<f64>) {
    let mut rps: Vec<f64> = figures[0]
        .iter()
        .zip(&figures[other])
        .map(|(a, b)| a.0 / b.0)
        .collect();
    let per_round = rps.clone();
    let mut cpu: Vec<f64> = figures[0]
        .iter()
        .zip(&figures[other])
        .map(|(a, b)| a.1 / b.1)
        .collect();
    (median(&mut rps), median(&mut cpu), per_round)
}

/// Whether nginx's core, busy this share of the time under runner, bounds throughput.
fn server_bound(busy_runner: f64) -> bool {
    busy_runner >= 0.95
}

/// A line saying what a throughput ratio measures when nginx's core was saturated under
/// runner: then the ratio is the server's cost per request under each client, and the
/// client's own figure is its CPU per request.
fn bound_note(busy_runner: f64, cpu_ratio: f64, other: &str) -> Option<String> {
    server_bound(busy_runner).then(|| {
        format!(
            "  nginx's core was {:.0}% busy under runner, so the server bounds its throughput; runner's CPU per request is {cpu_ratio:.3}x {other}'s",
            busy_runner * 100.0
        )
    })
}

fn medians(figures: &[(f64, f64)]) -> (f64, f64) {
    let mut rps: Vec<f64> = figures.iter().map(|f| f.0).collect();
    let mut cpu: Vec<f64> = figures.iter().map(|f| f.1).collect();
    (median(&mut rps), median(&mut cpu))
}

struct Bench {
    runner: PathBuf,
    json: PathBuf,
    seconds: String,
}

impl Bench {
    /// runner load with `args`, on CPU 0: (ok/s, CPU seconds per request).
    fn runner(&self, url: &str, args: &[&str]) -> anyhow::Result<(f64, f64)> {
        let (_, cpu) = measured(
            Command::new(&self.runner)
                .args(["load", url, "--cpus", "0", "-d", &self.seconds])
                .args(args)
                .arg("--json")
                .arg(&self.json),
        )?;
        if json_field(&self.json, "error_total")? > 0.0 {
            bail!(
                "runner load {url} {args:?} had errors: see {}",
                self.json.display()
            );
        }
        let requests = json_field(&self.json, "requests")?;
        Ok((json_field(&self.json, "rps")?, cpu / requests))
    }

    fn wrk(&self, url: &str) -> anyhow::Result<(f64, f64)> {
        let (out, cpu) =
            measured(on_cpu0(Path::new("wrk")).args(["-t1", "-c64", "-d", &self.seconds, url]))?;
        let (rps, requests) = wrk_figures(&out)?;
        Ok((rps, cpu / requests))
    }

    fn h2load(&self, url: &str) -> anyhow::Result<(f64, f64)> {
        let (out, cpu) = measured(on_cpu0(Path::new("h2load")).args([
            "-t1",
            "-c",
            &H2_CONNECTIONS.to_string(),
            "-m",
            &H2_STREAMS.to_string(),
            "-D",
            &self.seconds,
            url,
        ]))?;
        let rps = h2load_rps(&out)?;
        Ok((
            rps,
            cpu / (rps * self.seconds.trim_end_matches('s').parse::<f64>()?),
        ))
    }

    fn oha(&self, oha: &Path, url: &str, http2: bool) -> anyhow::Result<(f64, f64)> {
        let mut cmd = on_cpu0(oha);
        cmd.args(["--no-tui", "--insecure", "-z", &self.seconds]);
        if http2 {
            cmd.args([
                "--http2",
                "-c",
                &H2_CONNECTIONS.to_string(),
                "-p",
                &H2_STREAMS.to_string(),
            ]);
        } else {
            cmd.args(["-c", "64"]);
        }
        let (out, cpu) = measured(cmd.arg(url))?;
        let rps = number_after(&out, "Requests/sec:", "oha")?;
        Ok((
            rps,
            cpu / (rps * self.seconds.trim_end_matches('s').parse::<f64>()?),
        ))
    }
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let rounds_n = flag(args, "--rounds", 10)?.max(1);
    let seconds = flag(args, "--seconds", 3)?.max(1);
    let soak = flag(args, "--soak", 60)?;
    let only: Vec<String> = match args.iter().position(|a| a == "--only") {
        Some(i) => args
            .get(i + 1)
            .context("--only takes sections, e.g. http1,h2c")?
            .split(',')
            .map(str::to_string)
            .collect(),
        None => SECTIONS.iter().map(|s| s.to_string()).collect(),
    };
    if let Some(bad) = only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
        bail!("`{bad}` is not a section ({})", SECTIONS.join(", "));
    }
    let want = |s: &str| only.iter().any(|o| o == s);
    setup::run()?;
    let oha = oha()?;
    let bench = Bench {
        runner: sh::build_runner()?,
        json: std::env::temp_dir().join("runner-bench-load.json"),
        seconds: format!("{seconds}s"),
    };
    let dir = std::env::temp_dir().join("runner-bench-load");
    let _nginx = start_nginx(&dir.join("nginx"))?;
    let http = format!("http://127.0.0.1:{HTTP}/");
    let https = format!("https://127.0.0.1:{HTTPS}/");
    let h2c = format!("http://127.0.0.1:{H2C}/");
    let h2 = format!("https://127.0.0.1:{H2}/");
    println!("load bench: nginx `return 200` on CPU 1, clients on CPU 0, {rounds_n} paired rounds of {seconds}s");
    let mut report = serde_json::json!({"rounds": rounds_n, "seconds": seconds});

    if want("http1") {
        let (figures, busy) = rounds(
            rounds_n,
            &mut [
                ("runner", Box::new(|| bench.runner(&http, &["-t1", "-c64"]))),
                ("wrk", Box::new(|| bench.wrk(&http))),
            ],
        )?;
        let (ours, wrk) = (medians(&figures[0]), medians(&figures[1]));
        let (ratio, cpu_ratio, round_ratios) = ratios(&figures, 1);
        println!(
            "http1 -t1 -c64: runner {:.0} req/s, wrk {:.0} req/s; throughput ratio {ratio:.3} (median of {rounds_n} rounds, {:.3} to {:.3}); CPU per request runner {:.2} us, wrk {:.2} us, ratio {cpu_ratio:.3}; client CPU busy {:.0}% (runner), {:.0}% (wrk); nginx's CPU busy {:.0}% under runner, {:.0}% under wrk",
            ours.0,
            wrk.0,
            round_ratios.iter().copied().fold(f64::MAX, f64::min),
            round_ratios.iter().copied().fold(0.0, f64::max),
            ours.1 * 1e6,
            wrk.1 * 1e6,
            ours.0 * ours.1 * 100.0,
            wrk.0 * wrk.1 * 100.0,
            busy[0] * 100.0,
            busy[1] * 100.0,
        );
        if let Some(note) = bound_note(busy[0], cpu_ratio, "wrk") {
            println!("{note}");
        }
        report["throughput"] = serde_json::json!({
            "runner_rps": ours.0, "wrk_rps": wrk.0, "ratio": ratio, "round_ratios": round_ratios,
            "runner_cpu_us_per_request": ours.1 * 1e6, "wrk_cpu_us_per_request": wrk.1 * 1e6,
            "cpu_per_request_ratio": cpu_ratio,
            "server_busy_runner": busy[0], "server_busy_wrk": busy[1],
            "server_bound": server_bound(busy[0]),
        });
    }

    if want("open") {
        let rate = "20000";
        let requests = 20_000.0 * seconds as f64;
        let mut achieved = Vec::new();
        let (figures, _) = rounds(
            rounds_n,
            &mut [
                (
                    "runner",
                    Box::new(|| {
                        let (_, cpu) = measured(
                            Command::new(&bench.runner)
                                .args(["load", &http, "--rate", rate, "-c64", "--cpus", "0"])
                                // A round where the machine took the client's CPU counts
                                // (its achieved rate is reported), it does not end the bench.
                                .args(["--max-error-rate", "100"])
                                .args(["-d", &bench.seconds, "--json"])
                                .arg(&bench.json),
                        )?;
                        achieved.push(json_field(&bench.json, "achieved_rate")?);
                        Ok((0.0, cpu))
                    }),
                ),
                (
                    "oha",
                    Box::new(|| {
                        let (_, cpu) = measured(
                            on_cpu0(&oha)
                                .args(["--no-tui", "-q", rate, "-c", "64", "-z", &bench.seconds])
                                .arg(&http),
                        )?;
                        Ok((0.0, cpu))
                    }),
                ),
            ],
        )?;
        let (ours, theirs) = (medians(&figures[0]).1, medians(&figures[1]).1);
        println!(
            "CPU at open loop 20k/s: runner {ours:.2} s ({:.2} us/request, achieved {:.0}/s), oha {theirs:.2} s ({:.2} us/request), ratio {:.3}",
            ours / requests * 1e6,
            median(&mut achieved),
            theirs / requests * 1e6,
            ours / theirs
        );
        report["cpu_at_20k"] =
            serde_json::json!({"runner_cpu_s": ours, "oha_cpu_s": theirs, "ratio": ours / theirs});
    }

    if want("https") {
        let (figures, busy) = rounds(
            rounds_n,
            &mut [
                (
                    "runner",
                    Box::new(|| bench.runner(&https, &["-t1", "-c64", "-k"])),
                ),
                ("wrk", Box::new(|| bench.wrk(&https))),
            ],
        )?;
        let (ours, wrk) = (medians(&figures[0]), medians(&figures[1]));
        let (ratio, cpu_ratio, round_ratios) = ratios(&figures, 1);
        println!(
            "https keep-alive -t1 -c64: runner {:.0} req/s, wrk {:.0} req/s; ratio {ratio:.3} ({:.3} to {:.3}); CPU per request ratio {cpu_ratio:.3}; nginx's CPU busy {:.0}% under runner, {:.0}% under wrk",
            ours.0,
            wrk.0,
            round_ratios.iter().copied().fold(f64::MAX, f64::min),
            round_ratios.iter().copied().fold(0.0, f64::max),
            busy[0] * 100.0,
            busy[1] * 100.0,
        );
        if let Some(note) = bound_note(busy[0], cpu_ratio, "wrk") {
            println!("{note}");
        }
        report["https"] = serde_json::json!({
            "runner_rps": ours.0, "wrk_rps": wrk.0, "ratio": ratio, "round_ratios": round_ratios,
            "cpu_per_request_ratio": cpu_ratio,
            "server_busy_runner": busy[0], "server_busy_wrk": busy[1],
            "server_bound": server_bound(busy[0]),
        });
    }

    for (section, url) in [("h2c", &h2c), ("h2", &h2)] {
        if !want(section) {
            continue;
        }
        let (c, p) = (H2_CONNECTIONS.to_string(), H2_STREAMS.to_string());
        let (figures, busy) = rounds(
            rounds_n,
            &mut [
                (
                    "runner",
                    Box::new(|| bench.runner(url, &["--http2", "-c", &c, "-p", &p, "-k"])),
                ),
                ("h2load", Box::new(|| bench.h2load(url))),
                ("oha", Box::new(|| bench.oha(&oha, url, true))),
            ],
        )?;
        let (ours, h2load, oha_figures) = (
            medians(&figures[0]),
            medians(&figures[1]),
            medians(&figures[2]),
        );
        let (vs_h2load, cpu_vs_h2load, h2load_rounds) = ratios(&figures, 1);
        let (vs_oha, cpu_vs_oha, oha_rounds) = ratios(&figures, 2);
        println!(
            "{section} -c{c} x {p} streams: runner {:.0} req/s, h2load {:.0}, oha {:.0}; ratio to h2load {vs_h2load:.3}, to oha {vs_oha:.3}; CPU per request runner {:.2} us, h2load {:.2} us, oha {:.2} us (ratios {cpu_vs_h2load:.3}, {cpu_vs_oha:.3}); nginx's CPU busy {:.0}% / {:.0}% / {:.0}%",
            ours.0,
            h2load.0,
            oha_figures.0,
            ours.1 * 1e6,
            h2load.1 * 1e6,
            oha_figures.1 * 1e6,
            busy[0] * 100.0,
            busy[1] * 100.0,
            busy[2] * 100.0,
        );
        if let Some(note) = bound_note(busy[0], cpu_vs_oha, "oha") {
            println!("{note}");
        }
        report[section] = serde_json::json!({
            "connections": H2_CONNECTIONS, "streams": H2_STREAMS,
            "runner_rps": ours.0, "h2load_rps": h2load.0, "oha_rps": oha_figures.0,
            "ratio_h2load": vs_h2load, "ratio_oha": vs_oha,
            "round_ratios_h2load": h2load_rounds, "round_ratios_oha": oha_rounds,
            "cpu_per_request_ratio_h2load": cpu_vs_h2load, "cpu_per_request_ratio_oha": cpu_vs_oha,
            "server_bound": server_bound(busy[0]),
            "server_busy": {"runner": busy[0], "h2load": busy[1], "oha": busy[2]},
        });
    }

    if want("soak") && soak > 0 {
        let mut child = Command::new(&bench.runner)
            .args([
                "load",
                &http,
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
        report["soak"] = serde_json::json!({"seconds": soak, "rss_mb_5s": early as f64 / 1024.0, "rss_mb_end": last as f64 / 1024.0, "rss_mb_max": max as f64 / 1024.0});
    }
    let out = sh::workspace().join("results/bench-load.json");
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
    println!("wrote {}", out.display());
    Ok(())
}
