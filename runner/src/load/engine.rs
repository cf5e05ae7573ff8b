//! The engine: one OS thread per worker, each running a current-thread tokio runtime pinned
//! to a CPU. Every connection is a task that connects (TCP, then TLS for https://) and hands
//! the stream to its protocol. A protocol is a [`Session`]: it says whether the connection
//! can take a request, and runs one exchange; [`serve`] runs the schedule over it. The
//! schedule decides, from the clock, which step is running, whether a connection takes part
//! in it, and (open loop) when each request is meant to go out.

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
use http_body_util::Full;
use hyper::HeaderMap;
use tokio::time::timeout;

use super::{
    busy_poll::BusyPoll,
    http1, http2,
    pacer::{self, Clock},
    request::{status_ok, BodyChecker, Expect, Prepared, RenderContext, Scratch},
    schedule::{Schedule, Step, StepLoad},
    tally::{ErrorClass, Outcome, SecondBucket, Tally, Timing},
    tls::Tls,
    wire::{Plain, Stream},
    ws,
};

/// Pause after a failed connect before the next attempt, so a dead server is not spun on.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Longest sleep between checks of the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// What the connections speak.
#[derive(Clone, Debug)]
pub enum Protocol {
    /// HTTP/1.1 keep-alive through this client (never `Auto` here).
    Http1(http1::Client),
    /// HTTP/2 with this many concurrent streams per connection.
    Http2 { streams: usize },
    /// WebSocket echo: each socket sends `message` and waits for it to come back.
    WebSocket { url: String, message: String },
}

/// Everything the workers share and never change.
pub struct Plan {
    pub addr: SocketAddr,
    /// TLS for https:// and wss:// targets.
    pub tls: Option<Tls>,
    pub protocol: Protocol,
    pub prepared: Prepared,
    /// `scheme://authority`, for HTTP/2 requests.
    pub origin: String,
    pub schedule: Schedule,
    pub timeout: Duration,
    pub think: Option<Duration>,
    /// The busy polling window (closed loop without think time); None: workers sleep.
    pub busy_poll: Option<Duration>,
    pub threads: usize,
    pub cpus: Vec<usize>,
    pub run_id: String,
    /// Start offset of each step from the run start.
    offsets: Vec<Duration>,
    /// Each step's send grid (see [`pacer::grid`]); zero for closed-loop steps.
    pub grids: Vec<Duration>,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        addr: SocketAddr,
        tls: Option<Tls>,
        protocol: Protocol,
        prepared: Prepared,
        origin: String,
        schedule: Schedule,
        timeout: Duration,
        think: Option<Duration>,
        busy_poll: Duration,
        threads: usize,
        cpus: Vec<usize>,
    ) -> Self {
        let mut offsets = Vec::new();
        let mut at = Duration::ZERO;
        for step in &schedule.steps {
            offsets.push(at);
            at += step.duration.unwrap_or(Duration::ZERO);
        }
        let grids = schedule
            .steps
            .iter()
            .map(|s| {
                s.peak_rate()
                    .map_or(Duration::ZERO, |r| pacer::grid(r / threads as f64))
            })
            .collect();
        Self {
            addr,
            tls,
            protocol,
            prepared,
            origin,
            schedule,
            timeout,
            think,
            busy_poll: (think.is_none() && !busy_poll.is_zero()).then_some(busy_poll),
            threads,
            cpus,
            run_id: format!("{:08x}", fastrand::u32(..)),
            offsets,
            grids,
        }
    }

    /// How long the whole schedule runs (None: its last step has no end).
    pub fn length(&self) -> Option<Duration> {
        let last = self.schedule.steps.len().checked_sub(1)?;
        Some(self.offsets[last] + self.schedule.steps[last].duration?)
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

    /// Whether a run bounded by a count has sent it all.
    fn budget_spent(&self) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|b| b.load(Ordering::Relaxed) <= 0)
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

/// One worker thread's state, shared by its connection tasks.
pub struct Worker {
    id: usize,
    pub plan: Arc<Plan>,
    shared: Arc<Shared>,
    start: Instant,
    tally: RefCell<Tally>,
    rng: RefCell<fastrand::Rng>,
    counter: Cell<u64>,
    /// (step, next local index) of the open-loop step being served.
    open: Cell<(usize, u64)>,
    busy_poll: Option<BusyPoll>,
    /// Open-loop send times (None: the schedule has no open-loop step).
    clock: Option<Clock>,
}

/// When a request goes out.
#[derive(Clone, Copy)]
struct Slot {
    step: usize,
    /// When it should go out (open loop), or the send itself (closed loop).
    intended: Instant,
    sent: Instant,
    open: bool,
}

