//! The load engine against an in-process hyper server whose behaviour the test controls.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{body::Frame, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use runner::load::{
    self,
    http1::Client,
    request::{BodyCheck, Expect, RequestSpec, StatusExpect},
    schedule::Schedule,
    HttpOptions, LoadConfig,
};
use sha2::{Digest, Sha256};

mod common;

use common::load::{run, timing};

/// Requests the server saw, by path.
#[derive(Default)]
struct Seen {
    paths: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
}

/// How the test server answers.
#[derive(Clone, Copy)]
enum Behaviour {
    Ok,
    /// Requests that arrive in the second half of each second wait until it ends.
    FreezeHalfOfEverySecond,
    /// /slow never answers.
    SlowPath,
    /// /stream sends 10 MiB in 64 KiB chunks.
    Stream,
    /// Answers with `Connection: close` and closes after each response (gunicorn's sync
    /// workers do).
    CloseEach,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Seen>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

const STREAM_BYTES: usize = 10 * 1024 * 1024;

fn stream_bytes() -> Vec<u8> {
    (0..STREAM_BYTES).map(|i| (i % 251) as u8).collect()
}

fn server(behaviour: Behaviour) -> Server {
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    let (addr, stop) = common::load::serve_on_thread(move |listener| async move {
        let start = Instant::now();
        let data = Bytes::from(stream_bytes());
        async {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let seen = seen2.clone();
                let data = data.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        let data = data.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let _ = req.into_body().collect().await;
                            seen.total.fetch_add(1, Ordering::Relaxed);
                            *seen.paths.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                            match behaviour {
                                Behaviour::FreezeHalfOfEverySecond => {
                                    let phase = start.elapsed().as_millis() % 1000;
                                    if phase >= 500 {
                                        tokio::time::sleep(Duration::from_millis(
                                            (1000 - phase) as u64,
                                        ))
                                        .await;
                                    }
                                }
                                Behaviour::SlowPath if path == "/slow" => {
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                }
                                _ => {}
                            }
                            let body: http_body_util::combinators::BoxBody<Bytes, Infallible> =
                                if matches!(behaviour, Behaviour::Stream) {
                                    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = data
                                        .chunks(64 * 1024)
                                        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                                        .collect();
                                    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
                                        chunks,
                                    )))
                                } else {
                                    Full::new(Bytes::from_static(b"pong")).boxed()
                                };
                            let status = if path == "/missing" { 404 } else { 200 };
                            Ok::<_, Infallible>(
                                Response::builder().status(status).body(body).unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(!matches!(behaviour, Behaviour::CloseEach))
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
        .await
    });
    Server {
        addr,
        seen,
        _shutdown: stop,
    }
}

fn config(addr: SocketAddr, path: &str, schedule: Schedule) -> LoadConfig {
    common::load::config(&format!("http://{addr}{path}"), schedule)
}

/// Both HTTP/1.1 clients: the lean one and hyper's.
const CLIENTS: [Client; 2] = [Client::Lean, Client::Hyper];

fn with_client(mut c: LoadConfig, client: Client) -> LoadConfig {
    c.http = HttpOptions {
        http1: client,
        ..HttpOptions::default()
    };
    c
}

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

#[test]
fn a_request_count_is_exact() {
    let server = server(Behaviour::Ok);
    let mut c = config(server.addr, "/ping", Schedule::closed(8, None));
    c.max_requests = Some(1000);
    c.threads = 2;
    let report = run(&c).report;
    assert_eq!(report.total.ok, 1000);
    assert_eq!(report.total.error_total, 0);
    assert_eq!(server.seen.total.load(Ordering::Relaxed), 1000);
}

