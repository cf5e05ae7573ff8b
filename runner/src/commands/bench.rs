//! `runner bench`: the apps x scenarios matrix, or the targets x workloads matrix of services
//! that already run (`--targets FILE`), each cell profiled `--runs` times (with profile's
//! pipeline) and reduced to medians.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::profile::{profile, ProfileRun, ProfileTarget};
use crate::{
    apps::{
        load_all,
        manifest::{apps_dir, Language},
        scenarios::Scenarios,
    },
    cpython::install::{self, Choice},
    load::request::{read_mix, RequestSpec},
    report,
    results::{
        bench::{reduce, Bench, Cell, CellStatus, SCHEMA},
        summary::RunStatus,
    },
    run_dir::{timestamp, RunDir},
    signals,
    target::{
        file::{TargetEntry, Workload},
        Running,
    },
};

/// What `runner bench` runs.
pub struct BenchRun {
    /// Interpreters of the Python apps, a dimension of the matrix (empty: the default one).
    pub pythons: Vec<Choice>,
    pub apps: Vec<String>,
    pub scenarios: Vec<String>,
    /// Services that already run (from `--targets`); when given, apps are not started.
    pub targets: Vec<TargetEntry>,
    pub runs: usize,
    /// How many times a run the machine disturbed is measured again.
    pub repeat_disturbed: usize,
    /// The profile settings for every run (target, scenario and out are replaced).
    pub template: ProfileRun,
}

/// One cell to run: its row and column, and the profile of each run (None: unsupported).
struct Planned {
    row: String,
    column: String,
    /// The interpreter asked for (`--python`), when the matrix has that dimension.
    python: Option<String>,
    run: Result<ProfileRun, String>,
}

impl Planned {
    /// The cell's name in progress lines: `app scenario`, with the interpreter.
    fn label(&self) -> String {
        match &self.python {
            Some(py) => format!("{} (Python {py}) {}", self.row, self.column),
            None => format!("{} {}", self.row, self.column),
        }
    }
}

