//! Requests: what is sent (method, path template, headers, body) and what counts as a
//! correct response. Built once into templates; a fixed request is only cloned per send.

use std::{fmt, path::PathBuf};

use std::io::Write as _;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST},
    HeaderMap, Method, Request, Uri,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Errors from describing requests.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("cannot read the body file {path}")]
    BodyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the mix file {path}")]
    MixFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mix file {path}: {message}")]
    MixParse { path: PathBuf, message: String },
    #[error("header `{0}` is not `Name: value`")]
    Header(String),
    #[error("`{0}` is not an HTTP method")]
    Method(String),
    #[error("path `{path}`: {problem}")]
    Path { path: String, problem: String },
    #[error("--expect-json is not valid JSON: {0}")]
    ExpectJson(String),
    #[error("--expect-sha256 takes 64 hex digits")]
    ExpectSha256,
    #[error("a mix needs at least one request with a weight above zero")]
    EmptyMix,
}

/// Where a request body comes from.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodySource {
    #[default]
    Empty,
    /// Literal text; `{A..B}` and `{unique}` are filled in per request.
    Text(String),
    /// A file's bytes.
    File(PathBuf),
    /// This many random bytes, generated once.
    Size(u64),
    /// A multipart/form-data upload of a file, as field `file`.
    Multipart(PathBuf),
}

/// Which statuses count as correct.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub enum StatusExpect {
    /// Any 2xx.
    #[default]
    Success,
    /// One of these.
    OneOf(Vec<u16>),
}

impl StatusExpect {
    fn accepts(&self, status: u16) -> bool {
        match self {
            StatusExpect::Success => (200..300).contains(&status),
            StatusExpect::OneOf(codes) => codes.contains(&status),
        }
    }
}

/// An optional check of the response body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum BodyCheck {
    /// Byte for byte.
    Exact(#[serde(skip)] Bytes),
    /// A JSON document that contains these keys with these values.
    JsonSubset(serde_json::Value),
    /// This many bytes with this SHA-256, hashed as the body streams.
    Digest { size: u64, sha256: String },
}

/// What a correct response looks like.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Expect {
    pub status: StatusExpect,
    pub body: Option<BodyCheck>,
}

/// One request of a mix, as described by the user.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RequestSpec {
    pub name: String,
    pub weight: u32,
    pub method: String,
    /// Path and query, e.g. `/items/{1..1000}?q={unique}`.
    pub path: String,
    /// `Name: value` lines.
    pub headers: Vec<String>,
    pub body: BodySource,
    pub expect: Expect,
}

impl RequestSpec {
    /// A GET of `path` with no body, expecting 2xx.
    pub fn get(path: &str) -> Self {
        Self {
            name: "request".into(),
            weight: 1,
            method: "GET".into(),
            path: path.into(),
            headers: Vec::new(),
            body: BodySource::Empty,
            expect: Expect::default(),
        }
    }
}

