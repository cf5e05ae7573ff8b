//! `runner bench`: the apps x scenarios matrix, each cell profiled `--runs` times and
//! reduced to medians; `runner report DIR` re-renders a run or a bench; `runner compare A B`
//! puts two runs side by side with a differential flamegraph.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::profile::{give_to_invoker, profile, ProfileRun};
use crate::{
    apps::{manifest::apps_dir, scenarios::Scenarios},
    folded::Folded,
    report::{
        self,
        summary::Summary,
        svg::{line_chart, Series, XAxis},
    },
};

/// One cell of the matrix, reduced over its runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    pub app: String,
    pub scenario: String,
    /// ok | unsupported | failed | interrupted
    pub status: String,
    pub reason: Option<String>,
    pub runs: Vec<String>,
    pub rps: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub errors: f64,
    pub cpu_pct: f64,
    pub rss_mb: f64,
    /// (x, ok/s, p99 us) per schedule step: x is connections (sweep) or target rate.
    pub steps: Vec<(f64, f64, f64)>,
}

/// bench.json.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Bench {
    pub schema: String,
    pub id: String,
    pub runs_per_cell: usize,
    pub cells: Vec<Cell>,
    pub interrupted: bool,
}

/// The median of some values (0 for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

fn reduce(app: &str, scenario: &str, runs: &[Summary], dirs: Vec<String>) -> Cell {
    let pick = |f: &dyn Fn(&Summary) -> f64| median(runs.iter().map(f).collect());
    let steps = match runs.first() {
        Some(first) => (0..first.load.steps.len())
            .map(|i| {
                let step = &first.load.steps[i];
                let x = step
                    .connections
                    .map(|c| c as f64)
                    .or(step.target_rate)
                    .unwrap_or(i as f64);
                let rps = median(
                    runs.iter()
                        .filter_map(|r| r.load.steps.get(i))
                        .map(|s| s.rps)
                        .collect(),
                );
                let p99 = median(
                    runs.iter()
                        .filter_map(|r| r.load.steps.get(i))
                        .map(|s| s.latency_us.p99 as f64)
                        .collect(),
                );
                (x, rps, p99)
            })
            .collect(),
        None => Vec::new(),
    };
    Cell {
        app: app.into(),
        scenario: scenario.into(),
        status: "ok".into(),
        reason: None,
        runs: dirs,
        rps: pick(&|s| s.load.rps),
        p50_us: pick(&|s| s.load.latency_us.p50 as f64),
        p95_us: pick(&|s| s.load.latency_us.p95 as f64),
        p99_us: pick(&|s| s.load.latency_us.p99 as f64),
        errors: pick(&|s| s.load.error_total as f64),
        cpu_pct: pick(&|s| s.resources.summary.cpu_pct_avg),
        rss_mb: pick(&|s| s.resources.summary.rss_mb_max),
        steps,
    }
}

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
    let stop = super::stop_flag()?;
    let dir = apps_dir();
    let scenarios = Scenarios::read(&dir)?;
    let (_, _, all_apps) = super::apps::load_all()?;
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
    let id = format!("bench-{}", super::timestamp());
    let root = b.template.out.join(&id);
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
        schema: "runner.bench/v1".into(),
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
                    status: "unsupported".into(),
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
                    app: app.dir.join("app.toml").display().to_string(),
                    scenario: Some(scenario.clone()),
                    out: runs_dir.clone(),
                    ..b.template.clone()
                };
                done += 1;
                match profile(&p) {
                    Ok(profiled) if profiled.summary.status == "ok" => {
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
                                .unwrap_or_else(|| profiled.summary.status.clone()),
                        );
                        if profiled.summary.status == "interrupted" {
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
                    "interrupted"
                } else {
                    "failed"
                }
                .into();
                eprintln!("runner: {} {scenario}: {reason}", app.name);
                cell.reason = Some(reason);
            }
            bench.cells.push(cell);
            if bench.interrupted {
                break 'matrix;
            }
        }
    }
    write_bench(&root, &bench)?;
    give_to_invoker(&root);
    print!("{}", bench_markdown(&bench));
    println!("results: {}", root.display());
    Ok(if bench.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_bench(root: &Path, bench: &Bench) -> anyhow::Result<()> {
    std::fs::write(root.join("summary.json"), serde_json::to_vec_pretty(bench)?)?;
    let mut csv =
        String::from("app,scenario,status,rps,p50_us,p95_us,p99_us,errors,cpu_pct,rss_mb,reason\n");
    for c in &bench.cells {
        let _ = writeln!(
            csv,
            "{},{},{},{:.1},{:.0},{:.0},{:.0},{:.0},{:.1},{:.1},\"{}\"",
            c.app,
            c.scenario,
            c.status,
            c.rps,
            c.p50_us,
            c.p95_us,
            c.p99_us,
            c.errors,
            c.cpu_pct,
            c.rss_mb,
            c.reason
                .clone()
                .unwrap_or_default()
                .replace('"', "'")
                .replace('\n', " ")
        );
    }
    std::fs::write(root.join("summary.csv"), csv)?;
    std::fs::write(root.join("report.md"), bench_markdown(bench))?;
    std::fs::write(root.join("report.html"), bench_html(bench))?;
    Ok(())
}

/// The best value of a figure in a scenario (max for throughput, min otherwise).
fn best(cells: &[&Cell], f: impl Fn(&Cell) -> f64, higher_is_better: bool) -> f64 {
    let values = cells.iter().filter(|c| c.status == "ok").map(|c| f(c));
    if higher_is_better {
        values.fold(0.0, f64::max)
    } else {
        values.fold(f64::MAX, f64::min)
    }
}

fn by_scenario(bench: &Bench) -> BTreeMap<&str, Vec<&Cell>> {
    let mut map: BTreeMap<&str, Vec<&Cell>> = BTreeMap::new();
    for c in &bench.cells {
        map.entry(c.scenario.as_str()).or_default().push(c);
    }
    map
}

fn ratio(v: f64, best: f64) -> String {
    if best <= 0.0 || best == f64::MAX {
        "-".into()
    } else {
        format!("{:.2}", v / best)
    }
}

/// report.md of a bench: per scenario, frameworks side by side with each figure's ratio to
/// the best.
pub fn bench_markdown(bench: &Bench) -> String {
    let mut out = format!(
        "# {} ({} run(s) per cell, medians)\n",
        bench.id, bench.runs_per_cell
    );
    if bench.interrupted {
        out.push_str("\nInterrupted: the matrix is incomplete.\n");
    }
    for (scenario, cells) in by_scenario(bench) {
        let b_rps = best(&cells, |c| c.rps, true);
        let b_p99 = best(&cells, |c| c.p99_us, false);
        let b_cpu = best(&cells, |c| c.cpu_pct, false);
        let b_rss = best(&cells, |c| c.rss_mb, false);
        let _ = writeln!(out, "\n## {scenario}\n");
        let _ = writeln!(out, "| app | ok/s | x best | p50 ms | p95 ms | p99 ms | x best | errors | CPU % | x best | RSS MB | x best |");
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for c in &cells {
            if c.status != "ok" {
                let _ = writeln!(
                    out,
                    "| {} | {}: {} | | | | | | | | | | |",
                    c.app,
                    c.status,
                    c.reason
                        .clone()
                        .unwrap_or_default()
                        .lines()
                        .next()
                        .unwrap_or("")
                );
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {:.1} | {} | {:.1} | {} |",
                c.app,
                c.rps,
                ratio(c.rps, b_rps),
                c.p50_us / 1000.0,
                c.p95_us / 1000.0,
                c.p99_us / 1000.0,
                ratio(c.p99_us, b_p99),
                c.errors,
                c.cpu_pct,
                ratio(c.cpu_pct, b_cpu),
                c.rss_mb,
                ratio(c.rss_mb, b_rss)
            );
        }
    }
    out
}

const COLORS: [&str; 12] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939",
];

