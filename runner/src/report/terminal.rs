//! The terminal summary of a profile run.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, time::Duration};

use super::diagnosis;
use crate::{
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
    out.push_str(probes);
    if let Some(d) = &s.diagnosis {
        out.push_str(&diagnosis::terminal_line(d));
    }
    let _ = writeln!(
        out,
        "client     runner used {:.2} s CPU, max RSS {:.1} MB",
        client.cpu_user_s + client.cpu_sys_s,
        client.max_rss_mb
    );
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
