//! The event-loop diagnosis, presented: the verdict (worded here only), the terminal table,
//! diagnosis.md, and the "Event loop" section of a run's report.

use std::fmt::Write as _;

use crate::diagnose::{Culprit, Diagnosis, Entry};

/// The verdict on one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict<'a> {
    /// No thread behaved as an event loop.
    NoLoop,
    /// Loops, and nothing flagged.
    Clean,
    /// Flagged, with the worst culprit.
    Flagged(Option<&'a Culprit>),
}

impl<'a> Verdict<'a> {
    /// The verdict of an entry.
    pub fn of(e: &'a Entry) -> Self {
        if !e.event_loop {
            Verdict::NoLoop
        } else if e.flagged {
            Verdict::Flagged(e.culprits.first())
        } else {
            Verdict::Clean
        }
    }

    /// The verdict in words: `no event loop`, `ok`, or `flagged: CULPRIT`.
    pub fn text(&self) -> String {
        match self {
            Verdict::NoLoop => "no event loop".into(),
            Verdict::Clean => "ok".into(),
            Verdict::Flagged(c) => format!(
                "flagged: {}",
                c.map(describe).unwrap_or_else(|| "no culprit named".into())
            ),
        }
    }
}

/// A culprit in a few words: `syscall via frame`, or `CPU in frame`.
pub fn describe(c: &Culprit) -> String {
    match &c.syscall {
        Some(sys) => format!("{sys} via {}", c.frame),
        None => format!("CPU in {}", c.frame),
    }
}

/// The one-line figures of an entry with loops.
fn figures(e: &Entry) -> String {
    format!(
        "{} loop(s); blocked {:.1}% · cpu-bound {:.1}% · {:.1} stalls/s · {:.1} blocking calls/s · iteration p99 {} us",
        e.loop_threads.len(),
        e.blocked_pct,
        e.cpu_bound_pct,
        e.stalls_per_s,
        e.blocking_calls_per_s,
        e.iteration_p99_us
    )
}

/// The terminal line of a run's diagnosis.
pub fn terminal_line(e: &Entry) -> String {
    let verdict = Verdict::of(e);
    match verdict {
        Verdict::NoLoop => format!("evloop     {}\n", verdict.text()),
        _ => format!("evloop     {} · {}\n", verdict.text(), figures(e)),
    }
}

/// The verdict table for the terminal.
pub fn table(d: &Diagnosis) -> String {
    let mut out = format!(
        "{:<28} {:>9} {:>6} {:>9} {:>8}  {}\n",
        "target", "blocked%", "cpu%", "stalls/s", "calls/s", "verdict"
    );
    for e in &d.entries {
        let _ = writeln!(
            out,
            "{:<28} {:>9.1} {:>6.1} {:>9.1} {:>8.1}  {}",
            truncate(&e.target, 28),
            e.blocked_pct,
            e.cpu_bound_pct,
            e.stalls_per_s,
            e.blocking_calls_per_s,
            Verdict::of(e).text()
        );
        if let Some(a) = &e.advice {
            let _ = writeln!(out, "{:<28} -> {a}", "");
        }
    }
    out
}

/// The culprit table (Markdown), worst first.
fn culprit_table(out: &mut String, culprits: &[Culprit]) {
    let _ = writeln!(
        out,
        "| kind | cause | count | total ms | max ms | where |\n|---|---|---:|---:|---:|---|"
    );
    for c in culprits.iter().take(8) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | `{}` |",
            serde_plain(&c.kind),
            c.syscall.as_deref().unwrap_or("cpu"),
            c.count,
            c.total_ms,
            c.max_ms,
            c.frame.replace('|', "\\|")
        );
    }
}

/// An enum's serde name.
fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// diagnosis.md.
pub fn markdown(d: &Diagnosis) -> String {
    let mut out = format!(
        "# Event-loop diagnosis: {}\n\nStall threshold {} ms. *blocked%*: share of the loops' wall time spent off-CPU outside their wait; *cpu%*: share spent in CPU-bound stalls; *calls/s*: calls that block (sleeps, file I/O, locks, waits) made on a loop.\n\n",
        d.app, d.threshold_ms
    );
    out.push_str("| target | loops | blocked % | cpu % | stalls/s | calls/s | iteration p99 | verdict |\n|---|---|---|---|---|---|---|---|\n");
    for e in &d.entries {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} µs | {} |",
            e.target,
            e.loop_threads.len(),
            e.blocked_pct,
            e.cpu_bound_pct,
            e.stalls_per_s,
            e.blocking_calls_per_s,
            e.iteration_p99_us,
            Verdict::of(e).text().replace('|', "\\|")
        );
    }
    for e in d.entries.iter().filter(|e| e.flagged) {
        let _ = writeln!(out, "\n## {}\n", e.target);
        if let Some(a) = &e.advice {
            let _ = writeln!(out, "Advice: {a}\n");
        }
        culprit_table(&mut out, &e.culprits);
        if let Some(c) = e.culprits.first() {
            out.push_str("\nExample stack of the worst culprit (root first):\n\n```\n");
            for f in &c.stack {
                out.push_str(f);
                out.push('\n');
            }
            out.push_str("```\n");
        }
    }
    out
}

/// The "Event loop" section of a run's report.md.
pub fn section(out: &mut String, e: &Entry) {
    let _ = writeln!(out, "\n## Event loop\n");
    let verdict = Verdict::of(e);
    if verdict == Verdict::NoLoop {
        let _ = writeln!(
            out,
            "Verdict: {}: no thread of the app waits in epoll between units of work.",
            verdict.text()
        );
        return;
    }
    let _ = writeln!(out, "Verdict: **{}**. {}.", verdict.text(), figures(e));
    if let Some(a) = &e.advice {
        let _ = writeln!(out, "\nAdvice: {a}");
    }
    if !e.culprits.is_empty() {
        out.push('\n');
        culprit_table(out, &e.culprits);
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::CulpritKind;

    fn entry(flagged: bool) -> Entry {
        Entry {
            target: "sleep-blocking /sleep/block".into(),
            event_loop: true,
            flagged,
            culprits: vec![Culprit {
                kind: CulpritKind::Stall,
                syscall: Some("clock_nanosleep".into()),
                frame: "sleep_blocking (app.py:271)".into(),
                ..Culprit::default()
            }],
            ..Entry::default()
        }
    }

    #[test]
    fn one_wording_everywhere() {
        let flagged = entry(true);
        let text = "flagged: clock_nanosleep via sleep_blocking (app.py:271)";
        assert_eq!(Verdict::of(&flagged).text(), text);
        let d = Diagnosis {
            entries: vec![flagged.clone(), entry(false)],
            ..Diagnosis::default()
        };
        assert!(table(&d).contains(text));
        assert!(markdown(&d).contains(text));
        assert!(markdown(&d).contains("| stall | clock_nanosleep |"));
        let mut md = String::new();
        section(&mut md, &flagged);
        assert!(md.contains(text));
        assert!(terminal_line(&flagged).contains(text));
        assert!(terminal_line(&entry(false)).starts_with("evloop     ok · 0 loop(s)"));
        let none = Entry::default();
        assert_eq!(terminal_line(&none), "evloop     no event loop\n");
    }
}
