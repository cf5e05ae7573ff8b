//! `runner load`: run the load engine with live progress, then print the summary and write
//! the requested files.

use std::{path::PathBuf, process::ExitCode};

use crate::{
    load::{self, LoadConfig},
    report,
    run_dir::write_file,
    signals,
};

/// A validated `runner load` invocation.
#[derive(Debug)]
pub struct LoadRun {
    pub config: LoadConfig,
    pub json: Option<PathBuf>,
    pub hgrm: Option<PathBuf>,
    pub csv: Option<PathBuf>,
    /// A run with more failed requests than this share (percent) fails.
    pub max_error_rate: f64,
}

/// Runs `runner load`: 130 when interrupted, 1 when the run failed (no correct response, or
/// too many errors).
pub fn run(run: &LoadRun) -> anyhow::Result<ExitCode> {
    let stop = signals::stop_flag()?;
    let bar = report::progress::bar(run.config.schedule.duration());
    let outcome = load::run(&run.config, stop, &mut |p| report::progress::show(&bar, p))?;
    report::progress::finish(bar);
    print!("{}", report::load::summary(&outcome.report));
    if let Some(path) = &run.json {
        write_file(path, report::load::to_json(&outcome.report))?;
    }
    if let Some(path) = &run.hgrm {
        write_file(path, report::load::to_hgrm(&outcome.histogram))?;
    }
    if let Some(path) = &run.csv {
        write_file(path, report::load::to_csv(&outcome.report.timeseries))?;
    }
    if outcome.report.interrupted {
        return Ok(ExitCode::from(130));
    }
    if let Some(failure) = outcome.report.total.failure(run.max_error_rate) {
        eprintln!("runner: the run failed: {failure}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
