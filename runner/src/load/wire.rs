//! The byte streams connections run on: a TCP socket registered with tokio, in TLS when the
//! target is https://.
//!
//! [`Plain`] reads without asking the kernel twice: a read that returns less than it had
//! room for drained the socket, so it clears tokio's readiness at once, and the next read
//! waits for epoll instead of making a `recv` that would find nothing. (tokio's
//! `TcpStream` learns that only from an `EAGAIN`, one wasted system call per response.)
//! Clearing is safe against races: tokio keeps readiness that arrived after the read.

use std::{
    io,
    net::SocketAddr,
    os::fd::AsRawFd,
    pin::Pin,
    task::{ready, Context, Poll},
};

use tokio::io::{unix::AsyncFd, AsyncRead, AsyncWrite, ReadBuf};

/// A connected TCP socket with TCP_NODELAY.
pub struct Plain {
    fd: AsyncFd<std::net::TcpStream>,
}

impl Plain {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Self::from_tokio(stream)
    }

    /// Takes over a connected tokio stream (it stays non-blocking).
    pub fn from_tokio(stream: tokio::net::TcpStream) -> io::Result<Self> {
        let stream = stream.into_std()?;
        // SAFETY: the AsyncFd owns the socket, so its descriptor stays open as long as the
        // registration does.
        let fd = unsafe { AsyncFd::register(stream)? };
        Ok(Self { fd })
    }
}

fn syscall(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl AsyncRead for Plain {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // SAFETY: recv writes at most `room` bytes into the unfilled part, and only the
        // bytes it reports are marked initialised.
        let unfilled = unsafe { buf.unfilled_mut() };
        let room = unfilled.len();
        if room == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut guard = ready!(this.fd.poll_read_ready(cx))?;
            let read = guard.try_io(|fd| {
                // SAFETY: a valid socket and a writable region of `room` bytes.
                syscall(unsafe {
                    libc::recv(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), room, 0)
                })
            });
            match read {
                Ok(Ok(n)) => {
                    if n < room {
                        guard.clear_ready();
                    }
                    // SAFETY: recv initialised `n` bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // EAGAIN: tokio cleared the readiness; wait for epoll.
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.fd.poll_write_ready(cx))?;
            let written = guard.try_io(|fd| {
                // SAFETY: a valid socket and a readable buffer.
                syscall(unsafe {
                    libc::send(
                        fd.as_raw_fd(),
                        buf.as_ptr().cast(),
                        buf.len(),
                        libc::MSG_NOSIGNAL,
                    )
                })
            });
            if let Ok(result) = written {
                return Poll::Ready(result);
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.fd.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// A connection's stream: plain TCP, or TLS over it.
pub enum Stream {
    Plain(Plain),
    Tls(Box<tokio_rustls::client::TlsStream<Plain>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Whether bytes or the end of the stream arrived while nothing was asked: a look that
/// does not wait. (What arrived is consumed; the connection is unusable either way.) When
/// nothing did, the task of `cx` is woken when something does: the look is also the
/// registration the next read needs.
pub fn arrived_unasked<S: AsyncRead + Unpin>(stream: &mut S, cx: &mut Context<'_>) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    Pin::new(stream).poll_read(cx, &mut buf).is_ready()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    #[test]
    fn a_drained_socket_is_woken_by_the_next_bytes() {
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
            let mut socket = Plain::connect(addr).await.unwrap();
            let mut buf = [0u8; 64];
            let mut noop = Context::from_waker(std::task::Waker::noop());
            for round in 0..50u8 {
                assert!(!arrived_unasked(&mut socket, &mut noop), "nothing was sent yet");
                go.send(round).unwrap();
                // Biased to the timer: a read that is only polled again when the timer
                // fires was never woken.
                let n = tokio::select! {
                    biased;
                    _ = tokio::time::sleep(Duration::from_secs(2)) => panic!("the read was not woken"),
                    n = socket.read(&mut buf) => n.unwrap(),
                };
                assert_eq!(&buf[..n], [round, round]);
            }
            drop(go);
            let eof = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
            assert_eq!(eof.unwrap().unwrap(), 0, "a closed peer reads as EOF");
            assert!(arrived_unasked(&mut socket, &mut noop), "the end stays visible");
        });
        peer.join().unwrap();
    }
}
