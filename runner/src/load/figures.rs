//! The figures of a load run: latency percentiles, rates and errors per step, per request of
//! a mix, and per second. Exporting them is `crate::report::load`'s job.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;

use crate::num::{round1, round2};
use serde::Serialize;

use super::{
    schedule::{Step, StepLoad},
    tally::{ErrorClass, StepStats},
};

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p75: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    pub mean: f64,
    pub stdev: f64,
}

impl Percentiles {
    /// The percentiles of a histogram; zeros when it is empty.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.50),
            p75: h.value_at_quantile(0.75),
            p90: h.value_at_quantile(0.90),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            mean: round1(h.mean()),
            stdev: round1(h.stdev()),
        }
    }
}

/// Open-loop send lateness.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Lateness {
    /// Requests sent more than 2 ms after their intended time.
    pub late: u64,
    /// Requests never sent: no connection was free (or the client had no CPU) by the end
    /// of their step. They are errors (`unsent`), with their wait in the corrected latency.
    pub unsent: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Sends due within the same cell of this many µs went out together at its end (the
    /// client's own share of the lateness, to save wake-ups at high rates); 0: each on time.
    pub grid_us: u64,
}

/// Figures for one step, or for the whole run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Completed requests: correct responses plus errors.
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub error_total: u64,
    pub duration_s: f64,
    /// Correct responses per second.
    pub rps: f64,
    pub error_rps: f64,
    pub bytes: u64,
    pub bytes_per_s: f64,
    /// From the intended send time in open loop; from the send in closed loop.
    pub latency_us: Percentiles,
    /// From the actual send; open loop only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_uncorrected_us: Option<Percentiles>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Requests sent per second, against `target_rate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub achieved_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness: Option<Lateness>,
}

impl Figures {
    /// Why these figures make a failed run, if they do: no correct response at all, or a
    /// share of errors above `max_error_pct`. Open-loop requests never sent are not the
    /// server's errors (a rate beyond what it serves is a measurement, as in a rate sweep):
    /// they are reported, and left out of the share.
    pub fn failure(&self, max_error_pct: f64) -> Option<String> {
        let unsent = self.errors.get("unsent").copied().unwrap_or(0);
        let (sent, failed) = (self.requests - unsent, self.error_total - unsent);
        let errors = || {
            self.errors
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.requests == 0 {
            return Some("no request completed: nothing answered".into());
        }
        if self.ok == 0 {
            return Some(format!(
                "no correct response in {} requests ({})",
                self.requests,
                errors()
            ));
        }
        let pct = 100.0 * failed as f64 / sent.max(1) as f64;
        (pct > max_error_pct).then(|| {
            format!(
                "{pct:.1}% of the requests failed ({}), above --max-error-rate {max_error_pct}%",
                errors()
            )
        })
    }

    /// Says that sends went out on a grid of `grid` (open loop only).
    pub fn with_grid(mut self, grid: Duration) -> Self {
        if let Some(late) = &mut self.lateness {
            late.grid_us = grid.as_micros() as u64;
        }
        self
    }

    /// Figures of `stats` over `duration_s` seconds; `open` adds the open-loop figures.
    pub fn new(stats: &StepStats, duration_s: f64, open: Option<f64>) -> Self {
        let d = duration_s.max(1e-9);
        let error_total = stats.error_total();
        let requests = stats.ok + error_total;
        let unsent = stats.errors[ErrorClass::Unsent as usize];
        Self {
            requests,
            ok: stats.ok,
            errors: ErrorClass::ALL
                .iter()
                .map(|c| (c.name(), stats.errors[*c as usize]))
                .collect(),
            error_total,
            // Whole milliseconds: (x * 1000).round() / 1000 is the nearest double to them.
            duration_s: (duration_s * 1000.0).round() / 1000.0,
            rps: round1(stats.ok as f64 / d),
            error_rps: round1(error_total as f64 / d),
            bytes: stats.bytes,
            bytes_per_s: round1(stats.bytes as f64 / d),
            latency_us: Percentiles::of(&stats.corrected),
            latency_uncorrected_us: open.map(|_| Percentiles::of(&stats.uncorrected)),
            target_rate: open,
            achieved_rate: open.map(|_| round1((requests - unsent) as f64 / d)),
            lateness: open.map(|_| Lateness {
                late: stats.late,
                unsent,
                p50_us: stats.lateness.value_at_quantile(0.5),
                p99_us: stats.lateness.value_at_quantile(0.99),
                max_us: stats.lateness.max(),
                grid_us: 0,
            }),
        }
    }
}

/// One step of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepReport {
    pub label: String,
    pub load: StepLoad,
    #[serde(flatten)]
    pub figures: Figures,
}

