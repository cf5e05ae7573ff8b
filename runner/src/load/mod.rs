//! The load engine: closed and open loop, schedules, request mixes, response checks,
//! coordinated-omission-corrected latency, and the report. `runner load` is a thin CLI over
//! [`run`]; `runner profile` calls the same function.

mod busy_poll;
mod collect;
pub mod engine;
pub mod figures;
pub mod http1;
pub mod http2;
mod pacer;
mod preflight;
pub mod request;
pub mod schedule;
pub mod tally;
pub mod tls;
pub mod wire;
mod ws;

use std::{
    net::{SocketAddr, ToSocketAddrs},
    sync::{
        atomic::{AtomicBool, AtomicI64},
        mpsc, Arc, Barrier, OnceLock,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use hyper::Uri;

pub use busy_poll::DEFAULT_WINDOW as DEFAULT_BUSY_POLL;
use collect::Collector;
use engine::{Plan, Protocol, Shared};
use figures::{
    Figures, Http2Report, LoadReport, MixReport, Percentiles, ProtocolReport, SecondRow,
    StepReport, TlsReport,
};
use request::{Prepared, RequestError, RequestSpec};
use schedule::Schedule;
use tally::{ConnectionStats, SecondBucket, StepStats};

/// Errors from setting up a load run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("`{0}` is not a URL like http://127.0.0.1:8080/path")]
    Url(String),
    #[error("{scheme}:// is not supported; runner load speaks HTTP (http://, https://) and WebSocket (ws://, wss://)")]
    Scheme { scheme: String },
    #[error("`{url}`: `{port}` is not a port (1 to 65535)")]
    Port { url: String, port: String },
    #[error("cannot resolve `{host}`")]
    Resolve {
        host: String,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The server is not what the run needs (a certificate, a protocol); said in one line.
    #[error("{0}")]
    Server(String),
    #[error("cannot start load worker thread")]
    Thread(#[source] std::io::Error),
}

/// Where the load goes.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub websocket: bool,
    /// https:// or wss://.
    pub tls: bool,
    /// The host name, for TLS.
    pub host: String,
    /// `host[:port]`, for the Host header.
    pub authority: String,
    pub addr: SocketAddr,
    /// Path and query of the URL.
    pub path: String,
}

/// Parses and resolves a target URL (`http://`, `https://`, `ws://` or `wss://`).
pub fn parse_url(url: &str) -> Result<Target, LoadError> {
    let uri: Uri = url.parse().map_err(|_| LoadError::Url(url.into()))?;
    let scheme = uri.scheme_str().ok_or_else(|| LoadError::Url(url.into()))?;
    let (websocket, tls) = match scheme {
        "http" => (false, false),
        "https" => (false, true),
        "ws" => (true, false),
        "wss" => (true, true),
        other => {
            return Err(LoadError::Scheme {
                scheme: other.into(),
            })
        }
    };
    let authority = uri.authority().ok_or_else(|| LoadError::Url(url.into()))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(LoadError::Url(url.into()));
    }
    // The port as written (the URI parser drops one that does not fit in 16 bits).
    let hostport = authority.as_str().rsplit('@').next().unwrap_or_default();
    let after_host = hostport.rsplit(']').next().unwrap_or(hostport);
    let port = match after_host.rsplit_once(':') {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some((_, text)) => match text.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(LoadError::Port {
                    url: url.into(),
                    port: text.into(),
                })
            }
        },
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| LoadError::Resolve {
            host: host.into(),
            source: Some(e),
        })?
        .next()
        .ok_or_else(|| LoadError::Resolve {
            host: host.into(),
            source: None,
        })?;
    Ok(Target {
        url: url.into(),
        websocket,
        tls,
        host: host.into(),
        authority: authority.as_str().into(),
        addr,
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into()),
    })
}

/// How HTTP is spoken.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// HTTP/2 with this many concurrent streams per connection; None: HTTP/1.1.
    pub http2: Option<usize>,
    /// Which HTTP/1.1 client (automatic by default).
    pub http1: http1::Client,
    /// Accept TLS certificates that do not verify.
    pub insecure: bool,
}

