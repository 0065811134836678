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

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use const_oid::AssociatedOid;
use der::Decode;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::name::Name;

use certagent::cert::Cert;
use certagent::policy::Policy;

use super::BankError;
use super::ca::{Ca, ClientCert, random_serial};
use super::csr::{self, CheckedCsr};
use super::http::{Answer, read_body};
use super::logon::{self, Logon};
use super::pages::Pages;
use super::rules::{self, Refusal};
use super::store::{self, Paths, State, record_for, sha256_hex};

/// EST request bodies larger than this are refused (413): a CSR is a few KiB.
pub const MAX_BODY: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer than this, however slowly it trickles.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
/// Connections beyond this are closed at once.
const MAX_CONNECTIONS: usize = 256;
/// Enroll requests remembered for `first_answer_202`.
const MAX_PENDING: usize = 10_000;
const BASE: &str = "/.well-known/est/";
const LOGON_BASE: &str = "/logon/";
const REALM: &str = "Basic realm=\"certagent-bank\"";
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
    /// [`request_hash`]), so only the client that authenticated then gets
    /// the remembered answer; anyone else goes through the rules.
    answered: Mutex<HashMap<[u8; 32], Issued>>,
    log_lock: Mutex<()>,
}

/// Base64 of a PKCS#7 message: wrapped at 64 with CRLF, or one line for
/// clients that cannot read line breaks.
fn pkcs7_answer(der: &[u8], content_type: &'static str, one_line: bool, reason: String) -> Answer {
    let text = if one_line {
        base64::engine::general_purpose::STANDARD.encode(der)
    } else {
        certagent::pkcs7::encode_base64_lines(der)
    };
    Answer {
        status: 200,
        reason,
        user: None,
        content_type,
        headers: vec![(
            header::HeaderName::from_static("content-transfer-encoding"),
            HeaderValue::from_static("base64"),
        )],
        body: Bytes::from(text),
    }
}

fn internal(e: BankError) -> Refusal {
    log::error!("{e}");
    Refusal::new(500, format!("internal error: {e}"))
}

/// strongSwan's `pki --est` decodes the body with a base64 reader that
/// stops at the first line break, and sends no User-Agent. So: line breaks
/// (as RFC 7030's examples have them) only for a client that names itself
/// and is not strongSwan; one unbroken line otherwise, which every base64
/// reader accepts.
fn wants_one_line(headers: &HeaderMap) -> bool {
    match headers.get(header::USER_AGENT) {
        None => true,
        Some(ua) => ua
            .to_str()
            .map(|s| s.to_ascii_lowercase().contains("strongswan"))
            .unwrap_or(true),
    }
}

/// `Authorization: Basic` as (user, password); `None` when absent.
fn basic_auth(headers: &HeaderMap) -> Result<Option<(String, String)>, Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || Refusal::new(401, "malformed Basic credentials");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, creds) = value.trim().split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Refusal::new(401, "only Basic authentication is supported"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(creds.trim())
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (user, password) = text.split_once(':').ok_or_else(malformed)?;
    Ok(Some((user.to_string(), password.to_string())))
}

/// The simpleenroll requester from Basic credentials, or why not (401).
fn password(headers: &HeaderMap) -> Result<Requester, Refusal> {
    match basic_auth(headers)? {
        Some((user, otp)) => Ok(Requester::Password { user, otp }),
        None => Err(Refusal::new(
            401,
            "authentication required: HTTP Basic with user ID and one-time password",
        )),
    }
}

/// The body as a checked CSR: base64 (any line breaks) of DER PKCS#10.
#[doc(hidden)]
pub fn parse_csr(body: &[u8]) -> Result<CheckedCsr, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::bad_request(
            "the body is empty: send a base64 PKCS#10 request",
        ));
    }
    let der = certagent::pkcs7::decode_base64(body)
        .map_err(|_| Refusal::bad_request("the body is not base64 of a PKCS#10 request"))?;
    csr::check(&der).map_err(|e| Refusal::bad_request(e.0))
}

