//! The bank's protocol: EST (RFC 7030) over TLS.
//!
//! `/cacerts` fetches the issuing CA; `/simplereenroll` renews with the
//! current certificate as the TLS client certificate; `/simpleenroll`
//! obtains a first certificate with HTTP Basic (the bank's ID and one-time
//! password). A 202 with Retry-After means "send the identical request
//! again later"; the caller does that with the same CSR.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::pkcs7::{Pkcs7Error, decode_response, encode_base64_lines};

/// The most characters of a bank's refusal shown.
const REFUSAL_MAX: usize = 300;
/// Largest answer body accepted from the bank.
const MAX_BODY: usize = 1 << 20;
/// Time allowed for connecting, the TLS handshake (token signing included)
/// and the whole exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait a 202's Retry-After can ask for: as long as certagent
/// keeps resending at all (`renewal::MAX_PENDING_WAIT`); a longer one is
/// cut to it, so the caller gives up rather than sleeping for ages.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The shortest: a bank answering `Retry-After: 0` is not asked again in a
/// tight loop.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The wait when a 202 carries no usable Retry-After (none, an HTTP-date,
/// garbage).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EstError {
    #[error("bad bank URL {0:?}: {1}")]
    Url(String, String),
    #[error("cannot reach the bank at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("TLS with the bank failed: {0}")]
    Tls(String),
    #[error("the bank's answer could not be read: {0}")]
    Http(String),
    #[error("the bank refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the bank's answer is unusable: {0}")]
    Answer(#[from] Pkcs7Error),
    #[error("the bank did not answer within {0:?}")]
    Timeout(Duration),
}

/// What an enrolment request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EstAnswer {
    /// The certificates returned (DER).
    Issued(Vec<Vec<u8>>),
    /// Accepted for processing: send the identical request again after this long.
    Pending(Duration),
}

/// An EST client for one bank.
#[derive(Clone)]
pub struct EstClient {
    base: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    tls: Arc<ClientConfig>,
}

impl std::fmt::Debug for EstClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstClient")
            .field("base", &self.base)
            .finish()
    }
}

impl EstClient {
    /// `est_url` is the RFC 7030 base, e.g. `https://bank/.well-known/est`.
    pub fn new(est_url: &str, tls: ClientConfig) -> Result<EstClient, EstError> {
        let bad = |why: &str| EstError::Url(est_url.to_string(), why.to_string());
        let uri: Uri = est_url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("must be https"));
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| bad("host is not a DNS name or IP address"))?;
        Ok(EstClient {
            base: est_url.trim_end_matches('/').to_string(),
            host,
            port,
            server_name,
            tls: Arc::new(tls),
        })
    }

    /// `GET /cacerts`: the bank's issuing CA certificates (DER).
    pub async fn cacerts(&self) -> Result<Vec<Vec<u8>>, EstError> {
        let (status, _, body) = self.exchange(Method::GET, "cacerts", None, None).await?;
        if status != StatusCode::OK {
            return Err(refused(status, &body));
        }
        Ok(decode_response(&body)?)
    }

    /// `POST /simplereenroll` with the CSR (DER); the TLS client certificate
    /// authenticates.
    pub async fn simplereenroll(&self, csr_der: &[u8]) -> Result<EstAnswer, EstError> {
        self.enroll("simplereenroll", csr_der, None).await
    }

    /// `POST /simpleenroll` with HTTP Basic `user:otp`.
    pub async fn simpleenroll(
        &self,
        csr_der: &[u8],
        user: &str,
        otp: &str,
    ) -> Result<EstAnswer, EstError> {
        let auth = format!("Basic {}", STANDARD.encode(format!("{user}:{otp}")));
        self.enroll("simpleenroll", csr_der, Some(auth)).await
    }

    async fn enroll(
        &self,
        op: &str,
        csr_der: &[u8],
        auth: Option<String>,
    ) -> Result<EstAnswer, EstError> {
        let body = Bytes::from(encode_base64_lines(csr_der));
        let (status, retry_after, answer) =
            self.exchange(Method::POST, op, Some(body), auth).await?;
        match status {
            StatusCode::OK => Ok(EstAnswer::Issued(decode_response(&answer)?)),
            StatusCode::ACCEPTED => Ok(EstAnswer::Pending(retry_after)),
            other => Err(refused(other, &answer)),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        op: &str,
        body: Option<Bytes>,
        auth: Option<String>,
    ) -> Result<(StatusCode, Duration, Bytes), EstError> {
        tokio::time::timeout(
            EXCHANGE_TIMEOUT,
            self.exchange_inner(method, op, body, auth),
        )
        .await
        .map_err(|_| EstError::Timeout(EXCHANGE_TIMEOUT))?
    }

    async fn exchange_inner(
        &self,
        method: Method,
        op: &str,
        body: Option<Bytes>,
        auth: Option<String>,
    ) -> Result<(StatusCode, Duration, Bytes), EstError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| EstError::Connect {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        // The handshake verifies the bank's certificate against server_roots
        // before a single byte of the request is sent.
        let tls = TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| EstError::Tls(tls_reason(&e)))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| EstError::Http(e.to_string()))?;
        let conn_task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("EST connection ended: {e}");
            }
        });
        let host_header = if self.port == 443 {
            self.host.clone()
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            addr.clone()
        };
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}/{op}", path_of(&self.base)))
            .header(hyper::header::HOST, host_header)
            .header(
                hyper::header::USER_AGENT,
                concat!("certagent/", env!("CARGO_PKG_VERSION")),
            )
            .header(hyper::header::ACCEPT, "application/pkcs7-mime");
        if body.is_some() {
            req = req
                .header(hyper::header::CONTENT_TYPE, "application/pkcs10")
                .header("Content-Transfer-Encoding", "base64");
        }
        if let Some(a) = auth {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| EstError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| EstError::Http(e.to_string()))?;
        let status = resp.status();
        let retry_after = retry_after(
            resp.headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| EstError::Http(format!("reading the answer: {e}")))?
            .to_bytes();
        conn_task.abort();
        Ok((status, retry_after, body))
    }
}

