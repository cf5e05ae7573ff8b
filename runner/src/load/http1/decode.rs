//! The lean client's response decoder. The head is parsed by httparse into a fixed array;
//! the body is framed by Content-Length, chunked coding or the end of the connection. The
//! rules are hyper's client rules, rule for rule (`proto/h1/role.rs` and `decode.rs` of
//! hyper 1.x): 1xx heads are skipped, 101/204/304 and answers to HEAD have no body,
//! Transfer-Encoding wins over Content-Length, and keep-alive follows the version and every
//! `Connection` line. `http1::oracle` holds both to the same responses.
//!
//! Sans I/O: [`Decoder::step`] consumes bytes from a [`Buffer`] and says what it found; the
//! caller reads more when told to, and calls [`Decoder::eof`] at the end of the stream.

use std::mem::MaybeUninit;

/// Most header lines in a head (hyper's default), and in the trailers.
pub const MAX_HEADERS: usize = 100;
/// The read buffer: a head must fit in it (hyper's exact read buffer in runner's hyper path).
pub const BUFFER: usize = 16 * 1024;
/// Bytes of chunk extensions allowed in one body (hyper's limit).
const EXTENSIONS_LIMIT: u64 = 16 * 1024;
/// Bytes of trailers allowed (hyper's limit).
const TRAILERS_LIMIT: usize = 16 * 1024;
/// The largest Content-Length hyper accepts (two values are reserved for its markers).
const MAX_LENGTH: u64 = u64::MAX - 2;

/// Why a response could not be decoded. Every one of them is a broken connection to the
/// load engine, as every hyper error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {BUFFER} bytes")]
    HeadTooLarge,
    #[error("status code below 100")]
    Status,
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferEncoding10,
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
    #[error("invalid trailers")]
    Trailers,
    #[error("connection closed before the response was complete")]
    Incomplete,
    #[error("connection closed before a response began")]
    Closed,
}

