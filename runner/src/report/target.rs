//! A running target presented: what it is (container, image, engine, cgroup, limits,
//! restarts), its processes with their in-container PIDs, its cgroup's own counters, and the
//! objects whose frames could not be named.

use std::fmt::Write as _;

use crate::{
    diagnose::Diagnosis,
    stacks::symbolize::SymbolStats,
    target::{
        cgroup::{CgroupResources, Limits},
        process::ProcessFacts,
        TargetFacts,
    },
};

/// Processes listed before the rest are counted.
const MAX_PROCESSES: usize = 20;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn secs(ns: u64) -> String {
    format!("{:.2} s", ns as f64 / 1e9)
}

/// The limits in words: `CPU quota 1 CPUs · cpuset 0-1 · memory 512.0 MiB`.
pub fn limits(l: &Limits) -> String {
    format!(
        "CPU quota {} · cpuset {} · memory limit {}",
        l.cpu_quota_cores
            .map(|c| format!("{c} CPUs"))
            .unwrap_or_else(|| "none".into()),
        l.cpuset.as_deref().unwrap_or("any"),
        l.memory_max_bytes.map(mib).unwrap_or_else(|| "none".into())
    )
}

/// One line of a cgroup's own counters over the run.
pub fn cgroup_line(c: &CgroupResources) -> String {
    let mut parts = Vec::new();
    if let Some(ns) = c.cpu_ns {
        let split = match (c.cpu_user_ns, c.cpu_system_ns) {
            (Some(u), Some(s)) => format!("; user {}, sys {}", secs(u), secs(s)),
            _ => String::new(),
        };
        parts.push(format!(
            "CPU {} ({:.1}% of one CPU{split})",
            secs(ns),
            c.cpu_pct_avg.unwrap_or(0.0)
        ));
    }
    if let Some(now) = c.memory_bytes {
        let mut m = format!("memory {} at the end", mib(now));
        if let Some(max) = c.memory_max_bytes {
            let _ = write!(m, ", at most {} during the run", mib(max));
        }
        if let Some(peak) = c.memory_peak_bytes {
            let _ = write!(m, ", peak {} since the cgroup was created", mib(peak));
        }
        parts.push(m);
    }
    if let (Some(periods), Some(throttled)) = (c.nr_periods, c.nr_throttled) {
        parts.push(format!(
            "throttled in {throttled} of {periods} CPU periods ({:.1} ms)",
            c.throttled_ns.unwrap_or(0) as f64 / 1e6
        ));
    }
    if parts.is_empty() {
        parts.push("no counters readable".into());
    }
    parts.join(" · ")
}

/// Processes in another PID namespace, host PID first: `8074 (1 inside) python3`; None
/// when every process is in runner's namespace.
pub fn processes_line(ps: &[ProcessFacts]) -> Option<String> {
    let inner: Vec<&ProcessFacts> = ps.iter().filter(|p| p.ns_pid.is_some()).collect();
    if inner.is_empty() {
        return None;
    }
    let mut shown: Vec<String> = inner
        .iter()
        .take(MAX_PROCESSES / 2)
        .map(|p| format!("{} ({} inside) {}", p.pid, p.ns_pid.unwrap_or(0), p.comm))
        .collect();
    if inner.len() > shown.len() {
        shown.push(format!("{} more", inner.len() - shown.len()));
    }
    Some(format!(
        "{} process(es) in their own PID namespace: {}",
        inner.len(),
        shown.join(", ")
    ))
}

/// The share of on-CPU samples with native frames without names, per object with why and
/// the fix: one line each.
pub fn unnamed_samples_lines(u: &crate::stacks::symbolize::UnnamedNative) -> Vec<String> {
    let mut lines = vec![format!(
        "{:.1}% of on-CPU samples have native frames without names",
        u.share
    )];
    for o in &u.objects {
        lines.push(format!(
            "{:.1}% in {} ({}): {}",
            o.share, o.object, o.reason, o.fix
        ));
    }
    lines
}

