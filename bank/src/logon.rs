//! Web logon with the token: the bank's side of the certagent-auth:1
//! token the agent returns from `POST /v1/logon` (see the contract).
//!
//! 1. `POST /logon/challenge`: 32 random bytes, single-use, for five minutes.
//! 2. The page hands the challenge to the agent; the agent signs
//!    `SHA-256(origin) || SHA-256(challenge)` on the token, with the Origin
//!    of the page that called it.
//! 3. `POST /logon/verify`: the bank rebuilds that message from *its own*
//!    origin and a challenge it issued, checks the signature with the
//!    certificate's key, that the certificate is one this bank issued and
//!    the holder's current one, and that its lifecycle state allows logon.
//!    Then it opens a session (a cookie).
//!
//! Because the bank uses its own origin, a token made for any other site
//! (a phishing page that relayed the bank's challenge) does not verify, as
//! in Web eID. Challenges are consumed before anything else is checked, so
//! a failed attempt cannot be retried with the same challenge.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use certagent::cert::{Cert, rfc3339};
use certagent::policy::{Policy, State as Lifecycle};
use certagent::token::SignScheme;

use super::http::{self, Answer};
use super::store::{self, Paths, State, sha256_hex};

/// The only token format this bank reads.
pub const TOKEN_FORMAT: &str = "certagent-auth:1";
/// How long a challenge may be used: long enough to find the token, read
/// the agent's consent window and type a PIN.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
/// A token is a certificate and a signature: a few KiB.
pub const MAX_TOKEN: usize = 16 * 1024;
/// Challenges remembered at once; beyond, the oldest are dropped (its
/// holder just starts again), so a flood of requests cannot exhaust memory.
const MAX_CHALLENGES: usize = 10_000;
/// Used and expired challenges are remembered this long after expiry, so
/// a replay is refused as a replay rather than as an unknown challenge.
const REMEMBER_AFTER_EXPIRY: Duration = Duration::from_secs(10 * 60);
/// A logon session lasts this long, whatever happens in it.
const SESSION_TTL: Duration = Duration::from_secs(30 * 60);
const MAX_SESSIONS: usize = 10_000;
const CHALLENGE_LEN: usize = 32;
pub const SESSION_COOKIE: &str = "session";
/// Set by `/logon/challenge`, so a client may send the agent's token
/// unchanged; a `challenge` field in the token takes precedence.
pub const CHALLENGE_COOKIE: &str = "logon_challenge";

/// Why a logon request was refused. Each has an HTTP status and a stable
/// code for the page; the message is for the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogonError {
    #[error("{0}")]
    Body(String, u16),
    #[error("send the token as application/json")]
    NotJson,
    #[error("the body is not a logon token: {0}")]
    Malformed(String),
    #[error("token format {0:?} is not {TOKEN_FORMAT}")]
    Format(String),
    #[error("no challenge: ask /logon/challenge for one and send it with the token")]
    NoChallenge,
    #[error("the challenge is not base64url")]
    BadChallenge,
    #[error("this bank did not issue this challenge, or has forgotten it: start the logon again")]
    UnknownChallenge,
    #[error("this challenge was already used: start the logon again")]
    ChallengeUsed,
    #[error("the challenge expired after {minutes} minutes: start the logon again")]
    ChallengeExpired { minutes: u64 },
    #[error("the token was made for {got:?}, not for this bank ({want})")]
    WrongOrigin { got: String, want: String },
    #[error("this request comes from a page at {got:?}, not from the bank's own pages ({want})")]
    CrossOrigin { got: String, want: String },
    #[error("the {0} is not standard base64")]
    BadBase64(&'static str),
    #[error("the certificate cannot be read: {0}")]
    BadCertificate(String),
    #[error("algorithm {0:?} is not one of RS256, PS256, ES256")]
    UnsupportedAlgorithm(String),
    #[error("algorithm {alg} does not fit the certificate's key ({key})")]
    AlgorithmMismatch { alg: &'static str, key: String },
    #[error(
        "the signature does not verify with the certificate's key for this bank's origin and challenge"
    )]
    BadSignature,
    #[error("the certificate was not issued by this bank's CA for client logon ({0})")]
    Untrusted(String),
    #[error("this bank has no record of issuing this certificate")]
    NotIssued,
    #[error(
        "this certificate was replaced by a newer one: log on with the newest certificate on your token"
    )]
    Superseded,
    #[error("the certificate is not valid until {0}: check the computer's clock")]
    NotYetValid(String),
    #[error(
        "the certificate expired on {0}: obtain a new one with `certagent enroll` and the bank's one-time password"
    )]
    Expired(String),
    #[error(
        "the certificate expired on {not_after} and the {grace_days}-day grace period is over: the bank must re-issue it"
    )]
    Lapsed { not_after: String, grace_days: u32 },
    #[error("not logged on")]
    NoSession,
    #[error("the session has expired: log on again")]
    SessionExpired,
    #[error("use {0}")]
    Method(&'static str),
    #[error("no such logon operation")]
    NotFound,
    #[error("internal error: {0}")]
    Internal(String),
}

