//! Synthetic process images of CPython 3.13, 3.14 and 3.15, default and free-threaded builds
//! (x86_64): a `_PyRuntime` holding the version's `_Py_DebugOffsets`, an interpreter, two
//! thread states, a chain of frames and the code, str and bytes objects they point to, each
//! laid out per version. The layout is parsed from the image, the userspace mirror of the BPF
//! walker ([`super::walk`]) walks it and [`super::code`] names the frames.
//!
//! Where each layout comes from:
//! - `_Py_DebugOffsets` (every offset the walker reads): `testdata/debug_offsets_*.txt`,
//!   CPython's own initializer compiled against the v3.13.0, v3.14.10 and v3.15.2 headers
//!   (see testdata/README.md). 3.15.0b1–b3: v3.15.2's table without
//!   `thread_state.last_profiled_frame_seq`, which v3.15.0b4 inserted (python/cpython
//!   gh-151614; bloomberg/pystack PR #337 quotes the b3..b4 diff).
//! - Frame owners: `enum _frameowner` of v3.13.0 `Include/internal/pycore_frame.h` (CSTACK =
//!   3 on entry frames), v3.14.10 `pycore_interpframe_structs.h` (INTERPRETER = 3 on entry
//!   frames, CSTACK = 4) and v3.15.2 (INTERPRETER = 3, no CSTACK; the thread's embedded
//!   `base_frame`, v3.15.2 `pycore_tstate.h`, ends every chain).
//! - Tagged `f_executable`: v3.14.10 and v3.15.2 `pycore_stackref.h`: `PyStackRef_None` is
//!   `&_Py_NoneStruct | 1`, an immortal or deferred reference has bit 0 set.
//! - Thread-local bytecode: v3.14.10 `Include/cpython/code.h` (`_PyCodeArray { Py_ssize_t
//!   size; char *entries[1]; }`), `pycore_interpframe.h` (`_PyFrame_GetBytecode`: entries of
//!   `co_tlbc` indexed by the frame's `tlbc_index`; entry 0 is `co_code_adaptive`).
//! - str `state` bits: v3.13.0 `Include/cpython/unicodeobject.h` (interned:2, kind:3,
//!   compact:1, ascii:1) and v3.14.10 (free-threaded: `interned` a whole byte, the bit fields
//!   after it); sizeof(PyCompactUnicodeObject) 56, free-threaded 72 (v3.13.0 `object.h`: the
//!   free-threaded object header is 32 bytes, not 16).
//! - Line tables: `Objects/locations.md` (3.11+).

use std::{collections::BTreeMap, io};

use probes_common::python::PyFrame;

use super::{
    code::read_code,
    layout::{from_debug_offsets, Layout, LayoutError, DEBUG_OFFSETS_LEN},
    memory::Memory,
    walk::{walk, WalkError},
};

/// A `_Py_DebugOffsets` table: (field, byte position, value), in order.
#[derive(Clone)]
struct Table(Vec<(String, u64, u64)>);

impl Table {
    fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .filter_map(|l| l.strip_prefix("DO "))
            .filter(|l| !l.starts_with("cookie"))
            .map(|l| {
                let (name, rest) = l.split_once('@').unwrap();
                let (pos, value) = rest.split_once('=').unwrap();
                let value = value.split_whitespace().next().unwrap();
                (
                    name.trim().to_string(),
                    pos.trim().parse().unwrap(),
                    value.parse().unwrap(),
                )
            })
            .collect();
        Self(fields)
    }

    fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} in the table"))
            .2
    }

    /// The table with field `name` removed and the later ones moved up, as in an older
    /// pre-release.
    fn without(&self, name: &str) -> Self {
        let mut fields: Vec<_> = self.0.iter().filter(|f| f.0 != name).cloned().collect();
        for (i, f) in fields.iter_mut().enumerate() {
            f.1 = 8 * (i as u64 + 1);
        }
        Self(fields)
    }

    fn set(&mut self, name: &str, value: u64) {
        self.0.iter_mut().find(|f| f.0 == name).unwrap().2 = value;
    }

    fn bytes(&self) -> Vec<u8> {
        let mut bytes = b"xdebugpy".to_vec();
        for (_, pos, value) in &self.0 {
            assert_eq!(*pos as usize, bytes.len());
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        bytes
    }
}

/// Memory of a made-up process: separate regions, with unmapped gaps between them.
#[derive(Default)]
struct Image {
    regions: BTreeMap<u64, Vec<u8>>,
}

