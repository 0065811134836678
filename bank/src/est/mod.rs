//! The bank's HTTPS server: hyper 1 over tokio-rustls. It serves EST
//! (RFC 7030), three operations under `/.well-known/est/`: `cacerts`,
//! `simpleenroll` and `simplereenroll`; and on the same listener the web
//! logon under `/logon/` ([`super::logon`]) and the demo pages
//! ([`super::pages`]), as a bank serves its internet banking and its
//! certificate enrolment from one host.
//!
//! Every byte from the network is hostile: bodies are capped (64 KiB for
//! EST), every phase of a connection has a timeout, and nothing parsed
//! from a request can panic the server; a failure becomes a one-line answer.
//!
//! This file is the server: [`serve`] and its options, the TLS
//! configuration, the connections, and the routing of each request to
//! EST, logon or a page, with its line in `requests.log`. The EST
//! operations themselves are in `operations.rs`.

mod operations;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use certagent::cert::Cert;
use certagent::policy::Policy;

use super::BankError;
use super::ca::Ca;
use super::http::Answer;
use super::logon::{self, Logon};
use super::pages::Pages;
use super::rules::Refusal;
use super::store::Paths;

pub use operations::parse_csr;

/// EST request bodies larger than this are refused (413): a CSR is a few KiB.
pub const MAX_BODY: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer than this, however slowly it trickles.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
/// Connections beyond this are closed at once.
const MAX_CONNECTIONS: usize = 256;
const BASE: &str = "/.well-known/est/";
const LOGON_BASE: &str = "/logon/";
/// Where the agent's local API listens by default (`[agent] listen`).
pub const DEFAULT_AGENT_URL: &str = "http://127.0.0.1:31270";

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Answer the first sighting of each enroll request with 202 and
    /// `Retry-After: 1`, like a CA waiting for manual approval.
    pub first_answer_202: bool,
    pub policy: Policy,
    /// The web origin of the bank's pages, as browsers send it
    /// (`https://host[:port]`). Logon tokens are verified for this origin
    /// only. `None`: `https://localhost:{bound port}`.
    pub origin: Option<String>,
    /// The agent's local API, as the pages call it and as their
    /// Content-Security-Policy allows.
    pub agent_url: String,
    /// How long a logon challenge can be used: [`logon::CHALLENGE_TTL`];
    /// tests shorten it.
    pub challenge_ttl: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            first_answer_202: false,
            policy: Policy::default(),
            origin: None,
            agent_url: DEFAULT_AGENT_URL.to_string(),
            challenge_ttl: logon::CHALLENGE_TTL,
        }
    }
}

/// A bank serving in the background. Dropping it stops the server too,
/// abruptly; [`RunningBank::shutdown`] waits until it has stopped.
pub struct RunningBank {
    addr: SocketAddr,
    origin: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningBank {
    /// The address actually bound (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The web origin logon tokens must be made for.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Stop accepting, close open connections, and wait for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningBank {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Bind and return at once; the server runs in tokio tasks.
pub async fn serve(dir: &std::path::Path, opts: ServeOptions) -> Result<RunningBank, BankError> {
    let paths = Paths::new(dir);
    paths.require_bank()?;
    if paths.tls_ca_key().exists() {
        log::warn!(
            "{} is the private key of the TLS CA testers trust; nothing needs it: delete it \
             (or make a new bank with `certagent-bank init`, whose TLS CA is name-constrained)",
            paths.tls_ca_key().display()
        );
    }
    let ca = super::load_issuing_ca(&paths)?;
    let cacerts = certagent::pkcs7::encode_certs_only(std::slice::from_ref(&ca.cert_der))
        .map_err(|e| BankError::Build(e.to_string()))?;
    let tls = tls_config(&paths, &ca.cert_der)?;
    let url = |what: &'static str, value: &str| {
        logon::web_origin(value).map_err(|reason| BankError::BadUrl {
            what,
            value: value.to_string(),
            reason,
        })
    };
    let agent_url = url("agent URL", &opts.agent_url)?;
    let origin = opts
        .origin
        .as_deref()
        .map(|o| url("origin", o))
        .transpose()?;
    let pages = Pages::new(&agent_url)?;
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| BankError::Bind {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| BankError::Bind {
        addr: opts.listen,
        source,
    })?;
    let origin = origin.unwrap_or_else(|| format!("https://localhost:{}", addr.port()));
    let logon = Logon::new(
        origin.clone(),
        paths.clone(),
        opts.policy.clone(),
        ca.cert_der.clone(),
        opts.challenge_ttl,
    );
    let bank = Arc::new(Bank {
        paths,
        policy: opts.policy,
        first_202: opts.first_answer_202,
        ca,
        logon: Arc::new(logon),
        pages,
        cacerts,
        seen: Mutex::new(HashSet::new()),
        answered: Mutex::new(HashMap::new()),
        log_lock: Mutex::new(()),
    });
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, TlsAcceptor::from(tls), bank, stop_rx));
    log::info!("EST server listening on https://{addr}{BASE}, logon pages for {origin}/");
    Ok(RunningBank {
        addr,
        origin,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

fn tls_config(paths: &Paths, issuing_ca: &[u8]) -> Result<Arc<ServerConfig>, BankError> {
    let tls = |e: &dyn std::fmt::Display| BankError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(issuing_ca.to_vec()))
        .map_err(|e| tls(&e))?;
    // Client certificates are checked against the issuing CA, but are
    // optional: simpleenroll authenticates with a password instead.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
    let chain = CertificateDer::pem_file_iter(paths.tls_cert())
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| BankError::Tls(format!("{}: {e}", paths.tls_cert().display())))?;
    let key = PrivateKeyDer::from_pem_file(paths.tls_key())
        .map_err(|e| BankError::Tls(format!("{}: {e}", paths.tls_key().display())))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    bank: Arc<Bank>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) if connections.len() < MAX_CONNECTIONS => {
                    connections.spawn(connection(tcp, peer, acceptor.clone(), bank.clone()));
                }
                Ok((_, peer)) => log::warn!("too many connections: closing the one from {peer}"),
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

