//! A recording: the probes (optional) and the resource sampler attached to a target while
//! something else happens, then detached, symbolized and written as artifacts. `runner
//! probe` and `runner profile` both record through this.

use std::{
    collections::BTreeSet,
    fs,
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context;
use probes_common::{
    counters::Counter,
    evloop::{StackIds, StallEvent},
    stack::StackKey,
};
use serde::Serialize;

use crate::{
    cgroup::{self, CgroupTarget},
    flamegraph,
    folded::FrameNamer,
    folded::{fold_stacks, stack_frames, Folded},
    probe::{
        evloop::{self, Snapshot},
        offcpu::{self, OffcpuTotals},
        oncpu,
        python::{Python, PythonReport},
        runqlat::{self, RunqReport},
        syscalls::{self, SyscallReport},
        AttachedProgram, Counters, ProbeConfig, ProbeError, ProbeKind, Probes, Target,
    },
    sampler::ResourceSampler,
    symbolize::{ProcessMaps, SymbolStats, Symbolizer},
};

/// Probes and sampler, attached.
pub struct Recorder {
    probes: Option<Probes>,
    sampler: ResourceSampler,
    maps: ProcessMaps,
    python: Python,
    stalls: Vec<StallEvent>,
    windows: Vec<Window>,
    open_window: Option<(String, Snapshot)>,
    start_ns: u64,
    seen: BTreeSet<u32>,
    cgroups: Vec<CgroupTarget>,
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
    pub symbols: SymbolStats,
    pub python: PythonReport,
    /// Event-loop figures, when the evloop probe was attached.
    pub evloop: Option<EvloopData>,
    pub processes_seen: Vec<u32>,
}

/// A stretch of a recording measured on its own (one scenario or URL).
#[derive(Clone, Debug)]
pub struct Window {
    pub label: String,
    pub before: Snapshot,
    pub after: Snapshot,
    /// Thread names of the loops, by tid.
    pub comms: std::collections::BTreeMap<u32, String>,
}

/// What the evloop probe saw: windows, stall events, and the frames of every stack they name.
#[derive(Clone, Debug, Default)]
pub struct EvloopData {
    pub threshold: Duration,
    pub windows: Vec<Window>,
    pub stalls: Vec<StallEvent>,
    /// Frames (root first) of each (process, stacks) named by a stall or a blocking call.
    pub stacks: std::collections::BTreeMap<(u32, StackIds), Vec<String>>,
    /// Python frames among those that are library code (standard library, packages).
    pub library_frames: BTreeSet<String>,
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
        let mut recorder = Self {
            probes,
            sampler: ResourceSampler::new(),
            maps: ProcessMaps::default(),
            python: Python::default(),
            stalls: Vec::new(),
            windows: Vec::new(),
            open_window: None,
            start_ns: evloop::now_ns(),
            seen: target.tgids.iter().copied().collect(),
            cgroups: target.cgroups.clone(),
            config: config.clone(),
            started: Instant::now(),
            started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        recorder.tick();
        Ok(recorder)
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
        self.sampler.sample(&pids);
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
        let comms = thread_names(&after);
        self.windows.push(Window {
            label,
            before,
            after,
            comms,
        });
        Ok(())
    }

    /// Registers new Python processes with the walker, between ticks.
    pub fn discover(&mut self) {
        let pids = self.pids();
        if let Some(probes) = self.probes.as_mut() {
            let _ = self.python.refresh(probes, &pids);
        }
    }

    /// Detaches, reads everything and symbolizes.
    pub fn finish(mut self) -> anyhow::Result<Recording> {
        let duration = self.started.elapsed();
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
            sampler: ResourceSampler::new(),
            symbols: SymbolStats::default(),
            python: PythonReport::default(),
            evloop: None,
            processes_seen: Vec::new(),
        };
        let Some(mut probes) = self.probes.take() else {
            return Ok(Recording {
                sampler: self.sampler,
                processes_seen: self.seen.into_iter().collect(),
                ..empty
            });
        };
        let attached = probes.attached().to_vec();
        probes.detach();
        let counters = probes.counters()?;
        for pid in probes.target_tgids()? {
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
                let after = evloop::snapshot(&probes)?;
                let comms = thread_names(&after);
                self.windows.push(Window {
                    label: "recording".into(),
                    before: Snapshot {
                        at_ns: self.start_ns,
                        ..Snapshot::default()
                    },
                    after,
                    comms,
                });
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
                        kstack: ids.kstack,
                        ustack: ids.ustack,
                        _pad: 0,
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
                for ids in [e.block_stacks, e.cpu_stacks, e.call_stacks] {
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
            EvloopData {
                library_frames,
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
            symbols: symbolizer.stats().clone(),
            python,
            evloop,
            processes_seen: self.seen.into_iter().collect(),
            ..empty
        })
    }
}

/// Names of the loop threads in a snapshot, read from /proc.
fn thread_names(snapshot: &Snapshot) -> std::collections::BTreeMap<u32, String> {
    snapshot
        .loops
        .iter()
        .filter_map(|(tid, stats)| {
            let comm = fs::read_to_string(format!("/proc/{}/task/{tid}/comm", stats.tgid)).ok()?;
            Some((*tid, comm.trim().to_string()))
        })
        .collect()
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

/// Writes `bytes` to `dir/name`, naming the file in any error.
pub fn write(dir: &Path, name: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
    let path = dir.join(name);
    fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
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
        self.top_by(n, |stack| {
            stack
                .rsplit(';')
                .find(|f| crate::diagnose::is_python_frame(f))
        })
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
                share: crate::hist::round1(100.0 * samples as f64 / total),
            })
            .collect();
        frames.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.frame.cmp(&b.frame)));
        frames.truncate(n);
        frames
    }

    /// The event-loop diagnosis of the first window (the whole recording unless windows were
    /// marked), when the evloop probe was attached.
    pub fn diagnosis(&self) -> Option<crate::diagnose::Entry> {
        let data = self.evloop.as_ref()?;
        Some(crate::diagnose::analyse(data, data.windows.first()?))
    }

    /// Writes the artifacts into `dir` and returns their names. Without probes only
    /// resources.csv is written.
    pub fn write_artifacts(&self, dir: &Path) -> anyhow::Result<Vec<&'static str>> {
        write(dir, "resources.csv", self.sampler.to_csv())?;
        if self.counters.is_none() {
            return Ok(vec!["resources.csv"]);
        }
        let on_title = format!("On-CPU samples ({} Hz)", self.config.freq_hz);
        write(dir, "oncpu.folded", self.oncpu.to_bytes())?;
        write(
            dir,
            "oncpu.svg",
            flamegraph::render(&self.oncpu, &on_title, "samples")?,
        )?;
        write(dir, "offcpu.folded", self.offcpu.to_bytes())?;
        write(
            dir,
            "offcpu.svg",
            flamegraph::render(&self.offcpu, "Off-CPU time (microseconds)", "us")?,
        )?;
        write(
            dir,
            "syscalls.json",
            serde_json::to_vec_pretty(&self.syscalls)?,
        )?;
        write(dir, "runqlat.json", serde_json::to_vec_pretty(&self.runq)?)?;
        let mut names = Vec::new();
        if let Some((data, window)) = self
            .evloop
            .as_ref()
            .and_then(|d| Some((d, d.windows.first()?)))
        {
            let stalls = crate::diagnose::stall_folded(data, window);
            write(dir, "stalls.folded", stalls.to_bytes())?;
            names.push("stalls.folded");
            if !stalls.is_empty() {
                let title = format!(
                    "Event-loop stalls over {} ms (microseconds)",
                    data.threshold.as_millis()
                );
                write(
                    dir,
                    "stalls.svg",
                    flamegraph::render(&stalls, &title, "us")?,
                )?;
                names.push("stalls.svg");
            }
        }
        names.extend([
            "resources.csv",
            "oncpu.folded",
            "oncpu.svg",
            "offcpu.folded",
            "offcpu.svg",
            "syscalls.json",
            "runqlat.json",
        ]);
        Ok(names)
    }

    /// Text lines of what the probes saw, for terminal summaries.
    pub fn summary_lines(&self) -> String {
        let mut out = String::new();
        let r = self.sampler.summary();
        out.push_str(&format!(
            "resources  cpu avg {:.1}% max {:.1}% · rss avg {:.1} MB max {:.1} MB · threads max {}\n",
            r.cpu_pct_avg, r.cpu_pct_max, r.rss_mb_avg, r.rss_mb_max, r.threads_max
        ));
        if self.counters.is_none() {
            return out;
        }
        out.push_str(&format!(
            "on-CPU     {} samples in {} stacks\n",
            self.oncpu_samples(),
            self.oncpu.iter().count()
        ));
        for f in self.top_frames(5) {
            out.push_str(&format!("             {:>5.1}%  {}\n", f.share, f.frame));
        }
        let python = self.top_python_frames(5);
        if !python.is_empty() {
            out.push_str("           top Python functions (innermost Python frame):\n");
            for f in python {
                out.push_str(&format!("             {:>5.1}%  {}\n", f.share, f.frame));
            }
        }
        if !self.python.processes.is_empty() {
            let p = &self.python;
            let mut versions: Vec<&str> = self
                .python
                .processes
                .iter()
                .map(|p| p.version.as_str())
                .collect();
            versions.sort_unstable();
            versions.dedup();
            out.push_str(&format!(
                "python     {} process(es) (CPython {}), {} stacks walked, {} samples without Python state, {} read faults, {} truncated\n",
                self.python.processes.len(),
                versions.join(", "),
                p.walked,
                p.no_thread_state,
                p.read_faults,
                p.truncated,
            ));
        }
        for (pid, reason) in &self.python.unsupported {
            out.push_str(&format!(
                "python     process {pid}: no Python stacks: {reason}\n"
            ));
        }
        out.push_str(&format!(
            "off-CPU    {:.1} ms blocked, {:.1} ms preempted\n",
            self.offcpu_totals.blocked_us as f64 / 1000.0,
            self.offcpu_totals.preempted_us as f64 / 1000.0
        ));
        out.push_str(&format!(
            "run queue  {} waits, p50 {} us, p99 {} us\n",
            self.runq.count, self.runq.p50_us, self.runq.p99_us
        ));
        out.push_str("syscalls   top 5 by time:\n");
        for (name, s) in self.syscalls.by_total_time().into_iter().take(5) {
            out.push_str(&format!(
                "             {name:<18} {:>10} calls {:>8} errors {:>14.1} us  p99 {} us\n",
                s.count, s.errors, s.total_us, s.p99_us
            ));
        }
        match &self.counters {
            Some(c) if c.lost_total() > 0 => {
                let lost: Vec<String> = c
                    .lost_detail()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                out.push_str(&format!(
                    "LOST       {} records: {}\n",
                    c.lost_total(),
                    lost.join(", ")
                ));
            }
            _ => out.push_str("lost       nothing\n"),
        }
        out
    }
}
