//! Loading, attaching and reading the BPF probes. The object built from `probes/` is embedded
//! in the binary; each probe's userspace half lives in its own module here.

pub mod evloop;
pub mod offcpu;
pub mod oncpu;
pub mod python;
pub mod runqlat;
pub mod syscalls;
pub mod tracefs;

use std::{collections::BTreeSet, fmt, time::Duration};

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::{
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
        PerfEvent, Program, ProgramError, RawTracePoint, TracePoint,
    },
    Ebpf, EbpfLoader,
};
use probes_common::{
    counters::{Counter, COUNTERS},
    oncpu::{DEFAULT_FREQ_HZ, MAX_FREQ_HZ},
    stack::{Stack, NO_STACK},
};
use serde::Serialize;

use crate::cgroup::CgroupTarget;
use tracefs::{EventFormat, TracefsError};

/// The BPF object built by build.rs from `probes/`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probes.bpf.o"));

/// Errors from loading, attaching or reading the probes. Each names what was missing.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    #[error("loading the BPF object failed")]
    Object(#[source] aya::EbpfError),
    #[error("program `{0}` is missing from the BPF object")]
    MissingProgram(&'static str),
    #[error("map `{0}` is missing from the BPF object")]
    MissingMap(&'static str),
    #[error("program `{program}` is not of the expected type")]
    ProgramType {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("loading program `{program}` into the kernel failed")]
    Load {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("attaching program `{program}` to {hook} failed")]
    Attach {
        program: &'static str,
        hook: String,
        #[source]
        source: ProgramError,
    },
    #[error("map `{map}`")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot list the online CPUs ({0})")]
    Cpus(&'static str, #[source] std::io::Error),
}

/// The four probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Oncpu,
    Offcpu,
    Runqlat,
    Syscalls,
    /// Event-loop stalls; runs inside the syscalls, offcpu and oncpu programs.
    Evloop,
}

impl ProbeKind {
    /// Every probe.
    pub const ALL: [ProbeKind; 5] = [
        Self::Oncpu,
        Self::Offcpu,
        Self::Runqlat,
        Self::Syscalls,
        Self::Evloop,
    ];

    /// The probe's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Oncpu => "oncpu",
            Self::Offcpu => "offcpu",
            Self::Runqlat => "runqlat",
            Self::Syscalls => "syscalls",
            Self::Evloop => "evloop",
        }
    }

    fn programs(self) -> &'static [ProgramSpec] {
        match self {
            Self::Oncpu => oncpu::PROGRAMS,
            Self::Offcpu => offcpu::PROGRAMS,
            Self::Runqlat => runqlat::PROGRAMS,
            Self::Syscalls => syscalls::PROGRAMS,
            Self::Evloop => evloop::PROGRAMS,
        }
    }
}

/// Where a program attaches.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    /// A classic tracepoint.
    Tracepoint {
        category: &'static str,
        name: &'static str,
    },
    /// A raw tracepoint: the tracepoint's arguments as they are, no trace record.
    RawTracepoint { name: &'static str },
    /// perf_event on the software CPU clock, once per online CPU.
    CpuClock,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::Tracepoint { category, name } => write!(f, "tracepoint {category}/{name}"),
            Hook::RawTracepoint { name } => write!(f, "raw tracepoint {name}"),
            Hook::CpuClock => write!(f, "perf_event cpu-clock"),
        }
    }
}

/// One BPF program and its hook.
#[derive(Clone, Copy, Debug)]
pub struct ProgramSpec {
    pub name: &'static str,
    pub hook: Hook,
}

/// Programs that maintain the target set; attached whenever any probe is.
const TARGET_PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        name: "target_newtask",
        hook: Hook::Tracepoint {
            category: "task",
            name: "task_newtask",
        },
    },
    ProgramSpec {
        name: "target_exit",
        hook: Hook::Tracepoint {
            category: "sched",
            name: "sched_process_exit",
        },
    },
    ProgramSpec {
        name: "target_exec",
        hook: Hook::Tracepoint {
            category: "sched",
            name: "sched_process_exec",
        },
    },
    ProgramSpec {
        name: "target_migrate",
        hook: Hook::Tracepoint {
            category: "cgroup",
            name: "cgroup_attach_task",
        },
    },
];

