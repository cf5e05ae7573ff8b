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
    if a.python.is_some() || b.python.is_some() {
        let version = |s: &Summary| {
            s.python
                .as_ref()
                .map_or("-".to_string(), |i| i.version.clone())
        };
        let _ = writeln!(
            out,
            "{:<12} {:>14} {:>14}",
            "python",
            version(a),
            version(b)
        );
    }
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

/// Why two runs may not compare: a different status, scenario, load length, interpreter,
/// CPUs or limits. `a_run` and `b_run` are their run.json, when they have one.
pub fn warnings(
    a: &Summary,
    b: &Summary,
    a_run: Option<&serde_json::Value>,
    b_run: Option<&serde_json::Value>,
) -> Vec<String> {
    let mut out = Vec::new();
    if a.status != b.status {
        out.push(format!(
            "the runs ended differently: A {}, B {}",
            a.status, b.status
        ));
    } else if a.status != crate::results::summary::RunStatus::Ok {
        out.push(format!(
            "both runs are {}: their figures are partial",
            a.status
        ));
    }
    if a.scenario != b.scenario {
        out.push(format!(
            "different scenarios: A {}, B {}: the figures measure different work",
            a.scenario, b.scenario
        ));
    }
    let (da, db) = (a.load.duration_s, b.load.duration_s);
    if da.min(db) > 0.0 && da.max(db) / da.min(db) > 1.5 {
        out.push(format!("the loads lasted {da:.1} s and {db:.1} s"));
    }
    if let (Some(ra), Some(rb)) = (a_run, b_run) {
        for (what, pointer) in [
            ("interpreter", "/app/python"),
            ("app CPUs", "/app/app_cpus"),
            ("client CPUs", "/client_cpus"),
            ("memory limit", "/app/memory_bytes"),
            ("workers", "/app/workers"),
            ("target limits", "/target/limits"),
            ("threads of the load", "/load/threads"),
        ] {
            let (x, y) = (ra.pointer(pointer), rb.pointer(pointer));
            if x != y {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or_else(|| "none".to_string(), |v| v.to_string())
                };
                out.push(format!("different {what}: A {}, B {}", show(x), show(y)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::summary::RunStatus;

    #[test]
    fn runs_that_do_not_compare_are_said_so() {
        let mut a = Summary {
            scenario: "ping".into(),
            ..Summary::default()
        };
        a.load.duration_s = 30.0;
        let mut b = a.clone();
        assert!(warnings(&a, &b, None, None).is_empty());
        b.status = RunStatus::Interrupted;
        b.scenario = "db-read".into();
        b.load.duration_s = 0.2;
        let run = |python: &str| serde_json::json!({"app": {"python": python, "app_cpus": [1]}});
        let said = warnings(&a, &b, Some(&run("3.11.2")), Some(&run("3.13.0"))).join("\n");
        for needle in [
            "ended differently",
            "different scenarios",
            "lasted 30.0 s and 0.2 s",
            "different interpreter",
        ] {
            assert!(said.contains(needle), "{needle}: {said}");
        }
    }
}