/// A connection's read buffer: unread bytes are `bytes[start..end]`.
pub struct Buffer {
    bytes: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for Buffer {
    fn default() -> Self {
        Self {
            bytes: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }
}

impl Buffer {
    /// The unread bytes.
    pub fn unread(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into, after the unread bytes (moved to the front first when they are
    /// not there). Empty only when the buffer is full of unread bytes.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && self.end == self.bytes.len() {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.bytes[self.end..]
    }

    /// Marks `n` bytes of [`Buffer::spare`] as read in.
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// Forgets everything unread (a new connection).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

/// The head of the final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// The server means to keep the connection open after this response.
    pub keep_alive: bool,
    /// The response was HTTP/1.0 (hyper then speaks HTTP/1.0 on the connection).
    pub http10: bool,
}

/// What [`Decoder::step`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// More bytes are needed: read some (or call [`Decoder::eof`] at the end of the stream).
    More,
    /// The head of the final response (1xx heads are skipped).
    Head(Head),
    /// Body bytes.
    Data(&'a [u8]),
    /// The response is complete; `reusable` when another request may follow on the
    /// connection (keep-alive, and the body did not end with the connection).
    Done { reusable: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Body,
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// What an attempt to parse a head gave.
enum Parsed {
    Final(Head),
    /// A 1xx head, skipped.
    Informational,
    Partial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a head; `partial` is how many unread bytes the last attempt saw.
    Head {
        partial: Option<usize>,
    },
    Length(u64),
    Chunked(Chunk),
    /// Read until the connection ends.
    UntilEof,
    Done,
}

/// Decodes one response after another on a connection.
pub struct Decoder {
    state: State,
    /// The request was HEAD: no body, whatever the head says.
    head_request: bool,
    keep_alive: bool,
    /// Body bytes so far.
    body: u64,
    /// Chunked: the size of the chunk being read, then what is left of it.
    chunk: u64,
    extensions: u64,
    /// Trailer bytes, when the body has trailers (hyper keeps them to parse at the end).
    trailers: Vec<u8>,
    has_trailers: bool,
    trailer_lines: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            state: State::Done,
            head_request: false,
            keep_alive: false,
            body: 0,
            chunk: 0,
            extensions: 0,
            trailers: Vec::new(),
            has_trailers: false,
            trailer_lines: 0,
        }
    }
}

fn chunked(e: &'static str) -> DecodeError {
    DecodeError::Chunked(e)
}

/// hyper's `HeaderValue::to_str` test: visible ASCII and tabs only.
fn visible(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b'\t' || (32..127).contains(&b))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A comma-separated header value holds `token` (any case), as hyper reads `Connection`.
fn has_token(value: &[u8], token: &str) -> bool {
    visible(value)
        && value
            .split(|&b| b == b',')
            .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// The last coding of the last Transfer-Encoding line is `chunked`.
fn ends_chunked(last: &[u8]) -> bool {
    visible(last)
        && last
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|t| trim(t).eq_ignore_ascii_case(b"chunked"))
}

fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// hyper's `Client::parse` loop after httparse: the framing of the body, or None for a
/// 1xx head to skip.
fn framing(
    response: &httparse::Response<'_, '_>,
    head_request: bool,
) -> Result<Option<(State, Head)>, DecodeError> {
    let code = response.code.expect("complete");
    if code < 100 {
        return Err(DecodeError::Status);
    }
    let http11 = response.version == Some(1);
    let mut keep_alive = http11;
    let mut saw_close = false;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut content_length: Option<Option<u64>> = None;
    for h in response.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            if saw_close || has_token(h.value, "close") {
                saw_close = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = has_token(h.value, "keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // Every value of every line must be the same number.
            let mut length = content_length.unwrap_or(None);
            let mut valid = content_length != Some(None) && visible(h.value);
            if valid {
                for v in h.value.split(|&b| b == b',') {
                    match (digits(trim(v)), length) {
                        (Some(n), None) => length = Some(n),
                        (Some(n), Some(m)) if n == m => {}
                        _ => {
                            valid = false;
                            break;
                        }
                    }
                }
            }
            content_length = Some(if valid { length } else { None });
        }
    }
    let head = |state: State, keep_alive: bool| {
        Ok(Some((
            state,
            Head {
                status: code,
                keep_alive,
                http10: !http11,
            },
        )))
    };
    match code {
        101 => return head(State::Length(0), false),
        100 | 102..=199 => return Ok(None),
        204 | 304 => return head(State::Length(0), keep_alive),
        _ => {}
    }
    if head_request {
        return head(State::Length(0), keep_alive);
    }
    if let Some(last) = transfer_encoding {
        if !http11 {
            return Err(DecodeError::TransferEncoding10);
        }
        return if ends_chunked(last) {
            head(State::Chunked(Chunk::Start), keep_alive)
        } else {
            head(State::UntilEof, keep_alive)
        };
    }
    match content_length {
        Some(Some(n)) if n <= MAX_LENGTH => head(State::Length(n), keep_alive),
        Some(_) => Err(DecodeError::ContentLength),
        None => head(State::UntilEof, keep_alive),
    }
}

/// hyper's quick scan, after a partial head, for the blank line that ends a head: it does
/// not parse again until one may have arrived.
fn may_be_complete(bytes: &[u8], previous: usize) -> bool {
    let bytes = &bytes[previous.saturating_sub(3)..];
    for (i, &b) in bytes.iter().enumerate() {
        let rest = &bytes[i + 1..];
        if b == b'\r' {
            if rest.chunks(3).next() == Some(&b"\n\r\n"[..]) {
                return true;
            }
        } else if b == b'\n'
            && (rest.first() == Some(&b'\n') || rest.chunks(2).next() == Some(&b"\r\n"[..]))
        {
            return true;
        }
    }
    false
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

impl Decoder {
    /// Expects the response to a new request (`head_request`: it was HEAD).
    pub fn start(&mut self, head_request: bool) {
        self.state = State::Head { partial: None };
        self.head_request = head_request;
        self.keep_alive = false;
        self.body = 0;
        self.chunk = 0;
        self.extensions = 0;
        self.has_trailers = false;
        self.trailer_lines = 0;
        self.trailers.clear();
    }

    /// Consumes what it can of `buf` and says what it found.
    pub fn step<'a>(&mut self, buf: &'a mut Buffer) -> Result<Step<'a>, DecodeError> {
        loop {
            match self.state {
                State::Done => {
                    let reusable = self.keep_alive;
                    return Ok(Step::Done { reusable });
                }
                State::Head { partial } => match self.head(buf, partial)? {
                    Parsed::Final(head) => return Ok(Step::Head(head)),
                    Parsed::Partial => return Ok(Step::More),
                    Parsed::Informational => {}
                },
                State::Length(0) => self.state = State::Done,
                State::Length(left) => {
                    let n = (buf.end - buf.start).min(usize::try_from(left).unwrap_or(usize::MAX));
                    if n == 0 {
                        return Ok(Step::More);
                    }
                    self.state = State::Length(left - n as u64);
                    return Ok(Step::Data(self.take(buf, n)));
                }
                State::UntilEof => {
                    let n = buf.end - buf.start;
                    if n == 0 {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(self.take(buf, n)));
                }
                State::Chunked(Chunk::Body) => {
                    let n = (buf.end - buf.start)
                        .min(usize::try_from(self.chunk).unwrap_or(usize::MAX));
                    if n == 0 {
                        return Ok(Step::More);
                    }
                    self.chunk -= n as u64;
                    if self.chunk == 0 {
                        self.state = State::Chunked(Chunk::BodyCr);
                    }
                    return Ok(Step::Data(self.take(buf, n)));
                }
                State::Chunked(chunk) => {
                    let Some(&b) = buf.unread().first() else {
                        return Ok(Step::More);
                    };
                    buf.consume(1);
                    self.state = self.chunk_byte(chunk, b)?;
                }
            }
        }
    }

    /// The stream ended: the response is complete only if its body runs to the end.
    pub fn eof(&mut self) -> Result<Step<'static>, DecodeError> {
        match self.state {
            State::UntilEof => {
                self.state = State::Done;
                self.keep_alive = false;
                Ok(Step::Done { reusable: false })
            }
            State::Done => Ok(Step::Done {
                reusable: self.keep_alive,
            }),
            // Nothing, or part of a head: hyper calls both an incomplete message too.
            State::Head { .. } => Err(DecodeError::Closed),
            _ => Err(DecodeError::Incomplete),
        }
    }

    /// Body bytes of the response so far.
    pub fn body_bytes(&self) -> u64 {
        self.body
    }

    fn take<'a>(&mut self, buf: &'a mut Buffer, n: usize) -> &'a [u8] {
        self.body += n as u64;
        let start = buf.start;
        buf.consume(n);
        // consume() may have reset the indices; the bytes are still in place.
        &buf.bytes[start..start + n]
    }

    /// Parses a head if one is complete.
    fn head(&mut self, buf: &mut Buffer, partial: Option<usize>) -> Result<Parsed, DecodeError> {
        let unread = buf.unread();
        if unread.is_empty() {
            return Ok(Parsed::Partial);
        }
        if let Some(previous) = partial {
            if !may_be_complete(unread, previous) {
                return self.partial(unread.len());
            }
        }
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            unread,
            &mut headers,
        );
        match parsed {
            Ok(httparse::Status::Complete(len)) => {
                let found = framing(&response, self.head_request)?;
                buf.consume(len);
                match found {
                    Some((state, head)) => {
                        self.state = state;
                        self.keep_alive = head.keep_alive && state != State::UntilEof;
                        Ok(Parsed::Final(head))
                    }
                    // A 1xx head: parse the next one, fresh.
                    None => {
                        self.state = State::Head { partial: None };
                        Ok(Parsed::Informational)
                    }
                }
            }
            Ok(httparse::Status::Partial) => self.partial(unread.len()),
            Err(e) => Err(DecodeError::Head(e)),
        }
    }

    fn partial(&mut self, unread: usize) -> Result<Parsed, DecodeError> {
        if unread >= BUFFER {
            return Err(DecodeError::HeadTooLarge);
        }
        self.state = State::Head {
            partial: Some(unread),
        };
        Ok(Parsed::Partial)
    }

    fn push_trailer(&mut self, b: u8) -> Result<(), DecodeError> {
        self.trailers.push(b);
        if self.trailers.len() >= TRAILERS_LIMIT {
            return Err(chunked("trailers over limit"));
        }
        Ok(())
    }

    /// One more hex digit of a chunk size.
    fn size_digit(&mut self, d: u64) -> Result<(), DecodeError> {
        self.chunk = self
            .chunk
            .checked_mul(16)
            .and_then(|n| n.checked_add(d))
            .ok_or(chunked("size overflow"))?;
        Ok(())
    }

    /// One byte of chunked framing, hyper's `ChunkedState::step`.
    fn chunk_byte(&mut self, chunk: Chunk, b: u8) -> Result<State, DecodeError> {
        let next = match chunk {
            Chunk::Start => {
                self.size_digit(hex(b).ok_or(chunked("missing size digit"))?)?;
                Chunk::Size
            }
            Chunk::Size => match (hex(b), b) {
                (Some(d), _) => {
                    self.size_digit(d)?;
                    Chunk::Size
                }
                (None, b'\t' | b' ') => Chunk::SizeLws,
                (None, b';') => Chunk::Extension,
                (None, b'\r') => Chunk::SizeLf,
                _ => return Err(chunked("invalid size")),
            },
            Chunk::SizeLws => match b {
                b'\t' | b' ' => Chunk::SizeLws,
                b';' => Chunk::Extension,
                b'\r' => Chunk::SizeLf,
                _ => return Err(chunked("invalid whitespace after size")),
            },
            Chunk::Extension => match b {
                b'\r' => Chunk::SizeLf,
                b'\n' => return Err(chunked("newline in extension")),
                _ => {
                    self.extensions += 1;
                    if self.extensions >= EXTENSIONS_LIMIT {
                        return Err(chunked("extensions over limit"));
                    }
                    Chunk::Extension
                }
            },
            Chunk::SizeLf => match (b, self.chunk) {
                (b'\n', 0) => Chunk::EndCr,
                (b'\n', _) => Chunk::Body,
                _ => return Err(chunked("invalid size line end")),
            },
            Chunk::Body => unreachable!("body bytes are taken in bulk"),
            Chunk::BodyCr if b == b'\r' => Chunk::BodyLf,
            Chunk::BodyLf if b == b'\n' => Chunk::Start,
            Chunk::BodyCr | Chunk::BodyLf => return Err(chunked("invalid chunk end")),
            Chunk::Trailer => {
                self.push_trailer(b)?;
                if b == b'\r' {
                    Chunk::TrailerLf
                } else {
                    Chunk::Trailer
                }
            }
            Chunk::TrailerLf => {
                if b != b'\n' {
                    return Err(chunked("invalid trailer line end"));
                }
                if self.trailer_lines >= MAX_HEADERS {
                    return Err(chunked("too many trailers"));
                }
                self.trailer_lines += 1;
                self.push_trailer(b)?;
                Chunk::EndCr
            }
            Chunk::EndCr => {
                if b == b'\r' {
                    if self.has_trailers {
                        self.push_trailer(b)?;
                    }
                    Chunk::EndLf
                } else {
                    if self.has_trailers {
                        self.push_trailer(b)?;
                    } else {
                        self.has_trailers = true;
                        self.trailers.push(b);
                    }
                    Chunk::Trailer
                }
            }
            Chunk::EndLf => {
                if b != b'\n' {
                    return Err(chunked("invalid end"));
                }
                if self.has_trailers {
                    self.push_trailer(b)?;
                    self.check_trailers()?;
                }
                return Ok(State::Done);
            }
        };
        Ok(State::Chunked(next))
    }

    /// hyper parses trailers into a header map at the end of the body, and fails the body
    /// when they do not parse.
    fn check_trailers(&self) -> Result<(), DecodeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(&self.trailers, &mut headers[..self.trailer_lines]) {
            Ok(httparse::Status::Complete((_, headers))) => {
                for h in headers.iter() {
                    if hyper::header::HeaderName::from_bytes(h.name.as_bytes()).is_err()
                        || hyper::header::HeaderValue::from_bytes(h.value).is_err()
                    {
                        return Err(DecodeError::Trailers);
                    }
                }
                Ok(())
            }
            _ => Err(DecodeError::Trailers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `bytes` fed in pieces of `piece` bytes: (head, body, done) or the error.
    fn decode(
        bytes: &[u8],
        piece: usize,
        head_request: bool,
    ) -> Result<(Head, Vec<u8>, bool), DecodeError> {
        let mut buf = Buffer::default();
        let mut d = Decoder::default();
        d.start(head_request);
        let mut input = bytes.chunks(piece);
        let (mut head, mut body) = (None, Vec::new());
        loop {
            match d.step(&mut buf)? {
                Step::More => match input.next() {
                    Some(p) => {
                        buf.spare()[..p.len()].copy_from_slice(p);
                        buf.filled(p.len());
                    }
                    None => {
                        let Step::Done { reusable } = d.eof()? else {
                            unreachable!()
                        };
                        return Ok((head.unwrap(), body, reusable));
                    }
                },
                Step::Head(h) => head = Some(h),
                Step::Data(data) => body.extend_from_slice(data),
                Step::Done { reusable } => return Ok((head.unwrap(), body, reusable)),
            }
        }
    }

    #[test]
    fn content_length_and_keep_alive() {
        for piece in [1, 3, 1000] {
            let (head, body, reusable) = decode(
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong",
                piece,
                false,
            )
            .unwrap();
            assert_eq!(
                (head.status, body.as_slice(), reusable),
                (200, &b"pong"[..], true)
            );
        }
        let (_, _, reusable) = decode(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
            5,
            false,
        )
        .unwrap();
        assert!(!reusable);
        let (_, _, reusable) = decode(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            5,
            false,
        )
        .unwrap();
        assert!(reusable);
        assert_eq!(
            decode(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npo", 2, false),
            Err(DecodeError::Incomplete)
        );
        assert_eq!(
            decode(b"HTTP/1.1 200 OK\r\nContent-Length: 4, 5\r\n\r\n", 2, false),
            Err(DecodeError::ContentLength)
        );
        let (_, body, _) = decode(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\ncontent-length: 4\r\n\r\nabcd",
            2,
            false,
        )
        .unwrap();
        assert_eq!(body, b"abcd");
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4;a=b\r\npong\r\n1 \t;x\r\n!\r\n0\r\nX-T: 1\r\n\r\n";
        for piece in 1..r.len() {
            let (head, body, reusable) = decode(r, piece, false).unwrap();
            assert_eq!(
                (head.status, body.as_slice(), reusable),
                (200, &b"pong!"[..], true)
            );
        }
        assert!(decode(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\npong\r\n0\r\n\r\n",
            4,
            false
        )
        .is_err());
        assert!(decode(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
            4,
            false
        )
        .is_err());
    }

    #[test]
    fn bodies_that_run_to_the_end_and_heads_without_bodies() {
        let (_, body, reusable) = decode(b"HTTP/1.1 200 OK\r\n\r\nall of it", 4, false).unwrap();
        assert_eq!((body.as_slice(), reusable), (&b"all of it"[..], false));
        let (_, body, _) = decode(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz",
            4,
            false,
        )
        .unwrap();
        assert_eq!(body, b"zz");
        let (head, body, reusable) = decode(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            7,
            false,
        )
        .unwrap();
        assert_eq!((head.status, body.len(), reusable), (204, 0, true));
        let (head, body, _) =
            decode(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", 7, true).unwrap();
        assert_eq!((head.status, body.len()), (200, 0));
        assert_eq!(
            decode(
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                7,
                false
            ),
            Err(DecodeError::TransferEncoding10)
        );
        assert!(matches!(
            decode(b"HTTP/1.1 2x0 OK\r\n\r\n", 100, false),
            Err(DecodeError::Head(_))
        ));
        assert_eq!(
            decode(b"HTTP/1.1 099 Low\r\n\r\n", 100, false),
            Err(DecodeError::Status)
        );
        let huge = [&b"HTTP/1.1 200 OK\r\nX: "[..], &vec![b'a'; BUFFER][..]].concat();
        assert_eq!(decode(&huge, 4096, false), Err(DecodeError::HeadTooLarge));
    }
}
