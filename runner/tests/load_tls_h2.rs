//! HTTPS and HTTP/2 load against in-process servers: rustls with a self-signed certificate,
//! hyper's HTTP/1.1 server, and h2's server whose streams the test resets, refuses with
//! GOAWAY, or starves of flow-control window.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use runner::load::{
    request::{BodySource, RequestSpec},
    schedule::Schedule,
    HttpOptions, LoadConfig,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{rustls, TlsAcceptor};

mod common;

use common::load::{run, timing, try_run};

/// What the test servers saw.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    requests: AtomicU64,
    /// Requests that arrived over HTTP/2.
    http2: AtomicU64,
}

#[derive(Clone, Copy, PartialEq)]
enum H2 {
    /// 200 "pong" on every path, except: /reset is reset (RST_STREAM, INTERNAL_ERROR),
    /// /refuse is refused (RST_STREAM, REFUSED_STREAM), /slow waits 200 ms, /upload is never
    /// read (its sender runs out of flow-control window).
    Paths,
    /// GOAWAY (ENHANCE_YOUR_CALM) after this many streams on a connection.
    GoawayAfter(u64),
    /// A graceful GOAWAY (NO_ERROR) after this many streams, as nginx's keepalive_requests.
    GracefulAfter(u64),
}

#[derive(Clone, Copy)]
enum Kind {
    /// hyper's HTTP/1.1 server; `close`: Connection: close after each response.
    Http1 {
        close: bool,
    },
    H2(H2),
    /// WebSocket echo of text messages.
    Echo,
}

async fn serve_echo<S: AsyncRead + AsyncWrite + Unpin>(io: S, seen: Arc<Seen>) {
    use futures_util::{SinkExt, StreamExt};
    let Ok(mut ws) = tokio_tungstenite::accept_async(io).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        seen.requests.fetch_add(1, Ordering::Relaxed);
        if msg.is_text() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Seen>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// A TLS acceptor with a fresh self-signed certificate for localhost and 127.0.0.1.
fn acceptor(alpn: &[&[u8]]) -> TlsAcceptor {
    let key =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = key.cert.der().clone();
    let private =
        rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], private)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

async fn serve_http1<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    close: bool,
    seen: Arc<Seen>,
) {
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let _ = req.into_body().collect().await;
            seen.requests.fetch_add(1, Ordering::Relaxed);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"pong"))))
        }
    });
    let _ = http1::Builder::new()
        .keep_alive(!close)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

async fn serve_h2<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    behaviour: H2,
    seen: Arc<Seen>,
) {
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    let mut streams = 0;
    while let Some(accepted) = conn.accept().await {
        let Ok((request, mut respond)) = accepted else {
            return;
        };
        streams += 1;
        seen.requests.fetch_add(1, Ordering::Relaxed);
        if request.version() == hyper::Version::HTTP_2 {
            seen.http2.fetch_add(1, Ordering::Relaxed);
        }
        let path = request.uri().path().to_string();
        tokio::spawn(async move {
            let mut body = request.into_body();
            match path.as_str() {
                "/reset" => return respond.send_reset(h2::Reason::INTERNAL_ERROR),
                "/refuse" => return respond.send_reset(h2::Reason::REFUSED_STREAM),
                "/upload" => {
                    // Hold the stream without reading it: no window goes back to the client.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    drop(body);
                    return;
                }
                "/slow" => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => {}
            }
            while let Some(Ok(data)) = body.data().await {
                let _ = body.flow_control().release_capacity(data.len());
            }
            let Ok(mut send) = respond.send_response(Response::new(()), false) else {
                return;
            };
            let _ = send.send_data(Bytes::from_static(b"pong"), true);
        });
        if behaviour == H2::GoawayAfter(streams) {
            conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
        }
        if behaviour == H2::GracefulAfter(streams) {
            conn.graceful_shutdown();
        }
    }
}

