//! BPF programs of the runner. Each probe lives in its own module; `kit` holds the counters,
//! the stack map and the helpers they share, `target` the target set and its lifecycle.
//! Built for bpfel-unknown-none by runner/build.rs.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod evloop;
mod kit;
mod offcpu;
mod oncpu;
mod python;
mod runqlat;
mod syscalls;
mod target;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
