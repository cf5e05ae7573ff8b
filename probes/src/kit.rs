//! The kit every probe uses (model: libbpf-tools' maps.bpf.h): the loss and event counters,
//! the stack map and stack ids, tracepoint field reads, atomic adds, and get-or-insert on
//! hash maps. Nothing here knows what the target is; that is [`crate::target`].

use core::{
    ffi::c_void,
    intrinsics::{atomic_and, atomic_or, atomic_xadd, AtomicOrdering},
    mem::size_of,
    ptr::read_volatile,
};

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{bpf_get_current_comm, bpf_get_stack},
    macros::map,
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
    EbpfContext,
};
use probes_common::{
    counters::{Counter, COUNTERS},
    stack::{hash_word, stack_id, Stack, HASH_SEED, MAX_STACK_DEPTH, NO_STACK, STACK_ENTRIES},
    tracepoint::Field,
    COMM_LEN,
};

pub const EEXIST: i32 = -17;
const EFAULT: i32 = -14;
const E2BIG: i32 = -7;

#[map]
pub static COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS, 0);

/// Native stacks by id (see [`store_stack`]).
#[map]
static STACKS: HashMap<u64, Stack> = HashMap::with_max_entries(STACK_ENTRIES, 0);

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

/// Sets the bits of `value` in the `u64` behind `ptr`, atomically.
#[inline(always)]
pub fn atomic_set_bits(ptr: *mut u64, value: u64) {
    // SAFETY: as for `atomic_add`; lowers to the BPF atomic or instruction.
    unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(ptr, value) };
}

/// Clears the bits of `value` in the `u64` behind `ptr`, atomically.
#[inline(always)]
pub fn atomic_clear_bits(ptr: *mut u64, value: u64) {
    // SAFETY: as for `atomic_add`; lowers to the BPF atomic and instruction.
    unsafe { atomic_and::<u64, u64, { AtomicOrdering::Relaxed }>(ptr, !value) };
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

/// The current thread's name, zeroed when unavailable.
#[inline(always)]
pub fn current_comm() -> [u8; COMM_LEN] {
    bpf_get_current_comm().unwrap_or([0; COMM_LEN])
}

/// A per-CPU scratch slot. A perf_event sample runs in NMI and can interrupt a raw
/// tracepoint program on the same CPU (classic tracepoint programs and samples exclude each
/// other), so samples and other programs never share a slot.
#[derive(Clone, Copy)]
pub enum Scratch {
    Sample = 0,
    Event = 1,
}

/// Number of [`Scratch`] slots.
pub const SCRATCH_SLOTS: u32 = 2;

#[map]
static STACK_SCRATCH: PerCpuArray<Stack> = PerCpuArray::with_max_entries(SCRATCH_SLOTS, 0);

/// Kernel and user stack ids of the current thread; a failure is counted and stored as
/// [`NO_STACK`]. A sample taken in user mode has no kernel stack: that is not a loss.
#[inline(always)]
pub fn stack_ids<C: EbpfContext>(
    ctx: &C,
    scratch: Scratch,
    kernel_lost: Counter,
    user_lost: Counter,
) -> (u64, u64) {
    // In user mode the kernel stack is empty (NO_STACK); a fault is a real failure.
    let kstack = match store_stack(ctx, scratch, 0) {
        Ok(id) => id,
        Err(err) => stack_lost(err, kernel_lost),
    };
    let ustack = match store_stack(ctx, scratch, u64::from(BPF_F_USER_STACK)) {
        Ok(NO_STACK) => stack_lost(EFAULT, user_lost),
        Ok(id) => id,
        Err(err) => stack_lost(err, user_lost),
    };
    (kstack, ustack)
}

/// Takes the current stack (`flags` as for `bpf_get_stack`) into the scratch slot and
/// stores it under the hash of its addresses, unless it is there already. Returns its id,
/// [`NO_STACK`] for an empty stack, or an errno: EFAULT when the stack could not be had,
/// E2BIG when the map is full (or, in a sample, its free list was busy on another CPU),
/// EEXIST when another stack has the same hash.
///
/// The map is preallocated: elements allocated on demand can fail in NMI context (a
/// perf_event sample) when the allocator's per-CPU cache is empty.
#[inline(always)]
fn store_stack<C: EbpfContext>(ctx: &C, scratch: Scratch, flags: u64) -> Result<u64, i32> {
    let stack = STACK_SCRATCH.get_ptr_mut(scratch as u32).ok_or(EFAULT)?;
    // SAFETY: this CPU's slot for this kind of program; they do not nest (see `Scratch`).
    let stack = unsafe { &mut *stack };
    // SAFETY: the helper writes at most `size` bytes into the slot and zeroes the rest.
    let bytes = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            stack.ips.as_mut_ptr() as *mut c_void,
            size_of::<[u64; MAX_STACK_DEPTH]>() as u32,
            flags,
        )
    };
    if bytes < 0 {
        return Err(bytes as i32);
    }
    let len = (bytes as usize / size_of::<u64>()).min(MAX_STACK_DEPTH);
    if len == 0 {
        return Ok(NO_STACK);
    }
    let mut hash = HASH_SEED;
    for i in 0..MAX_STACK_DEPTH {
        if i >= len {
            break;
        }
        hash = hash_word(hash, stack.ips[i]);
    }
    stack.len = len as u32;
    let id = stack_id(hash_word(hash, len as u64));
    // SAFETY: the value is only read.
    if let Some(stored) = unsafe { STACKS.get(&id) } {
        return same_stack(id, stored, stack, len);
    }
    match STACKS.insert(&id, &*stack, u64::from(BPF_NOEXIST)) {
        Ok(()) => Ok(id),
        // Another CPU stored a stack under this id in between.
        // SAFETY: the value is only read.
        Err(EEXIST) => match unsafe { STACKS.get(&id) } {
            Some(stored) => same_stack(id, stored, stack, len),
            None => Ok(id),
        },
        Err(err) => Err(err as i32),
    }
}

/// `id` when the stack stored under it is `stack` (`len` addresses, 1 to
/// [`MAX_STACK_DEPTH`]), else EEXIST. A 64-bit hash shared by two stacks is unlikely;
/// comparing the length and both ends makes most such cases counted rather than silent.
#[inline(always)]
fn same_stack(id: u64, stored: &Stack, stack: &Stack, len: usize) -> Result<u64, i32> {
    // `len` comes from a register the verifier has bounded; `stack.len` is a load.
    let last = len - 1;
    if stored.len != stack.len
        || stored.ips[0] != stack.ips[0]
        || last >= MAX_STACK_DEPTH
        || stored.ips[last] != stack.ips[last]
    {
        return Err(EEXIST);
    }
    Ok(id)
}

#[inline(always)]
fn stack_lost(err: i32, lost: Counter) -> u64 {
    bump(lost);
    bump(match err {
        EEXIST => Counter::StackCollision,
        EFAULT => Counter::StackFault,
        E2BIG => Counter::StackMapFull,
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
