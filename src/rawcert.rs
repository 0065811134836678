//! The names of a certificate exactly as encoded, read without a full parse.
//!
//! The token layer needs the raw issuer and subject for CKA_ISSUER and
//! CKA_SUBJECT, and the renewal compares subjects byte for byte; neither may
//! go through a parsed `Name`, whose re-encoding could differ for a name
//! that is not canonically encoded. Lives apart from `cert` so the token
//! layer needs nothing from it.

use der::asn1::AnyRef;
use der::{Decode, Encode, Reader, SliceReader, Tag, Tagged};

/// The issuer and subject exactly as they are encoded in a certificate's
/// DER, without going through a parsed `Name` (whose re-encoding could
/// differ for a name that is not canonically encoded).
pub fn raw_issuer_subject(cert_der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let outer = AnyRef::from_der(cert_der).ok()?;
    let mut r = SliceReader::new(outer.value()).ok()?;
    let tbs: AnyRef<'_> = r.decode().ok()?;
    if tbs.tag() != Tag::Sequence {
        return None;
    }
    let mut r = SliceReader::new(tbs.value()).ok()?;
    let mut fields = Vec::with_capacity(8);
    while !r.is_finished() && fields.len() < 7 {
        let f: AnyRef<'_> = r.decode().ok()?;
        fields.push(f);
    }
    // [0] version is optional; then serial, signature, issuer, validity, subject.
    let skip = usize::from(fields.first()?.tag().is_context_specific());
    let issuer = fields.get(skip + 2)?.to_der().ok()?;
    let subject = fields.get(skip + 4)?.to_der().ok()?;
    Some((issuer, subject))
}

/// The TBSCertificate exactly as encoded (what the issuer signed).
pub fn raw_tbs(cert_der: &[u8]) -> Option<Vec<u8>> {
    let outer = AnyRef::from_der(cert_der).ok()?;
    let mut r = SliceReader::new(outer.value()).ok()?;
    let tbs: AnyRef<'_> = r.decode().ok()?;
    if tbs.tag() != Tag::Sequence {
        return None;
    }
    tbs.to_der().ok()
}
