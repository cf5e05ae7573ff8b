//! Two runs compared, side by side (the differential flamegraph is drawn by
//! [`super::flamegraph::differential`]).

use std::fmt::Write as _;

use crate::{num::ms, results::summary::Summary};

/// The side-by-side table of two runs.
pub fn table(a: &Summary, b: &Summary) -> String {
    let rows: Vec<(&str, f64, f64)> = vec![
        ("ok/s", a.load.rps, b.load.rps),
        (
            "p50 ms",
            ms(a.load.latency_us.p50),
            ms(b.load.latency_us.p50),
        ),
        (
            "p95 ms",
            ms(a.load.latency_us.p95),
            ms(b.load.latency_us.p95),
        ),
        (
            "p99 ms",
            ms(a.load.latency_us.p99),
            ms(b.load.latency_us.p99),
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
