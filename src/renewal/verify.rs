//! Checking what the bank returned before anything touches the token.

use std::time::Duration;

use time::OffsetDateTime;

use super::error::RenewalError;
use crate::cert::{Cert, raw_issuer_subject, rfc3339};

/// Clock skew tolerated on a new certificate's notBefore.
const SKEW: time::Duration = time::Duration::minutes(5);

/// Check what the bank returned before anything touches the token: the
/// certificate is for the candidate key, has the old subject, chains to
/// the bank's CA for client authentication, and has sane dates.
pub fn verify_issued(
    certs: &[Vec<u8>],
    candidate_spki: &[u8],
    old: Option<&Cert>,
    ca_certs: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<Cert, RenewalError> {
    let bad = |m: String| RenewalError::BadAnswer(m);
    let parsed: Vec<Cert> = certs
        .iter()
        .filter_map(|d| Cert::from_der(d).ok())
        .collect();
    if parsed.is_empty() {
        return Err(bad("it holds no readable certificate".into()));
    }
    let new = parsed
        .iter()
        .find(|c| c.spki_der == candidate_spki)
        .ok_or_else(|| {
            bad("the certificate is for another key than the one generated on the token".into())
        })?
        .clone();
    if let Some(old) = old {
        let (_, want) =
            raw_issuer_subject(&old.der).ok_or_else(|| bad("old subject unreadable".into()))?;
        let (_, got) =
            raw_issuer_subject(&new.der).ok_or_else(|| bad("new subject unreadable".into()))?;
        if want != got {
            return Err(bad(format!(
                "the certificate's subject {:?} is not the current one {:?}",
                new.subject, old.subject
            )));
        }
    }
    if new.not_before > now + SKEW {
        return Err(bad(format!(
            "the certificate is not valid before {}",
            rfc3339(new.not_before)
        )));
    }
    if new.not_after <= now + time::Duration::days(1) {
        return Err(bad(format!(
            "the certificate expires already on {}",
            rfc3339(new.not_after)
        )));
    }
    if new.not_after - new.not_before > time::Duration::days(5 * 366) {
        return Err(bad(
            "the certificate claims a validity of more than five years".into(),
        ));
    }
    if new.is_ca {
        return Err(bad("the certificate is a CA certificate".into()));
    }
    chain_to_ca(&new, &parsed, ca_certs, now).map_err(bad)?;
    Ok(new)
}

/// Path validation with webpki (the verifier rustls itself uses) for the
/// client-authentication usage, with the bank's CA as the only anchor.
fn chain_to_ca(
    new: &Cert,
    returned: &[Cert],
    ca_certs: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<(), String> {
    use rustls::pki_types::{CertificateDer, UnixTime};
    if ca_certs.is_empty() {
        return Err("no bank CA certificate to check it against".into());
    }
    let ca_ders: Vec<CertificateDer<'_>> = ca_certs
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let anchors = ca_ders
        .iter()
        .map(|c| webpki::anchor_from_trusted_cert(c).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the bank's CA certificate is unusable: {e:?}"))?;
    let intermediates: Vec<CertificateDer<'_>> = returned
        .iter()
        .filter(|c| c.der != new.der)
        .map(|c| CertificateDer::from(c.der.as_slice()))
        .collect();
    let der = CertificateDer::from(new.der.as_slice());
    let ee = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| format!("unparseable certificate: {e:?}"))?;
    let secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        UnixTime::since_unix_epoch(Duration::from_secs(secs)),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| {
        format!("the certificate does not chain to the bank's CA for client logon ({e:?})")
    })
}
