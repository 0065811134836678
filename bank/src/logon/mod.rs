//! Web logon with the token: the bank's side of the certagent-auth:1
//! token the agent returns from `POST /v1/logon` (see the contract).
//!
//! 1. `POST /logon/challenge`: 32 random bytes, single-use, for five minutes,
//!    in the answer and in a cookie: the challenge is bound to the browser
//!    that asked for it. Only the bank's own pages may ask (Origin).
//! 2. The page hands the challenge to the agent; the agent signs
//!    `SHA-256(origin) || SHA-256(challenge)` on the token, with the Origin
//!    of the page that called it.
//! 3. `POST /logon/verify`: the bank rebuilds that message from *its own*
//!    origin and the challenge it issued to this browser (the cookie; the
//!    token's `challenge` field, if any, must be the same), checks the signature with the
//!    certificate's key, that the certificate is one this bank issued and
//!    the holder's current one, and that its lifecycle state allows logon.
//!    Then it opens a session (a cookie).
//!
//! Because the bank uses its own origin, a token made for any other site
//! (a phishing page that relayed the bank's challenge) does not verify, as
//! in Web eID. Challenges are consumed before anything else is checked, so
//! a failed attempt cannot be retried with the same challenge.
//!
//! This file is the HTTP handler (`Logon`): its routes, the Origin
//! check, the cookies and [`web_origin`]. The parts it uses are in
//! `error.rs` ([`LogonError`]), `challenges.rs` (the challenge store),
//! `sessions.rs` (open sessions), `token.rs` (the token's JSON format) and
//! `verify.rs` (the checks a token must pass).

mod challenges;
mod error;
mod sessions;
mod token;
mod verify;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;
use time::OffsetDateTime;

use certagent::cert::rfc3339;
use certagent::policy::Policy;

use super::http::{self, Answer};
use super::store::{self, Paths, State};

pub use challenges::{CHALLENGE_TTL, Challenges, client_net};
pub use error::LogonError;
pub use token::{MAX_TOKEN, TOKEN_FORMAT, signed_message};
pub use verify::{LoggedOn, verify_body};

use challenges::{MAX_CHALLENGES, MAX_CHALLENGES_PER_CLIENT};
use sessions::{MAX_SESSIONS, MAX_SESSIONS_PER_CLIENT, SESSION_TTL, Session, Sessions};
use token::{parse_token, present};
use verify::check;