#[test]
fn a_single_worker_runs_on_the_calling_thread_and_gives_its_cpus_back() {
    let server = server(Behaviour::Ok);
    let mut c = config(
        server.addr,
        "/ping",
        Schedule::closed(2, Some(Duration::from_millis(1500))),
    );
    c.cpus = vec![0];
    let me = nix::unistd::Pid::from_raw(0);
    let only_cpu_0 = || {
        let set = nix::sched::sched_getaffinity(me).unwrap();
        (0..nix::sched::CpuSet::count()).all(|cpu| set.is_set(cpu).unwrap() == (cpu == 0))
    };
    let before = format!("{:?}", nix::sched::sched_getaffinity(me).unwrap());
    // Progress is reported on the worker's thread: this one, pinned to CPU 0 while it runs.
    let mut pinned_seconds = 0;
    let outcome = load::run(&c, Arc::new(AtomicBool::new(false)), &mut |_| {
        pinned_seconds += usize::from(only_cpu_0());
    })
    .unwrap();
    assert!(outcome.report.total.ok > 0);
    assert!(
        pinned_seconds >= 1,
        "the calling thread ran the worker on CPU 0"
    );
    let after = format!("{:?}", nix::sched::sched_getaffinity(me).unwrap());
    assert_eq!(before, after, "the caller's CPUs are given back");
}

#[test]
fn a_server_closing_every_connection_is_followed_without_hanging() {
    for client in CLIENTS {
        let server = server(Behaviour::CloseEach);
        let mut c = with_client(
            config(server.addr, "/ping", Schedule::closed(4, None)),
            client,
        );
        c.max_requests = Some(300);
        // run() cannot time out a run that never returns: watch it from here.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(run(&c).report);
        });
        let report = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the run ends although the server closes every connection");
        assert_eq!(report.total.ok, 300, "{client:?}: {:?}", report.total);
        assert_eq!(
            report.total.error_total, 0,
            "{client:?}: {:?}",
            report.total
        );
        assert_eq!(server.seen.total.load(Ordering::Relaxed), 300);
    }
}

#[test]
fn the_http1_client_is_chosen_automatically_and_recorded() {
    let server = server(Behaviour::Ok);
    let mut c = config(server.addr, "/ping", Schedule::closed(2, None));
    c.max_requests = Some(200);
    let report = run(&c).report;
    assert_eq!(
        (
            report.protocol.http.as_str(),
            report.protocol.client.as_str()
        ),
        ("1.1", "lean")
    );
    assert_eq!(report.total.ok, 200);
    // A request that sets its own framing or connection headers goes through hyper.
    c.requests[0].headers = vec!["Connection: close".into()];
    let report = run(&c).report;
    assert_eq!(report.protocol.client, "hyper");
    assert!(
        report.protocol.why.contains("`connection`"),
        "{}",
        report.protocol.why
    );
    assert_eq!(report.total.ok, 200, "{:?}", report.total.errors);
    // Asking for the lean client with such a request is an error, said before any load.
    c.http.http1 = Client::Lean;
    let err = load::run(&c, Arc::new(AtomicBool::new(false)), &mut |_| {})
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("cannot send this"), "{err}");
    assert_eq!(server.seen.total.load(Ordering::Relaxed), 400);
}

#[test]
fn open_loop_accounts_for_every_intended_request() {
    // Every intended request is sent or counted unsent: the count does not depend on how
    // much CPU the client gets (a busy machine makes requests late or unsent, never lost).
    let _timing = timing();
    let server = server(Behaviour::Ok);
    let c = config(
        server.addr,
        "/ping",
        Schedule::rates(&[5000.0], 16, secs(3)),
    );
    let report = run(&c).report;
    let t = &report.total;
    let unsent = t.errors["unsent"];
    // Up to one request per connection is still out when the run ends, and is not counted.
    assert!(
        (15_000 - 16..=15_000).contains(&t.requests),
        "{} requests: {:?}",
        t.requests,
        t.errors
    );
    assert_eq!(t.error_total, unsent, "{:?}", t.errors);
    let seen = server.seen.total.load(Ordering::Relaxed);
    assert!(
        (t.ok..=t.ok + 16).contains(&seen),
        "the server saw {seen}, runner counted {} ok",
        t.ok
    );
    let achieved = t.achieved_rate.unwrap();
    assert!(
        (achieved - t.ok as f64 / t.duration_s).abs() <= 1.0,
        "achieved {achieved} req/s counts what went out"
    );
    assert_eq!(t.lateness.as_ref().unwrap().unsent, unsent);
    // 5000/s from one worker: sends go out on a 1 ms grid, and the report says so.
    assert_eq!(t.lateness.as_ref().unwrap().grid_us, 1000);
    assert_eq!(t.target_rate, Some(5000.0));
    assert!(t.latency_uncorrected_us.is_some());
}

