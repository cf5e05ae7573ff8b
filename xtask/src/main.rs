//! Project tasks: `cargo xtask setup | test | bench probes|load|evloop | profile APP SCENARIO`.

mod bench;
mod setup;
mod sh;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  setup                    install what this machine lacks (Debian packages, bpf-linker, tracefs)
  test                     set up, then run every test (probe tests load BPF programs: root or sudo)
  bench probes [--rounds N] [--freq HZ] [--workload cpu-bound|syscall-heavy|python-cpu] [--python 3.11,3.13,PATH]
                           probe overhead on CPU-bound, syscall-heavy and Python workloads, A/B alternated
  bench load [--rounds N] [--seconds S] [--soak S]
                           runner load against wrk and oha on nginx, alternated; memory soak
  bench evloop [--rounds N] [--seconds S] [--app APP] [--scenario S]
                           cost of `runner diagnose`'s probes to an async app under load
  profile APP SCENARIO [OPTIONS]
                           set up, build, then `runner profile APP SCENARIO` as root";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::run(),
        Some("test") => test(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("profile") => profile(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!("unknown task `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up, then runs every test of the workspace. The probe tests need root: when this is
/// not root, cargo runs the test binaries through `sudo -E`.
fn test(extra: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    let mut cmd = sh::cargo(&["test", "--locked"]);
    cmd.args(extra);
    if !sh::is_root() {
        eprintln!("xtask: not root; the test binaries run through sudo -E");
        cmd.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
    }
    sh::run(&mut cmd)
}

/// The quick start's first command: sets up and builds on first use, then runs
/// `runner profile ARGS...` as root (through sudo when needed).
fn profile(args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    let runner = sh::build_runner()?;
    let mut cmd = sh::as_root(&runner);
    cmd.arg("profile").args(args).current_dir(sh::workspace());
    sh::run(&mut cmd)
}
