//! The local API for the bank's web pages, safe by construction.
//!
//! It listens on loopback only. Every request passes the [`gate`] (Host and
//! Origin) before anything else. Behind it: [`status`], the origin-bound
//! [`logon`] and [`renewals`]. Each reaches the token through the agent's
//! one [`Owner`](super::owner::Owner) and the user through its one
//! [`Prompts`](super::prompts::Prompts): consent and PIN are asked in the
//! agent's own pinentry window, never through the page, one question at a
//! time, and a rejected PIN is never retried.

mod gate;
mod logon;
pub mod peer;
pub mod renewals;
mod status;

use cryptoki::types::AuthPin;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

use super::Agent;
use super::owner::{Busy, Lease};
use super::prompts::{Occupied, Turn};
use crate::prompt::PromptError;
use crate::token::{TokenError, TokenInfo};
use gate::{Failure, failure, json_response};

pub use gate::MAX_BODY;
pub use logon::TOKEN_FORMAT;

/// Connections served at once; beyond, new ones are closed at once (not
/// left in the kernel's backlog, where they would wait behind slow ones).
const MAX_CONNECTIONS: usize = 256;
/// Connections one process (or, where its process is not known, one user)
/// may hold at once: more than a browser opens to one host (6), few enough
/// that one local program cannot take them all.
const PER_PEER: usize = 8;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A logon waits for the user at most this long (pinentry has its own timeout too).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("the local API needs [bank] origins in the configuration: no web page could call it")]
    NoOrigins,
}

