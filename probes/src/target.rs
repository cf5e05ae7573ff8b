//! The target and its lifecycle: which processes and cgroups are recorded, the threads seen
//! so far, and the tracepoints that follow forks, exits and execs. Everything a probe records
//! goes through [`current_target`] or [`target_task`] first.

use core::ptr::read_volatile;

use aya_ebpf::{
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_pid_tgid,
    },
    macros::{map, tracepoint},
    maps::{Array, HashMap},
    programs::TracePointContext,
};
use probes_common::{
    counters::Counter,
    target::{
        id_bit, OutsideWord, TaskState, CGROUP_VERDICT_ENTRIES, MAX_CGROUP_LEVEL, TARGET_BIT_WORDS,
        TARGET_CGROUP_ENTRIES, TARGET_TGID_ENTRIES, TARGET_TID_ENTRIES,
    },
    tracepoint::{Field, CLONE_THREAD, EXIT_STATE_MASK},
};

use crate::kit::{atomic_add, atomic_clear_bits, atomic_set_bits, bump, read_field};

#[map]
pub static TARGET_TGIDS: HashMap<u32, u32> = HashMap::with_max_entries(TARGET_TGID_ENTRIES, 0);

#[map]
pub static TARGET_TIDS: HashMap<u32, TaskState> = HashMap::with_max_entries(TARGET_TID_ENTRIES, 0);

/// One bit per id (tgids and tids share the pid space), set for every process put in
/// TARGET_TGIDS (by userspace before the programs are attached, by `target_newtask` after)
/// and every thread put in TARGET_TIDS. A thread or process whose bit is clear is not in
/// those maps, so a syscall, switch or wakeup of anything else on the machine leaves after
/// an array lookup, which the verifier inlines, instead of hash lookups. Bits are never
/// cleared: a reused id only takes the longer path.
#[map]
pub static TARGET_BITS: Array<u64> = Array::with_max_entries(TARGET_BIT_WORDS, 0);

#[map]
pub static TARGET_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(TARGET_CGROUP_ENTRIES, 0);

/// With target cgroups: one bit per thread found outside them, so its next syscall or switch
/// leaves after array lookups. A word's bits count only while its epoch is MIGRATIONS: a
/// task moving between cgroups (`target_migrate`) voids them all, and a thread's bit is
/// cleared when its id is given to a new task or taken over by an exec.
#[map]
static OUTSIDE_BITS: Array<OutsideWord> = Array::with_max_entries(TARGET_BIT_WORDS, 0);

/// Moves of tasks between cgroups seen so far: the current epoch of OUTSIDE_BITS.
#[no_mangle]
static mut MIGRATIONS: u64 = 0;

/// Whether each cgroup seen so far lies in a target cgroup (key: cgroup id, value:
/// [`IN_TARGET`] or [`OUTSIDE`]).
#[map]
static CGROUP_VERDICTS: HashMap<u64, u32> = HashMap::with_max_entries(CGROUP_VERDICT_ENTRIES, 0);

const IN_TARGET: u32 = 1;
const OUTSIDE: u32 = 2;

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
    if marked(tid) {
        if let Some(state) = TARGET_TIDS.get_ptr_mut(&tid) {
            // SAFETY: `state` points into the map entry for `tid`.
            if unsafe { (*state).tgid } == tgid {
                return Some(Task { tgid, tid, state });
            }
        }
    }
    // A clear bit: the process is not in TARGET_TGIDS.
    // SAFETY: presence check only.
    let named = marked(tgid) && unsafe { TARGET_TGIDS.get(&tgid) }.is_some();
    if !named && !in_target_cgroup(tid) {
        return None;
    }
    let state = remember(tid, tgid)?;
    Some(Task { tgid, tid, state })
}

/// True when `id`'s bit is set in TARGET_BITS.
#[inline(always)]
fn marked(id: u32) -> bool {
    let (index, bit) = id_bit(id);
    TARGET_BITS.get(index).is_some_and(|word| word & bit != 0)
}

/// Sets `id`'s bit in TARGET_BITS.
#[inline(always)]
fn mark(id: u32) {
    let (index, bit) = id_bit(id);
    if let Some(word) = TARGET_BITS.get_ptr_mut(index) {
        atomic_set_bits(word, bit);
    }
}

/// The current epoch of OUTSIDE_BITS.
#[inline(always)]
fn migrations() -> u64 {
    // SAFETY: a plain read of a global that programs change only atomically.
    unsafe { read_volatile(&raw const MIGRATIONS) }
}

/// True when thread `tid` was found outside the target cgroups in the current epoch.
#[inline(always)]
fn found_outside(tid: u32) -> bool {
    let (index, bit) = id_bit(tid);
    OUTSIDE_BITS
        .get(index)
        .is_some_and(|w| w.epoch == migrations() && w.bits & bit != 0)
}

