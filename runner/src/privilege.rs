//! Whether this process may load BPF programs and open perf events.

use procfs::process::Process;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// One line that says what the probes need and why.
pub const NEEDS_ROOT: &str = "this needs root (or CAP_BPF and CAP_PERFMON): it loads BPF programs into the kernel and opens perf events on every CPU; run it with sudo";

/// What the current process is allowed to do.
#[derive(Clone, Copy, Debug)]
pub struct Privileges {
    pub root: bool,
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
    pub cap_sys_admin: bool,
}

impl Privileges {
    /// Reads the effective uid and capabilities of this process.
    pub fn current() -> Self {
        let capeff = Process::myself()
            .and_then(|p| p.status())
            .map(|s| s.capeff)
            .unwrap_or(0);
        let has = |cap: u32| capeff & (1u64 << cap) != 0;
        Self {
            root: nix::unistd::geteuid().is_root(),
            cap_bpf: has(CAP_BPF),
            cap_perfmon: has(CAP_PERFMON),
            cap_sys_admin: has(CAP_SYS_ADMIN),
        }
    }

    /// True when BPF programs can be loaded and perf events opened.
    pub fn can_probe(&self) -> bool {
        self.root || self.cap_sys_admin || (self.cap_bpf && self.cap_perfmon)
    }
}
