//! `runner diagnose` on the labelled suite (the async apps' blocking scenarios), on sync apps,
//! on anti-patterns the suite lacks (a plain-asyncio app launched with `--` and watched by
//! `--pid`), and the diagnosis section of `runner profile`.

mod common;

use std::{path::Path, process::Command, time::Duration};

use common::*;
use serde_json::Value;

const SUITE: [&str; 10] = [
    "ping",
    "sleep-async",
    "sleep-threadpool",
    "sleep-blocking",
    "sqlite-async-read",
    "sqlite-threadpool-read",
    "sqlite-blocking-read",
    "sqlite-async-write",
    "sqlite-threadpool-write",
    "sqlite-blocking-write",
];

/// Syscalls sqlite3 makes for a query or a commit.
const SQLITE_SYSCALLS: [&str; 6] = [
    "fcntl",
    "pread64",
    "pwrite64",
    "fdatasync",
    "fsync",
    "flock",
];

/// Runs `runner diagnose ARGS --out DIR` and returns diagnosis.json.
fn diagnose(out: &Path, args: &[&str]) -> Value {
    let _ = std::fs::remove_dir_all(out);
    let output = runner()
        .arg("diagnose")
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "runner diagnose {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("diagnosis.json").exists())
        .expect("a diagnosis folder");
    assert!(dir.join("diagnosis.md").exists());
    let d = json(&dir, "diagnosis.json");
    assert_eq!(d["schema"], "runner.diagnosis/v1");
    d
}

fn entry<'a>(d: &'a Value, target: &str) -> &'a Value {
    d["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target"].as_str().unwrap().starts_with(target))
        .unwrap_or_else(|| panic!("no entry for {target}: {d}"))
}

/// 1-based number of the line of `file` containing every one of `needles`.
fn line_of(file: &Path, needles: &[&str]) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .position(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("{needles:?} not in {}", file.display())) as u64
        + 1
}

/// The line number in a culprit frame `qualname (file.py:LINE)`.
fn frame_line(frame: &str) -> Option<(String, u64)> {
    let (_, rest) = frame.rsplit_once(" (")?;
    let (file, line) = rest.strip_suffix(')')?.rsplit_once(':')?;
    Some((file.to_string(), line.parse().ok()?))
}