#[test]
fn open_loop_sends_go_out_on_time_at_modest_rates() {
    // On tokio's millisecond timer a send went out 0.5 to 2 ms late, and the corrected
    // latency carried that; at this rate each send has its own wake-up on a timerfd.
    let _timing = timing();
    let server = server(Behaviour::Ok);
    let c = config(server.addr, "/ping", Schedule::rates(&[400.0], 8, secs(2)));
    let report = run(&c).report;
    let late = report.total.lateness.clone().unwrap();
    assert_eq!(late.grid_us, 0);
    // The median: a busy machine may delay a few wake-ups.
    assert!(
        late.p50_us < 400,
        "sends went out a median {} us late",
        late.p50_us
    );
}

#[test]
fn open_loop_against_a_server_that_never_answers_counts_what_it_could_not_send() {
    let _timing = timing();
    let server = server(Behaviour::SlowPath);
    let mut c = config(server.addr, "/slow", Schedule::rates(&[500.0], 5, secs(2)));
    c.timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let report = run(&c).report;
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "requests out at the end of the run do not hold it up: {:?}",
        started.elapsed()
    );
    let t = &report.total;
    // 5 connections, each a request per 0.5 s timeout: about 20 sent, and ~980 never sent.
    let (timeouts, unsent) = (t.errors["timeout"], t.errors["unsent"]);
    assert_eq!(t.ok, 0);
    assert!((10..=25).contains(&timeouts), "{:?}", t.errors);
    // Requests still out when the run ends are neither errors nor throughput.
    let out_at_end = 1000 - timeouts - unsent;
    assert!(out_at_end <= 5, "{:?}", t.errors);
    assert!(t.achieved_rate.unwrap() < 15.0, "{:?}", t.achieved_rate);
    // Their corrected latency runs to the end of the run: up to 2 s.
    assert!(t.latency_us.max >= 1_900_000, "{:?}", t.latency_us);
    assert!(t.latency_us.p50 >= 500_000, "{:?}", t.latency_us);
}

#[test]
fn think_time_ends_with_the_run() {
    let server = server(Behaviour::Ok);
    let mut c = config(server.addr, "/ping", Schedule::closed(2, secs(1)));
    c.think = Some(Duration::from_secs(30));
    let started = std::time::Instant::now();
    let report = run(&c).report;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a 30 s think in a 1 s run: {:?}",
        started.elapsed()
    );
    assert_eq!(report.total.ok, 2);
}

#[test]
fn corrected_latency_sees_what_a_stalled_server_hides() {
    let _timing = timing();
    let server = server(Behaviour::FreezeHalfOfEverySecond);
    let c = config(server.addr, "/ping", Schedule::rates(&[1000.0], 4, secs(4)));
    let report = run(&c).report;
    let corrected = report.total.latency_us.p99;
    let uncorrected = report.total.latency_uncorrected_us.unwrap().p99;
    assert!(
        corrected >= 400_000,
        "corrected p99 {corrected} us, expected >= 400 ms"
    );
    assert!(
        uncorrected * 10 < corrected,
        "uncorrected p99 {uncorrected} us should be far lower"
    );
    assert!(
        report.total.lateness.unwrap().late > 500,
        "requests behind schedule are counted late"
    );
}

#[test]
fn faults_are_classified_without_hanging() {
    for client in CLIENTS {
        faults(client);
    }
}

