//! The gate: what every request passes before anything else happens, and
//! the shapes of every answer (JSON, CORS for allowed origins only,
//! errors as `{"error", "message"}`).
//!
//! The Host must be the listen address (or `localhost:port`), which
//! defeats DNS rebinding; the Origin must be exactly one of `[bank]
//! origins`, which stops every other web page. A refused request gets a 403
//! and nothing else: no prompt, no token access, no certificate details, no
//! CORS headers. POSTs must be `application/json` (so a plain HTML form
//! cannot send one) and at most [`MAX_BODY`] bytes.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::agent::shared::Agent;

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// An error as the API returns it.
pub(super) struct Failure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            // Errors carry names from tokens and the bank's words.
            message: crate::text::clean(&message.into(), crate::text::MESSAGE_MAX),
        }
    }
}

pub(super) fn json_response(
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

pub(super) fn failure(f: Failure, origin: Option<&str>) -> Response<Full<Bytes>> {
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
pub(super) fn gate<'a>(
    agent: &'a Agent,
    addr: SocketAddr,
    headers: &HeaderMap,
) -> Result<&'a str, Failure> {
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

/// CORS preflight, as browsers expect, including Private/Local Network Access.
pub(super) fn preflight(headers: &HeaderMap, origin: &str) -> Response<Full<Bytes>> {
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

pub(super) async fn read_json<T: for<'de> Deserialize<'de>>(
    req: Request<Incoming>,
) -> Result<T, Failure> {
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
