//! The EST wire encodings shared by the client and the reference bank:
//! certs-only PKCS#7 (CMS SignedData with no signers, RFC 7030 section 4.1.3)
//! and the base64 transfer encoding, read leniently as RFC 8951 asks.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use const_oid::db::rfc5911::ID_SIGNED_DATA;
use der::{Decode, Encode};
use x509_cert::Certificate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs7Error {
    #[error("the answer is not valid base64: {0}")]
    Base64(String),
    #[error("the answer is not a PKCS#7 certs-only message: {0}")]
    NotPkcs7(String),
    #[error("the PKCS#7 message holds no certificate")]
    Empty,
}

/// Decode base64 that may be wrapped at any width, with CR/LF or spaces,
/// with or without padding (RFC 8951: be liberal in what you accept).
pub fn decode_base64(body: &[u8]) -> Result<Vec<u8>, Pkcs7Error> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let kept = compact
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |end| end.saturating_add(1));
    let trimmed = compact.get(..kept).unwrap_or_default();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .map_err(|e| Pkcs7Error::Base64(e.to_string()))
}

/// Base64 with line breaks every 64 characters, as RFC 7030 examples show.
pub fn encode_base64_lines(der: &[u8]) -> String {
    let flat = STANDARD.encode(der);
    let mut out = String::with_capacity(flat.len() + flat.len() / 64 + 2);
    for chunk in flat.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// DER certs-only SignedData holding `certs` (each DER).
pub fn encode_certs_only(certs: &[Vec<u8>]) -> Result<Vec<u8>, der::Error> {
    let parsed = certs
        .iter()
        .map(|c| Certificate::from_der(c))
        .collect::<Result<Vec<_>, _>>()?;
    ContentInfo::try_from(parsed)?.to_der()
}

/// The certificates (DER) in a certs-only SignedData, DER or BER.
///
/// `certificates` is a SET OF: the order they come in carries no meaning,
/// and DER sorts them by encoding, so a set re-encoded by
/// [`encode_certs_only`] may read back in another order. Callers find
/// certificates by key and name, never by position.
pub fn decode_certs_only(bytes: &[u8]) -> Result<Vec<Vec<u8>>, Pkcs7Error> {
    let bad = |e: der::Error| Pkcs7Error::NotPkcs7(e.to_string());
    let ci = ContentInfo::from_der(bytes)
        .or_else(|_| ContentInfo::from_ber(bytes))
        .map_err(bad)?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(Pkcs7Error::NotPkcs7(format!(
            "content type {} is not signedData",
            ci.content_type
        )));
    }
    let inner = ci.content.to_der().map_err(bad)?;
    let sd = SignedData::from_der(&inner)
        .or_else(|_| SignedData::from_ber(&inner))
        .map_err(bad)?;
    let mut out = Vec::new();
    for choice in sd.certificates.iter().flat_map(|s| s.0.iter()) {
        if let CertificateChoices::Certificate(c) = choice {
            out.push(c.to_der().map_err(bad)?);
        }
    }
    if out.is_empty() {
        return Err(Pkcs7Error::Empty);
    }
    Ok(out)
}

/// Decode an EST certs-only response body: base64 (any line breaks) of a
/// PKCS#7 message. A body that is already binary DER is accepted too.
pub fn decode_response(body: &[u8]) -> Result<Vec<Vec<u8>>, Pkcs7Error> {
    if body.first() == Some(&0x30)
        && let Ok(certs) = decode_certs_only(body)
    {
        return Ok(certs);
    }
    decode_certs_only(&decode_base64(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_base64() {
        let want = b"certificates, please".to_vec();
        let plain = STANDARD.encode(&want);
        let wrapped = format!("{}\r\n{}\n  ", &plain[..10], &plain[10..]);
        assert_eq!(decode_base64(plain.as_bytes()).unwrap(), want);
        assert_eq!(decode_base64(wrapped.as_bytes()).unwrap(), want);
        assert_eq!(
            decode_base64(plain.trim_end_matches('=').as_bytes()).unwrap(),
            want
        );
        assert!(decode_base64(b"not*base64").is_err());
    }

    /// Found by the `pkcs7` fuzz target: an answer whose SET OF lists the
    /// leaf before the CA (not DER order) reads, and sent on re-encoded
    /// (sorted) it holds the same certificates, in DER order.
    #[test]
    fn an_unsorted_certificate_set_reads_and_reencodes_to_the_same_set() {
        let body = include_bytes!("../tests/data/certs-only-unsorted-set.p7.der");
        let mut certs = decode_response(body).unwrap();
        assert_eq!(certs.len(), 2);
        let again = decode_certs_only(&encode_certs_only(&certs).unwrap()).unwrap();
        assert_ne!(again, certs, "the input was not in DER order");
        certs.sort();
        assert_eq!(again, certs);
    }

    #[test]
    fn garbage_is_not_pkcs7() {
        assert!(matches!(
            decode_response(b"aGVsbG8gd29ybGQ="),
            Err(Pkcs7Error::NotPkcs7(_))
        ));
        assert!(matches!(
            decode_response(b"%%%"),
            Err(Pkcs7Error::Base64(_))
        ));
        assert!(decode_response(b"").is_err());
    }
}
