//! The four probes, loaded into the real kernel and checked against workloads whose
//! behaviour is known. Each assertion fails if its probe records the wrong thing.

mod common;

use std::{
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use common::*;
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

#[test]
fn oncpu_splits_samples_between_two_functions() {
    let _machine = exclusive();
    let burn = workload("burn");
    let out = out_dir("oncpu");
    probe(
        &out,
        &[
            "--freq",
            "499",
            "-d",
            "20s",
            "--",
            burn.to_str().unwrap(),
            "3",
        ],
    );
    let folded = read(&out, "oncpu.folded");
    let major = folded_sum(&folded, |s| s.contains("burn_major"));
    let minor = folded_sum(&folded, |s| s.contains("burn_minor"));
    assert!(
        major + minor > 800,
        "too few samples: {major} + {minor}\n{folded}"
    );
    let share = major as f64 / (major + minor) as f64;
    assert!(
        (0.65..=0.85).contains(&share),
        "burn_major share {share:.2} ({major}/{minor})"
    );
    assert!(
        folded
            .lines()
            .any(|l| l.starts_with("burn;") && l.contains(";main;burn_major")),
        "main -> burn_major under comm burn:\n{folded}"
    );
    let svg = read(&out, "oncpu.svg");
    assert!(svg.contains("burn_major") && svg.contains("samples"));
    let probe = json(&out, "probe.json");
    assert_eq!(probe["target"]["command_exit_status"], 0);
    assert!(probe["oncpu_samples"].as_u64().unwrap() >= major + minor);
}

#[test]
fn thousands_of_distinct_stacks_are_all_kept() {
    // 4096 call paths sampled at 999 Hz: a few thousand distinct user stacks, which a
    // bucket-hashed stack map of 65,536 entries loses to collisions (about n^2 / 131,072).
    let _machine = exclusive();
    let branches = workload("branches");
    let out = out_dir("branches");
    probe(
        &out,
        &[
            "--freq",
            "999",
            "-d",
            "20s",
            "--",
            branches.to_str().unwrap(),
            "8",
        ],
    );
    let folded = read(&out, "oncpu.folded");
    let paths: std::collections::HashSet<&str> = folded
        .lines()
        .filter(|l| l.starts_with("branches;") && l.contains(";main;step;"))
        .filter_map(|l| l.rsplit_once(' ').map(|(stack, _)| stack))
        .collect();
    assert!(
        paths.len() >= 2000,
        "only {} distinct stacks through step\n{folded}",
        paths.len()
    );
    let probe = json(&out, "probe.json");
    let events = &probe["events"];
    for reason in [
        "stack_id_collisions",
        "stack_id_map_full",
        "stack_id_other_errors",
    ] {
        assert_eq!(events[reason], 0, "{reason}: {probe}");
    }
    let lost = &probe["lost"];
    assert!(
        lost["oncpu_user_stack_lost"].as_u64().unwrap()
            <= events["stack_id_faults"].as_u64().unwrap(),
        "user stacks lost for reasons other than faults: {probe}"
    );
}

#[test]
fn offcpu_charges_sleep_time_to_the_nanosleep_stack() {
    let _machine = exclusive();
    let naps = workload("naps");
    let out = out_dir("offcpu");
    probe(&out, &["-d", "20s", "--", naps.to_str().unwrap()]);
    let folded = read(&out, "offcpu.folded");
    // libc's clock_nanosleep has no frame pointer, so frame-pointer unwinding skips its
    // caller (nap_delta): the stack reads main -> clock_nanosleep -> kernel nanosleep.
    let slept_us = folded_sum(&folded, |s| {
        s.starts_with("naps;")
            && s.contains(";main;")
            && s.contains("clock_nanosleep;")
            && s.contains("do_nanosleep_[k]")
    });
    let expected = 1_000_000.0;
    assert!(
        (slept_us as f64 - expected).abs() <= 0.15 * expected,
        "off-CPU under nap_delta/nanosleep: {slept_us} us, expected 1 s +-15%\n{folded}"
    );
    let svg = read(&out, "offcpu.svg");
    assert!(svg.contains("Off-CPU time (microseconds)"));
    assert!(svg.contains(" us, "), "weights in microseconds");
    let probe = json(&out, "probe.json");
    assert!(probe["offcpu"]["blocked_us"].as_u64().unwrap() >= slept_us);
}

#[test]
fn syscalls_count_exactly_and_only_the_target() {
    let _machine = exclusive();
    let getppid = workload("getppid");
    let outsider = Background::spawn(&mut Command::new(workload("outsider")));
    let out = out_dir("syscalls");
    probe(
        &out,
        &["-d", "20s", "--", getppid.to_str().unwrap(), "200000"],
    );
    let report = json(&out, "syscalls.json");
    let count = report["syscalls"]["getppid"]["count"].as_u64().unwrap();
    assert!(
        (198_000..=202_000).contains(&count),
        "getppid count {count}, expected 200000 +-1%"
    );
    assert_eq!(report["syscalls"]["getppid"]["errors"], 0);
    assert!(report["syscalls"]["getppid"]["total_us"].as_f64().unwrap() > 0.0);
    let processes = report["processes"].as_object().unwrap();
    assert!(
        !processes.contains_key(&outsider.pid().to_string()),
        "outsider counted"
    );
    assert_eq!(processes.len(), 1, "only the workload: {processes:?}");
}

fn runq_p50(threads: &str, test: &str) -> f64 {
    let crowd = workload("crowd");
    let out = out_dir(test);
    probe(
        &out,
        &["-d", "20s", "--", crowd.to_str().unwrap(), threads, "3"],
    );
    let report = json(&out, "runqlat.json");
    assert!(
        report["count"].as_u64().unwrap() > 0,
        "no run-queue events: {report}"
    );
    report["p50_us"].as_f64().unwrap()
}

#[test]
fn runqlat_sees_crowded_and_lone_threads() {
    let _machine = exclusive();
    let crowded = runq_p50("4", "runq-crowded");
    assert!(
        crowded > 1000.0,
        "4 threads on one CPU: p50 {crowded} us, expected > 1 ms"
    );
    let alone = runq_p50("1", "runq-alone");
    assert!(alone < 1000.0, "1 thread: p50 {alone} us, expected < 1 ms");
}

#[test]
fn processes_outside_the_target_contribute_nothing() {
    let _machine = exclusive();
    let outsider = Background::spawn(&mut Command::new(workload("outsider")));
    let target = Background::spawn(Command::new(workload("burn")).arg("30"));
    let out = out_dir("filter");
    let pid = target.pid().to_string();
    probe(&out, &["--pid", &pid, "-d", "2s"]);
    let oncpu = read(&out, "oncpu.folded");
    let offcpu = read(&out, "offcpu.folded");
    assert!(
        folded_sum(&oncpu, |s| s.starts_with("burn;")) > 100,
        "target sampled:\n{oncpu}"
    );
    for text in [&oncpu, &offcpu] {
        assert!(!text.contains("outsider"), "outsider recorded:\n{text}");
        assert!(
            text.lines().all(|l| l.starts_with("burn;")),
            "only the target:\n{text}"
        );
    }
    let syscalls = json(&out, "syscalls.json");
    assert!(syscalls["processes"]
        .get(outsider.pid().to_string())
        .is_none());
    let runq = json(&out, "runqlat.json");
    for process in runq["processes"].as_array().unwrap() {
        assert_eq!(process["tgid"].as_u64().unwrap() as u32, target.pid());
    }
    let probe = json(&out, "probe.json");
    assert_eq!(
        probe["target"]["processes_seen"],
        serde_json::json!([target.pid()])
    );
}

#[test]
fn pid_targets_follow_their_forks() {
    let _machine = exclusive();
    let forker = Background::spawn(Command::new(workload("forker")).arg("1"));
    let out = out_dir("fork");
    let pid = forker.pid().to_string();
    // The child is forked (and exits a second later) only once the probes are attached.
    let (mut runner, said) = start_until(
        &[
            "probe",
            "--out",
            out.to_str().unwrap(),
            "--pid",
            &pid,
            "-d",
            "3s",
        ],
        "attached",
    );
    kill(Pid::from_raw(forker.pid() as i32), Signal::SIGUSR1).unwrap();
    let status = runner.wait().unwrap();
    assert!(
        status.success(),
        "runner probe failed: {}",
        said.join().unwrap()
    );
    let oncpu = read(&out, "oncpu.folded");
    assert!(
        folded_sum(&oncpu, |s| s.contains("child_burn")) > 50,
        "the forked child's child_burn is sampled:\n{oncpu}"
    );
    let probe = json(&out, "probe.json");
    assert!(probe["events"]["forks_followed"].as_u64().unwrap() >= 1);
}

/// A cgroup v2 directory under the test's own cgroup, removed when dropped, a failed test
/// included. Declare it before the processes put in it: they are dropped (killed) first.
struct TestCgroup(std::path::PathBuf);

impl std::ops::Deref for TestCgroup {
    type Target = std::path::PathBuf;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // A killed member takes a moment to leave.
        for _ in 0..40 {
            match std::fs::remove_dir(&self.0) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    sleep(Duration::from_millis(50))
                }
                _ => return,
            }
        }
    }
}

