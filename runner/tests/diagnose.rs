//! `runner diagnose` on the labelled suite (the async apps' blocking scenarios and clean
//! controls) at 1, 10 and 64 connections, on sync apps, on anti-patterns the suite lacks (a
//! plain-asyncio app launched with `--` on every CPython found here, and watched by `--pid`),
//! and the diagnosis section of `runner profile`. Clean endpoints are never flagged at any
//! concurrency; blocking ones always are, with the line.

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
    assert_eq!(d["schema"], "runner.diagnosis/v2");
    // The app's CPU per response is measured, and no more than every CPU busy for the window.
    let cpus = std::thread::available_parallelism().unwrap().get() as f64;
    for e in d["entries"].as_array().unwrap() {
        if e["rps"].as_f64().unwrap() > 0.0 {
            let cpu_us = e["cpu_us_per_request"].as_f64().unwrap_or(0.0);
            let share = cpu_us * e["rps"].as_f64().unwrap() / 1e6;
            assert!(
                cpu_us > 0.0 && share <= cpus * 1.05,
                "CPU per response: {e:#}"
            );
        }
    }
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

/// The connection counts every verdict is checked at.
const CONCURRENCIES: [u32; 3] = [1, 10, 64];

/// The entry of `target` loaded with `c` connections (`-c 1,10,64` labels them `... c=N`).
fn entry_at<'a>(d: &'a Value, target: &str, c: u32) -> &'a Value {
    let suffix = format!(" c={c}");
    d["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            let t = e["target"].as_str().unwrap();
            t.starts_with(target) && t.ends_with(&suffix)
        })
        .unwrap_or_else(|| panic!("no entry for {target} at c={c}: {d}"))
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
    let mut args = vec![app, "-d", "2s", "--warmup", "500ms", "-c", "1,10,64"];
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
        for c in CONCURRENCIES {
            let e = entry_at(&d, &format!("{s} "), c);
            assert_eq!(e["event_loop"], true, "{app} {s} c={c}: an event loop\n{e}");
            let blocking = s.contains("blocking");
            let flagged = e["flagged"].as_bool().unwrap();
            report.push(format!("{s} c={c}: {}", e["verdict"]));
            assert_eq!(flagged, blocking, "{app} {s} c={c}: flagged\n{e:#}");
            let verdict = e["verdict"].as_str().unwrap();
            let expected: &[&str] = if blocking {
                &["flagged"]
            } else {
                &["ok", "saturated"]
            };
            assert!(
                expected.contains(&verdict),
                "{app} {s} c={c}: verdict {verdict}\n{e:#}"
            );
            if !blocking {
                continue;
            }
            let worst = &e["culprits"][0];
            let syscall = worst["syscall"].as_str().unwrap_or("cpu");
            let (file, line) = frame_line(worst["frame"].as_str().unwrap())
                .unwrap_or_else(|| panic!("{app} {s} c={c}: a Python frame\n{worst:#}"));
            assert_eq!(file, "app.py", "{app} {s} c={c}: {worst:#}");
            let expected = if s == "sleep-blocking" {
                assert_eq!(syscall, "clock_nanosleep", "{app} {s} c={c}: {worst:#}");
                line_of(&source, &["time.sleep(SLEEP_S)", "# BLOCKING"])
            } else {
                assert!(
                    SQLITE_SYSCALLS.contains(&syscall),
                    "{app} {s} c={c}: a sqlite syscall, not {syscall}\n{worst:#}"
                );
                let query = if s.ends_with("read") {
                    "SQLITE_READ"
                } else {
                    "SQLITE_WRITE"
                };
                line_of(&source, &[query, "# BLOCKING"])
            };
            assert_eq!(
                line, expected,
                "{app} {s} c={c}: the handler's line\n{worst:#}"
            );
            assert!(e["advice"].as_str().is_some_and(|a| !a.is_empty()));
        }
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

