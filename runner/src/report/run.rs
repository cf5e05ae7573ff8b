//! One run's report.md and report.html, from its summary.json.

use std::fmt::Write as _;

use super::{
    diagnosis, markdown_html, page_head,
    svg::{line_chart, Series, XAxis},
    target,
};
use crate::{num::ms, results::summary::Summary, run_dir::ARTIFACTS};

/// The interpreter of an app: `CPython 3.13.0 (pyenv, symbols) at PATH (a copy of PATH)`.
pub fn interpreter_line(i: &crate::cpython::install::Install) -> String {
    let mut line = format!("CPython {} at {}", i.describe(), i.path.display());
    if let Some(from) = &i.copied_from {
        line.push_str(&format!(" (a copy of {})", from.display()));
    }
    line
}

/// report.md.
pub fn markdown(s: &Summary) -> String {
    let mut out = String::new();
    let l = &s.load;
    let _ = writeln!(out, "# {} · {}\n", s.app, s.scenario);
    let _ = writeln!(
        out,
        "Run `{}`, started {}, status **{}**.",
        s.run_id, s.started_at, s.status
    );
    if let Some(f) = &s.failure {
        let _ = writeln!(out, "\n> {f}");
    }
    if let Some(i) = &s.python {
        let _ = writeln!(out, "\nInterpreter: {}.", interpreter_line(i));
    }
    let _ = writeln!(out, "\n## Load\n");
    let _ = writeln!(out, "| ok/s | errors/s | requests | errors | p50 ms | p90 ms | p95 ms | p99 ms | p99.9 ms | max ms |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let lat = &l.latency_us;
    let _ = writeln!(
        out,
        "| {:.1} | {:.1} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        l.rps,
        l.error_rps,
        l.requests,
        l.error_total,
        ms(lat.p50),
        ms(lat.p90),
        ms(lat.p95),
        ms(lat.p99),
        ms(lat.p999),
        ms(lat.max)
    );
    if let Some(u) = &l.latency_uncorrected_us {
        let _ = writeln!(
            out,
            "\nUncorrected (from the actual send): p50 {:.2} ms, p99 {:.2} ms.",
            ms(u.p50),
            ms(u.p99)
        );
    }
    let errors: Vec<String> = l
        .errors
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nErrors: {}.", errors.join(", "));
    }
    if l.steps.len() > 1 {
        let _ = writeln!(
            out,
            "\n| step | ok/s | errors/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|"
        );
        for st in &l.steps {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.1} | {:.2} | {:.2} |",
                st.label,
                st.rps,
                st.error_rps,
                ms(st.latency_us.p50),
                ms(st.latency_us.p99)
            );
        }
    }
    if let Some(t) = &s.target {
        target::section(&mut out, t, &s.processes);
    }
    let r = &s.resources;
    let _ = writeln!(out, "\n## App resources\n");
    let _ = writeln!(out, "CPU avg {:.1}% (max {:.1}%), RSS avg {:.1} MB (max {:.1} MB), threads max {}, context switches {} voluntary / {} involuntary.",
        r.summary.cpu_pct_avg, r.summary.cpu_pct_max, r.summary.rss_mb_avg, r.summary.rss_mb_max, r.summary.threads_max, r.summary.ctx_voluntary, r.summary.ctx_involuntary);
    if let Some(c) = &r.cgroup {
        let _ = writeln!(
            out,
            "\nIts cgroup (`{}`), from the cgroup's own counters: {}. Limits: {}.",
            c.path.display(),
            target::cgroup_line(c),
            target::limits(&c.limits)
        );
    }
    if s.target.is_none() {
        if let Some(line) = target::processes_line(&s.processes) {
            let _ = writeln!(out, "\n{line}.");
        }
    }
    if let Some(p) = &s.probes {
        let _ = writeln!(out, "\n## Kernel view\n");
        let _ = writeln!(out, "On-CPU samples {}; off-CPU {:.1} ms ({:.1} ms blocked, {:.1} ms preempted); run queue p50 {} us, p99 {} us; lost records {}.",
            p.oncpu_samples, p.offcpu_us as f64 / 1000.0, p.offcpu_blocked_us as f64 / 1000.0, p.offcpu_preempted_us as f64 / 1000.0,
            p.runqlat_us.get("p50").copied().unwrap_or(0.0), p.runqlat_us.get("p99").copied().unwrap_or(0.0), p.lost);
        let _ = writeln!(
            out,
            "\n| syscall | count | total ms | p99 us |\n|---|---:|---:|---:|"
        );
        for sc in &p.syscalls_top {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} |",
                sc.name,
                sc.count,
                sc.total_us / 1000.0,
                sc.p99_us
            );
        }
        if let Some(line) = target::unnamed_line(&p.symbolization) {
            let _ = writeln!(out, "\nNative frames without names: {line}.");
        }
        if let Some(u) = &p.unnamed_native {
            for line in target::unnamed_samples_lines(u) {
                let _ = writeln!(out, "- {line}");
            }
        }
        for (pid, u) in &p.python.unsupported {
            let _ = writeln!(
                out,
                "\nPython: {}.",
                super::recording::unsupported_line(*pid, u)
            );
        }
        frame_table(&mut out, "top on-CPU frame", &p.top_frames);
        if !p.top_python_frames.is_empty() {
            frame_table(&mut out, "top Python function", &p.top_python_frames);
        }
    }
    if let Some(d) = &s.diagnosis {
        diagnosis::section(&mut out, d);
    }
    if let Some(i) = &s.interference {
        interference_section(&mut out, i);
    }
    let _ = writeln!(out, "\n## Artifacts\n");
    for (name, path) in &s.artifacts {
        let _ = writeln!(out, "- {name}: [{path}]({path})");
    }
    out
}

