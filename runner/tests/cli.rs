//! What a user sees when the input is wrong or the privileges are missing: one clear line,
//! a nonzero exit, and nothing left attached.

mod common;

use std::os::unix::process::CommandExt;

use common::*;

fn fails_with(args: &[&str], expected: &str) {
    let output = runner().args(args).output().unwrap();
    assert!(!output.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line for {args:?}: {stderr}");
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
}

#[test]
fn bad_targets_get_one_line() {
    let _machine = exclusive();
    let before = bpf_program_ids();
    fails_with(
        &["probe", "--pid", "999999999"],
        "no process with PID 999999999",
    );
    fails_with(
        &["probe", "--cgroup", "/etc"],
        "/etc is not a cgroup directory",
    );
    fails_with(
        &[
            "probe",
            "-d",
            "1s",
            "--out",
            "/tmp/runner-bad-cmd",
            "--",
            "/no/such/command",
        ],
        "cannot start `/no/such/command`: No such file or directory",
    );
    fails_with(
        &["probe", "--freq", "0", "--", "true"],
        "--freq must be between 1 and 10000 Hz",
    );
    let left = programs_left(&before);
    assert!(left.is_empty(), "nothing left attached: {left:?}");
}

#[test]
fn without_privileges_probe_says_it_needs_root() {
    let output = runner()
        .args(["probe", "-d", "1s", "--out", "/tmp", "--", "true"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("needs root") && stderr.contains("BPF"),
        "{stderr}"
    );
}

#[test]
fn doctor_reports_every_check() {
    let output = runner().arg("doctor").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for check in [
        "privileges",
        "BTF",
        "tracefs",
        "cgroups",
        "perf_event_paranoid",
        "BPF build tools",
    ] {
        assert!(stdout.contains(check), "{check} in\n{stdout}");
    }
    assert!(output.status.success(), "this machine can probe:\n{stdout}");
}

#[test]
fn an_interpreter_not_found_is_refused_before_anything_starts() {
    for args in [
        &["profile", "flask", "ping", "--python", "3.99"][..],
        &["bench", "--apps", "flask", "--python", "3.11,3.99"][..],
    ] {
        let output = runner().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or("");
        assert!(
            first.contains("no CPython 3.99 here")
                && first.contains("/usr/bin")
                && first.contains("pyenv install 3.99"),
            "{args:?}: {stderr}"
        );
    }
}
