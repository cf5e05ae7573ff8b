//! Per-worker tally of the load: HdrHistograms per step (corrected and uncorrected latency, send
//! lateness), counts by error class, and a one-second bucket for the time series.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Lowest recordable latency, in microseconds.
pub const LOWEST_US: u64 = 1;
/// Highest recordable latency (60 s), in microseconds; longer values are clamped.
pub const HIGHEST_US: u64 = 60_000_000;
/// Significant digits of the run histograms.
pub const SIGFIG: u8 = 3;
/// Significant digits of the per-second histograms (their p50/p99 need less).
pub const SECOND_SIGFIG: u8 = 2;
/// An open-loop request sent later than this after its intended time counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(2);

/// A latency histogram in microseconds.
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, sigfig).expect("valid histogram bounds")
}

/// Microseconds of a duration, at least 1.
pub fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(LOWEST_US)
}

/// Why a request did not get a correct response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The TCP connection (or WebSocket handshake) could not be made.
    Connect,
    /// No complete response within the timeout.
    Timeout,
    /// The connection was reset, or closed before a response began.
    Reset,
    /// The server's bytes were not an HTTP/1.1 response (a malformed head, a bad chunk), or
    /// the server closed the connection before the body its head announced was complete.
    Protocol,
    Status4xx,
    Status5xx,
    /// Any other unexpected status (1xx, 3xx, or a 2xx that was not expected).
    StatusOther,
    /// The status was right, the body was not.
    BodyMismatch,
    /// HTTP/2: the server reset the stream (RST_STREAM); the connection goes on.
    StreamReset,
    /// HTTP/2: the server ended the connection (GOAWAY) before the stream was answered.
    Goaway,
    /// HTTP/2: the request body waited for flow-control window until the timeout.
    FlowControl,
    /// Open loop: the request's time came and went with no connection free to send it (or
    /// the client had no CPU to); counted at the end of its step.
    Unsent,
    /// The client ran out of file descriptors (EMFILE, ENFILE) for a connection.
    FdLimit,
}

/// Number of error classes.
pub const ERROR_CLASSES: usize = 13;

impl ErrorClass {
    /// Every class, in index order.
    pub const ALL: [ErrorClass; ERROR_CLASSES] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::Reset,
        ErrorClass::Protocol,
        ErrorClass::Status4xx,
        ErrorClass::Status5xx,
        ErrorClass::StatusOther,
        ErrorClass::BodyMismatch,
        ErrorClass::StreamReset,
        ErrorClass::Goaway,
        ErrorClass::FlowControl,
        ErrorClass::Unsent,
        ErrorClass::FdLimit,
    ];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Reset => "reset",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Status4xx => "status_4xx",
            ErrorClass::Status5xx => "status_5xx",
            ErrorClass::StatusOther => "status_other",
            ErrorClass::BodyMismatch => "body_mismatch",
            ErrorClass::StreamReset => "stream_reset",
            ErrorClass::Goaway => "goaway",
            ErrorClass::FlowControl => "flow_control",
            ErrorClass::Unsent => "unsent",
            ErrorClass::FdLimit => "fd_limit",
        }
    }

    /// The class of an unexpected status.
    pub fn of_status(status: u16) -> Self {
        match status {
            400..=499 => ErrorClass::Status4xx,
            500..=599 => ErrorClass::Status5xx,
            _ => ErrorClass::StatusOther,
        }
    }
}

/// What happened to one request.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// A correct response of this many body bytes.
    Ok(u64),
    Error(ErrorClass),
}

impl Outcome {
    /// A timeout or a reset: a WebSocket cannot carry another message.
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Outcome::Error(ErrorClass::Timeout | ErrorClass::Reset)
        )
    }
}

