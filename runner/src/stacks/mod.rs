//! Stacks: the folded format, and the assembly of named stacks from what the probes recorded
//! (kernel symbols, native symbols, Python frames).

pub mod assemble;
pub mod folded;
pub mod symbolize;

pub use folded::Folded;
