//! A small blocking HTTP/1.1 and WebSocket client on hyper, for readiness checks and
//! verification (not for load: that is `crate::load`).

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{header::HOST, HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// A response, body read whole.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The Content-Type header, or "".
    pub fn content_type(&self) -> &str {
        self.headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {0}")]
    Connect(SocketAddr, #[source] std::io::Error),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("HTTP error")]
    Http(#[from] hyper::Error),
    #[error("bad request")]
    Build(#[from] hyper::http::Error),
    #[error("WebSocket error")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the WebSocket closed without an echo")]
    NoEcho,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Sends one request on a fresh connection and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<Response, HttpError> {
    runtime().block_on(async {
        tokio::time::timeout(timeout, async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| HttpError::Connect(addr, e))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut builder = Request::builder()
                .method(method)
                .uri(path)
                .header(HOST, addr.to_string());
            for (k, v) in headers {
                builder = builder.header(*k, *v);
            }
            let response = sender.send_request(builder.body(Full::new(body))?).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await?.to_bytes();
            Ok(Response {
                status,
                headers,
                body,
            })
        })
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
    })
}

/// GET `path`.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    request(addr, Method::GET, path, &[], Bytes::new(), timeout)
}

/// Sends `message` on a WebSocket at `path` and returns the first text frame that comes back.
pub fn websocket_echo(
    addr: SocketAddr,
    path: &str,
    message: &str,
    timeout: Duration,
) -> Result<String, HttpError> {
    runtime().block_on(async {
        tokio::time::timeout(timeout, async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| HttpError::Connect(addr, e))?;
            let url = format!("ws://{addr}{path}");
            let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream).await?;
            ws.send(Message::text(message)).await?;
            while let Some(msg) = ws.next().await {
                match msg? {
                    Message::Text(text) => {
                        let _ = ws.close(None).await;
                        return Ok(text.as_str().to_string());
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            Err(HttpError::NoEcho)
        })
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
    })
}
