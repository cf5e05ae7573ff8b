//! The lean HTTP/1.1 client: writes a pre-encoded request, then decodes the response in
//! the connection's fixed read buffer. Nothing is allocated per request.

use std::{
    future::poll_fn,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    decode::{Buffer, DecodeError, Decoder, Step},
    BodySink, Response,
};
use crate::load::{
    engine::{judge, serve, Exchanged, Next, Retry, Session, Worker},
    request::Scratch,
    tally::{ErrorClass, Outcome},
    wire::{arrived_unasked, Stream},
};

/// Why an exchange failed: the connection cannot be used again.
#[derive(Debug, thiserror::Error)]
pub enum Broken {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl Broken {
    /// Its error class: `protocol` for bytes that are not a response or a body cut short
    /// by the server's close, `reset` for a broken connection or one closed before a
    /// response began. [`super::hyper_client::classify`] says the same of hyper's errors.
    pub fn class(&self) -> ErrorClass {
        match self {
            Broken::Io(_) | Broken::Decode(DecodeError::Closed) => ErrorClass::Reset,
            Broken::Decode(_) => ErrorClass::Protocol,
        }
    }
}

/// At most this many bytes of a bad response are kept as its sample.
const SAMPLE_BYTES: usize = 64;

/// One HTTP/1.1 connection.
pub struct Conn<S> {
    stream: S,
    buf: Buffer,
    decoder: Decoder,
    /// The last response was HTTP/1.0.
    http10: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Buffer::default(),
            decoder: Decoder::default(),
            http10: false,
        }
    }

    /// The first unread bytes: where decoding stopped, for an error's sample.
    pub fn unread(&self) -> &[u8] {
        let unread = self.buf.unread();
        &unread[..unread.len().min(SAMPLE_BYTES)]
    }

    /// Whether the server answers in HTTP/1.0: requests must then be HTTP/1.0 too.
    pub fn http10(&self) -> bool {
        self.http10
    }

    /// Whether a request may go out now: false when the server sent something or closed
    /// the connection since the last response (hyper's client closes then too). The look
    /// registers the task of `cx` for the response's bytes.
    pub fn ready(&mut self, cx: &mut Context<'_>) -> bool {
        self.buf.is_empty() && !arrived_unasked(&mut self.stream, cx)
    }

    /// Sends `request` (its two parts, see [`Prepared::http1_fixed`]) and reads the
    /// response, handing its body to `sink`. `head_request`: the request was HEAD, so the
    /// response has no body.
    ///
    /// [`Prepared::http1_fixed`]: crate::load::request::Prepared::http1_fixed
    pub async fn exchange(
        &mut self,
        request: (&[u8], &[u8]),
        head_request: bool,
        sink: &mut impl BodySink,
    ) -> Result<Response, Broken> {
        self.write(request.0).await?;
        self.write(request.1).await?;
        self.decoder.start(head_request);
        let mut status = 0;
        loop {
            match self.decoder.step(&mut self.buf)? {
                Step::More => {
                    if self.read().await? == 0 {
                        let Step::Done { reusable } = self.decoder.eof()? else {
                            unreachable!("the end of the stream ends a response or fails it")
                        };
                        return Ok(Response {
                            status,
                            bytes: 0,
                            reusable,
                        }
                        .with_bytes(&self.decoder));
                    }
                }
                Step::Head(head) => {
                    status = head.status;
                    self.http10 = head.http10;
                }
                Step::Data(data) => sink.data(data),
                Step::Done { reusable } => {
                    return Ok(Response {
                        status,
                        bytes: 0,
                        reusable,
                    }
                    .with_bytes(&self.decoder))
                }
            }
        }
    }

    /// Writes all of `bytes`: one system call unless the socket's buffer is full.
    async fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut self.stream).poll_write(cx, bytes)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Reads into the buffer's free room; 0 at the end of the stream.
    async fn read(&mut self) -> io::Result<usize> {
        let (stream, buf) = (&mut self.stream, &mut self.buf);
        let n = poll_fn(|cx| {
            let mut room = ReadBuf::new(buf.spare());
            match Pin::new(&mut *stream).poll_read(cx, &mut room) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(room.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        buf.filled(n);
        Ok(n)
    }
}

impl Response {
    fn with_bytes(mut self, decoder: &Decoder) -> Self {
        self.bytes = decoder.body_bytes();
        self
    }
}

struct LeanSession {
    conn: Conn<Stream>,
    /// Responses this connection carried.
    served: u64,
    /// Where templated requests are rendered.
    scratch: Scratch,
}

impl Session for LeanSession {
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| Poll::Ready(self.conn.ready(cx))).await
    }

    async fn exchange(&mut self, worker: &Worker, entry: usize) -> Exchanged {
        let request = worker.http1_request(entry, &mut self.scratch, self.conn.http10());
        let prepared = &worker.plan.prepared;
        let mut checker = worker.checker(entry);
        match self
            .conn
            .exchange(request, prepared.is_head(entry), &mut checker)
            .await
        {
            Ok(r) => {
                self.served += 1;
                Exchanged::Done(
                    judge(prepared.expect(entry), r.status, checker, r.bytes),
                    r.reusable,
                )
            }
            // A kept-alive connection that the server closed as the request went out (its
            // close crossed the request): not a byte came back, so the request goes out
            // again on a new connection, as hyper's pool does.
            Err(Broken::Io(_) | Broken::Decode(DecodeError::Closed))
                if self.served > 0 && self.conn.unread().is_empty() =>
            {
                Exchanged::Refused(Outcome::Error(ErrorClass::Reset), false)
            }
            Err(e) => {
                let class = e.class();
                if class == ErrorClass::Protocol {
                    worker.error_sample(class, || {
                        format!(
                            "{e}; bytes from there: {:?}",
                            String::from_utf8_lossy(self.conn.unread())
                        )
                    });
                }
                Exchanged::Done(Outcome::Error(class), false)
            }
        }
    }
}

/// Requests on one connection through the lean client, until it breaks, sits out a step,
/// or the run ends.
pub async fn run(worker: &Worker, k: usize, stream: Stream, retry: &mut Option<Retry>) -> Next {
    let mut session = LeanSession {
        conn: Conn::new(stream),
        served: 0,
        scratch: Scratch::default(),
    };
    serve(worker, k, &mut session, retry).await
}
