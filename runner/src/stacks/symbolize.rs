//! Symbolization: kernel frames from kallsyms, user frames from ELF symbols through blazesym.
//! Each process's executable mappings are cached while it is alive, so a process that exits
//! during a run is still symbolized afterwards. The files of a process in another mount
//! namespace (a container) are opened through `/proc/PID/map_files` (or its root) when first
//! seen and held open, so its own libraries are used, even after it exits. A forked child
//! that exits before its mappings are read is symbolized with the mappings of the process it
//! was forked from (a fork copies the address space). Frames in objects without a symbol
//! table (stripped) or that cannot be read are counted per object and shown as `[object]`.

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use blazesym::symbolize::{
    source::{Elf, Kernel, Source},
    Input, Symbolized, Symbolizer as Blaze,
};
use blazesym::MaybeDefault;
use procfs::process::{MMPermissions, MMapPath, Process};
use serde::Serialize;

use super::assemble::FrameNamer;

/// Name for an address outside every known mapping.
pub const UNKNOWN: &str = "[unknown]";

/// One executable mapping of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub object: MappedObject,
}

/// What a mapping maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MappedObject {
    File {
        /// The path as the process names it.
        path: Arc<Path>,
        /// Where runner reads it: the same path, a descriptor held open
        /// (`/proc/self/fd/N`), or the path under the process's root.
        open: Arc<Path>,
    },
    Vdso,
    Anonymous,
}

/// The last known executable mappings of each process seen.
#[derive(Debug, Default)]
pub struct ProcessMaps {
    by_pid: HashMap<u32, Vec<Mapping>>,
    /// Forked child → the process it was forked from (and has not exec'd since).
    forked_from: HashMap<u32, u32>,
    /// Files mapped by processes of other mount namespaces, held open by device and inode:
    /// a container's files are gone with its mount namespace when its last process exits.
    held: HashMap<((i32, i32), u64), File>,
}

/// Most files held open for other mount namespaces; past that, they are read by path.
const MAX_HELD: usize = 512;
/// Most forks followed back to find a process whose mappings were read.
const MAX_FORK_DEPTH: usize = 16;

/// The inode of a process's mount namespace.
fn mount_ns(pid: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|m| m.ino())
}

impl ProcessMaps {
    /// Where runner reads a file that process `pid` maps at `start..end` as `path`: the path
    /// itself in runner's own mount namespace, else a descriptor held open from now on
    /// (`/proc/self/fd/N`), else the path under the process's root.
    fn open_path(
        &mut self,
        pid: u32,
        foreign: bool,
        m: &procfs::process::MemoryMap,
        path: &Path,
    ) -> Arc<Path> {
        if !foreign {
            return Arc::from(path);
        }
        let key = (m.dev, m.inode);
        if !self.held.contains_key(&key) && self.held.len() < MAX_HELD {
            let file = File::open(format!(
                "/proc/{pid}/map_files/{:x}-{:x}",
                m.address.0, m.address.1
            ))
            .or_else(|_| File::open(crate::cpython::discover::in_root(pid, path)));
            if let Ok(file) = file {
                self.held.insert(key, file);
            }
        }
        match self.held.get(&key) {
            Some(file) => Arc::from(PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))),
            None => Arc::from(crate::cpython::discover::in_root(pid, path)),
        }
    }

    /// Re-reads `/proc/PID/maps`. Keeps the previous copy when the process is gone or a
    /// zombie (whose maps read empty); returns whether a fresh copy was taken.
    pub fn refresh(&mut self, pid: u32) -> bool {
        let Ok(maps) = Process::new(pid as i32).and_then(|p| p.maps()) else {
            return false;
        };
        let foreign = mount_ns(&pid.to_string()) != mount_ns("self");
        let mut mappings: Vec<Mapping> = Vec::new();
        for m in maps
            .into_iter()
            .filter(|m| m.perms.contains(MMPermissions::EXECUTE))
        {
            let object = match &m.pathname {
                MMapPath::Path(path) => MappedObject::File {
                    open: self.open_path(pid, foreign, &m, path),
                    path: Arc::from(path.as_path()),
                },
                MMapPath::Vdso => MappedObject::Vdso,
                _ => MappedObject::Anonymous,
            };
            mappings.push(Mapping {
                start: m.address.0,
                end: m.address.1,
                offset: m.offset,
                object,
            });
        }
        if mappings.is_empty() {
            return false;
        }
        mappings.sort_by_key(|m| m.start);
        self.by_pid.insert(pid, mappings);
        true
    }

    /// Reads the mappings of a process not seen before.
    pub fn ensure(&mut self, pid: u32) {
        if !self.by_pid.contains_key(&pid) {
            self.refresh(pid);
        }
    }

    /// Records that `child` was forked from `parent` and still has its address space layout.
    pub fn forked(&mut self, child: u32, parent: u32) {
        if child != parent {
            self.forked_from.insert(child, parent);
        }
    }

    /// The mappings of `pid`, or, when they were never read, those of the nearest process it
    /// was forked from.
    fn mappings(&self, pid: u32) -> Option<&Vec<Mapping>> {
        let mut pid = pid;
        for _ in 0..MAX_FORK_DEPTH {
            if let Some(maps) = self.by_pid.get(&pid) {
                return Some(maps);
            }
            pid = *self.forked_from.get(&pid)?;
        }
        None
    }

    /// The mapping that holds `addr` in process `pid`.
    pub fn lookup(&self, pid: u32, addr: u64) -> Option<&Mapping> {
        let maps = self.mappings(pid)?;
        let index = maps.partition_point(|m| m.start <= addr).checked_sub(1)?;
        let mapping = &maps[index];
        (addr < mapping.end).then_some(mapping)
    }

    /// Processes with cached mappings.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_pid.keys().copied()
    }
}

