//! What a recording saw, presented: its files (folded stacks, flamegraphs, syscall and
//! run-queue JSON, resources CSV) and its lines in a terminal summary.

use super::{flamegraph, target};
use crate::record::Recording;

/// The recording's files: (name, bytes). Without probes only resources.csv.
pub fn files(rec: &Recording) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    let mut files = vec![("resources.csv", rec.sampler.to_csv())];
    if rec.counters.is_none() {
        return Ok(files);
    }
    let on_title = format!("On-CPU samples ({} Hz)", rec.config.freq_hz);
    files.extend([
        ("oncpu.folded", rec.oncpu.to_bytes()),
        (
            "oncpu.svg",
            flamegraph::render(&rec.oncpu, &on_title, "samples")?,
        ),
        ("offcpu.folded", rec.offcpu.to_bytes()),
        (
            "offcpu.svg",
            flamegraph::render(&rec.offcpu, "Off-CPU time (microseconds)", "us")?,
        ),
        ("syscalls.json", serde_json::to_vec_pretty(&rec.syscalls)?),
        ("runqlat.json", serde_json::to_vec_pretty(&rec.runq)?),
    ]);
    Ok(files)
}

/// Why process `pid` has no Python frames: `process 812 (CPython 3.10, EXE): no Python
/// frames: REASON`.
pub fn unsupported_line(pid: u32, u: &crate::probe::python::Unsupported) -> String {
    let what = match (&u.version, &u.executable) {
        (Some(v), Some(exe)) => format!(" (CPython {v}, {exe})"),
        (Some(v), None) => format!(" (CPython {v})"),
        (None, Some(exe)) => format!(" ({exe})"),
        (None, None) => String::new(),
    };
    format!("process {pid}{what}: no Python frames: {}", u.reason)
}

/// Text lines of what the probes and the sampler saw, for terminal summaries.
pub fn lines(rec: &Recording) -> String {
    let mut out = String::new();
    let r = rec.sampler.summary();
    out.push_str(&format!(
        "resources  cpu avg {:.1}% max {:.1}% · rss avg {:.1} MB max {:.1} MB · threads max {}\n",
        r.cpu_pct_avg, r.cpu_pct_max, r.rss_mb_avg, r.rss_mb_max, r.threads_max
    ));
    for c in &rec.cgroups {
        out.push_str(&format!("cgroup     {}\n", target::cgroup_line(c)));
    }
    if let Some(line) = target::processes_line(&rec.processes) {
        out.push_str(&format!("processes  {line}\n"));
    }
    if rec.counters.is_none() {
        return out;
    }
    out.push_str(&format!(
        "on-CPU     {} samples in {} stacks\n",
        rec.oncpu_samples(),
        rec.oncpu.iter().count()
    ));
    for f in rec.top_frames(5) {
        out.push_str(&format!("             {:>5.1}%  {}\n", f.share, f.frame));
    }
    let python = rec.top_python_frames(5);
    if !python.is_empty() {
        out.push_str("           top Python functions (innermost Python frame):\n");
        for f in python {
            out.push_str(&format!("             {:>5.1}%  {}\n", f.share, f.frame));
        }
    }
    if !rec.python.processes.is_empty() {
        let p = &rec.python;
        let mut versions: Vec<&str> = rec
            .python
            .processes
            .iter()
            .map(|p| p.version.as_str())
            .collect();
        versions.sort_unstable();
        versions.dedup();
        out.push_str(&format!(
            "python     {} process(es) (CPython {}), {} stacks walked, {} samples without Python state, {} read faults, {} truncated\n",
            rec.python.processes.len(),
            versions.join(", "),
            p.walked,
            p.no_thread_state,
            p.read_faults,
            p.truncated,
        ));
    }
    for (pid, u) in &rec.python.unsupported {
        out.push_str(&format!("python     {}\n", unsupported_line(*pid, u)));
    }
    if let Some(line) = target::unnamed_line(&rec.symbols) {
        out.push_str(&format!("symbols    {line}\n"));
    }
    if let Some(u) = rec.symbols.unnamed_in(&rec.oncpu) {
        for line in target::unnamed_samples_lines(&u) {
            out.push_str(&format!("             {line}\n"));
        }
    }
    out.push_str(&format!(
        "off-CPU    {:.1} ms blocked, {:.1} ms preempted\n",
        rec.offcpu_totals.blocked_us as f64 / 1000.0,
        rec.offcpu_totals.preempted_us as f64 / 1000.0
    ));
    out.push_str(&format!(
        "run queue  {} waits, p50 {} us, p99 {} us\n",
        rec.runq.count, rec.runq.p50_us, rec.runq.p99_us
    ));
    out.push_str("syscalls   top 5 by time:\n");
    for (name, s) in rec.syscalls.by_total_time().into_iter().take(5) {
        out.push_str(&format!(
            "             {name:<18} {:>10} calls {:>8} errors {:>14.1} us  p99 {} us\n",
            s.count, s.errors, s.total_us, s.p99_us
        ));
    }
    match &rec.counters {
        Some(c) if c.lost_total() > 0 => {
            let lost: Vec<String> = c
                .lost_detail()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!(
                "LOST       {} records: {}\n",
                c.lost_total(),
                lost.join(", ")
            ));
        }
        _ => out.push_str("lost       nothing\n"),
    }
    out
}