/// One second of the time series (of completions, summed over workers).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SecondRow {
    pub second: u64,
    pub ok: u64,
    pub errors: u64,
    pub bytes: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Requests of one mix entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MixReport {
    pub name: String,
    pub weight: u32,
    pub ok: u64,
    pub errors: u64,
}

/// What the connections spoke, and why.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProtocolReport {
    /// "1.1", "2" or "websocket".
    pub http: String,
    /// The client: "lean" or "hyper" (HTTP/1.1), "h2", "tungstenite".
    pub client: String,
    /// Why this client, or how HTTP/2 was agreed.
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2: Option<Http2Report>,
}

impl ProtocolReport {
    pub fn new(http: &str, client: &str, why: &str) -> Self {
        Self {
            http: http.into(),
            client: client.into(),
            why: why.into(),
            http2: None,
        }
    }
}

/// HTTP/2 connections.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Http2Report {
    pub streams_per_connection: usize,
    /// Connections the server ended with GOAWAY (an error code other than NO_ERROR).
    pub connections_goaway: u64,
    /// Connections that broke (I/O or protocol errors).
    pub connections_failed: u64,
}

/// TLS: what was agreed, and the handshakes, apart from request latency.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TlsReport {
    pub version: String,
    pub cipher: String,
    pub alpn: Option<String>,
    /// Handshakes made during the run (one per connection, reconnects included).
    pub handshakes: u64,
    /// Handshakes that resumed an earlier session.
    pub resumed: u64,
    /// Handshake time, from TCP connected to TLS established.
    pub handshake_us: Percentiles,
}

/// What `runner load` reports, and what run summaries embed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadReport {
    pub schema: &'static str,
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub cpus: Vec<usize>,
    pub timeout_s: f64,
    pub protocol: ProtocolReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsReport>,
    pub interrupted: bool,
    /// The first error of some classes (`protocol`), with what the server sent.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub error_samples: std::collections::BTreeMap<&'static str, String>,
    #[serde(flatten)]
    pub total: Figures,
    pub steps: Vec<StepReport>,
    pub mix: Vec<MixReport>,
    pub timeseries: Vec<SecondRow>,
    pub client: ClientReport,
}

/// From this share of its CPU on, a load worker may be what bounds a run's figures.
pub const CLIENT_BUSY: f64 = 0.9;

/// The load workers' own CPU: whether the client, not the server, may bound the figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientReport {
    /// CPU seconds all workers used.
    pub cpu_s: f64,
    /// The busy polling window in µs (0: workers never poll).
    pub busy_poll_us: u64,
    /// Of `cpu_s`, seconds spent busy polling without a response coming of it: time the
    /// workers would otherwise have slept.
    pub polled_s: f64,
    /// The busiest worker's CPU time, less its polling, over the run's length (0 to 1).
    pub busiest_worker: f64,
}

/// One worker's CPU time, and how much of it was polling.
#[derive(Clone, Copy, Debug)]
pub struct WorkerCpu {
    pub cpu: Duration,
    pub polled: Duration,
}