impl LogonError {
    pub fn status(&self) -> u16 {
        use LogonError::*;
        match self {
            Body(_, status) => *status,
            NotJson => 415,
            Malformed(_)
            | Format(_)
            | NoChallenge
            | BadChallenge
            | BadBase64(_)
            | BadCertificate(_)
            | UnsupportedAlgorithm(_)
            | AlgorithmMismatch { .. } => 400,
            UnknownChallenge
            | ChallengeUsed
            | ChallengeExpired { .. }
            | WrongOrigin { .. }
            | CrossOrigin { .. }
            | BadSignature
            | Untrusted(_)
            | NotIssued
            | Superseded
            | NotYetValid(_)
            | Expired(_)
            | Lapsed { .. } => 403,
            NoSession | SessionExpired => 401,
            Method(_) => 405,
            NotFound => 404,
            Internal(_) => 500,
        }
    }

    /// The `error` field: stable, for scripts and the page.
    pub fn code(&self) -> &'static str {
        use LogonError::*;
        match self {
            Body(_, 413) => "too_large",
            Body(_, 408) => "timeout",
            Body(..) => "bad_request",
            NotJson => "not_json",
            Malformed(_) => "bad_json",
            Format(_) => "bad_format",
            NoChallenge => "no_challenge",
            BadChallenge => "bad_challenge",
            UnknownChallenge => "unknown_challenge",
            ChallengeUsed => "challenge_used",
            ChallengeExpired { .. } => "challenge_expired",
            WrongOrigin { .. } => "wrong_origin",
            CrossOrigin { .. } => "cross_origin",
            BadBase64(_) => "bad_base64",
            BadCertificate(_) => "bad_certificate",
            UnsupportedAlgorithm(_) => "unsupported_algorithm",
            AlgorithmMismatch { .. } => "algorithm_mismatch",
            BadSignature => "bad_signature",
            Untrusted(_) => "untrusted_certificate",
            NotIssued => "unknown_certificate",
            Superseded => "superseded_certificate",
            NotYetValid(_) => "certificate_not_yet_valid",
            Expired(_) => "certificate_expired",
            Lapsed { .. } => "certificate_lapsed",
            NoSession => "no_session",
            SessionExpired => "session_expired",
            Method(_) => "method_not_allowed",
            NotFound => "not_found",
            Internal(_) => "internal",
        }
    }

    fn answer(&self) -> Answer {
        let message = self.to_string();
        let answer = Answer::json(
            self.status(),
            &json!({"error": self.code(), "message": message}),
            format!("{}: {message}", self.code()),
        );
        match self {
            LogonError::Method(allow) => answer.with_header(header::ALLOW, allow),
            _ => answer,
        }
    }
}

// ------------------------------------------------------------ challenges

/// One issued challenge.
struct Issued {
    expires: Instant,
    used: bool,
}

/// Challenges issued and not yet forgotten, oldest first. The TTL is the
/// same for all, so insertion order is expiry order.
pub(super) struct Challenges {
    ttl: Duration,
    cap: usize,
    entries: HashMap<[u8; CHALLENGE_LEN], Issued>,
    order: VecDeque<[u8; CHALLENGE_LEN]>,
}

