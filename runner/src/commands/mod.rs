//! The commands behind the CLI.

pub mod apps;
pub mod bench;
pub mod diagnose;
pub mod load;
pub mod probe;
pub mod profile;

use std::process::ExitCode;

use crate::doctor;

/// `runner doctor`: prints the checks; fails when any check fails.
pub fn doctor() -> anyhow::Result<ExitCode> {
    let checks = doctor::run_checks();
    print!("{}", doctor::render(&checks));
    let failed = checks
        .iter()
        .filter(|c| c.status == doctor::Status::Fail)
        .count();
    if failed > 0 {
        println!("{failed} check(s) failed; the probes cannot run until they are fixed");
        return Ok(ExitCode::FAILURE);
    }
    println!("this machine can run the probes");
    Ok(ExitCode::SUCCESS)
}

/// A flag set by SIGINT or SIGTERM, for commands that stop cleanly and write what they have.
pub fn stop_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))
            .map_err(|e| anyhow::anyhow!("installing signal handlers: {e}"))?;
    }
    Ok(stop)
}

/// The current UTC time as `YYYYmmddTHHMMSSZ`, for directory names.
pub fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

/// The kernel release, e.g. `6.18.44`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