#[derive(Deserialize)]
struct MixFile {
    request: Vec<MixEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MixEntry {
    name: Option<String>,
    weight: Option<u32>,
    method: Option<String>,
    path: String,
    #[serde(default)]
    headers: Vec<String>,
    body: Option<String>,
    body_file: Option<PathBuf>,
    expect_status: Option<Vec<u16>>,
}

/// Reads a TOML mix file: `[[request]]` tables with `name`, `weight`, `method`, `path`,
/// `headers` (["Name: value"]), `body` or `body_file`, and `expect_status`.
pub fn read_mix(path: &std::path::Path) -> Result<Vec<RequestSpec>, RequestError> {
    let text = std::fs::read_to_string(path).map_err(|source| RequestError::MixFile {
        path: path.to_path_buf(),
        source,
    })?;
    let file: MixFile = toml::from_str(&text).map_err(|e| RequestError::MixParse {
        path: path.to_path_buf(),
        message: crate::toml_error::describe(&text, &e),
    })?;
    Ok(file
        .request
        .into_iter()
        .enumerate()
        .map(|(i, e)| RequestSpec {
            name: e.name.unwrap_or_else(|| format!("request{}", i + 1)),
            weight: e.weight.unwrap_or(1),
            method: e.method.unwrap_or_else(|| "GET".into()),
            path: e.path,
            headers: e.headers,
            body: match (e.body, e.body_file) {
                (Some(text), _) => BodySource::Text(text),
                (None, Some(file)) => BodySource::File(file),
                (None, None) => BodySource::Empty,
            },
            expect: Expect {
                status: e.expect_status.map(StatusExpect::OneOf).unwrap_or_default(),
                body: None,
            },
        })
        .collect())
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    /// A random integer in `[lo, hi]`.
    Range(u64, u64),
    /// A string unique to this request within and across runs.
    Unique,
}

/// Text with `{A..B}` and `{unique}` holes.
#[derive(Clone, Debug, PartialEq)]
struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses holes: `{unique}` and `{A..B}`. Any other brace is literal text (a JSON
    /// body's own braces, for instance); something that looks like a range but is not one
    /// is an error.
    fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let hole = after.find('}').map(|close| &after[..close]);
            let part = match hole {
                Some("unique") => Some(Part::Unique),
                Some(h) if h.contains("..") && h.starts_with(|c: char| c.is_ascii_digit()) => {
                    let (lo, hi) = h.split_once("..").expect("contains ..");
                    let lo: u64 = lo
                        .parse()
                        .map_err(|_| format!("`{{{h}}}`: {lo} is not a number"))?;
                    let hi: u64 = hi
                        .parse()
                        .map_err(|_| format!("`{{{h}}}`: `{hi}` is not a number"))?;
                    if hi < lo {
                        return Err(format!("`{{{h}}}`: the range is empty"));
                    }
                    Some(Part::Range(lo, hi))
                }
                _ => None,
            };
            match (part, hole) {
                (Some(part), Some(h)) => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    rest = &after[h.len() + 1..];
                }
                _ => {
                    literal.push('{');
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    fn render(&self, ctx: &mut RenderContext<'_>) -> String {
        let mut out = Vec::new();
        self.render_into(ctx, &mut out);
        String::from_utf8(out).expect("literals are text and holes are digits")
    }

    /// Appends a rendering to `out` (no allocation once `out` has grown).
    fn render_into(&self, ctx: &mut RenderContext<'_>, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Range(lo, hi) => {
                    let _ = write!(out, "{}", ctx.rng.u64(*lo..=*hi));
                }
                Part::Unique => {
                    *ctx.counter += 1;
                    let _ = write!(out, "{}-{}-{}", ctx.run_id, ctx.worker, ctx.counter);
                }
            }
        }
    }

    /// A rendering with the widest values the holes take, to check what a path becomes.
    fn sample(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.clone(),
                Part::Range(_, hi) => hi.to_string(),
                Part::Unique => "ffffffff-0-1".into(),
            })
            .collect()
    }
}

/// Per-worker state for filling in templates.
pub struct RenderContext<'a> {
    pub rng: &'a mut fastrand::Rng,
    pub run_id: &'a str,
    pub worker: usize,
    pub counter: &'a mut u64,
}

enum PathKind {
    Fixed(Uri),
    Templated(Template),
}

enum BodyKind {
    Fixed(Bytes),
    Templated(Template),
}

/// One request, ready to send.
struct Entry {
    name: String,
    weight: u32,
    method: Method,
    path: PathKind,
    headers: HeaderMap,
    body: BodyKind,
    expect: Expect,
    /// The HTTP/1.1 request when nothing in it is templated: as HTTP/1.1, and as HTTP/1.0
    /// for a server that answers in HTTP/1.0. Whole, or only its head when the body is
    /// larger than [`INLINE_BODY`] (the body is then written from `body`, not copied).
    http1: Option<[Vec<u8>; 2]>,
    /// The absolute URI of a fixed path for HTTP/2, made on first use (the origin is the
    /// same for the whole run).
    h2_uri: std::sync::OnceLock<Uri>,
}

