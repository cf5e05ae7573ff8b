//! The load report, and its exporters: JSON, the HdrHistogram percentile distribution
//! (`.hgrm`, as wrk2 and HdrHistogram's plotter read it), the per-second CSV, and the
//! terminal summary. Exporters return bytes or text, so they can be tested.

use std::{collections::BTreeMap, fmt::Write as _};

use hdrhistogram::Histogram;

use crate::hist::round1;
use serde::Serialize;

use super::{
    record::{ErrorClass, StepStats},
    schedule::{Step, StepLoad},
};

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p75: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    pub mean: f64,
    pub stdev: f64,
}

impl Percentiles {
    /// The percentiles of a histogram; zeros when it is empty.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.50),
            p75: h.value_at_quantile(0.75),
            p90: h.value_at_quantile(0.90),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            mean: round1(h.mean()),
            stdev: round1(h.stdev()),
        }
    }
}

/// Open-loop send lateness.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Lateness {
    /// Requests sent more than 2 ms after their intended time.
    pub late: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Figures for one step, or for the whole run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Completed requests: correct responses plus errors.
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub error_total: u64,
    pub duration_s: f64,
    /// Correct responses per second.
    pub rps: f64,
    pub error_rps: f64,
    pub bytes: u64,
    pub bytes_per_s: f64,
    /// From the intended send time in open loop; from the send in closed loop.
    pub latency_us: Percentiles,
    /// From the actual send; open loop only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_uncorrected_us: Option<Percentiles>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Requests sent per second, against `target_rate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub achieved_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness: Option<Lateness>,
}

impl Figures {
    /// Figures of `stats` over `duration_s` seconds; `open` adds the open-loop figures.
    pub fn new(stats: &StepStats, duration_s: f64, open: Option<f64>) -> Self {
        let d = duration_s.max(1e-9);
        let error_total = stats.error_total();
        let requests = stats.ok + error_total;
        Self {
            requests,
            ok: stats.ok,
            errors: ErrorClass::ALL
                .iter()
                .map(|c| (c.name(), stats.errors[*c as usize]))
                .collect(),
            error_total,
            // Whole milliseconds: (x * 1000).round() / 1000 is the nearest double to them.
            duration_s: (duration_s * 1000.0).round() / 1000.0,
            rps: round1(stats.ok as f64 / d),
            error_rps: round1(error_total as f64 / d),
            bytes: stats.bytes,
            bytes_per_s: round1(stats.bytes as f64 / d),
            latency_us: Percentiles::of(&stats.corrected),
            latency_uncorrected_us: open.map(|_| Percentiles::of(&stats.uncorrected)),
            target_rate: open,
            achieved_rate: open.map(|_| round1(requests as f64 / d)),
            lateness: open.map(|_| Lateness {
                late: stats.late,
                p50_us: stats.lateness.value_at_quantile(0.5),
                p99_us: stats.lateness.value_at_quantile(0.99),
                max_us: stats.lateness.max(),
            }),
        }
    }
}

/// One step of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepReport {
    pub label: String,
    pub load: StepLoad,
    #[serde(flatten)]
    pub figures: Figures,
}

/// One second of the time series (of completions, summed over workers).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SecondRow {
    pub second: u64,
    pub ok: u64,
    pub errors: u64,
    pub bytes: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Requests of one mix entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MixReport {
    pub name: String,
    pub weight: u32,
    pub ok: u64,
    pub errors: u64,
}

/// What `runner load` reports, and what run summaries embed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadReport {
    pub schema: &'static str,
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub cpus: Vec<usize>,
    pub timeout_s: f64,
    pub interrupted: bool,
    #[serde(flatten)]
    pub total: Figures,
    pub steps: Vec<StepReport>,
    pub mix: Vec<MixReport>,
    pub timeseries: Vec<SecondRow>,
}

/// The open-loop target rate of a step over its length, if it is open loop.
pub fn step_rate(step: &Step) -> Option<f64> {
    match step.load {
        StepLoad::Open { from, to, .. } => Some((from + to) / 2.0),
        StepLoad::Closed { .. } => None,
    }
}

/// The report as JSON.
pub fn to_json(report: &LoadReport) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(report).expect("the report serializes");
    out.push(b'\n');
    out
}

/// The percentile distribution in HdrHistogram's text format, values in milliseconds.
pub fn to_hgrm(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / 1000.0;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.3} {q:>14.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.3} {q:>14.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / 1000.0,
            h.stdev() / 1000.0,
            h.max() as f64 / 1000.0,
        )
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.3}, StdDeviation   = {stdev:>12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.3}, Total count    = {:>12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        2048
    );
    out.into_bytes()
}

/// The time series as CSV.
pub fn to_csv(rows: &[SecondRow]) -> Vec<u8> {
    let mut out = String::from("second,ok,errors,bytes,p50_us,p99_us\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            r.second, r.ok, r.errors, r.bytes, r.p50_us, r.p99_us
        );
    }
    out.into_bytes()
}

