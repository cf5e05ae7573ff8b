//! Stack-keyed aggregation, as used by the on-CPU and off-CPU probes.

use crate::{pod, COMM_LEN};

/// Depth of one stored stack (the kernel's PERF_MAX_STACK_DEPTH).
pub const MAX_STACK_DEPTH: usize = 127;

/// Entries in the shared stack-trace map. It is a hash table without chaining, so two
/// distinct stacks in one bucket collide and the later one is lost (and counted): n distinct
/// stacks collide about n² / (2 × entries) times. 65,536 entries cost 64 MiB of kernel
/// memory; 16,384 lost about 5% of the stacks of a busy Python app in 10 s.
pub const STACK_ENTRIES: u32 = 65536;

/// Stored instead of a stack id when `bpf_get_stackid` failed (the failure is counted).
pub const NO_STACK: i32 = -1;

/// Key of a stack-aggregated count: one process, one thread name, one kernel, one user and
/// one Python stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub tgid: u32,
    pub kstack: i32,
    pub ustack: i32,
    pub _pad: u32,
    /// Hash of the Python stack in the Python stacks map, or `python::PY_NO_STACK`.
    pub pystack: u64,
    pub comm: [u8; COMM_LEN],
}

pod!(StackKey);
