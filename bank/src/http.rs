//! HTTP plumbing shared by everything the bank serves (EST, the logon
//! verifier and the demo pages): the [`Answer`] each handler returns, with
//! what the request log says about it, capped body reading, and cookies.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::rules::Refusal;

/// Bodies up to this size are read to the end (and dropped) before a 413,
/// so the client is not cut off mid-send.
const DRAIN_LIMIT: usize = 1024 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer and what the request log says about it.
pub(super) struct Answer {
    pub status: u16,
    /// One line for the log (and the body of a plain-text refusal).
    pub reason: String,
    /// The user the request turned out to belong to, for the log.
    pub user: Option<String>,
    pub content_type: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Answer {
    /// A plain-text, one-line refusal (what EST clients read).
    pub fn refused(r: Refusal) -> Answer {
        let reason = one_line(&r.reason);
        let body = format!("{reason}\n");
        Answer {
            status: r.status,
            reason,
            user: None,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: Bytes::from(body),
        }
    }

    /// A JSON answer, never cached: logon answers are per person.
    pub fn json(status: u16, value: &serde_json::Value, reason: impl Into<String>) -> Answer {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Answer {
            status,
            reason: one_line(&reason.into()),
            user: None,
            content_type: "application/json",
            headers: vec![(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            body: Bytes::from(body),
        }
    }

    /// A fixed resource (a page, a script) with its type.
    pub fn resource(content_type: &'static str, body: Bytes, reason: &str) -> Answer {
        Answer {
            status: 200,
            reason: reason.to_string(),
            user: None,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    pub fn with_header(self, name: HeaderName, value: &'static str) -> Answer {
        self.with_header_value(name, HeaderValue::from_static(value))
    }

    /// Headers are appended, so one answer can set several cookies.
    pub fn with_header_value(mut self, name: HeaderName, value: HeaderValue) -> Answer {
        self.headers.push((name, value));
        self
    }

    pub fn with_user(mut self, user: Option<String>) -> Answer {
        self.user = user;
        self
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = Response::new(Full::new(self.body));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        if !self.content_type.is_empty() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
        }
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        resp
    }
}

/// Reasons may quote request data (a subject): keep them one short line.
fn one_line(reason: &str) -> String {
    reason
        .chars()
        .take(400)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The whole body, refused with 413 past `max` bytes and 408 when it
/// trickles in too slowly.
pub(super) async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            413,
            format!("the request body is larger than {} KiB", max / 1024),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    // Read frame by frame. Past `max` the rest is read and dropped (up to
    // DRAIN_LIMIT), so a client still sending sees the 413 rather than a
    // connection reset.
    let mut body = req.into_body();
    let mut kept = Vec::new();
    let mut total = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| Refusal::bad_request(format!("cannot read the request body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                total += data.len();
                if total > DRAIN_LIMIT {
                    break;
                }
                if total <= max {
                    kept.extend_from_slice(&data);
                }
            }
        }
        Ok::<(), Refusal>(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(Refusal::new(408, "the request body took too long")),
        Ok(Err(r)) => Err(r),
        Ok(Ok(())) if total > max => Err(too_large()),
        Ok(Ok(())) => Ok(Bytes::from(kept)),
    }
}

/// The value of cookie `name` from the request's `Cookie` headers.
pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

/// The media type of the request body, lower-case, without parameters.
pub(super) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_across_headers() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; session=xyz"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, "session"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "sess"), None);
    }

    #[test]
    fn media_type_drops_parameters() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert_eq!(media_type(&h).as_deref(), Some("application/json"));
    }
}
