//! `runner doctor`: checks that this machine can run the probes, and says what to do about
//! each thing that is missing.

use std::{fmt, fs, path::Path};

use crate::{cgroup, privilege::Privileges, probe::tracefs};

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        })
    }
}

/// One check and what to do when it does not pass.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

fn check(
    name: &'static str,
    status: Status,
    detail: impl Into<String>,
    fix: Option<&str>,
) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        fix: fix.map(str::to_string),
    }
}

/// Tracepoints the probes attach to.
const EVENTS: &[(&str, &str)] = &[
    ("sched", "sched_switch"),
    ("sched", "sched_wakeup"),
    ("sched", "sched_wakeup_new"),
    ("sched", "sched_process_exit"),
    ("sched", "sched_process_exec"),
    ("task", "task_newtask"),
    ("cgroup", "cgroup_attach_task"),
    ("raw_syscalls", "sys_enter"),
    ("raw_syscalls", "sys_exit"),
];

/// Runs every check.
pub fn run_checks() -> Vec<Check> {
    let privileges = Privileges::current();
    vec![
        check_privileges(&privileges),
        check_btf(),
        check_tracefs(&privileges),
        check_cgroups(),
        check_paranoid(&privileges),
        check_build_tools(),
    ]
}

fn check_privileges(p: &Privileges) -> Check {
    if p.root {
        check("privileges", Status::Ok, "running as root", None)
    } else if p.can_probe() {
        check(
            "privileges",
            Status::Ok,
            "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) are effective",
            None,
        )
    } else {
        check(
            "privileges",
            Status::Fail,
            "not root, and CAP_BPF + CAP_PERFMON are not effective",
            Some("run runner with sudo, or grant it CAP_BPF and CAP_PERFMON (setcap cap_bpf,cap_perfmon+ep runner)"),
        )
    }
}

fn check_btf() -> Check {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        check(
            "BTF",
            Status::Ok,
            "/sys/kernel/btf/vmlinux is present",
            None,
        )
    } else {
        check(
            "BTF",
            Status::Warn,
            "/sys/kernel/btf/vmlinux is missing; the current probes use classic tracepoints and do not need it",
            Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y for BTF-based probes"),
        )
    }
}

fn check_tracefs(p: &Privileges) -> Check {
    let Some(root) = tracefs::mounted_root() else {
        let (status, fix) = if p.root {
            (
                Status::Warn,
                "runner probe mounts it itself; or: mount -t tracefs tracefs /sys/kernel/tracing",
            )
        } else {
            (
                Status::Fail,
                "mount -t tracefs tracefs /sys/kernel/tracing (as root)",
            )
        };
        return check("tracefs", status, "tracefs is not mounted", Some(fix));
    };
    let missing: Vec<String> = EVENTS
        .iter()
        .filter(|(cat, name)| {
            !root
                .join("events")
                .join(cat)
                .join(name)
                .join("format")
                .exists()
        })
        .map(|(cat, name)| format!("{cat}/{name}"))
        .collect();
    if missing.is_empty() {
        check(
            "tracefs",
            Status::Ok,
            format!(
                "mounted at {}; all {} tracepoints present",
                root.display(),
                EVENTS.len()
            ),
            None,
        )
    } else {
        check(
            "tracefs",
            Status::Fail,
            format!(
                "mounted at {}, but tracepoints are missing: {}",
                root.display(),
                missing.join(", ")
            ),
            Some("use a kernel with CONFIG_FTRACE and scheduler/syscall tracepoints enabled"),
        )
    }
}

fn check_cgroups() -> Check {
    match cgroup::layout() {
        cgroup::Layout::Unified(root) => check(
            "cgroups",
            Status::Ok,
            format!("cgroup v2 at {}", root.display()),
            None,
        ),
        cgroup::Layout::Hybrid(root) => check(
            "cgroups",
            Status::Ok,
            format!(
                "hybrid: v1 controllers under /sys/fs/cgroup, cgroup v2 at {} (give --cgroup paths there)",
                root.display()
            ),
            None,
        ),
        cgroup::Layout::Legacy => check(
            "cgroups",
            Status::Warn,
            "no cgroup v2 hierarchy: --cgroup targets are unavailable (--pid and commands work)",
            Some("mount cgroup2 (mount -t cgroup2 none /sys/fs/cgroup/unified) or boot with systemd.unified_cgroup_hierarchy=1"),
        ),
    }
}