/// A server of `kind`, in TLS with `alpn` when given.
fn start(kind: Kind, tls: Option<&[&[u8]]>) -> Server {
    let seen = Arc::new(Seen::default());
    let acceptor = tls.map(acceptor);
    let seen2 = seen.clone();
    let (addr, stop) = common::load::serve_on_thread(move |listener| async move {
        async {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                seen2.connections.fetch_add(1, Ordering::Relaxed);
                let (seen, acceptor) = (seen2.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match (acceptor, kind) {
                        (None, Kind::Http1 { close }) => serve_http1(stream, close, seen).await,
                        (None, Kind::H2(b)) => serve_h2(stream, b, seen).await,
                        (None, Kind::Echo) => serve_echo(stream, seen).await,
                        (Some(acceptor), kind) => {
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            match kind {
                                Kind::Http1 { close } => serve_http1(tls, close, seen).await,
                                Kind::H2(b) => serve_h2(tls, b, seen).await,
                                Kind::Echo => serve_echo(tls, seen).await,
                            }
                        }
                    }
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

fn config(url: &str, schedule: Schedule, http: HttpOptions) -> LoadConfig {
    LoadConfig {
        http,
        ..common::load::config(url, schedule)
    }
}

fn insecure() -> HttpOptions {
    HttpOptions {
        insecure: true,
        ..HttpOptions::default()
    }
}

fn h2(streams: usize, insecure: bool) -> HttpOptions {
    HttpOptions {
        http2: Some(streams),
        insecure,
        ..HttpOptions::default()
    }
}

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

#[test]
fn https_keep_alive_reports_handshakes_apart_and_resumes_sessions() {
    let server = start(Kind::Http1 { close: false }, Some(&[b"http/1.1"]));
    let mut c = config(
        &format!("https://127.0.0.1:{}/ping", server.addr.port()),
        Schedule::closed(4, None),
        insecure(),
    );
    c.max_requests = Some(2000);
    let report = run(&c).report;
    assert_eq!(report.total.ok, 2000, "{:?}", report.total.errors);
    assert_eq!(server.seen.requests.load(Ordering::Relaxed), 2000);
    assert_eq!(report.protocol.client, "lean");
    let tls = report.tls.expect("a TLS report");
    assert_eq!(
        (tls.version.as_str(), tls.alpn.as_deref()),
        ("TLSv1_3", Some("http/1.1"))
    );
    assert_eq!(tls.handshakes, 4, "one handshake per keep-alive connection");
    assert!(tls.handshake_us.p50 > 0);

    // A server that closes after every response: every request needs a handshake, and
    // all but the first few resume a session.
    let server = start(Kind::Http1 { close: true }, Some(&[b"http/1.1"]));
    let mut c = config(
        &format!("https://127.0.0.1:{}/ping", server.addr.port()),
        Schedule::closed(2, None),
        insecure(),
    );
    c.max_requests = Some(100);
    let report = run(&c).report;
    assert_eq!(report.total.ok, 100, "{:?}", report.total.errors);
    let tls = report.tls.unwrap();
    assert!(tls.handshakes >= 100, "{tls:?}");
    assert!(tls.resumed >= tls.handshakes - 4, "{tls:?}");
    assert_eq!(
        server.seen.connections.load(Ordering::Relaxed),
        tls.handshakes + 1,
        "every connection but the preflight's is counted"
    );
}

#[test]
fn websocket_echo_over_tls() {
    let server = start(Kind::Echo, Some(&[b"http/1.1"]));
    let mut c = config(
        &format!("wss://127.0.0.1:{}/echo", server.addr.port()),
        Schedule::closed(2, None),
        insecure(),
    );
    c.max_requests = Some(500);
    c.ws_message = "hello".into();
    let report = run(&c).report;
    assert_eq!(report.total.ok, 500, "{:?}", report.total.errors);
    assert_eq!(report.total.bytes, 500 * 5);
    assert_eq!(report.protocol.http, "websocket");
    assert_eq!(report.tls.unwrap().handshakes, 2);
    assert_eq!(server.seen.requests.load(Ordering::Relaxed), 500);
}

#[test]
fn a_certificate_that_does_not_verify_is_one_clear_error() {
    let server = start(Kind::Http1 { close: false }, Some(&[b"http/1.1"]));
    let url = format!("https://127.0.0.1:{}/ping", server.addr.port());
    let c = config(&url, Schedule::closed(2, secs(1)), HttpOptions::default());
    let err = try_run(&c).err().expect("the run is refused").to_string();
    assert!(
        err.contains("does not verify") && err.contains("--insecure"),
        "{err}"
    );
    assert_eq!(server.seen.requests.load(Ordering::Relaxed), 0);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["load", &url, "-d", "1s"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("pass --insecure to skip verification"),
        "{stderr}"
    );
}

#[test]
fn http2_streams_run_concurrently_with_per_stream_latency() {
    let _timing = timing();
    for tls in [false, true] {
        let alpn: &[&[u8]] = &[b"h2"];
        let server = start(Kind::H2(H2::Paths), tls.then_some(alpn));
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{}/slow", server.addr.port());
        // 2 connections x 4 streams, each stream waits 200 ms: 40 responses a second.
        let c = config(&url, Schedule::closed(2, secs(2)), h2(4, true));
        let report = run(&c).report;
        assert_eq!(report.protocol.http, "2");
        assert_eq!(report.total.error_total, 0, "{:?}", report.total.errors);
        let rps = report.total.rps;
        assert!((30.0..=42.0).contains(&rps), "{scheme}: {rps} responses/s");
        let p50 = report.total.latency_us.p50;
        assert!((200_000..260_000).contains(&p50), "{scheme}: p50 {p50} us");
        assert_eq!(
            server.seen.connections.load(Ordering::Relaxed),
            3,
            "{scheme}: the preflight's connection and two more"
        );
        assert_eq!(
            server.seen.http2.load(Ordering::Relaxed),
            report.total.ok,
            "{scheme}"
        );
        if tls {
            assert_eq!(report.tls.unwrap().alpn.as_deref(), Some("h2"));
        }
    }
}

#[test]
fn http2_holds_an_open_loop_rate_and_counts_exactly() {
    let _timing = timing();
    let server = start(Kind::H2(H2::Paths), None);
    let url = format!("http://127.0.0.1:{}/ping", server.addr.port());
    let c = config(&url, Schedule::rates(&[2000.0], 4, secs(2)), h2(8, false));
    let report = run(&c).report;
    // Every intended request is sent or counted unsent, however much CPU the client got;
    // up to one per stream slot (4 x 8) is still out at the end, uncounted.
    let t = &report.total;
    assert!(
        (4000 - 32..=4000).contains(&t.requests),
        "{} requests in {}s: {:?}",
        t.requests,
        t.duration_s,
        report.timeseries
    );
    assert_eq!(t.error_total, t.errors["unsent"], "{:?}", t.errors);
    let sent = t.requests - t.errors["unsent"];
    let achieved = t.achieved_rate.unwrap();
    assert!(
        (achieved - sent as f64 / t.duration_s).abs() <= 1.0,
        "achieved {achieved}/s counts what went out"
    );
    assert!(t.latency_uncorrected_us.is_some());
    let open_loop = server.seen.requests.load(Ordering::Relaxed);
    assert!(
        (t.ok..=t.ok + 32).contains(&open_loop),
        "the server saw {open_loop}, runner counted {} ok",
        t.ok
    );
    let mut c = config(&url, Schedule::closed(3, None), h2(5, false));
    c.max_requests = Some(3000);
    let report = run(&c).report;
    assert_eq!(report.total.ok, 3000);
    assert_eq!(
        server.seen.requests.load(Ordering::Relaxed),
        open_loop + 3000
    );
}

#[test]
fn http2_errors_are_classified_by_stream_and_connection() {
    // RST_STREAM on a third of the requests, REFUSED_STREAM on another: stream errors, the
    // connections stay; a refused stream is sent once more before it counts.
    let server = start(Kind::H2(H2::Paths), None);
    let base = format!("http://127.0.0.1:{}", server.addr.port());
    let mut c = config(&format!("{base}/"), Schedule::closed(2, None), h2(4, false));
    c.max_requests = Some(1500);
    c.requests = ["/ok", "/reset", "/refuse"]
        .iter()
        .map(|p| RequestSpec {
            name: p[1..].into(),
            ..RequestSpec::get(p)
        })
        .collect();
    let report = run(&c).report;
    let resets = report.total.errors["stream_reset"];
    assert_eq!(report.total.ok + resets, 1500, "{:?}", report.total.errors);
    assert_eq!(report.total.ok, report.mix[0].ok);
    let (reset, refused) = (report.mix[1].errors, report.mix[2].errors);
    assert!((400..600).contains(&reset), "{reset} resets");
    assert!((400..600).contains(&refused), "{refused} refusals");
    assert_eq!(
        report.mix[1].ok + report.mix[2].ok,
        0,
        "a reset stream is never a success"
    );
    assert_eq!(
        server.seen.requests.load(Ordering::Relaxed),
        1500 + refused,
        "each refused request went out twice"
    );
    assert_eq!(server.seen.connections.load(Ordering::Relaxed), 3);

    // A graceful GOAWAY every 50 streams (nginx's keepalive_requests): the streams it
    // refused go out again on a new connection; nothing is lost or counted as an error.
    let server = start(Kind::H2(H2::GracefulAfter(50)), None);
    let mut c = config(
        &format!("http://127.0.0.1:{}/ping", server.addr.port()),
        Schedule::closed(2, None),
        h2(8, false),
    );
    c.max_requests = Some(1000);
    let report = run(&c).report;
    assert_eq!(report.total.ok, 1000, "{:?}", report.total.errors);
    assert_eq!(server.seen.requests.load(Ordering::Relaxed), 1000);
    let connections = server.seen.connections.load(Ordering::Relaxed);
    assert!(
        (15..=25).contains(&connections),
        "{connections} connections"
    );

    // GOAWAY every 50 streams: streams refused with it are goaway errors, the connections
    // are counted, and the run goes on over new ones.
    let server = start(Kind::H2(H2::GoawayAfter(50)), None);
    let mut c = config(
        &format!("http://127.0.0.1:{}/ping", server.addr.port()),
        Schedule::closed(2, None),
        h2(4, false),
    );
    c.max_requests = Some(1000);
    let report = run(&c).report;
    let goaway = report.total.errors["goaway"];
    assert_eq!(report.total.ok + report.total.error_total, 1000);
    assert!(report.total.ok >= 900, "{:?}", report.total);
    let conns = report.protocol.http2.unwrap();
    assert!(conns.connections_goaway >= 15, "{conns:?}");
    assert!(goaway <= report.total.error_total);

    // A request body the server never reads stalls on flow control until the timeout.
    let server = start(Kind::H2(H2::Paths), None);
    let mut c = config(
        &format!("http://127.0.0.1:{}/upload", server.addr.port()),
        Schedule::closed(1, secs(1)),
        h2(2, false),
    );
    c.timeout = Duration::from_millis(300);
    c.requests[0].method = "POST".into();
    c.requests[0].body = BodySource::Size(256 * 1024);
    let report = run(&c).report;
    assert_eq!(report.total.ok, 0);
    assert!(
        report.total.errors["flow_control"] >= 4,
        "{:?}",
        report.total.errors
    );
}

#[test]
fn http2_bad_servers_are_one_clear_error() {
    // h2c to a server that only speaks HTTP/1.1.
    let plain = start(Kind::Http1 { close: false }, None);
    let c = config(
        &format!("http://127.0.0.1:{}/", plain.addr.port()),
        Schedule::closed(2, secs(1)),
        h2(2, false),
    );
    let err = try_run(&c).err().expect("refused").to_string();
    assert!(
        err.contains("does not speak HTTP/2 over cleartext"),
        "{err}"
    );
    // ALPN that picks http/1.1 while --http2 was asked.
    let old = start(Kind::Http1 { close: false }, Some(&[b"http/1.1"]));
    let c = config(
        &format!("https://127.0.0.1:{}/", old.addr.port()),
        Schedule::closed(2, secs(1)),
        h2(2, true),
    );
    let err = try_run(&c).err().expect("refused").to_string();
    assert!(err.contains("chose http/1.1 in ALPN, not h2"), "{err}");
    for server in [plain, old] {
        assert_eq!(server.seen.requests.load(Ordering::Relaxed), 0);
    }
}
