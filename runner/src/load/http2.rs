//! HTTP/2 with the h2 crate, over TLS (ALPN h2) or cleartext with prior knowledge (h2c).
//! A connection carries `-p` stream slots; the schedule drives each slot as it drives an
//! HTTP/1.1 connection, so latency is per stream and the open loop spreads over every
//! slot. Errors are classified per stream (the server reset it; its request body stalled
//! on flow control until the timeout) and per connection (GOAWAY; a broken connection).

use std::future::poll_fn;

use bytes::Bytes;
use futures_util::{stream::FuturesUnordered, StreamExt};
use h2::client::SendRequest;
use tokio::time::timeout;

use super::{
    engine::{drive, judge, serve, Exchanged, Next, Retry, Session, Worker},
    tally::{ErrorClass, Outcome},
    wire::Stream,
};

/// Flow-control window we grant per stream and per connection (as h2load does by default),
/// so that large responses never wait on us.
const WINDOW: u32 = (1 << 30) - 1;

/// An HTTP/2 client connection over `stream`: the sender, and the driver to poll beside it.
pub async fn handshake<S>(
    stream: S,
) -> Result<(SendRequest<Bytes>, h2::client::Connection<S, Bytes>), h2::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    h2::client::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .enable_push(false)
        .handshake(stream)
        .await
}

/// A failed stream: its class, whether its connection goes on, and whether the server
/// refused it unprocessed (beyond a graceful GOAWAY, or REFUSED_STREAM), so that it may go
/// out again.
pub fn classify(e: &h2::Error) -> Exchanged {
    let refused = |reason| e.is_remote() && e.reason() == Some(reason);
    let (class, goes_on, unprocessed) = if e.is_go_away() {
        (ErrorClass::Goaway, false, refused(h2::Reason::NO_ERROR))
    } else if e.is_reset() {
        (
            ErrorClass::StreamReset,
            true,
            refused(h2::Reason::REFUSED_STREAM),
        )
    } else {
        (ErrorClass::Reset, false, false)
    };
    if unprocessed {
        Exchanged::Refused(Outcome::Error(class), goes_on)
    } else {
        Exchanged::Done(Outcome::Error(class), goes_on)
    }
}

/// One stream slot of a connection.
struct Slot {
    sender: SendRequest<Bytes>,
    /// The request body is waiting for flow-control window.
    stalled: bool,
}

impl Slot {
    async fn send(&mut self, worker: &Worker, entry: usize) -> Result<Outcome, h2::Error> {
        let (request, mut body) = worker.h2_request(entry);
        let (response, mut send) = self.sender.send_request(request, body.is_empty())?;
        while !body.is_empty() {
            send.reserve_capacity(body.len());
            self.stalled = true;
            let window = poll_fn(|cx| send.poll_capacity(cx)).await;
            self.stalled = false;
            let granted = match window {
                Some(granted) => granted?,
                None => break,
            };
            let chunk = body.split_to(granted.min(body.len()));
            send.send_data(chunk, body.is_empty())?;
        }
        let response = response.await?;
        let status = response.status().as_u16();
        let mut received = response.into_body();
        let mut checker = worker.checker(entry);
        let mut bytes = 0u64;
        while let Some(data) = received.data().await {
            let data = data?;
            bytes += data.len() as u64;
            checker.update(&data);
            let _ = received.flow_control().release_capacity(data.len());
        }
        Ok(judge(
            worker.plan.prepared.expect(entry),
            status,
            checker,
            bytes,
        ))
    }
}

impl Session for Slot {
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| self.sender.poll_ready(cx)).await.is_ok()
    }

    async fn exchange(&mut self, worker: &Worker, entry: usize) -> Exchanged {
        match self.send(worker, entry).await {
            Ok(outcome) => Exchanged::Done(outcome, true),
            Err(e) => classify(&e),
        }
    }

    /// The stream was dropped, which resets it; the connection goes on.
    fn timed_out(&mut self) -> (Outcome, bool) {
        let class = if std::mem::take(&mut self.stalled) {
            ErrorClass::FlowControl
        } else {
            ErrorClass::Timeout
        };
        (Outcome::Error(class), true)
    }
}

/// Streams on one connection: the HTTP/2 handshake, then a stream slot per entry of
/// `retries` (each slot's refused request, if any) under the schedule, until the
/// connection breaks, sits out a step, or the run ends.
pub async fn run(worker: &Worker, k: usize, stream: Stream, retries: &mut [Option<Retry>]) -> Next {
    let (sender, connection) = match timeout(worker.plan.timeout, handshake(stream)).await {
        Ok(Ok(pair)) => pair,
        _ => {
            worker.connect_failed(k, ErrorClass::Connect).await;
            return Next::Reconnect;
        }
    };
    let driver = async {
        if let Err(e) = connection.await {
            worker.connection_ended(e.is_go_away());
        }
    };
    let slots = async {
        let mut slots: FuturesUnordered<_> = retries
            .iter_mut()
            .map(|retry| {
                let mut slot = Slot {
                    sender: sender.clone(),
                    stalled: false,
                };
                async move { serve(worker, k, &mut slot, retry).await }
            })
            .collect();
        let mut done = true;
        while let Some(next) = slots.next().await {
            done &= matches!(next, Next::Done);
        }
        if done {
            Next::Done
        } else {
            Next::Reconnect
        }
    };
    drive(driver, slots).await
}