/// Where templated HTTP/1.1 requests are rendered, kept per connection.
#[derive(Default)]
pub struct Scratch {
    path: Vec<u8>,
    body: Vec<u8>,
    request: Vec<u8>,
}

/// Request headers the lean HTTP/1.1 client leaves to hyper: they change the framing or
/// the connection (an upgrade, a body length or coding set by hand).
const FRAMING_HEADERS: [&str; 6] = [
    "connection",
    "upgrade",
    "content-length",
    "transfer-encoding",
    "expect",
    "te",
];

/// Fixed bodies up to this size are encoded with their request head (one write per
/// request); larger ones are written on their own from the one copy in memory.
pub const INLINE_BODY: usize = 64 * 1024;

/// An HTTP/1.1 request the way hyper's client writes it: the request line, the headers in
/// map order with lower-case names, `content-length` when there is a body, then the body.
/// `http10`: the server answered in HTTP/1.0, so (as hyper does) the request is HTTP/1.0
/// and asks for keep-alive. `head_only`: the body is framed but not copied in.
fn encode_http1(
    method: &Method,
    path: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    http10: bool,
    head_only: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    if !body.is_empty() {
        let _ = write!(out, "content-length: {}\r\n", body.len());
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// The requests of a run, built once.
pub struct Prepared {
    entries: Vec<Entry>,
    /// Cumulative weights, for picking an entry.
    cumulative: Vec<u64>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("entries", &self.entries.len())
            .finish()
    }
}

fn header(line: &str) -> Result<(HeaderName, HeaderValue), RequestError> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| RequestError::Header(line.into()))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| RequestError::Header(line.into()))?;
    let value =
        HeaderValue::from_str(value.trim()).map_err(|_| RequestError::Header(line.into()))?;
    Ok((name, value))
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, RequestError> {
    std::fs::read(path).map_err(|source| RequestError::BodyFile {
        path: path.clone(),
        source,
    })
}

/// Header slots a request's map is built with. hyper reuses the map of the request it sent
/// to parse the response into, and a clone of the template would have room for the
/// template's headers only: the response's headers would then grow it twice per request.
const HEADER_ROOM: usize = 12;

/// The headers of `template` in `reuse` (a spent map, cleared) or in a new map with room for
/// a typical response's headers.
fn headers_with_room(template: &HeaderMap, reuse: Option<HeaderMap>) -> HeaderMap {
    let mut headers = match reuse {
        Some(mut map) => {
            map.clear();
            map
        }
        None => HeaderMap::with_capacity(template.len().max(HEADER_ROOM)),
    };
    for (name, value) in template {
        headers.append(name.clone(), value.clone());
    }
    headers
}

const BOUNDARY: &str = "runner-multipart-boundary-7d4f1a";

