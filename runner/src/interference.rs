//! Interference: what else happened on the machine while a run measured. Sampled with the
//! resources (10 Hz): time the hypervisor stole from the app's and the client's CPUs, CPU
//! taken on those CPUs by processes outside the run, throttling of the app's cgroup, and
//! stretches where the app got no CPU at all; then judged per second of the load, with the
//! seconds where no response came back.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    num::{round1, runs},
    target::cgroup::CgroupSet,
};

/// A second is disturbed from these shares of its CPUs' time...
const STEAL_PCT: f64 = 10.0;
const OUTSIDE_PCT: f64 = 25.0;
/// ...and when the app got no CPU for this long while the load ran.
const NO_CPU: Duration = Duration::from_millis(250);
/// CPU time under this per sample counts as none.
const NO_CPU_NS: u64 = 1_000_000;

/// What the run owns on the machine, and where it runs.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    /// The CPUs of the app, and of the client (runner itself, and the database).
    pub app_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    /// Processes of the run besides the app and runner (the database), counted as its own.
    pub ours: Vec<u32>,
    /// The app's cgroup directory, for throttling.
    pub cgroup: Option<PathBuf>,
}

/// One look at the machine.
#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    /// Per CPU, cumulative (busy, steal) in clock ticks.
    cpus: Vec<(u64, u64)>,
    /// CPU time of the app and of the run's other processes (runner, database), ns.
    app_ns: u64,
    ours_ns: u64,
    /// Cumulative throttled time of the app's cgroup, µs.
    throttled_us: u64,
}

/// Samples the machine at every tick of a recording.
#[derive(Debug, Default)]
pub struct MachineSampler {
    watch: Watch,
    samples: Vec<Sample>,
}

impl MachineSampler {
    /// A sampler for a run that owns what `watch` says.
    pub fn new(watch: Watch) -> Self {
        Self {
            watch,
            samples: Vec::new(),
        }
    }

    /// Takes a sample; `app_ns` is the app's CPU time so far (from the resource sampler).
    pub fn sample(&mut self, app_ns: u64) {
        use procfs::CurrentSI;
        let Ok(stats) = procfs::KernelStats::current() else {
            return;
        };
        let cpus = stats
            .cpu_time
            .iter()
            .map(|c| {
                let busy = c.user + c.nice + c.system + c.irq.unwrap_or(0) + c.softirq.unwrap_or(0);
                (busy, c.steal.unwrap_or(0))
            })
            .collect();
        let own = procfs::process::Process::myself()
            .map(|p| thread_ns(&p))
            .unwrap_or(0);
        let ours = self
            .watch
            .ours
            .iter()
            .filter_map(|pid| procfs::process::Process::new(*pid as i32).ok())
            .map(|p| thread_ns(&p))
            .sum::<u64>();
        let throttled_us = self
            .watch
            .cgroup
            .as_ref()
            .and_then(|d| CgroupSet::of_dir(d).usage().throttled_ns)
            .map_or(0, |ns| ns / 1000);
        self.samples.push(Sample {
            at: Instant::now(),
            cpus,
            app_ns,
            ours_ns: own + ours,
            throttled_us,
        });
    }