fn check_paranoid(p: &Privileges) -> Check {
    let value = fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    match value {
        None => check(
            "perf_event_paranoid",
            Status::Fail,
            "/proc/sys/kernel/perf_event_paranoid is missing: the kernel has no perf events",
            Some("use a kernel built with CONFIG_PERF_EVENTS=y"),
        ),
        Some(v) if p.root || p.cap_perfmon || p.cap_sys_admin => check(
            "perf_event_paranoid",
            Status::Ok,
            format!("{v} (root or CAP_PERFMON is not limited by it)"),
            None,
        ),
        Some(v) if v <= 1 => check("perf_event_paranoid", Status::Ok, v.to_string(), None),
        Some(v) => check(
            "perf_event_paranoid",
            Status::Fail,
            format!("{v}: unprivileged users cannot sample every CPU"),
            Some("run as root, or: sysctl kernel.perf_event_paranoid=1"),
        ),
    }
}

fn check_build_tools() -> Check {
    let rustc = Path::new("/usr/bin/rustc").exists()
        && Path::new("/usr/lib/rustlib/bpfel-unknown-none").exists();
    let home = std::env::var_os("HOME").unwrap_or_default();
    let linker = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("bpf-linker").is_file()))
        .unwrap_or(false)
        || Path::new(&home).join(".cargo/bin/bpf-linker").is_file();
    let mut missing = Vec::new();
    if !rustc {
        missing.push("Debian rustc with the BPF core (rustc-web, libstd-rust-web-dev-bpf)");
    }
    if !linker {
        missing.push("bpf-linker");
    }
    if missing.is_empty() {
        check(
            "BPF build tools",
            Status::Ok,
            "Debian rustc with BPF core, and bpf-linker",
            None,
        )
    } else {
        check(
            "BPF build tools",
            Status::Warn,
            format!(
                "missing: {} (only needed to rebuild runner; this binary embeds its probes)",
                missing.join(", ")
            ),
            Some("cargo xtask setup"),
        )
    }
}

/// The checks as a table, fixes indented under the checks that need them.
/// What earlier runners left behind (cleaned up at this start), and the runs alive now.
pub fn render_runs(
    reaped: &[crate::journal::Reaped],
    live: &[(u32, Vec<usize>, Vec<usize>)],
) -> String {
    let mut out = String::new();
    if reaped.is_empty() {
        out.push_str("ok    leftovers  no earlier runner left anything behind\n");
    }
    for r in reaped {
        out.push_str(&format!(
            "fixed leftovers  runner pid {} (`{}`) ended without cleaning up: {}\n",
            r.pid,
            r.command,
            if r.done.is_empty() {
                "nothing was left".to_string()
            } else {
                r.done.join("; ")
            }
        ));
    }
    for (pid, app, client) in live {
        out.push_str(&format!(
            "info  runs       runner pid {pid} is running (app CPUs {}, client CPUs {})\n",
            crate::host::cpu_list_text(app),
            crate::host::cpu_list_text(client)
        ));
    }
    out
}

pub fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            c.status, c.name, c.detail
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      {:<width$}  fix: {}\n", "", fix));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fixes_under_failures() {
        let text = render(&[
            check("a", Status::Ok, "fine", None),
            check("longer", Status::Fail, "broken", Some("do this")),
        ]);
        assert_eq!(
            text,
            "ok    a       fine\nFAIL  longer  broken\n              fix: do this\n"
        );
    }

    #[test]
    fn every_check_runs() {
        let checks = run_checks();
        assert_eq!(checks.len(), 6);
        assert!(checks.iter().all(|c| !c.detail.is_empty()));
    }
}
