//! The local API for the bank's web pages, safe by construction.
//!
//! It listens on loopback only. Only connections of the agent's own OS
//! user are served, decided when they are accepted ([`admit`], [`peer`]);
//! every request on them passes the [`gate`] (Host and Origin) before
//! anything else. Behind it: [`status`], the origin-bound
//! [`logon`] and [`renewals`]. Each reaches the token through the agent's
//! one [`Owner`](super::owner::Owner) and the user through its one
//! [`Dialogs`](super::dialogs::Dialogs): consent and PIN are asked in the
//! agent's own pinentry window, never through the page, one question at a
//! time, and a rejected PIN is never retried.

mod admit;
pub mod channel;
mod gate;
mod logon;
pub mod peer;
pub mod renewals;
mod route;
mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

use super::consent::Refusal;
use super::shared::Agent;
use crate::prompt::PromptError;
use crate::renewal::RenewalError;
use crate::token::TokenError;
use gate::{Failure, failure, json_response};

pub use gate::MAX_BODY;
pub use logon::TOKEN_FORMAT;

use admit::{MAX_CONNECTIONS, MAX_HELD, MAX_REFUSING, PER_PROCESS};

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
            reason: match (e.kind(), peer::this_platform().listener(listen)) {
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
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let holding = Arc::new(Semaphore::new(MAX_HELD));
    let own = admit::Own::default();
    let task = tokio::spawn(async move {
        let mut quiet = admit::Quiet::default();
        loop {
            // Accept at once, whatever is being served: a connection waits
            // for its turn here, never in the kernel's backlog.
            let (tcp, from) = tokio::select! {
                _ = &mut stopped => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        quiet.warn(|| format!("accept failed: {e}"));
                        // Out of descriptors, say: let some close first.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            // Who holds the client socket, before a byte of it is read: one
            // exact question to the kernel, answered in microseconds (so
            // asked here: a flood's connections cost no more than that);
            // for this user beyond PER_PROCESS connections, which process,
            // off the async workers.
            let admitted = match peer::this_platform().identify(from, addr) {
                peer::Peer::Own { inode } if own.count() < PER_PROCESS => Ok(own.enter(inode)),
                peer::Peer::Own { inode } => {
                    let own = own.clone();
                    tokio::task::spawn_blocking(move || own.enter(inode))
                        .await
                        .map_err(|_| peer::Peer::Unknown("the check failed"))
                }
                other => Err(other),
            };
            let slot = match admitted {
                Ok(Ok(slot)) => slot,
                Ok(Err(process)) => {
                    quiet.warn(|| match process {
                        Some(p) => format!(
                            "process {p} holds {PER_PROCESS} connections already; closing one from {from}"
                        ),
                        None => format!(
                            "{PER_PROCESS} connections of no known process are open; closing one from {from}"
                        ),
                    });
                    // Held unread for a moment before it is closed: a
                    // client that reconnects at once would otherwise make
                    // the agent accept and look up a connection per
                    // request. Only so many are held; beyond, closed now.
                    if let Ok(permit) = holding.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            tokio::time::sleep(admit::HOLD_TIME).await;
                            drop((tcp, permit));
                        });
                    }
                    continue;
                }
                Err(who) => {
                    quiet.warn(|| match who {
                        peer::Peer::Other(uid) => format!(
                            "refused a connection from {from}: {}'s program",
                            peer::this_platform().user_name(uid)
                        ),
                        _ => format!("refused a connection from {from}: {who:?}"),
                    });
                    // Never a slot of this user's: an answer, then closed.
                    if let Ok(permit) = refusing.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            admit::refuse(tcp, admit::refusal(who)).await;
                            drop(permit);
                        });
                    }
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                quiet.warn(|| {
                    format!("{MAX_CONNECTIONS} connections open; closing one from {from}")
                });
                continue;
            };
            let agent = agent.clone();
            tokio::spawn(async move {
                let _held = (permit, slot);
                let service = service_fn(move |req| {
                    let agent = agent.clone();
                    async move { Ok::<_, Infallible>(handle(agent, addr, req).await) }
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

async fn handle(
    agent: Arc<Agent>,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let origin = match gate::gate(&agent, addr, req.headers()) {
        Ok(o) => o.to_string(),
        // No CORS headers: the page learns nothing, not even the reason.
        // The connection (this user's program's, see `admit`) stays open:
        // every request on it is checked again, and a refusal costs one
        // read, not a new connection.
        Err(f) => return failure(f, None),
    };
    // The connecting process is this user's: only such connections are
    // served at all (see `admit`).
    let o = Some(origin.as_str());
    if req.method() == Method::OPTIONS {
        return gate::preflight(req.headers(), &origin);
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let result = route::route(
        &agent,
        &origin,
        &method,
        &path,
        route::Payload::Http(Box::new(req)),
    )
    .await
    .map(|a| json_response(a.status, &a.body, o));
    result.unwrap_or_else(|f| failure(f, o))
}

/// How each refusal of the agent's doors reads on the wire; the message
/// is the refusal's own ([`Refusal::message`]), the same the tray shows.
impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Failure {
        let (status, code) = match &r {
            Refusal::Declined(_) => (403, "declined"),
            Refusal::Busy(_) => (409, "busy"),
            Refusal::CoolingDown(_) => (429, "cool-down"),
            Refusal::Prompt(PromptError::Cancelled) => (403, "cancelled"),
            Refusal::Prompt(_) => (503, "prompt"),
            Refusal::Token(e) | Refusal::Renewal(RenewalError::Token(e)) => token_code(e),
            Refusal::Renewal(RenewalError::NotNow(_)) => (409, "not-due"),
            Refusal::Renewal(RenewalError::Refused(_)) => (409, "refused"),
            Refusal::Renewal(_) => (503, "renewal"),
            Refusal::NoSuchCertificate => (404, "not-found"),
            Refusal::NoBank => (503, "config"),
            Refusal::State(_) => (503, "state"),
            Refusal::Internal(_) => (503, "internal"),
        };
        Failure::new(status, code, r.message())
    }
}

fn token_code(e: &TokenError) -> (u16, &'static str) {
    match e {
        TokenError::NotFound { .. } | TokenError::Removed { .. } => (503, "no-token"),
        TokenError::PinIncorrect { .. } => (403, "pin-incorrect"),
        TokenError::PinLocked => (403, "pin-locked"),
        TokenError::AlreadyLoggedIn => (409, "busy"),
        _ => (503, "token"),
    }
}

fn token_failure(e: TokenError) -> Failure {
    Refusal::Token(e).into()
}

fn parse_id(id: Option<&str>) -> Result<Option<Vec<u8>>, Failure> {
    id.map(|h| hex::decode(h).map_err(|_| Failure::new(400, "id", "id is not hex")))
        .transpose()
}