fn ms(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0}ms", us as f64 / 1000.0)
    } else if us >= 1000 {
        format!("{:.2}ms", us as f64 / 1000.0)
    } else {
        format!("{us}us")
    }
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

fn latency_row(name: &str, p: &Percentiles) -> String {
    format!(
        "  {name:<13} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        ms(p.p50),
        ms(p.p75),
        ms(p.p90),
        ms(p.p95),
        ms(p.p99),
        ms(p.p999),
        ms(p.p9999),
        ms(p.max),
        ms(p.mean as u64),
        ms(p.stdev as u64)
    )
}

fn errors_text(f: &Figures) -> String {
    let parts: Vec<String> = f
        .errors
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if parts.is_empty() {
        "0".into()
    } else {
        format!("{} ({})", f.error_total, parts.join(", "))
    }
}

/// The summary table printed at the end of a run.
pub fn summary(report: &LoadReport) -> String {
    let t = &report.total;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} · {} connections · {} thread(s) · {:.1}s{}",
        report.url,
        report.connections,
        report.threads,
        t.duration_s,
        if report.interrupted {
            " · interrupted"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "  requests {} · ok {} · errors {}",
        t.requests,
        t.ok,
        errors_text(t)
    );
    let _ = writeln!(
        out,
        "  ok/s {} · errors/s {} · {}/s",
        rate(t.rps),
        rate(t.error_rps),
        bytes(t.bytes_per_s)
    );
    if let (Some(target), Some(achieved), Some(late)) =
        (t.target_rate, t.achieved_rate, &t.lateness)
    {
        let _ = writeln!(
            out,
            "  rate: target {} req/s, achieved {} req/s · {} sent late (>2ms), lateness p99 {} max {}",
            rate(target),
            rate(achieved),
            late.late,
            ms(late.p99_us),
            ms(late.max_us)
        );
    }
    let _ = writeln!(
        out,
        "  {:<13} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "latency", "p50", "p75", "p90", "p95", "p99", "p99.9", "p99.99", "max", "mean", "stdev"
    );
    out.push_str(&latency_row(
        if t.latency_uncorrected_us.is_some() {
            "corrected"
        } else {
            ""
        },
        &t.latency_us,
    ));
    if let Some(u) = &t.latency_uncorrected_us {
        out.push_str(&latency_row("uncorrected", u));
    }
    if report.steps.len() > 1 {
        let _ = writeln!(out, "  steps:");
        for s in &report.steps {
            let f = &s.figures;
            let _ = writeln!(
                out,
                "    {:<24} ok/s {:>9}  p50 {:>8}  p99 {:>8}  errors {}",
                s.label,
                rate(f.rps),
                ms(f.latency_us.p50),
                ms(f.latency_us.p99),
                errors_text(f)
            );
        }
    }
    if report.mix.len() > 1 {
        let total: u64 = report
            .mix
            .iter()
            .map(|m| m.ok + m.errors)
            .sum::<u64>()
            .max(1);
        let _ = writeln!(out, "  mix:");
        for m in &report.mix {
            let _ = writeln!(
                out,
                "    {:<16} weight {:>3}  {:>5.1}% of requests  ok {}  errors {}",
                m.name,
                m.weight,
                100.0 * (m.ok + m.errors) as f64 / total as f64,
                m.ok,
                m.errors
            );
        }
    }
    out
}

fn bytes(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} GB", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} MB", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} kB", v / 1e3)
    } else {
        format!("{v:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::record::histogram;

    #[test]
    fn hgrm_has_the_plotter_format() {
        let mut h = histogram(3);
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let text = String::from_utf8(to_hgrm(&h)).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next().unwrap(), "");
        let first: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(first[0], "0.010");
        assert_eq!(first[2], "1");
        let last_value = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert!(
            last_value.split_whitespace().nth(2) == Some("1000"),
            "{last_value}"
        );
        // Max is the highest value equivalent to 10 ms at 3 significant digits.
        let max_line = text.lines().find(|l| l.starts_with("#[Max     =")).unwrap();
        assert!(
            max_line.contains("      10.0") && max_line.ends_with("Total count    =         1000]"),
            "{max_line}"
        );
        assert_eq!(to_hgrm(&h), to_hgrm(&h));
    }

    #[test]
    fn csv_lists_seconds() {
        let rows = [SecondRow {
            second: 0,
            ok: 10,
            errors: 1,
            bytes: 40,
            p50_us: 100,
            p99_us: 900,
        }];
        assert_eq!(
            String::from_utf8(to_csv(&rows)).unwrap(),
            "second,ok,errors,bytes,p50_us,p99_us\n0,10,1,40,100,900\n"
        );
    }

    #[test]
    fn throughput_counts_only_correct_responses() {
        let mut stats = StepStats::new(1);
        stats.ok = 90;
        stats.errors[ErrorClass::Status5xx as usize] = 10;
        let f = Figures::new(&stats, 10.0, None);
        assert_eq!((f.requests, f.rps, f.error_rps), (100, 9.0, 1.0));
        assert_eq!(f.errors["status_5xx"], 10);
    }
}
