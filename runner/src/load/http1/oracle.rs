//! The oracle: the lean client and hyper's client against the same scripted server
//! connection, each request classified the way the engine classifies it. The differential
//! test (`runner/tests/http1_oracle.rs`) and the fuzz target (`runner/fuzz`) run it; any
//! difference between the two verdicts is a bug in the lean client.
//!
//! The server is a script: the bytes of one response per request, in the pieces they
//! arrive in (a read returns at most one piece), each response released only once its
//! request was written; then what the server does with the connection. No clock is
//! involved: a client still waiting when nothing more will come is stuck, which the
//! engine sees as a timeout.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::Future,
    io,
    pin::{pin, Pin},
    rc::Rc,
    task::{Context, Poll, Waker},
};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{hyper_client, lean, BodySink, Response};
use crate::load::{
    engine::{judge, poll_driver},
    request::{BodyChecker, Expect, Prepared, RenderContext, RequestSpec},
    tally::{ErrorClass, Outcome},
};

/// What the server does once its responses are out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Keeps the connection open and says nothing more.
    Open,
    /// Closes the connection.
    Close,
    /// Resets the connection.
    Reset,
}

/// A scripted server connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// Per request, the response in the pieces it arrives in.
    pub responses: Vec<Vec<Vec<u8>>>,
    pub end: End,
}

impl Script {
    /// One response, whole.
    pub fn one(response: &[u8], end: End) -> Self {
        Self {
            responses: vec![vec![response.to_vec()]],
            end,
        }
    }

    /// The same script with its first response split at `at`.
    pub fn split_at(&self, at: usize) -> Self {
        let mut split = self.clone();
        if let Some(first) = split.responses.first_mut() {
            let whole = first.concat();
            let at = at.min(whole.len());
            *first = vec![whole[..at].to_vec(), whole[at..].to_vec()];
        }
        split
    }

    /// The same script with its first response arriving a byte at a time.
    pub fn bytewise(&self) -> Self {
        let mut split = self.clone();
        if let Some(first) = split.responses.first_mut() {
            *first = first.concat().iter().map(|b| vec![*b]).collect();
        }
        split
    }

    /// Bytes of the first response.
    pub fn first_len(&self) -> usize {
        self.responses
            .first()
            .map_or(0, |r| r.iter().map(Vec::len).sum())
    }
}

/// What the engine records for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// None for a correct response; else the error class.
    pub class: Option<ErrorClass>,
    /// The status, when a complete response came.
    pub status: Option<u16>,
    /// Body bytes handed over (before the error, for a failed request).
    pub bytes: u64,
    pub sha256: [u8; 32],
}

/// A client's run through a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Per request, until the connection is given up: what was recorded, or None for a
    /// request the connection could not take (the engine then connects again and counts
    /// nothing).
    pub requests: Vec<Option<Recorded>>,
    /// What the client wrote.
    pub written: Vec<u8>,
}

/// The state both ends of a scripted connection see.
#[derive(Default)]
struct Wire {
    written: RefCell<Vec<u8>>,
    /// Reads, writes and ends handed out: a poll that changes none made no progress.
    progress: Cell<u64>,
}

/// The server end of a scripted connection.
struct Server {
    script: Script,
    wire: Rc<Wire>,
    /// Responses released so far.
    released: usize,
    queue: VecDeque<Vec<u8>>,
    /// The end was handed out once.
    ended: bool,
}

impl Server {
    fn new(script: &Script, wire: Rc<Wire>) -> Self {
        Self {
            script: script.clone(),
            wire,
            released: 0,
            queue: VecDeque::new(),
            ended: false,
        }
    }

    fn tick(&self) {
        self.wire.progress.set(self.wire.progress.get() + 1);
    }
}

impl AsyncRead for Server {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(piece) = this.queue.front_mut() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                this.queue.pop_front();
            }
            this.tick();
            return Poll::Ready(Ok(()));
        }
        if this.released < this.script.responses.len() {
            return Poll::Pending;
        }
        if !this.ended && this.script.end != End::Open {
            this.ended = true;
            this.tick();
        }
        match this.script.end {
            End::Open => Poll::Pending,
            End::Close => Poll::Ready(Ok(())),
            End::Reset => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
        }
    }
}

impl AsyncWrite for Server {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.wire.written.borrow_mut().extend_from_slice(buf);
        this.tick();
        // The oracle's requests have no body: each ends with a blank line.
        let requests = this
            .wire
            .written
            .borrow()
            .windows(4)
            .filter(|w| w == b"\r\n\r\n")
            .count();
        while this.released < requests.min(this.script.responses.len()) {
            let response = &this.script.responses[this.released];
            this.queue
                .extend(response.iter().filter(|p| !p.is_empty()).cloned());
            this.released += 1;
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Polls after which nothing happened on the connection, before a client counts as stuck.
const STUCK_AFTER: u32 = 16;

/// Polls `fut`, and `driver` around it, until `fut` completes: None when the connection
/// stops making progress first.
fn settle<F: Future, D: Future>(
    fut: F,
    driver: &mut Pin<Box<Option<D>>>,
    wire: &Wire,
) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    let mut idle = 0;
    loop {
        let before = wire.progress.get();
        poll_driver(driver.as_mut(), &mut cx);
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        poll_driver(driver.as_mut(), &mut cx);
        if wire.progress.get() == before {
            idle += 1;
            if idle >= STUCK_AFTER {
                return None;
            }
        } else {
            idle = 0;
        }
    }
}

/// Counts and hashes a body.
#[derive(Default)]
struct Hashed {
    bytes: u64,
    hasher: Sha256,
}

impl BodySink for Hashed {
    fn data(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        self.hasher.update(bytes);
    }
}

impl Hashed {
    fn recorded(self, class: Option<ErrorClass>, status: Option<u16>) -> Recorded {
        Recorded {
            class,
            status,
            bytes: self.bytes,
            sha256: self.hasher.finalize().into(),
        }
    }

