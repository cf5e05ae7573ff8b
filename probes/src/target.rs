//! The target and its lifecycle: which processes and cgroups are recorded, the threads seen
//! so far, and the tracepoints that follow forks, exits and execs. Everything a probe records
//! goes through [`current_target`] or [`target_task`] first.

use core::ptr::read_volatile;

use aya_ebpf::{
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_pid_tgid},
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use probes_common::{
    counters::Counter,
    target::{
        TaskState, MAX_CGROUP_LEVEL, TARGET_CGROUP_ENTRIES, TARGET_TGID_ENTRIES, TARGET_TID_ENTRIES,
    },
    tracepoint::{Field, CLONE_THREAD, EXIT_STATE_MASK},
};

use crate::kit::{bump, read_field};

#[map]
pub static TARGET_TGIDS: HashMap<u32, u32> = HashMap::with_max_entries(TARGET_TGID_ENTRIES, 0);

#[map]
pub static TARGET_TIDS: HashMap<u32, TaskState> = HashMap::with_max_entries(TARGET_TID_ENTRIES, 0);

#[map]
pub static TARGET_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(TARGET_CGROUP_ENTRIES, 0);

/// 1: processes forked by a target process become targets too.
#[no_mangle]
static mut FOLLOW_FORK: u32 = 0;
/// Bit `n` set: some target cgroup sits at level `n` of the cgroup v2 hierarchy.
#[no_mangle]
static mut CGROUP_LEVELS: u32 = 0;
#[no_mangle]
static mut NEWTASK_PID: Field = Field { offset: 0, size: 0 };
#[no_mangle]
static mut NEWTASK_FLAGS: Field = Field { offset: 0, size: 0 };
#[no_mangle]
static mut EXIT_PID: Field = Field { offset: 0, size: 0 };

/// A thread of the target, as seen from the current context.
#[derive(Clone, Copy)]
pub struct Task {
    pub tgid: u32,
    pub tid: u32,
    /// The thread's entry in TARGET_TIDS.
    pub state: *mut TaskState,
}

/// The current thread, when it belongs to the target. Remembers the thread on first sight.
#[inline(always)]
pub fn current_target() -> Option<Task> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    if tid == 0 {
        return None;
    }
    if let Some(state) = TARGET_TIDS.get_ptr_mut(&tid) {
        // SAFETY: `state` points into the map entry for `tid`.
        if unsafe { (*state).tgid } == tgid {
            return Some(Task { tgid, tid, state });
        }
    }
    if !current_process_is_target(tgid) {
        return None;
    }
    let state = remember(tid, tgid)?;
    Some(Task { tgid, tid, state })
}

/// Starts tracking thread `tid` of process `tgid`.
#[inline(always)]
fn remember(tid: u32, tgid: u32) -> Option<*mut TaskState> {
    let fresh = TaskState {
        tgid,
        ..TaskState::default()
    };
    if TARGET_TIDS.insert(&tid, &fresh, 0).is_err() {
        bump(Counter::TargetTidsFull);
        return None;
    }
    TARGET_TIDS.get_ptr_mut(&tid)
}

/// The state of target thread `tid`, for hooks that run in another task's context.
#[inline(always)]
pub fn target_task(tid: u32) -> Option<*mut TaskState> {
    if tid == 0 {
        return None;
    }
    TARGET_TIDS.get_ptr_mut(&tid)
}

/// The thread being switched out at sched_switch, when it is a target. A thread making its
/// last switch-out (it has exited) is forgotten instead.
#[inline(always)]
pub fn switching_out(prev_state: u64) -> Option<Task> {
    if prev_state & EXIT_STATE_MASK != 0 {
        let tid = bpf_get_current_pid_tgid() as u32;
        if target_task(tid).is_some() {
            let _ = TARGET_TIDS.remove(&tid);
        }
        return None;
    }
    current_target()
}

#[inline(always)]
fn current_process_is_target(tgid: u32) -> bool {
    // SAFETY: presence check only.
    if unsafe { TARGET_TGIDS.get(&tgid) }.is_some() {
        return true;
    }
    // SAFETY: the global is written by the loader before the program runs.
    let levels = unsafe { read_volatile(&raw const CGROUP_LEVELS) };
    if levels == 0 {
        return false;
    }
    let mut level = 0u32;
    while level <= MAX_CGROUP_LEVEL {
        if levels & (1 << level) != 0 {
            // SAFETY: plain helper call.
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
            // SAFETY: presence check only.
            if unsafe { TARGET_CGROUPS.get(&id) }.is_some() {
                return true;
            }
        }
        level += 1;
    }
    false
}

/// task_newtask runs in the parent: threads of a target join the target, and so do child
/// processes when FOLLOW_FORK is set.
#[tracepoint]
pub fn target_newtask(ctx: TracePointContext) -> u32 {
    try_target_newtask(&ctx);
    0
}

#[inline(always)]
fn try_target_newtask(ctx: &TracePointContext) {
    let Some(parent) = current_target() else {
        return;
    };
    let child = read_field(ctx, &raw const NEWTASK_PID) as u32;
    let flags = read_field(ctx, &raw const NEWTASK_FLAGS);
    let child_tgid = if flags & CLONE_THREAD != 0 {
        parent.tgid
    } else {
        // SAFETY: the global is written by the loader before the program runs.
        if unsafe { read_volatile(&raw const FOLLOW_FORK) } == 0 {
            return;
        }
        if TARGET_TGIDS.insert(&child, &parent.tgid, 0).is_err() {
            bump(Counter::TargetTgidsFull);
            return;
        }
        bump(Counter::ForksFollowed);
        crate::python::inherit(parent.tgid, child);
        child
    };
    let _ = remember(child, child_tgid);
}

/// sched_process_exit: forget the exiting thread, so its entry does not outlive it. (Its
/// last switch-out, seen by `switching_out`, forgets it too.)
#[tracepoint]
pub fn target_exit(ctx: TracePointContext) -> u32 {
    let tid = read_field(&ctx, &raw const EXIT_PID) as u32;
    if target_task(tid).is_some() {
        let _ = TARGET_TIDS.remove(&tid);
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tid == tgid {
        crate::python::forget(tgid);
    }
    0
}

/// sched_process_exec: the process has a new image, so its Python entry (if any) is stale
/// (userspace looks at it again), and it no longer has its parent's address space.
#[tracepoint]
pub fn target_exec(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    crate::python::forget(tgid);
    if let Some(origin) = TARGET_TGIDS.get_ptr_mut(&tgid) {
        // SAFETY: `origin` points into the map entry for `tgid`.
        unsafe { *origin = tgid };
    }
    0
}