/// What identifies a request to remember its answer by: the operation,
/// the credentials it came with and the body. The credentials are part of
/// it so that a remembered answer (or the approval of a 202) goes only to
/// the client that presented them: the same user ID and one-time
/// password, or the same TLS client certificate (whose key the handshake
/// proved). A request body alone (a CSR is no secret) gets nothing.
fn request_hash(op: &str, requester: &Requester, body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(op.as_bytes());
    match requester {
        Requester::Password { user, otp } => {
            field(b"password");
            field(user.as_bytes());
            field(otp.as_bytes());
        }
        Requester::Certificate(der) => {
            field(b"certificate");
            field(der);
        }
    }
    field(body);
    hasher.finalize().into()
}

/// What an enroll produced.
enum Done {
    Issued { der: Vec<u8>, serial: String },
    Pending,
}

/// Who asks for a certificate.
enum Requester {
    /// simpleenroll: Basic credentials.
    Password { user: String, otp: String },
    /// simplereenroll: the TLS client certificate (DER).
    Certificate(Arc<Vec<u8>>),
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

    async fn est(
        self: Arc<Self>,
        op: &str,
        client_cert: Option<Arc<Vec<u8>>>,
        req: Request<Incoming>,
    ) -> Answer {
        let method = req.method().clone();
        match op {
            "cacerts" if method == Method::GET => pkcs7_answer(
                &self.cacerts,
                "application/pkcs7-mime",
                wants_one_line(req.headers()),
                "CA certificates".into(),
            ),
            "cacerts" => {
                Answer::refused(Refusal::new(405, "use GET")).with_header(header::ALLOW, "GET")
            }
            "simpleenroll" | "simplereenroll" if method != Method::POST => {
                Answer::refused(Refusal::new(405, "use POST")).with_header(header::ALLOW, "POST")
            }
            "simpleenroll" => match password(req.headers()) {
                Ok(requester) => self.enroll(req, requester).await,
                Err(r) => Answer::refused(r).with_header(header::WWW_AUTHENTICATE, REALM),
            },
            "simplereenroll" => match client_cert {
                Some(cert) => self.enroll(req, Requester::Certificate(cert)).await,
                None => Answer::refused(Refusal::forbidden(
                    "renewal needs the current certificate as the TLS client certificate",
                )),
            },
            _ => Answer::refused(Refusal::new(404, "no such EST operation")),
        }
    }

