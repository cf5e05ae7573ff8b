//! The terminal summary of a profile run.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, time::Duration};

use super::diagnosis;
use crate::{
    interference::Interference,
    num::ms,
    results::{run::ClientUsage, summary::Summary},
    run_dir,
};

/// The summary printed after a profile: load, what the probes saw (`probes`: lines from
/// [`super::recording::lines`]), the event-loop verdict and runner's own cost.
pub fn profile(s: &Summary, probes: &str, elapsed: Duration, client: &ClientUsage) -> String {
    let l = &s.load;
    let mut out = format!(
        "{} · {} · {} · {:.1}s of load\n",
        s.app,
        s.scenario,
        s.status,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "load       ok/s {:.1} · p50 {:.2} ms · p95 {:.2} ms · p99 {:.2} ms · errors {}",
        l.rps,
        ms(l.latency_us.p50),
        ms(l.latency_us.p95),
        ms(l.latency_us.p99),
        l.error_total
    );
    if let Some(i) = &s.python {
        let _ = writeln!(out, "interpreter {}", super::run::interpreter_line(i));
    }
    out.push_str(probes);
    if let Some(d) = &s.diagnosis {
        out.push_str(&diagnosis::terminal_line(d));
    }
    if let Some(i) = &s.interference {
        out.push_str(&interference_lines(i));
    }
    let _ = writeln!(
        out,
        "client     runner used {:.2} s CPU, max RSS {:.1} MB",
        client.cpu_user_s + client.cpu_sys_s,
        client.max_rss_mb
    );
    out
}

/// What else the machine did: nothing seen, or each disturbance with its seconds.
fn interference_lines(i: &Interference) -> String {
    if !i.disturbed {
        return "machine    no interference seen (steal, other processes, throttling, stalls)\n"
            .into();
    }
    let mut out = String::from(
        "DISTURBED  the machine interfered with this run; compare its figures with care:\n",
    );
    for f in &i.findings {
        let _ = writeln!(out, "             {f}");
    }
    out
}

/// `results: DIR` and the paths of the files a user opens first.
pub fn results_list(dir: &Path, artifacts: &BTreeMap<String, String>) -> String {
    let mut out = format!("results: {}\n", dir.display());
    for name in run_dir::listed(artifacts) {
        let _ = writeln!(out, "  {}", dir.join(name).display());
    }
    out
}