    /// The seconds of a load that started at `start` and got `responses[s]` responses in
    /// second `s`, judged.
    pub fn assess(&self, start: Instant, responses: &[u64]) -> Interference {
        let ticks = procfs::ticks_per_second() as f64;
        let mut seconds = Vec::new();
        for (s, &answered) in responses.iter().enumerate() {
            let from = start + Duration::from_secs(s as u64);
            let to = from + Duration::from_secs(1);
            let inside: Vec<&Sample> = self
                .samples
                .iter()
                .filter(|x| x.at >= from && x.at <= to)
                .collect();
            let before = self.samples.iter().rev().find(|x| x.at < from);
            let (Some(a), Some(b)) = (before.or(inside.first().copied()), inside.last()) else {
                continue;
            };
            let secs = (b.at - a.at).as_secs_f64().max(1e-3);
            let share = |cpus: &[usize], f: fn(&(u64, u64)) -> u64| {
                let used: u64 = cpus
                    .iter()
                    .filter_map(|&c| Some(f(b.cpus.get(c)?).saturating_sub(f(a.cpus.get(c)?))))
                    .sum();
                100.0 * used as f64 / ticks / secs / cpus.len().max(1) as f64
            };
            let pct_ns =
                |ns: u64, cpus: &[usize]| 100.0 * ns as f64 / 1e9 / secs / cpus.len().max(1) as f64;
            let (app, client) = (&self.watch.app_cpus, &self.watch.client_cpus);
            // Capped: the counts are read a moment after each sample's instant, so a
            // busy second can come out a hair over the CPUs the app may use.
            let app_used = pct_ns(b.app_ns.saturating_sub(a.app_ns), app).min(100.0);
            let ours_used = pct_ns(b.ours_ns.saturating_sub(a.ours_ns), client);
            let shared = app == client;
            let outside_app = share(app, |c| c.0) - app_used - if shared { ours_used } else { 0.0 };
            let outside_client = if shared {
                outside_app
            } else {
                share(client, |c| c.0) - ours_used
            };
            let mut second = Second {
                second: s as u64,
                steal_app_pct: round1(share(app, |c| c.1)),
                steal_client_pct: round1(share(client, |c| c.1)),
                outside_app_pct: round1(outside_app.max(0.0)),
                outside_client_pct: round1(outside_client.max(0.0)),
                throttled_ms: round1(b.throttled_us.saturating_sub(a.throttled_us) as f64 / 1e3),
                app_cpu_pct: round1(app_used * app.len().max(1) as f64),
                app_no_cpu_ms: 0.0,
                responses: answered,
                marks: Vec::new(),
            };
            second.app_no_cpu_ms =
                round1(longest_no_cpu(&self.samples, from, to).as_secs_f64() * 1e3);
            second.judge();
            seconds.push(second);
        }
        let findings = findings(&seconds);
        Interference {
            disturbed: !findings.is_empty(),
            findings,
            seconds,
        }
    }
}

/// The longest stretch between `from` and `to` over which the app's CPU time did not move.
fn longest_no_cpu(samples: &[Sample], from: Instant, to: Instant) -> Duration {
    let mut longest = Duration::ZERO;
    let mut run_start: Option<Instant> = None;
    for w in samples.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if b.at < from || a.at > to {
            continue;
        }
        if b.app_ns.saturating_sub(a.app_ns) < NO_CPU_NS {
            let start = *run_start.get_or_insert(a.at);
            longest = longest.max(b.at.min(to) - start.max(from));
        } else {
            run_start = None;
        }
    }
    longest
}

/// CPU time of a process's threads, ns.
fn thread_ns(p: &procfs::process::Process) -> u64 {
    p.tasks()
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| t.schedstat().ok())
                .map(|s| s.sum_exec_runtime)
                .sum()
        })
        .unwrap_or(0)
}

/// What disturbed a run, if anything (`interference` in summary.json).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interference {
    pub disturbed: bool,
    /// One line per disturbance: what, and in which seconds.
    pub findings: Vec<String>,
    pub seconds: Vec<Second>,
}

/// One second of the load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub second: u64,
    /// Share of the app's (client's) CPUs' time the hypervisor took.
    pub steal_app_pct: f64,
    pub steal_client_pct: f64,
    /// Share of the app's (client's) CPUs' time used by processes outside the run.
    pub outside_app_pct: f64,
    pub outside_client_pct: f64,
    /// Time the app's cgroup was throttled.
    pub throttled_ms: f64,
    /// The app's CPU use (100 per CPU).
    pub app_cpu_pct: f64,
    /// The longest stretch in the second over which the app got no CPU.
    pub app_no_cpu_ms: f64,
    /// Responses the load got back in the second.
    pub responses: u64,
    /// What disturbed this second.
    pub marks: Vec<Mark>,
}

/// A kind of disturbance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    StealApp,
    StealClient,
    OutsideApp,
    OutsideClient,
    Throttled,
    AppNoCpu,
    NoResponses,
}

impl Mark {
    fn describe(self) -> &'static str {
        match self {
            Mark::StealApp => "the hypervisor took time from the app's CPUs",
            Mark::StealClient => "the hypervisor took time from the client's CPUs",
            Mark::OutsideApp => "processes outside the run used the app's CPUs",
            Mark::OutsideClient => "processes outside the run used the client's CPUs",
            Mark::Throttled => "the app's cgroup was throttled",
            Mark::AppNoCpu => "the app got no CPU for 250 ms or more",
            Mark::NoResponses => "no response came back",
        }
    }
}

