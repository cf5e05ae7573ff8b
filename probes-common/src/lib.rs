//! Types shared by the BPF programs in `probes` and the userspace side in `runner`.
//!
//! Every struct is `#[repr(C)]` with explicit padding fields, so its layout is the same on
//! both sides and the kernel never sees uninitialised bytes in map keys.
#![no_std]

pub mod counters;
pub mod evloop;
pub mod hist;
pub mod offcpu;
pub mod oncpu;
pub mod python;
pub mod runqlat;
pub mod stack;
pub mod syscalls;
pub mod target;
pub mod tracepoint;

/// Length of a task's command name in the kernel, NUL included.
pub const COMM_LEN: usize = 16;

/// Implements `aya::Pod` for types that cross the user/kernel boundary.
macro_rules! pod {
    ($($t:ty),* $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: the type is `#[repr(C)]`, `Copy`, and has no implicit padding.
            unsafe impl aya::Pod for $t {}
        )*
    };
}
pub(crate) use pod;