/// The API, serving until shut down.
pub struct RunningApi {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningApi {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Bind the configured loopback address and serve.
pub async fn serve(agent: Arc<Agent>) -> Result<RunningApi, ApiError> {
    let listen = agent.config.agent.listen;
    if agent
        .config
        .bank
        .as_ref()
        .is_none_or(|b| b.origins.is_empty())
    {
        return Err(ApiError::NoOrigins);
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| ApiError::Bind {
            addr: listen,
            reason: match (e.kind(), peer::listener(listen)) {
                (std::io::ErrorKind::AddrInUse, Some(uid)) if uid == peer::me() => {
                    "another program of yours listens there (is certagent running already?)"
                        .to_string()
                }
                (std::io::ErrorKind::AddrInUse, Some(uid)) => format!(
                    "it is taken by {}'s program (on a shared computer each user needs [agent] listen on a port of their own)",
                    peer::user_name(uid)
                ),
                _ => e.to_string(),
            },
        })?;
    let addr = listener.local_addr().map_err(|e| ApiError::Bind {
        addr: listen,
        reason: e.to_string(),
    })?;
    let (stop, mut stopped) = oneshot::channel();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let peers = Peers::default();
    let task = tokio::spawn(async move {
        loop {
            // Accept at once, whatever is being served: a connection waits
            // for its turn here, never in the kernel's backlog.
            let (tcp, from) = tokio::select! {
                _ = &mut stopped => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        log::warn!("local API: accept failed: {e}");
                        continue;
                    }
                },
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                log::warn!(
                    "local API: {MAX_CONNECTIONS} connections open; closing one from {from}"
                );
                continue;
            };
            let agent = agent.clone();
            let peers = peers.clone();
            tokio::spawn(async move {
                let _permit = permit;
                // Who holds the client socket, before reading a byte of it.
                let who = tokio::task::spawn_blocking(move || peer::identify(from, addr))
                    .await
                    .unwrap_or(peer::Peer::Unknown);
                let Some(_slot) = peers.enter(who) else {
                    log::warn!(
                        "local API: {who:?} holds {PER_PEER} connections already; closing one"
                    );
                    return;
                };
                let own = who.is_own();
                let service = service_fn(move |req| {
                    let agent = agent.clone();
                    async move { Ok::<_, Infallible>(handle(agent, addr, own, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(tcp), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            });
        }
    });
    Ok(RunningApi {
        addr,
        stop: Some(stop),
        task,
    })
}

/// Open connections per peer, for [`PER_PEER`].
#[derive(Clone, Default)]
struct Peers(Arc<std::sync::Mutex<std::collections::HashMap<peer::Peer, usize>>>);

/// A peer's connection, counted until dropped.
struct PeerSlot {
    peers: Peers,
    who: peer::Peer,
}

impl Peers {
    fn count(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<peer::Peer, usize>> {
        // A panic elsewhere while counting leaves counts that are still right.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for `who`, unless it holds [`PER_PEER`] already. Where the
    /// platform cannot tell peers apart, there is no per-peer cap.
    fn enter(&self, who: peer::Peer) -> Option<PeerSlot> {
        if who != peer::Peer::Unknown {
            let mut count = self.count();
            let n = count.entry(who).or_insert(0);
            if *n >= PER_PEER {
                return None;
            }
            *n += 1;
        }
        Some(PeerSlot {
            peers: self.clone(),
            who,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if self.who == peer::Peer::Unknown {
            return;
        }
        let mut count = self.peers.count();
        if let Some(n) = count.get_mut(&self.who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                count.remove(&self.who);
            }
        }
    }
}

async fn handle(
    agent: Arc<Agent>,
    addr: SocketAddr,
    own: bool,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let origin = match gate::gate(&agent, addr, req.headers()) {
        Ok(o) => o.to_string(),
        // No CORS headers: the page learns nothing, not even the reason;
        // and the connection ends with the answer.
        Err(f) => {
            let mut r = failure(f, None);
            r.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return r;
        }
    };
    // Then, before anything happens for this request (a preflight's CORS
    // answer included): the connecting process must be this user's.
    if !own {
        return another_user();
    }
    let o = Some(origin.as_str());
    if req.method() == Method::OPTIONS {
        return gate::preflight(req.headers(), &origin);
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let result = match (method.clone(), path.as_str()) {
        (Method::GET, "/v1/status") => status::status(&agent)
            .await
            .map(|b| json_response(StatusCode::OK, &b, o)),
        (Method::POST, "/v1/logon") => match gate::read_json(req).await {
            Ok(r) => logon::logon(&agent, &origin, r)
                .await
                .map(|b| json_response(StatusCode::OK, &b, o)),
            Err(f) => Err(f),
        },
        (Method::POST, "/v1/renewals") => match gate::read_json(req).await {
            Ok(r) => renewals::from_page(&agent, &origin, r)
                .await
                .map(|b| json_response(StatusCode::ACCEPTED, &b, o)),
            Err(f) => Err(f),
        },
        (Method::GET, p) if p.starts_with("/v1/renewals/") => {
            let id = &p["/v1/renewals/".len()..];
            agent
                .renewal(id)
                .map(|s| json_response(StatusCode::OK, &s, o))
                .ok_or_else(|| Failure::new(404, "not-found", "no such renewal"))
        }
        (_, "/v1/status" | "/v1/logon" | "/v1/renewals") => Err(Failure::new(
            405,
            "method",
            format!("{method} is not allowed here"),
        )),
        _ => Err(Failure::new(404, "not-found", "no such endpoint")),
    };
    result.unwrap_or_else(|f| failure(f, o))
}

/// The answer to another OS user's process: 403, no CORS, nothing more,
/// and the connection closed.
fn another_user() -> Response<Full<Bytes>> {
    let mut r = failure(
        Failure::new(
            403,
            "user",
            "this agent serves only its own user's programs",
        ),
        None,
    );
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

fn token_failure(e: TokenError) -> Failure {
    match e {
        TokenError::NotFound { .. } | TokenError::Removed { .. } => Failure::new(
            503,
            "no-token",
            "the token is not present; insert it and try again",
        ),
        TokenError::PinIncorrect { .. } => Failure::new(403, "pin-incorrect", e.to_string()),
        TokenError::PinLocked => Failure::new(403, "pin-locked", e.to_string()),
        TokenError::AlreadyLoggedIn => Failure::new(409, "busy", e.to_string()),
        other => Failure::new(503, "token", other.to_string()),
    }
}

fn prompt_failure(e: PromptError) -> Failure {
    match e {
        PromptError::Cancelled => Failure::new(403, "cancelled", "the user cancelled"),
        other => Failure::new(503, "prompt", other.to_string()),
    }
}

fn busy_failure(e: Busy) -> Failure {
    Failure::new(409, "busy", e.to_string())
}

fn occupied_failure(e: Occupied) -> Failure {
    Failure::new(409, "busy", e.to_string())
}

/// A page that was just refused asks again too soon.
fn cooling_failure(wait: Duration) -> Failure {
    Failure::new(
        429,
        "cool-down",
        format!(
            "the user declined a moment ago; this page may ask again in {} s",
            wait.as_secs().max(1)
        ),
    )
}

/// Consent, then the PIN (or the reader's PIN pad), then the login the
/// token checks. A denied or timed-out question cools `cool_key` down.
/// Returns the PIN the token accepted (`None`: the PIN pad), for an
/// operation that logs in again (a renewal on a card of several tokens);
/// everyone else drops it at once.
#[allow(clippy::too_many_arguments)]
fn consent_and_login(
    agent: &Agent,
    turn: &Turn,
    lease: &mut Lease,
    info: &TokenInfo,
    question: &str,
    purpose: &str,
    cool_key: Option<&str>,
    declined: &'static str,
) -> Result<Option<AuthPin>, Failure> {
    let cool = || {
        if let Some(k) = cool_key {
            agent.prompts.cool_down(k);
        }
    };
    let refused = |e: PromptError| {
        if matches!(e, PromptError::Cancelled) {
            cool();
        }
        prompt_failure(e)
    };
    if !turn.confirm(question).map_err(refused)? {
        cool();
        return Err(Failure::new(403, "declined", declined));
    }
    if info.pin_locked {
        return Err(token_failure(TokenError::PinLocked));
    }
    if info.protected_auth_path {
        lease.login(None).map_err(token_failure)?;
        Ok(None)
    } else {
        let pin = turn.pin(info, purpose).map_err(refused)?;
        lease.login(Some(&pin)).map_err(token_failure)?;
        Ok(Some(pin))
    }
}

fn parse_id(id: Option<&str>) -> Result<Option<Vec<u8>>, Failure> {
    id.map(|h| hex::decode(h).map_err(|_| Failure::new(400, "id", "id is not hex")))
        .transpose()
}

/// Run blocking token and prompt work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Failure::new(
            503,
            "internal",
            format!("agent task failed: {e}"),
        ))
    })
}
