//! A recording: the probes (optional) and the resource sampler attached to a target while
//! something else happens (load, a command, a wait), then detached, symbolized and handed
//! over as data. The recorder owns the tick loop: [`Recorder::record_while`] runs the work on
//! its own thread and ticks until it ends. `runner probe`, `profile` and `diagnose` all
//! record through this.

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use probes_common::{
    counters::Counter,
    evloop::{StackIds, StallEvent},
    stack::StackKey,
};
use serde::Serialize;

use crate::{
    cgroup::{self, CgroupTarget},
    interference::{MachineSampler, Watch},
    probe::{
        evloop::{self, EvloopData, Snapshot, Window},
        offcpu::{self, OffcpuTotals},
        oncpu,
        python::{Python, PythonReport},
        runqlat::{self, RunqReport},
        syscalls::{self, SyscallReport},
        AttachedProgram, Counters, ProbeConfig, ProbeError, ProbeKind, Probes, Target,
    },
    sampler::{ResourceSampler, INTERVAL},
    stacks::{
        assemble::{fold_stacks, is_python_frame, stack_frames, FrameNamer},
        symbolize::{ProcessMaps, SymbolStats, Symbolizer},
        Folded,
    },
    target::{
        cgroup::{CgroupResources, CgroupSet, UsageSampler},
        process::{self, ProcessFacts},
    },
};

/// How long after start new processes are looked for every [`EARLY_POLL`] when asked.
const EARLY: Duration = Duration::from_secs(1);
const EARLY_POLL: Duration = Duration::from_millis(5);

/// Probes and sampler, attached.
pub struct Recorder {
    probes: Option<Probes>,
    sampler: ResourceSampler,
    machine: MachineSampler,
    maps: ProcessMaps,
    python: Python,
    stalls: Vec<StallEvent>,
    windows: Vec<Window>,
    open_window: Option<(String, Snapshot)>,
    start_ns: u64,
    seen: BTreeSet<u32>,
    /// Every process seen, with its PID inside its own namespace.
    processes: std::collections::BTreeMap<u32, ProcessFacts>,
    cgroups: Vec<CgroupTarget>,
    /// The counters of each target cgroup.
    usage: Vec<UsageSampler>,
    config: ProbeConfig,
    started: Instant,
    started_at: String,
}

/// What a recording saw, symbolized.
pub struct Recording {
    pub started_at: String,
    pub duration: Duration,
    pub config: ProbeConfig,
    /// None when recorded without probes.
    pub counters: Option<Counters>,
    pub attached: Vec<AttachedProgram>,
    pub oncpu: Folded,
    pub offcpu: Folded,
    pub offcpu_totals: OffcpuTotals,
    pub syscalls: SyscallReport,
    pub runq: RunqReport,
    pub sampler: ResourceSampler,
    /// What else the machine did meanwhile.
    pub machine: MachineSampler,
    pub symbols: SymbolStats,
    pub python: PythonReport,
    /// Event-loop figures, when the evloop probe was attached.
    pub evloop: Option<EvloopData>,
    pub processes_seen: Vec<u32>,
    /// The processes seen, with their PIDs inside their own namespaces.
    pub processes: Vec<ProcessFacts>,
    /// Each target cgroup's own counters over the recording.
    pub cgroups: Vec<CgroupResources>,
}