async fn connection(tcp: TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, bank: Arc<Bank>) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            log::info!("TLS handshake with {peer} failed: {e}");
            return;
        }
        Err(_) => {
            log::info!("TLS handshake with {peer} timed out");
            return;
        }
    };
    let tls_version: Option<Arc<str>> = tls
        .get_ref()
        .1
        .protocol_version()
        .map(|v| Arc::from(format!("{v:?}").as_str()));
    let client_cert: Option<Arc<Vec<u8>>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| Arc::new(c.as_ref().to_vec()));
    let service = service_fn(move |req| {
        let bank = bank.clone();
        let client_cert = client_cert.clone();
        let tls_version = tls_version.clone();
        async move { Ok::<_, Infallible>(bank.handle(peer, client_cert, tls_version, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BODY + 16 * 1024)
        .serve_connection(TokioIo::new(tls), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Err(e)) => log::debug!("connection from {peer}: {e}"),
        Err(_) => log::info!("connection from {peer} closed after {CONNECTION_TIMEOUT:?}"),
        Ok(Ok(())) => {}
    }
}

/// A certificate issued (DER) and its serial.
type Issued = (Vec<u8>, String);

/// The serving bank: what every request needs.
struct Bank {
    paths: Paths,
    policy: Policy,
    first_202: bool,
    ca: Ca,
    /// The `/cacerts` answer (DER certs-only PKCS#7), made once.
    cacerts: Vec<u8>,
    logon: Arc<Logon>,
    pages: Pages,
    /// Hashes of enroll requests already answered with 202.
    seen: Mutex<HashSet<[u8; 32]>>,
    /// Certificates issued, by request hash: the identical request sent
    /// again (a client that lost the answer and resumes) gets the same
    /// certificate instead of a "key not new" refusal. The hash covers the
    /// credentials that were checked when it was issued (see
    /// `request_hash` in `operations.rs`), so only the client that
    /// authenticated then gets the remembered answer; anyone else goes
    /// through the rules.
    answered: Mutex<HashMap<[u8; 32], Issued>>,
    log_lock: Mutex<()>,
}

impl Bank {
    async fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        client_cert: Option<Arc<Vec<u8>>>,
        tls_version: Option<Arc<str>>,
        req: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path: String = req.uri().path().chars().take(200).collect();
        let cert_subject = client_cert
            .as_ref()
            .and_then(|d| Cert::from_der(d).ok())
            .map(|c| c.subject);
        let answer = self.clone().route(peer, client_cert, req).await;
        self.log_request(
            &method,
            &path,
            tls_version.as_deref(),
            cert_subject,
            &answer,
        );
        answer.into_response()
    }

    /// EST, logon or a page, by path.
    async fn route(
        self: Arc<Self>,
        peer: SocketAddr,
        client_cert: Option<Arc<Vec<u8>>>,
        req: Request<Incoming>,
    ) -> Answer {
        let path = req.uri().path().to_string();
        if let Some(op) = path.strip_prefix(BASE) {
            return self.est(op, client_cert, req).await;
        }
        if let Some(op) = path.strip_prefix(LOGON_BASE) {
            return self.logon.clone().handle(op, peer.ip(), req).await;
        }
        let accept_language = req
            .headers()
            .get(hyper::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        match self
            .pages
            .get(req.method(), &path, req.uri().query(), accept_language)
        {
            Some(answer) => answer,
            None => Answer::refused(Refusal::new(404, "no such page")),
        }
    }

    /// One JSON line per request in `requests.log`.
    fn log_request(
        &self,
        method: &Method,
        path: &str,
        tls: Option<&str>,
        cert_subject: Option<String>,
        answer: &Answer,
    ) {
        let line = LogLine {
            time: certagent::cert::rfc3339(OffsetDateTime::now_utc()),
            method: method.as_str(),
            path,
            tls,
            client_cert: cert_subject,
            user: answer.user.as_deref(),
            status: answer.status,
            reason: &answer.reason,
        };
        let Ok(line) = serde_json::to_string(&line) else {
            return;
        };
        let _guard = self.log_lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.paths.log())
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = result {
            log::warn!("cannot write {}: {e}", self.paths.log().display());
        }
    }
}

/// One line of `requests.log`, fields in this order.
#[derive(serde::Serialize)]
struct LogLine<'a> {
    time: String,
    method: &'a str,
    path: &'a str,
    /// The TLS version negotiated (`TLSv1_3`, `TLSv1_2`).
    tls: Option<&'a str>,
    client_cert: Option<String>,
    user: Option<&'a str>,
    status: u16,
    reason: &'a str,
}
