//! Facts about this machine, recorded with results: kernel, CPU model, online CPUs, and the
//! default split of the CPUs between the app and the load client.

use std::{path::Path, time::Duration};

/// The kernel release, e.g. `6.18.44`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The CPU model name.
pub fn cpu_model() -> Option<String> {
    use procfs::Current;
    procfs::CpuInfo::current()
        .ok()?
        .model_name(0)
        .map(str::to_string)
}

/// Online CPUs of this machine.
pub fn online_cpus() -> Vec<usize> {
    aya::util::online_cpus()
        .map(|c| c.into_iter().map(|c| c as usize).collect())
        .unwrap_or_else(|_| vec![0])
}

/// Parses a CPU list like `0,2-3`; the error is the part that is not a CPU or a range.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let bad = || part.to_string();
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if b < a {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(cpus)
}

/// A CPU list as text, with ranges: `0-3,6`.
pub fn cpu_list_text(cpus: &[usize]) -> String {
    let v: Vec<u64> = cpus.iter().map(|&c| c as u64).collect();
    crate::num::runs(&v).join(",")
}

/// The default split: the app gets the upper half of the CPUs, the client the rest.
pub fn default_cpus() -> (Vec<usize>, Vec<usize>) {
    let cpus = online_cpus();
    if cpus.len() < 2 {
        return (cpus.clone(), cpus);
    }
    let half = cpus.len() / 2;
    (cpus[half..].to_vec(), cpus[..half].to_vec())
}

/// The git commit of the checkout at `dir`, when it is one.
pub fn git_commit(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// runner's own CPU time (user, sys, in seconds) and peak RSS (MB) so far.
pub fn self_usage() -> (f64, f64, f64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(u.ru_utime), tv(u.ru_stime), u.ru_maxrss as f64 / 1024.0)
}

/// How busy each of `cpus` is over `over` (percent of its time running anything, stolen time
/// included).
pub fn busy_cpus(cpus: &[usize], over: Duration) -> Vec<(usize, f64)> {
    use procfs::CurrentSI;
    let look = || -> Option<Vec<(u64, u64)>> {
        let stats = procfs::KernelStats::current().ok()?;
        Some(
            stats
                .cpu_time
                .iter()
                .map(|c| {
                    let idle = c.idle + c.iowait.unwrap_or(0);
                    let all = c.user
                        + c.nice
                        + c.system
                        + c.irq.unwrap_or(0)
                        + c.softirq.unwrap_or(0)
                        + c.steal.unwrap_or(0)
                        + idle;
                    (all - idle, all)
                })
                .collect(),
        )
    };
    let Some(before) = look() else {
        return Vec::new();
    };
    std::thread::sleep(over);
    let Some(after) = look() else {
        return Vec::new();
    };
    cpus.iter()
        .filter_map(|&c| {
            let (b, a) = (before.get(c)?, after.get(c)?);
            let all = a.1.saturating_sub(b.1).max(1);
            Some((c, 100.0 * a.0.saturating_sub(b.0) as f64 / all as f64))
        })
        .collect()
}

/// Makes sure this process may open `need` files: raises the soft limit up to the hard one,
/// or says how far short it falls.
pub fn ensure_open_files(need: u64) -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    if soft >= need {
        return Ok(());
    }
    if hard < need {
        return Err(format!(
            "this needs about {need} open files, but the limit is {hard} (ulimit -Hn): raise it, or use fewer connections"
        ));
    }
    setrlimit(Resource::RLIMIT_NOFILE, need, hard).map_err(|e| e.to_string())
}
