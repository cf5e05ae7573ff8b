//! Finding CPython in a process: the executable or a libpython mapping that defines
//! `_PyRuntime`, where it is loaded, which version it is (`Py_Version`), and its layout.
//! Files are read through the process's own root (`/proc/PID/root`), so the interpreter of a
//! container is found even when the host has another Python, or none, at that path.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use blazesym::inspect::{source::Elf, Inspector};
use procfs::process::{MMapPath, Process};

use super::{
    layout::{self, Layout, LayoutError, DEBUG_OFFSETS_LEN},
    memory,
};

/// A CPython interpreter found in a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    /// The file defining `_PyRuntime`: the executable or libpython.
    pub module: PathBuf,
    /// Address of `_PyRuntime` in the process, and its size (0 when the symbol has none).
    pub runtime: u64,
    pub runtime_size: u64,
    pub layout: Layout,
}

/// Why a process's interpreter could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("cannot read the mappings of process {pid}")]
    Maps {
        pid: u32,
        #[source]
        source: procfs::ProcError,
    },
    #[error("{module}: `{symbol}` is not mapped into process {pid}")]
    NotMapped {
        pid: u32,
        module: String,
        symbol: &'static str,
    },
    #[error("CPython older than 3.11 ({module} has `_PyRuntime` but no `Py_Version`): runner walks the frames of 3.11 and newer")]
    TooOld { module: String },
    #[error("reading process {pid}")]
    Read {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// A file mapping: start, end, file offset.
type Range = (u64, u64, u64);

/// A mapped file, the same whichever mount namespace names it: device and inode.
type FileId = ((i32, i32), u64);

/// File offsets of the two symbols in one module.
#[derive(Clone, Copy, Debug)]
struct Symbols {
    runtime: u64,
    runtime_size: u64,
    version: Option<u64>,
}

/// Finds interpreters, caching each file's symbols.
#[derive(Default)]
pub struct Finder {
    inspector: Inspector,
    symbols: HashMap<FileId, Option<Symbols>>,
}

impl Finder {
    /// The interpreter of process `pid`; `Ok(None)` when the process is not CPython.
    pub fn find(&mut self, pid: u32) -> Result<Option<Interpreter>, DiscoverError> {
        let maps = Process::new(pid as i32)
            .and_then(|p| p.maps())
            .map_err(|source| DiscoverError::Maps { pid, source })?;
        let mut modules: Vec<(PathBuf, FileId, Vec<Range>)> = Vec::new();
        for m in maps.iter() {
            let MMapPath::Path(path) = &m.pathname else {
                continue;
            };
            let range = (m.address.0, m.address.1, m.offset);
            match modules.iter_mut().find(|(p, _, _)| p == path) {
                Some((_, _, ranges)) => ranges.push(range),
                None => modules.push((path.clone(), (m.dev, m.inode), vec![range])),
            }
        }
        // libpython first: with a shared build the executable is a small stub. An embedding
        // executable (python3, uwsgi, ...) may hold the interpreter itself.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        modules.retain(|(p, _, _)| is_libpython(p) || Some(p) == exe.as_ref());
        modules.sort_by_key(|(p, _, _)| !is_libpython(p));
        for (path, file, ranges) in &modules {
            let Some(symbols) = self.symbols(pid, path, *file) else {
                continue;
            };
            let module = path.display().to_string();
            let at = |offset: u64, symbol: &'static str| {
                ranges
                    .iter()
                    .find(|(start, end, off)| offset >= *off && offset < off + (end - start))
                    .map(|(start, _, off)| start + (offset - off))
                    .ok_or_else(|| DiscoverError::NotMapped {
                        pid,
                        module: module.clone(),
                        symbol,
                    })
            };
            let runtime = at(symbols.runtime, "_PyRuntime")?;
            let version_offset = symbols.version.ok_or_else(|| DiscoverError::TooOld {
                module: module.clone(),
            })?;
            let read = |source| DiscoverError::Read { pid, source };
            let version = memory::read_u64(pid, at(version_offset, "Py_Version")?).map_err(read)?;
            let (major, minor) = ((version >> 24) as u8, (version >> 16) as u8);
            let layout = if (major, minor) >= (3, 13) {
                let mut bytes = vec![0u8; DEBUG_OFFSETS_LEN];
                memory::read(pid, runtime, &mut bytes).map_err(read)?;
                layout::from_debug_offsets(&bytes, major, minor)?
            } else {
                layout::table(major, minor)?
            };
            return Ok(Some(Interpreter {
                module: path.clone(),
                runtime,
                runtime_size: symbols.runtime_size,
                layout,
            }));
        }
        Ok(None)
    }

    /// The symbols of `path` as process `pid` sees it, read through its root.
    fn symbols(&mut self, pid: u32, path: &Path, file: FileId) -> Option<Symbols> {
        if let Some(cached) = self.symbols.get(&file) {
            return *cached;
        }
        let source = Elf::new(in_root(pid, path)).into();
        let found = self
            .inspector
            .lookup(&source, &["_PyRuntime", "Py_Version"])
            .ok()
            .and_then(|results| {
                let offset = |i: usize| {
                    results
                        .get(i)?
                        .iter()
                        .find_map(|s| s.file_offset.filter(|&o| o > 0))
                };
                let runtime_size = results.first()?.iter().find_map(|s| s.size).unwrap_or(0) as u64;
                Some(Symbols {
                    runtime: offset(0)?,
                    runtime_size,
                    version: offset(1),
                })
            });
        self.symbols.insert(file, found);
        found
    }
}

