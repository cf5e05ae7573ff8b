//! Busy polling: while responses come in close together, a worker keeps asking the kernel
//! for ready sockets (epoll with no timeout) instead of going to sleep between them.
//!
//! A client that is faster than its server goes idle between responses, and then every
//! response the server writes also has to wake the client up: on a server bound by its own
//! CPU, that wake-up is work taken from serving (against nginx over TLS, 8.3% of nginx's
//! samples went to waking runner, 5.75% to waking wrk, which never idles). Polling only
//! starts when a response follows the one before it within the window, and stops once a
//! window passes without one, so a worker at application rates never polls.

use std::{
    cell::Cell,
    future::poll_fn,
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use super::{engine::thread_cpu, figures::CLIENT_BUSY};

/// The default window: against nginx over TLS, 10–50 µs gave 3–10% more requests per
/// second for 15–23% more client CPU per request.
pub const DEFAULT_WINDOW: Duration = Duration::from_micros(20);

/// How often a worker decides, from its CPU over the last period, whether to poll.
const PERIOD: Duration = Duration::from_millis(20);

/// One worker's busy polling state.
pub struct BusyPoll {
    window: Duration,
    /// When the last response ended, and how many have.
    last: Cell<Instant>,
    finished: Cell<u64>,
    /// Whether polling pays, as the last period said.
    on: Cell<bool>,
    /// Start of this period, with the thread's CPU time and the idle polling by then.
    period: Cell<(Instant, Duration, Duration)>,
    /// Set when a response followed the one before it within the window.
    dense: Cell<bool>,
    /// The poller, while it waits for responses to come close together.
    waker: Cell<Option<Waker>>,
    /// Time spent polling in rounds that finished no response.
    idle: Cell<Duration>,
}

/// Whether a worker that used `cpu` over `wall`, `polled` of it polling, should poll: one
/// busy [`CLIENT_BUSY`] of the time or more rarely sleeps, so polling would only add to
/// its CPU (over plain HTTP/1.1 against nginx: 5% more CPU per request, no more requests).
fn worth_polling(cpu: Duration, polled: Duration, wall: Duration) -> bool {
    let busy = cpu.saturating_sub(polled).as_secs_f64() / wall.as_secs_f64().max(1e-9);
    busy < CLIENT_BUSY
}

impl BusyPoll {
    pub fn new(window: Duration) -> Self {
        let now = Instant::now();
        Self {
            window,
            last: Cell::new(now),
            finished: Cell::new(0),
            on: Cell::new(false),
            period: Cell::new((now, thread_cpu(), Duration::ZERO)),
            dense: Cell::new(false),
            waker: Cell::new(None),
            idle: Cell::new(Duration::ZERO),
        }
    }

    /// Notes a response that ended at `at` (closed loop without think time only: the
    /// others have a reason to sleep).
    pub fn finished(&self, at: Instant) {
        let gap = at.saturating_duration_since(self.last.replace(at));
        self.finished.set(self.finished.get() + 1);
        let (began, cpu, idle) = self.period.get();
        let wall = at.saturating_duration_since(began);
        if wall >= PERIOD {
            let (cpu_now, idle_now) = (thread_cpu(), self.idle.get());
            self.on.set(worth_polling(
                cpu_now.saturating_sub(cpu),
                idle_now - idle,
                wall,
            ));
            self.period.set((at, cpu_now, idle_now));
        }
        if gap < self.window && self.on.get() {
            self.dense.set(true);
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
    }

    /// Time spent polling without a response coming of it.
    pub fn idle(&self) -> Duration {
        self.idle.get()
    }

    /// Polls whenever responses come close together, for as long as the worker lives.
    /// Each round yields to the runtime, which then polls its sockets with no timeout.
    pub async fn run(&self) {
        loop {
            poll_fn(|cx| {
                if self.dense.replace(false) {
                    Poll::Ready(())
                } else {
                    self.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            while self.on.get() {
                let (before, began) = (self.finished.get(), Instant::now());
                tokio::task::yield_now().await;
                let now = Instant::now();
                if self.finished.get() == before {
                    self.idle.set(self.idle.get() + (now - began));
                }
                if now.saturating_duration_since(self.last.get()) >= self.window {
                    break;
                }
            }
            self.dense.set(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_busy_nine_tenths_of_the_time_does_not_poll() {
        let ms = Duration::from_millis;
        assert!(worth_polling(ms(15), ms(0), ms(20)));
        assert!(!worth_polling(ms(19), ms(0), ms(20)));
        // Its own polling is not business: 19 ms of CPU, 5 of them polling.
        assert!(worth_polling(ms(19), ms(5), ms(20)));
    }

    #[test]
    fn an_idle_worker_polls_once_responses_come_within_the_window() {
        let poll = BusyPoll::new(Duration::from_micros(20));
        // A period asleep: the worker is idle, so polling pays.
        std::thread::sleep(PERIOD + Duration::from_millis(5));
        let t = Instant::now();
        poll.finished(t);
        assert!(poll.on.get(), "a sleeping worker polls");
        assert!(
            !poll.dense.get(),
            "the first response came a period after the start"
        );
        poll.finished(t + Duration::from_micros(100));
        assert!(!poll.dense.get(), "100 µs apart is beyond the window");
        poll.finished(t + Duration::from_micros(110));
        assert!(poll.dense.get(), "10 µs apart is within it");
        assert_eq!(poll.finished.get(), 3);
    }

    #[test]
    fn polling_stops_once_a_window_passes_without_a_response() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let poll = BusyPoll::new(Duration::from_millis(5));
        poll.on.set(true);
        let now = Instant::now();
        poll.finished(now - Duration::from_micros(1));
        poll.finished(now);
        assert!(poll.dense.get());
        runtime.block_on(async {
            // The poller waits again after its window, so this ends by the timeout.
            let _ = tokio::time::timeout(Duration::from_millis(200), poll.run()).await;
        });
        // Had it gone on polling, it would have polled for the whole 200 ms.
        let idle = poll.idle();
        assert!(
            idle > Duration::ZERO && idle < Duration::from_millis(150),
            "it polled for about its window: {idle:?}"
        );
    }
}