/// Everything recorded for one step.
#[derive(Clone, Debug)]
pub struct StepStats {
    /// Latency from the intended send time (open loop) or the send (closed loop).
    pub corrected: Histogram<u64>,
    /// Latency from the actual send.
    pub uncorrected: Histogram<u64>,
    /// How late each open-loop request was sent.
    pub lateness: Histogram<u64>,
    pub ok: u64,
    pub errors: [u64; ERROR_CLASSES],
    pub bytes: u64,
    pub late: u64,
    /// (ok, errors) per mix entry.
    pub per_entry: Vec<[u64; 2]>,
}

impl StepStats {
    /// Empty statistics for a mix of `entries` requests.
    pub fn new(entries: usize) -> Self {
        Self {
            corrected: histogram(SIGFIG),
            uncorrected: histogram(SIGFIG),
            lateness: histogram(SIGFIG),
            ok: 0,
            errors: [0; ERROR_CLASSES],
            bytes: 0,
            late: 0,
            per_entry: vec![[0; 2]; entries],
        }
    }

    /// Adds another worker's statistics.
    pub fn merge(&mut self, other: &StepStats) {
        self.corrected.add(&other.corrected).expect("same bounds");
        self.uncorrected
            .add(&other.uncorrected)
            .expect("same bounds");
        self.lateness.add(&other.lateness).expect("same bounds");
        self.ok += other.ok;
        self.bytes += other.bytes;
        self.late += other.late;
        for (a, b) in self.errors.iter_mut().zip(other.errors.iter()) {
            *a += b;
        }
        for (a, b) in self.per_entry.iter_mut().zip(other.per_entry.iter()) {
            a[0] += b[0];
            a[1] += b[1];
        }
    }

    /// All errors.
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// One second of one worker, shipped to the collector when the second is over.
#[derive(Clone, Debug)]
pub struct SecondBucket {
    pub second: u64,
    pub hist: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub bytes: u64,
}

impl SecondBucket {
    /// An empty bucket for `second`.
    pub fn new(second: u64) -> Self {
        Self {
            second,
            hist: histogram(SECOND_SIGFIG),
            ok: 0,
            errors: 0,
            bytes: 0,
        }
    }
}

/// What happened to connections, apart from requests.
#[derive(Clone, Debug)]
pub struct ConnectionStats {
    /// TLS handshake times (from TCP connected to TLS established).
    pub handshakes: Histogram<u64>,
    /// Handshakes that resumed an earlier session.
    pub resumed: u64,
    /// HTTP/2 connections the server ended with GOAWAY.
    pub goaways: u64,
    /// HTTP/2 connections that failed (I/O or protocol errors).
    pub failed: u64,
    /// The first error of some classes (`protocol`), said with what was seen.
    pub samples: std::collections::BTreeMap<&'static str, String>,
}

impl Default for ConnectionStats {
    fn default() -> Self {
        Self {
            handshakes: histogram(SIGFIG),
            resumed: 0,
            goaways: 0,
            failed: 0,
            samples: Default::default(),
        }
    }
}

impl ConnectionStats {
    /// Adds another worker's figures.
    pub fn merge(&mut self, other: &ConnectionStats) {
        self.handshakes.add(&other.handshakes).expect("same bounds");
        self.resumed += other.resumed;
        self.goaways += other.goaways;
        self.failed += other.failed;
        for (class, text) in &other.samples {
            self.samples.entry(class).or_insert_with(|| text.clone());
        }
    }
}

/// A worker's tally of its requests.
#[derive(Debug)]
pub struct Tally {
    pub steps: Vec<StepStats>,
    pub second: SecondBucket,
    pub connections: ConnectionStats,
    /// CPU time the worker's thread used while it ran.
    pub cpu: Duration,
    /// Of that, time spent busy polling without a response coming of it.
    pub polled: Duration,
}

/// Timing of one request.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// When it should have been sent (the send itself in closed loop).
    pub intended: std::time::Instant,
    pub sent: std::time::Instant,
    pub done: std::time::Instant,
}

impl Tally {
    /// A tally for `steps` steps and a mix of `entries` requests.
    pub fn new(steps: usize, entries: usize) -> Self {
        Self {
            steps: (0..steps).map(|_| StepStats::new(entries)).collect(),
            second: SecondBucket::new(0),
            connections: ConnectionStats::default(),
            cpu: Duration::ZERO,
            polled: Duration::ZERO,
        }
    }

