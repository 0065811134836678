//! The bank's demo web pages: the logon page (`/`) and the important
//! notices page (`/notices`), static HTML and one vanilla script that call
//! the bank's logon verifier and the certagent agent's local API.
//!
//! Nothing is loaded from elsewhere, and the Content-Security-Policy says
//! so: scripts and styles only from the bank, `fetch` only to the bank and
//! to the agent. The agent's URL is injected once, at start-up, into a
//! `<meta>` element the script reads, so the script itself stays static.

use bytes::Bytes;
use hyper::Method;
use hyper::header::{self, HeaderName, HeaderValue};

use super::BankError;
use super::http::Answer;
use super::rules::Refusal;

const LOGON_HTML: &str = include_str!("pages/logon.html");
const NOTICES_HTML: &str = include_str!("pages/notices.html");
const SCRIPT: &str = include_str!("pages/bank.js");
const STYLE: &str = include_str!("pages/bank.css");
/// Where the templates take the agent's URL.
const AGENT_SLOT: &str = "{{AGENT_URL}}";

/// The pages, rendered for one agent URL.
pub(super) struct Pages {
    logon: Bytes,
    notices: Bytes,
    csp: HeaderValue,
}

impl Pages {
    /// `agent_url` must already be a checked origin
    /// ([`super::logon::web_origin`]): it goes into a header and into HTML.
    pub fn new(agent_url: &str) -> Result<Pages, BankError> {
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self' {agent_url}; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        );
        let csp = HeaderValue::from_str(&csp).map_err(|_| BankError::BadUrl {
            what: "agent URL",
            value: agent_url.to_string(),
            reason: "it cannot go into a header".into(),
        })?;
        let url = html_escape(agent_url);
        Ok(Pages {
            logon: Bytes::from(LOGON_HTML.replace(AGENT_SLOT, &url)),
            notices: Bytes::from(NOTICES_HTML.replace(AGENT_SLOT, &url)),
            csp,
        })
    }

    /// The page or resource at `path`, if it is one of the pages'.
    pub fn get(&self, method: &Method, path: &str) -> Option<Answer> {
        let (content_type, body) = match path {
            "/" => ("text/html; charset=utf-8", self.logon.clone()),
            "/notices" => ("text/html; charset=utf-8", self.notices.clone()),
            "/static/bank.js" => (
                "text/javascript; charset=utf-8",
                Bytes::from_static(SCRIPT.as_bytes()),
            ),
            "/static/bank.css" => (
                "text/css; charset=utf-8",
                Bytes::from_static(STYLE.as_bytes()),
            ),
            _ => return None,
        };
        if method != Method::GET {
            return Some(
                Answer::refused(Refusal::new(405, "use GET")).with_header(header::ALLOW, "GET"),
            );
        }
        let answer = Answer::resource(content_type, body, "page")
            .with_header_value(header::CONTENT_SECURITY_POLICY, self.csp.clone())
            .with_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
            .with_header(header::X_FRAME_OPTIONS, "DENY")
            .with_header(header::REFERRER_POLICY, "no-referrer")
            .with_header(header::CACHE_CONTROL, "no-store")
            .with_header(
                HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            );
        Some(answer)
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_url_lands_in_the_pages_and_the_policy() {
        let pages = Pages::new("http://127.0.0.1:4444").unwrap();
        for path in ["/", "/notices"] {
            let a = pages.get(&Method::GET, path).unwrap();
            let html = String::from_utf8(a.body.to_vec()).unwrap();
            assert!(
                html.contains(r#"content="http://127.0.0.1:4444""#),
                "{path}"
            );
            assert!(!html.contains(AGENT_SLOT));
        }
        let csp = pages.csp.to_str().unwrap();
        assert!(csp.contains("connect-src 'self' http://127.0.0.1:4444;"));
        assert!(pages.get(&Method::GET, "/nothing").is_none());
        assert_eq!(pages.get(&Method::POST, "/").unwrap().status, 405);
    }
}