/// report.html of a bench: the Markdown tables, plus throughput against connections (sweep)
/// or latency against target rate (rate lists), per scenario.
pub fn bench_html(bench: &Bench) -> String {
    let mut out = report::page_head(&bench.id);
    out.push_str(&report::markdown_html(&bench_markdown(bench), &mut |h| {
        let cells: Vec<&Cell> = bench
            .cells
            .iter()
            .filter(|c| c.scenario == h && c.steps.len() > 1)
            .collect();
        if cells.is_empty() {
            return String::new();
        }
        let sweep = cells
            .iter()
            .any(|c| c.steps.iter().any(|s| s.0.fract() == 0.0));
        let series: Vec<Series> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| Series {
                label: &c.app,
                color: COLORS[i % COLORS.len()],
                points: c
                    .steps
                    .iter()
                    .map(|&(x, rps, p99)| (x, if sweep { rps } else { p99 / 1000.0 }))
                    .collect(),
            })
            .collect();
        if sweep {
            line_chart(
                "Throughput against connections",
                "connections / target rate",
                "ok/s",
                XAxis::Linear,
                &series,
            )
        } else {
            line_chart(
                "p99 latency against target rate",
                "target req/s",
                "p99 ms",
                XAxis::Linear,
                &series,
            )
        }
    }));
    out.push_str("</body></html>\n");
    out
}

