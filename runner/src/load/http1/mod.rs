//! HTTP/1.1: a lean client for the hot case (pre-encoded requests, response heads parsed by
//! httparse into a fixed array, bodies read in place), and hyper's client for requests the
//! lean one does not send (upgrades, framing the user set by hand) and as the oracle the
//! lean one is held to (`oracle`).

pub mod decode;
pub mod hyper_client;
pub mod lean;
pub mod oracle;

use serde::Serialize;

use super::request::{BodyChecker, Prepared};

/// Receives a response body as it streams in.
pub trait BodySink {
    fn data(&mut self, bytes: &[u8]);
}

impl BodySink for BodyChecker<'_> {
    fn data(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// A complete response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Body bytes.
    pub bytes: u64,
    /// Another request may follow on the connection.
    pub reusable: bool,
}

/// Which HTTP/1.1 client runs the requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    /// The lean client when it can send every request of the run, else hyper's.
    #[default]
    Auto,
    Lean,
    Hyper,
}

/// The client chosen for a run, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub client: Client,
    pub reason: String,
}

/// Chooses the client for `prepared`; `asked` is what the user asked for. Asking for the
/// lean client with requests it cannot send is an error.
pub fn choose(asked: Client, prepared: &Prepared) -> Result<Choice, String> {
    let unsupported = prepared.lean_unsupported();
    match (asked, unsupported) {
        (Client::Hyper, _) => Ok(Choice {
            client: Client::Hyper,
            reason: "asked for".into(),
        }),
        (Client::Lean | Client::Auto, None) => Ok(Choice {
            client: Client::Lean,
            reason: if asked == Client::Lean {
                "asked for".into()
            } else {
                "every request is fixed or templated, with no framing or upgrade headers set by hand".into()
            },
        }),
        (Client::Auto, Some(why)) => Ok(Choice {
            client: Client::Hyper,
            reason: why,
        }),
        (Client::Lean, Some(why)) => {
            Err(format!("the lean HTTP/1.1 client cannot send this: {why}"))
        }
    }
}
