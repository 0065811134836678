//! The local API for the bank's web pages, safe by construction.
//!
//! It listens on loopback only. Every request is checked before anything
//! else happens: the Host must be the listen address (or `localhost:port`),
//! which defeats DNS rebinding; the Origin must be exactly one of `[bank]
//! origins`, which stops every other web page. A refused request gets a 403
//! and nothing else: no prompt, no token access, no certificate details, no
//! CORS headers. POSTs must be `application/json` (so a plain HTML form
//! cannot send one) and at most 16 KiB. Only one logon prompt is on screen
//! at a time; consent and PIN are asked in the agent's own pinentry window,
//! never through the page, and a rejected PIN is never retried.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

use crate::cert::{Cert, StatusEntry, rfc3339};
use crate::config::Config;
use crate::drivers::Drivers;
use crate::policy::State;
use crate::prompt::{Prompt, PromptError};
use crate::renewal::{self, Step};
use crate::token::{Module, SignScheme, Token, TokenError, TokenInfo};

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A logon waits for the user at most this long (pinentry has its own timeout too).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
/// The format tag of logon tokens.
pub const TOKEN_FORMAT: &str = "certagent-auth:1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("the local API needs [bank] origins in the configuration: no web page could call it")]
    NoOrigins,
}

/// What the API needs from the rest of the agent.
pub struct Agent {
    pub config: Config,
    pub drivers: Drivers,
    pub prompt: Arc<dyn Prompt>,
    logon_busy: AtomicBool,
    renewal_busy: Arc<AtomicBool>,
    renewals: Arc<Mutex<HashMap<String, RenewalStatus>>>,
}

/// A renewal started through the API.
#[derive(Debug, Clone, Serialize)]
pub struct RenewalStatus {
    pub id: String,
    /// running | done | failed
    pub state: &'static str,
    pub step: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

impl Agent {
    pub fn new(config: Config, drivers: Drivers, prompt: Arc<dyn Prompt>) -> Agent {
        Agent {
            config,
            drivers,
            prompt,
            logon_busy: AtomicBool::new(false),
            renewal_busy: Arc::new(AtomicBool::new(false)),
            renewals: Arc::new(Mutex::new(HashMap::new())),
        }
    }
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
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| ApiError::Bind {
        addr: listen,
        reason: e.to_string(),
    })?;
    let (stop, mut stopped) = oneshot::channel();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = &mut stopped => return,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            let (tcp, _) = tokio::select! {
                _ = &mut stopped => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        log::warn!("local API: accept failed: {e}");
                        continue;
                    }
                },
            };
            let agent = agent.clone();
            tokio::spawn(async move {
                let _permit = permit;
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

/// An error as the API returns it.
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
        }
    }
}

fn json_response(
    status: StatusCode,
    body: &impl Serialize,
    origin: Option<&str>,
) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    if let Some(o) = origin {
        cors(h, o);
    }
    resp
}

fn cors(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn failure(f: Failure, origin: Option<&str>) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct Body<'a> {
        error: &'a str,
        message: &'a str,
    }
    json_response(
        f.status,
        &Body {
            error: f.code,
            message: &f.message,
        },
        origin,
    )
}

/// Host and Origin, checked before anything else. Returns the allowed origin.
fn gate<'a>(agent: &'a Agent, addr: SocketAddr, headers: &HeaderMap) -> Result<&'a str, Failure> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let by_name = format!("localhost:{}", addr.port());
    if host != addr.to_string() && host != by_name {
        return Err(Failure::new(
            403,
            "host",
            "the Host header is not this agent's address",
        ));
    }
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let origins = agent
        .config
        .bank
        .as_ref()
        .map(|b| b.origins.as_slice())
        .unwrap_or_default();
    match origin.and_then(|o| origins.iter().find(|allowed| allowed.as_str() == o)) {
        Some(allowed) => Ok(allowed.as_str()),
        None => Err(Failure::new(
            403,
            "origin",
            "this web page is not allowed to use the agent",
        )),
    }
}