/// The CPython interpreters found here: Debian's (stripped) and pyenv's 3.12 and 3.13 (with
/// symbols), each with its version.
fn pythons() -> Vec<(String, std::path::PathBuf)> {
    let mut found = vec![("3.11 (Debian)".to_string(), "/usr/bin/python3".into())];
    for v in ["3.12", "3.13"] {
        let dir = Path::new("/root/.pyenv/versions");
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut versions: Vec<_> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{v}.")) && !n.ends_with('t'))
            .collect();
        versions.sort();
        if let Some(newest) = versions.last() {
            found.push((newest.clone(), dir.join(newest).join("bin/python3")));
        }
    }
    found
}

/// An endpoint of async_app.py and what the diagnosis must say of it: `None` for a clean
/// endpoint; else the cause, a needle of the advice, and the culprit's line (the line
/// marked `# BLOCKING: name`, or inside the function named).
struct Expect {
    path: &'static str,
    blocking: Option<(&'static str, &'static str, Line)>,
}

enum Line {
    Marked(&'static str),
    InFunction(&'static str),
    /// A culprit among the listed ones is this syscall at the marked line.
    Call(&'static str, &'static str),
}

const ANTI_PATTERNS: [Expect; 11] = [
    Expect {
        path: "/ok",
        blocking: None,
    },
    Expect {
        path: "/fast",
        blocking: None,
    },
    Expect {
        path: "/offload",
        blocking: None,
    },
    Expect {
        path: "/cpu",
        blocking: Some(("cpu", "process pool", Line::InFunction("burn_cpu"))),
    },
    Expect {
        path: "/json",
        blocking: Some(("cpu", "JSON", Line::Marked("json"))),
    },
    Expect {
        path: "/fetch",
        blocking: Some(("blocking", "HTTP client", Line::Marked("fetch"))),
    },
    Expect {
        path: "/file",
        blocking: Some(("blocking", "fsync", Line::Call("fsync", "file"))),
    },
    Expect {
        path: "/read",
        blocking: Some(("blocking", "file I/O", Line::Marked("read"))),
    },
    Expect {
        path: "/subprocess",
        blocking: Some((
            "blocking",
            "create_subprocess_exec",
            Line::Marked("subprocess"),
        )),
    },
    Expect {
        path: "/select",
        blocking: Some(("blocking", "select", Line::Marked("select"))),
    },
    Expect {
        path: "/lock",
        blocking: Some(("lock", "asyncio.Lock", Line::Marked("lock"))),
    },
];

/// The blocking endpoints of async_app.py are flagged with the right cause, advice and line,
/// and its clean ones are not, at 1, 10 and 64 connections, on every CPython here.
#[test]
fn anti_patterns_on_every_python_at_every_concurrency() {
    let _machine = exclusive();
    let app = async_app();
    let text = std::fs::read_to_string(&app).unwrap();
    let marked = |name: &str| line_of(&app, &[&format!("# BLOCKING: {name}")]);
    let mut ran = Vec::new();
    for (version, python) in pythons() {
        let port = free_port().to_string();
        let urls: Vec<String> = ANTI_PATTERNS
            .iter()
            .map(|e| format!("http://127.0.0.1:{port}{}", e.path))
            .collect();
        let mut args = vec!["-d", "2s", "--warmup", "500ms", "-c", "1,10,64"];
        for u in &urls {
            args.extend(["--url", u]);
        }
        args.extend(["--", python.to_str().unwrap(), app.to_str().unwrap(), &port]);
        let out = out_dir(&format!("diagnose-anti-{}", version.replace(' ', "-")));
        let d = diagnose(&out, &args);
        for (expect, url) in ANTI_PATTERNS.iter().zip(&urls) {
            for c in CONCURRENCIES {
                let e = entry_at(&d, url, c);
                let at = format!("{version} {} c={c}", expect.path);
                assert_eq!(e["event_loop"], true, "{at}: an event loop\n{e:#}");
                let Some((cause, advice, line)) = &expect.blocking else {
                    assert_eq!(e["flagged"], false, "{at}: clean\n{e:#}");
                    continue;
                };
                assert_eq!(e["flagged"], true, "{at}: flagged\n{e:#}");
                assert_eq!(e["verdict"], "flagged", "{at}");
                assert!(
                    e["advice"].as_str().unwrap().contains(advice),
                    "{at}: advice\n{e:#}"
                );
                let culprits = e["culprits"].as_array().unwrap();
                let named = |c: &Value| frame_line(c["frame"].as_str().unwrap());
                match line {
                    Line::Call(syscall, mark) => assert!(
                        culprits.iter().any(|c| c["syscall"] == *syscall
                            && named(c).map(|(_, l)| l) == Some(marked(mark))),
                        "{at}: {syscall} at line {}\n{e:#}",
                        marked(mark)
                    ),
                    Line::Marked(mark) => {
                        let worst = &culprits[0];
                        assert_eq!(worst["cause"], *cause, "{at}\n{worst:#}");
                        assert_eq!(
                            named(worst),
                            Some(("async_app.py".to_string(), marked(mark))),
                            "{at}\n{worst:#}"
                        );
                    }
                    Line::InFunction(function) => {
                        let worst = &culprits[0];
                        assert_eq!(worst["cause"], *cause, "{at}\n{worst:#}");
                        let def = line_of(&app, &[&format!("def {function}(")]);
                        let end = def
                            + text
                                .lines()
                                .skip(def as usize)
                                .take_while(|l| l.starts_with("    "))
                                .count() as u64;
                        let frame = worst["frame"].as_str().unwrap();
                        let (_, l) = named(worst).unwrap_or_else(|| panic!("{at}: {frame}"));
                        assert!(
                            frame.starts_with(&format!("{function} (")) && (def..=end).contains(&l),
                            "{at}\n{worst:#}"
                        );
                    }
                }
            }
        }
        ran.push(version);
    }
    eprintln!("anti-patterns checked on CPython {ran:?}");
}

/// A process runner did not start (on CPython 3.12 when pyenv has it), watched by pid.
#[test]
fn watches_a_running_process_by_pid() {
    let _machine = exclusive();
    let port = free_port().to_string();
    let (version, python) = pythons()
        .into_iter()
        .find(|(v, _)| v.starts_with("3.12"))
        .unwrap_or_else(|| pythons().remove(0));
    let app = Background::spawn(Command::new(&python).arg(async_app()).arg(&port));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the app did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = app.pid().to_string();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let (fast, read, lock) = (url("/fast"), url("/read"), url("/lock"));
    let out = out_dir("diagnose-pid");
    let d = diagnose(
        &out,
        &[
            "--pid", &pid, "--url", &fast, "--url", &read, "--url", &lock, "-d", "2s", "-c", "64",
        ],
    );
    let e = entry(&d, &fast);
    assert_eq!(e["flagged"], false, "{version}: {e:#}");
    assert_eq!(e["loop_threads"][0]["pid"].as_u64(), Some(app.pid() as u64));
    let app_file = async_app();
    for (url, mark) in [(&read, "read"), (&lock, "lock")] {
        let e = entry(&d, url);
        assert_eq!(e["flagged"], true, "{version} {url}: {e:#}");
        assert_eq!(
            frame_line(e["culprits"][0]["frame"].as_str().unwrap()).map(|(_, l)| l),
            Some(line_of(&app_file, &[&format!("# BLOCKING: {mark}")])),
            "{version} {url}: {e:#}"
        );
    }
}

/// The quick start's kind of run: a fast endpoint at high concurrency saturates the loop; the
/// verdict says so, with the utilisation, and does not flag it.
#[test]
fn a_saturated_loop_is_reported_as_saturated_not_blocked() {
    let _machine = exclusive();
    let out = out_dir("profile-saturated");
    let output = runner()
        .args([
            "profile", "fastapi", "ping", "-c", "64", "-d", "3s", "--warmup", "1s", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let run = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("summary.json").exists())
        .unwrap();
    let d = &json(&run, "summary.json")["diagnosis"];
    assert_eq!(d["flagged"], false, "{d:#}");
    assert_eq!(d["verdict"], "saturated", "{d:#}");
    assert!(d["busy_pct"].as_f64().unwrap() >= 80.0, "{d:#}");
    assert!(
        stdout.contains("saturated, not blocked (loop busy"),
        "the terminal says saturated:\n{stdout}"
    );
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