    /// A complete response, judged as the engine judges one with the default
    /// expectation (any 2xx).
    fn judged(self, status: u16) -> Recorded {
        let class = match judge(&Expect::default(), status, BodyChecker::None, self.bytes) {
            Outcome::Ok(_) => None,
            Outcome::Error(class) => Some(class),
        };
        self.recorded(class, Some(status))
    }
}

fn prepared(head: bool) -> Prepared {
    let spec = RequestSpec {
        method: if head { "HEAD" } else { "GET" }.into(),
        ..RequestSpec::get("/oracle")
    };
    Prepared::new(&[spec], "oracle.test").expect("a plain GET or HEAD")
}

/// Sends `requests` GET (or HEAD) requests through the lean client.
pub fn lean(script: &Script, requests: usize, head: bool) -> Verdict {
    let wire = Rc::new(Wire::default());
    let prepared = prepared(head);
    let mut conn = lean::Conn::new(Server::new(script, wire.clone()));
    let mut none: Pin<Box<Option<std::future::Pending<()>>>> = Box::pin(None);
    let mut out = Vec::new();
    let mut reusable = true;
    for _ in 0..requests {
        if !reusable || !conn.ready(&mut Context::from_waker(Waker::noop())) {
            out.push(None);
            break;
        }
        let request = prepared
            .http1_fixed(0, conn.http10())
            .expect("a fixed request");
        let mut body = Hashed::default();
        let done = settle(conn.exchange(request, head, &mut body), &mut none, &wire)
            .map(|r| r.map_err(|e| e.class()));
        reusable = done
            .as_ref()
            .is_some_and(|r| r.as_ref().is_ok_and(|r| r.reusable));
        if !record(&mut out, done, body) {
            break;
        }
    }
    verdict(out, &wire)
}

/// Records one exchange (None: it got stuck); false when the connection is given up.
fn record(
    out: &mut Vec<Option<Recorded>>,
    done: Option<Result<Response, ErrorClass>>,
    body: Hashed,
) -> bool {
    let (recorded, goes_on) = match done {
        Some(Ok(response)) => (body.judged(response.status), true),
        Some(Err(class)) => (body.recorded(Some(class), None), false),
        None => (body.recorded(Some(ErrorClass::Timeout), None), false),
    };
    out.push(Some(recorded));
    goes_on
}

fn verdict(requests: Vec<Option<Recorded>>, wire: &Wire) -> Verdict {
    Verdict {
        requests,
        written: wire.written.borrow().clone(),
    }
}

/// Sends `requests` GET (or HEAD) requests through hyper's client, configured as the
/// engine configures it.
pub fn hyper(script: &Script, requests: usize, head: bool) -> Verdict {
    let wire = Rc::new(Wire::default());
    let prepared = prepared(head);
    let mut none: Pin<Box<Option<std::future::Pending<()>>>> = Box::pin(None);
    let server = Server::new(script, wire.clone());
    let (mut sender, connection) = settle(hyper_client::handshake(server), &mut none, &wire)
        .expect("the handshake needs no I/O")
        .expect("the handshake cannot fail");
    let mut driver = Box::pin(Some(connection));
    let (mut rng, mut counter) = (fastrand::Rng::with_seed(0), 0);
    let mut spent = None;
    let mut out = Vec::new();
    for _ in 0..requests {
        if !matches!(settle(sender.ready(), &mut driver, &wire), Some(Ok(()))) {
            out.push(None);
            break;
        }
        let request = prepared.build(
            0,
            &mut RenderContext {
                rng: &mut rng,
                run_id: "oracle",
                worker: 0,
                counter: &mut counter,
            },
            spent.take(),
        );
        let mut body = Hashed::default();
        let done = settle(
            hyper_client::exchange(&mut sender, request, &mut spent, &mut body),
            &mut driver,
            &wire,
        )
        .map(|r| r.map_err(|failed| failed.class));
        if !record(&mut out, done, body) {
            break;
        }
    }
    verdict(out, &wire)
}

/// Both clients through `script`: (lean, hyper).
pub fn both(script: &Script, requests: usize, head: bool) -> (Verdict, Verdict) {
    (lean(script, requests, head), hyper(script, requests, head))
}

/// A script from fuzzer bytes. The first byte holds the ending (bits 0-1: open, close,
/// reset), whether the request is HEAD (bit 2) and the seed of the split points (bits
/// 3-7; 0: one piece); the rest is what the server sends after the first request. Also
/// the number of requests to send (2: the second shows whether the connection was kept).
pub fn from_fuzz(data: &[u8]) -> Option<(Script, bool)> {
    let (&control, bytes) = data.split_first()?;
    let end = match control & 3 {
        0 => End::Open,
        1 => End::Close,
        _ => End::Reset,
    };
    let head = control & 4 != 0;
    let seed = u64::from(control >> 3);
    let pieces = if seed == 0 {
        vec![bytes.to_vec()]
    } else {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut pieces = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = rng.usize(1..=(4 * seed as usize)).min(rest.len());
            pieces.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        pieces
    };
    Some((
        Script {
            responses: vec![pieces],
            end,
        },
        head,
    ))
}

/// Fuzzer bytes for a one-response script (the inverse of [`from_fuzz`], unsplit).
pub fn to_fuzz(response: &[u8], end: End, head: bool) -> Vec<u8> {
    let control = match end {
        End::Open => 0,
        End::Close => 1,
        End::Reset => 2,
    } | if head { 4 } else { 0 };
    [&[control][..], response].concat()
}
