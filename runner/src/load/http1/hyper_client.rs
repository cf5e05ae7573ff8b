//! hyper's HTTP/1.1 client: for requests the lean client does not send, and the oracle
//! the lean client is held to.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    client::conn::http1::{self, Connection, SendRequest},
    HeaderMap, Request,
};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{BodySink, Response};
use crate::load::{
    engine::{drive, judge, serve, Exchanged, Next, Retry, Session, Worker},
    tally::{ErrorClass, Outcome},
    wire::Stream,
};

/// Read buffer per connection: fixed, so hyper does not grow and shrink it adaptively.
pub const READ_BUF: usize = super::decode::BUFFER;

pub type Sender = SendRequest<Full<Bytes>>;

/// A hyper connection over `stream`: the sender, and the driver to poll beside it.
pub async fn handshake<S>(stream: S) -> hyper::Result<(Sender, Connection<TokioIo<S>, Full<Bytes>>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    http1::Builder::new()
        .writev(false)
        .read_buf_exact_size(Some(READ_BUF))
        .handshake(TokioIo::new(stream))
        .await
}

/// The class of an exchange that failed before its response head was complete: a head
/// that does not parse is `protocol`; anything else (a reset, a close) is `reset`.
pub fn classify(e: &hyper::Error) -> ErrorClass {
    if e.is_timeout() {
        ErrorClass::Timeout
    } else if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        ErrorClass::Protocol
    } else {
        ErrorClass::Reset
    }
}

/// The class of an exchange whose body failed: a broken connection is `reset`; a bad chunk
/// or a body cut short by the server's close is `protocol`.
pub fn classify_body(e: &hyper::Error) -> ErrorClass {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) {
                return ErrorClass::Reset;
            }
        }
        source = s.source();
    }
    ErrorClass::Protocol
}

/// A failed exchange.
pub struct Failed {
    pub class: ErrorClass,
    pub error: hyper::Error,
    /// The response head had come (the body failed).
    pub head: bool,
}

/// Sends `request` and reads the whole response into `sink`. The sender must be ready.
/// The response's header map is left in `spent`, to build the next request in. A failure
/// comes with its class.
pub async fn exchange(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
    spent: &mut Option<HeaderMap>,
    sink: &mut impl BodySink,
) -> Result<Response, Failed> {
    let response = sender.send_request(request).await.map_err(|error| Failed {
        class: classify(&error),
        error,
        head: false,
    })?;
    let (parts, mut body) = response.into_parts();
    *spent = Some(parts.headers);
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| Failed {
            class: classify_body(&error),
            error,
            head: true,
        })?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
            sink.data(data);
        }
    }
    Ok(Response {
        status: parts.status.as_u16(),
        bytes,
        // hyper says whether the connection goes on when it is next asked to be ready.
        reusable: true,
    })
}

struct HyperSession {
    sender: Sender,
    /// Responses this connection carried.
    served: u64,
    spent: Option<HeaderMap>,
}

impl Session for HyperSession {
    async fn ready(&mut self) -> bool {
        self.sender.ready().await.is_ok()
    }

    async fn exchange(&mut self, worker: &Worker, entry: usize) -> Exchanged {
        // The request is built here, in the future that sends it, to save moving it.
        let request = worker.build(entry, self.spent.take());
        let expect = worker.plan.prepared.expect(entry);
        let mut checker = worker.checker(entry);
        match exchange(&mut self.sender, request, &mut self.spent, &mut checker).await {
            Ok(response) => {
                self.served += 1;
                Exchanged::Done(
                    judge(expect, response.status, checker, response.bytes),
                    true,
                )
            }
            // The server closed a kept-alive connection as the request went out: it goes
            // out again on a new connection (see the lean client).
            Err(Failed {
                class: ErrorClass::Reset,
                head: false,
                ..
            }) if self.served > 0 => Exchanged::Refused(Outcome::Error(ErrorClass::Reset), false),
            Err(Failed { class, error, .. }) => {
                if class == ErrorClass::Protocol {
                    worker.error_sample(class, || format!("{error:#}"));
                }
                Exchanged::Done(Outcome::Error(class), false)
            }
        }
    }
}

/// Requests on one connection through hyper, until it breaks, sits out a step, or the run
/// ends.
pub async fn run(worker: &Worker, k: usize, stream: Stream, retry: &mut Option<Retry>) -> Next {
    let (sender, connection) = match handshake(stream).await {
        Ok(pair) => pair,
        Err(_) => {
            worker.connect_failed(k, ErrorClass::Connect).await;
            return Next::Reconnect;
        }
    };
    let mut session = HyperSession {
        sender,
        served: 0,
        spent: None,
    };
    drive(connection, serve(worker, k, &mut session, retry)).await
}