/// A new cgroup v2 directory under the test's own cgroup.
fn test_cgroup(name: &str) -> TestCgroup {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 membership");
    let root = runner::cgroup::v2_root().expect("cgroup v2 is mounted");
    let dir = root
        .join(own.trim_start_matches('/'))
        .join(format!("runner-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TestCgroup(dir)
}

#[test]
fn cgroup_targets_record_their_members_only() {
    let _machine = exclusive();
    let dir = test_cgroup("test");
    let outsider = Background::spawn(&mut Command::new(workload("outsider")));
    let member = Background::spawn(Command::new(workload("burn")).arg("30"));
    std::fs::write(dir.join("cgroup.procs"), member.pid().to_string()).unwrap();
    let out = out_dir("cgroup");
    probe(&out, &["--cgroup", dir.to_str().unwrap(), "-d", "2s"]);
    drop(member);
    let oncpu = read(&out, "oncpu.folded");
    assert!(
        folded_sum(&oncpu, |s| s.starts_with("burn;")) > 100,
        "member sampled:\n{oncpu}"
    );
    assert!(!oncpu.contains("outsider"));
    let resources = read(&out, "resources.csv");
    assert!(
        resources.lines().any(|l| l.contains(",burn,")),
        "member sampled:\n{resources}"
    );
    drop(outsider);
}

/// The probes remember threads they found outside the target cgroups; a process that moves
/// into one must be looked at again, every thread of it (the kernel's event names only the
/// leader, and here only a second thread makes calls).
#[test]
fn a_process_moved_into_a_target_cgroup_is_recorded_from_then_on() {
    let _machine = exclusive();
    let dir = test_cgroup("move");
    let member = Background::spawn(Command::new(workload("burn")).arg("30"));
    std::fs::write(dir.join("cgroup.procs"), member.pid().to_string()).unwrap();
    let mover = Background::spawn(Command::new(workload("outsider")).arg("thread"));
    let out = out_dir("moved");
    let cgroup = dir.to_str().unwrap();
    let (mut run, stderr) = start_until(
        &[
            "probe",
            "--cgroup",
            cgroup,
            "--probes",
            "syscalls",
            "-d",
            "3s",
            "--out",
            out.to_str().unwrap(),
        ],
        "attached",
    );
    // Long enough for the mover's getppid calls to be seen outside, first.
    sleep(Duration::from_millis(800));
    std::fs::write(dir.join("cgroup.procs"), mover.pid().to_string()).unwrap();
    assert!(run.wait().unwrap().success(), "{}", stderr.join().unwrap());
    let pid = mover.pid().to_string();
    drop(mover);
    drop(member);
    let report = json(&out, "syscalls.json");
    assert!(
        report["processes"][&pid]["getppid"]["count"]
            .as_u64()
            .unwrap_or(0)
            > 1000,
        "the moved process's calls after the move: {report}"
    );
}

#[test]
fn nothing_stays_attached_after_a_run() {
    let _machine = exclusive();
    let before = bpf_program_ids();
    let out = out_dir("detach");
    let mut run = runner()
        .args(["probe", "-d", "3s", "--out"])
        .arg(&out)
        .args(["--", "sleep", "10"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ours = |programs: &[(u64, String)]| {
        programs
            .iter()
            .filter(|(id, name)| {
                !before.contains(id)
                    && (name.starts_with("oncpu")
                        || name.starts_with("offcpu")
                        || name.starts_with("runq")
                        || name.starts_with("syscall")
                        || name.starts_with("target"))
            })
            .count()
    };
    // Four target-tracking programs, and oncpu 1, offcpu 1, runqlat 3, syscalls 2.
    const PROGRAMS: usize = 11;
    let mut seen = 0;
    while Instant::now() < deadline && seen < PROGRAMS {
        seen = ours(&bpf_programs());
        sleep(Duration::from_millis(100));
    }
    assert_eq!(
        seen, PROGRAMS,
        "all eleven programs are attached during the run"
    );
    assert!(run.wait().unwrap().success());
    let left = programs_left(&before);
    assert!(left.is_empty(), "programs left behind: {left:?}");
}

#[test]
fn ctrl_c_stops_cleanly_and_still_writes_the_files() {
    let _machine = exclusive();
    let before = bpf_program_ids();
    let burn = workload("burn");
    let out = out_dir("interrupt");
    let mut run = runner()
        .args(["probe", "-d", "60s", "--out"])
        .arg(&out)
        .arg("--")
        .arg(&burn)
        .arg("60")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt 2 s into the recording (attaching takes longer on a busy machine).
    let mut stderr = std::io::BufReader::new(run.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("recording") {
        line.clear();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            panic!("runner probe ended before recording");
        }
    }
    let drain = std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    sleep(Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = run.wait_with_output().unwrap();
    let _ = drain.join();
    assert_eq!(output.status.code(), Some(130));
    let probe = json(&out, "probe.json");
    let listed: Vec<&str> = probe["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for file in [
        "oncpu.folded",
        "oncpu.svg",
        "offcpu.folded",
        "offcpu.svg",
        "syscalls.json",
        "runqlat.json",
        "resources.csv",
        "probe.json",
    ] {
        assert!(out.join(file).exists(), "{file} written");
        assert!(listed.contains(&file), "{file} listed in probe.json");
    }
    assert_eq!(probe["interrupted"], true);
    assert!(probe["oncpu_samples"].as_u64().unwrap() > 50);
    let left = programs_left(&before);
    assert!(left.is_empty(), "nothing left attached: {left:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{}", probe["target"]["processes_seen"][0])).exists(),
        "the launched command was stopped"
    );
}