impl Recorder {
    /// Attaches the probes (unless `with_probes` is false) and starts sampling.
    pub fn start(
        config: &ProbeConfig,
        target: &Target,
        with_probes: bool,
    ) -> Result<Self, ProbeError> {
        let probes = if with_probes {
            Some(Probes::attach(config, target)?)
        } else {
            None
        };
        // A single cgroup target counts the CPU of every process that ran in it.
        let cgroup = match target.cgroups.as_slice() {
            [one] => Some(one.path.clone()),
            _ => None,
        };
        let mut recorder = Self {
            probes,
            sampler: ResourceSampler::new(cgroup),
            machine: MachineSampler::default(),
            maps: ProcessMaps::default(),
            python: Python::default(),
            stalls: Vec::new(),
            windows: Vec::new(),
            open_window: None,
            start_ns: evloop::now_ns(),
            seen: target.tgids.iter().copied().collect(),
            processes: Default::default(),
            cgroups: target.cgroups.clone(),
            usage: target
                .cgroups
                .iter()
                .map(|c| UsageSampler::new(CgroupSet::of_dir(&c.path)))
                .collect(),
            config: config.clone(),
            started: Instant::now(),
            started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        recorder.tick();
        Ok(recorder)
    }

    /// Watches the machine for interference: what the run owns and where it runs.
    pub fn watch(&mut self, watch: Watch) {
        self.machine = MachineSampler::new(watch);
        self.machine.sample(self.sampler.total_cpu_ns());
    }

    /// The attached programs.
    pub fn attached(&self) -> &[AttachedProgram] {
        self.probes.as_ref().map(Probes::attached).unwrap_or(&[])
    }

    /// Live target processes: the kernel's tgid set, the processes of target cgroups, and
    /// those named at start.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .probes
            .as_ref()
            .and_then(|p| p.target_tgids().ok())
            .unwrap_or_default();
        pids.extend(self.seen.iter().copied());
        for c in &self.cgroups {
            pids.extend(cgroup::procs(&c.path));
        }
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|pid| Path::new(&format!("/proc/{pid}")).exists());
        pids
    }

    /// One sampling step: resources, and the mappings of every target process (cached, so
    /// processes that exit later are still symbolized). Call every `sampler::INTERVAL`.
    pub fn tick(&mut self) {
        let pids = self.pids();
        for &pid in &pids {
            self.maps.refresh(pid);
        }
        self.seen.extend(&pids);
        for &pid in &pids {
            if let std::collections::btree_map::Entry::Vacant(e) = self.processes.entry(pid) {
                if let Some(facts) = process::facts(pid) {
                    e.insert(facts);
                }
            }
        }
        self.sampler.sample(&pids);
        self.machine.sample(self.sampler.total_cpu_ns());
        for u in &mut self.usage {
            u.sample();
        }
        if let Some(probes) = self.probes.as_mut() {
            if let Err(err) = self.python.refresh(probes, &pids) {
                eprintln!("warning: Python stacks: {:#}", anyhow::Error::from(err));
            }
            let _ = self.python.resolve(probes);
            if self.config.probes.contains(&ProbeKind::Evloop) {
                let _ = evloop::drain(probes, &mut self.stalls);
            }
        }
    }

    /// The target's CPU time so far (nanoseconds), sampled now: differences of two calls are
    /// the CPU time in between.
    pub fn cpu_ns_now(&mut self) -> u64 {
        self.tick();
        self.sampler.total_cpu_ns()
    }

    /// Starts a window (see [`Window`]); without the evloop probe this does nothing.
    pub fn window_start(&mut self, label: &str) -> Result<(), ProbeError> {
        if !self.config.probes.contains(&ProbeKind::Evloop) {
            return Ok(());
        }
        if let Some(probes) = self.probes.as_mut() {
            evloop::drain(probes, &mut self.stalls)?;
            self.open_window = Some((label.to_string(), evloop::snapshot(probes)?));
        }
        Ok(())
    }

    /// Ticks until the loops have finished what was queued (every loop waits for events), or
    /// `max` passed: load that stopped leaves requests behind, and their work belongs to the
    /// window that sent them.
    pub fn settle(&mut self, max: Duration) -> Result<(), ProbeError> {
        let Some(probes) = self.probes.as_ref() else {
            return Ok(());
        };
        if !self.config.probes.contains(&ProbeKind::Evloop) {
            return Ok(());
        }
        let started = Instant::now();
        // Two idle looks in a row, a little apart: a loop between two waits is busy.
        let mut idle = 0;
        while idle < 2 && started.elapsed() < max {
            idle = if evloop::all_waiting(probes)? {
                idle + 1
            } else {
                0
            };
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Ends the window started last.
    pub fn window_end(&mut self) -> Result<(), ProbeError> {
        let Some((label, before)) = self.open_window.take() else {
            return Ok(());
        };
        let Some(probes) = self.probes.as_mut() else {
            return Ok(());
        };
        evloop::drain(probes, &mut self.stalls)?;
        let after = evloop::snapshot(probes)?;
        self.windows.push(Window::new(&label, before, after));
        Ok(())
    }

    /// Ticks every [`INTERVAL`] until `done` says so. With `early`, new processes are also
    /// looked for every few milliseconds during the first second, so a launched interpreter's
    /// first frames are walked too.
    pub fn record_until(&mut self, early: bool, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            if early && started.elapsed() < EARLY {
                let until = Instant::now() + INTERVAL;
                while Instant::now() < until && !done() {
                    std::thread::sleep(EARLY_POLL);
                    self.discover();
                }
            } else {
                std::thread::sleep(INTERVAL);
            }
            self.tick();
        }
    }

    /// Runs `work` on a thread of its own and records until it returns; `each_tick` runs
    /// after every tick (to watch the target, say). Returns what `work` returned.
    pub fn record_while<T: Send>(
        &mut self,
        work: impl FnOnce() -> T + Send,
        mut each_tick: impl FnMut(),
    ) -> T {
        std::thread::scope(|scope| {
            let handle = scope.spawn(work);
            self.record_until(false, || {
                each_tick();
                handle.is_finished()
            });
            match handle.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Registers new Python processes with the walker, between ticks.
    pub fn discover(&mut self) {
        let pids = self.pids();
        if let Some(probes) = self.probes.as_mut() {
            let _ = self.python.refresh(probes, &pids);
        }
    }

    /// Detaches, reads everything and symbolizes. Without windows, the event-loop data has one
    /// window over the whole recording, labelled `whole`.
    pub fn finish(mut self, whole: &str) -> anyhow::Result<Recording> {
        let duration = self.started.elapsed();
        for u in &mut self.usage {
            u.sample();
        }
        let cgroups: Vec<CgroupResources> =
            self.usage.iter().map(UsageSampler::resources).collect();
        let processes: Vec<ProcessFacts> =
            std::mem::take(&mut self.processes).into_values().collect();
        let empty = Recording {
            started_at: self.started_at.clone(),
            duration,
            config: self.config.clone(),
            counters: None,
            attached: Vec::new(),
            oncpu: Folded::default(),
            offcpu: Folded::default(),
            offcpu_totals: OffcpuTotals::default(),
            syscalls: syscalls::report(&[]),
            runq: runqlat::report(&Default::default()),
            sampler: ResourceSampler::default(),
            machine: MachineSampler::default(),
            symbols: SymbolStats::default(),
            python: PythonReport::default(),
            evloop: None,
            processes_seen: Vec::new(),
            processes,
            cgroups,
        };
        let Some(mut probes) = self.probes.take() else {
            return Ok(Recording {
                sampler: self.sampler,
                machine: self.machine,
                processes_seen: self.seen.into_iter().collect(),
                ..empty
            });
        };
        let attached = probes.attached().to_vec();
        probes.detach();
        let counters = probes.counters()?;
        for (pid, origin) in probes.target_origins()? {
            self.maps.forked(pid, origin);
            self.maps.ensure(pid);
            self.seen.insert(pid);
        }
        let stacks = probes.stacks()?;
        let oncpu_data = oncpu::read(&probes)?;
        let offcpu_data = offcpu::read(&probes)?;
        let runq_data = runqlat::read(&probes)?;
        let syscall_data = syscalls::read(&probes)?;
        self.python.resolve(&probes)?;
        let evloop_windows = if self.config.probes.contains(&ProbeKind::Evloop) {
            evloop::drain(&mut probes, &mut self.stalls)?;
            if self.windows.is_empty() {
                let before = Snapshot {
                    at_ns: self.start_ns,
                    ..Snapshot::default()
                };
                let after = evloop::snapshot(&probes)?;
                self.windows.push(Window::new(whole, before, after));
            }
            Some(std::mem::take(&mut self.windows))
        } else {
            None
        };
        drop(probes);
        let mut namer = Namer {
            symbols: Symbolizer::new(self.maps),
            python: &self.python,
        };
        let oncpu = fold_stacks(&oncpu_data, |c| *c, &stacks, &mut namer);
        let offcpu = fold_stacks(&offcpu_data, offcpu::weight_us, &stacks, &mut namer);
        let evloop = evloop_windows.map(|windows| {
            let mut named = std::collections::BTreeMap::new();
            let mut name = |tgid: u32, ids: StackIds| {
                named.entry((tgid, ids)).or_insert_with(|| {
                    let key = StackKey {
                        tgid,
                        _pad: 0,
                        kstack: ids.kstack,
                        ustack: ids.ustack,
                        pystack: ids.pystack,
                        comm: [0; probes_common::COMM_LEN],
                    };
                    // Drop the (empty) comm frame.
                    stack_frames(&key, &stacks, &mut namer)
                        .into_iter()
                        .skip(1)
                        .collect::<Vec<_>>()
                });
            };
            for e in &self.stalls {
                for ids in [e.sys_stacks, e.cpu_stacks, e.call_stacks] {
                    name(e.tgid, ids);
                }
            }
            for w in &windows {
                for key in w.after.calls.keys() {
                    name(key.tgid, key.stacks);
                }
            }
            let library_frames = named
                .values()
                .flatten()
                .filter(|f| self.python.is_library_frame(f))
                .cloned()
                .collect();
            let python_pids = self
                .seen
                .iter()
                .copied()
                .filter(|pid| self.python.is_python(*pid))
                .collect();
            let runtimes = self
                .seen
                .iter()
                .filter_map(|pid| Some((*pid, self.python.runtime(*pid)?)))
                .collect();
            EvloopData {
                library_frames,
                python_pids,
                runtimes,
                threshold: self.config.stall_threshold,
                windows,
                stalls: std::mem::take(&mut self.stalls),
                stacks: named,
            }
        });
        let symbolizer = namer.symbols;
        let python = self.python.report(&counters);
        Ok(Recording {
            counters: Some(counters),
            attached,
            oncpu,
            offcpu,
            offcpu_totals: offcpu::totals(&offcpu_data),
            syscalls: syscalls::report(&syscall_data),
            runq: runqlat::report(&runq_data),
            sampler: self.sampler,
            machine: self.machine,
            symbols: symbolizer.stats().clone(),
            python,
            evloop,
            processes_seen: self.seen.into_iter().collect(),
            ..empty
        })
    }
}

/// Native symbols plus the Python frames named during the recording.
struct Namer<'a> {
    symbols: Symbolizer,
    python: &'a Python,
}

impl FrameNamer for Namer<'_> {
    fn kernel(&mut self, addr: u64) -> String {
        self.symbols.kernel(addr)
    }
    fn user(&mut self, tgid: u32, addr: u64) -> String {
        self.symbols.user(tgid, addr)
    }
    fn python(&mut self, tgid: u32, id: u64) -> Option<Vec<String>> {
        self.python.frames(tgid, id).map(<[String]>::to_vec)
    }
}

/// Top on-CPU frames (leaf functions), by samples.
#[derive(Clone, Debug, Serialize)]
pub struct TopFrame {
    pub frame: String,
    pub samples: u64,
    pub share: f64,
}

impl Recording {
    /// On-CPU samples.
    pub fn oncpu_samples(&self) -> u64 {
        self.counters
            .as_ref()
            .map(|c| c.get(Counter::OncpuSamples))
            .unwrap_or(0)
    }

    /// Lost records by counter, with why stack ids failed; empty without probes.
    pub fn lost_detail(&self) -> std::collections::BTreeMap<String, u64> {
        self.counters
            .as_ref()
            .map(|c| {
                c.lost_detail()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Lost records, all kinds.
    pub fn lost_total(&self) -> u64 {
        self.counters
            .as_ref()
            .map(Counters::lost_total)
            .unwrap_or(0)
    }

    /// The `n` leaf frames with most on-CPU samples (kernel frames included).
    pub fn top_frames(&self, n: usize) -> Vec<TopFrame> {
        self.top_by(n, |stack| stack.rsplit(';').next())
    }

    /// The `n` innermost Python frames with most on-CPU samples (stacks of Python code only).
    pub fn top_python_frames(&self, n: usize) -> Vec<TopFrame> {
        self.top_by(n, |stack| stack.rsplit(';').find(|f| is_python_frame(f)))
    }

    fn top_by(&self, n: usize, key: impl Fn(&str) -> Option<&str>) -> Vec<TopFrame> {
        let mut by_frame: std::collections::BTreeMap<String, u64> = Default::default();
        for (stack, count) in self.oncpu.iter() {
            if let Some(frame) = key(stack) {
                *by_frame.entry(frame.to_string()).or_insert(0) += count;
            }
        }
        let total = self.oncpu.total().max(1) as f64;
        let mut frames: Vec<TopFrame> = by_frame
            .into_iter()
            .map(|(frame, samples)| TopFrame {
                frame,
                samples,
                share: crate::num::round1(100.0 * samples as f64 / total),
            })
            .collect();
        frames.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.frame.cmp(&b.frame)));
        frames.truncate(n);
        frames
    }
}