fn faults(client: Client) {
    // Timeouts.
    let server = server(Behaviour::SlowPath);
    let mut c = with_client(
        config(server.addr, "/slow", Schedule::closed(2, secs(1))),
        client,
    );
    c.timeout = Duration::from_millis(200);
    let report = run(&c).report;
    assert!(
        report.total.errors["timeout"] >= 4,
        "{:?}",
        report.total.errors
    );
    assert_eq!(report.total.ok, 0);
    // Statuses.
    let c = with_client(
        config(server.addr, "/missing", Schedule::closed(2, secs(1))),
        client,
    );
    let report = run(&c).report;
    assert!(report.total.errors["status_4xx"] > 10);
    assert_eq!(
        report.total.ok, 0,
        "throughput counts only correct responses"
    );
    assert_eq!(report.total.rps, 0.0);
    // Connection refused.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = with_client(config(refused, "/", Schedule::closed(2, secs(1))), client);
    let report = run(&c).report;
    assert!(
        report.total.errors["connect"] > 10,
        "{:?}",
        report.total.errors
    );
    // Hostile servers: a body cut short by the server's close and a head that is not HTTP
    // are protocol errors with a sample of what came; closing after each complete response
    // (without saying `Connection: close`) is followed by a reconnect, not an error.
    let cases: [(&[u8], Option<&str>, &str); 3] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf",
            Some("protocol"),
            "",
        ),
        (b"HTPT/1.1 200 OK\r\n\r\n", Some("protocol"), "HTPT/1.1"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", None, ""),
    ];
    for (response, class, sample) in cases {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let rude = std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        use std::io::{Read, Write};
                        s.set_nonblocking(false).unwrap();
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(response);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        let c = with_client(config(addr, "/", Schedule::closed(2, secs(1))), client);
        let report = run(&c).report;
        stop.store(true, Ordering::Relaxed);
        rude.join().unwrap();
        let t = &report.total;
        match class {
            Some(class) => {
                assert!(t.errors[class] > 10, "{client:?} {:?}", t.errors);
                assert_eq!(
                    (t.ok, t.error_total),
                    (0, t.errors[class]),
                    "{:?}",
                    t.errors
                );
                // The lean client keeps the bytes; hyper's error says what it found.
                let said = &report.error_samples[class];
                let sample = if matches!(client, Client::Lean) {
                    sample
                } else {
                    ""
                };
                assert!(
                    !said.is_empty() && said.contains(sample),
                    "{client:?}: {said}"
                );
            }
            None => {
                assert!(t.ok > 10, "{client:?} {:?}", t.errors);
                assert_eq!(t.error_total, 0, "{client:?} {:?}", t.errors);
            }
        }
    }
}

#[test]
fn a_streamed_body_is_counted_byte_exact() {
    // 400 MiB through debug builds of both ends, hashed: heavy enough to slow the tests
    // that time things, and slow enough to need more than the usual timeout.
    let _timing = timing();
    for client in CLIENTS {
        streamed_body(client);
    }
}

fn streamed_body(client: Client) {
    let server = server(Behaviour::Stream);
    let mut c = with_client(
        config(server.addr, "/stream", Schedule::closed(2, None)),
        client,
    );
    c.max_requests = Some(20);
    c.timeout = Duration::from_secs(30);
    c.requests[0].expect = Expect {
        status: StatusExpect::OneOf(vec![200]),
        body: Some(BodyCheck::Digest {
            size: STREAM_BYTES as u64,
            sha256: runner::load::request::hex(&Sha256::digest(stream_bytes())),
        }),
    };
    let report = run(&c).report;
    assert_eq!(report.total.ok, 20, "{:?}", report.total.errors);
    assert_eq!(report.total.bytes, 20 * STREAM_BYTES as u64);
    // A wrong digest is a body mismatch, not a success.
    c.requests[0].expect.body = Some(BodyCheck::Digest {
        size: STREAM_BYTES as u64,
        sha256: "0".repeat(64),
    });
    let report = run(&c).report;
    assert_eq!(report.total.errors["body_mismatch"], 20);
}

#[test]
fn a_weighted_mix_honours_its_weights() {
    let _timing = timing();
    let server = server(Behaviour::Ok);
    let mut c = config(server.addr, "/", Schedule::closed(8, None));
    c.max_requests = Some(6000);
    c.requests = [("get", 5), ("create", 3), ("health", 2)]
        .iter()
        .map(|(name, weight)| RequestSpec {
            name: name.to_string(),
            weight: *weight,
            ..RequestSpec::get(&format!("/{name}"))
        })
        .collect();
    let report = run(&c).report;
    assert_eq!(report.total.ok, 6000);
    let paths = server.seen.paths.lock().unwrap();
    for (name, weight) in [("get", 5.0), ("create", 3.0), ("health", 2.0)] {
        let share = paths[&format!("/{name}")] as f64 / 6000.0 * 100.0;
        let expected = weight * 10.0;
        assert!(
            (share - expected).abs() <= 3.0,
            "{name}: {share:.1}% of requests, expected {expected}% +-3"
        );
        let mix = report.mix.iter().find(|m| m.name == *name).unwrap();
        assert_eq!(mix.ok, paths[&format!("/{name}")]);
    }
}

