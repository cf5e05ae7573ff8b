//! Struct offsets of the CPython versions the walker supports, x86_64. 3.11 and 3.12 come
//! from tables (checked against the headers by runner/tests/python.rs); 3.13 publishes its
//! own in `_Py_DebugOffsets` at the start of `_PyRuntime`, which is parsed here.

use probes_common::python::{PyProc, PY_FRAME_READ, PY_NONE};

use super::memory::u64_at;

/// Offsets in code objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeLayout {
    pub filename: u64,
    pub name: u64,
    pub qualname: u64,
    pub firstlineno: u64,
    pub linetable: u64,
    /// `co_code_adaptive`: where the bytecode starts.
    pub code_adaptive: u64,
}

/// Offsets in str and bytes objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectLayout {
    pub unicode_length: u64,
    pub unicode_state: u64,
    /// sizeof(PyASCIIObject): compact ASCII data follows it.
    pub unicode_ascii_size: u64,
    /// sizeof(PyCompactUnicodeObject): compact non-ASCII data follows it.
    pub unicode_compact_size: u64,
    pub bytes_size: u64,
    pub bytes_data: u64,
}

/// Everything the walker and the symbolizer need for one CPython version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub version: (u8, u8),
    pub runtime_interpreters_head: u64,
    pub interp_threads_head: u64,
    pub tstate_next: u64,
    pub tstate_native_thread_id: u64,
    /// `cframe` (3.11, 3.12) or `current_frame` (3.13+).
    pub tstate_frame: u64,
    /// `_PyCFrame.current_frame`; None when `tstate_frame` is the frame itself.
    pub cframe_current_frame: Option<u64>,
    pub frame_code: u64,
    pub frame_previous: u64,
    pub frame_instr: u64,
    pub frame_owner: u64,
    /// Owner value of shim frames owned by the C stack (3.12+).
    pub owner_cstack: Option<u8>,
    pub code: CodeLayout,
    pub objects: ObjectLayout,
}

/// Why a layout could not be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("CPython {0}.{1} is not supported (3.11 to 3.13 are)")]
    Unsupported(u8, u8),
    #[error("_Py_DebugOffsets: bad cookie")]
    Cookie,
    #[error("_Py_DebugOffsets of version {0:#x} do not match the interpreter's {1}.{2}")]
    DebugVersion(u64, u8, u8),
    #[error("_Py_DebugOffsets is free-threaded; the free-threaded build is not supported")]
    FreeThreaded,
    #[error("offset {0} = {1} is beyond what the walker reads of a frame")]
    FrameOffset(&'static str, u64),
}

const OBJECTS_311: ObjectLayout = ObjectLayout {
    unicode_length: 16,
    unicode_state: 32,
    unicode_ascii_size: 48,
    unicode_compact_size: 72,
    bytes_size: 16,
    bytes_data: 32,
};

const OBJECTS_312: ObjectLayout = ObjectLayout {
    unicode_ascii_size: 40,
    unicode_compact_size: 56,
    ..OBJECTS_311
};

/// The table layout of 3.11 or 3.12 (x86_64, default build).
pub fn table(major: u8, minor: u8) -> Result<Layout, LayoutError> {
    match (major, minor) {
        (3, 11) => Ok(Layout {
            version: (3, 11),
            runtime_interpreters_head: 40,
            interp_threads_head: 16,
            tstate_next: 8,
            tstate_native_thread_id: 160,
            tstate_frame: 56,
            cframe_current_frame: Some(8),
            frame_code: 32,
            frame_previous: 48,
            frame_instr: 56,
            frame_owner: 69,
            owner_cstack: None,
            code: CodeLayout {
                filename: 112,
                name: 120,
                qualname: 128,
                firstlineno: 72,
                linetable: 136,
                code_adaptive: 184,
            },
            objects: OBJECTS_311,
        }),
        (3, 12) => Ok(Layout {
            version: (3, 12),
            runtime_interpreters_head: 40,
            interp_threads_head: 72,
            tstate_next: 8,
            tstate_native_thread_id: 144,
            tstate_frame: 56,
            cframe_current_frame: Some(0),
            frame_code: 0,
            frame_previous: 8,
            frame_instr: 56,
            frame_owner: 70,
            owner_cstack: Some(3),
            code: CodeLayout {
                filename: 112,
                name: 120,
                qualname: 128,
                firstlineno: 68,
                linetable: 136,
                code_adaptive: 192,
            },
            objects: OBJECTS_312,
        }),
        _ => Err(LayoutError::Unsupported(major, minor)),
    }
}

