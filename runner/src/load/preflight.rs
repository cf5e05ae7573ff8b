//! A look at the server before the load starts, for what would otherwise fail on every
//! connection: a certificate that does not verify, ALPN that does not pick h2 under
//! `--http2`, a server that does not speak HTTP/2. No request is sent. A server that does
//! not accept connections at all is left to the run, which counts connect errors.

use std::time::Duration;

use tokio::time::timeout;

use super::{
    engine::Protocol,
    http2,
    tls::{self, Agreed, Tls},
    wire::{Plain, Stream},
    LoadError, Target,
};

/// Checks the server at `target` for the run; what TLS agreed on, for https:// targets.
pub fn check(
    target: &Target,
    tls: Option<&Tls>,
    protocol: &Protocol,
    wait: Duration,
) -> Result<Option<Agreed>, LoadError> {
    let http2 = matches!(protocol, Protocol::Http2 { .. });
    if tls.is_none() && !http2 {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let Ok(Ok(plain)) = timeout(wait, Plain::connect(target.addr)).await else {
            return Ok(None);
        };
        let server = |what: String| LoadError::Server(what);
        let (stream, agreed) = match tls {
            None => (Stream::Plain(plain), None),
            Some(tls) => {
                let stream = timeout(wait, tls.handshake(plain))
                    .await
                    .map_err(|_| {
                        server(format!(
                            "TLS handshake with {} got no answer in {}",
                            target.host,
                            humantime::format_duration(wait)
                        ))
                    })?
                    .map_err(|e| server(tls::explain(&target.host, &e)))?;
                let agreed = tls::agreed(&stream);
                if http2 && agreed.alpn.as_deref() != Some("h2") {
                    return Err(server(format!(
                        "--http2: the server at {} chose {} in ALPN, not h2",
                        target.url,
                        agreed.alpn.as_deref().unwrap_or("no protocol")
                    )));
                }
                (Stream::Tls(Box::new(stream)), Some(agreed))
            }
        };
        if http2 {
            speaks_h2(stream, target, wait).await?;
        }
        Ok(agreed)
    })
}

/// An HTTP/2 handshake and a PING: the PONG says the server speaks HTTP/2.
async fn speaks_h2(stream: Stream, target: &Target, wait: Duration) -> Result<(), LoadError> {
    let how = if target.tls {
        ""
    } else {
        " over cleartext (h2c, prior knowledge)"
    };
    let refused = |why: String| {
        LoadError::Server(format!(
            "the server at {} does not speak HTTP/2{how}: {why}",
            target.url
        ))
    };
    let (_sender, mut connection) = http2::handshake(stream)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let mut ping = connection.ping_pong().expect("ping_pong is taken once");
    let answer = async {
        tokio::select! {
            pong = ping.ping(h2::Ping::opaque()) => pong.map_err(|e| refused(e.to_string())),
            ended = &mut connection => Err(refused(match ended {
                Ok(()) => "it closed the connection".into(),
                Err(e) => e.to_string(),
            })),
        }
    };
    match timeout(wait, answer).await {
        Ok(answered) => answered.map(drop),
        Err(_) => Err(refused(format!(
            "no answer to a PING in {}",
            humantime::format_duration(wait)
        ))),
    }
}