/// Records that thread `tid` was found outside in epoch `epoch` (read before the look). A
/// bit that may be stale is taken back: one missing only costs a look.
#[inline(always)]
fn set_outside(tid: u32, epoch: u64) {
    let (index, bit) = id_bit(tid);
    let Some(w) = OUTSIDE_BITS.get_ptr_mut(index) else {
        return;
    };
    // SAFETY: `w` points into the array's entry; concurrent writers can only lose bits.
    unsafe {
        if (*w).epoch != epoch {
            (*w).bits = 0;
            (*w).epoch = epoch;
        }
        atomic_set_bits(&raw mut (*w).bits, bit);
        if migrations() != epoch {
            atomic_clear_bits(&raw mut (*w).bits, bit);
        }
    }
}

/// Clears thread `tid`'s bit in OUTSIDE_BITS: where it is must be looked up again.
#[inline(always)]
fn unsettle(tid: u32) {
    let (index, bit) = id_bit(tid);
    if let Some(w) = OUTSIDE_BITS.get_ptr_mut(index) {
        // SAFETY: read first so that the common case (a clear bit) writes nothing.
        if unsafe { (*w).bits } & bit != 0 {
            atomic_clear_bits(unsafe { &raw mut (*w).bits }, bit);
        }
    }
}

/// True when some target is a cgroup: any process may then be in it.
#[inline(always)]
fn watches_cgroups() -> bool {
    // SAFETY: the global is written by the loader before the program runs.
    unsafe { read_volatile(&raw const CGROUP_LEVELS) != 0 }
}

/// Starts tracking thread `tid` of process `tgid`.
#[inline(always)]
fn remember(tid: u32, tgid: u32) -> Option<*mut TaskState> {
    let fresh = TaskState {
        tgid,
        ..TaskState::default()
    };
    // Marked first, so that no hook on another CPU skips the entry once it exists.
    mark(tid);
    if TARGET_TIDS.insert(&tid, &fresh, 0).is_err() {
        bump(Counter::TargetTidsFull);
        return None;
    }
    TARGET_TIDS.get_ptr_mut(&tid)
}

/// The state of target thread `tid`, for hooks that run in another task's context.
#[inline(always)]
pub fn target_task(tid: u32) -> Option<*mut TaskState> {
    if tid == 0 || !marked(tid) {
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

/// True when the current thread `tid`'s cgroup lies in a target cgroup's subtree. A thread
/// found outside is marked in OUTSIDE_BITS; the answer per cgroup id is kept in
/// CGROUP_VERDICTS (a cgroup never moves, and the target cgroups are set before the
/// programs are attached), so a look costs one helper call and one lookup, whatever the
/// depth.
#[inline(always)]
fn in_target_cgroup(tid: u32) -> bool {
    if !watches_cgroups() || found_outside(tid) {
        return false;
    }
    let epoch = migrations();
    // SAFETY: plain helper call.
    let own = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: read only.
    let verdict = match unsafe { CGROUP_VERDICTS.get(&own) } {
        Some(&verdict) => verdict,
        None => {
            let verdict = cgroup_verdict();
            // Kept only when no task moved during the walk (this one may have moved away
            // and back). A full cache only means the next look walks the levels again.
            // SAFETY: plain helper call.
            if unsafe { bpf_get_current_cgroup_id() } == own && migrations() == epoch {
                let _ = CGROUP_VERDICTS.insert(&own, &verdict, 0);
            }
            verdict
        }
    };
    if verdict == IN_TARGET {
        return true;
    }
    set_outside(tid, epoch);
    false
}

/// Whether the current task's cgroup has a target cgroup among its ancestors (itself
/// included).
#[inline(always)]
fn cgroup_verdict() -> u32 {
    // SAFETY: the global is written by the loader before the program runs.
    let levels = unsafe { read_volatile(&raw const CGROUP_LEVELS) };
    let mut level = 0u32;
    while level <= MAX_CGROUP_LEVEL {
        if levels & (1 << level) != 0 {
            // SAFETY: plain helper call.
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
            // SAFETY: presence check only.
            if unsafe { TARGET_CGROUPS.get(&id) }.is_some() {
                return IN_TARGET;
            }
        }
        level += 1;
    }
    OUTSIDE
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
    let child = read_field(ctx, &raw const NEWTASK_PID) as u32;
    // A new task may have an id that an earlier thread outside the target had.
    unsettle(child);
    let Some(parent) = current_target() else {
        return;
    };
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
        mark(child);
        bump(Counter::ForksFollowed);
        crate::python::inherit(parent.tgid, child);
        child
    };
    let _ = remember(child, child_tgid);
}

/// cgroup_attach_task: a task moved to another cgroup (a container runtime placing its first
/// process, say): every thread found outside is looked at again.
#[tracepoint]
pub fn target_migrate(_ctx: TracePointContext) -> u32 {
    // The event names the group leader only, even when all its threads moved.
    atomic_add(&raw mut MIGRATIONS, 1);
    0
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
    // A thread other than the leader that execs takes the leader's id, and its bit.
    unsettle(tgid);
    if let Some(origin) = TARGET_TGIDS.get_ptr_mut(&tgid) {
        // SAFETY: `origin` points into the map entry for `tgid`.
        unsafe { *origin = tgid };
    }
    0
}