/// Bytes of `_PyRuntime` read for 3.13's `_Py_DebugOffsets` (72 words; the last field used
/// is word 70).
pub const DEBUG_OFFSETS_LEN: usize = 8 * 72;

/// The layout of 3.13 from its `_Py_DebugOffsets` (the first bytes of `_PyRuntime`).
pub fn from_debug_offsets(bytes: &[u8], major: u8, minor: u8) -> Result<Layout, LayoutError> {
    if (major, minor) != (3, 13) {
        return Err(LayoutError::Unsupported(major, minor));
    }
    if bytes.get(..8) != Some(b"xdebugpy") {
        return Err(LayoutError::Cookie);
    }
    let word = |i: u64| u64_at(bytes, 8 * i);
    let version = word(1);
    if (version >> 24) as u8 != major || (version >> 16) as u8 != minor {
        return Err(LayoutError::DebugVersion(version, major, minor));
    }
    if word(2) != 0 {
        return Err(LayoutError::FreeThreaded);
    }
    // Word indexes follow the 3.13 struct: cookie, version, free_threaded, then each section
    // as (size, fields...).
    const RUNTIME: u64 = 3; // size, finalizing, interpreters_head
    const INTERP: u64 = RUNTIME + 3; // size, id, next, threads_head, ... (13 words)
    const TSTATE: u64 = INTERP + 13; // size, prev, next, interp, current_frame, thread_id, native_thread_id, ...
    const FRAME: u64 = TSTATE + 9; // size, previous, executable, instr_ptr, localsplus, owner
    const CODE: u64 = FRAME + 6; // size, filename, name, qualname, linetable, firstlineno, argcount, localsplusnames, localspluskinds, co_code_adaptive
    const PYOBJECT: u64 = CODE + 10;
    const TYPE: u64 = PYOBJECT + 2;
    const TUPLE: u64 = TYPE + 4;
    const LIST: u64 = TUPLE + 3;
    const DICT: u64 = LIST + 3;
    const FLOAT: u64 = DICT + 3;
    const LONG: u64 = FLOAT + 2;
    const BYTES: u64 = LONG + 3; // size, ob_size, ob_sval
    const UNICODE: u64 = BYTES + 3; // size, state, length, asciiobject_size
    let ascii_size = word(UNICODE + 3);
    let layout = Layout {
        version: (major, minor),
        runtime_interpreters_head: word(RUNTIME + 2),
        interp_threads_head: word(INTERP + 3),
        tstate_next: word(TSTATE + 2),
        tstate_native_thread_id: word(TSTATE + 6),
        tstate_frame: word(TSTATE + 4),
        cframe_current_frame: None,
        frame_code: word(FRAME + 2),
        frame_previous: word(FRAME + 1),
        frame_instr: word(FRAME + 3),
        frame_owner: word(FRAME + 5),
        owner_cstack: Some(3),
        code: CodeLayout {
            filename: word(CODE + 1),
            name: word(CODE + 2),
            qualname: word(CODE + 3),
            linetable: word(CODE + 4),
            firstlineno: word(CODE + 5),
            code_adaptive: word(CODE + 9),
        },
        objects: ObjectLayout {
            unicode_length: word(UNICODE + 2),
            unicode_state: word(UNICODE + 1),
            unicode_ascii_size: ascii_size,
            // PyCompactUnicodeObject adds utf8_length and utf8 to PyASCIIObject.
            unicode_compact_size: ascii_size + 16,
            bytes_size: word(BYTES + 1),
            bytes_data: word(BYTES + 2),
        },
    };
    layout.check()?;
    Ok(layout)
}

impl Layout {
    /// Fails when a frame field lies beyond the bytes the BPF walker reads of a frame.
    pub fn check(&self) -> Result<(), LayoutError> {
        let limit = (PY_FRAME_READ - 8) as u64;
        for (name, value) in [
            ("frame.code", self.frame_code),
            ("frame.previous", self.frame_previous),
            ("frame.instr", self.frame_instr),
        ] {
            if value > limit || value % 8 != 0 {
                return Err(LayoutError::FrameOffset(name, value));
            }
        }
        if self.frame_owner >= PY_FRAME_READ as u64 {
            return Err(LayoutError::FrameOffset("frame.owner", self.frame_owner));
        }
        Ok(())
    }

