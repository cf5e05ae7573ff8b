//! runner under faults, as a demanding user tries it: killed in each phase (SIGKILL, SIGHUP,
//! Ctrl-C), twin runs, private folders, bogus CPUs, runs with no correct response, a memory
//! limit that kills the app, sudo ownership, droppings of other commands. Each test asserts on
//! what is left on the machine and on what runner said.

mod common;

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use common::*;
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

fn fresh(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("faults")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What runner process `pid` may have left on the machine: its database and app processes,
/// its cgroups, its scratch folders, and partial results in `out`.
fn leftovers(pid: u32, out: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let scratch = format!("runner-{pid}-");
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&scratch) {
                found.push(format!("folder /tmp/{name}"));
            }
        }
    }
    let ps = Command::new("pgrep")
        .args(["-a", "-f", &scratch])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&ps.stdout).lines() {
        found.push(format!("process {line}"));
    }
    // Orphans that name the folder nowhere in their arguments (initdb's bootstrap backend).
    let tmp = std::env::temp_dir()
        .join(&scratch)
        .to_string_lossy()
        .into_owned();
    for proc in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cwd) = std::fs::read_link(proc.path().join("cwd")) {
            if cwd.to_string_lossy().starts_with(&tmp) {
                let pid = proc.file_name().to_string_lossy().into_owned();
                found.push(format!("process {pid} working in {}", cwd.display()));
            }
        }
    }
    let suffix = format!("-{pid}");
    for root in [
        runner::cgroup::v2_root().unwrap(),
        PathBuf::from("/sys/fs/cgroup/memory"),
    ] {
        let Ok(walk) = Command::new("find")
            .arg(&root)
            .args(["-maxdepth", "4", "-type", "d", "-name", "runner-*"])
            .output()
        else {
            continue;
        };
        for dir in String::from_utf8_lossy(&walk.stdout).lines() {
            if dir.ends_with(&suffix) {
                found.push(format!("cgroup {dir}"));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".partial") {
                found.push(format!("partial results {name}"));
            }
        }
    }
    found
}

/// SIGKILL in each phase of a profile with a database: the next runner start cleans up all
/// of it, and keeps the partial results marked abandoned.
#[test]
fn a_killed_profile_leaves_nothing_after_the_next_start() {
    let _machine = exclusive();
    for (phase, marker, after) in [
        ("start", "starting PostgreSQL", Duration::from_millis(300)),
        ("warm-up", "[3/7]", Duration::from_millis(500)),
        ("load", "[4/7]", Duration::from_secs(2)),
    ] {
        let out = fresh(&format!("killed-{phase}"));
        let (mut child, rest) = start_until(
            &[
                "profile",
                "fastapi",
                "db-read",
                "-d",
                "30s",
                "--warmup",
                "5s",
                "--out",
                out.to_str().unwrap(),
            ],
            marker,
        );
        sleep(after);
        let pid = child.id();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        let _ = rest.join();
        let before = leftovers(pid, &out);
        assert!(
            !before.is_empty(),
            "{phase}: a SIGKILL leaves something for the next start to clean"
        );
        // The next start, whatever the command.
        let next = runner().arg("doctor").output().unwrap();
        let said = String::from_utf8_lossy(&next.stderr);
        assert!(
            said.contains(&format!("pid {pid}")),
            "{phase}: the next start says what it cleaned:\n{said}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !leftovers(pid, &out).is_empty() && Instant::now() < deadline {
            sleep(Duration::from_millis(200));
        }
        assert_eq!(
            leftovers(pid, &out),
            Vec::<String>::new(),
            "{phase}: left after the next start (before it: {before:?})"
        );
        if phase != "start" {
            let abandoned: Vec<_> = std::fs::read_dir(&out)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".abandoned"))
                .collect();
            assert_eq!(abandoned.len(), 1, "{phase}: the partial results are kept");
            assert!(abandoned[0].path().join("ABANDONED").exists());
        }
    }
}

/// A closed terminal (SIGHUP) stops a run cleanly, as Ctrl-C does.
#[test]
fn sighup_stops_cleanly_and_leaves_nothing() {
    let _machine = exclusive();
    let out = fresh("sighup");
    let (mut child, rest) = start_until(
        &[
            "profile",
            "fastapi",
            "db-read",
            "-d",
            "30s",
            "--warmup",
            "0",
            "--out",
            out.to_str().unwrap(),
        ],
        "[4/7]",
    );
    sleep(Duration::from_secs(2));
    let pid = child.id();
    kill(Pid::from_raw(pid as i32), Signal::SIGHUP).unwrap();
    let status = child.wait().unwrap();
    let said = rest.join().unwrap();
    assert_eq!(status.code(), Some(130), "{said}");
    assert_eq!(leftovers(pid, &out), Vec::<String>::new());
    let run = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("summary.json").exists())
        .expect("the results are written");
    assert_eq!(json(&run.path(), "summary.json")["status"], "interrupted");
}

/// Ctrl-C before the load begins measures nothing and keeps nothing; exit 130.
#[test]
fn ctrl_c_before_the_load_measures_nothing() {
    let _machine = exclusive();
    let out = fresh("ctrl-c-warmup");
    let (mut child, rest) = start_until(
        &[
            "profile",
            "axum",
            "ping",
            "-d",
            "5s",
            "--warmup",
            "30s",
            "--no-probes",
            "--out",
            out.to_str().unwrap(),
        ],
        "[3/7]",
    );
    sleep(Duration::from_millis(500));
    let pid = child.id();
    kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    let said = rest.join().unwrap();
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("nothing was measured"), "{said}");
    assert!(!said.contains("ok/s"), "no figures of a cold app:\n{said}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing kept");
    assert_eq!(leftovers(pid, &out), Vec::<String>::new());
}