impl Prepared {
    /// Builds every request of `specs` for the server at `authority` (the Host header).
    pub fn new(specs: &[RequestSpec], authority: &str) -> Result<Self, RequestError> {
        let mut entries = Vec::new();
        for spec in specs {
            let method = Method::from_bytes(spec.method.to_uppercase().as_bytes())
                .map_err(|_| RequestError::Method(spec.method.clone()))?;
            let path_error = |problem: String| RequestError::Path {
                path: spec.path.clone(),
                problem,
            };
            if !spec.path.starts_with('/') {
                return Err(path_error("must start with /".into()));
            }
            let template = Template::parse(&spec.path).map_err(path_error)?;
            // A templated path must be a URI whatever its holes become, and be written as
            // it is rendered.
            let sample = template.sample();
            let uri = sample
                .parse::<Uri>()
                .map_err(|e| path_error(e.to_string()))?;
            if uri.to_string() != sample {
                return Err(path_error(format!("is not written as given (`{uri}`)")));
            }
            let path = if template.is_fixed() {
                PathKind::Fixed(uri)
            } else {
                PathKind::Templated(template)
            };
            let mut headers = HeaderMap::new();
            headers.insert(
                HOST,
                HeaderValue::from_str(authority)
                    .map_err(|_| RequestError::Header(authority.into()))?,
            );
            let body = match &spec.body {
                BodySource::Empty => BodyKind::Fixed(Bytes::new()),
                BodySource::Text(text) => {
                    let template = Template::parse(text).map_err(path_error)?;
                    if template.is_fixed() {
                        BodyKind::Fixed(Bytes::from(text.clone()))
                    } else {
                        BodyKind::Templated(template)
                    }
                }
                BodySource::File(path) => BodyKind::Fixed(Bytes::from(read_file(path)?)),
                BodySource::Size(size) => {
                    let mut bytes = vec![0u8; *size as usize];
                    fastrand::Rng::with_seed(0x5eed).fill(&mut bytes);
                    BodyKind::Fixed(Bytes::from(bytes))
                }
                BodySource::Multipart(path) => {
                    let data = read_file(path)?;
                    let filename = path
                        .file_name()
                        .map(|n| n.to_string_lossy().replace('"', ""))
                        .unwrap_or_else(|| "upload".into());
                    let mut body = format!(
                        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    )
                    .into_bytes();
                    body.extend_from_slice(&data);
                    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
                    headers.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_str(&format!("multipart/form-data; boundary={BOUNDARY}"))
                            .unwrap(),
                    );
                    BodyKind::Fixed(Bytes::from(body))
                }
            };
            for line in &spec.headers {
                let (name, value) = header(line)?;
                headers.insert(name, value);
            }
            let http1 = match (&path, &body) {
                (PathKind::Fixed(uri), BodyKind::Fixed(bytes)) => {
                    let path = uri.to_string();
                    Some([false, true].map(|http10| {
                        let mut out = Vec::new();
                        let head_only = bytes.len() > INLINE_BODY;
                        encode_http1(
                            &method,
                            path.as_bytes(),
                            &headers,
                            bytes,
                            http10,
                            head_only,
                            &mut out,
                        );
                        out
                    }))
                }
                _ => None,
            };
            entries.push(Entry {
                name: spec.name.clone(),
                weight: spec.weight,
                method,
                path,
                headers,
                body,
                expect: spec.expect.clone(),
                http1,
                h2_uri: std::sync::OnceLock::new(),
            });
        }
        let mut total = 0u64;
        let cumulative = entries
            .iter()
            .map(|e| {
                total += u64::from(e.weight);
                total
            })
            .collect();
        if total == 0 {
            return Err(RequestError::EmptyMix);
        }
        Ok(Self {
            entries,
            cumulative,
        })
    }

    /// Names and weights of the entries, in order.
    pub fn names(&self) -> Vec<(String, u32)> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), e.weight))
            .collect()
    }

    /// Picks an entry by weight.
    pub fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        if self.entries.len() == 1 {
            return 0;
        }
        let total = *self.cumulative.last().unwrap();
        let x = rng.u64(0..total);
        self.cumulative.partition_point(|&c| c <= x)
    }

    /// The path and body of entry `index`, rendered.
    fn path_and_body(&self, index: usize, ctx: &mut RenderContext<'_>) -> (Uri, Bytes) {
        let entry = &self.entries[index];
        let uri = match &entry.path {
            PathKind::Fixed(uri) => uri.clone(),
            PathKind::Templated(t) => t
                .render(ctx)
                .parse()
                .expect("templated paths are checked when prepared"),
        };
        let body = match &entry.body {
            BodyKind::Fixed(bytes) => bytes.clone(),
            BodyKind::Templated(t) => Bytes::from(t.render(ctx)),
        };
        (uri, body)
    }

    /// The request of entry `index`. `reuse` is a spent header map (a response's) to build
    /// the headers in, saving an allocation.
    pub fn build(
        &self,
        index: usize,
        ctx: &mut RenderContext<'_>,
        reuse: Option<HeaderMap>,
    ) -> Request<Full<Bytes>> {
        let entry = &self.entries[index];
        let (uri, body) = self.path_and_body(index, ctx);
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = entry.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers_with_room(&entry.headers, reuse);
        request
    }

    /// The HTTP/2 request of entry `index` to `origin` (`scheme://authority`), and its
    /// body. The authority goes in `:authority`, not a Host header.
    pub fn build_h2(
        &self,
        index: usize,
        ctx: &mut RenderContext<'_>,
        origin: &str,
    ) -> (Request<()>, Bytes) {
        let entry = &self.entries[index];
        let absolute = |path: &Uri| -> Uri {
            format!("{origin}{path}")
                .parse()
                .expect("an origin and a checked path make a URI")
        };
        let (uri, body) = match (&entry.path, &entry.body) {
            (PathKind::Fixed(path), BodyKind::Fixed(body)) => (
                entry.h2_uri.get_or_init(|| absolute(path)).clone(),
                body.clone(),
            ),
            _ => {
                let (path, body) = self.path_and_body(index, ctx);
                (absolute(&path), body)
            }
        };
        let mut request = Request::new(());
        *request.method_mut() = entry.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        for (name, value) in &entry.headers {
            if name != HOST {
                headers.append(name.clone(), value.clone());
            }
        }
        if !body.is_empty() {
            headers.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        (request, body)
    }

    /// The HTTP/1.1 request of entry `index` when nothing in it is templated (`http10`:
    /// to a server that answers in HTTP/1.0), in two parts to write one after the other:
    /// the whole request and nothing, or the head and a large body.
    pub fn http1_fixed(&self, index: usize, http10: bool) -> Option<(&[u8], &[u8])> {
        let entry = &self.entries[index];
        let encoded = entry.http1.as_ref()?[usize::from(http10)].as_slice();
        let body: &[u8] = match &entry.body {
            BodyKind::Fixed(bytes) if bytes.len() > INLINE_BODY => bytes,
            _ => &[],
        };
        Some((encoded, body))
    }

    /// Renders the HTTP/1.1 request of a templated entry into `scratch`.
    pub fn http1_render<'s>(
        &self,
        index: usize,
        ctx: &mut RenderContext<'_>,
        scratch: &'s mut Scratch,
        http10: bool,
    ) -> &'s [u8] {
        let entry = &self.entries[index];
        let Scratch {
            path,
            body,
            request,
        } = scratch;
        path.clear();
        match &entry.path {
            PathKind::Fixed(uri) => {
                let _ = write!(path, "{uri}");
            }
            PathKind::Templated(t) => t.render_into(ctx, path),
        }
        body.clear();
        let body: &[u8] = match &entry.body {
            BodyKind::Fixed(bytes) => bytes,
            BodyKind::Templated(t) => {
                t.render_into(ctx, body);
                body
            }
        };
        encode_http1(
            &entry.method,
            path,
            &entry.headers,
            body,
            http10,
            false,
            request,
        );
        request
    }

    /// Whether entry `index` is a HEAD request (its response has no body).
    pub fn is_head(&self, index: usize) -> bool {
        self.entries[index].method == Method::HEAD
    }

    /// Why the lean HTTP/1.1 client cannot send these requests, if it cannot.
    pub fn lean_unsupported(&self) -> Option<String> {
        for e in &self.entries {
            if e.method == Method::CONNECT {
                return Some(format!("request `{}` is a CONNECT", e.name));
            }
            if let Some(h) = FRAMING_HEADERS.iter().find(|h| e.headers.contains_key(**h)) {
                return Some(format!("request `{}` sets the `{h}` header", e.name));
            }
        }
        None
    }

    /// What a correct response to entry `index` looks like.
    pub fn expect(&self, index: usize) -> &Expect {
        &self.entries[index].expect
    }
}