#[test]
fn schedules_report_each_step() {
    let _timing = timing();
    let server = server(Behaviour::Ok);
    let c = config(
        server.addr,
        "/ping",
        Schedule::parse("sweep:2-6:2:1s", 8).unwrap(),
    );
    let report = run(&c).report;
    assert_eq!(report.steps.len(), 3);
    for step in &report.steps {
        assert!(step.figures.ok > 100, "{}: {}", step.label, step.figures.ok);
        assert!((step.figures.duration_s - 1.0).abs() < 0.01);
    }
    let sum: u64 = report.steps.iter().map(|s| s.figures.ok).sum();
    assert_eq!(sum, report.total.ok);
    assert!(report.timeseries.len() >= 3, "{:?}", report.timeseries);
    let c = config(
        server.addr,
        "/ping",
        Schedule::parse("rates:200,400:1s", 4).unwrap(),
    );
    let report = run(&c).report;
    let rates: Vec<f64> = report
        .steps
        .iter()
        .map(|s| s.figures.achieved_rate.unwrap())
        .collect();
    assert!(
        (rates[0] - 200.0).abs() < 10.0 && (rates[1] - 400.0).abs() < 10.0,
        "{rates:?}"
    );
    // The worker's own CPU is measured, and at these rates it is nowhere near busy.
    assert!(
        report.client.cpu_s > 0.0 && report.client.busiest_worker < 0.5,
        "{:?}",
        report.client
    );
    assert!(!report.client.saturated());
    // The time series is labelled by the second each row covers: 0 at 200/s, 1 at 400/s.
    let rows: Vec<(u64, u64)> = report.timeseries.iter().map(|r| (r.second, r.ok)).collect();
    assert_eq!(rows[0].0, 0, "{rows:?}");
    assert_eq!(rows[1].0, 1, "{rows:?}");
    assert!(rows[0].1.abs_diff(200) <= 20, "{rows:?}");
    assert!(rows[1].1.abs_diff(400) <= 20, "{rows:?}");
}

#[test]
fn the_cli_writes_json_hgrm_and_csv() {
    let server = server(Behaviour::Ok);
    let dir = std::env::temp_dir().join(format!("runner-load-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "load",
            &format!("http://{}/ping", server.addr),
            "-c",
            "4",
            "-d",
            "2s",
            "--expect-body",
            "pong",
        ])
        .arg("--json")
        .arg(dir.join("r.json"))
        .arg("--hgrm")
        .arg(dir.join("r.hgrm"))
        .arg("--csv")
        .arg(dir.join("r.csv"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("ok/s") && stdout.contains("p99.99"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(json["schema"], "runner.load/v1");
    assert!(json["rps"].as_f64().unwrap() > 100.0);
    assert_eq!(json["error_total"], 0);
    let hgrm = std::fs::read_to_string(dir.join("r.hgrm")).unwrap();
    assert!(hgrm.contains("#[Max     ="));
    let csv = std::fs::read_to_string(dir.join("r.csv")).unwrap();
    assert!(csv.lines().count() >= 3, "{csv}");
}

#[test]
fn websocket_echo_measures_each_message() {
    let (addr, _stop) = common::load::serve_on_thread(|listener| async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut c = config(addr, "/ws-echo", Schedule::closed(4, secs(1)));
    c.target = load::parse_url(&format!("ws://{addr}/ws-echo")).unwrap();
    c.ws_message = "hello".into();
    let report = run(&c).report;
    assert!(report.total.ok > 100, "{:?}", report.total);
    assert_eq!(report.total.error_total, 0);
    assert_eq!(report.total.bytes, report.total.ok * 5);
    assert!(report.total.latency_us.p50 > 0);
}