/// The wait a 202's `Retry-After` asks for, bounded to
/// [`MIN_RETRY_AFTER`]..=[`MAX_RETRY_AFTER`]: delay-seconds of any length
/// (more digits than a u64 holds is simply "very long"); anything else
/// (absent, an HTTP-date, garbage) is [`DEFAULT_RETRY_AFTER`].
pub fn retry_after(value: Option<&str>) -> Duration {
    let Some(digits) = value
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    else {
        return DEFAULT_RETRY_AFTER;
    };
    let secs = digits.parse::<u64>().unwrap_or(u64::MAX);
    Duration::from_secs(secs).clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
}

/// The path part of the base URL (`/.well-known/est`).
fn path_of(base: &str) -> &str {
    let after_scheme = base.split_once("://").map_or(base, |(_, r)| r);
    after_scheme.find('/').map_or("", |i| &after_scheme[i..])
}

fn tls_reason(e: &std::io::Error) -> String {
    let inner = e
        .get_ref()
        .map(|i| i.to_string())
        .unwrap_or_else(|| e.to_string());
    if inner.contains("certificate")
        && (inner.contains("UnknownIssuer") || inner.contains("invalid peer certificate"))
    {
        format!("the bank's server certificate is not trusted by [bank] server_roots ({inner})")
    } else {
        inner
    }
}

fn refused(status: StatusCode, body: &[u8]) -> EstError {
    // The server's own words, as one printable line of bounded length: no
    // control, bidirectional or invisible characters.
    let text = crate::text::clean(&String::from_utf8_lossy(body), REFUSAL_MAX);
    EstError::Refused {
        status: status.as_u16(),
        message: if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_string()
        } else {
            text
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_one_clean_line() {
        let body = "renewal \u{202E}deined\u{200B} by\u{FEFF} the bank\u{2028}call us\r\n\u{1b}[2J";
        let e = refused(StatusCode::FORBIDDEN, body.as_bytes());
        let EstError::Refused { status, message } = e else {
            panic!("{e:?}");
        };
        assert_eq!(status, 403);
        assert_eq!(message, "renewal deined by the bank call us [2J");
        let long = refused(StatusCode::FORBIDDEN, "x".repeat(10_000).as_bytes());
        assert!(long.to_string().chars().count() < 400, "{long}");
        let none = refused(StatusCode::FORBIDDEN, "\u{202E}\u{200B}\n".as_bytes());
        assert!(none.to_string().ends_with("(403): Forbidden"), "{none}");
    }

    #[test]
    fn base_path() {
        assert_eq!(
            path_of("https://127.0.0.1:8443/.well-known/est"),
            "/.well-known/est"
        );
        assert_eq!(path_of("https://bank"), "");
    }

    #[test]
    fn retry_after_is_bounded() {
        let secs = |v: Option<&str>| retry_after(v).as_secs();
        assert_eq!(secs(Some("1")), 1);
        assert_eq!(secs(Some(" 42 ")), 42);
        assert_eq!(secs(Some("300")), 300);
        // A bank cannot make certagent wait for ages, nor hammer it in a loop.
        assert_eq!(retry_after(Some("301")), MAX_RETRY_AFTER);
        assert_eq!(retry_after(Some("18446744073709551615")), MAX_RETRY_AFTER);
        assert_eq!(
            retry_after(Some("99999999999999999999999999999")),
            MAX_RETRY_AFTER
        );
        assert_eq!(retry_after(Some("0")), MIN_RETRY_AFTER);
        // Not a number of seconds (an HTTP-date, garbage, nothing): the default.
        for v in [
            None,
            Some(""),
            Some("-5"),
            Some("1.5"),
            Some("Wed, 21 Oct 2015 07:28:00 GMT"),
        ] {
            assert_eq!(retry_after(v), DEFAULT_RETRY_AFTER, "{v:?}");
        }
        // Never longer than certagent keeps resending at all.
        assert!(MAX_RETRY_AFTER <= crate::renewal::MAX_PENDING_WAIT);
        // What the submit loop does with the largest value cannot overflow.
        let waited = Duration::MAX;
        assert!(waited.saturating_add(retry_after(Some("18446744073709551615"))) >= waited);
    }

    #[test]
    fn refusal_text_is_one_clean_line() {
        let e = refused(
            StatusCode::FORBIDDEN,
            b"renewal opens\r\non 2027-01-01\x1b[31m",
        );
        let s = e.to_string();
        assert!(
            s.contains("403") && s.contains("renewal opens on 2027-01-01"),
            "{s}"
        );
        assert!(!s.contains('\n') && !s.contains('\x1b'));
    }
}