/// A load run, validated.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: Target,
    /// The requests (one, or a weighted mix). Ignored for WebSocket targets.
    pub requests: Vec<RequestSpec>,
    pub threads: usize,
    /// CPUs to pin worker threads to, round robin; empty: no pinning.
    pub cpus: Vec<usize>,
    pub schedule: Schedule,
    /// Stop after this many requests (single-step schedules).
    pub max_requests: Option<u64>,
    pub timeout: Duration,
    /// Pause between a response and the next request, per connection (closed loop).
    pub think: Option<Duration>,
    /// How long a worker polls for the next response, rather than sleep, once responses
    /// come this close together (closed loop without think time); zero: never.
    pub busy_poll: Duration,
    /// The WebSocket echo message.
    pub ws_message: String,
    pub http: HttpOptions,
}

/// How load is shaped, apart from what it requests and where it goes.
#[derive(Clone, Debug)]
pub struct LoadShape {
    pub threads: usize,
    pub cpus: Vec<usize>,
    pub schedule: Schedule,
    pub max_requests: Option<u64>,
    pub timeout: Duration,
    pub think: Option<Duration>,
}

impl LoadConfig {
    /// Load of `requests` at `target`, shaped by `shape` (validated by [`run`]).
    pub fn new(target: Target, requests: Vec<RequestSpec>, shape: LoadShape) -> Self {
        Self {
            target,
            requests,
            threads: shape.threads,
            cpus: shape.cpus,
            schedule: shape.schedule,
            max_requests: shape.max_requests,
            timeout: shape.timeout,
            think: shape.think,
            busy_poll: DEFAULT_BUSY_POLL,
            ws_message: "runner-echo".into(),
            http: HttpOptions::default(),
        }
    }

    /// Checks the combination of settings.
    pub fn validate(&self) -> Result<(), LoadError> {
        let invalid = |m: String| Err(LoadError::Invalid(m));
        if self.threads == 0 {
            return invalid("threads must be at least 1".into());
        }
        let conns = self.schedule.max_connections();
        if conns == 0 {
            return invalid("connections must be at least 1".into());
        }
        if self.threads > conns {
            return invalid(format!(
                "{} threads need at least as many connections (the schedule has at most {conns})",
                self.threads
            ));
        }
        if self.schedule.steps.len() > 1 && self.max_requests.is_some() {
            return invalid(
                "a request count (-n) works with a single-step run, not a schedule".into(),
            );
        }
        if self.max_requests.is_none() && self.schedule.duration().is_none() {
            return invalid("give a duration (-d) or a request count (-n)".into());
        }
        if let Some(streams) = self.http.http2 {
            if streams == 0 {
                return invalid("streams per connection (-p) must be at least 1, not 0".into());
            }
            if self.target.websocket {
                return invalid("--http2 loads HTTP URLs, not WebSocket ones".into());
            }
        }
        for step in &self.schedule.steps {
            if let schedule::StepLoad::Open { from, to, .. } = step.load {
                if !(from > 0.0 && to > 0.0) {
                    return invalid("the rate must be above zero".into());
                }
                if step.duration.is_none() && from != to {
                    return invalid("a ramp needs a duration".into());
                }
            }
        }
        Ok(())
    }
}

/// Live figures, once per second.
#[derive(Clone, Debug)]
pub struct Progress {
    pub elapsed: Duration,
    pub total: Option<Duration>,
    pub last_second: SecondRow,
    pub ok: u64,
    pub errors: u64,
}

/// A finished run: the report, and the corrected latency histogram of the whole run.
pub struct LoadOutcome {
    pub report: LoadReport,
    pub histogram: Histogram<u64>,
}

