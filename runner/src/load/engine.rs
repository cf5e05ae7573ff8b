//! The engine: one OS thread per worker, each running a current-thread tokio runtime pinned
//! to a CPU. Every connection is one task that joins hyper's connection driver with its own
//! request loop. The schedule decides, from the clock, which step is running, whether a
//! connection takes part in it, and (open loop) when each request is meant to go out.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc, Barrier, OnceLock,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{
    client::conn::http1::{self, SendRequest},
    HeaderMap,
};
use tokio::{net::TcpStream, time::timeout};
use tokio_tungstenite::tungstenite::Message;

use super::{
    request::{status_ok, BodyChecker, Prepared, RenderContext},
    schedule::{Schedule, Step, StepLoad},
    socket::Socket,
    tally::{ErrorClass, Outcome, SecondBucket, Tally, Timing},
};

/// Pause after a failed connect before the next attempt, so a dead server is not spun on.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Read buffer per connection: fixed, so hyper does not grow and shrink it adaptively.
const READ_BUF: usize = 16 * 1024;
/// Longest sleep between checks of the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// What the connections speak.
#[derive(Clone, Debug)]
pub enum Protocol {
    Http,
    /// WebSocket echo: each socket sends `message` and waits for it to come back.
    WebSocket {
        url: String,
        message: String,
    },
}

/// Everything the workers share and never change.
pub struct Plan {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub prepared: Prepared,
    pub schedule: Schedule,
    pub timeout: Duration,
    pub think: Option<Duration>,
    pub threads: usize,
    pub cpus: Vec<usize>,
    pub run_id: String,
    /// Start offset of each step from the run start.
    offsets: Vec<Duration>,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        addr: SocketAddr,
        protocol: Protocol,
        prepared: Prepared,
        schedule: Schedule,
        timeout: Duration,
        think: Option<Duration>,
        threads: usize,
        cpus: Vec<usize>,
    ) -> Self {
        let mut offsets = Vec::new();
        let mut at = Duration::ZERO;
        for step in &schedule.steps {
            offsets.push(at);
            at += step.duration.unwrap_or(Duration::ZERO);
        }
        Self {
            addr,
            protocol,
            prepared,
            schedule,
            timeout,
            think,
            threads,
            cpus,
            run_id: format!("{:08x}", fastrand::u32(..)),
            offsets,
        }
    }

    /// The step running at `elapsed` from the start, with its end (None: no end).
    fn step_at(&self, elapsed: Duration) -> Option<(usize, Option<Duration>)> {
        for (i, step) in self.schedule.steps.iter().enumerate() {
            match step.duration {
                None => return Some((i, None)),
                Some(d) => {
                    let end = self.offsets[i] + d;
                    if elapsed < end {
                        return Some((i, Some(end)));
                    }
                }
            }
        }
        None
    }
}

/// State shared by all workers and the collector.
pub struct Shared {
    pub start: OnceLock<Instant>,
    /// Set by the user (Ctrl-C) or when the request budget is spent.
    pub stop: Arc<AtomicBool>,
    /// Requests left to send, for runs bounded by a count.
    pub budget: Option<AtomicI64>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn take_budget(&self) -> bool {
        match &self.budget {
            None => true,
            Some(b) => {
                if b.fetch_sub(1, Ordering::Relaxed) > 0 {
                    true
                } else {
                    self.stop.store(true, Ordering::Relaxed);
                    false
                }
            }
        }
    }
}

struct Worker {
    id: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    start: Instant,
    tally: RefCell<Tally>,
    rng: RefCell<fastrand::Rng>,
    counter: Cell<u64>,
    /// (step, next local index) of the open-loop step being served.
    open: Cell<(usize, u64)>,
}

enum Next {
    /// Connect again (the connection broke, or it sat out a step).
    Reconnect,
    /// The run is over for this connection.
    Done,
}

impl Worker {
    fn step(&self, i: usize) -> &Step {
        &self.plan.schedule.steps[i]
    }

    /// The step running at `now` and when it ends, unless the run is over.
    fn current_at(&self, now: Instant) -> Option<(usize, Option<Instant>)> {
        if self.shared.stopped() {
            return None;
        }
        let (i, end) = self
            .plan
            .step_at(now.saturating_duration_since(self.start))?;
        Some((i, end.map(|e| self.start + e)))
    }

    fn current(&self) -> Option<(usize, Option<Instant>)> {
        self.current_at(Instant::now())
    }

    /// Sleeps until `t`, waking to check the stop flag. False when the run was stopped.
    async fn sleep_until(&self, t: Instant) -> bool {
        loop {
            if self.shared.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= t {
                return true;
            }
            tokio::time::sleep((t - now).min(STOP_POLL)).await;
        }
    }