impl Challenges {
    pub fn new(ttl: Duration, cap: usize) -> Challenges {
        Challenges {
            ttl,
            cap: cap.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// A fresh challenge, remembered until it can no longer matter.
    pub fn issue(
        &mut self,
        rng: &dyn SecureRandom,
        now: Instant,
    ) -> Result<[u8; CHALLENGE_LEN], LogonError> {
        self.forget_old(now);
        while self.order.len() >= self.cap {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        let mut c = [0u8; CHALLENGE_LEN];
        rng.fill(&mut c)
            .map_err(|_| LogonError::Internal("the random generator failed".into()))?;
        self.entries.insert(
            c,
            Issued {
                expires: now + self.ttl,
                used: false,
            },
        );
        self.order.push_back(c);
        Ok(c)
    }

    /// Use a challenge: it is spent whatever happens next.
    pub fn take(&mut self, challenge: &[u8], now: Instant) -> Result<(), LogonError> {
        self.forget_old(now);
        let Ok(key) = <[u8; CHALLENGE_LEN]>::try_from(challenge) else {
            return Err(LogonError::UnknownChallenge);
        };
        let entry = self
            .entries
            .get_mut(&key)
            .ok_or(LogonError::UnknownChallenge)?;
        if entry.used {
            return Err(LogonError::ChallengeUsed);
        }
        entry.used = true;
        if now >= entry.expires {
            return Err(LogonError::ChallengeExpired {
                minutes: self.ttl.as_secs().div_ceil(60),
            });
        }
        Ok(())
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some(oldest) = self.order.front() {
            let old = self
                .entries
                .get(oldest)
                .is_none_or(|e| e.expires + REMEMBER_AFTER_EXPIRY <= now);
            if !old {
                break;
            }
            self.entries.remove(oldest);
            self.order.pop_front();
        }
    }
}

// -------------------------------------------------------------- sessions

/// Who is logged on in a session.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub subject: String,
    pub user: Option<String>,
    pub expires: Instant,
    pub expires_at: OffsetDateTime,
}

/// Open sessions by id, oldest first (and so first to expire); bounded
/// like the challenges.
struct Sessions {
    entries: HashMap<[u8; 32], Session>,
    order: VecDeque<[u8; 32]>,
}

impl Sessions {
    fn open(&mut self, id: [u8; 32], session: Session) {
        let now = Instant::now();
        while let Some(oldest) = self.order.front() {
            if self.entries.get(oldest).is_some_and(|s| s.expires > now) {
                break;
            }
            self.entries.remove(oldest);
            self.order.pop_front();
        }
        while self.order.len() >= MAX_SESSIONS {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(id, session);
        self.order.push_back(id);
    }

    fn get(&mut self, id: &[u8], now: Instant) -> Result<Session, LogonError> {
        let key = <[u8; 32]>::try_from(id).map_err(|_| LogonError::NoSession)?;
        let session = self.entries.get(&key).ok_or(LogonError::NoSession)?;
        if now >= session.expires {
            self.entries.remove(&key);
            self.order.retain(|k| *k != key);
            return Err(LogonError::SessionExpired);
        }
        Ok(session.clone())
    }
}

// ----------------------------------------------------------------- token

/// The agent's token as it arrives. Unknown fields are ignored, so a later
/// agent may add some.
#[derive(Debug, Deserialize)]
struct TokenJson {
    format: String,
    certificate: String,
    algorithm: String,
    signature: String,
    origin: String,
    /// The page adds the challenge it passed to the agent; without it the
    /// challenge cookie is used.
    #[serde(default)]
    challenge: Option<String>,
}

/// The message the agent signs: `SHA-256(origin) || SHA-256(challenge)`.
pub fn signed_message(origin: &str, challenge: &[u8]) -> [u8; 64] {
    let mut msg = [0u8; 64];
    msg[..32].copy_from_slice(&Sha256::digest(origin.as_bytes()));
    msg[32..].copy_from_slice(&Sha256::digest(challenge));
    msg
}

/// A JWS algorithm name as a signature scheme.
fn scheme(name: &str) -> Result<SignScheme, LogonError> {
    SignScheme::ALL
        .into_iter()
        .find(|s| s.jws_name() == name)
        .ok_or_else(|| LogonError::UnsupportedAlgorithm(name.chars().take(32).collect()))
}

/// A token whose fields decode, not yet checked.
struct Presented {
    cert: Cert,
    scheme: SignScheme,
    signature: Vec<u8>,
}

fn decode_token(token: &TokenJson) -> Result<Presented, LogonError> {
    let der = STANDARD
        .decode(token.certificate.trim())
        .map_err(|_| LogonError::BadBase64("certificate"))?;
    let cert = Cert::from_der(&der).map_err(|e| LogonError::BadCertificate(e.0))?;
    if cert.not_before > cert.not_after {
        return Err(LogonError::BadCertificate(format!(
            "its validity ends before it begins (not before {}, not after {})",
            rfc3339(cert.not_before),
            rfc3339(cert.not_after)
        )));
    }
    let signature = STANDARD
        .decode(token.signature.trim())
        .map_err(|_| LogonError::BadBase64("signature"))?;
    let scheme = scheme(&token.algorithm)?;
    if !scheme.fits(cert.key) {
        return Err(LogonError::AlgorithmMismatch {
            alg: scheme.jws_name(),
            key: cert.key.to_string(),
        });
    }
    Ok(Presented {
        cert,
        scheme,
        signature,
    })
}

/// The body as a token of the right format, and the challenge it answers
/// (its own `challenge` field, else the challenge cookie), decoded.
fn parse_token(
    body: &[u8],
    cookie_challenge: Option<&str>,
) -> Result<(TokenJson, Vec<u8>), LogonError> {
    let token: TokenJson = serde_json::from_slice(body)
        .map_err(|e| LogonError::Malformed(e.to_string().chars().take(200).collect::<String>()))?;
    if token.format != TOKEN_FORMAT {
        return Err(LogonError::Format(token.format.chars().take(64).collect()));
    }
    let challenge_text = token
        .challenge
        .as_deref()
        .or(cookie_challenge)
        .ok_or(LogonError::NoChallenge)?;
    let challenge = URL_SAFE_NO_PAD
        .decode(challenge_text.trim())
        .map_err(|_| LogonError::BadChallenge)?;
    Ok((token, challenge))
}

/// A token made for this bank's `origin`, its fields decoded.
fn present(token: &TokenJson, origin: &str) -> Result<Presented, LogonError> {
    if token.origin != origin {
        return Err(LogonError::WrongOrigin {
            got: token.origin.chars().take(200).collect(),
            want: origin.to_string(),
        });
    }
    decode_token(token)
}

/// Everything `POST /logon/verify` checks on a request body except the
/// challenge store (whose challenges are random): the token's format,
/// challenge and origin, its fields, the signature over this bank's
/// `origin` and the challenge, the chain to `ca_der`, the bank's record in
/// `state` and the lifecycle at `now`. For fuzzing and tests; the server
/// runs the same steps with the challenge taken from its store in between.
#[doc(hidden)]
pub fn verify_body(
    body: &[u8],
    cookie_challenge: Option<&str>,
    origin: &str,
    ca_der: &[u8],
    state: &State,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<LoggedOn, LogonError> {
    let (token, challenge) = parse_token(body, cookie_challenge)?;
    let presented = present(&token, origin)?;
    check(&presented, origin, &challenge, ca_der, state, policy, now)
}

/// Who logged on, and how their certificate stands.
#[derive(Debug, Clone)]
pub struct LoggedOn {
    pub subject: String,
    pub user: Option<String>,
    pub serial: String,
    pub state: Lifecycle,
    pub days_left: i64,
    pub not_after: OffsetDateTime,
    pub renewal_notice: bool,
}

/// Everything after the challenge: signature over this bank's origin and
/// `challenge`, chain to the issuing CA, the bank's own record, lifecycle.
fn check(
    presented: &Presented,
    origin: &str,
    challenge: &[u8],
    ca_der: &[u8],
    state: &State,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<LoggedOn, LogonError> {
    let cert = &presented.cert;
    let msg = signed_message(origin, challenge);
    if !certagent::cert::verify(&cert.spki_der, presented.scheme, &msg, &presented.signature) {
        return Err(LogonError::BadSignature);
    }
    // Path validation at a moment inside the certificate's validity: an
    // expired certificate of this bank must be refused as expired (below),
    // not as untrusted. On success the lifecycle check puts `now` inside
    // the validity, so then this moment is `now` itself.
    // (Not `Ord::clamp`, which panics on a reversed validity; those are
    // refused when the token is decoded, and this stays safe regardless.)
    let at = now.min(cert.not_after).max(cert.not_before);
    chain_to_ca(&cert.der, ca_der, at).map_err(LogonError::Untrusted)?;
    let record = state
        .record(&cert.serial)
        .filter(|r| r.cert_sha256 == sha256_hex(&cert.der))
        .ok_or(LogonError::NotIssued)?;
    let user_current = record
        .user
        .as_ref()
        .and_then(|u| state.users.get(u))
        .and_then(|u| u.current_serial.as_deref());
    let superseded = record.replaced_by.is_some()
        || (record.user.is_some() && user_current != Some(record.serial.as_str()));
    if superseded {
        return Err(LogonError::Superseded);
    }
    let a = policy.assess(cert.not_before, cert.not_after, now);
    match a.state {
        Lifecycle::Valid | Lifecycle::RenewalDue => Ok(LoggedOn {
            subject: cert.subject.clone(),
            user: record.user.clone(),
            serial: cert.serial.clone(),
            state: a.state,
            days_left: a.days_left,
            not_after: cert.not_after,
            renewal_notice: a.state == Lifecycle::RenewalDue,
        }),
        Lifecycle::NotYetValid => Err(LogonError::NotYetValid(rfc3339(cert.not_before))),
        Lifecycle::Expired => Err(LogonError::Expired(rfc3339(cert.not_after))),
        Lifecycle::Lapsed => Err(LogonError::Lapsed {
            not_after: rfc3339(cert.not_after),
            grace_days: policy.reissue_grace_days,
        }),
    }
}

/// Path validation with webpki (the verifier rustls itself uses) for the
/// client-authentication usage, with the bank's issuing CA as the only
/// anchor, as the agent checks what the bank returns.
fn chain_to_ca(cert_der: &[u8], ca_der: &[u8], at: OffsetDateTime) -> Result<(), String> {
    use rustls_pki_types::{CertificateDer, UnixTime};
    let ca = CertificateDer::from(ca_der);
    let anchor = webpki::anchor_from_trusted_cert(&ca)
        .map_err(|e| format!("the bank's CA certificate is unusable: {e:?}"))?;
    let der = CertificateDer::from(cert_der);
    let ee = webpki::EndEntityCert::try_from(&der).map_err(|e| format!("{e:?}"))?;
    let secs = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        UnixTime::since_unix_epoch(Duration::from_secs(secs)),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("{e:?}"))
}

// ------------------------------------------------------------ the service

/// The logon service of a serving bank.
pub(super) struct Logon {
    origin: String,
    paths: Paths,
    policy: Policy,
    ca_der: Vec<u8>,
    rng: SystemRandom,
    challenges: Mutex<Challenges>,
    sessions: Mutex<Sessions>,
}

impl Logon {
    pub fn new(
        origin: String,
        paths: Paths,
        policy: Policy,
        ca_der: Vec<u8>,
        challenge_ttl: Duration,
    ) -> Logon {
        Logon {
            origin,
            paths,
            policy,
            ca_der,
            rng: SystemRandom::new(),
            challenges: Mutex::new(Challenges::new(challenge_ttl, MAX_CHALLENGES)),
            sessions: Mutex::new(Sessions {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// `op` is the path after `/logon/`.
    pub async fn handle(self: Arc<Self>, op: &str, req: Request<Incoming>) -> Answer {
        let method = req.method().clone();
        let result = match (op, method) {
            ("challenge", Method::POST) => self
                .same_origin(req.headers())
                .and_then(|()| self.challenge()),
            ("verify", Method::POST) => Ok(self.clone().verify(req).await),
            ("session", Method::GET) => self.session(req.headers()),
            ("challenge" | "verify", _) => Err(LogonError::Method("POST")),
            ("session", _) => Err(LogonError::Method("GET")),
            _ => Err(LogonError::NotFound),
        };
        result.unwrap_or_else(|e| e.answer())
    }

    /// A browser names the page that sent a POST; only the bank's own pages
    /// may ask for challenges and log on (no logon from another site's form).
    fn same_origin(&self, headers: &HeaderMap) -> Result<(), LogonError> {
        match headers.get(header::ORIGIN).map(|v| v.to_str()) {
            None => Ok(()),
            Some(Ok(o)) if o == self.origin => Ok(()),
            Some(o) => Err(LogonError::CrossOrigin {
                got: o.unwrap_or("?").chars().take(200).collect(),
                want: self.origin.clone(),
            }),
        }
    }

    /// A new challenge, in the answer and in a cookie.
    fn challenge(&self) -> Result<Answer, LogonError> {
        let (challenge, ttl) = {
            let mut challenges = lock(&self.challenges);
            (challenges.issue(&self.rng, Instant::now())?, challenges.ttl)
        };
        let text = URL_SAFE_NO_PAD.encode(challenge);
        let expires = OffsetDateTime::now_utc() + ttl;
        let cookie = set_cookie(CHALLENGE_COOKIE, &text, "/logon", Some(ttl.as_secs()));
        let body = json!({"challenge": text, "expires": rfc3339(expires)});
        Ok(Answer::json(200, &body, "challenge issued")
            .with_header_value(header::SET_COOKIE, cookie))
    }

    /// A refusal names the holder in the log once the certificate is known
    /// to be theirs (signature, chain and record checked).
    async fn verify(self: Arc<Self>, req: Request<Incoming>) -> Answer {
        let mut holder = None;
        match self.verify_token(req, &mut holder).await {
            Ok(answer) => answer,
            Err(e) => e.answer().with_user(holder),
        }
    }

    async fn verify_token(
        self: Arc<Self>,
        req: Request<Incoming>,
        holder: &mut Option<String>,
    ) -> Result<Answer, LogonError> {
        self.same_origin(req.headers())?;
        if http::media_type(req.headers()).as_deref() != Some("application/json") {
            return Err(LogonError::NotJson);
        }
        let cookie_challenge = http::cookie(req.headers(), CHALLENGE_COOKIE).map(str::to_string);
        let body = http::read_body(req, MAX_TOKEN)
            .await
            .map_err(|r| LogonError::Body(r.reason, r.status))?;
        let (token, challenge) = parse_token(&body, cookie_challenge.as_deref())?;
        lock(&self.challenges).take(&challenge, Instant::now())?;
        let presented = present(&token, &self.origin)?;
        let me = self.clone();
        let (user, result) = tokio::task::spawn_blocking(move || {
            let _guard = store::lock();
            let state = match State::load(&me.paths) {
                Ok(s) => s,
                Err(e) => return (None, Err(LogonError::Internal(e.to_string()))),
            };
            let result = check(
                &presented,
                &me.origin,
                &challenge,
                &me.ca_der,
                &state,
                &me.policy,
                OffsetDateTime::now_utc(),
            );
            let theirs = matches!(
                result,
                Err(LogonError::Superseded
                    | LogonError::NotYetValid(_)
                    | LogonError::Expired(_)
                    | LogonError::Lapsed { .. })
            );
            let user = theirs
                .then(|| state.record(&presented.cert.serial)?.user.clone())
                .flatten();
            (user, result)
        })
        .await
        .map_err(|e| LogonError::Internal(e.to_string()))?;
        *holder = user;
        self.open_session(result?)
    }

    fn open_session(&self, who: LoggedOn) -> Result<Answer, LogonError> {
        let mut id = [0u8; 32];
        self.rng
            .fill(&mut id)
            .map_err(|_| LogonError::Internal("the random generator failed".into()))?;
        let session = Session {
            subject: who.subject.clone(),
            user: who.user.clone(),
            expires: Instant::now() + SESSION_TTL,
            expires_at: OffsetDateTime::now_utc() + SESSION_TTL,
        };
        lock(&self.sessions).open(id, session);
        let body = json!({
            "subject": who.subject,
            "state": who.state.as_str(),
            "days_left": who.days_left,
            "not_after": rfc3339(who.not_after),
            "renewal_notice": who.renewal_notice,
        });
        let reason = format!("logged on as {} ({})", who.subject, who.serial);
        Ok(Answer::json(200, &body, reason)
            .with_user(who.user)
            .with_header_value(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &URL_SAFE_NO_PAD.encode(id), "/", None),
            )
            .with_header_value(
                header::SET_COOKIE,
                set_cookie(CHALLENGE_COOKIE, "", "/logon", Some(0)),
            ))
    }

    fn session(&self, headers: &HeaderMap) -> Result<Answer, LogonError> {
        let id = http::cookie(headers, SESSION_COOKIE).ok_or(LogonError::NoSession)?;
        let id = URL_SAFE_NO_PAD
            .decode(id)
            .map_err(|_| LogonError::NoSession)?;
        let session = lock(&self.sessions).get(&id, Instant::now())?;
        let body = json!({
            "subject": session.subject,
            "expires": rfc3339(session.expires_at),
        });
        Ok(
            Answer::json(200, &body, format!("session of {}", session.subject))
                .with_user(session.user),
        )
    }
}

/// A cookie for the bank alone: never readable by a script, never sent
/// over plain HTTP, never sent with a request another site starts.
fn set_cookie(name: &str, value: &str, path: &str, max_age: Option<u64>) -> HeaderValue {
    let mut text = format!("{name}={value}; HttpOnly; Secure; SameSite=Strict; Path={path}");
    if let Some(secs) = max_age {
        text.push_str(&format!("; Max-Age={secs}"));
    }
    // Names, base64url values and paths are all visible ASCII.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent even if a holder panicked: carry on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A web origin as browsers serialise it (`scheme://host[:port]`, lower
/// case, no default port, no path), or why `s` is not one. Both the bank's
/// origin and the agent's URL go through this: the first is compared byte
/// for byte with what browsers send, the second lands in a CSP header and
/// in the pages, so it must hold nothing but host characters.
pub fn web_origin(s: &str) -> Result<String, String> {
    let lower = s.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = lower
        .split_once("://")
        .ok_or("write it as https://host[:port]")?;
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return Err(format!("the scheme must be https or http, not {scheme:?}")),
    };
    let host_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    // A host (a bracketed IPv6 literal, or up to the first ':'), then
    // nothing or `:port`.
    let (host, port) = if rest.starts_with('[') {
        rest.split_at(rest.find(']').map_or(rest.len(), |i| i + 1))
    } else {
        rest.split_at(rest.find(':').unwrap_or(rest.len()))
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if !host_ok || host.is_empty() || host == "[]" || !port_ok {
        return Err("write it as scheme://host[:port], without a path, user or query".into());
    }
    let rest = rest.strip_suffix(default_port).unwrap_or(rest);
    Ok(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_single_use_and_expire() {
        let rng = SystemRandom::new();
        let t0 = Instant::now();
        let mut c = Challenges::new(Duration::from_secs(300), 100);
        let a = c.issue(&rng, t0).unwrap();
        let b = c.issue(&rng, t0).unwrap();
        assert_ne!(a, b);
        assert_eq!(c.take(&a, t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(c.take(&a, t0), Err(LogonError::ChallengeUsed));
        assert_eq!(
            c.take(&b, t0 + Duration::from_secs(300)),
            Err(LogonError::ChallengeExpired { minutes: 5 })
        );
        // Refused once as expired; after that it is spent.
        assert_eq!(
            c.take(&b, t0 + Duration::from_secs(301)),
            Err(LogonError::ChallengeUsed)
        );
        assert_eq!(c.take(&[0u8; 32], t0), Err(LogonError::UnknownChallenge));
        assert_eq!(c.take(&[0u8; 5], t0), Err(LogonError::UnknownChallenge));
        // Long after expiry they are forgotten.
        let later = t0 + Duration::from_secs(300) + REMEMBER_AFTER_EXPIRY;
        assert_eq!(c.take(&a, later), Err(LogonError::UnknownChallenge));
        assert!(c.entries.is_empty() && c.order.is_empty());
    }

    #[test]
    fn the_oldest_challenge_goes_when_the_cap_is_reached() {
        let rng = SystemRandom::new();
        let now = Instant::now();
        let mut c = Challenges::new(CHALLENGE_TTL, 2);
        let first = c.issue(&rng, now).unwrap();
        let second = c.issue(&rng, now).unwrap();
        let third = c.issue(&rng, now).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.take(&first, now), Err(LogonError::UnknownChallenge));
        assert_eq!(c.take(&second, now), Ok(()));
        assert_eq!(c.take(&third, now), Ok(()));
    }

    #[test]
    fn origins_are_normalised_like_browsers_do() {
        assert_eq!(
            web_origin("https://IB.Bank.example/").unwrap(),
            "https://ib.bank.example"
        );
        assert_eq!(
            web_origin("https://localhost:443").unwrap(),
            "https://localhost"
        );
        assert_eq!(
            web_origin("http://127.0.0.1:31270").unwrap(),
            "http://127.0.0.1:31270"
        );
        assert_eq!(
            web_origin("http://[::1]:31270").unwrap(),
            "http://[::1]:31270"
        );
        for bad in [
            "ib.bank.example",
            "ftp://x",
            "https://",
            "https://x/logon",
            "https://u@x",
            "https://x y",
            "https://x'; script-src *",
            // Found by fuzzing (fuzz/ bank_logon): no host at all, once the
            // default port was dropped "https://" was accepted.
            "https://:443",
            "https://:8443",
            "http://:80",
            "https://[]:443",
            "https://x:",
            "https://x:44a3",
        ] {
            assert!(web_origin(bad).is_err(), "{bad}");
        }
        // What it returns is already normalised.
        for good in ["https://IB.Bank.example:443/", "http://[::1]:31270"] {
            let once = web_origin(good).unwrap();
            assert_eq!(web_origin(&once).as_deref(), Ok(once.as_str()));
        }
    }

    #[test]
    fn the_message_is_two_hashes() {
        let m = signed_message("https://a", b"c");
        assert_eq!(&m[..32], Sha256::digest(b"https://a").as_slice());
        assert_eq!(&m[32..], Sha256::digest(b"c").as_slice());
    }

    #[test]
    fn hostile_bodies_are_refused_with_a_client_error() {
        let state = State::default();
        let policy = Policy::default();
        let now = OffsetDateTime::now_utc();
        let token = |fields: &str| {
            format!(
                r#"{{"format":"certagent-auth:1","algorithm":"ES256","signature":"","origin":"https://b"{fields}}}"#
            )
        };
        let cert = STANDARD.encode(include_bytes!("../../tests/data/any-cert.der"));
        let no_cert = r#","certificate":"""#;
        for (body, cookie, want) in [
            (String::new(), None, "bad_json"),
            ("[]".to_string(), None, "bad_json"),
            (
                r#"{"format":"x","certificate":"","algorithm":"","signature":"","origin":""}"#
                    .to_string(),
                None,
                "bad_format",
            ),
            (token(no_cert), None, "no_challenge"),
            (token(no_cert), Some("%%"), "bad_challenge"),
            (token(r#","certificate":"*""#), Some("AA"), "bad_base64"),
            (
                token(r#","certificate":"MIIB","challenge":"AA""#),
                None,
                "bad_certificate",
            ),
            (
                token(&format!(r#","certificate":"{cert}","challenge":"AA""#)),
                None,
                "algorithm_mismatch",
            ),
        ] {
            let e = verify_body(
                body.as_bytes(),
                cookie,
                "https://b",
                &[],
                &state,
                &policy,
                now,
            )
            .err()
            .unwrap_or_else(|| panic!("{body} verified"));
            assert_eq!(e.code(), want, "{body}: {e}");
            assert!((400..500).contains(&e.status()), "{e}");
        }
        let e = verify_body(
            token(no_cert).as_bytes(),
            Some("AA"),
            "https://other",
            &[],
            &state,
            &policy,
            now,
        )
        .err();
        assert_eq!(e.map(|e| e.code()), Some("wrong_origin"));
    }

    #[test]
    fn every_refusal_has_a_code_and_a_status() {
        let all = [
            LogonError::Body("x".into(), 413),
            LogonError::NotJson,
            LogonError::BadSignature,
            LogonError::NoSession,
            LogonError::Expired("2026-01-01T00:00:00Z".into()),
        ];
        let codes: Vec<_> = all.iter().map(|e| (e.code(), e.status())).collect();
        assert_eq!(
            codes,
            [
                ("too_large", 413),
                ("not_json", 415),
                ("bad_signature", 403),
                ("no_session", 401),
                ("certificate_expired", 403)
            ]
        );
    }
}