/// What a connection does after its session ends.
pub enum Next {
    /// Connect again (the connection broke, or it sat out a step).
    Reconnect,
    /// The run is over for this connection.
    Done,
}

/// What became of one exchange.
pub enum Exchanged {
    /// It ran: what happened, and whether the connection can carry another request.
    Done(Outcome, bool),
    /// The server refused it without processing it (an HTTP/2 stream beyond a graceful
    /// GOAWAY, or reset with REFUSED_STREAM). It goes out once more (on this connection when
    /// the bool says it goes on, else on a new one); refused again, it counts as `Outcome`.
    Refused(Outcome, bool),
}

/// A request that goes out again: its slot (so its latency runs from the first attempt)
/// and its mix entry.
pub struct Retry {
    slot: Slot,
    entry: usize,
}

/// A protocol's requests on one connection (for HTTP/2, on one stream slot of it).
/// Workers are current-thread runtimes: these futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Session {
    /// Whether the connection can take a request now; false: connect again, without
    /// counting an error (the server closed it while idle, for instance).
    async fn ready(&mut self) -> bool;
    /// Sends the request of mix entry `entry` and reads the whole response.
    async fn exchange(&mut self, worker: &Worker, entry: usize) -> Exchanged;
    /// What a request that ran out of time was (its exchange was dropped), and whether
    /// the connection can carry another.
    fn timed_out(&mut self) -> (Outcome, bool) {
        (Outcome::Error(ErrorClass::Timeout), false)
    }
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

    /// Whether the run is over (stopped, or past the last step).
    pub fn over(&self) -> bool {
        self.current().is_none()
    }

    /// Sleeps until `t`, waking to check the stop flag. False when the run was stopped.
    /// A sleep never outlasts the run: it ends at the end of the schedule.
    pub async fn sleep_until(&self, t: Instant) -> bool {
        let t = match self.plan.length() {
            Some(length) => t.min(self.start + length),
            None => t,
        };
        self.pace(t, None).await.is_some()
    }

    /// Waits until `t`, waking to check the stop flag: the time it woke, or None when the
    /// run was stopped. With a `grid`, on the worker's clock (`t` rounded up to the grid),
    /// else on tokio's timer (late by up to 2 ms).
    async fn pace(&self, t: Instant, grid: Option<Duration>) -> Option<Instant> {
        loop {
            if self.shared.stopped() {
                return None;
            }
            let now = Instant::now();
            if now >= t {
                return Some(now);
            }
            let until = t.min(now + STOP_POLL);
            match (grid, &self.clock) {
                (Some(grid), Some(clock)) => clock.until(until, grid).await,
                _ => tokio::time::sleep_until(until.into()).await,
            }
        }
    }

    /// Waits for a step in which connection `k` takes part; None when the run is over.
    pub async fn wait_active(&self, k: usize) -> Option<usize> {
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
        if step != i {
            self.count_unsent(step, next, i, None);
        }
        let local = if step == i { next } else { 0 };
        self.open.set((i, local + 1));
        let global = local * self.plan.threads as u64 + self.id as u64;
        let offset = self.step(i).intended(global)?;
        Some(self.start + self.plan.offsets[i] + offset)
    }

    /// Counts as unsent this worker's open-loop requests that no connection took: in step
    /// `from` from local index `next` on, and in every step after it and before `to`, each
    /// up to the end of its step, or up to `until` (from the run start) when that is
    /// earlier. `from` is `usize::MAX` before the first open-loop request.
    fn count_unsent(&self, from: usize, next: u64, to: usize, until: Option<Duration>) {
        if self.shared.budget_spent() {
            // A run bounded by a count ends when it is sent, not for want of connections.
            return;
        }
        let first = if from == usize::MAX { 0 } else { from };
        let mut tally = self.tally.borrow_mut();
        for i in first..to.min(self.plan.schedule.steps.len()) {
            let step = self.step(i);
            if !matches!(step.load, StepLoad::Open { .. }) {
                continue;
            }
            let begin = self.plan.offsets[i];
            let mut end = step.duration.map_or(Duration::MAX, |d| begin + d);
            if let Some(until) = until {
                end = end.min(until);
            }
            let mut local = if i == from { next } else { 0 };
            while let Some(offset) =
                step.intended(local * self.plan.threads as u64 + self.id as u64)
            {
                let at = begin + offset;
                if at >= end {
                    break;
                }
                tally.unsent(i, end - at);
                local += 1;
            }
        }
    }

    /// Records a request of `slot` and mix entry `entry` that ends now; returns the end.
    fn finish(&self, slot: Slot, entry: usize, outcome: Outcome) -> Instant {
        let done = Instant::now();
        let timing = Timing {
            intended: slot.intended,
            sent: slot.sent,
            done,
        };
        self.tally
            .borrow_mut()
            .record(slot.step, entry, timing, outcome, slot.open);
        if let (Some(poll), false) = (&self.busy_poll, slot.open) {
            poll.finished(done);
        }
        done
    }

    fn with_context<T>(&self, f: impl FnOnce(&mut RenderContext<'_>) -> T) -> T {
        let mut rng = self.rng.borrow_mut();
        let mut counter = self.counter.get();
        let out = f(&mut RenderContext {
            rng: &mut rng,
            run_id: &self.plan.run_id,
            worker: self.id,
            counter: &mut counter,
        });
        self.counter.set(counter);
        out
    }

    /// The request of `entry` for hyper, its headers built in `reuse` (a spent map).
    pub fn build(&self, entry: usize, reuse: Option<HeaderMap>) -> hyper::Request<Full<Bytes>> {
        self.with_context(|ctx| self.plan.prepared.build(entry, ctx, reuse))
    }

    /// The bytes of `entry`'s HTTP/1.1 request (`http10`: to a server that answers in
    /// HTTP/1.0), in two parts written one after the other (see
    /// [`Prepared::http1_fixed`]); templated ones are rendered in `scratch`.
    pub fn http1_request<'a>(
        &'a self,
        entry: usize,
        scratch: &'a mut Scratch,
        http10: bool,
    ) -> (&'a [u8], &'a [u8]) {
        let prepared = &self.plan.prepared;
        match prepared.http1_fixed(entry, http10) {
            Some(parts) => parts,
            None => (
                self.with_context(|ctx| prepared.http1_render(entry, ctx, scratch, http10)),
                &[],
            ),
        }
    }

    /// The HTTP/2 request of `entry`, and its body.
    pub fn h2_request(&self, entry: usize) -> (hyper::Request<()>, Bytes) {
        self.with_context(|ctx| self.plan.prepared.build_h2(entry, ctx, &self.plan.origin))
    }

    /// A checker of `entry`'s response body.
    pub fn checker(&self, entry: usize) -> BodyChecker<'_> {
        BodyChecker::new(self.plan.prepared.expect(entry).body.as_ref())
    }

    /// Records an HTTP/2 connection that the server ended (GOAWAY) or that failed.
    pub fn connection_ended(&self, goaway: bool) {
        let mut tally = self.tally.borrow_mut();
        if goaway {
            tally.connections.goaways += 1;
        } else {
            tally.connections.failed += 1;
        }
    }

    /// Keeps the first sample of an error of `class`; `text` runs only for the first.
    pub fn error_sample(&self, class: ErrorClass, text: impl FnOnce() -> String) {
        let mut tally = self.tally.borrow_mut();
        if !tally.connections.samples.contains_key(class.name()) {
            tally.connections.samples.insert(class.name(), text());
        }
    }

    /// Records a TLS handshake.
    pub fn handshake(&self, took: Duration, resumed: bool) {
        self.tally.borrow_mut().handshake(took, resumed);
    }

    /// Decides when the next request on this connection goes out, or what the connection
    /// should do instead. `now` is a fresh clock reading (it saves a read per request); it
    /// is refreshed after any wait.
    async fn next_slot(&self, k: usize, mut now: Instant) -> Result<Slot, Next> {
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
                    return Ok(Slot {
                        step: i,
                        intended: now,
                        sent: now,
                        open: false,
                    });
                }
                StepLoad::Open { .. } => {
                    let intended = self.next_intended(i);
                    match (intended, end) {
                        (Some(t), Some(end)) if t >= end => {
                            // This worker's share of the step is sent; wait for the next.
                            now = self.pace(end, None).await.ok_or(Next::Done)?;
                        }
                        (Some(t), _) => {
                            if !self.shared.take_budget() {
                                return Err(Next::Done);
                            }
                            let grid = self.plan.grids[i];
                            let sent = self.pace(t, Some(grid)).await.ok_or(Next::Done)?;
                            return Ok(Slot {
                                step: i,
                                intended: t,
                                sent,
                                open: true,
                            });
                        }
                        (None, _) => return Err(Next::Done),
                    }
                }
            }
        }
    }

    /// Counts a request that could not be sent because the connection failed.
    pub async fn connect_failed(&self, k: usize, class: ErrorClass) {
        if let Ok(slot) = self.next_slot(k, Instant::now()).await {
            self.finish(slot, 0, Outcome::Error(class));
        }
        tokio::time::sleep(CONNECT_BACKOFF).await;
    }
}