    /// Waits for a step in which connection `k` takes part; None when the run is over.
    async fn wait_active(&self, k: usize) -> Option<usize> {
        loop {
            let (i, end) = self.current()?;
            if k < self.step(i).connections() {
                return Some(i);
            }
            let end = end?;
            if !self.sleep_until(end).await {
                return None;
            }
        }
    }

    /// The intended time of this worker's next request in open-loop step `i`.
    fn next_intended(&self, i: usize) -> Option<Instant> {
        let (step, next) = self.open.get();
        let local = if step == i { next } else { 0 };
        self.open.set((i, local + 1));
        let global = local * self.plan.threads as u64 + self.id as u64;
        let offset = self.step(i).intended(global)?;
        Some(self.start + self.plan.offsets[i] + offset)
    }

    /// Records a request of step `step`, mix entry `entry`, that ends now; returns the end.
    fn finish(
        &self,
        step: usize,
        entry: usize,
        intended: Instant,
        sent: Instant,
        outcome: Outcome,
        open: bool,
    ) -> Instant {
        let done = Instant::now();
        let timing = Timing {
            intended,
            sent,
            done,
        };
        self.tally
            .borrow_mut()
            .record(step, entry, timing, outcome, open);
        done
    }

    fn build(&self, entry: usize, reuse: Option<HeaderMap>) -> hyper::Request<Full<Bytes>> {
        let mut rng = self.rng.borrow_mut();
        let mut counter = self.counter.get();
        let request = self.plan.prepared.build(
            entry,
            &mut RenderContext {
                rng: &mut rng,
                run_id: &self.plan.run_id,
                worker: self.id,
                counter: &mut counter,
            },
            reuse,
        );
        self.counter.set(counter);
        request
    }

    /// Decides when the next request on this connection goes out: `Ok((step, intended,
    /// open))`, or what the connection should do instead. `now` is a fresh clock reading
    /// (it saves a read per request); it is refreshed after any wait.
    async fn next_slot(&self, k: usize, mut now: Instant) -> Result<(usize, Instant, bool), Next> {
        loop {
            let Some((i, end)) = self.current_at(now) else {
                return Err(Next::Done);
            };
            let step = self.step(i);
            if k >= step.connections() {
                return Err(Next::Reconnect);
            }
            match step.load {
                StepLoad::Closed { .. } => {
                    if !self.shared.take_budget() {
                        return Err(Next::Done);
                    }
                    return Ok((i, now, false));
                }
                StepLoad::Open { .. } => {
                    let intended = self.next_intended(i);
                    match (intended, end) {
                        (Some(t), Some(end)) if t >= end => {
                            // This worker's share of the step is sent; wait for the next.
                            if !self.sleep_until(end).await {
                                return Err(Next::Done);
                            }
                            now = Instant::now();
                        }
                        (Some(t), _) => {
                            if !self.shared.take_budget() || !self.sleep_until(t).await {
                                return Err(Next::Done);
                            }
                            return Ok((i, t, true));
                        }
                        (None, _) => return Err(Next::Done),
                    }
                }
            }
        }
    }

    /// Counts a request that could not be sent because the connection failed.
    async fn connect_failed(&self, k: usize, class: ErrorClass) {
        if let Ok((i, intended, open)) = self.next_slot(k, Instant::now()).await {
            self.finish(i, 0, intended, Instant::now(), Outcome::Error(class), open);
        }
        tokio::time::sleep(CONNECT_BACKOFF).await;
    }
}

fn classify(e: &hyper::Error) -> ErrorClass {
    if e.is_timeout() {
        ErrorClass::Timeout
    } else {
        ErrorClass::Reset
    }
}

/// Sends the request of `entry` and reads the whole response. The connection must be ready.
/// The request's headers are built in `spent`, and the response's header map is left there
/// for the next request. (The request is built here, in the future that sends it, to save
/// moving it.)
async fn exchange(
    worker: &Worker,
    sender: &mut SendRequest<Full<Bytes>>,
    entry: usize,
    spent: &mut Option<HeaderMap>,
) -> Outcome {
    let expect = worker.plan.prepared.expect(entry);
    let response = match sender.send_request(worker.build(entry, spent.take())).await {
        Ok(r) => r,
        Err(e) => return Outcome::Error(classify(&e)),
    };
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    *spent = Some(parts.headers);
    let mut checker = BodyChecker::new(expect.body.as_ref());
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    bytes += data.len() as u64;
                    checker.update(data);
                }
            }
            Err(e) => return Outcome::Error(classify(&e)),
        }
    }
    if !status_ok(expect, status) {
        return Outcome::Error(ErrorClass::of_status(status.as_u16()));
    }
    if !checker.matches() {
        return Outcome::Error(ErrorClass::BodyMismatch);
    }
    Outcome::Ok(bytes)
}