/// Checks a body as it streams in.
pub enum BodyChecker<'a> {
    None,
    Collect(&'a BodyCheck, Vec<u8>),
    Hash(u64, String, Sha256, u64),
}

impl<'a> BodyChecker<'a> {
    /// A checker for `check`.
    pub fn new(check: Option<&'a BodyCheck>) -> Self {
        match check {
            None => BodyChecker::None,
            Some(BodyCheck::Digest { size, sha256 }) => {
                BodyChecker::Hash(*size, sha256.clone(), Sha256::new(), 0)
            }
            Some(check) => BodyChecker::Collect(check, Vec::new()),
        }
    }

    /// Feeds a chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        match self {
            BodyChecker::None => {}
            BodyChecker::Collect(_, buf) => buf.extend_from_slice(chunk),
            BodyChecker::Hash(_, _, hasher, seen) => {
                hasher.update(chunk);
                *seen += chunk.len() as u64;
            }
        }
    }

    /// True when the whole body matched.
    pub fn matches(self) -> bool {
        match self {
            BodyChecker::None => true,
            BodyChecker::Collect(BodyCheck::Exact(expected), buf) => buf == expected.as_ref(),
            BodyChecker::Collect(BodyCheck::JsonSubset(expected), buf) => {
                serde_json::from_slice::<serde_json::Value>(&buf)
                    .map(|actual| json_contains(&actual, expected))
                    .unwrap_or(false)
            }
            BodyChecker::Collect(BodyCheck::Digest { .. }, _) => false,
            BodyChecker::Hash(size, sha256, hasher, seen) => {
                seen == size && hex(&hasher.finalize()) == sha256
            }
        }
    }
}

