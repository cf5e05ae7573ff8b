//! Code objects: qualified name, file and line table, read from the live process and cached
//! per (process, code object).

use std::{
    collections::HashMap,
    io::{self, ErrorKind},
    sync::Arc,
};

use super::{
    layout::{Layout, ObjectLayout},
    linetable,
    memory::{self, u32_at, u64_at, Memory, Process},
};

/// Longest name or file name read, in characters.
const MAX_STR: u64 = 4096;
/// Longest line table read, in bytes.
const MAX_LINETABLE: u64 = 1 << 20;

/// What a frame needs from its code object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    pub qualname: String,
    pub filename: String,
    pub firstlineno: i32,
    linetable: Vec<u8>,
    /// Address of the first instruction.
    bytecode: u64,
    /// `_co_firsttraceable`: index of the first instruction of the function's own.
    firsttraceable: u64,
}

impl CodeInfo {
    /// True while a frame at `instr` has not reached the function's own code: CPython hides
    /// such frames (`_PyFrame_IsIncomplete`), e.g. 3.13+'s `__init__` shim that runs after a
    /// specialized constructor call. (CPython keeps generator frames; the walker does not
    /// record owners, and a running generator is past this point.)
    pub fn is_incomplete(&self, instr: u64) -> bool {
        instr < self.bytecode + 2 * self.firsttraceable
    }

    /// The source line of the instruction at address `instr`.
    pub fn line(&self, instr: u64) -> i32 {
        if instr < self.bytecode {
            return self.firstlineno;
        }
        linetable::line_for(
            &self.linetable,
            self.firstlineno,
            (instr - self.bytecode) / 2,
        )
        .unwrap_or(self.firstlineno)
    }

    /// `qualname (file.py:LINE)`.
    pub fn frame(&self, instr: u64) -> String {
        format!(
            "{} ({}:{})",
            self.qualname,
            short_path(&self.filename),
            self.line(instr)
        )
    }
}

/// True for code of the standard library, installed packages and frozen modules, as opposed
/// to the application's own files.
pub fn is_library(filename: &str) -> bool {
    filename.contains("/site-packages/")
        || filename.contains("/dist-packages/")
        || filename.contains("/lib/python3")
        || filename.starts_with("<frozen")
}

/// A file name as shown in frames: relative to site-packages or the standard library when it
/// is inside one, else the file's own name.
pub fn short_path(filename: &str) -> &str {
    if let Some((_, rest)) = filename.rsplit_once("/site-packages/") {
        return rest;
    }
    if let Some(i) = filename.find("/lib/python3") {
        // "lib/python3.11/asyncio/events.py" -> "asyncio/events.py"
        if let Some(inside) = filename[i + 1..].splitn(3, '/').nth(2) {
            return inside;
        }
    }
    filename.rsplit('/').next().unwrap_or(filename)
}

/// Reads the code object at `addr`.
pub fn read_code(mem: &impl Memory, addr: u64, layout: &Layout) -> io::Result<CodeInfo> {
    let c = &layout.code;
    let mut head = vec![0u8; c.code_adaptive as usize];
    mem.read(addr, &mut head)?;
    let o = &layout.objects;
    Ok(CodeInfo {
        qualname: read_str(mem, u64_at(&head, c.qualname), o)?,
        filename: read_str(mem, u64_at(&head, c.filename), o)?,
        firstlineno: u32_at(&head, c.firstlineno) as i32,
        linetable: read_bytes(mem, u64_at(&head, c.linetable), o)?,
        bytecode: addr + c.code_adaptive,
        firsttraceable: u64::from(u32_at(&head, c.firsttraceable)),
    })
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.to_string())
}

/// Reads a compact str object.
fn read_str(mem: &impl Memory, addr: u64, o: &ObjectLayout) -> io::Result<String> {
    let mut head = vec![0u8; o.unicode_ascii_size as usize];
    mem.read(addr, &mut head)?;
    let length = u64_at(&head, o.unicode_length);
    let state = u32_at(&head, o.unicode_state) >> o.unicode_kind_shift;
    let kind = state & 7;
    let compact = (state >> 3) & 1 == 1;
    let ascii = (state >> 4) & 1 == 1;
    if !compact || length > MAX_STR {
        return Err(invalid("not a compact str"));
    }
    let data = addr
        + if ascii {
            o.unicode_ascii_size
        } else {
            o.unicode_compact_size
        };
    let mut bytes = vec![0u8; (length * u64::from(kind)) as usize];
    mem.read(data, &mut bytes)?;
    let text = match kind {
        1 if ascii => String::from_utf8(bytes).map_err(|_| invalid("bad ASCII"))?,
        1 => bytes.iter().map(|&b| char::from(b)).collect(),
        2 => char::decode_utf16(
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]])),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect(),
        4 => bytes
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        _ => return Err(invalid("bad str kind")),
    };
    Ok(text)
}

/// Reads a bytes object's contents.
fn read_bytes(mem: &impl Memory, addr: u64, o: &ObjectLayout) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; o.bytes_data as usize];
    mem.read(addr, &mut head)?;
    let size = u64_at(&head, o.bytes_size);
    if size > MAX_LINETABLE {
        return Err(invalid("bytes object too large"));
    }
    let mut bytes = vec![0u8; size as usize];
    mem.read(addr + o.bytes_data, &mut bytes)?;
    Ok(bytes)
}

/// Code objects already read, by (process, address); failures are remembered too.
#[derive(Default)]
pub struct CodeCache {
    entries: HashMap<(u32, u64), Option<Arc<CodeInfo>>>,
    /// Code objects that could not be read from a live process.
    pub failed: u64,
    /// Code objects not read because their process had exited (stacks sampled in its last
    /// moments, named after it was gone).
    pub after_exit: u64,
}

impl CodeCache {
    /// The code object at `addr` in `pid`, read on first use.
    pub fn get(&mut self, pid: u32, addr: u64, layout: &Layout) -> Option<Arc<CodeInfo>> {
        if let Some(entry) = self.entries.get(&(pid, addr)) {
            return entry.clone();
        }
        let info = read_code(&Process(pid), addr, layout).ok().map(Arc::new);
        if info.is_none() {
            if memory::alive(pid) {
                self.failed += 1;
            } else {
                self.after_exit += 1;
            }
        }
        self.entries.insert((pid, addr), info.clone());
        info
    }

    /// A cached code object, without reading.
    pub fn cached(&self, pid: u32, addr: u64) -> Option<Arc<CodeInfo>> {
        self.entries.get(&(pid, addr)).cloned().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_paths() {
        assert_eq!(
            short_path("/srv/venv/lib/python3.11/site-packages/flask/app.py"),
            "flask/app.py"
        );
        assert_eq!(
            short_path("/usr/lib/python3.11/asyncio/events.py"),
            "asyncio/events.py"
        );
        assert_eq!(short_path("/work/apps/flask/app.py"), "app.py");
        assert_eq!(short_path("<string>"), "<string>");
        assert!(is_library("/usr/lib/python3.11/socket.py"));
        assert!(is_library("<frozen runpy>"));
        assert!(!is_library("/srv/app/app.py"));
    }
}
