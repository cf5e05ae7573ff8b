//! The kit every probe uses (model: libbpf-tools' maps.bpf.h): the loss and event counters,
//! the stack map and stack ids, tracepoint field reads, atomic adds, and get-or-insert on
//! hash maps. Nothing here knows what the target is; that is [`crate::target`].

use core::{
    intrinsics::{atomic_and, atomic_or, atomic_xadd, AtomicOrdering},
    ptr::read_volatile,
};

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::bpf_get_current_comm,
    macros::map,
    maps::{HashMap, PerCpuArray, StackTrace},
    programs::{tracing::StackIdContext, TracePointContext},
    EbpfContext,
};
use probes_common::{
    counters::{Counter, COUNTERS},
    stack::{NO_STACK, STACK_ENTRIES},
    tracepoint::Field,
    COMM_LEN,
};

pub const EEXIST: i32 = -17;
const EFAULT: i32 = -14;

#[map]
pub static COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS, 0);

#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(STACK_ENTRIES, 0);

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