/// What the probes record and how.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeConfig {
    /// On-CPU sampling frequency in Hz.
    pub freq_hz: u64,
    /// Shortest off-CPU interval recorded.
    #[serde(serialize_with = "serialize_micros", rename = "offcpu_min_us")]
    pub offcpu_min: Duration,
    /// Processes forked by a target process become targets.
    pub follow_fork: bool,
    /// Probes to attach.
    pub probes: BTreeSet<ProbeKind>,
    /// Event-loop iterations at least this long are stalls.
    #[serde(serialize_with = "serialize_micros", rename = "stall_threshold_us")]
    pub stall_threshold: Duration,
    /// With evloop: the other probes record loop threads between their waits only (what
    /// diagnose needs), so stacks, syscall figures and off-CPU time of other threads are not
    /// recorded.
    pub loops_only: bool,
}

impl ProbeConfig {
    /// The probes to attach: those asked for, plus the ones evloop runs inside.
    pub fn kinds(&self) -> BTreeSet<ProbeKind> {
        let mut kinds = self.probes.clone();
        if kinds.contains(&ProbeKind::Evloop) {
            kinds.extend([ProbeKind::Oncpu, ProbeKind::Offcpu, ProbeKind::Syscalls]);
        }
        kinds
    }
}

fn serialize_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            freq_hz: DEFAULT_FREQ_HZ,
            offcpu_min: Duration::from_micros(1),
            follow_fork: true,
            probes: ProbeKind::ALL.into_iter().collect(),
            stall_threshold: DEFAULT_STALL_THRESHOLD,
            loops_only: false,
        }
    }
}

/// Default stall threshold of event loops.
pub const DEFAULT_STALL_THRESHOLD: Duration = Duration::from_millis(10);

/// Highest on-CPU sampling frequency accepted.
pub const MAX_FREQ: u64 = MAX_FREQ_HZ;

/// The processes and cgroups the probes record.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Target {
    pub tgids: Vec<u32>,
    pub cgroups: Vec<CgroupTarget>,
}

/// Every program a configuration attaches, target tracking first.
pub fn planned_programs(config: &ProbeConfig) -> Vec<ProgramSpec> {
    let mut specs = TARGET_PROGRAMS.to_vec();
    for kind in config.kinds() {
        specs.extend_from_slice(kind.programs());
    }
    specs
}

/// A program that is attached, for probe.json.
#[derive(Clone, Debug, Serialize)]
pub struct AttachedProgram {
    pub program: &'static str,
    pub hook: String,
    pub links: usize,
}

/// `program`, the program `spec` names, as its type `T`.
fn typed<'a, T>(spec: &ProgramSpec, program: &'a mut Program) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
{
    program
        .try_into()
        .map_err(|source| ProbeError::ProgramType {
            program: spec.name,
            source,
        })
}

/// Verifies and loads the program of `spec` into the kernel, without attaching it.
fn load_program(spec: &ProgramSpec, program: &mut Program) -> Result<(), ProbeError> {
    let load_err = |source| ProbeError::Load {
        program: spec.name,
        source,
    };
    match spec.hook {
        Hook::Tracepoint { .. } => typed::<TracePoint>(spec, program)?.load().map_err(load_err),
        Hook::RawTracepoint { .. } => typed::<RawTracePoint>(spec, program)?
            .load()
            .map_err(load_err),
        Hook::CpuClock => typed::<PerfEvent>(spec, program)?.load().map_err(load_err),
    }
}

/// The probes, loaded and attached. Dropping this detaches everything.
pub struct Probes {
    ebpf: Ebpf,
    attached: Vec<AttachedProgram>,
}