/// Runs the load. `stop` ends it early (the report is then marked interrupted); `progress`
/// is called once a second.
pub fn run(
    config: &LoadConfig,
    stop: Arc<AtomicBool>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<LoadOutcome, LoadError> {
    config.validate()?;
    // One socket per connection, and some to spare for the process itself.
    let need = config.schedule.max_connections() as u64 + 64;
    crate::host::ensure_open_files(need).map_err(LoadError::Invalid)?;
    let target = &config.target;
    let specs = if target.websocket {
        vec![RequestSpec::get(&target.path)]
    } else {
        config.requests.clone()
    };
    let prepared = Prepared::new(&specs, &target.authority)?;
    let names = prepared.names();
    let (protocol, mut protocol_report) = if target.websocket {
        (
            Protocol::WebSocket {
                url: target.url.clone(),
                message: config.ws_message.clone(),
            },
            ProtocolReport::new("websocket", "tungstenite", "a ws:// URL"),
        )
    } else if let Some(streams) = config.http.http2 {
        let how = if target.tls {
            "TLS with ALPN h2"
        } else {
            "cleartext with prior knowledge (h2c)"
        };
        (
            Protocol::Http2 { streams },
            ProtocolReport::new("2", "h2", how),
        )
    } else {
        let choice = http1::choose(config.http.http1, &prepared).map_err(LoadError::Invalid)?;
        let client = match choice.client {
            http1::Client::Hyper => "hyper",
            _ => "lean",
        };
        (
            Protocol::Http1(choice.client),
            ProtocolReport::new("1.1", client, &choice.reason),
        )
    };
    let tls = if target.tls {
        let alpn: &[&[u8]] = match protocol {
            Protocol::Http2 { .. } => &[b"h2", b"http/1.1"],
            _ => &[b"http/1.1"],
        };
        Some(tls::Tls::new(&target.host, alpn, config.http.insecure)?)
    } else {
        None
    };
    let agreed = preflight::check(target, tls.as_ref(), &protocol, config.timeout)?;
    let origin = format!(
        "{}://{}",
        if target.tls { "https" } else { "http" },
        target.authority
    );
    let plan = Arc::new(Plan::new(
        target.addr,
        tls,
        protocol,
        prepared,
        origin,
        config.schedule.clone(),
        config.timeout,
        config.think,
        config.busy_poll,
        config.threads,
        config.cpus.clone(),
    ));
    let (busy_poll, grids) = (plan.busy_poll, plan.grids.clone());
    let user_stop = stop;
    let engine_stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        start: OnceLock::new(),
        stop: engine_stop.clone(),
        budget: config.max_requests.map(|n| AtomicI64::new(n as i64)),
    });
    let start = Instant::now();
    let _ = shared.start.set(start);
    let mut collector = Collector::new(
        config.threads,
        start,
        config.schedule.duration(),
        user_stop,
        engine_stop,
        progress,
    );
    let tallies = if config.threads == 1 {
        // The one worker runs on this thread. A process with a single thread skips the
        // kernel's file reference counting on every socket call: 3% more requests per second
        // at -t1 against nginx (paired with wrk, `cargo xtask bench load`).
        vec![engine::run_worker(
            0,
            plan,
            shared,
            Arc::new(Barrier::new(1)),
            &mut |bucket| {
                collector.check_stop();
                if let Some(bucket) = bucket {
                    collector.take(bucket);
                }
            },
        )]
    } else {
        run_threads(config.threads, &plan, &shared, &mut collector)?
    };
    let elapsed = start.elapsed();
    let (rows, interrupted) = collector.finish(elapsed);

    let mut steps: Vec<StepStats> = (0..config.schedule.steps.len())
        .map(|_| StepStats::new(names.len()))
        .collect();
    for r in &tallies {
        for (sum, s) in steps.iter_mut().zip(&r.steps) {
            sum.merge(s);
        }
    }
    let mut total_stats = StepStats::new(names.len());
    for s in &steps {
        total_stats.merge(s);
    }
    let mut connections = ConnectionStats::default();
    for r in &tallies {
        connections.merge(&r.connections);
    }
    if let Some(streams) = config.http.http2 {
        protocol_report.http2 = Some(Http2Report {
            streams_per_connection: streams,
            connections_goaway: connections.goaways,
            connections_failed: connections.failed,
        });
    }
    let tls_report = agreed.map(|agreed| TlsReport {
        version: agreed.version,
        cipher: agreed.cipher,
        alpn: agreed.alpn,
        handshakes: connections.handshakes.len(),
        resumed: connections.resumed,
        handshake_us: Percentiles::of(&connections.handshakes),
    });
    let ran = elapsed.as_secs_f64();
    let step_reports: Vec<StepReport> = config
        .schedule
        .steps
        .iter()
        .zip(&steps)
        .zip(&grids)
        .map(|((step, stats), grid)| StepReport {
            label: step.label.clone(),
            load: step.load.clone(),
            figures: Figures::new(
                stats,
                step.duration
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(ran)
                    .min(ran),
                figures::step_rate(step),
            )
            .with_grid(*grid),
        })
        .collect();
    let open = config
        .schedule
        .steps
        .iter()
        .all(|s| figures::step_rate(s).is_some());
    let total_rate = open.then(|| {
        let sent: f64 = config
            .schedule
            .steps
            .iter()
            .map(|s| {
                figures::step_rate(s).unwrap() * s.duration.map(|d| d.as_secs_f64()).unwrap_or(ran)
            })
            .sum();
        sent / config
            .schedule
            .duration()
            .map(|d| d.as_secs_f64())
            .unwrap_or(ran)
    });
    let report = LoadReport {
        schema: "runner.load/v1",
        url: config.target.url.clone(),
        connections: config.schedule.max_connections(),
        threads: config.threads,
        cpus: config.cpus.clone(),
        timeout_s: config.timeout.as_secs_f64(),
        protocol: protocol_report,
        tls: tls_report,
        interrupted,
        error_samples: std::mem::take(&mut connections.samples),
        total: Figures::new(&total_stats, ran, total_rate)
            .with_grid(grids.iter().copied().max().unwrap_or_default()),
        steps: step_reports,
        mix: names
            .iter()
            .enumerate()
            .map(|(i, (name, weight))| MixReport {
                name: name.clone(),
                weight: *weight,
                ok: total_stats.per_entry[i][0],
                errors: total_stats.per_entry[i][1],
            })
            .collect(),
        timeseries: rows,
        client: figures::ClientReport::new(
            &tallies
                .iter()
                .map(|t| figures::WorkerCpu {
                    cpu: t.cpu,
                    polled: t.polled,
                })
                .collect::<Vec<_>>(),
            busy_poll,
            elapsed,
        ),
    };
    Ok(LoadOutcome {
        report,
        histogram: total_stats.corrected,
    })
}

