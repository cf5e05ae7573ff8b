//! CPython frame walking: where the interpreter's structures live in a target process
//! (found by userspace), and the Python stacks the BPF programs record.

use crate::pod;

/// Deepest Python stack recorded; deeper stacks are cut at the root end and flagged.
pub const PY_MAX_FRAMES: usize = 128;
/// Threads of one interpreter searched for the current thread's state.
pub const PY_MAX_THREADS: u32 = 64;
/// Python processes tracked at once (key: tgid).
pub const PY_PROC_ENTRIES: u32 = 4096;
/// Distinct Python stacks kept (key: hash of the frames).
pub const PY_STACK_ENTRIES: u32 = 16384;
/// Bytes of an `_PyInterpreterFrame` read at once; every field the walker uses lies inside.
pub const PY_FRAME_READ: usize = 80;
/// Stored instead of a Python stack id when the thread had none.
pub const PY_NO_STACK: u64 = 0;
/// [`PyStack::flags`]: the walk stopped at [`PY_MAX_FRAMES`] before the root frame.
pub const PY_STACK_TRUNCATED: u32 = 1;
/// An offset that does not apply to this version.
pub const PY_NONE: u32 = u32::MAX;

/// Where the walker finds things in one CPython process. Offsets are in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyProc {
    /// Address of `_PyRuntime.interpreters.head` in the process.
    pub interp_head_addr: u64,
    /// `PyInterpreterState.threads.head`.
    pub interp_threads_head: u32,
    /// `PyThreadState.next`.
    pub tstate_next: u32,
    /// `PyThreadState.native_thread_id`.
    pub tstate_native_thread_id: u32,
    /// `PyThreadState.cframe` (3.11, 3.12) or `PyThreadState.current_frame` (3.13+).
    pub tstate_frame: u32,
    /// `_PyCFrame.current_frame`, or [`PY_NONE`] when `tstate_frame` is the frame itself.
    pub cframe_current_frame: u32,
    /// `_PyInterpreterFrame.f_code` / `f_executable`.
    pub frame_code: u32,
    /// `_PyInterpreterFrame.previous`.
    pub frame_previous: u32,
    /// `_PyInterpreterFrame.prev_instr` / `instr_ptr`.
    pub frame_instr: u32,
    /// `_PyInterpreterFrame.owner` (one byte).
    pub frame_owner: u32,
    /// The owner value of shim frames owned by the C stack, or [`PY_NONE`].
    pub owner_cstack: u32,
    /// Device and inode of the process's PID namespace (`stat /proc/PID/ns/pid`), so the walker
    /// matches `native_thread_id` (the thread id inside that namespace, e.g. a container's)
    /// against the current thread's id there. 0: compare with the thread id as the kernel's
    /// initial namespace sees it.
    pub pidns_dev: u64,
    pub pidns_ino: u64,
}

/// One Python frame: its code object and the instruction it is at.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyFrame {
    pub code: u64,
    /// Address of the current (3.13+) or last started (3.11, 3.12) instruction.
    pub instr: u64,
}

/// Key of the Python stacks map: the process and the hash of its frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PyStackKey {
    pub tgid: u32,
    pub _pad: u32,
    pub hash: u64,
}

/// A Python stack, leaf first. A shim frame owned by the C stack has a null code pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PyStack {
    pub len: u32,
    pub flags: u32,
    pub frames: [PyFrame; PY_MAX_FRAMES],
}

impl Default for PyStack {
    fn default() -> Self {
        Self {
            len: 0,
            flags: 0,
            frames: [PyFrame::default(); PY_MAX_FRAMES],
        }
    }
}

/// Per-CPU working space of the walker: the stack being built and one frame's bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PyScratch {
    pub stack: PyStack,
    pub frame: [u8; PY_FRAME_READ],
}

/// Mixes one more word into a stack hash (FNV-1a over 64-bit words).
#[inline(always)]
pub const fn hash_word(hash: u64, word: u64) -> u64 {
    (hash ^ word).wrapping_mul(0x0000_0100_0000_01b3)
}

/// Starting value of a stack hash.
pub const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

pod!(PyProc, PyFrame, PyStack, PyStackKey);
