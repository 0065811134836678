//! The EST operations of the serving bank: `cacerts`, `simpleenroll`
//! and `simplereenroll`. Who asks (Basic credentials or the TLS client
//! certificate), the CSR in the body, the bank's rules, the certificate
//! issued, and the answers remembered by request hash.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use const_oid::AssociatedOid;
use der::Decode;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::name::Name;

use certagent::cert::Cert;

use super::{Bank, MAX_BODY};
use crate::BankError;
use crate::ca::{ClientCert, random_serial};
use crate::csr::{self, CheckedCsr};
use crate::http::{Answer, read_body};
use crate::rules::{self, Refusal};
use crate::store::{self, State, record_for, sha256_hex};

/// Enroll requests remembered for `first_answer_202`.
const MAX_PENDING: usize = 10_000;
const REALM: &str = "Basic realm=\"certagent-bank\"";

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
    pub(super) async fn est(
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
                not_after: now + time::Duration::days(crate::ca::CLIENT_DAYS),
                san: csr.san,
            })
            .map_err(internal)?;
        let record = record_for(&der, how, user).map_err(internal)?;
        let serial = record.serial.clone();
        state.add_certificate(record);
        Ok((der, serial))
    }
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
