//! Exporters of a load run: JSON, the HdrHistogram percentile distribution (`.hgrm`, as wrk2
//! and HdrHistogram's plotter read it), the per-second CSV, and the terminal summary of
//! `runner load`. Functions from finished figures to bytes or text.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::load::figures::{
    ClientReport, Figures, LoadReport, Percentiles, ProtocolReport, SecondRow, TlsReport,
};

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

fn duration_text(us: u64) -> String {
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
        duration_text(p.p50),
        duration_text(p.p75),
        duration_text(p.p90),
        duration_text(p.p95),
        duration_text(p.p99),
        duration_text(p.p999),
        duration_text(p.p9999),
        duration_text(p.max),
        duration_text(p.mean as u64),
        duration_text(p.stdev as u64)
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
    let _ = writeln!(out, "  {}", protocol_text(&report.protocol));
    if let Some(tls) = &report.tls {
        let _ = writeln!(out, "  {}", tls_text(tls));
    }
    let _ = writeln!(
        out,
        "  requests {} · ok {} · errors {}",
        t.requests,
        t.ok,
        errors_text(t)
    );
    for (class, sample) in &report.error_samples {
        let _ = writeln!(out, "  first {class} error: {sample}");
    }
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
        let grid = if late.grid_us > 0 {
            format!(" (sends on a {} grid)", duration_text(late.grid_us))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  rate: target {} req/s, achieved {} req/s · {} sent late (>2ms) · {} never sent, lateness p50 {} p99 {} max {}{grid}",
            rate(target),
            rate(achieved),
            late.late,
            late.unsent,
            duration_text(late.p50_us),
            duration_text(late.p99_us),
            duration_text(late.max_us)
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
                duration_text(f.latency_us.p50),
                duration_text(f.latency_us.p99),
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
    client_text(&mut out, &report.client, report.threads);
    out
}

/// The client's CPU, and what to change when a worker was busy enough to bound the figures.
fn client_text(out: &mut String, c: &ClientReport, threads: usize) {
    let busiest = c.busiest_worker * 100.0;
    let polled = if c.polled_s > 0.0 {
        format!(" ({:.2} s of it polling for responses)", c.polled_s)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  client: {:.2} s CPU{polled}; the busiest of {threads} worker(s) {busiest:.0}% busy",
        c.cpu_s
    );
    if c.saturated() {
        let _ = writeln!(
            out,
            "  warning: a load worker was {busiest:.0}% busy, so the client may be what bounds these figures; give it more workers on more CPUs (-t N --cpus LIST)"
        );
    }
}

fn protocol_text(p: &ProtocolReport) -> String {
    match (p.http.as_str(), &p.http2) {
        ("websocket", _) => "websocket echo".into(),
        (_, Some(h2)) => format!(
            "http/2, {} streams per connection, {} · connections ended by GOAWAY {}, broken {}",
            h2.streams_per_connection, p.why, h2.connections_goaway, h2.connections_failed
        ),
        (http, None) => format!("http/{http} through the {} client ({})", p.client, p.why),
    }
}

fn tls_text(t: &TlsReport) -> String {
    format!(
        "{} {}{} · {} handshakes ({} resumed), p50 {} p99 {} max {}",
        t.version,
        t.cipher,
        t.alpn
            .as_deref()
            .map(|a| format!(", ALPN {a}"))
            .unwrap_or_default(),
        t.handshakes,
        t.resumed,
        duration_text(t.handshake_us.p50),
        duration_text(t.handshake_us.p99),
        duration_text(t.handshake_us.max)
    )
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
    use crate::load::tally::histogram;

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
}