    /// Records a TLS handshake that took `took`.
    pub fn handshake(&mut self, took: Duration, resumed: bool) {
        self.connections.handshakes.saturating_record(micros(took));
        self.connections.resumed += u64::from(resumed);
    }

    /// Records one request of step `step`, mix entry `entry`.
    pub fn record(
        &mut self,
        step: usize,
        entry: usize,
        timing: Timing,
        outcome: Outcome,
        open_loop: bool,
    ) {
        let stats = &mut self.steps[step];
        if open_loop {
            let lateness = timing.sent.saturating_duration_since(timing.intended);
            stats.lateness.saturating_record(micros(lateness));
            if lateness > LATE_AFTER {
                stats.late += 1;
            }
        }
        match outcome {
            Outcome::Ok(bytes) => {
                let corrected = micros(timing.done.saturating_duration_since(timing.intended));
                stats.corrected.saturating_record(corrected);
                if open_loop {
                    // In closed loop the two are the same; the report shows one.
                    stats.uncorrected.saturating_record(micros(
                        timing.done.saturating_duration_since(timing.sent),
                    ));
                }
                stats.ok += 1;
                stats.bytes += bytes;
                stats.per_entry[entry][0] += 1;
                self.second.hist.saturating_record(corrected);
                self.second.ok += 1;
                self.second.bytes += bytes;
            }
            Outcome::Error(class) => {
                stats.errors[class as usize] += 1;
                stats.per_entry[entry][1] += 1;
                self.second.errors += 1;
            }
        }
    }

    /// Records an open-loop request of step `step` that was never sent. Its corrected latency
    /// is a lower bound, `waited` (from its intended time to the end of its step), as wrk2
    /// counts it; it is an error, so it is never throughput.
    pub fn unsent(&mut self, step: usize, waited: Duration) {
        let stats = &mut self.steps[step];
        stats.errors[ErrorClass::Unsent as usize] += 1;
        stats.corrected.saturating_record(micros(waited));
    }

    /// Takes the current second's bucket and starts `next`.
    pub fn roll(&mut self, next: u64) -> SecondBucket {
        std::mem::replace(&mut self.second, SecondBucket::new(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn corrected_latency_counts_from_the_intended_time() {
        let mut r = Tally::new(1, 1);
        let intended = Instant::now();
        let timing = Timing {
            intended,
            sent: intended + Duration::from_millis(300),
            done: intended + Duration::from_millis(301),
        };
        r.record(0, 0, timing, Outcome::Ok(10), true);
        let s = &r.steps[0];
        assert!(s.corrected.max() >= 300_000);
        assert!(s.uncorrected.max() < 2_000);
        assert_eq!((s.ok, s.bytes, s.late), (1, 10, 1));
        r.record(0, 0, timing, Outcome::Error(ErrorClass::Timeout), true);
        assert_eq!(r.steps[0].errors[ErrorClass::Timeout as usize], 1);
        assert_eq!(r.steps[0].corrected.len(), 1, "errors are not latencies");
        let bucket = r.roll(1);
        assert_eq!((bucket.ok, bucket.errors), (1, 1));
        assert_eq!(r.second.second, 1);
    }

    #[test]
    fn unsent_requests_are_errors_with_their_wait() {
        let mut r = Tally::new(1, 1);
        r.unsent(0, Duration::from_secs(2));
        let s = &r.steps[0];
        assert_eq!(s.errors[ErrorClass::Unsent as usize], 1);
        assert_eq!((s.ok, s.corrected.len()), (0, 1));
        assert!(s.corrected.max() >= 1_990_000);
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(ErrorClass::of_status(404), ErrorClass::Status4xx);
        assert_eq!(ErrorClass::of_status(503), ErrorClass::Status5xx);
        assert_eq!(ErrorClass::of_status(302), ErrorClass::StatusOther);
    }
}