/// `path` as process `pid` names it, reachable from here: through its root directory.
pub fn in_root(pid: u32, path: &Path) -> PathBuf {
    let mut full = PathBuf::from(format!("/proc/{pid}/root"));
    full.push(path.strip_prefix("/").unwrap_or(path));
    full
}

/// The version a CPython file's name says: `python3.10`, `libpython3.10.so.1.0`,
/// `python3.13t` (`3.13t`); None for other names.
pub fn python_name_version(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let rest = name
        .strip_prefix("libpython")
        .or_else(|| name.strip_prefix("python"))?;
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 't'))
        .unwrap_or(rest.len());
    let version = rest[..end].trim_end_matches('.');
    let digits = version.trim_end_matches('t');
    (digits.contains('.')
        && digits
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    .then(|| version.to_string())
}

/// The version process `pid`'s interpreter files are named for: a libpython it maps, else
/// its executable.
pub fn mapped_version(pid: u32) -> Option<String> {
    let maps = Process::new(pid as i32).and_then(|p| p.maps()).ok()?;
    let lib = maps.iter().find_map(|m| match &m.pathname {
        MMapPath::Path(p) if is_libpython(p) => python_name_version(&p.to_string_lossy()),
        _ => None,
    });
    lib.or_else(|| {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        python_name_version(&exe.to_string_lossy())
    })
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn is_libpython(path: &Path) -> bool {
    let name = file_name(path);
    name.starts_with("libpython3") && name.contains(".so")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_file_names() {
        assert_eq!(
            python_name_version("/r/bin/python3.10").as_deref(),
            Some("3.10")
        );
        assert_eq!(
            python_name_version("/x/libpython3.12.so.1.0").as_deref(),
            Some("3.12")
        );
        assert_eq!(
            python_name_version("/usr/bin/python3.13t").as_deref(),
            Some("3.13t")
        );
        assert_eq!(python_name_version("/usr/bin/python3"), None);
        assert_eq!(python_name_version("/usr/bin/pythonista"), None);
    }

    #[test]
    fn names_python_modules() {
        assert!(is_libpython(Path::new("/x/lib/libpython3.12.so.1.0")));
        assert!(!is_libpython(Path::new("/usr/lib/libc.so.6")));
    }

    #[test]
    fn this_process_is_not_python() {
        let mut finder = Finder::default();
        assert!(finder.find(std::process::id()).unwrap().is_none());
    }
}