async fn tcp(worker: &Worker) -> Result<TcpStream, ErrorClass> {
    let stream = timeout(worker.plan.timeout, TcpStream::connect(worker.plan.addr))
        .await
        .map_err(|_| ErrorClass::Timeout)?
        .map_err(|_| ErrorClass::Connect)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Requests on one HTTP connection until it breaks, sits out a step, or the run ends.
async fn serve_http(worker: &Worker, k: usize, mut sender: SendRequest<Full<Bytes>>) -> Next {
    // One timer per connection, re-armed per request: cheaper than a new timeout each time.
    let deadline = tokio::time::sleep(worker.plan.timeout);
    tokio::pin!(deadline);
    let mut now = Instant::now();
    let mut spent = None;
    loop {
        // A server may close a keep-alive connection after a complete response (nginx
        // does every 1000 requests): reconnect before taking a slot, without an error.
        if sender.ready().await.is_err() {
            return Next::Reconnect;
        }
        let (step, intended, open) = match worker.next_slot(k, now).await {
            Ok(slot) => slot,
            Err(next) => return next,
        };
        let entry = worker.plan.prepared.pick(&mut worker.rng.borrow_mut());
        // Closed loop: the slot was taken just now. Open loop: after the wait for `intended`.
        let sent = if open { Instant::now() } else { intended };
        deadline.as_mut().reset((sent + worker.plan.timeout).into());
        let outcome = tokio::select! {
            biased;
            outcome = exchange(worker, &mut sender, entry, &mut spent) => outcome,
            _ = &mut deadline => Outcome::Error(ErrorClass::Timeout),
        };
        now = worker.finish(step, entry, intended, sent, outcome, open);
        if outcome.breaks_connection() {
            return Next::Reconnect;
        }
        if let Some(think) = worker.plan.think {
            if !open {
                if !worker.sleep_until(now + think).await {
                    return Next::Done;
                }
                now = Instant::now();
            }
        }
    }
}

/// A TCP connection for connection `k`, once a step needs it; None when the run is over.
/// Failed attempts are counted as connect errors.
async fn connected(worker: &Worker, k: usize) -> Option<TcpStream> {
    loop {
        worker.wait_active(k).await?;
        match tcp(worker).await {
            Ok(stream) => return Some(stream),
            Err(class) => worker.connect_failed(k, class).await,
        }
    }
}

async fn http_connection(worker: Rc<Worker>, k: usize) {
    loop {
        let Some(stream) = connected(&worker, k).await else {
            return;
        };
        let handshake = http1::Builder::new()
            .writev(false)
            .read_buf_exact_size(Some(READ_BUF))
            .handshake(Socket::new(stream));
        let (sender, connection) = match handshake.await {
            Ok(pair) => pair,
            Err(_) => {
                worker.connect_failed(k, ErrorClass::Connect).await;
                continue;
            }
        };
        let next = drive(connection, serve_http(&worker, k, sender)).await;
        if let Next::Done = next {
            return;
        }
    }
}

/// Runs the request loop `serve` beside hyper's connection driver until the loop ends; the
/// connection is dropped (closed) with it. The driver is polled before the loop, to hand it a
/// response, and after it, so a request the loop queued goes out in the same poll. (`join!`
/// polls them in turns; this takes 4% fewer user instructions per request, counted with
/// valgrind.) A finished driver is dropped at once: that is what tells the loop's
/// `SendRequest` that the connection is gone (a server that closes after each response).
async fn drive<C, S>(connection: C, serve: S) -> Next
where
    C: Future,
    S: Future<Output = Next>,
{
    let mut connection = std::pin::pin!(Some(connection));
    let mut serve = std::pin::pin!(serve);
    std::future::poll_fn(|cx| {
        poll_driver(connection.as_mut(), cx);
        if let Poll::Ready(next) = serve.as_mut().poll(cx) {
            return Poll::Ready(next);
        }
        poll_driver(connection.as_mut(), cx);
        Poll::Pending
    })
    .await
}

/// Polls a connection driver, and drops it once it is done.
fn poll_driver<C: Future>(mut driver: Pin<&mut Option<C>>, cx: &mut Context<'_>) {
    if let Some(future) = driver.as_mut().as_pin_mut() {
        if future.poll(cx).is_ready() {
            driver.set(None);
        }
    }
}

/// One WebSocket echo exchange.
async fn echo<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, message: &str) -> Outcome
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if ws.send(Message::text(message)).await.is_err() {
        return Outcome::Error(ErrorClass::Reset);
    }
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return if text.as_str() == message {
                    Outcome::Ok(text.len() as u64)
                } else {
                    Outcome::Error(ErrorClass::BodyMismatch)
                };
            }
            Some(Ok(Message::Binary(data))) => {
                return if data.as_ref() == message.as_bytes() {
                    Outcome::Ok(data.len() as u64)
                } else {
                    Outcome::Error(ErrorClass::BodyMismatch)
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                return Outcome::Error(ErrorClass::Reset)
            }
        }
    }
}