/// How well symbolization went, for probe.json.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SymbolStats {
    pub kernel_frames: u64,
    pub kernel_unknown: u64,
    pub user_frames: u64,
    pub user_unmapped: u64,
    pub user_no_symbol: u64,
    /// Frames in objects without a symbol table (stripped), by object as the process names
    /// it; they show as `[file name]`.
    #[serde(default)]
    pub stripped: BTreeMap<String, u64>,
    /// Frames in objects runner could not read, by object; they show as `[file name]`.
    #[serde(default)]
    pub unreadable: BTreeMap<String, u64>,
}

/// Native frames without names in the on-CPU samples: how many samples have one, by
/// object, why and what to do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct UnnamedNative {
    /// Samples with at least one such frame, and their share of all on-CPU samples (%).
    pub samples: u64,
    pub share: f64,
    pub objects: Vec<UnnamedObject>,
}

/// One object whose frames have no names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct UnnamedObject {
    pub object: String,
    /// Samples with a frame in it, and their share of all on-CPU samples (%).
    pub samples: u64,
    pub share: f64,
    /// `stripped` (no symbol table) or `unreadable`.
    pub reason: String,
    pub fix: String,
}

impl SymbolStats {
    /// Which on-CPU samples of `oncpu` (a folded profile) have frames of objects without
    /// names; None when every native frame was named.
    pub fn unnamed_in(&self, oncpu: &super::folded::Folded) -> Option<UnnamedNative> {
        let total = oncpu.total();
        let objects: Vec<(&String, &str)> = self
            .stripped
            .keys()
            .map(|o| (o, "stripped"))
            .chain(self.unreadable.keys().map(|o| (o, "unreadable")))
            .collect();
        if objects.is_empty() || total == 0 {
            return None;
        }
        let frame = |object: &str| {
            let base = Path::new(object)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| object.to_string());
            format!("[{base}]")
        };
        let names: Vec<String> = objects.iter().map(|(o, _)| frame(o)).collect();
        let mut per = vec![0u64; objects.len()];
        let mut samples = 0;
        for (stack, count) in oncpu.iter() {
            let mut any = false;
            for (i, name) in names.iter().enumerate() {
                if stack.split(';').any(|f| f == name) {
                    per[i] += count;
                    any = true;
                }
            }
            if any {
                samples += count;
            }
        }
        let pct = |n: u64| (n as f64 * 1000.0 / total as f64).round() / 10.0;
        let mut list: Vec<UnnamedObject> = objects
            .iter()
            .zip(per)
            .filter(|(_, n)| *n > 0)
            .map(|((object, reason), n)| UnnamedObject {
                object: object.to_string(),
                samples: n,
                share: pct(n),
                reason: reason.to_string(),
                fix: fix_for(object, reason),
            })
            .collect();
        list.sort_by_key(|o| std::cmp::Reverse(o.samples));
        (samples > 0).then(|| UnnamedNative {
            samples,
            share: pct(samples),
            objects: list,
        })
    }
}

