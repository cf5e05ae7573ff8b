//! The commands behind the CLI. Each composes stages from the library's rooms (target,
//! record, analyse, write, print); none imports another, except that bench runs profile's
//! pipeline once per cell.

pub mod apps;
pub mod bench;
pub mod diagnose;
pub mod load;
pub mod probe;
pub mod profile;
pub mod report;

use std::process::ExitCode;

use crate::doctor;

/// `runner doctor`: prints the checks, and what earlier runners left (cleaned up at this
/// start) or hold now; fails when any check fails.
pub fn doctor(reaped: &[crate::journal::Reaped]) -> anyhow::Result<ExitCode> {
    let checks = doctor::run_checks();
    print!("{}", doctor::render(&checks));
    print!(
        "{}",
        doctor::render_runs(reaped, &crate::journal::live_runs())
    );
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
