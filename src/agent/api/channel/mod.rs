//! The browser extension's door to the agent. The browser starts
//! `certagent native-host` for the extension (native messaging); the host
//! hands each request, with the origin the *browser* reported for the
//! sending page, to the running agent over a local channel only this user
//! can open ([`unix`]: a socket in the private state directory, its peer's
//! uid checked; [`windows`]: a named pipe of the user's, its client's user
//! SID checked). Here the agent answers it as the HTTP API does: the
//! origin must be one of `[bank] origins`, then the same [`route`]
//! (consent and PIN in the agent's own dialog, the same logon token).
//!
//! On the channel: one JSON line each way, [`ChannelRequest`] then
//! [`ChannelReply`].

use std::path::PathBuf;
use std::sync::Arc;

use hyper::Method;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::gate::Failure;
use super::route::{self, Payload};
use crate::agent::shared::Agent;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{RunningChannel, ask, serve};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{RunningChannel, ask, serve};

#[cfg(not(any(unix, windows)))]
mod none;
#[cfg(not(any(unix, windows)))]
pub use none::{RunningChannel, ask, serve};

/// The largest request the host takes from the browser and the agent from
/// the host (Web eID's limit: a logon request is a few hundred bytes).
pub const MAX_REQUEST: usize = 8 * 1024;
/// The largest answer (a status with certificates, a logon token).
pub const MAX_REPLY: usize = 256 * 1024;
/// How long a host may take to send its request line.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the host could not ask the agent (every platform's channel).
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("certagent is not running")]
    NotRunning,
    #[error("the agent's channel failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the agent's answer is larger than {} KiB", MAX_REPLY / 1024)]
    TooLarge,
}

/// A page's request as the extension sends it through the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRequest {
    /// The sending page's origin, as the browser reports it.
    pub origin: String,
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

/// The answer: what the API would answer, status and JSON body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelReply {
    pub status: u16,
    pub body: serde_json::Value,
}

impl ChannelReply {
    pub fn error(status: u16, code: &str, message: &str) -> ChannelReply {
        ChannelReply {
            status,
            body: serde_json::json!({ "error": code, "message": message }),
        }
    }
}

impl From<Failure> for ChannelReply {
    fn from(f: Failure) -> ChannelReply {
        ChannelReply::error(f.status.as_u16(), f.code, &f.message)
    }
}

/// Where the agent listens for the host: a socket in the private state
/// directory; on Windows this user's named pipe.
pub fn socket_path() -> std::io::Result<PathBuf> {
    #[cfg(windows)]
    return windows::address();
    #[cfg(not(windows))]
    Ok(crate::config::state_dir()?.join("agent.sock"))
}

/// The agent's answer to one request line.
pub(super) async fn reply(agent: &Arc<Agent>, line: &[u8]) -> ChannelReply {
    let req: ChannelRequest = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            return ChannelReply::error(400, "json", &format!("malformed request: {e}"));
        }
    };
    let allowed = agent
        .config
        .bank
        .as_ref()
        .is_some_and(|b| b.origins.contains(&req.origin));
    if !allowed {
        return Failure::new(
            403,
            "origin",
            "this web page is not allowed to use the agent",
        )
        .into();
    }
    let method = match req.method.as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        _ => return ChannelReply::error(405, "method", "only GET and POST are served"),
    };
    match route::route(
        agent,
        &req.origin,
        &method,
        &req.path,
        Payload::Json(req.body),
    )
    .await
    {
        Ok(a) => ChannelReply {
            status: a.status.as_u16(),
            body: a.body,
        },
        Err(f) => f.into(),
    }
}

/// One connection of a host, on any platform's channel: its request line
/// (at most [`MAX_REQUEST`], within [`READ_TIMEOUT`]), the answer, closed.
async fn answer_one(
    agent: &Arc<Agent>,
    read: impl AsyncRead + Unpin,
    mut write: impl AsyncWrite + Unpin,
) {
    let mut line = Vec::new();
    let mut limited = BufReader::new(read).take(MAX_REQUEST as u64 + 1);
    let read = tokio::time::timeout(READ_TIMEOUT, limited.read_until(b'\n', &mut line));
    let reply = match read.await {
        Ok(Ok(_)) if line.len() > MAX_REQUEST => ChannelReply::error(
            413,
            "too-large",
            &format!("the request is larger than {} KiB", MAX_REQUEST / 1024),
        ),
        Ok(Ok(_)) => reply(agent, &line).await,
        _ => return,
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let _ = write.write_all(&out).await;
    let _ = write.flush().await;
    let _ = write.shutdown().await;
}
