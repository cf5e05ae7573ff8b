//! The BPF walker of probes/src/python.rs in userspace, over any [`Memory`]: the same steps on
//! the same [`PyProc`], sharing its per-frame code ([`frame_fields`], [`shared_instr`]).
//! Tests run it on process images laid out from CPython's published definitions, and on live
//! interpreters.

use std::io;

use probes_common::python::{
    frame_fields, shared_instr, FrameBytes, PyFrame, PyProc, PY_MAX_FRAMES, PY_MAX_THREADS, PY_NONE,
};

use super::memory::Memory;

/// Why a thread's Python stack could not be walked.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("no Python thread state for thread {0}")]
    NoThreadState(u64),
    #[error("reading the interpreter's memory")]
    Read(#[from] io::Error),
}

/// A Python stack as the BPF walker records it: leaf first, frames without Python code of
/// their own kept with a null code pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    pub frames: Vec<PyFrame>,
    /// The walk stopped at [`PY_MAX_FRAMES`] before the root frame.
    pub truncated: bool,
}

/// The `PyThreadState` whose `native_thread_id` is `tid`.
pub fn thread_state(mem: &impl Memory, p: &PyProc, tid: u64) -> Result<u64, WalkError> {
    let interp = mem.read_u64(p.interp_head_addr)?;
    if interp == 0 {
        return Err(WalkError::NoThreadState(tid));
    }
    let mut tstate = mem.read_u64(interp + u64::from(p.interp_threads_head))?;
    let mut i = 0;
    while i < PY_MAX_THREADS && tstate != 0 {
        if mem.read_u64(tstate + u64::from(p.tstate_native_thread_id))? == tid {
            return Ok(tstate);
        }
        tstate = mem.read_u64(tstate + u64::from(p.tstate_next))?;
        i += 1;
    }
    Err(WalkError::NoThreadState(tid))
}

/// The Python stack of thread `tid` (its id in the process's PID namespace).
pub fn walk(mem: &impl Memory, p: &PyProc, tid: u64) -> Result<Walked, WalkError> {
    let tstate = thread_state(mem, p, tid)?;
    let mut frame = mem.read_u64(tstate + u64::from(p.tstate_frame))?;
    if p.cframe_current_frame != PY_NONE && frame != 0 {
        frame = mem.read_u64(frame + u64::from(p.cframe_current_frame))?;
    }
    if frame == 0 {
        return Err(WalkError::NoThreadState(tid));
    }
    let mut walked = Walked::default();
    let mut buf = FrameBytes::default();
    while walked.frames.len() < PY_MAX_FRAMES && frame != 0 {
        mem.read(frame, &mut buf.0)?;
        let f = frame_fields(&buf, p);
        let instr = shared_instr(&f, p, |a| mem.read_u64(a).ok());
        frame = f.previous;
        walked.frames.push(PyFrame {
            code: f.code,
            instr,
        });
    }
    walked.truncated = frame != 0;
    Ok(walked)
}
