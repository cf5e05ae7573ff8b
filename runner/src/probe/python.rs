//! Python stacks (userspace half): registers each CPython process of the target with the BPF
//! walker (`PY_PROCS`), and names the frames it records (`PY_STACKS`) as
//! `qualname (file:line)` by reading code objects from the live processes.

use std::collections::{BTreeMap, HashMap};

use aya::maps::HashMap as BpfHashMap;
use probes_common::{
    counters::Counter,
    python::{PyProc, PyStack, PyStackKey, PY_STACK_TRUNCATED},
};
use serde::{Deserialize, Serialize};

use super::{Counters, ProbeError, Probes};
use crate::cpython::{
    code::{is_library, CodeCache},
    discover::{self, Finder},
    layout::Layout,
};

/// Frame put at the root of a stack the walker cut short.
pub const TRUNCATED_FRAME: &str = "[python stack truncated]";

/// What is known of one target process.
#[derive(Clone, Debug)]
enum Known {
    /// The layout, and where `_PyRuntime` lies (start, end).
    Python(Box<Layout>, (u64, u64)),
    /// Not CPython, or CPython that cannot be walked (the report says why).
    Other { exe: Option<String> },
}

/// A Python process, for reports.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PythonProcess {
    pub pid: u32,
    /// `3.X`, or `3.Xt` for a free-threaded build.
    pub version: String,
    pub module: String,
    /// Distinct Python stacks named in this process.
    pub stacks: usize,
}

/// A process that runs CPython whose frames runner cannot walk.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "UnsupportedRepr")]
pub struct Unsupported {
    /// `3.10`, as the interpreter's file is named; None when its name does not say.
    pub version: Option<String>,
    /// The executable.
    pub executable: Option<String>,
    /// Why it has no Python frames.
    pub reason: String,
}

/// An entry as summary.json writes it, or the bare reason of files before versions.
#[derive(Deserialize)]
#[serde(untagged)]
enum UnsupportedRepr {
    Full {
        version: Option<String>,
        executable: Option<String>,
        reason: String,
    },
    Reason(String),
}

impl From<UnsupportedRepr> for Unsupported {
    fn from(r: UnsupportedRepr) -> Self {
        match r {
            UnsupportedRepr::Full {
                version,
                executable,
                reason,
            } => Self {
                version,
                executable,
                reason,
            },
            UnsupportedRepr::Reason(reason) => Self {
                reason,
                ..Self::default()
            },
        }
    }
}

/// What the Python side saw, for reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PythonReport {
    /// Samples and switch-outs whose Python stack was walked.
    pub walked: u64,
    /// Those of a Python process whose thread had no Python frames (C threads, idle).
    pub no_thread_state: u64,
    /// Walks that stopped at a faulting read.
    pub read_faults: u64,
    /// Stacks cut at the walker's depth limit.
    pub truncated: u64,
    /// CPython processes registered with the walker.
    pub processes: Vec<PythonProcess>,
    /// Processes whose interpreter could not be used: which version, and why.
    pub unsupported: BTreeMap<u32, Unsupported>,
    /// Distinct Python stacks named.
    pub stacks: usize,
    /// Code objects that could not be read (their frames show as `[code 0x...]`).
    pub unreadable_code_objects: u64,
    /// Code objects not read because their process exited first: stacks sampled in its
    /// last moments (also shown as `[code 0x...]`).
    #[serde(default)]
    pub code_objects_after_exit: u64,
}

/// Discovery and symbolization state across a recording.
#[derive(Default)]
pub struct Python {
    finder: Finder,
    known: HashMap<u32, Known>,
    code: CodeCache,
    names: HashMap<(u32, u64), Vec<String>>,
    /// Frames of library code (standard library, packages), by name.
    library: std::collections::HashSet<String>,
    report: PythonReport,
}