pub const SESSION_COOKIE: &str = "session";
/// Set by `/logon/challenge`: the challenge this browser may use. A
/// `challenge` field in the token must match it; without the field the
/// agent's token can be sent unchanged.
pub const CHALLENGE_COOKIE: &str = "logon_challenge";

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
            challenges: Mutex::new(Challenges::new(
                challenge_ttl,
                MAX_CHALLENGES,
                MAX_CHALLENGES_PER_CLIENT,
            )),
            sessions: Mutex::new(Sessions::new(MAX_SESSIONS, MAX_SESSIONS_PER_CLIENT)),
        }
    }

    /// `op` is the path after `/logon/`; `client` the peer's address.
    pub async fn handle(
        self: Arc<Self>,
        op: &str,
        client: IpAddr,
        req: Request<Incoming>,
    ) -> Answer {
        let method = req.method().clone();
        let result = match (op, method) {
            ("challenge", Method::POST) => self
                .same_origin(req.headers())
                .and_then(|()| self.challenge(client, req.headers())),
            ("verify", Method::POST) => Ok(self.clone().verify(client, req).await),
            ("session", Method::GET) => self.session(req.headers()),
            ("challenge" | "verify", _) => Err(LogonError::Method("POST")),
            ("session", _) => Err(LogonError::Method("GET")),
            _ => Err(LogonError::NotFound),
        };
        result.unwrap_or_else(|e| e.answer())
    }

    /// A browser names the page that sent a POST; only the bank's own pages
    /// may ask for challenges and log on (no logon from another site's form,
    /// and none from a request that names no page at all).
    fn same_origin(&self, headers: &HeaderMap) -> Result<(), LogonError> {
        match headers.get(header::ORIGIN).map(|v| v.to_str()) {
            None => Err(LogonError::NoOrigin {
                want: self.origin.clone(),
            }),
            Some(Ok(o)) if o == self.origin => Ok(()),
            Some(o) => Err(LogonError::CrossOrigin {
                got: o.unwrap_or("?").chars().take(200).collect(),
                want: self.origin.clone(),
            }),
        }
    }

    /// A new challenge for `client`, in the answer and in a cookie; it
    /// replaces the one this browser held (its cookie), if any.
    fn challenge(&self, client: IpAddr, headers: &HeaderMap) -> Result<Answer, LogonError> {
        let held = http::cookie(headers, CHALLENGE_COOKIE)
            .and_then(|c| URL_SAFE_NO_PAD.decode(c.trim()).ok());
        let (challenge, ttl) = {
            let mut challenges = lock(&self.challenges);
            let issued = challenges.issue(&self.rng, Instant::now(), client, held.as_deref())?;
            (issued, challenges.ttl)
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
    async fn verify(self: Arc<Self>, client: IpAddr, req: Request<Incoming>) -> Answer {
        let mut holder = None;
        match self.verify_token(client, req, &mut holder).await {
            Ok(answer) => answer,
            Err(e) => e.answer().with_user(holder),
        }
    }

    async fn verify_token(
        self: Arc<Self>,
        client: IpAddr,
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
        let (token, challenge) = match parse_token(&body, cookie_challenge.as_deref()) {
            Ok(parsed) => parsed,
            Err(e) => {
                // A token for another challenge than this browser's: this
                // browser's challenge is spent too, as by any failed attempt.
                if e == LogonError::ChallengeMismatch
                    && let Some(own) = cookie_challenge
                        .as_deref()
                        .and_then(|c| URL_SAFE_NO_PAD.decode(c.trim()).ok())
                {
                    let _ = lock(&self.challenges).take(&own, Instant::now());
                }
                return Err(e);
            }
        };
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
        self.open_session(client, result?)
    }

    fn open_session(&self, client: IpAddr, who: LoggedOn) -> Result<Answer, LogonError> {
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
        lock(&self.sessions).open(id, session, client, Instant::now())?;
        let body = json!({
            "subject": who.subject,
            "holder": who.holder,
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
    // A bracketed IPv6 literal is closed and holds only its own characters;
    // any other host has no brackets and no colon (found by fuzzing:
    // "https://[ss:443:443" lost a ":443" each time it was normalised).
    let literal_ok = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').is_some_and(|v6| {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        }),
        None => !host.bytes().any(|b| b"[]:".contains(&b)),
    };
    if !host_ok || host.is_empty() || !literal_ok || !port_ok {
        return Err("write it as scheme://host[:port], without a path, user or query".into());
    }
    let port = if port == default_port { "" } else { port };
    Ok(format!("{scheme}://{host}{port}"))
}

/// Client addresses for the challenge and session tests.
#[cfg(test)]
mod test_clients {
    use std::net::IpAddr;

    pub(super) const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// A client of a network of its own (clients are counted per /24).
    pub(super) fn ip(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(198, 51, n, 7))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            // Found by fuzzing in CI: an unclosed IPv6 literal lost a
            // ":443" each time it was normalised.
            "https://[ss:443:443",
            "https://[::1",
            "https://[zz]",
            "https://a]:443",
        ] {
            assert!(web_origin(bad).is_err(), "{bad}");
        }
        // What it returns is already normalised.
        for good in ["https://IB.Bank.example:443/", "http://[::1]:31270"] {
            let once = web_origin(good).unwrap();
            assert_eq!(web_origin(&once).as_deref(), Ok(once.as_str()));
        }
    }
}
