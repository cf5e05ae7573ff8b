//! `runner bench`: the apps x scenarios matrix, each cell profiled `--runs` times (with
//! profile's pipeline) and reduced to medians.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::profile::{profile, ProfileRun, ProfileTarget};
use crate::{
    apps::{load_all, manifest::apps_dir, scenarios::Scenarios},
    report,
    results::{
        bench::{reduce, Bench, Cell, CellStatus, SCHEMA},
        summary::RunStatus,
    },
    run_dir::{create_owned, timestamp, RunDir},
    signals,
};

/// What `runner bench` runs.
pub struct BenchRun {
    pub apps: Vec<String>,
    pub scenarios: Vec<String>,
    pub runs: usize,
    /// The profile settings for every run (app, scenario and out are replaced).
    pub template: ProfileRun,
}

/// Runs `runner bench`.
pub fn run(b: &BenchRun) -> anyhow::Result<ExitCode> {
    let stop = signals::stop_flag()?;
    let dir = apps_dir();
    let scenarios = Scenarios::read(&dir)?;
    let (_, _, all_apps) = load_all()?;
    let apps: Vec<&crate::apps::manifest::Manifest> = if b.apps.is_empty() {
        all_apps.iter().collect()
    } else {
        b.apps
            .iter()
            .map(|name| {
                all_apps
                    .iter()
                    .find(|a| &a.name == name)
                    .with_context(|| format!("no bundled app `{name}`"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let names: Vec<String> = if b.scenarios.is_empty() {
        vec!["ping".into()]
    } else {
        for s in &b.scenarios {
            scenarios.get(s)?;
        }
        b.scenarios.clone()
    };
    let id = format!("bench-{}", timestamp());
    let root = create_owned(&b.template.out.join(&id))?;
    let runs_dir = root.join("runs");
    std::fs::create_dir_all(&runs_dir)?;
    let total = apps.len() * names.len() * b.runs;
    let per_run = b
        .template
        .schedule
        .duration()
        .unwrap_or(Duration::from_secs(30))
        + b.template.warmup
        + Duration::from_secs(5);
    let started = Instant::now();
    let mut done = 0usize;
    let mut bench = Bench {
        schema: SCHEMA.into(),
        id: id.clone(),
        runs_per_cell: b.runs,
        ..Default::default()
    };
    'matrix: for app in &apps {
        for scenario in &names {
            if let Some(reason) = app.unsupported_reason(scenario) {
                bench.cells.push(Cell {
                    app: app.name.clone(),
                    scenario: scenario.clone(),
                    status: CellStatus::Unsupported,
                    reason: Some(reason.into()),
                    ..Default::default()
                });
                done += b.runs;
                continue;
            }
            let mut summaries = Vec::new();
            let mut dirs = Vec::new();
            let mut failure = None;
            for run in 1..=b.runs {
                let eta = if done == 0 {
                    per_run * (total - done) as u32
                } else {
                    started.elapsed() / done as u32 * (total - done) as u32
                };
                eprintln!(
                    "runner: bench [{}/{total}] {} {scenario} run {run}/{} · ETA {}",
                    done + 1,
                    app.name,
                    b.runs,
                    humantime::format_duration(Duration::from_secs(eta.as_secs()))
                );
                let p = ProfileRun {
                    target: ProfileTarget::App(app.dir.join("app.toml").display().to_string()),
                    scenario: Some(scenario.clone()),
                    out: runs_dir.clone(),
                    ..b.template.clone()
                };
                done += 1;
                match profile(&p) {
                    Ok(profiled) if profiled.summary.status == RunStatus::Ok => {
                        dirs.push(format!(
                            "runs/{}",
                            profiled.dir.file_name().unwrap().to_string_lossy()
                        ));
                        summaries.push(profiled.summary);
                    }
                    Ok(profiled) => {
                        failure = Some(
                            profiled
                                .summary
                                .failure
                                .unwrap_or_else(|| profiled.summary.status.to_string()),
                        );
                        if profiled.summary.status == RunStatus::Interrupted {
                            bench.interrupted = true;
                        }
                        break;
                    }
                    Err(e) => {
                        failure = Some(format!("{e:#}"));
                        break;
                    }
                }
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    bench.interrupted = true;
                    break;
                }
            }
            let mut cell = reduce(&app.name, scenario, &summaries, dirs);
            if let Some(reason) = failure {
                cell.status = if bench.interrupted {
                    CellStatus::Interrupted
                } else {
                    CellStatus::Failed
                };
                eprintln!("runner: {} {scenario}: {reason}", app.name);
                cell.reason = Some(reason);
            }
            bench.cells.push(cell);
            if bench.interrupted {
                break 'matrix;
            }
        }
    }
    let mut out = RunDir::at(&root)?;
    out.write("summary.json", serde_json::to_vec_pretty(&bench)?)?;
    out.write("summary.csv", report::bench::csv(&bench))?;
    out.write("report.md", report::bench::markdown(&bench))?;
    out.write("report.html", report::bench::html(&bench))?;
    out.finish()?;
    print!("{}", report::bench::markdown(&bench));
    println!("results: {}", root.display());
    Ok(if bench.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}
