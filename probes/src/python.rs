//! Python stacks: for a thread of a CPython process registered in PY_PROCS, find its
//! PyThreadState by `native_thread_id`, walk `_PyInterpreterFrame.previous` from the current
//! frame and store (code object, instruction) pairs, leaf first, under a hash of the frames.
//! Userspace turns them into `qualname (file:line)`.

use aya_ebpf::{
    bindings::{bpf_pidns_info, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_get_ns_current_pid_tgid, bpf_probe_read_user, bpf_probe_read_user_buf},
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use probes_common::{
    counters::Counter,
    python::{
        frame_fields, shared_instr, PyFrame, PyProc, PyScratch, PyStack, PyStackKey, PY_MAX_FRAMES,
        PY_MAX_THREADS, PY_NONE, PY_NO_STACK, PY_PROC_ENTRIES, PY_STACK_ENTRIES,
        PY_STACK_TRUNCATED,
    },
    stack::{hash_word, stack_id, HASH_SEED},
};

use crate::kit::{bump, Scratch, EEXIST, SCRATCH_SLOTS};
use crate::target::Task;

/// CPython processes of the target and where their interpreter lives (key: tgid).
#[map]
pub static PY_PROCS: HashMap<u32, PyProc> = HashMap::with_max_entries(PY_PROC_ENTRIES, 0);

/// Python stacks by process and hash.
#[map]
static PY_STACKS: HashMap<PyStackKey, PyStack> =
    HashMap::with_max_entries(PY_STACK_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
static PY_SCRATCH: PerCpuArray<PyScratch> = PerCpuArray::with_max_entries(SCRATCH_SLOTS, 0);

/// The current thread's Python stack id, or [`PY_NO_STACK`] when its process is not Python
/// or the thread has no Python frames (counted, as are faulted reads).
#[inline(always)]
pub fn python_stack(task: &Task, scratch: Scratch) -> u64 {
    // SAFETY: the value is only read.
    let Some(proc_) = (unsafe { PY_PROCS.get(&task.tgid) }) else {
        return PY_NO_STACK;
    };
    match walk(task, proc_, scratch) {
        Ok(id) => {
            bump(Counter::PyStacks);
            id
        }
        Err(counter) => {
            bump(counter);
            PY_NO_STACK
        }
    }
}

/// A forked child shares its parent's address space layout, so it inherits its entry.
#[inline(always)]
pub fn inherit(parent_tgid: u32, child_tgid: u32) {
    // SAFETY: the value is copied into the map by the helper.
    if let Some(proc_) = unsafe { PY_PROCS.get(&parent_tgid) } {
        if PY_PROCS.insert(&child_tgid, proc_, 0).is_err() {
            bump(Counter::PyProcsFull);
        }
    }
}

/// The process replaced its image or exited: its entry no longer applies.
#[inline(always)]
pub fn forget(tgid: u32) {
    // SAFETY: presence check only.
    if unsafe { PY_PROCS.get(&tgid) }.is_some() {
        let _ = PY_PROCS.remove(&tgid);
    }
}

#[inline(always)]
fn read_u64(addr: u64) -> Result<u64, Counter> {
    // SAFETY: bpf_probe_read_user checks the address; a fault is an error.
    unsafe { bpf_probe_read_user(addr as *const u64) }.map_err(|_| Counter::PyReadFault)
}

/// The current thread's id as its process sees it (what CPython stores in
/// `native_thread_id`): inside the process's PID namespace when userspace named one.
#[inline(always)]
fn native_tid(task: &Task, p: &PyProc) -> u64 {
    if p.pidns_ino != 0 {
        let mut ns = bpf_pidns_info { pid: 0, tgid: 0 };
        // SAFETY: the helper writes `size_of::<bpf_pidns_info>()` bytes into `ns`.
        let ret = unsafe {
            bpf_get_ns_current_pid_tgid(
                p.pidns_dev,
                p.pidns_ino,
                &mut ns,
                core::mem::size_of::<bpf_pidns_info>() as u32,
            )
        };
        if ret == 0 {
            return u64::from(ns.pid);
        }
    }
    u64::from(task.tid)
}

/// The thread's PyThreadState: the cached one if it still names this thread, else found by
/// walking the interpreter's thread list.
#[inline(always)]
fn thread_state(task: &Task, p: &PyProc) -> Result<u64, Counter> {
    let tid = native_tid(task, p);
    // SAFETY: `task.state` points into the thread's entry.
    let cached = unsafe { (*task.state).py_tstate };
    if cached != 0 && read_u64(cached + u64::from(p.tstate_native_thread_id)) == Ok(tid) {
        return Ok(cached);
    }
    let interp = read_u64(p.interp_head_addr)?;
    if interp == 0 {
        return Err(Counter::PyNoThreadState);
    }
    let mut tstate = read_u64(interp + u64::from(p.interp_threads_head))?;
    let mut i = 0;
    while i < PY_MAX_THREADS && tstate != 0 {
        if read_u64(tstate + u64::from(p.tstate_native_thread_id))? == tid {
            // SAFETY: as above; only this thread's samples write it.
            unsafe { (*task.state).py_tstate = tstate };
            return Ok(tstate);
        }
        tstate = read_u64(tstate + u64::from(p.tstate_next))?;
        i += 1;
    }
    Err(Counter::PyNoThreadState)
}

#[inline(always)]
fn walk(task: &Task, p: &PyProc, scratch: Scratch) -> Result<u64, Counter> {
    let tstate = thread_state(task, p)?;
    let mut frame = read_u64(tstate + u64::from(p.tstate_frame))?;
    if p.cframe_current_frame != PY_NONE && frame != 0 {
        frame = read_u64(frame + u64::from(p.cframe_current_frame))?;
    }
    if frame == 0 {
        return Err(Counter::PyNoThreadState);
    }
    let scratch = PY_SCRATCH
        .get_ptr_mut(scratch as u32)
        .ok_or(Counter::PyReadFault)?;
    // SAFETY: this CPU's slot for this kind of program; they do not nest (see `Scratch`).
    let scratch = unsafe { &mut *scratch };
    let mut hash = HASH_SEED;
    let mut len = 0usize;
    // One slot per frame walked; a shim frame keeps its slot with a null code pointer
    // (userspace skips it), so the loop has a single counter.
    while len < PY_MAX_FRAMES && frame != 0 {
        // SAFETY: bpf_probe_read_user_buf checks the address.
        unsafe { bpf_probe_read_user_buf(frame as *const u8, &mut scratch.frame.0) }
            .map_err(|_| Counter::PyReadFault)?;
        let f = frame_fields(&scratch.frame, p);
        let (code, instr) = (f.code, shared_instr(&f, p, |a| read_u64(a).ok()));
        frame = f.previous;
        scratch.stack.frames[len] = PyFrame { code, instr };
        hash = hash_word(hash_word(hash, code), instr);
        len += 1;
    }
    let mut flags = 0;
    if frame != 0 {
        flags = PY_STACK_TRUNCATED;
        bump(Counter::PyTruncated);
    }
    scratch.stack.len = len as u32;
    scratch.stack.flags = flags;
    hash = hash_word(hash, u64::from(flags));
    let id = stack_id(hash);
    let key = PyStackKey {
        tgid: task.tgid,
        _pad: 0,
        hash: id,
    };
    // SAFETY: presence check only.
    if unsafe { PY_STACKS.get(&key) }.is_none() {
        if let Err(err) = PY_STACKS.insert(&key, &scratch.stack, u64::from(BPF_NOEXIST)) {
            if err != EEXIST {
                return Err(Counter::PyStackMapFull);
            }
        }
    }
    Ok(id)
}
