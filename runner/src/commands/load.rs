//! `runner load`: run the load engine with live progress, then print the summary and write
//! the requested files.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::load::{self, report, LoadConfig, Progress};

/// A validated `runner load` invocation.
#[derive(Debug)]
pub struct LoadRun {
    pub config: LoadConfig,
    pub json: Option<PathBuf>,
    pub hgrm: Option<PathBuf>,
    pub csv: Option<PathBuf>,
}

/// A progress display on stderr when it is a terminal; nothing otherwise.
pub fn progress_bar(total: Option<std::time::Duration>) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t.as_secs().max(1)).with_style(
            ProgressStyle::with_template("{elapsed:>4}/{len}s [{bar:30}] {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("valid template"),
        ),
    };
    Some(bar)
}

/// The one-line progress message.
pub fn progress_message(p: &Progress) -> String {
    format!(
        "ok/s {} · p99 {:.2}ms · errors {}",
        p.last_second.ok,
        p.last_second.p99_us as f64 / 1000.0,
        p.errors
    )
}

fn write(path: &Path, bytes: Vec<u8>) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Runs `runner load`; returns whether it was interrupted.
pub fn run(run: &LoadRun) -> anyhow::Result<bool> {
    let stop = super::stop_flag()?;
    let bar = progress_bar(run.config.schedule.duration());
    let outcome = load::run(&run.config, stop, &mut |p| {
        if let Some(bar) = &bar {
            bar.set_position(p.elapsed.as_secs());
            bar.set_message(progress_message(p));
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print!("{}", report::summary(&outcome.report));
    if let Some(path) = &run.json {
        write(path, report::to_json(&outcome.report))?;
    }
    if let Some(path) = &run.hgrm {
        write(path, report::to_hgrm(&outcome.histogram))?;
    }
    if let Some(path) = &run.csv {
        write(path, report::to_csv(&outcome.report.timeseries))?;
    }
    Ok(outcome.report.interrupted)
}
