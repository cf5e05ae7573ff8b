//! Helpers for the tests that load real probes into the running kernel. They need root.
#![allow(dead_code)]

pub mod load;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// Probe tests measure the machine; they must not overlap each other.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the machine for one test, and checks that the test can load BPF programs.
pub fn exclusive() -> MutexGuard<'static, ()> {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the probe tests load BPF programs into the kernel: run them as root (cargo xtask test does)"
    );
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runner binary under test.
pub fn runner() -> Command {
    Command::new(env!("CARGO_BIN_EXE_runner"))
}

/// Compiles `tests/workloads/<name>.c` into a binary named `name`, at -O0 so that every
/// function, leaves included, keeps its frame pointer (gcc shrink-wraps them away above -O0).
pub fn workload(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workloads")
        .join(format!("{name}.c"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("workloads");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join(name);
    let status = Command::new("gcc")
        .args([
            "-O0",
            "-g",
            "-fno-omit-frame-pointer",
            "-mno-omit-leaf-frame-pointer",
        ])
        .args(["-fno-inline", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "compiling {}", src.display());
    bin
}

/// A fresh output directory.
pub fn out_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("probe-out")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A fresh results folder for one test: `CARGO_TARGET_TMPDIR/GROUP/TEST`.
pub fn fresh_dir(group: &str, test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(group)
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The one folder inside `root` (a run's results folder).
pub fn only_dir(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one folder in {}: {dirs:?}", root.display());
    dirs[0].clone()
}

/// Runs `runner probe --out DIR ARGS...` and insists that it succeeded.
pub fn probe(out: &Path, args: &[&str]) -> Output {
    let output = runner()
        .arg("probe")
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("runner runs");
    assert!(
        output.status.success(),
        "runner probe {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Reads a file written by a run.
pub fn read(out: &Path, name: &str) -> String {
    std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Reads a JSON file written by a run.
pub fn json(out: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&read(out, name)).unwrap()
}

/// Sum of the counts of folded lines that satisfy `pred`.
pub fn folded_sum(folded: &str, pred: impl Fn(&str) -> bool) -> u64 {
    folded
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(stack, _)| pred(stack))
        .map(|(_, count)| count.parse::<u64>().unwrap())
        .sum()
}

/// Ids of the BPF programs loaded in the kernel, with their names.
pub fn bpf_programs() -> Vec<(u64, String)> {
    let output = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .expect("bpftool runs (cargo xtask setup installs it)");
    assert!(output.status.success());
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_u64().unwrap(),
                p["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Ids of the BPF programs loaded now.
pub fn bpf_program_ids() -> Vec<u64> {
    bpf_programs().into_iter().map(|(id, _)| id).collect()
}

/// BPF programs loaded since `before` was taken that are still there after a grace period:
/// the kernel frees programs on the (faultable) syscall tracepoints moments after they are
/// detached, not at once.
pub fn programs_left(before: &[u64]) -> Vec<(u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = bpf_programs()
            .into_iter()
            .filter(|(id, _)| !before.contains(id))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when dropped.
pub struct Background(pub std::process::Child);

impl Background {
    pub fn spawn(cmd: &mut Command) -> Self {
        Self(cmd.spawn().expect("spawns"))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `runner ARGS`, and returns it once its stderr has printed `marker`.
pub fn start_until(
    args: &[&str],
    marker: &str,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = runner()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !seen.contains(marker) {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0
                && std::time::Instant::now() < deadline,
            "runner ended before `{marker}`:\n{seen}"
        );
        seen.push_str(&line);
    }
    let rest = std::thread::spawn(move || {
        let mut more = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut more);
        seen + &more
    });
    (child, rest)
}