fn suite_app(app: &str) {
    let _machine = exclusive();
    let mut args = vec![app, "-d", "2s", "--warmup", "500ms"];
    for s in SUITE {
        args.extend(["--scenario", s]);
    }
    let out = out_dir(&format!("diagnose-{app}"));
    let d = diagnose(&out, &args);
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../apps")
        .join(app)
        .join("app.py");
    let mut report = Vec::new();
    for s in SUITE {
        let e = entry(&d, s);
        assert_eq!(e["event_loop"], true, "{app} {s}: an event loop\n{e}");
        let blocking = s.contains("blocking");
        let flagged = e["flagged"].as_bool().unwrap();
        report.push(format!("{s}: flagged {flagged}"));
        assert_eq!(flagged, blocking, "{app} {s}: flagged\n{e:#}");
        if !blocking {
            continue;
        }
        let worst = &e["culprits"][0];
        let syscall = worst["syscall"].as_str().unwrap_or("cpu");
        let (file, line) = frame_line(worst["frame"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{app} {s}: a Python frame\n{worst:#}"));
        assert_eq!(file, "app.py", "{app} {s}: {worst:#}");
        let expected = if s == "sleep-blocking" {
            assert_eq!(syscall, "clock_nanosleep", "{app} {s}: {worst:#}");
            line_of(&source, &["time.sleep(SLEEP_S)", "# BLOCKING"])
        } else {
            assert!(
                SQLITE_SYSCALLS.contains(&syscall),
                "{app} {s}: a sqlite syscall, not {syscall}\n{worst:#}"
            );
            let query = if s.ends_with("read") {
                "SQLITE_READ"
            } else {
                "SQLITE_WRITE"
            };
            line_of(&source, &[query, "# BLOCKING"])
        };
        assert_eq!(line, expected, "{app} {s}: the handler's line\n{worst:#}");
        assert!(e["advice"].as_str().is_some_and(|a| !a.is_empty()));
    }
    eprintln!("{app}: {report:?}");
}

#[test]
fn suite_fastapi() {
    suite_app("fastapi");
}

#[test]
fn suite_aquilia() {
    suite_app("aquilia");
}

#[test]
fn suite_sanic() {
    suite_app("sanic");
}

#[test]
fn suite_tornado() {
    suite_app("tornado");
}

#[test]
fn sync_frameworks_have_no_event_loop() {
    let _machine = exclusive();
    for app in ["flask", "django"] {
        let out = out_dir(&format!("diagnose-{app}"));
        let d = diagnose(
            &out,
            &[
                app,
                "--scenario",
                "sleep-blocking",
                "--scenario",
                "ping",
                "-d",
                "2s",
                "--warmup",
                "0",
            ],
        );
        for e in d["entries"].as_array().unwrap() {
            assert_eq!(e["event_loop"], false, "{app}: {e:#}");
            assert_eq!(e["flagged"], false, "{app}: {e:#}");
        }
    }
}

fn async_app() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/async_app.py")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn anti_patterns_beyond_the_suite_in_a_launched_app() {
    let _machine = exclusive();
    let port = free_port().to_string();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let (ok, cpu, fetch, file) = (url("/ok"), url("/cpu"), url("/fetch"), url("/file"));
    let app = async_app();
    let out = out_dir("diagnose-command");
    let d = diagnose(
        &out,
        &[
            "-d",
            "2s",
            "--warmup",
            "0",
            "--url",
            &ok,
            "--url",
            &cpu,
            "--url",
            &fetch,
            "--url",
            &file,
            "--",
            "/usr/bin/python3",
            app.to_str().unwrap(),
            &port,
        ],
    );
    let e = entry(&d, &ok);
    assert_eq!(
        (e["event_loop"].as_bool(), e["flagged"].as_bool()),
        (Some(true), Some(false)),
        "{e:#}"
    );
    // CPU-heavy work inside an async handler: CPU-bound stalls in burn_cpu.
    let e = entry(&d, &cpu);
    let worst = &e["culprits"][0];
    assert_eq!(e["flagged"], true, "{e:#}");
    assert_eq!(worst["cause"], "cpu", "{worst:#}");
    let (_, line) = frame_line(worst["frame"].as_str().unwrap()).unwrap();
    let def = line_of(&app, &["def burn_cpu"]);
    assert!(
        worst["frame"].as_str().unwrap().starts_with("burn_cpu (")
            && (def..def + 6).contains(&line),
        "{worst:#}"
    );
    assert!(e["cpu_bound_pct"].as_f64().unwrap() > 50.0, "{e:#}");
    // A blocking HTTP client call: blocked in network I/O, named by the handler's line.
    let e = entry(&d, &fetch);
    let worst = &e["culprits"][0];
    assert_eq!(e["flagged"], true, "{e:#}");
    assert_eq!(worst["cause"], "syscall", "{worst:#}");
    assert_eq!(
        frame_line(worst["frame"].as_str().unwrap()).unwrap().1,
        line_of(&app, &["urllib.request.urlopen(SLOW_URL"]),
        "{worst:#}"
    );
    assert!(e["blocked_pct"].as_f64().unwrap() > 50.0, "{e:#}");
    // fsync in the handler.
    let e = entry(&d, &file);
    assert_eq!(e["flagged"], true, "{e:#}");
    assert!(
        e["culprits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["syscall"] == "fsync"
                && c["frame"].as_str().unwrap().starts_with("handle_file (")),
        "{e:#}"
    );
}

#[test]
fn watches_a_running_process_by_pid() {
    let _machine = exclusive();
    let port = free_port().to_string();
    let app = Background::spawn(Command::new("/usr/bin/python3").arg(async_app()).arg(&port));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the app did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = app.pid().to_string();
    let ok = format!("http://127.0.0.1:{port}/ok");
    let cpu = format!("http://127.0.0.1:{port}/cpu");
    let out = out_dir("diagnose-pid");
    let d = diagnose(
        &out,
        &[
            "--pid", &pid, "--url", &ok, "--url", &cpu, "-d", "2s", "--warmup", "0",
        ],
    );
    assert_eq!(entry(&d, &ok)["flagged"], false, "{d:#}");
    let e = entry(&d, &cpu);
    assert_eq!(e["flagged"], true, "{e:#}");
    assert_eq!(e["loop_threads"][0]["pid"].as_u64(), Some(app.pid() as u64));
}

#[test]
fn profile_carries_the_diagnosis_and_the_stall_flamegraph() {
    let _machine = exclusive();
    let out = out_dir("profile-diagnosis");
    let _ = std::fs::remove_dir_all(&out);
    let output = runner()
        .args([
            "profile",
            "sanic",
            "sleep-blocking",
            "-d",
            "3s",
            "--warmup",
            "0",
            "-c",
            "8",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("summary.json").exists())
        .unwrap();
    let summary = json(&run, "summary.json");
    let d = &summary["diagnosis"];
    assert_eq!(d["flagged"], true, "{d:#}");
    assert_eq!(d["culprits"][0]["syscall"], "clock_nanosleep", "{d:#}");
    let stalls = read(&run, "stalls.folded");
    assert!(
        folded_sum(&stalls, |s| s.contains("sleep_blocking (app.py:")) > 0,
        "{stalls}"
    );
    assert!(run.join("stalls.svg").exists());
    let md = read(&run, "report.md");
    assert!(
        md.contains("## Event loop") && md.contains("clock_nanosleep"),
        "{md}"
    );
}