/// Objects whose frames show as `[object]` because they have no symbol table or could not
/// be read; None when there are none.
pub fn unnamed_line(s: &SymbolStats) -> Option<String> {
    let list = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(object, frames)| format!("{object} ({frames})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !s.stripped.is_empty() {
        parts.push(format!(
            "stripped, frames shown as [file]: {}",
            list(&s.stripped)
        ));
    }
    if !s.unreadable.is_empty() {
        parts.push(format!("unreadable: {}", list(&s.unreadable)));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The target's section of report.md.
pub fn section(out: &mut String, t: &TargetFacts, processes: &[ProcessFacts]) {
    let _ = writeln!(out, "\n## Target\n");
    let _ = writeln!(
        out,
        "A running {} (`{}`), not started, changed or stopped by runner.\n",
        t.kind, t.name
    );
    if let Some(c) = &t.container {
        let _ = writeln!(out, "| container | image | engine | state at start | restarts | started |\n|---|---|---|---|---:|---|");
        let _ = writeln!(
            out,
            "| `{}` ({}) | {} | {} | {} | {} | {} |",
            c.name,
            &c.id[..c.id.len().min(12)],
            c.image.as_deref().unwrap_or("-"),
            c.engine,
            c.state,
            c.restart_count,
            c.started_at.as_deref().unwrap_or("-")
        );
    }
    if let Some(dir) = &t.cgroup {
        let _ = writeln!(out, "\ncgroup `{}`.", dir.display());
    }
    let _ = writeln!(out, "\nLimits: {}.", limits(&t.limits));
    let list: Vec<&ProcessFacts> = if processes.is_empty() {
        t.processes.iter().collect()
    } else {
        processes.iter().collect()
    };
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n| PID | PID inside | command |\n|---:|---:|---|");
    for p in list.iter().take(MAX_PROCESSES) {
        let command = if p.cmdline.is_empty() {
            &p.comm
        } else {
            &p.cmdline
        };
        let _ = writeln!(
            out,
            "| {} | {} | `{}` |",
            p.pid,
            p.ns_pid
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            command.replace('|', "\\|")
        );
    }
    if list.len() > MAX_PROCESSES {
        let _ = writeln!(out, "\n{} more processes.", list.len() - MAX_PROCESSES);
    }
}

/// What diagnosis.md adds for a running target: the failure, if the run ended early, and
/// the target's section.
pub fn diagnosis_section(d: &Diagnosis) -> String {
    let mut out = String::new();
    if let Some(f) = &d.failure {
        let _ = writeln!(
            out,
            "\n> Failed: {f}. The entries cover the load until then."
        );
    }
    if let Some(t) = &d.target {
        section(&mut out, t, &[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_was_measured() {
        let c = CgroupResources {
            cpu_ns: Some(2_000_000_000),
            cpu_pct_avg: Some(50.0),
            memory_bytes: Some(20 << 20),
            nr_periods: Some(10),
            nr_throttled: Some(3),
            throttled_ns: Some(4_000_000),
            ..Default::default()
        };
        let line = cgroup_line(&c);
        assert!(line.starts_with("CPU 2.00 s (50.0% of one CPU)"), "{line}");
        assert!(line.contains("memory 20.0 MiB at the end"), "{line}");
        assert!(
            line.contains("throttled in 3 of 10 CPU periods (4.0 ms)"),
            "{line}"
        );
        let ps = vec![
            ProcessFacts {
                pid: 800,
                ns_pid: Some(1),
                comm: "python3".into(),
                cmdline: String::new(),
            },
            ProcessFacts {
                pid: 900,
                ns_pid: None,
                comm: "sh".into(),
                cmdline: String::new(),
            },
        ];
        assert_eq!(
            processes_line(&ps).unwrap(),
            "1 process(es) in their own PID namespace: 800 (1 inside) python3"
        );
        assert_eq!(processes_line(&ps[1..]), None);
        let mut s = SymbolStats::default();
        assert_eq!(unnamed_line(&s), None);
        s.stripped.insert("/usr/lib/libc.so.6".into(), 7);
        assert_eq!(
            unnamed_line(&s).unwrap(),
            "stripped, frames shown as [file]: /usr/lib/libc.so.6 (7)"
        );
    }
}