impl ClientReport {
    /// From each worker's CPU time over a run of length `ran`, polling with `busy_poll`.
    pub fn new(workers: &[WorkerCpu], busy_poll: Option<Duration>, ran: Duration) -> Self {
        let ran = ran.as_secs_f64().max(1e-9);
        let sum = |f: fn(&WorkerCpu) -> Duration| {
            round2(workers.iter().map(|w| f(w).as_secs_f64()).sum())
        };
        Self {
            cpu_s: sum(|w| w.cpu),
            busy_poll_us: busy_poll.map_or(0, |d| d.as_micros() as u64),
            polled_s: sum(|w| w.polled),
            busiest_worker: round2(
                workers
                    .iter()
                    .map(|w| (w.cpu.saturating_sub(w.polled).as_secs_f64() / ran).min(1.0))
                    .fold(0.0, f64::max),
            ),
        }
    }

    /// Whether a worker was busy enough to bound the figures.
    pub fn saturated(&self) -> bool {
        self.busiest_worker >= CLIENT_BUSY
    }
}

/// The open-loop target rate of a step over its length, if it is open loop.
pub fn step_rate(step: &Step) -> Option<f64> {
    match step.load {
        StepLoad::Open { from, to, .. } => Some((from + to) / 2.0),
        StepLoad::Closed { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_worker_says_whether_the_client_may_bound_a_run() {
        let ms = Duration::from_millis;
        let worker = |cpu, polled| WorkerCpu {
            cpu: ms(cpu),
            polled: ms(polled),
        };
        let ran = Duration::from_secs(2);
        let c = ClientReport::new(&[worker(400, 0), worker(1900, 0)], None, ran);
        assert_eq!((c.cpu_s, c.busiest_worker, c.busy_poll_us), (2.3, 0.95, 0));
        assert!(c.saturated());
        let c = ClientReport::new(&[worker(1700, 0)], None, ran);
        assert_eq!(c.busiest_worker, 0.85);
        assert!(!c.saturated());
        // A thread's clock can run a hair past the wall clock; the share stops at 1.
        let c = ClientReport::new(&[worker(2010, 0)], None, ran);
        assert_eq!(c.busiest_worker, 1.0);
        // Polling is time the worker would have slept: it is CPU, not business.
        let c = ClientReport::new(&[worker(2000, 400)], Some(Duration::from_micros(20)), ran);
        assert_eq!((c.cpu_s, c.polled_s, c.busy_poll_us), (2.0, 0.4, 20));
        assert_eq!(c.busiest_worker, 0.8);
        assert!(!c.saturated());
    }

    #[test]
    fn a_run_without_correct_responses_or_with_many_errors_fails() {
        let figures = |ok: u64, errors: u64| {
            let mut stats = StepStats::new(1);
            stats.ok = ok;
            stats.errors[ErrorClass::Status4xx as usize] = errors;
            Figures::new(&stats, 1.0, None)
        };
        assert!(figures(0, 9038)
            .failure(5.0)
            .unwrap()
            .contains("no correct response"));
        assert!(figures(0, 0)
            .failure(5.0)
            .unwrap()
            .contains("nothing answered"));
        assert!(figures(90, 10)
            .failure(5.0)
            .unwrap()
            .contains("10.0% of the requests failed"));
        assert_eq!(figures(96, 4).failure(5.0), None);
        assert_eq!(figures(90, 10).failure(20.0), None);
        // Open-loop requests never sent are reported, not counted against the server.
        let mut stats = StepStats::new(1);
        stats.ok = 500;
        stats.errors[ErrorClass::Unsent as usize] = 500;
        stats.errors[ErrorClass::Status5xx as usize] = 10;
        let f = Figures::new(&stats, 1.0, Some(1000.0));
        assert_eq!(f.failure(5.0), None);
        assert!(f
            .failure(1.0)
            .unwrap()
            .starts_with("2.0% of the requests failed"));
    }

    #[test]
    fn throughput_counts_only_correct_responses() {
        let mut stats = StepStats::new(1);
        stats.ok = 90;
        stats.errors[ErrorClass::Status5xx as usize] = 10;
        let f = Figures::new(&stats, 10.0, None);
        assert_eq!((f.requests, f.rps, f.error_rps), (100, 9.0, 1.0));
        assert_eq!(f.errors["status_5xx"], 10);
    }
}
