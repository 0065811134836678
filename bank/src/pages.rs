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
const LOGON_HTML_JA: &str = include_str!("pages/logon.ja.html");
const NOTICES_HTML_JA: &str = include_str!("pages/notices.ja.html");
const SCRIPT: &str = include_str!("pages/bank.js");
const STYLE: &str = include_str!("pages/bank.css");
/// Where the templates take the agent's URL.
const AGENT_SLOT: &str = "{{AGENT_URL}}";

/// The pages, rendered for one agent URL, in English and Japanese.
pub(super) struct Pages {
    logon: [Bytes; 2],
    notices: [Bytes; 2],
    csp: HeaderValue,
}

/// The page's language: `?lang=ja` or `?lang=en` (the switch in the
/// header) wins; else the first language of the browser's
/// Accept-Language that the bank speaks; else English.
fn language(query: Option<&str>, accept_language: Option<&str>) -> usize {
    let asked = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("lang="))
            .map(str::to_ascii_lowercase)
    });
    match asked.as_deref() {
        Some("ja") => return 1,
        Some("en") => return 0,
        _ => {}
    }
    let mut ranked: Vec<(u32, &str)> = accept_language
        .unwrap_or("")
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let tag = it.next()?.trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!tag.is_empty()).then_some(((q.clamp(0.0, 1.0) * 1000.0) as u32, tag))
        })
        .collect();
    // Highest quality first; the browser's order among equals.
    ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
    for (q, tag) in ranked {
        let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
        if q > 0 && primary == "ja" {
            return 1;
        }
        if q > 0 && primary == "en" {
            return 0;
        }
    }
    0
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
        let render = |html: &str| Bytes::from(html.replace(AGENT_SLOT, &url));
        Ok(Pages {
            logon: [render(LOGON_HTML), render(LOGON_HTML_JA)],
            notices: [render(NOTICES_HTML), render(NOTICES_HTML_JA)],
            csp,
        })
    }

    /// The page or resource at `path`, if it is one of the pages', in the
    /// language `query` or `accept_language` asks for.
    pub fn get(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        accept_language: Option<&str>,
    ) -> Option<Answer> {
        let lang = language(query, accept_language);
        let pick = |pages: &[Bytes; 2]| pages.get(lang).cloned().unwrap_or_default();
        let (content_type, body) = match path {
            "/" => ("text/html; charset=utf-8", pick(&self.logon)),
            "/notices" => ("text/html; charset=utf-8", pick(&self.notices)),
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
            .with_header(header::VARY, "Accept-Language")
            .with_header(
                HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            );
        Some(answer)
    }
}

#[cfg(test)]
mod language_tests {
    use super::*;

    #[test]
    fn the_switch_then_accept_language_then_english() {
        assert_eq!(language(Some("lang=ja"), Some("en")), 1);
        assert_eq!(language(Some("x=1&lang=en"), Some("ja")), 0);
        assert_eq!(language(None, Some("ja-JP,ja;q=0.9,en;q=0.8")), 1);
        assert_eq!(language(None, Some("en-US,en;q=0.9,ja;q=0.8")), 0);
        assert_eq!(language(None, Some("de;q=1, ja;q=0.5")), 1);
        assert_eq!(language(None, Some("en;q=0.2, ja;q=0.7")), 1);
        assert_eq!(language(None, Some("ja;q=0")), 0);
        assert_eq!(language(None, Some(",,;;q=x")), 0);
        assert_eq!(language(None, None), 0);
        assert_eq!(language(Some("lang=fr"), Some("ja")), 1);
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
            let a = pages.get(&Method::GET, path, None, None).unwrap();
            let html = String::from_utf8(a.body.to_vec()).unwrap();
            assert!(
                html.contains(r#"content="http://127.0.0.1:4444""#),
                "{path}"
            );
            assert!(!html.contains(AGENT_SLOT));
        }
        let csp = pages.csp.to_str().unwrap();
        assert!(csp.contains("connect-src 'self' http://127.0.0.1:4444;"));
        assert!(pages.get(&Method::GET, "/nothing", None, None).is_none());
        assert_eq!(
            pages.get(&Method::POST, "/", None, None).unwrap().status,
            405
        );
    }
}