    /// The walker's entry for a process whose `_PyRuntime` is at `runtime`.
    pub fn proc_entry(&self, runtime: u64) -> PyProc {
        PyProc {
            interp_head_addr: runtime + self.runtime_interpreters_head,
            interp_threads_head: self.interp_threads_head as u32,
            tstate_next: self.tstate_next as u32,
            tstate_native_thread_id: self.tstate_native_thread_id as u32,
            tstate_frame: self.tstate_frame as u32,
            cframe_current_frame: self.cframe_current_frame.map_or(PY_NONE, |o| o as u32),
            frame_code: self.frame_code as u32,
            frame_previous: self.frame_previous as u32,
            frame_instr: self.frame_instr as u32,
            frame_owner: self.frame_owner as u32,
            owner_cstack: self.owner_cstack.map_or(PY_NONE, u32::from),
            pidns_dev: 0,
            pidns_ino: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first words of `_PyRuntime` in CPython 3.13.0 (pyenv build, x86_64), read from a
    /// live interpreter with ctypes.
    fn debug_offsets_3_13() -> Vec<u8> {
        let mut words: Vec<u64> = vec![
            0, 0x030d00f0, 0, // cookie (patched below), version, free_threaded
            283320, 608, 632, // runtime: size, finalizing, interpreters_head
            // interpreter: size, id, next, threads_head, gc, modules, sysdict, builtins,
            // ceval_gil, gil_runtime_state, enabled, locked, holder
            194968, 7272, 7264, 7344, 7400, 7656, 7640, 7648, 16, 7752, 0, 7768, 7760,
            // thread: size, prev, next, interp, current_frame, thread_id, native_thread_id,
            // datastack_chunk, status
            304, 0, 8, 16, 72, 152, 160, 232, 32,
            // frame: size, previous, executable, instr_ptr, localsplus, owner
            80, 8, 0, 56, 72, 70,
            // code: size, filename, name, qualname, linetable, firstlineno, argcount,
            // localsplusnames, localspluskinds, co_code_adaptive
            208, 112, 120, 128, 136, 68, 52, 96, 104, 200, 16, 8, // pyobject
            416, 24, 88, 168, // type
            32, 24, 16, // tuple
            40, 24, 16, // list
            48, 32, 40, // dict
            24, 16, // float
            32, 16, 24, // long
            40, 16, 32, // bytes
            64, 32, 16, 40,  // unicode: size, state, length, asciiobject_size
            240, // gc
        ];
        words[0] = u64::from_le_bytes(*b"xdebugpy");
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        // Discovery reads exactly this much.
        bytes.resize(DEBUG_OFFSETS_LEN, 0);
        bytes
    }

    #[test]
    fn parses_3_13_debug_offsets() {
        let layout = from_debug_offsets(&debug_offsets_3_13(), 3, 13).unwrap();
        assert_eq!(layout.runtime_interpreters_head, 632);
        assert_eq!(layout.interp_threads_head, 7344);
        assert_eq!(layout.tstate_native_thread_id, 160);
        assert_eq!(layout.tstate_frame, 72);
        assert_eq!(layout.cframe_current_frame, None);
        assert_eq!(
            (layout.frame_code, layout.frame_previous, layout.frame_instr),
            (0, 8, 56)
        );
        assert_eq!(layout.frame_owner, 70);
        assert_eq!(layout.code.qualname, 128);
        assert_eq!(layout.code.firstlineno, 68);
        assert_eq!(layout.code.code_adaptive, 200);
        assert_eq!(layout.objects.unicode_ascii_size, 40);
        assert_eq!(layout.objects.unicode_compact_size, 56);
        assert_eq!(
            (layout.objects.bytes_size, layout.objects.bytes_data),
            (16, 32)
        );
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        let mut bytes = debug_offsets_3_13();
        assert_eq!(
            from_debug_offsets(&bytes, 3, 14),
            Err(LayoutError::Unsupported(3, 14))
        );
        bytes[0] = b'X';
        assert_eq!(from_debug_offsets(&bytes, 3, 13), Err(LayoutError::Cookie));
        assert_eq!(table(3, 10), Err(LayoutError::Unsupported(3, 10)));
    }

    #[test]
    fn tables_fit_the_walker() {
        for minor in [11, 12] {
            let layout = table(3, minor).unwrap();
            layout.check().unwrap();
            let entry = layout.proc_entry(0x1000);
            assert_eq!(
                entry.interp_head_addr,
                0x1000 + layout.runtime_interpreters_head
            );
        }
    }
}
