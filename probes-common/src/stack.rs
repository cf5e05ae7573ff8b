//! Native stacks, stored once each under a hash of their content, and stack-keyed
//! aggregation as used by the on-CPU and off-CPU probes.

use crate::{pod, COMM_LEN};

/// Depth of one stored stack (the kernel's PERF_MAX_STACK_DEPTH).
pub const MAX_STACK_DEPTH: usize = 127;

/// Distinct stacks the stacks map holds (kernel and user stacks together). The map is a
/// preallocated hash table keyed by content hash (about 1.1 KiB per entry, 17 MiB in all),
/// so distinct stacks never evict each other: a stack is only lost when the map is full,
/// and that is counted. A busy Python app shows a few thousand distinct stacks in 30 s.
pub const STACK_ENTRIES: u32 = 16384;

/// Stored instead of a stack id when no stack was taken (a sample in user mode has no
/// kernel stack) or taking it failed (counted).
pub const NO_STACK: u64 = 0;

/// One native stack, leaf first: `len` addresses of `ips` are used, the rest are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Stack {
    pub len: u32,
    pub _pad: u32,
    pub ips: [u64; MAX_STACK_DEPTH],
}

impl Stack {
    /// The used addresses, leaf first.
    pub fn frames(&self) -> &[u64] {
        &self.ips[..(self.len as usize).min(MAX_STACK_DEPTH)]
    }
}

/// Mixes one more word into a stack hash (FNV-1a over 64-bit words).
#[inline(always)]
pub const fn hash_word(hash: u64, word: u64) -> u64 {
    (hash ^ word).wrapping_mul(0x0000_0100_0000_01b3)
}

/// Starting value of a stack hash.
pub const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// The id a hash is stored under: never [`NO_STACK`].
#[inline(always)]
pub const fn stack_id(hash: u64) -> u64 {
    if hash == NO_STACK {
        1
    } else {
        hash
    }
}

/// Key of a stack-aggregated count: one process, one thread name, one kernel, one user and
/// one Python stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub tgid: u32,
    pub _pad: u32,
    /// Ids in the stacks map, or [`NO_STACK`].
    pub kstack: u64,
    pub ustack: u64,
    /// Hash of the Python stack in the Python stacks map, or `python::PY_NO_STACK`.
    pub pystack: u64,
    pub comm: [u8; COMM_LEN],
}

pod!(Stack, StackKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_and_its_key_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<Stack>(), 8 + 8 * MAX_STACK_DEPTH);
        assert_eq!(core::mem::size_of::<StackKey>(), 32 + COMM_LEN);
    }

    #[test]
    fn no_hash_is_stored_as_no_stack() {
        assert_eq!(stack_id(NO_STACK), 1);
        assert_eq!(stack_id(42), 42);
    }
}
