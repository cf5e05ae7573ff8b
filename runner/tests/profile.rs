//! `runner profile` end to end, as a user runs it: real apps, real probes, real files.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use common::*;

fn results(test: &str) -> PathBuf {
    fresh_dir("profile-results", test)
}

/// The one run folder inside `root`.
fn run_dir(root: &Path) -> PathBuf {
    only_dir(root)
}

fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_string();
    let root = runner::cgroup::v2_root().unwrap();
    if let Ok(entries) = std::fs::read_dir(root.join(own.trim_start_matches('/'))) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("runner-") && !name.starts_with("runner-test") {
                found.push(format!("cgroup {name}"));
            }
        }
    }
    let ps = Command::new("pgrep")
        .args(["-a", "-f", "axum-app|postgres -D .*partial"])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&ps.stdout).lines() {
        found.push(format!("process {line}"));
    }
    found
}

fn profile(args: &[&str], out: &Path) -> std::process::Output {
    runner()
        .arg("profile")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("runner runs")
}

/// Checks a run folder; `app_frame` tells a folded line of the app's processes.
fn check_run(dir: &Path, app_frame: impl Fn(&str) -> bool) {
    let summary = json(dir, "summary.json");
    assert_eq!(summary["schema"], "runner.summary/v1");
    assert_eq!(summary["status"], "ok");
    assert!(summary["load"]["rps"].as_f64().unwrap() > 0.0, "{summary}");
    assert_eq!(summary["load"]["error_total"], 0, "{summary}");
    assert!(
        summary["probes"]["oncpu_samples"].as_u64().unwrap() > 0,
        "{summary}"
    );
    // Every lost record is accounted for by a named counter.
    let probes = &summary["probes"];
    let detailed: u64 = probes["lost_detail"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with("stack_id_"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(detailed, probes["lost"].as_u64().unwrap(), "{probes}");
    for key in [
        "cpu_pct_avg",
        "cpu_pct_max",
        "rss_mb_avg",
        "rss_mb_max",
        "threads_max",
        "ctx_voluntary",
        "ctx_involuntary",
    ] {
        assert!(summary["resources"][key].is_number(), "resources.{key}");
    }
    for (name, path) in summary["artifacts"].as_object().unwrap() {
        assert!(dir.join(path.as_str().unwrap()).exists(), "artifact {name}");
    }
    let oncpu = read(dir, "oncpu.folded");
    assert!(
        oncpu.lines().any(&app_frame),
        "frames from the app's processes in:\n{}",
        &oncpu[..oncpu.len().min(2000)]
    );
    let html = read(dir, "report.html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    assert!(html.matches("<svg").count() >= 4, "inline charts");
    assert!(!html.contains("<script"));
    let run = json(dir, "run.json");
    assert!(run["client"]["cpu_user_s"].is_number());
    assert!(run["app"]["workers"].as_u64().unwrap() >= 1);
    // CPU figures are physically possible: never above 100% per CPU the app may use.
    let cap = 100.0 * run["app"]["app_cpus"].as_array().unwrap().len() as f64;
    assert!(
        summary["resources"]["cpu_pct_max"].as_f64().unwrap() <= cap,
        "{}",
        summary["resources"]
    );
    let csv = read(dir, "resources.csv");
    for row in csv.lines().skip(1) {
        let cpu: f64 = row.split(',').nth(3).unwrap().parse().unwrap();
        assert!(cpu <= cap, "resources.csv: {row}");
    }
    assert!(summary["interference"]["seconds"].is_array(), "{summary}");
    for file in [
        "latency.hgrm",
        "timeseries.csv",
        "resources.csv",
        "app.log",
        "report.md",
        "syscalls.json",
        "runqlat.json",
        "offcpu.svg",
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }
}

#[test]
fn profile_axum_end_to_end() {
    let _machine = exclusive();
    let out = results("axum");
    let output = profile(&["axum", "ping", "-d", "3s", "--warmup", "1s"], &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("ok/s") && stdout.contains("syscalls") && stdout.contains("run queue"),
        "{stdout}"
    );
    check_run(&run_dir(&out), |l| {
        l.starts_with("tokio-rt-worker;") || l.contains("axum")
    });
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

#[test]
fn profile_a_python_app_end_to_end() {
    let _machine = exclusive();
    // Run from a scratch folder with the default, relative `--out results`, as the quick
    // start does: the app must still get absolute paths (it runs in its own folder).
    let cwd = results("fastapi");
    std::fs::create_dir_all(&cwd).unwrap();
    let output = runner()
        .current_dir(&cwd)
        .args([
            "profile", "fastapi", "db-read", "-d", "3s", "--warmup", "1s", "-c", "16",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_run(&run_dir(&cwd.join("results")), |l| {
        l.starts_with("python") || l.contains("libpython") || l.contains("python3")
    });
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

#[test]
fn sigint_leaves_nothing_behind() {
    let _machine = exclusive();
    let before = bpf_program_ids();
    let out = results("interrupt");
    let mut child = runner()
        .args([
            "profile", "axum", "ping", "-d", "60s", "--warmup", "1s", "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the probes are attached (the load is running), then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    let new_programs = || {
        bpf_program_ids()
            .iter()
            .filter(|id| !before.contains(id))
            .count()
    };
    while Instant::now() < deadline && new_programs() < 9 {
        sleep(Duration::from_millis(200));
    }
    sleep(Duration::from_secs(1));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let dir = run_dir(&out);
    assert_eq!(json(&dir, "summary.json")["status"], "interrupted");
    let left = programs_left(&before);
    assert!(left.is_empty(), "BPF programs left behind: {left:?}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

/// The app stopped (SIGSTOP) for a second during the load: the run says it was disturbed,
/// and when.
#[test]
fn a_stopped_app_marks_the_run_as_disturbed_in_the_right_second() {
    use std::io::BufRead;
    let _machine = exclusive();
    let out = results("stopped");
    let mut child = runner()
        .args([
            "profile",
            "axum",
            "ping",
            "-d",
            "6s",
            "--warmup",
            "0",
            "--no-probes",
            "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("[4/7]") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "profile ended early"
        );
    }
    let drain = std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let loading = Instant::now();
    sleep(Duration::from_millis(2500));
    let pids: Vec<i32> = String::from_utf8(
        Command::new("pgrep")
            .args(["-f", "axum-app"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .lines()
    .map(|l| l.trim().parse().unwrap())
    .collect();
    assert!(!pids.is_empty(), "the app runs");
    let signal = |s| {
        for pid in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), s);
        }
    };
    let stopped_at = loading.elapsed().as_secs_f64();
    signal(nix::sys::signal::Signal::SIGSTOP);
    sleep(Duration::from_secs(1));
    signal(nix::sys::signal::Signal::SIGCONT);
    assert!(child.wait().unwrap().success());
    let _ = drain.join();
    let summary = json(&run_dir(&out), "summary.json");
    let i = &summary["interference"];
    assert_eq!(i["disturbed"], true, "{i:#}");
    let stalled: Vec<u64> = i["seconds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["marks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == "app_no_cpu")
        })
        .map(|s| s["second"].as_u64().unwrap())
        .collect();
    // The load starts a moment after the phase line: the stop falls in the second it began
    // or the next.
    let second = stopped_at.floor() as u64;
    assert!(
        !stalled.is_empty()
            && stalled
                .iter()
                .all(|s| (second.saturating_sub(1)..=second + 1).contains(s)),
        "stopped {stopped_at:.2}s into the load; marked {stalled:?}\n{i:#}"
    );
    assert!(
        i["findings"][0].as_str().is_some(),
        "the disturbance is worded\n{i:#}"
    );
}

#[test]
fn profile_refuses_an_unsupported_scenario_in_one_line() {
    let out = results("unsupported");
    let output = profile(&["axum", "no-such-scenario"], &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no scenario `no-such-scenario`"),
        "{stderr}"
    );
}

#[test]
fn report_html_renders_in_headless_chromium_without_console_errors() {
    let _machine = exclusive();
    let out = results("browser");
    let output = profile(&["axum", "json", "-d", "2s", "--warmup", "0"], &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = run_dir(&out);
    let shot = dir.join("screenshot.png");
    let browser = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,2400",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium-profile").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", dir.join("report.html").display()))
        .output()
        .expect("chromium runs (cargo xtask setup installs it)");
    let log = String::from_utf8_lossy(&browser.stderr);
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("Failed to load resource")
        })
        .collect();
    assert!(
        console_errors.is_empty(),
        "console errors:\n{}",
        console_errors.join("\n")
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(&png[1..4], b"PNG");
    // A blank page compresses to a few kB; four charts, tables and a flamegraph do not.
    assert!(
        png.len() > 60_000,
        "the screenshot looks empty: {} bytes",
        png.len()
    );
    let dom = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium-profile2").display()
        ))
        .arg(format!("file://{}", dir.join("report.html").display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.matches("<polyline").count() >= 4,
        "the charts are in the rendered page"
    );
}

#[test]
fn an_app_that_dies_mid_run_fails_the_run_and_keeps_its_log() {
    let _machine = exclusive();
    let out = results("dying");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dying-app/app.toml");
    let output = profile(
        &[
            manifest.to_str().unwrap(),
            "ping",
            "-d",
            "20s",
            "--warmup",
            "0",
            "-c",
            "4",
        ],
        &out,
    );
    assert!(
        !output.status.success(),
        "a run whose app died must not succeed"
    );
    let dir = run_dir(&out);
    let summary = json(&dir, "summary.json");
    assert_eq!(summary["status"], "failed");
    let failure = summary["failure"].as_str().unwrap();
    assert!(
        failure.contains("died") && failure.contains("exiting on purpose"),
        "{failure}"
    );
    assert!(
        summary["load"]["ok"].as_u64().unwrap() > 0,
        "partial results are kept"
    );
    assert!(read(&dir, "app.log").contains("exiting on purpose"));
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

#[test]
fn profile_without_root_says_why_in_one_line() {
    use std::os::unix::process::CommandExt;
    let output = runner()
        .args(["profile", "axum", "ping", "--out", "/tmp"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("needs root") && stderr.contains("--no-probes"),
        "{stderr}"
    );
}
