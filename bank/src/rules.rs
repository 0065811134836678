//! The bank's rules for who may get a certificate, as pure functions of the
//! state, the request and the time, so every rule is tested without TLS.
//!
//! The lifecycle itself (renewal window, grace period) is
//! [`certagent::policy::Policy`]: the bank uses the very judgement the client
//! shows its user, so the two cannot disagree.

use time::OffsetDateTime;

use certagent::policy::{Policy, State};

use super::store::{Record, User, sha256_hex};

/// A refused request: the HTTP status and the one-line reason sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
    pub fn bad_request(reason: impl Into<String>) -> Refusal {
        Refusal::new(400, reason)
    }
    pub fn forbidden(reason: impl Into<String>) -> Refusal {
        Refusal::new(403, reason)
    }
}

/// The one-time password must be the user's current one and unused. An
/// unknown user gets the same answer as a wrong password.
pub fn check_otp<'u>(user: Option<&'u User>, otp: &str) -> Result<&'u User, Refusal> {
    let Some(user) = user else {
        return Err(Refusal::forbidden(
            "unknown user or wrong one-time password",
        ));
    };
    if sha256_hex(otp.as_bytes()) != user.otp_sha256 {
        return Err(Refusal::forbidden(
            "unknown user or wrong one-time password",
        ));
    }
    if user.otp_used {
        return Err(Refusal::forbidden(
            "this one-time password was already used: ask the bank for a new one",
        ));
    }
    Ok(user)
}

/// `simpleenroll` is for a first certificate, for one that expired within
/// the grace period, or after the operator re-issued.
/// `current` is the validity of the user's current certificate, if any.
pub fn may_enroll(
    policy: &Policy,
    user: &User,
    current: Option<(OffsetDateTime, OffsetDateTime)>,
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    if user.reissued {
        return Ok(());
    }
    let Some((not_before, not_after)) = current else {
        return Ok(());
    };
    match policy.assess(not_before, not_after, now).state {
        State::Expired => Ok(()),
        State::Valid | State::RenewalDue | State::NotYetValid => {
            Err(Refusal::forbidden("still valid: renew with simplereenroll"))
        }
        State::Lapsed => Err(Refusal::forbidden(
            "grace period over: the bank must re-issue",
        )),
    }
}

/// `simplereenroll` needs the holder's current certificate, inside the
/// renewal window. `user_current` is the serial the record's user holds.
pub fn may_reenroll(
    policy: &Policy,
    record: &Record,
    user_current: Option<&str>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    let superseded = record.replaced_by.is_some()
        || (record.user.is_some() && user_current != Some(record.serial.as_str()));
    if superseded {
        return Err(Refusal::forbidden(
            "this certificate was already replaced: renew with the newest one",
        ));
    }
    let a = policy.assess(not_before, not_after, now);
    match a.state {
        State::RenewalDue => Ok(()),
        State::Valid => Err(Refusal::forbidden(match a.renewal_opens {
            Some(opens) => format!("renewal opens on {}", certagent::cert::rfc3339(opens)),
            None => "the certificate has no expiry date: it is never renewed".into(),
        })),
        State::NotYetValid => Err(Refusal::forbidden("the certificate is not valid yet")),
        State::Expired | State::Lapsed => Err(Refusal::forbidden(
            "the certificate has expired: enroll anew with simpleenroll",
        )),
    }
}

/// The request's key must never have been certified by this bank (that
/// covers the current certificate's key).
pub fn key_is_new(certified_before: bool) -> Result<(), Refusal> {
    if certified_before {
        Err(Refusal::forbidden(
            "this key was certified before: generate a new key for every certificate",
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    fn user(otp: &str) -> User {
        User {
            subject: "CN=a".into(),
            subject_der: String::new(),
            otp_sha256: sha256_hex(otp.as_bytes()),
            otp_used: false,
            reissued: false,
            current_serial: None,
        }
    }

    fn record(serial: &str, user: Option<&str>) -> Record {
        Record {
            serial: serial.into(),
            subject: "CN=a".into(),
            subject_der: String::new(),
            spki_sha256: String::new(),
            cert_sha256: String::new(),
            not_before: String::new(),
            not_after: String::new(),
            issued_at: String::new(),
            how: "issue".into(),
            user: user.map(str::to_string),
            replaced_by: None,
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    fn expiring_in(days: i64) -> (OffsetDateTime, OffsetDateTime) {
        let na = NOW + Duration::days(days);
        (na - Duration::days(365), na)
    }

    #[test]
    fn otp_rules() {
        let u = user("RIGHT");
        assert!(check_otp(Some(&u), "RIGHT").is_ok());
        assert_eq!(check_otp(Some(&u), "WRONG").unwrap_err().status, 403);
        assert_eq!(check_otp(None, "RIGHT").unwrap_err().status, 403);
        let used = User {
            otp_used: true,
            ..u
        };
        assert!(
            check_otp(Some(&used), "RIGHT")
                .unwrap_err()
                .reason
                .contains("already used")
        );
    }

    #[test]
    fn enroll_by_state() {
        let p = Policy::default();
        let u = user("x");
        assert!(may_enroll(&p, &u, None, NOW).is_ok());
        assert!(may_enroll(&p, &u, Some(expiring_in(-10)), NOW).is_ok());
        for days in [200, 20] {
            let r = may_enroll(&p, &u, Some(expiring_in(days)), NOW).unwrap_err();
            assert_eq!(r.reason, "still valid: renew with simplereenroll");
        }
        let r = may_enroll(&p, &u, Some(expiring_in(-100)), NOW).unwrap_err();
        assert_eq!(r.reason, "grace period over: the bank must re-issue");
        let reissued = User {
            reissued: true,
            ..u
        };
        assert!(may_enroll(&p, &reissued, Some(expiring_in(-100)), NOW).is_ok());
        assert!(may_enroll(&p, &reissued, Some(expiring_in(200)), NOW).is_ok());
    }

    #[test]
    fn reenroll_by_state_and_currency() {
        let p = Policy::default();
        let r = record("AA", Some("alice"));
        let (nb, na) = expiring_in(20);
        assert!(may_reenroll(&p, &r, Some("AA"), nb, na, NOW).is_ok());
        let (nb, na) = expiring_in(200);
        let refused = may_reenroll(&p, &r, Some("AA"), nb, na, NOW).unwrap_err();
        assert_eq!(refused.status, 403);
        assert!(
            refused.reason.starts_with("renewal opens on "),
            "{}",
            refused.reason
        );
        let (nb, na) = expiring_in(20);
        assert!(may_reenroll(&p, &r, Some("BB"), nb, na, NOW).is_err());
        let replaced = Record {
            replaced_by: Some("BB".into()),
            ..record("AA", None)
        };
        assert!(may_reenroll(&p, &replaced, None, nb, na, NOW).is_err());
        // A certificate of no user renews while it is the newest.
        assert!(may_reenroll(&p, &record("AA", None), None, nb, na, NOW).is_ok());
        // A wider window opens renewal earlier.
        let wide = Policy {
            renew_window_days: 400,
            ..Policy::default()
        };
        let (nb, na) = expiring_in(200);
        assert!(may_reenroll(&wide, &r, Some("AA"), nb, na, NOW).is_ok());
    }
}