/// What gives the frames of `object` names.
fn fix_for(object: &str, reason: &str) -> String {
    let name = Path::new(object)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if reason == "unreadable" {
        return format!(
            "runner could not open {object}: check that it still exists and that root can read it"
        );
    }
    // The interpreter, or the standard library's extension modules built with it.
    if name.starts_with("python3")
        || name.starts_with("libpython3")
        || object.contains("/lib-dynload/")
    {
        return "run it on a CPython with symbols: pyenv's and uv's builds keep them (`pyenv install VERSION`); for a bundled app, `--python VERSION` picks one, or `--python /path/to/python` an unstripped build".into();
    }
    format!("use an unstripped build of {name}: runner names native frames from the object's own symbol table (separate debug files are not read)")
}

/// Whether an object can name its addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ObjectSymbols {
    /// It has a symbol table (`.symtab`).
    Full,
    /// Only dynamic symbols, or none: stripped.
    Stripped,
    Unreadable,
}

/// Reads whether the ELF file at `path` has a symbol table.
fn object_symbols(path: &Path) -> ObjectSymbols {
    use object::Object;
    let Ok(file) = File::open(path) else {
        return ObjectSymbols::Unreadable;
    };
    let cache = object::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return ObjectSymbols::Unreadable;
    };
    if elf.symbol_table().is_some() {
        ObjectSymbols::Full
    } else {
        ObjectSymbols::Stripped
    }
}

/// Names kernel and user addresses, caching every answer.
pub struct Symbolizer {
    blaze: Blaze,
    maps: ProcessMaps,
    kernel: HashMap<u64, String>,
    user: HashMap<(Arc<Path>, u64), String>,
    objects: HashMap<Arc<Path>, ObjectSymbols>,
    stats: SymbolStats,
}

impl Symbolizer {
    /// A symbolizer over the mappings collected during a run.
    pub fn new(maps: ProcessMaps) -> Self {
        Self {
            blaze: Blaze::builder()
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .build(),
            maps,
            kernel: HashMap::new(),
            user: HashMap::new(),
            objects: HashMap::new(),
            stats: SymbolStats::default(),
        }
    }

    /// What was symbolized and what was not.
    pub fn stats(&self) -> &SymbolStats {
        &self.stats
    }

    fn elf_symbol(&mut self, path: &Arc<Path>, file_offset: u64) -> Option<String> {
        let key = (path.clone(), file_offset);
        if let Some(name) = self.user.get(&key) {
            return Some(name.clone());
        }
        let mut elf = Elf::new(PathBuf::from(path.as_ref()));
        elf.debug_syms = false;
        let source = Source::Elf(elf);
        let name = match self
            .blaze
            .symbolize(&source, Input::FileOffset(&[file_offset]))
            .ok()?
            .into_iter()
            .next()?
        {
            Symbolized::Sym(sym) => sym.name.into_owned(),
            Symbolized::Unknown(_) => return None,
        };
        self.user.insert(key, name.clone());
        Some(name)
    }
}

impl FrameNamer for Symbolizer {
    fn kernel(&mut self, addr: u64) -> String {
        self.stats.kernel_frames += 1;
        if let Some(name) = self.kernel.get(&addr) {
            return name.clone();
        }
        let source = Source::Kernel(Kernel {
            vmlinux: MaybeDefault::None,
            debug_syms: false,
            ..Kernel::default()
        });
        let name = match self.blaze.symbolize(&source, Input::AbsAddr(&[addr])) {
            Ok(mut syms) => match syms.pop() {
                Some(Symbolized::Sym(sym)) => sym.name.into_owned(),
                _ => {
                    self.stats.kernel_unknown += 1;
                    UNKNOWN.to_string()
                }
            },
            Err(_) => {
                self.stats.kernel_unknown += 1;
                UNKNOWN.to_string()
            }
        };
        self.kernel.insert(addr, name.clone());
        name
    }

