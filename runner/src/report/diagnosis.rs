//! The event-loop diagnosis, presented: the verdict (worded here only), the terminal table,
//! diagnosis.md, and the "Event loop" section of a run's report.

use std::fmt::Write as _;

use crate::diagnose::{Cause, Culprit, Diagnosis, Entry, Verdict};

/// The verdict of an entry in words: `no event loop`, `ok`, `saturated (...)`, or
/// `flagged: CULPRIT`. The one place a verdict is worded.
pub fn verdict(e: &Entry) -> String {
    match e.verdict {
        Verdict::NoLoop => "no event loop".into(),
        Verdict::Ok => "ok".into(),
        Verdict::Saturated => format!(
            "saturated, not blocked (loop busy {:.0}%, {:.1} ready events per iteration)",
            e.busy_pct, e.events_per_iteration
        ),
        Verdict::Flagged => format!(
            "flagged: {}",
            e.culprits
                .first()
                .map(describe)
                .unwrap_or_else(|| "no culprit named".into())
        ),
    }
}

/// A culprit in a few words: `syscall via frame`, `CPU in frame`, `GIL or lock wait...`.
pub fn describe(c: &Culprit) -> String {
    match (c.cause, &c.syscall) {
        (Cause::Lock, _) => format!("lock wait in {}", c.frame),
        (Cause::Gil, _) => format!("GIL wait in {}", c.frame),
        (Cause::Kernel, Some(sys)) => format!("kernel time in {sys} via {}", c.frame),
        (_, Some(sys)) => format!("{sys} via {}", c.frame),
        (Cause::Kernel, None) => format!(
            "asleep outside any call (page faults or memory reclaim) in {}",
            c.frame
        ),
        (_, None) => format!("CPU in {}", c.frame),
    }
}

/// The one-line figures of an entry with loops (utilisation left out when the verdict
/// already gives it).
fn figures(e: &Entry) -> String {
    let busy = match e.verdict {
        Verdict::Saturated => String::new(),
        _ => format!(
            ", busy {:.1}%, {:.1} events/iteration",
            e.busy_pct, e.events_per_iteration
        ),
    };
    let cpu = e
        .cpu_us_per_request
        .map(|us| format!("; app CPU {us:.1} us per response"))
        .unwrap_or_default();
    format!(
        "{} loop(s){busy}; stalls {:.1}/s: blocking {:.1}% · cpu {:.1}% · lock {:.1}% · GIL {:.1}% · kernel {:.1}%; {:.1} blocking calls/s; iteration p99 {} us{cpu}",
        e.loop_threads.len(),
        e.stalls_per_s,
        e.blocking_pct,
        e.cpu_bound_pct,
        e.lock_pct,
        e.gil_pct,
        e.kernel_pct,
        e.blocking_calls_per_s,
        e.iteration_p99_us
    )
}

/// The terminal line of a run's diagnosis.
pub fn terminal_line(e: &Entry) -> String {
    match e.verdict {
        Verdict::NoLoop => format!("evloop     {}\n", verdict(e)),
        _ => format!("evloop     {} · {}\n", verdict(e), figures(e)),
    }
}

