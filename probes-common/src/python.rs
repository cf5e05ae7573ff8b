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

/// Where the walker finds things in one CPython process. Offsets are in bytes. Everything
/// that differs between CPython versions and builds is here, as data: the walker has no
/// per-version branches.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyProc {
    /// Address of `_PyRuntime.interpreters.head` in the process.
    pub interp_head_addr: u64,
    /// Bits kept of the frame's code pointer: `!1` where `f_executable` is a tagged
    /// `_PyStackRef` (3.14+), all of them before.
    pub frame_code_mask: u64,
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
    /// Owner values from this one up mark frames that run no Python code of their own (C
    /// stack shims, interpreter entry and base frames), or [`PY_NONE`].
    pub owner_shim: u32,
    /// `_PyInterpreterFrame.tlbc_index` (int32; free-threaded 3.14+), or [`PY_NONE`].
    pub frame_tlbc_index: u32,
    /// `PyCodeObject.co_tlbc`, the thread-local bytecode copies (free-threaded 3.14+).
    pub code_tlbc: u32,
    /// `PyCodeObject.co_code_adaptive`, where the shared bytecode starts.
    pub code_adaptive: u32,
    pub _pad: u32,
    /// Device and inode of the process's PID namespace (`stat /proc/PID/ns/pid`), so the walker
    /// matches `native_thread_id` (the thread id inside that namespace, e.g. a container's)
    /// against the current thread's id there. 0: compare with the thread id as the kernel's
    /// initial namespace sees it.
    pub pidns_dev: u64,
    pub pidns_ino: u64,
}

/// What the walker takes from one frame's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameFields {
    /// The code object, untagged; 0 for a frame that runs no Python code of its own.
    pub code: u64,
    pub instr: u64,
    pub previous: u64,
    /// Index of the thread-local bytecode copy `instr` points into; 0 is the shared one.
    pub tlbc_index: u32,
}

/// The first [`PY_FRAME_READ`] bytes of an `_PyInterpreterFrame`, 8-aligned.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct FrameBytes(pub [u8; PY_FRAME_READ]);

impl Default for FrameBytes {
    fn default() -> Self {
        Self([0; PY_FRAME_READ])
    }
}

/// A pointer-sized field of the frame bytes in `buf` (offsets are multiples of 8).
#[inline(always)]
pub fn frame_word(buf: &FrameBytes, offset: u32) -> u64 {
    let offset = (offset as usize) & 0x78;
    if offset > PY_FRAME_READ - 8 {
        return 0;
    }
    // SAFETY: `offset + 8 <= PY_FRAME_READ`, and both the buffer and `offset` are 8-aligned.
    unsafe { *(buf.0.as_ptr().add(offset) as *const u64) }
}

/// A byte of the frame bytes in `buf`, or [`PY_NONE`] beyond them.
#[inline(always)]
pub fn frame_byte(buf: &FrameBytes, offset: u32) -> u32 {
    let offset = (offset as usize) & 0x7f;
    if offset >= PY_FRAME_READ {
        return PY_NONE;
    }
    u32::from(buf.0[offset])
}

/// Reads one frame's fields: the BPF walker and its userspace mirror share this.
#[inline(always)]
pub fn frame_fields(buf: &FrameBytes, p: &PyProc) -> FrameFields {
    let mut code = frame_word(buf, p.frame_code) & p.frame_code_mask;
    if frame_byte(buf, p.frame_owner) >= p.owner_shim {
        code = 0;
    }
    let tlbc_index = if p.frame_tlbc_index == PY_NONE {
        0
    } else {
        frame_word(buf, p.frame_tlbc_index) as u32
    };
    FrameFields {
        code,
        instr: frame_word(buf, p.frame_instr),
        previous: frame_word(buf, p.frame_previous),
        tlbc_index,
    }
}

/// The frame's instruction at its place in the shared bytecode of its code object, which
/// userspace reads the line table against. A free-threaded 3.14+ thread runs its own copy
/// (`tlbc_index` > 0): entry `tlbc_index` of the `_PyCodeArray` at `co_tlbc` (`{ Py_ssize_t
/// size; char *entries[]; }`) is where that copy starts. Unreadable copies leave it as is.
#[inline(always)]
pub fn shared_instr(f: &FrameFields, p: &PyProc, read_u64: impl Fn(u64) -> Option<u64>) -> u64 {
    if f.tlbc_index == 0 || f.code == 0 {
        return f.instr;
    }
    let Some(array) = read_u64(f.code.wrapping_add(p.code_tlbc as u64)) else {
        return f.instr;
    };
    let entry = array
        .wrapping_add(8)
        .wrapping_add(8u64.wrapping_mul(f.tlbc_index as u64));
    let Some(base) = read_u64(entry) else {
        return f.instr;
    };
    f.code
        .wrapping_add(p.code_adaptive as u64)
        .wrapping_add(f.instr.wrapping_sub(base))
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
    pub frame: FrameBytes,
}

pod!(PyProc, PyFrame, PyStack, PyStackKey);