/// What else the machine did during the load.
fn interference_section(out: &mut String, i: &crate::interference::Interference) {
    let _ = writeln!(out, "\n## Interference\n");
    if !i.disturbed {
        let _ = writeln!(out, "None seen: no stolen time, no other process on the run's CPUs, no throttling, no stretch without CPU or responses.");
        return;
    }
    let _ = writeln!(
        out,
        "**Disturbed**: compare this run's figures with care.\n"
    );
    for f in &i.findings {
        let _ = writeln!(out, "* {f}");
    }
    let _ = writeln!(out, "\n| second | steal app % | steal client % | others on app CPUs % | others on client CPUs % | throttled ms | app no CPU ms | responses |\n|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in i.seconds.iter().filter(|s| !s.marks.is_empty()) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            s.second,
            s.steal_app_pct,
            s.steal_client_pct,
            s.outside_app_pct,
            s.outside_client_pct,
            s.throttled_ms,
            s.app_no_cpu_ms,
            s.responses
        );
    }
}

/// A table of frames with their samples and share.
fn frame_table(out: &mut String, title: &str, rows: &[(String, u64, f64)]) {
    let _ = writeln!(out, "\n| {title} | samples | share |\n|---|---:|---:|");
    for (frame, samples, share) in rows {
        let _ = writeln!(
            out,
            "| `{}` | {} | {:.1}% |",
            frame.replace('|', "\\|"),
            samples,
            share
        );
    }
}