/// Runs `threads` workers on their own threads and feeds their buckets to `collector`.
fn run_threads(
    threads: usize,
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
    collector: &mut Collector<'_>,
) -> Result<Vec<tally::Tally>, LoadError> {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let (tx, rx) = mpsc::channel::<SecondBucket>();
    let mut handles = Vec::new();
    for id in 0..threads {
        let (plan, shared, barrier, tx) =
            (plan.clone(), shared.clone(), barrier.clone(), tx.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("load-{id}"))
                .spawn(move || {
                    engine::run_worker(id, plan, shared, barrier, &mut |bucket| {
                        if let Some(bucket) = bucket {
                            let _ = tx.send(bucket);
                        }
                    })
                })
                .map_err(LoadError::Thread)?,
        );
    }
    drop(tx);
    barrier.wait();
    loop {
        collector.check_stop();
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(bucket) => collector.take(bucket),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(handles
        .into_iter()
        .map(|h| h.join().expect("load worker panicked"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_or_ws() {
        assert!(parse_url("http://127.0.0.1:8080/ping").is_ok());
        let t = parse_url("ws://localhost:9/ws-echo").unwrap();
        assert!(t.websocket);
        assert_eq!(t.path, "/ws-echo");
        assert_eq!(parse_url("http://127.0.0.1").unwrap().path, "/");
        let t = parse_url("https://localhost/x").unwrap();
        assert!(t.tls && !t.websocket);
        assert_eq!((t.host.as_str(), t.addr.port()), ("localhost", 443));
        assert!(parse_url("wss://localhost:9/ws").unwrap().tls);
        assert_eq!(
            parse_url("ftp://example.com/").unwrap_err().to_string(),
            "ftp:// is not supported; runner load speaks HTTP (http://, https://) and WebSocket (ws://, wss://)"
        );
        assert!(matches!(parse_url("not a url"), Err(LoadError::Url(_))));
        assert!(matches!(parse_url("/just/a/path"), Err(LoadError::Url(_))));
    }
}
