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

/// The class of a failed exchange.
pub fn classify(e: &hyper::Error) -> ErrorClass {
    if e.is_timeout() {
        ErrorClass::Timeout
    } else {
        ErrorClass::Reset
    }
}

/// Sends `request` and reads the whole response into `sink`. The sender must be ready.
/// The response's header map is left in `spent`, to build the next request in.
pub async fn exchange(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
    spent: &mut Option<HeaderMap>,
    sink: &mut impl BodySink,
) -> Result<Response, ErrorClass> {
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| classify(&e))?;
    let (parts, mut body) = response.into_parts();
    *spent = Some(parts.headers);
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| classify(&e))?;
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
            Ok(response) => Exchanged::Done(
                judge(expect, response.status, checker, response.bytes),
                true,
            ),
            Err(class) => Exchanged::Done(Outcome::Error(class), false),
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
        spent: None,
    };
    drive(connection, serve(worker, k, &mut session, retry)).await
}
