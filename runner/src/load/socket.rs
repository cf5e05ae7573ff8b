//! A connection's socket as hyper sees it.
//!
//! hyper's client tries to read several times per response while nothing new can have
//! arrived: it looks for the next bytes after the head, after the body, and again each time
//! its connection is polled to send a request. Each try costs a readiness check in tokio.
//! This socket remembers that a read found nothing, and answers again at once until tokio
//! reports that the socket may be readable.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll, Wake, Waker},
};

use futures_util::task::AtomicWaker;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Set when tokio may have something to read: at the start, after a read that returned
/// data, and when tokio wakes the reader. Cleared when a read finds nothing.
struct Readable {
    maybe: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Readable {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.maybe.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// A TCP stream for hyper that skips reads while the last one found nothing.
pub struct Socket {
    io: TokioIo<TcpStream>,
    readable: Arc<Readable>,
    /// Handed to tokio for reads; wakes whichever task polled last.
    reader: Waker,
}

impl Socket {
    pub fn new(stream: TcpStream) -> Self {
        let readable = Arc::new(Readable {
            maybe: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            io: TokioIo::new(stream),
            reader: Waker::from(readable.clone()),
            readable,
        }
    }
}

impl Read for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.readable.task.register(cx.waker());
        if !this.readable.maybe.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let poll = Pin::new(&mut this.io).poll_read(&mut Context::from_waker(&this.reader), buf);
        if poll.is_ready() {
            this.readable.maybe.store(true, Ordering::Release);
        }
        poll
    }
}

impl Write for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::{mem::MaybeUninit, time::Duration};

    /// One read of up to 64 bytes.
    async fn read_some(socket: &mut Socket) -> io::Result<Vec<u8>> {
        let mut storage = [MaybeUninit::<u8>::uninit(); 64];
        let mut buf = hyper::rt::ReadBuf::uninit(&mut storage);
        std::future::poll_fn(|cx| Pin::new(&mut *socket).poll_read(cx, buf.unfilled())).await?;
        Ok(buf.filled().to_vec())
    }

    #[test]
    fn a_read_that_found_nothing_is_woken_by_the_next_bytes() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The peer writes from its own thread, so only the socket can wake the read.
        let (go, went) = std::sync::mpsc::channel::<u8>();
        let peer = std::thread::spawn(move || {
            let (mut server, _) = listener.accept().unwrap();
            for round in went {
                std::thread::sleep(Duration::from_millis(2));
                server.write_all(&[round, round]).unwrap();
            }
        });
        runtime.block_on(async {
            let mut socket = Socket::new(TcpStream::connect(addr).await.unwrap());
            for round in 0..50u8 {
                go.send(round).unwrap();
                // Biased to the timer: a read that is only polled again when the timer
                // fires was never woken.
                let got = tokio::select! {
                    biased;
                    _ = tokio::time::sleep(Duration::from_secs(2)) => panic!("the read was not woken"),
                    got = read_some(&mut socket) => got,
                };
                assert_eq!(got.unwrap(), [round, round]);
            }
            drop(go);
            let eof = tokio::time::timeout(Duration::from_secs(5), read_some(&mut socket)).await;
            assert!(eof.unwrap().unwrap().is_empty(), "a closed peer reads as EOF");
        });
        peer.join().unwrap();
    }
}