impl Probes {
    /// Loads the object, fills the target maps, then attaches the target-tracking programs
    /// and the chosen probes.
    pub fn attach(config: &ProbeConfig, target: &Target) -> Result<Self, ProbeError> {
        let tracefs = tracefs::ensure_mounted()?;
        let switch = EventFormat::read(&tracefs, "sched", "sched_switch")?;
        let wakeup = EventFormat::read(&tracefs, "sched", "sched_wakeup")?;
        let wakeup_new = EventFormat::read(&tracefs, "sched", "sched_wakeup_new")?;
        let exit = EventFormat::read(&tracefs, "sched", "sched_process_exit")?;
        let newtask = EventFormat::read(&tracefs, "task", "task_newtask")?;

        let follow_fork = u32::from(config.follow_fork);
        let cgroup_levels = target
            .cgroups
            .iter()
            .fold(0u32, |mask, c| mask | (1u32 << c.level));
        let offcpu_min_ns = config.offcpu_min.as_nanos() as u64;
        let fields = [
            ("SWITCH_PREV_STATE", switch.field("prev_state")?),
            ("SWITCH_NEXT_PID", switch.field("next_pid")?),
            ("SWITCH_NEXT_COMM", switch.field("next_comm")?),
            ("WAKEUP_PID", wakeup.field("pid")?),
            ("WAKEUP_NEW_PID", wakeup_new.field("pid")?),
            ("EXIT_PID", exit.field("pid")?),
            ("NEWTASK_PID", newtask.field("pid")?),
            ("NEWTASK_FLAGS", newtask.field("clone_flags")?),
        ];
        let evloop_on = u32::from(config.probes.contains(&ProbeKind::Evloop));
        let loops_only = evloop_on & u32::from(config.loops_only);
        let stall_ns = config.stall_threshold.as_nanos() as u64;
        let mut loader = EbpfLoader::new();
        loader
            .override_global("FOLLOW_FORK", &follow_fork, true)
            .override_global("CGROUP_LEVELS", &cgroup_levels, true)
            .override_global("OFFCPU_MIN_NS", &offcpu_min_ns, true)
            .override_global("EVLOOP_ON", &evloop_on, true)
            .override_global("LOOPS_ONLY", &loops_only, true)
            .override_global("STALL_NS", &stall_ns, true);
        for (name, field) in &fields {
            loader.override_global(name, field, true);
        }
        // The stacks map is preallocated (17 MiB): without a probe that takes stacks, it
        // keeps one entry.
        let takes_stacks = [ProbeKind::Oncpu, ProbeKind::Offcpu, ProbeKind::Evloop]
            .iter()
            .any(|p| config.probes.contains(p));
        if !takes_stacks {
            loader.map_max_entries("STACKS", 1);
        }
        let ebpf = loader.load(OBJECT).map_err(ProbeError::Object)?;
        let mut probes = Self {
            ebpf,
            attached: Vec::new(),
        };
        probes.add_tgids(&target.tgids)?;
        {
            let mut cgroups: BpfHashMap<_, u64, u32> = probes.map_mut("TARGET_CGROUPS")?;
            for cgroup in &target.cgroups {
                cgroups
                    .insert(cgroup.id, 1, 0)
                    .map_err(|source| ProbeError::Map {
                        map: "TARGET_CGROUPS",
                        source,
                    })?;
            }
        }
        // Every program is verified before the first one is attached, so they all start
        // within a few milliseconds of each other (verifying takes a second or more), and
        // the first sampling tick follows right after.
        let specs = planned_programs(config);
        probes.load_programs(&specs)?;
        for spec in &specs {
            probes.attach_program(spec, config.freq_hz)?;
        }
        Ok(probes)
    }

    /// Adds processes to the target, before any program is attached: their bits in
    /// TARGET_BITS are written whole, which would race with `target_newtask` setting the bit
    /// of a forked child in the same word.
    fn add_tgids(&mut self, tgids: &[u32]) -> Result<(), ProbeError> {
        let mut map: BpfHashMap<_, u32, u32> = self.map_mut("TARGET_TGIDS")?;
        for tgid in tgids {
            map.insert(tgid, tgid, 0)
                .map_err(|source| ProbeError::Map {
                    map: "TARGET_TGIDS",
                    source,
                })?;
        }
        let map_err = |source| ProbeError::Map {
            map: "TARGET_BITS",
            source,
        };
        let mut bits: Array<_, u64> = self.map_mut("TARGET_BITS")?;
        for &tgid in tgids {
            let (index, bit) = probes_common::target::id_bit(tgid);
            let word = bits.get(&index, 0).map_err(map_err)?;
            bits.set(index, word | bit, 0).map_err(map_err)?;
        }
        Ok(())
    }