    /// Both enroll operations, once the requester is known.
    async fn enroll(self: Arc<Self>, req: Request<Incoming>, requester: Requester) -> Answer {
        let one_line = wants_one_line(req.headers());
        let op = match requester {
            Requester::Password { .. } => "simpleenroll",
            Requester::Certificate(_) => "simplereenroll",
        };
        let claimed_user = match &requester {
            Requester::Password { user, .. } => Some(user.chars().take(64).collect()),
            Requester::Certificate(_) => None,
        };
        let body = match read_body(req, MAX_BODY).await {
            Ok(b) => b,
            Err(r) => return Answer::refused(r).with_user(claimed_user),
        };
        let csr = match parse_csr(&body) {
            Ok(c) => c,
            Err(r) => return Answer::refused(r).with_user(claimed_user),
        };
        let request_hash = request_hash(op, &requester, &body);
        let bank = self.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let _guard = store::lock();
            if let Some((der, serial)) = bank.answered(&request_hash) {
                return (claimed_from(&requester), Ok(Done::Issued { der, serial }));
            }
            let (user, result) = bank.decide(requester, csr, request_hash);
            if let Ok(Done::Issued { der, serial }) = &result {
                bank.remember(request_hash, der, serial);
            }
            (user, result)
        })
        .await;
        let (user, result) = match outcome {
            Ok(r) => r,
            Err(e) => (
                claimed_user,
                Err(Refusal::new(500, format!("internal error: {e}"))),
            ),
        };
        match result {
            Ok(Done::Issued { der, serial }) => match certagent::pkcs7::encode_certs_only(&[der]) {
                Ok(p7) => pkcs7_answer(
                    &p7,
                    "application/pkcs7-mime; smime-type=certs-only",
                    one_line,
                    format!("issued certificate {serial}"),
                ),
                Err(e) => Answer::refused(Refusal::new(500, format!("internal error: {e}"))),
            },
            Ok(Done::Pending) => Answer {
                status: 202,
                reason: "pending approval: retry with the same request".into(),
                user: None,
                content_type: "",
                headers: vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))],
                body: Bytes::new(),
            },
            Err(r) => Answer::refused(r),
        }
        .with_user(user)
    }

    /// Apply the rules and issue, under the state lock. Returns the user the
    /// request belongs to (for the log) and the outcome.
    fn decide(
        &self,
        requester: Requester,
        csr: CheckedCsr,
        request_hash: [u8; 32],
    ) -> (Option<String>, Result<Done, Refusal>) {
        let mut state = match State::load(&self.paths) {
            Ok(s) => s,
            Err(e) => return (None, Err(internal(e))),
        };
        let now = OffsetDateTime::now_utc();
        match requester {
            Requester::Password { user, otp } => {
                let result = self.decide_enroll(&mut state, &user, &otp, csr, request_hash, now);
                (Some(user.chars().take(64).collect()), result)
            }
            Requester::Certificate(cert) => {
                let holder = Cert::from_der(&cert)
                    .ok()
                    .and_then(|c| state.record(&c.serial).and_then(|r| r.user.clone()));
                let result = self.decide_reenroll(&mut state, &cert, csr, request_hash, now);
                (holder, result)
            }
        }
    }

    fn decide_enroll(
        &self,
        state: &mut State,
        user_id: &str,
        otp: &str,
        csr: CheckedCsr,
        request_hash: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<Done, Refusal> {
        let user = rules::check_otp(state.users.get(user_id), otp)?;
        let current = match user.current_serial.as_deref().and_then(|s| state.record(s)) {
            Some(r) => Some((
                r.not_before().map_err(internal)?,
                r.not_after().map_err(internal)?,
            )),
            None => None,
        };
        rules::may_enroll(&self.policy, user, current, now)?;
        let registered = hex::decode(&user.subject_der).unwrap_or_default();
        // A first request may leave the subject to the bank (an empty name):
        // the bank knows who the user is.
        let mut csr = csr;
        if csr.subject_der == [0x30, 0x00] {
            csr.subject = Name::from_der(&registered)
                .map_err(|e| internal(BankError::Build(format!("registered subject: {e}"))))?;
            csr.subject_der = registered.clone();
        }
        if !csr::same_name(&registered, &csr.subject_der) {
            return Err(Refusal::forbidden(format!(
                "the request's subject \"{}\" is not the registered subject \"{}\"",
                csr.subject, user.subject
            )));
        }
        rules::key_is_new(state.key_certified(&sha256_hex(&csr.spki_der)))?;
        if self.pending(request_hash) {
            return Ok(Done::Pending);
        }
        let (der, serial) = self.issue(state, csr, now, "simpleenroll", Some(user_id))?;
        if let Some(user) = state.users.get_mut(user_id) {
            user.otp_used = true;
            user.reissued = false;
        }
        state.save(&self.paths).map_err(internal)?;
        Ok(Done::Issued { der, serial })
    }

    fn decide_reenroll(
        &self,
        state: &mut State,
        cert_der: &[u8],
        csr: CheckedCsr,
        request_hash: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<Done, Refusal> {
        let not_ours = || Refusal::forbidden("this certificate was not issued by this bank");
        let cert = Cert::from_der(cert_der).map_err(|_| not_ours())?;
        let record = state
            .record(&cert.serial)
            .filter(|r| r.cert_sha256 == sha256_hex(cert_der))
            .ok_or_else(not_ours)?;
        let user_current = record
            .user
            .as_ref()
            .and_then(|u| state.users.get(u))
            .and_then(|u| u.current_serial.as_deref());
        rules::may_reenroll(
            &self.policy,
            record,
            user_current,
            cert.not_before,
            cert.not_after,
            now,
        )?;
        let (_, cert_subject) =
            certagent::cert::raw_issuer_subject(cert_der).ok_or_else(not_ours)?;
        if cert_subject != csr.subject_der {
            return Err(Refusal::forbidden(format!(
                "the request's subject \"{}\" is not the certificate's subject \"{}\"",
                csr.subject, cert.subject
            )));
        }
        // The bank vouched for the current certificate's names, not for
        // whatever a request adds: the new certificate gets its
        // subjectAltName as it stands (or none), whatever the CSR asks.
        let mut csr = csr;
        csr.san = subject_alt_name(cert_der).ok_or_else(not_ours)?;
        rules::key_is_new(state.key_certified(&sha256_hex(&csr.spki_der)))?;
        if self.pending(request_hash) {
            return Ok(Done::Pending);
        }
        let user = record.user.clone();
        let (der, serial) = self.issue(state, csr, now, "simplereenroll", user.as_deref())?;
        state.save(&self.paths).map_err(internal)?;
        Ok(Done::Issued { der, serial })
    }

    fn answered(&self, request_hash: &[u8; 32]) -> Option<(Vec<u8>, String)> {
        let answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
        answered.get(request_hash).cloned()
    }

    fn remember(&self, request_hash: [u8; 32], der: &[u8], serial: &str) {
        let mut answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
        if answered.len() >= MAX_PENDING {
            answered.clear();
        }
        answered.insert(request_hash, (der.to_vec(), serial.to_string()));
    }

    /// With `first_answer_202`: true the first time this request is seen.
    fn pending(&self, request_hash: [u8; 32]) -> bool {
        if !self.first_202 {
            return false;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded memory: forgetting old sightings only means another 202.
        if seen.len() >= MAX_PENDING {
            seen.clear();
        }
        seen.insert(request_hash)
    }

    /// Issue a 365-day certificate for the request and record it.
    fn issue(
        &self,
        state: &mut State,
        csr: CheckedCsr,
        now: OffsetDateTime,
        how: &str,
        user: Option<&str>,
    ) -> Result<(Vec<u8>, String), Refusal> {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let serial = random_serial(|s| state.serial_taken(s)).map_err(internal)?;
        let der = self
            .ca
            .issue_client(&ClientCert {
                subject: csr.subject,
                spki: csr.spki,
                serial,
                not_before: now - time::Duration::minutes(1),
                not_after: now + time::Duration::days(super::ca::CLIENT_DAYS),
                san: csr.san,
            })
            .map_err(internal)?;
        let record = record_for(&der, how, user).map_err(internal)?;
        let serial = record.serial.clone();
        state.add_certificate(record);
        Ok((der, serial))
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

/// The subjectAltName extension of a certificate exactly as it stands
/// (`Some(None)`: it has none); `None` if the certificate does not parse.
fn subject_alt_name(cert_der: &[u8]) -> Option<Option<Extension>> {
    let cert = x509_cert::Certificate::from_der(cert_der).ok()?;
    Some(
        cert.tbs_certificate()
            .extensions()
            .into_iter()
            .flatten()
            .find(|e| e.extn_id == SubjectAltName::OID)
            .cloned(),
    )
}

/// The user a request claims to be, for the log of a repeated answer.
fn claimed_from(requester: &Requester) -> Option<String> {
    match requester {
        Requester::Password { user, .. } => Some(user.chars().take(64).collect()),
        Requester::Certificate(_) => None,
    }
}