/// The charts of one run.
fn charts(s: &Summary) -> Vec<String> {
    let l = &s.load;
    let spectrum: Vec<(f64, f64)> = l
        .spectrum
        .iter()
        .map(|&(p, us)| (p, us as f64 / 1000.0))
        .collect();
    let mut charts = vec![line_chart(
        "Latency by percentile",
        "percentile",
        "ms",
        XAxis::Percentile,
        &[Series {
            label: "corrected",
            color: "#d62728",
            points: spectrum,
        }],
    )];
    let ok: Vec<(f64, f64)> = l
        .timeseries
        .iter()
        .map(|t| (t.second as f64, t.ok as f64))
        .collect();
    let errors: Vec<(f64, f64)> = l
        .timeseries
        .iter()
        .map(|t| (t.second as f64, t.errors as f64))
        .collect();
    charts.push(line_chart(
        "Throughput over time",
        "second",
        "responses/s",
        XAxis::Linear,
        &[
            Series {
                label: "ok/s",
                color: "#1f77b4",
                points: ok,
            },
            Series {
                label: "errors/s",
                color: "#ff7f0e",
                points: errors,
            },
        ],
    ));
    let p99: Vec<(f64, f64)> = l
        .timeseries
        .iter()
        .map(|t| (t.second as f64, t.p99_us as f64 / 1000.0))
        .collect();
    let p50: Vec<(f64, f64)> = l
        .timeseries
        .iter()
        .map(|t| (t.second as f64, t.p50_us as f64 / 1000.0))
        .collect();
    charts.push(line_chart(
        "Latency over time",
        "second",
        "ms",
        XAxis::Linear,
        &[
            Series {
                label: "p99",
                color: "#d62728",
                points: p99,
            },
            Series {
                label: "p50",
                color: "#2ca02c",
                points: p50,
            },
        ],
    ));
    charts.push(line_chart(
        "App CPU over time",
        "second",
        "CPU %",
        XAxis::Linear,
        &[Series {
            label: "app CPU %",
            color: "#9467bd",
            points: s.resources.cpu_series.clone(),
        }],
    ));
    charts
}

/// report.html for one run.
pub fn html(s: &Summary) -> String {
    let mut out = page_head(&format!("{} · {}", s.app, s.scenario));
    out.push_str(&markdown_html(&markdown(s), &mut |h| {
        if h == "Load" {
            format!("<div class=\"charts\">{}</div>", charts(s).concat())
        } else {
            String::new()
        }
    }));
    for (name, title) in ARTIFACTS.iter().filter_map(|a| Some((a.name, a.embed?))) {
        if s.artifacts.contains_key(name) {
            let _ = write!(
                out,
                "<h2>{title}</h2><object type=\"image/svg+xml\" data=\"{name}\">{name}</object>"
            );
        }
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::summary::{RunStatus, Second, SCHEMA};

    fn fixture() -> Summary {
        let mut s = Summary {
            schema: SCHEMA.into(),
            run_id: "20261123T090000Z-axum-ping".into(),
            app: "axum".into(),
            scenario: "ping".into(),
            status: RunStatus::Ok,
            ..Default::default()
        };
        s.load.rps = 1234.5;
        s.load.spectrum = vec![(0.0, 100), (50.0, 200), (99.0, 900), (99.9, 1500)];
        s.load.timeseries = (0..5)
            .map(|i| Second {
                second: i,
                ok: 1000 + i,
                errors: 0,
                p50_us: 200,
                p99_us: 900,
            })
            .collect();
        s.resources.cpu_series = vec![(0.1, 50.0), (0.2, 60.0)];
        s.artifacts.insert("oncpu.svg".into(), "oncpu.svg".into());
        s
    }

    #[test]
    fn html_is_self_contained() {
        let page = html(&fixture());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<svg").count(), 4, "four inline charts");
        assert!(!page.contains("<script"), "no scripts");
        assert!(
            !page.contains("http://")
                || page.matches("http://").count()
                    == page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
            "nothing from the network"
        );
        assert!(page.contains("data=\"oncpu.svg\""));
        assert_eq!(page, html(&fixture()));
    }

    #[test]
    fn markdown_has_the_figures() {
        let md = markdown(&fixture());
        assert!(md.contains("# axum · ping"));
        assert!(md.contains("| 1234.5 |"));
        assert!(md.contains("[oncpu.svg](oncpu.svg)"));
    }
}