/// Runs `runner bench`.
pub fn run(b: &BenchRun) -> anyhow::Result<ExitCode> {
    let stop = signals::stop_flag()?;
    let id = format!("bench-{}", timestamp());
    let mut bench = Bench {
        schema: SCHEMA.into(),
        id: id.clone(),
        runs_per_cell: b.runs,
        ..Default::default()
    };
    let template = b.template.clone();
    // Everything is looked up before the bench folder is made: bad input leaves nothing.
    let cells = if b.targets.is_empty() {
        app_cells(b, &template)?
    } else {
        let (cells, warnings) = target_cells(b, &template)?;
        for w in &warnings {
            eprintln!("runner: warning: {w}");
        }
        bench.warnings = warnings;
        cells
    };
    // Written as a partial folder, renamed into place when the matrix is done.
    let mut out = RunDir::create(&b.template.out, &id)?;
    bench.id = out.id().to_string();
    let runs_dir = out.path().join("runs");
    std::fs::create_dir_all(&runs_dir)?;
    let total = cells.len() * b.runs;
    let per_run = b
        .template
        .schedule
        .duration()
        .unwrap_or(Duration::from_secs(30))
        + b.template.warmup
        + Duration::from_secs(5);
    let started = Instant::now();
    let mut done = 0usize;
    for planned in &cells {
        let run = planned.run.as_ref().map(|p| ProfileRun {
            out: runs_dir.clone(),
            ..p.clone()
        });
        let p = match &run {
            Ok(p) => p,
            Err(reason) => {
                bench.cells.push(Cell {
                    app: planned.row.clone(),
                    scenario: planned.column.clone(),
                    python: planned.python.clone(),
                    status: CellStatus::Unsupported,
                    reason: Some(reason.to_string()),
                    ..Default::default()
                });
                done += b.runs;
                continue;
            }
        };
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
                "runner: bench [{}/{total}] {} run {run}/{} · ETA {}",
                done + 1,
                planned.label(),
                b.runs,
                humantime::format_duration(Duration::from_secs(eta.as_secs()))
            );
            done += 1;
            let mut outcome = profile(p);
            // A run the machine disturbed is measured again (its folder stays, marked); the
            // bench keeps the least disturbed of the attempts that went well.
            let mut repeats = 0;
            while repeats < b.repeat_disturbed
                && !stop.load(std::sync::atomic::Ordering::Relaxed)
                && disturbed_seconds(&outcome).is_some_and(|n| n > 0)
            {
                repeats += 1;
                eprintln!(
                    "runner: bench {} run {run}: the machine interfered; measuring it again ({repeats}/{})",
                    planned.label(), b.repeat_disturbed
                );
                let again = profile(p);
                let interrupted =
                    matches!(&again, Ok(r) if r.summary.status == RunStatus::Interrupted);
                let better = match (disturbed_seconds(&again), disturbed_seconds(&outcome)) {
                    (Some(a), Some(b)) => a < b,
                    _ => false,
                };
                if better || interrupted {
                    outcome = again;
                }
            }
            match outcome {
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
        let mut cell = reduce(&planned.row, &planned.column, &summaries, dirs);
        if cell.python.is_none() {
            cell.python = planned.python.clone();
        }
        if let Some(reason) = failure {
            cell.status = if bench.interrupted {
                CellStatus::Interrupted
            } else {
                CellStatus::Failed
            };
            eprintln!("runner: {}: {reason}", planned.label());
            cell.reason = Some(reason);
        }
        bench.cells.push(cell);
        if bench.interrupted {
            break;
        }
    }
    out.write("summary.json", serde_json::to_vec_pretty(&bench)?)?;
    out.write("summary.csv", report::bench::csv(&bench))?;
    out.write("report.md", report::bench::markdown(&bench))?;
    out.write("report.html", report::bench::html(&bench))?;
    let root = out.finish()?;
    print!("{}", report::bench::markdown(&bench));
    println!("results: {}", root.display());
    Ok(if bench.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// The bundled apps x scenarios.
fn app_cells(b: &BenchRun, template: &ProfileRun) -> anyhow::Result<Vec<Planned>> {
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
    // Each interpreter is found before anything runs: a missing one stops the bench here.
    let mut pythons: Vec<Option<&Choice>> = Vec::new();
    for choice in &b.pythons {
        let found = install::find(choice).with_context(|| format!("--python {choice}"))?;
        eprintln!(
            "runner: Python {choice}: {} at {}",
            found.describe(),
            found.path.display()
        );
        pythons.push(Some(choice));
    }
    if pythons.is_empty() {
        pythons.push(None);
    }
    let mut cells = Vec::new();
    for app in apps {
        // The interpreter is a dimension of Python apps only.
        let app_pythons = match app.language {
            Language::Python => pythons.as_slice(),
            Language::Rust => &[None],
        };
        for scenario in &names {
            for python in app_pythons {
                cells.push(Planned {
                    row: app.name.clone(),
                    column: scenario.clone(),
                    python: python.map(Choice::to_string),
                    run: match app.unsupported_reason(scenario) {
                        Some(reason) => Err(reason.into()),
                        None => Ok(ProfileRun {
                            target: ProfileTarget::App(
                                app.dir.join("app.toml").display().to_string(),
                            ),
                            scenario: Some(scenario.clone()),
                            own: None,
                            python: python.cloned(),
                            ..template.clone()
                        }),
                    },
                });
            }
        }
    }
    Ok(cells)
}

/// The running targets x their workloads. Every target is resolved first, so a missing or
/// stopped one is reported before anything runs; targets whose limits differ are named.
fn target_cells(
    b: &BenchRun,
    template: &ProfileRun,
) -> anyhow::Result<(Vec<Planned>, Vec<String>)> {
    let scenarios = Scenarios::read(&apps_dir())?;
    let mut resolved = Vec::new();
    for t in &b.targets {
        let running = Running::resolve(&t.spec).with_context(|| format!("target `{}`", t.name))?;
        eprintln!(
            "runner: target {}: {}",
            t.name,
            crate::target::describe(&running.facts)
        );
        resolved.push((t, running));
    }
    let mut warnings = Vec::new();
    if let Some((first, rest)) = resolved.split_first() {
        for (t, running) in rest {
            let diff = first.1.facts.limits.differences(&running.facts.limits);
            if !diff.is_empty() {
                warnings.push(format!(
                    "{} and {} run with different limits ({}): the comparison is not like for like",
                    first.0.name,
                    t.name,
                    diff.join("; ")
                ));
            }
        }
    }
    let mut cells = Vec::new();
    for (t, _) in &resolved {
        for w in &t.workloads {
            let (scenario, own) = match w {
                Workload::Scenario(s) => {
                    scenarios.get(s)?;
                    (Some(s.clone()), None)
                }
                Workload::Path(path) => (None, Some((w.label(), vec![RequestSpec::get(path)]))),
                Workload::Mix(file) => (None, Some((w.label(), read_mix(file)?))),
            };
            cells.push(Planned {
                row: t.name.clone(),
                column: w.label(),
                python: None,
                run: Ok(ProfileRun {
                    target: ProfileTarget::Running {
                        spec: t.spec.clone(),
                        url: t.url.clone(),
                    },
                    scenario,
                    own,
                    ..template.clone()
                }),
            });
        }
    }
    Ok((cells, warnings))
}

/// Seconds of a run that went well which the machine disturbed; None for a run that failed.
fn disturbed_seconds(outcome: &anyhow::Result<super::profile::Profiled>) -> Option<usize> {
    match outcome {
        Ok(r) if r.summary.status == RunStatus::Ok => {
            Some(r.summary.interference.as_ref().map_or(0, |i| {
                i.seconds.iter().filter(|s| !s.marks.is_empty()).count()
            }))
        }
        _ => None,
    }
}
