//! PKCS#10 requests as they arrive from the network: parsed strictly,
//! their signature checked with ring over the exact bytes that were signed.

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME;
use const_oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, ID_EC_PUBLIC_KEY, ID_EXTENSION_REQ, ID_RSASSA_PSS,
    RSA_ENCRYPTION, SECP_256_R_1, SECP_384_R_1, SHA_256_WITH_RSA_ENCRYPTION,
    SHA_384_WITH_RSA_ENCRYPTION, SHA_512_WITH_RSA_ENCRYPTION,
};
use der::asn1::AnyRef;
use der::{Decode, Encode, Reader, SliceReader};
use ring::signature::{self as sig, VerificationAlgorithm};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::name::Name;
use x509_cert::request::CertReq;

/// A request whose signature verified.
#[derive(Debug)]
pub struct CheckedCsr {
    /// The subject exactly as encoded in the request.
    pub subject_der: Vec<u8>,
    pub subject: Name,
    pub spki: spki::SubjectPublicKeyInfoOwned,
    pub spki_der: Vec<u8>,
    /// The subjectAltName from the extensionRequest attribute, if any.
    pub san: Option<Extension>,
}

/// Why a request is unusable; the text goes back to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CsrError(pub String);

fn bad(what: &str) -> impl FnOnce(der::Error) -> CsrError + '_ {
    move |e| CsrError(format!("{what}: {e}"))
}

/// Parse a DER PKCS#10 request and verify its signature.
pub fn check(der: &[u8]) -> Result<CheckedCsr, CsrError> {
    let req = CertReq::from_der(der).map_err(bad("not a PKCS#10 certificate request"))?;
    // The signed bytes are the request's own encoding of CertificationRequestInfo
    // (its first element), not a re-encoding of what we parsed.
    let outer = AnyRef::from_der(der).map_err(bad("not a PKCS#10 certificate request"))?;
    let mut reader = SliceReader::new(outer.value()).map_err(bad("request"))?;
    let info: AnyRef<'_> = reader.decode().map_err(bad("request info"))?;
    let info_der = info.to_der().map_err(bad("request info"))?;
    let subject_der = raw_subject(info.value())
        .ok_or_else(|| CsrError("the request has no readable subject".into()))?;

    let spki = req.info.public_key.clone();
    let spki_der = spki.to_der().map_err(bad("public key"))?;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| CsrError("the public key is not a whole number of bytes".into()))?;
    let signature = req
        .signature
        .as_bytes()
        .ok_or_else(|| CsrError("the signature is not a whole number of bytes".into()))?;
    let algs = algorithms(req.algorithm.oid, &spki)?;
    let verified = algs.iter().any(|alg| {
        sig::UnparsedPublicKey::new(*alg, key)
            .verify(&info_der, signature)
            .is_ok()
    });
    if !verified {
        return Err(CsrError(
            "the request's signature does not verify with its public key".into(),
        ));
    }

    let san = extension_request_san(&req)?;
    Ok(CheckedCsr {
        subject: req.info.subject.clone(),
        subject_der,
        spki,
        spki_der,
        san,
    })
}