/// The outcome of a complete response to a request that expects `expect`.
pub fn judge(expect: &Expect, status: u16, checker: BodyChecker<'_>, bytes: u64) -> Outcome {
    if !status_ok(expect, status) {
        return Outcome::Error(ErrorClass::of_status(status));
    }
    if !checker.matches() {
        return Outcome::Error(ErrorClass::BodyMismatch);
    }
    Outcome::Ok(bytes)
}

/// A connection's request timeout. Setting `due` costs nothing: the timer stays armed for
/// an earlier request's time, and when it goes off before `due` it sleeps on until `due`.
struct Deadline<'t> {
    timer: Pin<&'t mut tokio::time::Sleep>,
    due: Instant,
}

impl<'t> Deadline<'t> {
    /// Completes once `due` has passed.
    fn passed(&mut self) -> impl Future<Output = ()> + use<'_, 't> {
        std::future::poll_fn(|cx| loop {
            std::task::ready!(self.timer.as_mut().poll(cx));
            if Instant::now() >= self.due {
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(self.due.into());
        })
    }
}

/// Runs the schedule over `session` for connection `k`, until the connection breaks, sits
/// out a step, or the run ends. `retry` carries a refused request to the next connection.
pub async fn serve<S: Session>(
    worker: &Worker,
    k: usize,
    session: &mut S,
    retry: &mut Option<Retry>,
) -> Next {
    // One timer per connection, not one per request: it is moved only when it goes off for
    // an earlier request. (Open-loop sends wait on the worker's clock.)
    let mut deadline = Deadline {
        timer: std::pin::pin!(tokio::time::sleep(worker.plan.timeout)),
        due: Instant::now() + worker.plan.timeout,
    };
    let run_end = worker.plan.length().map(|l| worker.start + l);
    let mut now = Instant::now();
    loop {
        // A server may close a keep-alive connection after a complete response (nginx
        // does every 1000 requests): reconnect before taking a slot, without an error.
        if !session.ready().await {
            return Next::Reconnect;
        }
        let (slot, entry, again) = match retry.take() {
            Some(Retry { slot, entry }) => (slot, entry, true),
            None => match worker.next_slot(k, now).await {
                Ok(slot) => (
                    slot,
                    worker.plan.prepared.pick(&mut worker.rng.borrow_mut()),
                    false,
                ),
                Err(next) => return next,
            },
        };
        // A request sent again has its own time to answer. One still out when the run
        // ends is dropped uncounted, as wrk does: the run's length is a bound.
        let due = if again { Instant::now() } else { slot.sent } + worker.plan.timeout;
        deadline.due = run_end.map_or(due, |end| due.min(end));
        let done = tokio::select! {
            biased;
            done = session.exchange(worker, entry) => done,
            _ = deadline.passed() => {
                if deadline.due < due {
                    return Next::Done;
                }
                let (outcome, reusable) = session.timed_out();
                Exchanged::Done(outcome, reusable)
            }
        };
        let reusable = match done {
            Exchanged::Refused(_, reusable) if !again => {
                *retry = Some(Retry { slot, entry });
                if !reusable {
                    return Next::Reconnect;
                }
                now = Instant::now();
                continue;
            }
            Exchanged::Done(outcome, reusable) | Exchanged::Refused(outcome, reusable) => {
                now = worker.finish(slot, entry, outcome);
                reusable
            }
        };
        if !reusable {
            return Next::Reconnect;
        }
        if let Some(think) = worker.plan.think {
            if !slot.open {
                if !worker.sleep_until(now + think).await {
                    return Next::Done;
                }
                now = Instant::now();
            }
        }
    }
}

/// Runs `serve` beside a connection driver (hyper's, h2's) until `serve` ends; the
/// connection is dropped (closed) with it. The driver is polled before `serve`, to hand it
/// a response, and after it, so a request it queued goes out in the same poll. (`join!`
/// polls them in turns; this takes 4% fewer user instructions per request, counted with
/// valgrind.) A finished driver is dropped at once: that is what tells the sender that the
/// connection is gone (a server that closes after each response).
pub async fn drive<C, S>(connection: C, serve: S) -> S::Output
where
    C: Future,
    S: Future,
{
    let mut connection = std::pin::pin!(Some(connection));
    let mut serve = std::pin::pin!(serve);
    std::future::poll_fn(|cx| {
        poll_driver(connection.as_mut(), cx);
        if let Poll::Ready(out) = serve.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        poll_driver(connection.as_mut(), cx);
        Poll::Pending
    })
    .await
}

/// Polls a connection driver, and drops it once it is done.
pub fn poll_driver<C: Future>(mut driver: Pin<&mut Option<C>>, cx: &mut Context<'_>) {
    if let Some(future) = driver.as_mut().as_pin_mut() {
        if future.poll(cx).is_ready() {
            driver.set(None);
        }
    }
}

/// A stream for connection `k`, once a step needs it: TCP, then TLS when the target asks
/// for it. None when the run is over. Failed attempts are counted as connect errors.
async fn connected(worker: &Worker, k: usize) -> Option<Stream> {
    loop {
        worker.wait_active(k).await?;
        match connect(worker).await {
            Ok(stream) => return Some(stream),
            Err(class) => worker.connect_failed(k, class).await,
        }
    }
}

async fn connect(worker: &Worker) -> Result<Stream, ErrorClass> {
    let plan = &worker.plan;
    let plain = timeout(plan.timeout, Plain::connect(plan.addr))
        .await
        .map_err(|_| ErrorClass::Timeout)?
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => ErrorClass::FdLimit,
            _ => ErrorClass::Connect,
        })?;
    let Some(tls) = &plan.tls else {
        return Ok(Stream::Plain(plain));
    };
    let began = Instant::now();
    let stream = timeout(plan.timeout, tls.handshake(plain))
        .await
        .map_err(|_| ErrorClass::Timeout)?
        .map_err(|_| ErrorClass::Connect)?;
    worker.handshake(began.elapsed(), super::tls::resumed(&stream));
    Ok(Stream::Tls(Box::new(stream)))
}

