//! WebSocket echo: each connection sends a message and waits for it to come back.

use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::timeout,
};
use tokio_tungstenite::{tungstenite::Message, WebSocketStream};

use super::{
    engine::{serve, Exchanged, Next, Retry, Session, Worker},
    tally::{ErrorClass, Outcome},
    wire::Stream,
};

/// One echo exchange.
async fn echo<S>(ws: &mut WebSocketStream<S>, message: &str) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if ws.send(Message::text(message)).await.is_err() {
        return Outcome::Error(ErrorClass::Reset);
    }
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return if text.as_str() == message {
                    Outcome::Ok(text.len() as u64)
                } else {
                    Outcome::Error(ErrorClass::BodyMismatch)
                };
            }
            Some(Ok(Message::Binary(data))) => {
                return if data.as_ref() == message.as_bytes() {
                    Outcome::Ok(data.len() as u64)
                } else {
                    Outcome::Error(ErrorClass::BodyMismatch)
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                return Outcome::Error(ErrorClass::Reset)
            }
        }
    }
}

struct Echo<'m> {
    ws: WebSocketStream<Stream>,
    message: &'m str,
}

impl Session for Echo<'_> {
    async fn ready(&mut self) -> bool {
        true
    }

    async fn exchange(&mut self, _: &Worker, _: usize) -> Exchanged {
        let outcome = echo(&mut self.ws, self.message).await;
        Exchanged::Done(outcome, !outcome.breaks_connection())
    }
}

/// Echo exchanges on one connection: the WebSocket handshake, then the schedule.
pub async fn run(
    worker: &Worker,
    k: usize,
    stream: Stream,
    url: &str,
    message: &str,
    retry: &mut Option<Retry>,
) -> Next {
    let ws = match timeout(
        worker.plan.timeout,
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    {
        Ok(Ok((ws, _))) => ws,
        _ => {
            worker.connect_failed(k, ErrorClass::Connect).await;
            return Next::Reconnect;
        }
    };
    let mut session = Echo { ws, message };
    let next = serve(worker, k, &mut session, retry).await;
    if let Next::Reconnect = next {
        let _ = timeout(worker.plan.timeout, session.ws.close(None)).await;
    }
    next
}