    fn user(&mut self, tgid: u32, addr: u64) -> String {
        self.stats.user_frames += 1;
        let Some(mapping) = self.maps.lookup(tgid, addr).cloned() else {
            self.stats.user_unmapped += 1;
            return UNKNOWN.to_string();
        };
        match &mapping.object {
            MappedObject::File { path, open } => {
                let file_offset = addr - mapping.start + mapping.offset;
                match self.elf_symbol(open, file_offset) {
                    Some(name) => name,
                    None => {
                        self.stats.user_no_symbol += 1;
                        let kind = *self
                            .objects
                            .entry(open.clone())
                            .or_insert_with(|| object_symbols(open));
                        let counts = match kind {
                            ObjectSymbols::Full => None,
                            ObjectSymbols::Stripped => Some(&mut self.stats.stripped),
                            ObjectSymbols::Unreadable => Some(&mut self.stats.unreadable),
                        };
                        if let Some(counts) = counts {
                            *counts.entry(path.display().to_string()).or_insert(0) += 1;
                        }
                        let base = path.file_name().map(|n| n.to_string_lossy().into_owned());
                        format!("[{}]", base.unwrap_or_else(|| path.display().to_string()))
                    }
                }
            }
            MappedObject::Vdso => "[vdso]".to_string(),
            MappedObject::Anonymous => {
                self.stats.user_unmapped += 1;
                UNKNOWN.to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolizes_own_function_and_kernel() {
        let mut maps = ProcessMaps::default();
        let pid = std::process::id();
        assert!(maps.refresh(pid));
        let addr = symbolizes_own_function_and_kernel as fn() as usize as u64;
        let mut sym = Symbolizer::new(maps);
        let name = sym.user(pid, addr);
        assert!(
            name.contains("symbolizes_own_function_and_kernel"),
            "got {name}"
        );
        assert_eq!(sym.user(pid, 8), UNKNOWN);
    }

    #[test]
    fn shares_of_samples_in_unnamed_objects() {
        let mut stats = SymbolStats::default();
        assert_eq!(
            stats.unnamed_in(&super::super::folded::Folded::default()),
            None
        );
        stats.stripped.insert("/usr/bin/python3.11".into(), 3);
        stats
            .stripped
            .insert("/usr/lib/x86_64-linux-gnu/libc.so.6".into(), 1);
        let mut oncpu = super::super::folded::Folded::default();
        oncpu.add(&["main (a.py:3)", "[python3.11]", "[libc.so.6]"], 10);
        oncpu.add(&["main (a.py:3)", "[python3.11]"], 15);
        oncpu.add(&["main (a.py:4)", "PyNumber_Add"], 75);
        let u = stats.unnamed_in(&oncpu).unwrap();
        assert_eq!((u.samples, u.share), (25, 25.0));
        assert_eq!(u.objects[0].object, "/usr/bin/python3.11");
        assert_eq!((u.objects[0].samples, u.objects[0].share), (25, 25.0));
        assert!(
            u.objects[0].fix.contains("--python"),
            "{}",
            u.objects[0].fix
        );
        assert_eq!((u.objects[1].samples, u.objects[1].share), (10, 10.0));
        assert_eq!(u.objects[1].reason, "stripped");
    }

    #[test]
    fn tells_stripped_objects_from_those_with_symbols() {
        // Debian ships libc with dynamic symbols only; the test binary has a symbol table.
        assert_eq!(
            object_symbols(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")),
            ObjectSymbols::Stripped
        );
        let own = std::env::current_exe().unwrap();
        assert_eq!(object_symbols(&own), ObjectSymbols::Full);
        assert_eq!(
            object_symbols(Path::new("/no/such/object.so")),
            ObjectSymbols::Unreadable
        );
    }

    #[test]
    fn mappings_survive_process_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut maps = ProcessMaps::default();
        assert!(maps.refresh(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!maps.refresh(pid));
        assert!(maps.pids().any(|p| p == pid));
    }

    #[test]
    fn a_fork_child_never_read_uses_its_parents_mappings() {
        let pid = std::process::id();
        let mut maps = ProcessMaps::default();
        assert!(maps.refresh(pid));
        let addr = a_fork_child_never_read_uses_its_parents_mappings as *const () as usize as u64;
        let (child, grandchild, stranger) = (u32::MAX - 1, u32::MAX - 2, u32::MAX - 3);
        assert!(maps.lookup(child, addr).is_none());
        maps.forked(child, pid);
        maps.forked(grandchild, child);
        let own = maps.lookup(pid, addr).cloned();
        assert!(own.is_some());
        assert_eq!(maps.lookup(child, addr).cloned(), own);
        assert_eq!(maps.lookup(grandchild, addr).cloned(), own);
        assert!(maps.lookup(stranger, addr).is_none());
        maps.forked(stranger, stranger);
        assert!(maps.lookup(stranger, addr).is_none());
    }
}