async fn handle(
    agent: Arc<Agent>,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let origin = match gate(&agent, addr, req.headers()) {
        Ok(o) => o.to_string(),
        // No CORS headers: the page learns nothing, not even the reason.
        Err(f) => return failure(f, None),
    };
    let o = Some(origin.as_str());
    if req.method() == Method::OPTIONS {
        return preflight(req.headers(), &origin);
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let result = match (method.clone(), path.as_str()) {
        (Method::GET, "/v1/status") => status(&agent)
            .await
            .map(|b| json_response(StatusCode::OK, &b, o)),
        (Method::POST, "/v1/logon") => match read_json::<LogonRequest>(req).await {
            Ok(r) => logon(&agent, &origin, r)
                .await
                .map(|b| json_response(StatusCode::OK, &b, o)),
            Err(f) => Err(f),
        },
        (Method::POST, "/v1/renewals") => match read_json::<RenewalRequest>(req).await {
            Ok(r) => start_renewal(&agent, &origin, r)
                .await
                .map(|b| json_response(StatusCode::ACCEPTED, &b, o)),
            Err(f) => Err(f),
        },
        (Method::GET, p) if p.starts_with("/v1/renewals/") => {
            let id = &p["/v1/renewals/".len()..];
            let found = agent
                .renewals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .cloned();
            found
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

/// CORS preflight, as browsers expect, including Private/Local Network Access.
fn preflight(headers: &HeaderMap, origin: &str) -> Response<Full<Bytes>> {
    let method_ok = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| m == "GET" || m == "POST");
    if !method_ok {
        return failure(Failure::new(403, "preflight", "method not allowed"), None);
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    cors(h, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    for (ask, allow) in [
        (
            "access-control-request-private-network",
            "access-control-allow-private-network",
        ),
        (
            "access-control-request-local-network",
            "access-control-allow-local-network",
        ),
    ] {
        if headers.get(ask).and_then(|v| v.to_str().ok()) == Some("true") {
            h.insert(allow, HeaderValue::from_static("true"));
        }
    }
    resp
}

async fn read_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, Failure> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Failure::new(
            400,
            "content-type",
            "the body must be application/json",
        ));
    }
    let too_large = || {
        Failure::new(
            413,
            "too-large",
            format!("the body is larger than {} KiB", MAX_BODY / 1024),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let body = match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => return Err(Failure::new(400, "timeout", "the body took too long")),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(too_large());
        }
        Ok(Err(e)) => {
            return Err(Failure::new(
                400,
                "body",
                format!("cannot read the body: {e}"),
            ));
        }
        Ok(Ok(b)) => b.to_bytes(),
    };
    serde_json::from_slice(&body)
        .map_err(|e| Failure::new(400, "json", format!("malformed JSON: {e}")))
}

#[derive(Serialize)]
struct StatusBody {
    version: &'static str,
    token_present: bool,
    token: Option<TokenInfo>,
    certificates: Vec<StatusEntry>,
}

/// Open the configured token (blocking work, off the async workers).
async fn with_token<T: Send + 'static>(
    agent: &Arc<Agent>,
    f: impl FnOnce(Arc<Token>) -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let a = agent.clone();
    tokio::task::spawn_blocking(move || {
        let module = Module::load(&a.config.token.module, &a.drivers).map_err(token_failure)?;
        let token = module
            .open(&a.config.token.selector)
            .map_err(token_failure)?;
        f(Arc::new(token))
    })
    .await
    .unwrap_or_else(|e| {
        Err(Failure::new(
            503,
            "internal",
            format!("agent task failed: {e}"),
        ))
    })
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
        other => Failure::new(503, "token", other.to_string()),
    }
}