impl Second {
    fn judge(&mut self) {
        let marks = [
            (self.steal_app_pct >= STEAL_PCT, Mark::StealApp),
            (self.steal_client_pct >= STEAL_PCT, Mark::StealClient),
            (self.outside_app_pct >= OUTSIDE_PCT, Mark::OutsideApp),
            (self.outside_client_pct >= OUTSIDE_PCT, Mark::OutsideClient),
            (self.throttled_ms > 0.0, Mark::Throttled),
            (
                self.app_no_cpu_ms >= NO_CPU.as_secs_f64() * 1e3,
                Mark::AppNoCpu,
            ),
            (self.responses == 0, Mark::NoResponses),
        ];
        self.marks = marks
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, m)| *m)
            .collect();
    }
}

/// One line per kind of disturbance, with its seconds as ranges (`3-4, 9`).
fn findings(seconds: &[Second]) -> Vec<String> {
    let mut kinds: Vec<Mark> = seconds.iter().flat_map(|s| s.marks.clone()).collect();
    kinds.sort();
    kinds.dedup();
    kinds
        .into_iter()
        .map(|kind| {
            let at: Vec<u64> = seconds
                .iter()
                .filter(|s| s.marks.contains(&kind))
                .map(|s| s.second)
                .collect();
            format!("second(s) {}: {}", runs(&at).join(", "), kind.describe())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, app_ms: u64, busy: u64, steal: u64) -> Sample {
        Sample {
            at,
            cpus: vec![(0, 0), (busy, steal)],
            app_ns: app_ms * 1_000_000,
            ours_ns: 0,
            throttled_us: 0,
        }
    }

    #[test]
    fn a_stopped_app_and_stolen_time_mark_their_seconds() {
        let t0 = Instant::now();
        let tick = procfs::ticks_per_second();
        let mut m = MachineSampler::new(Watch {
            app_cpus: vec![1],
            client_cpus: vec![0],
            ..Watch::default()
        });
        // Three seconds at 10 Hz: the app busy (90 ms of CPU per 100 ms, all of CPU 1's busy
        // time), except second 1 where it got nothing; in second 2 the hypervisor stole half of
        // CPU 1.
        let mut app = 0;
        let mut busy = 0;
        let mut steal = 0;
        for i in 0..=30u64 {
            let at = t0 + Duration::from_millis(100 * i);
            if i > 0 && !(11..=20).contains(&i) {
                app += 90;
                busy += 9 * tick / 100;
            }
            if i > 20 {
                steal += tick / 20;
            }
            m.samples.push(sample(at, app, busy, steal));
        }
        let r = m.assess(t0, &[500, 0, 400]);
        assert!(r.disturbed);
        let marked: Vec<(u64, Vec<Mark>)> = r
            .seconds
            .iter()
            .map(|s| (s.second, s.marks.clone()))
            .collect();
        assert_eq!(
            marked,
            [
                (0, vec![]),
                (1, vec![Mark::AppNoCpu, Mark::NoResponses]),
                (2, vec![Mark::StealApp]),
            ]
        );
        assert!(r.seconds[0].app_cpu_pct > 80.0 && r.seconds[0].app_cpu_pct <= 100.0);
        assert!(r
            .findings
            .iter()
            .any(|f| f.starts_with("second(s) 1: the app got no CPU")));
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]).join(", "), "1-3, 7, 9-10");
    }

    #[test]
    fn the_app_never_uses_more_than_its_cpus() {
        let t0 = Instant::now();
        let mut m = MachineSampler::new(Watch {
            app_cpus: vec![1],
            client_cpus: vec![0],
            ..Watch::default()
        });
        // 102 ms of the app's CPU time counted per 100 ms: read a moment late each time.
        for i in 0..=10u64 {
            m.samples
                .push(sample(t0 + Duration::from_millis(100 * i), 102 * i, 0, 0));
        }
        let r = m.assess(t0, &[1000]);
        assert_eq!(r.seconds[0].app_cpu_pct, 100.0);
    }
}
