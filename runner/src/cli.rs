//! Command-line parsing. clap lives here only; arguments are validated into the typed
//! configurations that the commands take.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::{
    cgroup,
    commands::{
        self,
        probe::{ProbeRun, TargetSpec},
    },
    probe::{ProbeConfig, ProbeKind, MAX_FREQ},
};

#[derive(Parser, Debug)]
#[command(
    name = "runner",
    version,
    about = "HTTP load, eBPF probes and flamegraphs for web-framework apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Attach the four probes (oncpu, offcpu, runqlat, syscalls) and the resource sampler to
    /// processes, a cgroup, or a command, and write flamegraphs and figures.
    Probe(ProbeArgs),
    /// Check that this machine can run the probes, and say how to fix what is missing.
    Doctor,
}

#[derive(Args, Debug)]
struct ProbeArgs {
    /// A process to record (repeatable); processes it forks are followed.
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// A cgroup v2 directory to record, with its descendants (repeatable).
    #[arg(long = "cgroup", value_name = "PATH")]
    cgroups: Vec<PathBuf>,
    /// How long to record; with a command, recording also stops when it exits.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// On-CPU sampling frequency in Hz (1 to 10000).
    #[arg(long, default_value_t = 99)]
    freq: u64,
    /// Shortest off-CPU interval recorded.
    #[arg(long, default_value = "1us", value_parser = parse_duration)]
    offcpu_min: Duration,
    /// Probes to attach, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "oncpu,offcpu,runqlat,syscalls", value_parser = parse_probe)]
    probes: Vec<ProbeKind>,
    /// Do not follow processes forked by --pid targets or the command.
    #[arg(long)]
    no_follow: bool,
    /// Output directory (default: results/probe-<UTC time>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The command to launch and record.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

fn parse_probe(text: &str) -> Result<ProbeKind, String> {
    ProbeKind::ALL
        .into_iter()
        .find(|k| k.name() == text)
        .ok_or_else(|| format!("`{text}` is not a probe (oncpu, offcpu, runqlat, syscalls)"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration like 10s, 500ms or 2m ({e})"))?;
    if duration.is_zero() {
        return Err("the duration must be above zero".into());
    }
    Ok(duration)
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Probe(args) => {
            let run = probe_run(args)?;
            let outcome = commands::probe::run(&run)?;
            Ok(if outcome.interrupted {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Doctor => commands::doctor(),
    }
}

fn probe_run(args: ProbeArgs) -> anyhow::Result<ProbeRun> {
    if !(1..=MAX_FREQ).contains(&args.freq) {
        bail!(
            "--freq must be between 1 and {MAX_FREQ} Hz, not {}",
            args.freq
        );
    }
    let has_processes = !args.pids.is_empty() || !args.cgroups.is_empty();
    let target = match (has_processes, args.command.is_empty()) {
        (false, true) => bail!("name a target: --pid PID, --cgroup PATH, or a command after --"),
        (true, false) => bail!("give either --pid/--cgroup or a command after --, not both"),
        (false, false) => TargetSpec::Command(args.command),
        (true, true) => {
            for pid in &args.pids {
                if *pid == 0 || !PathBuf::from(format!("/proc/{pid}")).exists() {
                    bail!("no process with PID {pid}");
                }
            }
            let cgroups = args
                .cgroups
                .iter()
                .map(|p| cgroup::resolve(p))
                .collect::<Result<Vec<_>, _>>()
                .context("--cgroup")?;
            TargetSpec::Processes {
                pids: args.pids,
                cgroups,
            }
        }
    };
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from("results").join(format!("probe-{}", commands::timestamp()))
    });
    Ok(ProbeRun {
        target,
        duration: args.duration,
        config: ProbeConfig {
            freq_hz: args.freq,
            offcpu_min: args.offcpu_min,
            follow_fork: !args.no_follow,
            probes: args.probes.into_iter().collect(),
        },
        out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<ProbeRun> {
        let cli = Cli::try_parse_from(std::iter::once("runner").chain(args.iter().copied()))?;
        match cli.command {
            Command::Probe(a) => probe_run(a),
            Command::Doctor => unreachable!(),
        }
    }

    #[test]
    fn a_command_is_a_target() {
        let run = parse(&["probe", "-d", "2s", "--freq", "999", "--", "sleep", "1"]).unwrap();
        assert!(matches!(run.target, TargetSpec::Command(ref c) if c == &["sleep", "1"]));
        assert_eq!(run.duration, Duration::from_secs(2));
        assert_eq!(run.config.freq_hz, 999);
        assert_eq!(run.config.probes.len(), 4);
        let run = parse(&["probe", "--probes", "syscalls,oncpu", "--", "true"]).unwrap();
        assert_eq!(
            run.config.probes.into_iter().collect::<Vec<_>>(),
            vec![ProbeKind::Oncpu, ProbeKind::Syscalls]
        );
        assert!(parse(&["probe", "--probes", "gpu", "--", "true"]).is_err());
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        let err = |args: &[&str]| format!("{:#}", parse(args).unwrap_err());
        assert_eq!(
            err(&["probe"]),
            "name a target: --pid PID, --cgroup PATH, or a command after --"
        );
        assert_eq!(
            err(&["probe", "--pid", "999999999"]),
            "no process with PID 999999999"
        );
        assert_eq!(
            err(&["probe", "--freq", "20000", "--", "true"]),
            "--freq must be between 1 and 10000 Hz, not 20000"
        );
        assert_eq!(
            err(&["probe", "--cgroup", "/tmp"]),
            "--cgroup: /tmp is not a cgroup directory"
        );
        assert!(err(&["probe", "-d", "soon", "--", "true"]).contains("not a duration"));
        assert_eq!(
            err(&["probe", "--pid", "1", "--", "true"]),
            "give either --pid/--cgroup or a command after --, not both"
        );
    }
}
