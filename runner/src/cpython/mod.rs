//! CPython in a target process: finding the interpreter and its version, the struct layout
//! of that version, and reading code objects for symbolization. Everything is read with
//! `process_vm_readv`; the process is never paused. [`walk`] mirrors the BPF walker.

pub mod code;
pub mod discover;
pub mod install;
pub mod layout;
pub mod linetable;
pub mod memory;
#[cfg(test)]
mod synthetic;
pub mod walk;