/// `runner report DIR`: re-renders a run's or a bench's reports from its summary.json.
pub fn rerender(dir: &Path) -> anyhow::Result<ExitCode> {
    let path = dir.join("summary.json");
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "{} is not a run or bench folder: no summary.json",
            dir.display()
        )
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))?;
    match value["schema"].as_str() {
        Some("runner.summary/v1") => {
            let summary: Summary = serde_json::from_value(value)?;
            std::fs::write(dir.join("report.md"), report::markdown(&summary))?;
            std::fs::write(dir.join("report.html"), report::html(&summary))?;
        }
        Some("runner.bench/v1") => {
            let bench: Bench = serde_json::from_value(value)?;
            write_bench(dir, &bench)?;
        }
        other => bail!("{}: unknown schema {other:?}", path.display()),
    }
    println!(
        "wrote {} and {}",
        dir.join("report.md").display(),
        dir.join("report.html").display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_summary(dir: &Path) -> anyhow::Result<Summary> {
    let path = dir.join("summary.json");
    let text = std::fs::read(&path)
        .with_context(|| format!("{} is not a run folder: no summary.json", dir.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
}

/// The side-by-side table of two runs.
pub fn compare_table(a: &Summary, b: &Summary) -> String {
    let rows: Vec<(&str, f64, f64)> = vec![
        ("ok/s", a.load.rps, b.load.rps),
        (
            "p50 ms",
            a.load.latency_us.p50 as f64 / 1000.0,
            b.load.latency_us.p50 as f64 / 1000.0,
        ),
        (
            "p95 ms",
            a.load.latency_us.p95 as f64 / 1000.0,
            b.load.latency_us.p95 as f64 / 1000.0,
        ),
        (
            "p99 ms",
            a.load.latency_us.p99 as f64 / 1000.0,
            b.load.latency_us.p99 as f64 / 1000.0,
        ),
        (
            "errors",
            a.load.error_total as f64,
            b.load.error_total as f64,
        ),
        (
            "app CPU %",
            a.resources.summary.cpu_pct_avg,
            b.resources.summary.cpu_pct_avg,
        ),
        (
            "app RSS MB",
            a.resources.summary.rss_mb_max,
            b.resources.summary.rss_mb_max,
        ),
    ];
    let mut out = format!(
        "{:<12} {:>14} {:>14} {:>8}\n",
        "",
        format!("A {}", a.app),
        format!("B {}", b.app),
        "B/A"
    );
    let _ = writeln!(
        out,
        "{:<12} {:>14} {:>14}",
        "scenario", a.scenario, b.scenario
    );
    for (name, x, y) in rows {
        let r = if x != 0.0 {
            format!("{:.2}", y / x)
        } else {
            "-".into()
        };
        let _ = writeln!(out, "{name:<12} {x:>14.2} {y:>14.2} {r:>8}");
    }
    out
}

/// `runner compare RUN_A RUN_B`: both runs side by side, and a differential on-CPU flamegraph
/// (red: more in B, blue: less) written into RUN_B.
pub fn compare(a_dir: &Path, b_dir: &Path) -> anyhow::Result<ExitCode> {
    let (a, b) = (read_summary(a_dir)?, read_summary(b_dir)?);
    print!("{}", compare_table(&a, &b));
    let folded =
        |d: &Path| std::fs::read_to_string(d.join("oncpu.folded")).map(|t| Folded::parse(&t));
    if let (Ok(fa), Ok(fb)) = (folded(a_dir), folded(b_dir)) {
        let mut diff = Vec::new();
        let options = inferno::differential::Options {
            normalize: true,
            ..Default::default()
        };
        inferno::differential::from_readers(
            options,
            fa.to_bytes().as_slice(),
            fb.to_bytes().as_slice(),
            &mut diff,
        )
        .context("computing the differential stacks")?;
        let name: PathBuf = format!(
            "diff-oncpu-vs-{}.svg",
            a_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        )
        .into();
        let mut fg = inferno::flamegraph::Options::default();
        fg.title = format!("On-CPU differential: {} (A) -> {} (B)", a.run_id, b.run_id);
        fg.deterministic = true;
        let text = String::from_utf8_lossy(&diff).into_owned();
        let mut svg = Vec::new();
        inferno::flamegraph::from_lines(&mut fg, text.lines(), &mut svg)
            .context("drawing the differential flamegraph")?;
        std::fs::write(b_dir.join(&name), svg)?;
        println!("differential flamegraph: {}", b_dir.join(&name).display());
    } else {
        println!("(no oncpu.folded in both runs: no differential flamegraph)");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
        let cells = [
            Cell {
                app: "a".into(),
                scenario: "ping".into(),
                status: "ok".into(),
                rps: 100.0,
                p99_us: 2000.0,
                ..Default::default()
            },
            Cell {
                app: "b".into(),
                scenario: "ping".into(),
                status: "ok".into(),
                rps: 50.0,
                p99_us: 1000.0,
                ..Default::default()
            },
            Cell {
                app: "c".into(),
                scenario: "ping".into(),
                status: "failed".into(),
                reason: Some("did not start".into()),
                ..Default::default()
            },
        ];
        let bench = Bench {
            schema: "runner.bench/v1".into(),
            id: "bench-x".into(),
            runs_per_cell: 3,
            cells: cells.to_vec(),
            interrupted: false,
        };
        let md = bench_markdown(&bench);
        assert!(md.contains("| a | 100.0 | 1.00 |"), "{md}");
        assert!(md.contains("| b | 50.0 | 0.50 |"), "{md}");
        assert!(md.contains("| c | failed: did not start"), "{md}");
        let html = bench_html(&bench);
        assert!(html.contains("<table>") && !html.contains("<script"));
    }
}
