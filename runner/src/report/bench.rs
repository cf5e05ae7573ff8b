//! A bench presented: report.md (per scenario, apps side by side with each figure's ratio to
//! the best), report.html (the tables plus charts), and summary.csv.

use std::{collections::BTreeMap, fmt::Write as _};

use super::{
    markdown_html, page_head,
    svg::{line_chart, Series, XAxis},
};
use crate::results::bench::{Bench, Cell, CellStatus};

/// summary.csv of a bench.
pub fn csv(bench: &Bench) -> String {
    let mut csv = String::from(
        "app,python,scenario,status,rps,p50_us,p95_us,p99_us,errors,cpu_pct,rss_mb,reason\n",
    );
    for c in &bench.cells {
        let _ = writeln!(
            csv,
            "{},\"{}\",{},{},{:.1},{:.0},{:.0},{:.0},{:.0},{:.1},{:.1},\"{}\"",
            c.app,
            c.python.as_deref().unwrap_or(""),
            c.scenario,
            c.status.name(),
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
    csv
}

/// The best value of a figure in a scenario (max for throughput, min otherwise).
fn best(cells: &[&Cell], f: impl Fn(&Cell) -> f64, higher_is_better: bool) -> f64 {
    let values = cells
        .iter()
        .filter(|c| c.status == CellStatus::Ok)
        .map(|c| f(c));
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

/// A cell's row: the app, with its interpreter when the bench has that dimension.
fn row_name(c: &Cell) -> String {
    match &c.python {
        Some(py) => format!("{} · Python {py}", c.app),
        None => c.app.clone(),
    }
}

/// report.md of a bench: per scenario, frameworks side by side with each figure's ratio to
/// the best.
pub fn markdown(bench: &Bench) -> String {
    let mut out = format!(
        "# {} ({} run(s) per cell, medians)\n",
        bench.id, bench.runs_per_cell
    );
    if bench.interrupted {
        out.push_str("\nInterrupted: the matrix is incomplete.\n");
    }
    for w in &bench.warnings {
        let _ = writeln!(out, "\n> Warning: {w}.");
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
            if c.status != CellStatus::Ok {
                let _ = writeln!(
                    out,
                    "| {} | {}: {} | | | | | | | | | | |",
                    row_name(c),
                    c.status.name(),
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
                row_name(c),
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
pub fn html(bench: &Bench) -> String {
    let mut out = page_head(&bench.id);
    out.push_str(&markdown_html(&markdown(bench), &mut |h| {
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
        let names: Vec<String> = cells.iter().map(|c| row_name(c)).collect();
        let series: Vec<Series> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| Series {
                label: &names[i],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_to_the_best() {
        let cells = [
            Cell {
                app: "a".into(),
                scenario: "ping".into(),
                status: CellStatus::Ok,
                rps: 100.0,
                p99_us: 2000.0,
                ..Default::default()
            },
            Cell {
                app: "b".into(),
                scenario: "ping".into(),
                status: CellStatus::Ok,
                rps: 50.0,
                p99_us: 1000.0,
                ..Default::default()
            },
            Cell {
                app: "c".into(),
                scenario: "ping".into(),
                status: CellStatus::Failed,
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
            warnings: vec!["a and b run with different limits (CPU quota 1 CPUs vs none)".into()],
        };
        let md = markdown(&bench);
        assert!(md.contains("| a | 100.0 | 1.00 |"), "{md}");
        assert!(
            md.contains("> Warning: a and b run with different limits"),
            "{md}"
        );
        assert!(md.contains("| b | 50.0 | 0.50 |"), "{md}");
        assert!(md.contains("| c | failed: did not start"), "{md}");
        let html = html(&bench);
        assert!(html.contains("<table>") && !html.contains("<script"));
    }

    #[test]
    fn the_interpreter_is_a_dimension() {
        let cell = |python: &str, rps: f64| Cell {
            app: "fastapi".into(),
            scenario: "ping".into(),
            python: Some(python.into()),
            rps,
            ..Default::default()
        };
        let bench = Bench {
            cells: vec![
                cell("3.11.7 (pyenv, symbols)", 100.0),
                cell("3.13.0 (pyenv, symbols)", 80.0),
            ],
            ..Default::default()
        };
        let md = markdown(&bench);
        assert!(
            md.contains("| fastapi · Python 3.11.7 (pyenv, symbols) | 100.0 | 1.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| fastapi · Python 3.13.0 (pyenv, symbols) | 80.0 | 0.80 |"),
            "{md}"
        );
        let csv = csv(&bench);
        assert!(csv.starts_with("app,python,scenario,"), "{csv}");
        assert!(
            csv.contains("fastapi,\"3.13.0 (pyenv, symbols)\",ping,ok,80.0"),
            "{csv}"
        );
    }
}
