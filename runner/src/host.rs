//! Facts about this machine, recorded with results: kernel, CPU model, online CPUs, and the
//! default split of the CPUs between the app and the load client.

use std::path::Path;

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