/// The ring algorithms that can check a signature of `sig_alg` made by
/// this key. RSA must be 2048 bits or more (ring refuses smaller keys).
fn algorithms(
    sig_alg: ObjectIdentifier,
    spki: &spki::SubjectPublicKeyInfoOwned,
) -> Result<Vec<&'static dyn VerificationAlgorithm>, CsrError> {
    let key_alg = spki.algorithm.oid;
    let curve: Option<ObjectIdentifier> = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as().ok());
    let algs: Vec<&'static dyn VerificationAlgorithm> = match (key_alg, curve, sig_alg) {
        (ID_EC_PUBLIC_KEY, Some(SECP_256_R_1), ECDSA_WITH_SHA_256) => {
            vec![&sig::ECDSA_P256_SHA256_ASN1]
        }
        (ID_EC_PUBLIC_KEY, Some(SECP_256_R_1), ECDSA_WITH_SHA_384) => {
            vec![&sig::ECDSA_P256_SHA384_ASN1]
        }
        (ID_EC_PUBLIC_KEY, Some(SECP_384_R_1), ECDSA_WITH_SHA_256) => {
            vec![&sig::ECDSA_P384_SHA256_ASN1]
        }
        (ID_EC_PUBLIC_KEY, Some(SECP_384_R_1), ECDSA_WITH_SHA_384) => {
            vec![&sig::ECDSA_P384_SHA384_ASN1]
        }
        (RSA_ENCRYPTION, _, SHA_256_WITH_RSA_ENCRYPTION) => {
            vec![&sig::RSA_PKCS1_2048_8192_SHA256]
        }
        (RSA_ENCRYPTION, _, SHA_384_WITH_RSA_ENCRYPTION) => {
            vec![&sig::RSA_PKCS1_2048_8192_SHA384]
        }
        (RSA_ENCRYPTION, _, SHA_512_WITH_RSA_ENCRYPTION) => {
            vec![&sig::RSA_PKCS1_2048_8192_SHA512]
        }
        // The PSS parameters name the hash; any of these that verifies was
        // made by the key's owner, so trying each is safe.
        (RSA_ENCRYPTION, _, ID_RSASSA_PSS) => vec![
            &sig::RSA_PSS_2048_8192_SHA256,
            &sig::RSA_PSS_2048_8192_SHA384,
            &sig::RSA_PSS_2048_8192_SHA512,
        ],
        (RSA_ENCRYPTION | ID_EC_PUBLIC_KEY, _, _) => {
            return Err(CsrError(format!(
                "the signature algorithm {sig_alg} is not supported for this key"
            )));
        }
        _ => {
            return Err(CsrError(format!(
                "the key type {key_alg} is not supported: use RSA (2048 bits or more) or EC P-256"
            )));
        }
    };
    Ok(algs)
}

/// The subject's bytes inside CertificationRequestInfo's contents:
/// version INTEGER, then subject Name.
fn raw_subject(info_contents: &[u8]) -> Option<Vec<u8>> {
    let mut r = SliceReader::new(info_contents).ok()?;
    let _version: AnyRef<'_> = r.decode().ok()?;
    let subject: AnyRef<'_> = r.decode().ok()?;
    subject.to_der().ok()
}

/// The subjectAltName among the requested extensions. A malformed one is
/// an error, not silently dropped: the client asked for it.
fn extension_request_san(req: &CertReq) -> Result<Option<Extension>, CsrError> {
    for attr in req
        .info
        .attributes
        .iter()
        .filter(|a| a.oid == ID_EXTENSION_REQ)
    {
        for value in attr.values.iter() {
            let exts: Vec<Extension> = value
                .decode_as()
                .map_err(bad("the extensionRequest attribute"))?;
            if let Some(san) = exts
                .into_iter()
                .find(|e| e.extn_id == ID_CE_SUBJECT_ALT_NAME)
            {
                SubjectAltName::from_der(san.extn_value.as_bytes())
                    .map_err(bad("the requested subjectAltName"))?;
                return Ok(Some(san));
            }
        }
    }
    Ok(None)
}

/// Whether two DER names are the same name: equal bytes, or the same
/// attributes with the same text in the same order, whatever string types
/// carry it (strongSwan writes PrintableString where x509-cert writes
/// UTF8String). Matching is exact otherwise: no case folding.
pub fn same_name(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let (Ok(a), Ok(b)) = (Name::from_der(a), Name::from_der(b)) else {
        return false;
    };
    let rdns = |n: &Name| -> Vec<Vec<String>> {
        n.iter_rdn()
            .map(|rdn| {
                let mut atvs: Vec<String> = rdn.iter().map(|atv| atv.to_string()).collect();
                atvs.sort();
                atvs
            })
            .collect()
    };
    rdns(&a) == rdns(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn names_match_across_string_types_but_not_across_values() {
        let utf8 = Name::from_str("CN=alice,O=Bank").unwrap().to_der().unwrap();
        // The same name as strongSwan encodes it: PrintableString values.
        let printable = hex::decode(concat!(
            "301f310d300b060355040a130442616e6b",
            "310e300c06035504031305616c696365"
        ))
        .unwrap();
        assert_ne!(utf8, printable);
        assert!(same_name(&utf8, &printable));
        let other = Name::from_str("CN=alicia,O=Bank")
            .unwrap()
            .to_der()
            .unwrap();
        assert!(!same_name(&utf8, &other));
        let reordered = Name::from_str("O=Bank,CN=alice").unwrap().to_der().unwrap();
        assert!(!same_name(&utf8, &reordered));
        assert!(!same_name(&utf8, b"garbage"));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(check(b"").is_err());
        assert!(check(b"\x30\x03\x02\x01\x00").is_err());
        assert!(check(&[0x30; 100]).is_err());
    }
}
