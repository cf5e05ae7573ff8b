//! The target filter, shared counters and the stack map. Everything a probe records goes
//! through [`current_target`] or [`is_target_tid`] first.

use core::{
    intrinsics::{atomic_xadd, AtomicOrdering},
    ptr::read_volatile,
};

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray, StackTrace},
    programs::{tracing::StackIdContext, TracePointContext},
    EbpfContext,
};
use probes_common::{
    counters::{Counter, COUNTERS},
    stack::{NO_STACK, STACK_ENTRIES},
    target::{
        TaskState, MAX_CGROUP_LEVEL, TARGET_CGROUP_ENTRIES, TARGET_TGID_ENTRIES, TARGET_TID_ENTRIES,
    },
    tracepoint::{Field, CLONE_THREAD, EXIT_STATE_MASK},
    COMM_LEN,
};

pub const EEXIST: i32 = -17;
const EFAULT: i32 = -14;

#[map]
pub static TARGET_TGIDS: HashMap<u32, u32> = HashMap::with_max_entries(TARGET_TGID_ENTRIES, 0);

#[map]
pub static TARGET_TIDS: HashMap<u32, TaskState> = HashMap::with_max_entries(TARGET_TID_ENTRIES, 0);

#[map]
pub static TARGET_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(TARGET_CGROUP_ENTRIES, 0);

#[map]
pub static COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS, 0);

#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(STACK_ENTRIES, 0);

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

/// Adds one to a counter.
#[inline(always)]
pub fn bump(counter: Counter) {
    if let Some(slot) = COUNTS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, programs do not nest on one CPU for these hooks.
        unsafe { *slot += 1 };
    }
}

/// Adds `value` to the `u64` behind `ptr`, atomically.
#[inline(always)]
pub fn atomic_add(ptr: *mut u64, value: u64) {
    // SAFETY: `ptr` points into a map value, which is 8-byte aligned. The BPF target has no
    // `AtomicU64::fetch_add`; the intrinsic lowers to the BPF atomic add instruction.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(ptr, value) };
}

/// Reads a classic tracepoint field described by a global set from userspace.
///
/// The globals are `static mut` on purpose: an immutable all-zero global can be merged with
/// other zero constants, and the loader's overrides would then leak into those constants.
#[inline(always)]
pub fn read_field(ctx: &TracePointContext, field: *const Field) -> u64 {
    // SAFETY: the global is written by the loader before the program runs.
    let field = unsafe { read_volatile(field) };
    let offset = field.offset as usize;
    // SAFETY: `read_at` uses bpf_probe_read on the tracepoint record.
    unsafe {
        match field.size {
            8 => ctx.read_at::<u64>(offset).unwrap_or(0),
            4 => ctx.read_at::<u32>(offset).map(u64::from).unwrap_or(0),
            2 => ctx.read_at::<u16>(offset).map(u64::from).unwrap_or(0),
            _ => 0,
        }
    }
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

/// The current thread's name, zeroed when unavailable.
#[inline(always)]
pub fn current_comm() -> [u8; COMM_LEN] {
    bpf_get_current_comm().unwrap_or([0; COMM_LEN])
}

/// Kernel and user stack ids of the current thread; a failure is counted and stored as
/// [`NO_STACK`]. A sample taken in user mode has no kernel stack (EFAULT): that is not a loss.
#[inline(always)]
pub fn stack_ids<C: EbpfContext + StackIdContext>(
    ctx: &C,
    kernel_lost: Counter,
    user_lost: Counter,
) -> (i32, i32) {
    let kstack = match ctx.get_stackid(&STACKS, 0) {
        Ok(id) => id as i32,
        Err(EFAULT) => NO_STACK,
        Err(err) => stack_lost(err, kernel_lost),
    };
    let ustack = match ctx.get_stackid(&STACKS, u64::from(BPF_F_USER_STACK)) {
        Ok(id) => id as i32,
        Err(err) => stack_lost(err, user_lost),
    };
    (kstack, ustack)
}

#[inline(always)]
fn stack_lost(err: i32, lost: Counter) -> i32 {
    bump(lost);
    bump(match err {
        EEXIST => Counter::StackCollision,
        EFAULT => Counter::StackFault,
        _ => Counter::StackOther,
    });
    NO_STACK
}

/// Finds or creates the value for `key` in `map`, counting `full` when the map has no room.
#[inline(always)]
pub fn get_or_insert<K, V>(
    map: &HashMap<K, V>,
    key: &K,
    zero: &V,
    full: Counter,
) -> Option<*mut V> {
    if let Some(value) = map.get_ptr_mut(key) {
        return Some(value);
    }
    if let Err(err) = map.insert(key, zero, u64::from(BPF_NOEXIST)) {
        if err != EEXIST {
            bump(full);
            return None;
        }
    }
    map.get_ptr_mut(key)
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
        if TARGET_TGIDS.insert(&child, &1u32, 0).is_err() {
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

/// sched_process_exec: the process has a new image, so its Python entry (if any) is stale;
/// userspace looks at it again.
#[tracepoint]
pub fn target_exec(_ctx: TracePointContext) -> u32 {
    crate::python::forget((bpf_get_current_pid_tgid() >> 32) as u32);
    0
}