/// Two runs started in the same second get their own folders; both finish.
#[test]
fn twin_runs_in_the_same_second_both_finish() {
    let _machine = exclusive();
    let out = fresh("twins");
    let args = [
        "profile",
        "axum",
        "ping",
        "-d",
        "2s",
        "--warmup",
        "0",
        "--no-probes",
        "--out",
    ];
    let spawn = || {
        runner()
            .args(args)
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let runs: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("summary.json").exists())
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    // The second to start is told the first holds the same CPUs.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(said.contains("another runner (pid"), "{said}");
}

/// The app's writable state does not live in `--out`: a private output folder (and a private
/// working folder) still works, database included.
#[test]
fn a_private_output_folder_still_works() {
    use std::os::unix::fs::PermissionsExt;
    let _machine = exclusive();
    let out = fresh("private");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o700)).unwrap();
    for (app, scenario) in [("aquilia", "ping"), ("fastapi", "db-read")] {
        let output = runner()
            .current_dir(&out)
            .args([
                "profile",
                app,
                scenario,
                "-d",
                "2s",
                "--warmup",
                "0",
                "--no-probes",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{app} {scenario}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// What the machine cannot honour is refused in one line; what distorts is warned about.
#[test]
fn bogus_cpus_and_workers_are_refused() {
    let online = runner::host::online_cpus().len();
    let missing = (online + 5).to_string();
    for args in [
        vec!["profile", "axum", "ping", "--app-cpus", missing.as_str()],
        vec!["profile", "axum", "ping", "--client-cpus", missing.as_str()],
        vec!["load", "http://127.0.0.1:1/", "--cpus", missing.as_str()],
        vec!["profile", "axum", "ping", "--workers", "0"],
        vec!["load", "http://127.0.0.1:0/"],
        vec!["load", "http://127.0.0.1:99999/"],
        vec!["load", "http://127.0.0.1:1/", "--max-error-rate", "150"],
    ] {
        let o = runner().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} must be refused");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line:\n{err}");
    }
}

/// A run without a single correct response failed, whatever else happened.
#[test]
fn a_run_with_only_errors_fails() {
    let _machine = exclusive();
    let out = fresh("all-errors");
    let output = runner()
        .args([
            "profile",
            "axum",
            "--url",
            "/nope",
            "-d",
            "2s",
            "--warmup",
            "0",
            "--no-probes",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let run = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let summary = json(&run, "summary.json");
    assert_eq!(summary["status"], "failed");
    assert!(
        summary["failure"]
            .as_str()
            .unwrap()
            .contains("no correct response"),
        "{summary}"
    );
}

/// An app the memory limit kills is said to be, and its log is kept where runner says.
#[test]
fn a_memory_limit_that_kills_the_app_is_named() {
    let _machine = exclusive();
    let out = fresh("memory");
    let output = runner()
        .args([
            "profile",
            "fastapi",
            "ping",
            "--memory",
            "1KiB",
            "--warmup",
            "0",
            "--no-probes",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("memory limit (1 KiB"), "{err}");
    let kept = err
        .lines()
        .find_map(|l| l.strip_prefix("runner: the app's log is kept at "))
        .unwrap_or_else(|| panic!("the log is named:\n{err}"));
    assert!(Path::new(kept.trim()).exists(), "{kept}");
}

/// Under sudo, what runner makes belongs to the invoking user.
#[test]
fn under_sudo_results_belong_to_the_invoking_user() {
    let _machine = exclusive();
    let out = fresh("sudo").join("made-by-runner");
    let json_out = out.with_file_name("load.json");
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    drop(server);
    let o = runner()
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .args([
            "profile",
            "axum",
            "ping",
            "-d",
            "1s",
            "--warmup",
            "0",
            "--no-probes",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = runner()
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .args([
            "load",
            &format!("http://127.0.0.1:{port}/"),
            "-d",
            "1s",
            "--json",
        ])
        .arg(&json_out)
        .output()
        .unwrap();
    let mut made = vec![out.clone(), json_out];
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        made.push(e.path());
        for f in std::fs::read_dir(e.path()).unwrap().flatten() {
            made.push(f.path());
        }
    }
    for path in made {
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (65534, 65534),
            "{}",
            path.display()
        );
    }
}

/// Other commands leave nothing behind either: diagnose of an app, a failing verify, a probe
/// of a command that does not exist (which says why once).
#[test]
fn other_commands_leave_no_droppings() {
    let _machine = exclusive();
    let out = fresh("droppings");
    let o = runner()
        .args([
            "diagnose",
            "axum",
            "--scenario",
            "ping",
            "-d",
            "1s",
            "--warmup",
            "0",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "only the diagnosis: {names:?}");
    let broken = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken-app/app.toml");
    let o = runner().arg("verify").arg(&broken).output().unwrap();
    assert!(!o.status.success());
    let verify_left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("runner-verify-")
        })
        .collect();
    assert!(verify_left.is_empty(), "{verify_left:?}");
    let probe_out = out.join("probe");
    let o = runner()
        .args(["probe", "--out"])
        .arg(&probe_out)
        .args(["--", "/no/such/command"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(
        !probe_out.exists(),
        "no empty folder for a command that never ran"
    );
}