impl Python {
    /// Looks at target processes not seen before, and at those whose image changed (exec),
    /// registering CPython interpreters with the walker.
    pub fn refresh(&mut self, probes: &mut Probes, pids: &[u32]) -> Result<(), ProbeError> {
        let mut map: BpfHashMap<_, u32, PyProc> = probes.map_mut("PY_PROCS")?;
        for &pid in pids {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| p.display().to_string());
            let stale = match self.known.get(&pid) {
                None => true,
                // The exec program dropped the entry: look again.
                Some(Known::Python(..)) => map.get(&pid, 0).is_err(),
                Some(Known::Other { exe: before, .. }) => exe.is_some() && *before != exe,
            };
            if !stale {
                continue;
            }
            let known = match self.finder.find(pid) {
                Ok(Some(interp)) => {
                    let mut entry = interp.layout.proc_entry(interp.runtime);
                    if let Ok(ns) = std::fs::metadata(format!("/proc/{pid}/ns/pid")) {
                        use std::os::unix::fs::MetadataExt;
                        (entry.pidns_dev, entry.pidns_ino) = (ns.dev(), ns.ino());
                    }
                    map.insert(pid, entry, 0)
                        .map_err(|source| ProbeError::Map {
                            map: "PY_PROCS",
                            source,
                        })?;
                    self.report.processes.retain(|p| p.pid != pid);
                    self.report.processes.push(PythonProcess {
                        pid,
                        version: interp.layout.name(),
                        module: interp.module.display().to_string(),
                        stacks: 0,
                    });
                    Known::Python(
                        Box::new(interp.layout),
                        (interp.runtime, interp.runtime + interp.runtime_size),
                    )
                }
                Ok(None) => {
                    // An executable named python3.X that defines no interpreter runner can
                    // find is said so, not passed over.
                    if let Some(version) = exe.as_deref().and_then(discover::python_name_version) {
                        self.report.unsupported.insert(
                            pid,
                            Unsupported {
                                version: Some(version),
                                executable: exe.clone(),
                                reason: "neither it nor a libpython it maps defines `_PyRuntime`: a CPython build runner does not recognise (a stripped static build?)".into(),
                            },
                        );
                    }
                    Known::Other { exe }
                }
                Err(err) => {
                    let reason = format!("{:#}", anyhow::Error::from(err));
                    self.report.unsupported.insert(
                        pid,
                        Unsupported {
                            version: discover::mapped_version(pid),
                            executable: exe.clone(),
                            reason,
                        },
                    );
                    Known::Other { exe }
                }
            };
            self.known.insert(pid, known);
        }
        Ok(())
    }

    /// Names the Python stacks recorded since the last call, reading code objects from the
    /// processes while they are alive. Called on every tick, so short-lived processes get
    /// names too.
    pub fn resolve(&mut self, probes: &Probes) -> Result<(), ProbeError> {
        let map: BpfHashMap<_, PyStackKey, PyStack> = probes.map("PY_STACKS")?;
        let fresh: Vec<PyStackKey> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !self.names.contains_key(&(k.tgid, k.hash)))
            .collect();
        for key in fresh {
            let Some(Known::Python(layout, _)) = self.known.get(&key.tgid).cloned() else {
                continue;
            };
            let Ok(stack) = map.get(&key, 0) else {
                continue;
            };
            let names = self.name_stack(key.tgid, &stack, &layout);
            self.names.insert((key.tgid, key.hash), names);
        }
        self.report.stacks = self.names.len();
        self.report.unreadable_code_objects = self.code.failed;
        self.report.code_objects_after_exit = self.code.after_exit;
        Ok(())
    }

    /// Root-first frame names of a stack the walker recorded leaf first.
    fn name_stack(&mut self, pid: u32, stack: &PyStack, layout: &Layout) -> Vec<String> {
        let len = (stack.len as usize).min(stack.frames.len());
        let mut names: Vec<String> = stack.frames[..len]
            .iter()
            .rev()
            .filter(|f| f.code != 0)
            .filter_map(|f| match self.code.get(pid, f.code, layout) {
                Some(info) if info.is_incomplete(f.instr) => None,
                Some(info) => {
                    let name = info.frame(f.instr);
                    if is_library(&info.filename) {
                        self.library.insert(name.clone());
                    }
                    Some(name)
                }
                None => Some(format!("[code {:#x}]", f.code)),
            })
            .collect();
        if stack.flags & PY_STACK_TRUNCATED != 0 {
            names.insert(0, TRUNCATED_FRAME.to_string());
        }
        names
    }

    /// True when a named frame is library code rather than the application's.
    pub fn is_library_frame(&self, frame: &str) -> bool {
        self.library.contains(frame)
    }

    /// True when `pid` is a CPython process the walker follows.
    pub fn is_python(&self, pid: u32) -> bool {
        matches!(self.known.get(&pid), Some(Known::Python(..)))
    }

    /// Where `_PyRuntime` lies in a Python process (start, end): the GIL is inside it.
    pub fn runtime(&self, pid: u32) -> Option<(u64, u64)> {
        match self.known.get(&pid) {
            Some(Known::Python(_, range)) if range.1 > range.0 => Some(*range),
            _ => None,
        }
    }

    /// The frames of Python stack `id` of process `tgid`, root first, once resolved.
    pub fn frames(&self, tgid: u32, id: u64) -> Option<&[String]> {
        self.names.get(&(tgid, id)).map(Vec::as_slice)
    }

    /// What was found, for reports, with the walker's counters.
    pub fn report(&self, counters: &Counters) -> PythonReport {
        let mut report = self.report.clone();
        report.walked = counters.get(Counter::PyStacks);
        report.no_thread_state = counters.get(Counter::PyNoThreadState);
        report.read_faults = counters.get(Counter::PyReadFault);
        report.truncated = counters.get(Counter::PyTruncated);
        report.processes.sort_by_key(|p| p.pid);
        for p in &mut report.processes {
            p.stacks = self.names.keys().filter(|(pid, _)| *pid == p.pid).count();
        }
        report
    }
}