impl Image {
    fn alloc(&mut self, size: u64) -> u64 {
        let addr = self
            .regions
            .last_key_value()
            .map_or(0x7f00_0000_0000, |(a, r)| {
                (a + r.len() as u64 + 0x1000) & !0xfff
            });
        self.regions.insert(addr, vec![0; size as usize]);
        addr
    }

    fn put(&mut self, addr: u64, bytes: &[u8]) {
        let (start, region) = self.regions.range_mut(..=addr).next_back().unwrap();
        let at = (addr - start) as usize;
        region[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn put_u64(&mut self, addr: u64, value: u64) {
        self.put(addr, &value.to_le_bytes());
    }
}

impl Memory for Image {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let found = self.regions.range(..=addr).next_back().and_then(|(a, r)| {
            let at = (addr - a) as usize;
            r.get(at..at + buf.len())
        });
        let bytes = found.ok_or_else(|| io::Error::other(format!("unmapped {addr:#x}")))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// One version and build of CPython, as far as building an image goes.
struct Cpython {
    name: &'static str,
    minor: u8,
    free_threaded: bool,
    table: Table,
}

fn cpythons() -> Vec<Cpython> {
    let published = [
        ("3.13.0", include_str!("testdata/debug_offsets_3.13.0.txt")),
        (
            "3.13.0t",
            include_str!("testdata/debug_offsets_3.13.0t.txt"),
        ),
        (
            "3.14.10",
            include_str!("testdata/debug_offsets_3.14.10.txt"),
        ),
        (
            "3.14.10t",
            include_str!("testdata/debug_offsets_3.14.10t.txt"),
        ),
        ("3.15.2", include_str!("testdata/debug_offsets_3.15.2.txt")),
        (
            "3.15.2t",
            include_str!("testdata/debug_offsets_3.15.2t.txt"),
        ),
    ];
    let mut all: Vec<Cpython> = published
        .into_iter()
        .map(|(name, text)| Cpython {
            name,
            minor: name[2..4].parse().unwrap(),
            free_threaded: name.ends_with('t'),
            table: Table::parse(text),
        })
        .collect();
    // 3.15.0b1-b3: no `last_profiled_frame_seq` yet.
    for (name, from) in [("3.15.0b2", "3.15.2"), ("3.15.0b2t", "3.15.2t")] {
        let source = all.iter().find(|c| c.name == from).unwrap();
        let mut table = source.table.without("thread_state.last_profiled_frame_seq");
        table.set("version", 0x030f_00b2);
        all.push(Cpython {
            name,
            minor: 15,
            free_threaded: source.free_threaded,
            table,
        });
    }
    all
}

/// The thread whose stack is walked, and another one listed before it.
const TID: u64 = 4242;
const OTHER_TID: u64 = 4241;
/// Code units of bytecode in every code object.
const UNITS: u64 = 8;

/// Owner values, per version (see the module comment).
const THREAD: u8 = 0;
const GENERATOR: u8 = 1;
const FRAME_OBJECT: u8 = 2;
/// 3.13 FRAME_OWNED_BY_CSTACK, 3.14+ FRAME_OWNED_BY_INTERPRETER.
const ENTRY: u8 = 3;
/// 3.14 FRAME_OWNED_BY_CSTACK.
const CSTACK_314: u8 = 4;

/// A frame of the image's stack, leaf first.
struct Frame {
    /// Index into the code objects; None for entry, C stack and base frames (f_executable =
    /// None).
    code: Option<usize>,
    owner: u8,
    /// Code unit the frame is at.
    unit: u64,
    /// `_PyStackRef` tag bit on f_executable (3.14+).
    tag: u64,
    /// Thread-local bytecode copy it runs (free-threaded 3.14+).
    tlbc_index: u32,
}

/// A code object: qualified name, first line, first instruction of its own.
struct Code {
    qualname: &'static str,
    firstlineno: i32,
    firsttraceable: u32,
}

const fn code(qualname: &'static str, firstlineno: i32, firsttraceable: u32) -> Code {
    Code {
        qualname,
        firstlineno,
        firsttraceable,
    }
}

/// The code objects of the image's program; the last is 3.13+'s `__init__` shim
/// (`_Py_InitCleanup`, v3.13.0 Python/specialize.c), whose frame CPython hides because it
/// stands before `_co_firsttraceable`.
const CODES: [Code; 5] = [
    code("inner", 3, 0),
    code("Straße.λ", 8, 0),
    code("main", 15, 0),
    code("<module>", 1, 0),
    code("__init__", 1, 4),
];

/// `PyCodeObject._co_firsttraceable`: v3.13.0 and v3.14.10/v3.15.2 Include/cpython/code.h,
/// compiled with and without `Py_GIL_DISABLED`.
fn firsttraceable_offset(py: &Cpython) -> u64 {
    match (py.minor, py.free_threaded) {
        (13, false) => 184,
        (13, true) => 200,
        (_, false) => 192,
        (_, true) => 208,
    }
}

/// The line table of every code object: unit 0 at the first line, units 1-3 one below, 4-7
/// two below (short form 13, "no column", with a signed line delta).
const LINETABLE: [u8; 6] = [
    0x80 | (13 << 3),
    0x00,
    0x80 | (13 << 3) | 2,
    0x02,
    0x80 | (13 << 3) | 3,
    0x02,
];

fn line_of(code: &Code, unit: u64) -> i32 {
    code.firstlineno
        + match unit {
            0 => 0,
            1..=3 => 1,
            _ => 2,
        }
}

/// The stack walked in each image, leaf first, with the frames CPython hides.
fn frames(py: &Cpython) -> Vec<Frame> {
    let tagged = py.minor >= 14;
    // Free-threaded 3.14+ code objects have deferred reference counts: tagged.
    let code_tag = u64::from(tagged && py.free_threaded);
    let tlbc = py.free_threaded && py.minor >= 14;
    let f = |code, owner, unit, tag, tlbc_index| Frame {
        code,
        owner,
        unit,
        tag,
        tlbc_index,
    };
    let mut frames = vec![
        f(Some(0), THREAD, 5, code_tag, if tlbc { 1 } else { 0 }),
        // The shim is a static, immortal code object: tagged in 3.14+.
        f(Some(4), THREAD, 0, u64::from(tagged), 0),
        f(None, ENTRY, 0, u64::from(tagged), 0),
        // An immortal code object (e.g. the static `__init__` shim's) is tagged in the
        // default build too.
        f(Some(1), GENERATOR, 2, u64::from(tagged), 0),
    ];
    if py.minor == 14 {
        frames.push(f(None, CSTACK_314, 0, 1, 0));
    }
    frames.push(f(
        Some(2),
        FRAME_OBJECT,
        0,
        code_tag,
        if tlbc { 2 } else { 0 },
    ));
    frames.push(f(Some(3), THREAD, 7, code_tag, 0));
    frames
}

/// A compact str, laid out per build.
fn put_str(image: &mut Image, py: &Cpython, text: &str) -> u64 {
    let t = &py.table;
    let ascii = text.is_ascii();
    let units: Vec<u16> = text.encode_utf16().collect();
    let (kind, data): (u32, Vec<u8>) = if ascii {
        (1, text.as_bytes().to_vec())
    } else {
        (2, units.iter().flat_map(|u| u.to_le_bytes()).collect())
    };
    let header = if ascii {
        t.get("unicode_object.asciiobject_size")
    } else if py.free_threaded {
        72
    } else {
        56
    };
    let addr = image.alloc(header + data.len() as u64 + 2);
    image.put_u64(addr + t.get("unicode_object.length"), units.len() as u64);
    let state: u32 = if py.free_threaded && py.minor >= 14 {
        // interned (a byte) = SSTATE_INTERNED_MORTAL, then kind:3, compact:1, ascii:1.
        1 | kind << 8 | 1 << 11 | u32::from(ascii) << 12
    } else {
        1 | kind << 2 | 1 << 5 | u32::from(ascii) << 6
    };
    image.put(addr + t.get("unicode_object.state"), &state.to_le_bytes());
    image.put(addr + header, &data);
    addr
}

fn put_bytes(image: &mut Image, py: &Cpython, data: &[u8]) -> u64 {
    let t = &py.table;
    let addr = image.alloc(t.get("bytes_object.ob_sval") + data.len() as u64 + 1);
    image.put_u64(addr + t.get("bytes_object.ob_size"), data.len() as u64);
    image.put(addr + t.get("bytes_object.ob_sval"), data);
    addr
}

/// A code object and, for free-threaded 3.14+, its thread-local copies 1 and 2.
fn put_code(image: &mut Image, py: &Cpython, code: &Code, code_type: u64) -> (u64, Vec<u64>) {
    let t = &py.table;
    let adaptive = t.get("code_object.co_code_adaptive");
    let addr = image.alloc(adaptive + 2 * UNITS);
    image.put_u64(addr + t.get("pyobject.ob_type"), code_type);
    let filename = put_str(image, py, "/srv/app/app.py");
    let qualname = put_str(image, py, code.qualname);
    let name = put_str(image, py, code.qualname.rsplit('.').next().unwrap());
    let linetable = put_bytes(image, py, &LINETABLE);
    image.put_u64(addr + t.get("code_object.filename"), filename);
    image.put_u64(addr + t.get("code_object.name"), name);
    image.put_u64(addr + t.get("code_object.qualname"), qualname);
    image.put_u64(addr + t.get("code_object.linetable"), linetable);
    image.put(
        addr + t.get("code_object.firstlineno"),
        &code.firstlineno.to_le_bytes(),
    );
    image.put(
        addr + firsttraceable_offset(py),
        &code.firsttraceable.to_le_bytes(),
    );
    let mut bases = vec![addr + adaptive];
    if py.free_threaded && py.minor >= 14 {
        for _ in 0..2 {
            bases.push(image.alloc(2 * UNITS));
        }
        let array = image.alloc(8 + 8 * bases.len() as u64);
        image.put_u64(array, bases.len() as u64);
        for (i, base) in bases.iter().enumerate() {
            image.put_u64(array + 8 + 8 * i as u64, *base);
        }
        image.put_u64(addr + t.get("code_object.co_tlbc"), array);
    }
    (addr, bases)
}

/// Builds the image; returns it, the address of `_PyRuntime` and the code objects.
fn build(py: &Cpython) -> (Image, u64, Vec<u64>) {
    let t = &py.table;
    let mut image = Image::default();
    let runtime = image.alloc(t.get("runtime_state.size"));
    let bytes = t.bytes();
    image.put(runtime, &bytes);
    let interp = image.alloc(t.get("interpreter_state.size"));
    image.put_u64(runtime + t.get("runtime_state.interpreters_head"), interp);
    let code_type = image.alloc(t.get("type_object.size"));
    let none = image.alloc(t.get("pyobject.size"));

    let tstate_size = t.get("thread_state.size");
    let frame_size = t.get("interpreter_frame.size");
    // 3.15: _PyThreadStateImpl embeds the base frame right after PyThreadState.
    let base_frame = py.minor >= 15;
    let tstate = image.alloc(tstate_size + if base_frame { frame_size } else { 0 });
    let other = image.alloc(tstate_size);
    image.put_u64(interp + t.get("interpreter_state.threads_head"), other);
    image.put_u64(other + t.get("thread_state.next"), tstate);
    image.put_u64(other + t.get("thread_state.native_thread_id"), OTHER_TID);
    image.put_u64(tstate + t.get("thread_state.native_thread_id"), TID);

    let codes: Vec<(u64, Vec<u64>)> = CODES
        .iter()
        .map(|c| put_code(&mut image, py, c, code_type))
        .collect();
    let mut addrs: Vec<u64> = frames(py).iter().map(|_| image.alloc(frame_size)).collect();
    if base_frame {
        let base = tstate + tstate_size;
        image.put_u64(tstate + t.get("thread_state.base_frame"), base);
        addrs.push(base);
    }
    let mut stack = frames(py);
    if base_frame {
        stack.push(Frame {
            code: None,
            owner: ENTRY,
            unit: 0,
            tag: 1,
            tlbc_index: 0,
        });
    }
    image.put_u64(tstate + t.get("thread_state.current_frame"), addrs[0]);
    for (i, frame) in stack.iter().enumerate() {
        let at = addrs[i];
        let (executable, instr) = match frame.code {
            Some(c) => {
                let (code, bases) = &codes[c];
                (*code, bases[frame.tlbc_index as usize] + 2 * frame.unit)
            }
            None => (none, 0),
        };
        image.put_u64(
            at + t.get("interpreter_frame.executable"),
            executable | frame.tag,
        );
        let previous = addrs.get(i + 1).copied().unwrap_or(0);
        image.put_u64(at + t.get("interpreter_frame.previous"), previous);
        image.put_u64(at + t.get("interpreter_frame.instr_ptr"), instr);
        image.put(at + t.get("interpreter_frame.owner"), &[frame.owner]);
        if py.free_threaded && py.minor >= 14 {
            image.put(
                at + t.get("interpreter_frame.tlbc_index"),
                &frame.tlbc_index.to_le_bytes(),
            );
        }
    }
    let codes = codes.into_iter().map(|(a, _)| a).collect();
    (image, runtime, codes)
}

fn layout_of(image: &Image, runtime: u64, minor: u8) -> Result<Layout, LayoutError> {
    let mut bytes = vec![0u8; DEBUG_OFFSETS_LEN];
    image.read(runtime, &mut bytes).unwrap();
    from_debug_offsets(&bytes, 3, minor)
}

/// The named frames of the walked stack, root first, skipping those CPython hides, as
/// probe/python.rs does.
fn names(image: &Image, layout: &Layout, frames: &[PyFrame]) -> Vec<String> {
    frames
        .iter()
        .rev()
        .filter(|f| f.code != 0)
        .map(|f| (read_code(image, f.code, layout).unwrap(), f.instr))
        .filter(|(info, instr)| !info.is_incomplete(*instr))
        .map(|(info, instr)| info.frame(instr))
        .collect()
}

#[test]
fn walks_every_layout_from_its_published_definitions() {
    for py in cpythons() {
        let (image, runtime, codes) = build(&py);
        let layout =
            layout_of(&image, runtime, py.minor).unwrap_or_else(|e| panic!("{}: {e}", py.name));
        assert_eq!(layout.version, (3, py.minor), "{}", py.name);
        assert_eq!(layout.free_threaded, py.free_threaded, "{}", py.name);
        let proc_ = layout.proc_entry(runtime);
        let walked = walk(&image, &proc_, TID).unwrap_or_else(|e| panic!("{}: {e}", py.name));
        assert!(!walked.truncated, "{}", py.name);
        let stack = frames(&py);
        // Every frame has its slot, in order; the hidden ones with a null code pointer.
        let base = usize::from(py.minor >= 15);
        assert_eq!(walked.frames.len(), stack.len() + base, "{}", py.name);
        for (frame, expected) in walked.frames.iter().zip(&stack) {
            let code = expected.code.map_or(0, |c| codes[c]);
            assert_eq!(frame.code, code, "{}: untagged code pointer", py.name);
        }
        let expected: Vec<String> = stack
            .iter()
            .rev()
            .filter_map(|f| {
                let code = &CODES[f.code?];
                (f.unit >= u64::from(code.firsttraceable))
                    .then(|| format!("{} (app.py:{})", code.qualname, line_of(code, f.unit)))
            })
            .collect();
        assert_eq!(
            names(&image, &layout, &walked.frames),
            expected,
            "{}",
            py.name
        );
    }
}

#[test]
fn another_threads_stack_is_not_taken() {
    for py in cpythons() {
        let (image, runtime, _) = build(&py);
        let proc_ = layout_of(&image, runtime, py.minor)
            .unwrap()
            .proc_entry(runtime);
        // The other thread has no frame; a thread the interpreter does not know is absent.
        for tid in [OTHER_TID, 99] {
            assert!(
                matches!(walk(&image, &proc_, tid), Err(WalkError::NoThreadState(t)) if t == tid),
                "{}: thread {tid}",
                py.name
            );
        }
    }
}

#[test]
fn a_table_read_with_another_pre_releases_layout_is_refused() {
    let tables = cpythons();
    let table = |name: &str| {
        tables
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .table
            .clone()
    };
    // The b4 layout announced by a b3 version, and the other way round.
    let mut b4 = table("3.15.2");
    b4.set("version", 0x030f_00b3);
    let mut b2 = table("3.15.0b2");
    b2.set("version", 0x030f_00b4);
    for t in [b4, b2] {
        let mut bytes = t.bytes();
        bytes.resize(DEBUG_OFFSETS_LEN, 0);
        assert!(matches!(
            from_debug_offsets(&bytes, 3, 15),
            Err(LayoutError::Inconsistent(..))
        ));
    }
    // Pre-releases whose tables are not known.
    for version in [0x030f_00a7, 0x030e_00b1, 0x030d_00c1] {
        let minor = (version >> 16) as u8;
        let mut t = table(if minor == 13 { "3.13.0" } else { "3.14.10" });
        if minor == 15 {
            t = table("3.15.2");
        }
        t.set("version", version);
        let mut bytes = t.bytes();
        bytes.resize(DEBUG_OFFSETS_LEN, 0);
        assert_eq!(
            from_debug_offsets(&bytes, 3, minor),
            Err(LayoutError::PreRelease(version))
        );
    }
    // 3.16 is not known at all.
    let mut t = table("3.15.2");
    t.set("version", 0x0310_00f0);
    assert_eq!(
        from_debug_offsets(&t.bytes(), 3, 16),
        Err(LayoutError::Unsupported(3, 16))
    );
}
