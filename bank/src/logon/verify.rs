//! The checks a logon token must pass once its challenge is known: the
//! signature, the chain to the bank's CA, the bank's record and the
//! lifecycle; and [`LoggedOn`], who passed them.

use std::time::Duration;

use time::OffsetDateTime;

use certagent::cert::rfc3339;
use certagent::policy::{Policy, State as Lifecycle};

use super::LogonError;
use super::token::{Presented, parse_token, present, signed_message};
use crate::store::{State, sha256_hex};

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
    /// The holder as people name them: "Ana Novak (Demo Company)".
    pub holder: String,
    pub user: Option<String>,
    pub serial: String,
    pub state: Lifecycle,
    pub days_left: i64,
    pub not_after: OffsetDateTime,
    pub renewal_notice: bool,
}

/// Everything after the challenge: signature over this bank's origin and
/// `challenge`, chain to the issuing CA, the bank's own record, lifecycle.
pub(super) fn check(
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
            holder: cert.holder(),
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

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

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
        let cert = STANDARD.encode(include_bytes!("../../../tests/data/any-cert.der"));
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
                Some("AA"),
                "bad_certificate",
            ),
            (
                token(&format!(r#","certificate":"{cert}","challenge":"AA""#)),
                Some("AA"),
                "algorithm_mismatch",
            ),
            // The challenge must be the one issued to this browser (its cookie).
            (
                token(r#","certificate":"MIIB","challenge":"AA""#),
                None,
                "no_challenge_cookie",
            ),
            (
                token(r#","certificate":"MIIB","challenge":"AA""#),
                Some("AQ"),
                "challenge_mismatch",
            ),
            (
                token(r#","certificate":"MIIB","challenge":"AA""#),
                Some("%%"),
                "bad_challenge",
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
}