fn prompt_failure(e: PromptError) -> Failure {
    match e {
        PromptError::Cancelled => Failure::new(403, "cancelled", "the user cancelled"),
        other => Failure::new(503, "prompt", other.to_string()),
    }
}

async fn status(agent: &Arc<Agent>) -> Result<StatusBody, Failure> {
    let policy = agent.config.policy.clone();
    let version = env!("CARGO_PKG_VERSION");
    let found = with_token(agent, move |token| {
        let info = token.info().map_err(token_failure)?;
        let now = OffsetDateTime::now_utc();
        let certs = bank_certs(&token)?
            .iter()
            .map(|(id, c)| StatusEntry::new(id, c, &policy, now))
            .collect();
        Ok((info, certs))
    })
    .await;
    match found {
        Ok((info, certificates)) => Ok(StatusBody {
            version,
            token_present: true,
            token: Some(info),
            certificates,
        }),
        Err(f) if f.code == "no-token" => Ok(StatusBody {
            version,
            token_present: false,
            token: None,
            certificates: Vec::new(),
        }),
        Err(f) => Err(f),
    }
}

fn bank_certs(token: &Token) -> Result<Vec<(Vec<u8>, Cert)>, Failure> {
    Ok(crate::cert::bank_certificates(token)
        .map_err(token_failure)?
        .into_iter()
        .map(|c| (c.id, c.cert))
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogonRequest {
    challenge: String,
    id: Option<String>,
}

#[derive(Serialize)]
struct LogonToken {
    format: &'static str,
    certificate: String,
    algorithm: &'static str,
    signature: String,
    origin: String,
}

/// Releases the one-logon-at-a-time flag however the logon ends.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn parse_id(id: Option<&str>) -> Result<Option<Vec<u8>>, Failure> {
    id.map(|h| hex::decode(h).map_err(|_| Failure::new(400, "id", "id is not hex")))
        .transpose()
}

/// Which certificate: the one named, else the single usable one.
fn choose(
    certs: Vec<(Vec<u8>, Cert)>,
    id: Option<&[u8]>,
    usable: impl Fn(&Cert) -> bool,
) -> Result<(Vec<u8>, Cert), Failure> {
    match id {
        Some(want) => certs.into_iter().find(|(i, _)| i == want).ok_or_else(|| {
            Failure::new(404, "not-found", "no certificate with that id on the token")
        }),
        None => {
            let mut usable: Vec<_> = certs.into_iter().filter(|(_, c)| usable(c)).collect();
            match usable.len() {
                1 => Ok(usable.remove(0)),
                0 => Err(Failure::new(
                    409,
                    "no-certificate",
                    "no usable bank certificate on the token",
                )),
                _ => Err(Failure::new(
                    400,
                    "ambiguous",
                    "several certificates are on the token; name one with id",
                )),
            }
        }
    }
}

async fn logon(agent: &Arc<Agent>, origin: &str, req: LogonRequest) -> Result<LogonToken, Failure> {
    // Everything about the request is checked before the user is bothered.
    let challenge = URL_SAFE_NO_PAD
        .decode(req.challenge.trim_end_matches('='))
        .map_err(|_| Failure::new(400, "challenge", "the challenge is not base64url"))?;
    if !(32..=64).contains(&challenge.len()) {
        return Err(Failure::new(
            400,
            "challenge",
            "the challenge must be 32 to 64 bytes",
        ));
    }
    let id = parse_id(req.id.as_deref())?;
    // A running renewal keeps the token logged in, and a PIN typed now would
    // not be checked by the token; logons wait until it is done.
    if agent.renewal_busy.load(Ordering::SeqCst) {
        return Err(Failure::new(
            409,
            "busy",
            "a renewal is running; log on when it is done",
        ));
    }
    if agent
        .logon_busy
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(Failure::new(
            409,
            "busy",
            "another logon is waiting for the user",
        ));
    }
    let a = agent.clone();
    let origin = origin.to_string();
    with_token(agent, move |token| {
        let _busy = Busy(&a.logon_busy);
        let now = OffsetDateTime::now_utc();
        let policy = &a.config.policy;
        let (id, cert) = choose(bank_certs(&token)?, id.as_deref(), |c| {
            matches!(policy.assess(c.not_before, c.not_after, now).state, State::Valid | State::RenewalDue)
        })?;
        let state = policy.assess(cert.not_before, cert.not_after, now).state;
        if !matches!(state, State::Valid | State::RenewalDue) {
            return Err(Failure::new(409, "certificate", format!("the certificate is {state}; {}", state.advice())));
        }
        let question = format!(
            "The web page {origin} asks to log you on with your certificate\n\n{}\n(valid until {}).\n\nAllow?",
            cert.subject,
            rfc3339(cert.not_after)
        );
        if !a.prompt.confirm(&question).map_err(prompt_failure)? {
            return Err(Failure::new(403, "declined", "the user declined the logon"));
        }
        let info = token.info().map_err(token_failure)?;
        if info.pin_locked {
            return Err(token_failure(TokenError::PinLocked));
        }
        if info.protected_auth_path {
            token.login(None).map_err(token_failure)?;
        } else {
            let pin = a.prompt.pin(&info, &format!("log on at {origin}")).map_err(prompt_failure)?;
            token.login(Some(&pin)).map_err(token_failure)?;
        }
        let scheme = match cert.key {
            crate::token::PublicKeyAlg::EcP256 => SignScheme::EcdsaP256Sha256,
            _ if token.supports(SignScheme::RsaPssSha256) => SignScheme::RsaPssSha256,
            _ => SignScheme::RsaPkcs1Sha256,
        };
        let mut message = Vec::with_capacity(64);
        message.extend_from_slice(&Sha256::digest(origin.as_bytes()));
        message.extend_from_slice(&Sha256::digest(&challenge));
        let signature = token.sign(&id, scheme, &message).map_err(token_failure)?;
        Ok(LogonToken {
            format: TOKEN_FORMAT,
            certificate: STANDARD.encode(&cert.der),
            algorithm: scheme.jws_name(),
            signature: STANDARD.encode(signature),
            origin,
        })
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewalRequest {
    id: Option<String>,
}

#[derive(Serialize)]
struct RenewalStarted {
    id: String,
}

/// Who asks for a renewal, as the consent question names them.
pub enum Requester<'a> {
    /// A web page of this (allowed) origin.
    Page(&'a str),
    /// The user, from the tray menu or a notification.
    Desktop,
}

/// Start a renewal after the user's consent and PIN; returns its id, whose
/// progress is in [`Agent::renewal`].
pub async fn renew_with_consent(
    agent: &Arc<Agent>,
    requester: Requester<'_>,
    id: Option<Vec<u8>>,
) -> Result<String, String> {
    start_renewal_inner(agent, requester, id)
        .await
        .map(|r| r.id)
        .map_err(|f| f.message)
}

impl Agent {
    /// The state of a renewal started through [`renew_with_consent`] or the API.
    pub fn renewal(&self, id: &str) -> Option<RenewalStatus> {
        self.renewals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}

async fn start_renewal(
    agent: &Arc<Agent>,
    origin: &str,
    req: RenewalRequest,
) -> Result<RenewalStarted, Failure> {
    let id = parse_id(req.id.as_deref())?;
    start_renewal_inner(agent, Requester::Page(origin), id).await
}

async fn start_renewal_inner(
    agent: &Arc<Agent>,
    requester: Requester<'_>,
    id: Option<Vec<u8>>,
) -> Result<RenewalStarted, Failure> {
    let Some(bank) = agent.config.bank.clone() else {
        return Err(Failure::new(
            503,
            "config",
            "no [bank] in the agent's configuration",
        ));
    };
    if agent
        .renewal_busy
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(Failure::new(409, "busy", "a renewal is already running"));
    }
    let busy = agent.renewal_busy.clone();
    let a = agent.clone();
    let who = match requester {
        Requester::Page(origin) => format!("The web page {origin} asks to renew your certificate"),
        Requester::Desktop => "Renew your bank certificate".to_string(),
    };
    let prepared = with_token(agent, move |token| {
        let now = OffsetDateTime::now_utc();
        let policy = &a.config.policy;
        let (id, cert) = choose(bank_certs(&token)?, id.as_deref(), |c| {
            policy.assess(c.not_before, c.not_after, now).state == State::RenewalDue
        })?;
        let a_state = policy.assess(cert.not_before, cert.not_after, now);
        if a_state.state != State::RenewalDue {
            return Err(Failure::new(
                409,
                "not-due",
                format!(
                    "the certificate is {}; {}",
                    a_state.state,
                    a_state.state.advice()
                ),
            ));
        }
        let question = format!(
            "{who}\n\n{}\n(expires {}).\n\nA new key will be generated on your token. Allow?",
            cert.subject,
            rfc3339(cert.not_after)
        );
        if !a.prompt.confirm(&question).map_err(prompt_failure)? {
            return Err(Failure::new(
                403,
                "declined",
                "the user declined the renewal",
            ));
        }
        let info = token.info().map_err(token_failure)?;
        if info.protected_auth_path {
            token.login(None).map_err(token_failure)?;
        } else {
            let pin = a
                .prompt
                .pin(&info, "renew your bank certificate")
                .map_err(prompt_failure)?;
            token.login(Some(&pin)).map_err(token_failure)?;
        }
        let label = token
            .certificates()
            .ok()
            .and_then(|cs| cs.into_iter().find(|c| c.id == id).map(|c| c.label))
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "bank certificate".to_string());
        Ok((token, info.serial, id, cert, label))
    })
    .await;
    let (token, serial, old_id, old, label) = match prepared {
        Ok(p) => p,
        Err(f) => {
            busy.store(false, Ordering::SeqCst);
            return Err(f);
        }
    };
    let mut rid = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rid)
        .map_err(|_| Failure::new(503, "internal", "no randomness"))?;
    let rid = hex::encode(rid);
    let renewals = agent.renewals.clone();
    let set = {
        let renewals = renewals.clone();
        let rid = rid.clone();
        move |update: &dyn Fn(&mut RenewalStatus)| {
            let mut map = renewals.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = map.get_mut(&rid) {
                update(s);
            }
        }
    };
    renewals.lock().unwrap_or_else(|e| e.into_inner()).insert(
        rid.clone(),
        RenewalStatus {
            id: rid.clone(),
            state: "running",
            step: Step::Started.as_str().into(),
            message: "starting".into(),
            certificate: None,
            not_after: None,
        },
    );
    let key = agent.config.key;
    let state_dir = crate::config::state_dir();
    tokio::spawn(async move {
        let progress = |step: Step, message: &str| {
            set(&|s: &mut RenewalStatus| {
                s.step = step.as_str().to_string();
                s.message = message.to_string();
            });
        };
        let result = renewal::renew_now(
            token, &serial, &bank, key, &old_id, &old, &label, &state_dir, &progress,
        )
        .await;
        match result {
            Ok(new) => set(&|s: &mut RenewalStatus| {
                s.state = "done";
                s.step = Step::Done.as_str().into();
                s.message = format!("renewed: {}", new.subject);
                s.certificate = Some(STANDARD.encode(&new.der));
                s.not_after = Some(rfc3339(new.not_after));
            }),
            Err(e) => {
                let text = e.to_string();
                set(&|s: &mut RenewalStatus| {
                    s.state = "failed";
                    s.message = text.clone();
                });
            }
        }
        busy.store(false, Ordering::SeqCst);
    });
    Ok(RenewalStarted { id: rid })
}