/// The verdict table for the terminal.
pub fn table(d: &Diagnosis) -> String {
    let mut out = format!(
        "{:<28} {:>6} {:>7} {:>6} {:>6} {:>6} {:>9} {:>8} {:>9}  {}\n",
        "target",
        "busy%",
        "block%",
        "cpu%",
        "lock%",
        "gil%",
        "stalls/s",
        "calls/s",
        "us/resp",
        "verdict"
    );
    for e in &d.entries {
        let _ = writeln!(
            out,
            "{:<28} {:>6.1} {:>7.1} {:>6.1} {:>6.1} {:>6.1} {:>9.1} {:>8.1} {:>9}  {}",
            truncate(&e.target, 28),
            e.busy_pct,
            e.blocking_pct,
            e.cpu_bound_pct,
            e.lock_pct,
            e.gil_pct,
            e.stalls_per_s,
            e.blocking_calls_per_s,
            e.cpu_us_per_request
                .map_or_else(|| "-".into(), |us| format!("{us:.1}")),
            verdict(e)
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
        "| kind | cause | syscall | count | total ms | max ms | where |\n|---|---|---|---:|---:|---:|---|"
    );
    for c in culprits.iter().take(8) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1} | `{}` |",
            serde_plain(&c.kind),
            serde_plain(&c.cause),
            c.syscall.as_deref().unwrap_or("-"),
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
        "# Event-loop diagnosis: {}\n\nStall threshold {} ms: a stall is one callback's stretch of work (between the socket calls a loop makes) that held the loop that long. *busy%*: share of the window the busiest loop spent working; *block%*, *cpu%*, *lock%*, *GIL%*: shares of the loops' time in stalls asleep in blocking calls, running code, waiting for a lock, waiting for the GIL; *calls/s*: calls that block (sleeps, file I/O, locks, waits) made on a loop.\n\n",
        d.app, d.threshold_ms
    );
    if let Some(i) = &d.python {
        let _ = writeln!(out, "Interpreter: {}.\n", super::run::interpreter_line(i));
    }
    out.push_str("| target | loops | busy % | events/iteration | block % | cpu % | lock % | GIL % | kernel % | stalls/s | calls/s | iteration p99 | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for e in &d.entries {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} µs | {} |",
            e.target,
            e.loop_threads.len(),
            e.busy_pct,
            e.events_per_iteration,
            e.blocking_pct,
            e.cpu_bound_pct,
            e.lock_pct,
            e.gil_pct,
            e.kernel_pct,
            e.stalls_per_s,
            e.blocking_calls_per_s,
            e.iteration_p99_us,
            verdict(e).replace('|', "\\|")
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
    if e.verdict == Verdict::NoLoop {
        let _ = writeln!(
            out,
            "Verdict: {}: no thread of the app waits in epoll between units of work.",
            verdict(e)
        );
        return;
    }
    let _ = writeln!(out, "Verdict: **{}**. {}.", verdict(e), figures(e));
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

    fn entry(verdict: Verdict) -> Entry {
        Entry {
            target: "sleep-blocking /sleep/block".into(),
            event_loop: true,
            verdict,
            flagged: verdict == Verdict::Flagged,
            busy_pct: 97.0,
            events_per_iteration: 12.5,
            culprits: vec![Culprit {
                kind: CulpritKind::Stall,
                cause: Cause::Blocking,
                syscall: Some("clock_nanosleep".into()),
                frame: "sleep_blocking (app.py:271)".into(),
                ..Culprit::default()
            }],
            ..Entry::default()
        }
    }

    #[test]
    fn one_wording_everywhere() {
        let flagged = entry(Verdict::Flagged);
        let text = "flagged: clock_nanosleep via sleep_blocking (app.py:271)";
        assert_eq!(verdict(&flagged), text);
        let d = Diagnosis {
            entries: vec![
                flagged.clone(),
                entry(Verdict::Ok),
                entry(Verdict::Saturated),
            ],
            ..Diagnosis::default()
        };
        assert!(table(&d).contains(text));
        assert!(markdown(&d).contains(text));
        assert!(markdown(&d).contains("| stall | blocking | clock_nanosleep |"));
        let mut md = String::new();
        section(&mut md, &flagged);
        assert!(md.contains(text));
        assert!(terminal_line(&flagged).contains(text));
        assert!(terminal_line(&entry(Verdict::Ok)).starts_with("evloop     ok · 0 loop(s)"));
        let saturated = terminal_line(&entry(Verdict::Saturated));
        assert!(
            saturated.contains(
                "saturated, not blocked (loop busy 97%, 12.5 ready events per iteration)"
            ),
            "{saturated}"
        );
        assert!(table(&d).contains("saturated"));
        assert_eq!(
            terminal_line(&Entry::default()),
            "evloop     no event loop\n"
        );
    }
}
