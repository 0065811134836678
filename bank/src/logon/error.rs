//! Why a logon request was refused: [`LogonError`], with its HTTP status,
//! its stable code and the answer it becomes.

use hyper::header::{self, HeaderValue};
use serde_json::json;

use super::CHALLENGE_COOKIE;
use super::token::TOKEN_FORMAT;
use crate::http::Answer;

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
    #[error("a newer challenge replaced this one in this browser: start the logon again")]
    ChallengeReplaced,
    #[error(
        "this browser holds no logon challenge (the {CHALLENGE_COOKIE} cookie): a challenge is \
         only accepted from the browser it was issued to; allow the bank's cookies and start the logon again"
    )]
    NoChallengeCookie,
    #[error(
        "the challenge in the token is not the one this browser was given: start the logon again"
    )]
    ChallengeMismatch,
    #[error(
        "too many logons in progress from this address: finish them, or wait {retry_after} seconds"
    )]
    TooManyChallenges { retry_after: u64 },
    #[error("the bank has too many logons in progress: try again in {retry_after} seconds")]
    Busy { retry_after: u64 },
    #[error(
        "too many sessions are open from this network: log off elsewhere, or wait {retry_after} seconds"
    )]
    TooManySessions { retry_after: u64 },
    #[error("the bank has too many open sessions: try again in {retry_after} seconds")]
    SessionsFull { retry_after: u64 },
    #[error("the challenge expired after {minutes} minutes: start the logon again")]
    ChallengeExpired { minutes: u64 },
    #[error("the token was made for {got:?}, not for this bank ({want})")]
    WrongOrigin { got: String, want: String },
    #[error("this request comes from a page at {got:?}, not from the bank's own pages ({want})")]
    CrossOrigin { got: String, want: String },
    #[error(
        "this request names no Origin: only the bank's own pages ({want}) may ask for challenges \
         and log on, and a browser names them in every POST"
    )]
    NoOrigin { want: String },
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
            | ChallengeReplaced
            | NoChallengeCookie
            | ChallengeMismatch
            | ChallengeExpired { .. }
            | WrongOrigin { .. }
            | CrossOrigin { .. }
            | NoOrigin { .. }
            | BadSignature
            | Untrusted(_)
            | NotIssued
            | Superseded
            | NotYetValid(_)
            | Expired(_)
            | Lapsed { .. } => 403,
            NoSession | SessionExpired => 401,
            TooManyChallenges { .. } | TooManySessions { .. } => 429,
            Busy { .. } | SessionsFull { .. } => 503,
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
            ChallengeReplaced => "challenge_replaced",
            NoChallengeCookie => "no_challenge_cookie",
            ChallengeMismatch => "challenge_mismatch",
            TooManyChallenges { .. } => "too_many_challenges",
            Busy { .. } => "busy",
            TooManySessions { .. } => "too_many_sessions",
            SessionsFull { .. } => "sessions_full",
            ChallengeExpired { .. } => "challenge_expired",
            WrongOrigin { .. } => "wrong_origin",
            CrossOrigin { .. } => "cross_origin",
            NoOrigin { .. } => "no_origin",
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

    pub(super) fn answer(&self) -> Answer {
        let message = self.to_string();
        let answer = Answer::json(
            self.status(),
            &json!({"error": self.code(), "message": message}),
            format!("{}: {message}", self.code()),
        );
        match self {
            LogonError::Method(allow) => answer.with_header(header::ALLOW, allow),
            LogonError::TooManyChallenges { retry_after }
            | LogonError::Busy { retry_after }
            | LogonError::TooManySessions { retry_after }
            | LogonError::SessionsFull { retry_after } => {
                answer.with_header_value(header::RETRY_AFTER, HeaderValue::from(*retry_after))
            }
            _ => answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_code_and_a_status() {
        let all = [
            LogonError::Body("x".into(), 413),
            LogonError::NotJson,
            LogonError::BadSignature,
            LogonError::NoSession,
            LogonError::Expired("2026-01-01T00:00:00Z".into()),
            LogonError::TooManySessions { retry_after: 1 },
            LogonError::SessionsFull { retry_after: 1 },
        ];
        let codes: Vec<_> = all.iter().map(|e| (e.code(), e.status())).collect();
        assert_eq!(
            codes,
            [
                ("too_large", 413),
                ("not_json", 415),
                ("bad_signature", 403),
                ("no_session", 401),
                ("certificate_expired", 403),
                ("too_many_sessions", 429),
                ("sessions_full", 503)
            ]
        );
    }
}
