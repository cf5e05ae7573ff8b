//! What the probes record: a set of processes (tgids) and/or cgroup v2 subtrees.

/// Processes named as targets, plus the children they fork (key: tgid, value: 1).
pub const TARGET_TGID_ENTRIES: u32 = 8192;
/// Threads known to belong to the target (key: tid, value: tgid).
pub const TARGET_TID_ENTRIES: u32 = 65536;
/// Target cgroup v2 ids (key: cgroup id, value: 1).
pub const TARGET_CGROUP_ENTRIES: u32 = 64;
/// Deepest cgroup v2 level a target cgroup may sit at.
pub const MAX_CGROUP_LEVEL: u32 = 31;