    /// The program `spec` names, as its type `T`.
    fn program<'a, T>(&'a mut self, spec: &ProgramSpec) -> Result<&'a mut T, ProbeError>
    where
        &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
    {
        let program = self
            .ebpf
            .program_mut(spec.name)
            .ok_or(ProbeError::MissingProgram(spec.name))?;
        typed(spec, program)
    }

    /// Verifies and loads the programs of `specs` into the kernel, without attaching them,
    /// on a thread per CPU (at most four): the verifier takes most of the start-up (the two
    /// largest programs a third of a second to a second each), and privileged loads are
    /// verified in parallel.
    fn load_programs(&mut self, specs: &[ProgramSpec]) -> Result<(), ProbeError> {
        let mut by_name: std::collections::HashMap<&str, &mut Program> =
            self.ebpf.programs_mut().collect();
        let mut queue = Vec::with_capacity(specs.len());
        for spec in specs {
            let program = by_name
                .remove(spec.name)
                .ok_or(ProbeError::MissingProgram(spec.name))?;
            queue.push((spec, program));
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let queue = std::sync::Mutex::new(queue);
        let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
        std::thread::scope(|scope| {
            let loaders: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> Result<(), ProbeError> {
                        while let Some((spec, program)) = next() {
                            load_program(spec, program)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            // The scope joins every loader; the first error (in thread order) is returned.
            loaders
                .into_iter()
                .try_for_each(|loader| loader.join().expect("a program loader panicked"))
        })
    }

    /// Attaches a loaded program to its hook.
    fn attach_program(&mut self, spec: &ProgramSpec, freq_hz: u64) -> Result<(), ProbeError> {
        let attach_err = |source| ProbeError::Attach {
            program: spec.name,
            hook: spec.hook.to_string(),
            source,
        };
        let links = match spec.hook {
            Hook::Tracepoint { category, name } => {
                let tp = self.program::<TracePoint>(spec)?;
                tp.attach(category, name).map_err(attach_err)?;
                1
            }
            Hook::RawTracepoint { name } => {
                let tp = self.program::<RawTracePoint>(spec)?;
                tp.attach(name).map_err(attach_err)?;
                1
            }
            Hook::CpuClock => {
                let perf = self.program::<PerfEvent>(spec)?;
                let cpus =
                    aya::util::online_cpus().map_err(|(what, e)| ProbeError::Cpus(what, e))?;
                for &cpu in &cpus {
                    perf.attach(
                        PerfEventConfig::Software(SoftwareEvent::CpuClock),
                        PerfEventScope::AllProcessesOneCpu { cpu },
                        SamplePolicy::Frequency(freq_hz),
                        false,
                    )
                    .map_err(attach_err)?;
                }
                cpus.len()
            }
        };
        self.attached.push(AttachedProgram {
            program: spec.name,
            hook: spec.hook.to_string(),
            links,
        });
        Ok(())
    }

    /// The programs attached so far.
    pub fn attached(&self) -> &[AttachedProgram] {
        &self.attached
    }

    /// Detaches and unloads every program; the maps stay readable.
    pub fn detach(&mut self) {
        for attached in self.attached.drain(..) {
            if let Some(program) = self.ebpf.program_mut(attached.program) {
                let _ = match program {
                    aya::programs::Program::TracePoint(p) => p.unload(),
                    aya::programs::Program::RawTracePoint(p) => p.unload(),
                    aya::programs::Program::PerfEvent(p) => p.unload(),
                    _ => Ok(()),
                };
            }
        }
    }

    /// Processes in the target set: those named at start and those followed through fork.
    pub fn target_tgids(&self) -> Result<Vec<u32>, ProbeError> {
        Ok(self
            .target_origins()?
            .into_iter()
            .map(|(tgid, _)| tgid)
            .collect())
    }

    /// Each process in the target set with the process whose address space it started from:
    /// itself when named or after an exec, its parent when forked.
    pub fn target_origins(&self) -> Result<Vec<(u32, u32)>, ProbeError> {
        let map: BpfHashMap<_, u32, u32> = self.map("TARGET_TGIDS")?;
        map.iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| ProbeError::Map {
                map: "TARGET_TGIDS",
                source,
            })
    }

    /// Event and loss counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, ProbeError> {
        let map: PerCpuArray<_, u64> = self.map("COUNTS")?;
        let mut values = [0u64; COUNTERS as usize];
        for (index, value) in values.iter_mut().enumerate() {
            let per_cpu = map
                .get(&(index as u32), 0)
                .map_err(|source| ProbeError::Map {
                    map: "COUNTS",
                    source,
                })?;
            *value = per_cpu.iter().sum();
        }
        Ok(Counters { values })
    }

    /// Reads the stacks map, addresses leaf first.
    pub fn stacks(&self) -> Result<StackTable, ProbeError> {
        let stacks = read_hash::<u64, Stack>(self, "STACKS")?;
        Ok(StackTable::from_stacks(
            stacks
                .into_iter()
                .map(|(id, stack)| (id, stack.frames().to_vec())),
        ))
    }

    pub(crate) fn map<'a, T>(&'a self, name: &'static str) -> Result<T, ProbeError>
    where
        T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map(name).ok_or(ProbeError::MissingMap(name))?;
        T::try_from(map).map_err(|source| ProbeError::Map { map: name, source })
    }

    pub(crate) fn map_mut<'a, T>(&'a mut self, name: &'static str) -> Result<T, ProbeError>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(ProbeError::MissingMap(name))?;
        T::try_from(map).map_err(|source| ProbeError::Map { map: name, source })
    }

    /// The loaded object, for the probe modules' readers.
    pub(crate) fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }
}