/// True when `actual` holds every key of `expected` with an equal value (recursively for
/// objects); other values must be equal.
pub fn json_contains(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    match (actual, expected) {
        (serde_json::Value::Object(a), serde_json::Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| json_contains(av, v))),
        (a, e) => a == e,
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses `--expect-sha256`.
pub fn parse_sha256(text: &str) -> Result<String, RequestError> {
    let text = text.trim().to_lowercase();
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(text)
    } else {
        Err(RequestError::ExpectSha256)
    }
}

/// Status check of a response.
pub fn status_ok(expect: &Expect, status: u16) -> bool {
    expect.status.accepts(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_parts() -> (fastrand::Rng, u64) {
        (fastrand::Rng::with_seed(7), 0)
    }

    #[test]
    fn templates_fill_ranges_and_unique_strings() {
        let t = Template::parse("/items/{1..3}?tag={unique}").unwrap();
        let (mut rng, mut counter) = ctx_parts();
        let mut ctx = RenderContext {
            rng: &mut rng,
            run_id: "r1",
            worker: 2,
            counter: &mut counter,
        };
        let a = t.render(&mut ctx);
        let b = t.render(&mut ctx);
        assert!(
            a.starts_with("/items/") && a.ends_with("?tag=r1-2-1"),
            "{a}"
        );
        assert!(b.ends_with("?tag=r1-2-2"));
        let n: u64 = a["/items/".len()..a.find('?').unwrap()].parse().unwrap();
        assert!((1..=3).contains(&n));
        assert!(Template::parse("/x/{1..}").is_err());
        assert!(Template::parse("/x/{5..1}").is_err());
        assert!(Template::parse("/x/{oops").unwrap().is_fixed());
        assert!(Template::parse("/plain").unwrap().is_fixed());
        // A JSON body keeps its own braces; only the holes are filled in.
        let body = Template::parse(r#"{"name": "w-{unique}", "n": {1..1}, "o": {}}"#).unwrap();
        assert_eq!(
            body.render(&mut ctx),
            r#"{"name": "w-r1-2-3", "n": 1, "o": {}}"#
        );
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let specs: Vec<RequestSpec> = [("a", 5), ("b", 3), ("c", 2)]
            .iter()
            .map(|(n, w)| RequestSpec {
                name: n.to_string(),
                weight: *w,
                ..RequestSpec::get("/")
            })
            .collect();
        let prepared = Prepared::new(&specs, "localhost").unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            counts[prepared.pick(&mut rng)] += 1;
        }
        assert!((counts[0] as i64 - 50_000).abs() < 1000, "{counts:?}");
        assert!((counts[1] as i64 - 30_000).abs() < 1000, "{counts:?}");
    }

    #[test]
    fn builds_requests_with_host_and_body() {
        let mut spec = RequestSpec::get("/upload");
        spec.method = "post".into();
        spec.headers = vec!["X-Test: 1".into()];
        spec.body = BodySource::Size(1024);
        let prepared = Prepared::new(&[spec], "127.0.0.1:8080").unwrap();
        let (mut rng, mut counter) = ctx_parts();
        let mut ctx = RenderContext {
            rng: &mut rng,
            run_id: "r",
            worker: 0,
            counter: &mut counter,
        };
        let req = prepared.build(0, &mut ctx, None);
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "/upload");
        assert_eq!(req.headers()[HOST], "127.0.0.1:8080");
        assert_eq!(req.headers()["x-test"], "1");
        assert!(req.headers().capacity() >= HEADER_ROOM);
        // A spent response map is cleared before the template's headers go in.
        let mut spent = HeaderMap::new();
        spent.insert("server", HeaderValue::from_static("nginx"));
        spent.insert(HOST, HeaderValue::from_static("stale"));
        let again = prepared.build(0, &mut ctx, Some(spent));
        assert_eq!(again.headers().len(), 2);
        assert_eq!(again.headers()[HOST], "127.0.0.1:8080");
        assert!(again.headers().get("server").is_none());
        assert!(matches!(
            Prepared::new(
                &[RequestSpec {
                    headers: vec!["bad".into()],
                    ..RequestSpec::get("/")
                }],
                "h"
            ),
            Err(RequestError::Header(_))
        ));
    }

    #[test]
    fn body_checks() {
        let exact = BodyCheck::Exact(Bytes::from_static(b"pong"));
        let mut c = BodyChecker::new(Some(&exact));
        c.update(b"po");
        c.update(b"ng");
        assert!(c.matches());
        let json = BodyCheck::JsonSubset(serde_json::json!({"message": "hello"}));
        let mut c = BodyChecker::new(Some(&json));
        c.update(br#"{"message":"hello","ts":"2026"}"#);
        assert!(c.matches());
        let mut c = BodyChecker::new(Some(&json));
        c.update(br#"{"message":"bye"}"#);
        assert!(!c.matches());
        let digest = BodyCheck::Digest {
            size: 3,
            sha256: hex(&Sha256::digest(b"abc")),
        };
        let mut c = BodyChecker::new(Some(&digest));
        c.update(b"abc");
        assert!(c.matches());
        let mut c = BodyChecker::new(Some(&digest));
        c.update(b"abd");
        assert!(!c.matches());
    }

    #[test]
    fn reads_a_mix_file() {
        let dir = std::env::temp_dir().join(format!("runner-mix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mix.toml");
        std::fs::write(
            &path,
            r#"
[[request]]
name = "get"
weight = 5
path = "/items/{1..1000}"

[[request]]
name = "create"
weight = 3
method = "POST"
path = "/items"
headers = ["Content-Type: application/json"]
body = '{"name":"item-{unique}","description":"d","price":1.5}'
expect_status = [201]
"#,
        )
        .unwrap();
        let specs = read_mix(&path).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].expect.status, StatusExpect::OneOf(vec![201]));
        assert!(Prepared::new(&specs, "h").is_ok());
        std::fs::write(&path, "[[request]]\nwieght = 1\npath = \"/\"\n").unwrap();
        assert!(matches!(
            read_mix(&path),
            Err(RequestError::MixParse { .. })
        ));
    }
}