/// Connection `k`, from connect to the end of the run.
async fn connection(worker: Rc<Worker>, k: usize) {
    // Per stream slot (one but for HTTP/2), a refused request to send again.
    let slots = match worker.plan.protocol {
        Protocol::Http2 { streams } => streams,
        _ => 1,
    };
    let mut retries: Vec<Option<Retry>> = (0..slots).map(|_| None).collect();
    loop {
        let Some(stream) = connected(&worker, k).await else {
            return;
        };
        let retry = &mut retries[0];
        let next = match &worker.plan.protocol {
            Protocol::Http1(http1::Client::Hyper) => {
                http1::hyper_client::run(&worker, k, stream, retry).await
            }
            Protocol::Http1(_) => http1::lean::run(&worker, k, stream, retry).await,
            Protocol::Http2 { .. } => http2::run(&worker, k, stream, &mut retries).await,
            Protocol::WebSocket { url, message } => {
                ws::run(&worker, k, stream, url, message, retry).await
            }
        };
        if let Next::Done = next {
            return;
        }
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
    let cpu_start = thread_cpu();
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
        busy_poll: plan.busy_poll.map(BusyPoll::new),
        clock: plan
            .schedule
            .steps
            .iter()
            .any(|s| s.peak_rate().is_some())
            .then(|| {
                // The timerfd is registered with this runtime.
                let _runtime = runtime.enter();
                Clock::new()
            }),
    });
    // Each connection is a task on the worker's LocalSet (tasks share the worker's Rc state).
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let connections: Vec<_> = (id..plan.schedule.max_connections())
            .step_by(plan.threads)
            .map(|k| tokio::task::spawn_local(connection(worker.clone(), k)))
            .collect();
        if worker.clock.is_some() {
            let worker = worker.clone();
            tokio::task::spawn_local(async move {
                if let Some(clock) = &worker.clock {
                    clock.run().await;
                }
            });
        }
        if worker.busy_poll.is_some() {
            let worker = worker.clone();
            tokio::task::spawn_local(async move {
                if let Some(poll) = &worker.busy_poll {
                    poll.run().await;
                }
            });
        }
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
    // What no connection took by the end of the run (or the stop) was never sent.
    let (step, next) = worker.open.get();
    let elapsed = worker
        .start
        .elapsed()
        .min(plan.length().unwrap_or(Duration::MAX));
    worker.count_unsent(step, next, plan.schedule.steps.len(), Some(elapsed));
    if let Some(cpus) = previous_cpus {
        let _ = nix::sched::sched_setaffinity(this_thread, &cpus);
    }
    let second = worker.tally.borrow().second.second;
    tick(Some(worker.tally.borrow_mut().roll(second + 1)));
    let mut tally = worker.tally.replace(Tally::new(0, 0));
    tally.cpu = thread_cpu().saturating_sub(cpu_start);
    tally.polled = worker
        .busy_poll
        .as_ref()
        .map_or(Duration::ZERO, BusyPoll::idle);
    tally
}

/// CPU time the calling thread has used so far.
pub(super) fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(Duration::ZERO, Duration::from)
}