async fn ws_connection(worker: Rc<Worker>, k: usize, url: String, message: String) {
    loop {
        let Some(stream) = connected(&worker, k).await else {
            return;
        };
        let mut ws = match timeout(
            worker.plan.timeout,
            tokio_tungstenite::client_async(url.as_str(), stream),
        )
        .await
        {
            Ok(Ok((ws, _))) => ws,
            _ => {
                worker.connect_failed(k, ErrorClass::Connect).await;
                continue;
            }
        };
        loop {
            let (step, intended, open) = match worker.next_slot(k, Instant::now()).await {
                Ok(slot) => slot,
                Err(Next::Done) => return,
                Err(Next::Reconnect) => break,
            };
            let sent = Instant::now();
            let intended = if open { intended } else { sent };
            let outcome = timeout(worker.plan.timeout, echo(&mut ws, &message))
                .await
                .unwrap_or(Outcome::Error(ErrorClass::Timeout));
            worker.finish(step, 0, intended, sent, outcome, open);
            if outcome.breaks_connection() {
                break;
            }
        }
        let _ = ws.close(None).await;
    }
}

/// Runs worker `id` on the current thread and returns what it recorded. `tick` is called
/// every [`STOP_POLL`] with nothing, and with the tally's bucket as each second closes.
pub fn run_worker(
    id: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    barrier: Arc<Barrier>,
    tick: &mut dyn FnMut(Option<SecondBucket>),
) -> Tally {
    // The worker may be the caller's own thread: its CPUs are given back at the end.
    let this_thread = nix::unistd::Pid::from_raw(0);
    let previous_cpus = nix::sched::sched_getaffinity(this_thread).ok();
    if !plan.cpus.is_empty() {
        let cpu = plan.cpus[id % plan.cpus.len()];
        let mut set = nix::sched::CpuSet::new();
        if set.set(cpu).is_ok() {
            let _ = nix::sched::sched_setaffinity(this_thread, &set);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let entries = plan.prepared.names().len();
    let steps = plan.schedule.steps.len();
    barrier.wait();
    let start = *shared
        .start
        .get()
        .expect("the start is set before the barrier");
    let worker = Rc::new(Worker {
        id,
        plan: plan.clone(),
        shared,
        start,
        tally: RefCell::new(Tally::new(steps, entries)),
        rng: RefCell::new(fastrand::Rng::new()),
        counter: Cell::new(0),
        open: Cell::new((usize::MAX, 0)),
    });
    // Each connection is a task on the worker's LocalSet (tasks share the worker's Rc state).
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let connections: Vec<_> = (id..plan.schedule.max_connections())
            .step_by(plan.threads)
            .map(|k| {
                let w = worker.clone();
                match &plan.protocol {
                    Protocol::Http => tokio::task::spawn_local(http_connection(w, k)),
                    Protocol::WebSocket { url, message } => {
                        tokio::task::spawn_local(ws_connection(w, k, url.clone(), message.clone()))
                    }
                }
            })
            .collect();
        let mut all = std::pin::pin!(async {
            for c in connections {
                let _ = c.await;
            }
        });
        let mut second = 0u64;
        loop {
            let close = worker.start + Duration::from_secs(second + 1);
            let wake = close.min(Instant::now() + STOP_POLL);
            tokio::select! {
                biased;
                _ = &mut all => break,
                _ = tokio::time::sleep_until(wake.into()) => {
                    if Instant::now() >= close {
                        second += 1;
                        tick(Some(worker.tally.borrow_mut().roll(second)));
                    } else {
                        tick(None);
                    }
                }
            }
        }
    });
    if let Some(cpus) = previous_cpus {
        let _ = nix::sched::sched_setaffinity(this_thread, &cpus);
    }
    let second = worker.tally.borrow().second.second;
    tick(Some(worker.tally.borrow_mut().roll(second + 1)));
    worker.tally.replace(Tally::new(0, 0))
}