/// Reads a whole hash map of `Pod` keys and values.
pub(crate) fn read_hash<K: aya::Pod, V: aya::Pod>(
    probes: &Probes,
    name: &'static str,
) -> Result<Vec<(K, V)>, ProbeError> {
    let map: BpfHashMap<&MapData, K, V> = probes.map(name)?;
    map.iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ProbeError::Map { map: name, source })
}

/// A kernel comm as a string, up to its NUL.
pub fn comm_str(comm: &[u8; probes_common::COMM_LEN]) -> String {
    let end = comm
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(probes_common::COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// Stacks by id, addresses leaf first.
#[derive(Debug, Default)]
pub struct StackTable {
    table: std::collections::HashMap<u64, Vec<u64>>,
}

impl StackTable {
    /// The addresses of a stack, leaf first; empty for [`NO_STACK`] or an unknown id.
    pub fn get(&self, id: u64) -> &[u64] {
        if id == NO_STACK {
            return &[];
        }
        self.table.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Builds a table from stacks by id.
    pub fn from_stacks(stacks: impl IntoIterator<Item = (u64, Vec<u64>)>) -> Self {
        Self {
            table: stacks.into_iter().collect(),
        }
    }
}

/// The values of the counters in [`Counter`].
#[derive(Clone, Debug)]
pub struct Counters {
    values: [u64; COUNTERS as usize],
}

impl Counters {
    /// The value of one counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize]
    }

    /// Counters that record lost data, by name (all of them, zeros included).
    pub fn losses(&self) -> std::collections::BTreeMap<&'static str, u64> {
        Counter::ALL
            .iter()
            .filter(|c| c.is_loss())
            .map(|c| (c.name(), self.get(*c)))
            .collect()
    }

    /// Event tallies, by name.
    pub fn events(&self) -> std::collections::BTreeMap<&'static str, u64> {
        Counter::ALL
            .iter()
            .filter(|c| !c.is_loss())
            .map(|c| (c.name(), self.get(*c)))
            .collect()
    }

    /// The non-zero loss counters, and why stacks were lost (collision, fault, map full,
    /// other), by name: what to look at when something was lost.
    pub fn lost_detail(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let reasons = [
            Counter::StackCollision,
            Counter::StackFault,
            Counter::StackOther,
            Counter::StackMapFull,
        ];
        self.losses()
            .into_iter()
            .chain(reasons.iter().map(|c| (c.name(), self.get(*c))))
            .filter(|(_, v)| *v > 0)
            .collect()
    }

    /// Sum of every loss counter.
    pub fn lost_total(&self) -> u64 {
        self.losses().values().sum()
    }
}
