//! X.509 certificates as certagent reads them: parsed once from hostile
//! bytes into the few facts the rest of the program uses.

use const_oid::db::rfc5280::{
    ID_CE_BASIC_CONSTRAINTS, ID_CE_EXT_KEY_USAGE, ID_CE_SUBJECT_ALT_NAME,
};
use const_oid::db::rfc5912::ID_KP_CLIENT_AUTH;
use der::{Decode, Encode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, SubjectAltName};

use crate::policy::Policy;
pub use crate::rawcert::raw_issuer_subject;
use crate::token::{PublicKeyAlg, SignScheme, spki_alg};

#[derive(Debug, thiserror::Error)]
#[error("not a usable X.509 certificate: {0}")]
pub struct CertError(pub String);

/// A parsed certificate and the facts derived from it.
#[derive(Debug, Clone)]
pub struct Cert {
    pub der: Vec<u8>,
    pub cert: Certificate,
    pub subject: String,
    pub issuer: String,
    /// Serial number in upper-case hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub key: PublicKeyAlg,
    pub spki_der: Vec<u8>,
    pub is_ca: bool,
    pub san: Vec<String>,
    pub client_auth: bool,
    pub sha256_fingerprint: String,
}

impl Cert {
    /// The holder as people name them: the common name with the
    /// organisation ("Ana Novak (Demo Company d.o.o.)"); the whole subject
    /// where it has no common name. Cleaned for display.
    pub fn holder(&self) -> String {
        let name = self.cert.tbs_certificate().subject();
        let text = |d: Option<x509_cert::ext::pkix::name::DirectoryString>| {
            d.map(|d| crate::text::clean(&d.value(), crate::text::NAME_MAX))
                .filter(|s| !s.is_empty())
        };
        let cn = text(name.common_name().ok().flatten());
        let o = text(name.organization().ok().flatten());
        match (cn, o) {
            (Some(cn), Some(o)) => {
                crate::text::clean(&format!("{cn} ({o})"), crate::text::NAME_MAX)
            }
            (Some(cn), None) => cn,
            _ => crate::text::clean(&self.subject, crate::text::NAME_MAX),
        }
    }

    pub fn from_der(der: &[u8]) -> Result<Cert, CertError> {
        let cert = Certificate::from_der(der).map_err(|e| CertError(e.to_string()))?;
        let tbs = cert.tbs_certificate();
        let validity = tbs.validity();
        let to_time = |t: x509_cert::time::Time| {
            let secs = i64::try_from(t.to_unix_duration().as_secs())
                .map_err(|_| CertError("validity date out of range".into()))?;
            OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|_| CertError("validity date out of range".into()))
        };
        let spki: &SubjectPublicKeyInfoOwned = tbs.subject_public_key_info();
        let spki_der = spki.to_der().map_err(|e| CertError(e.to_string()))?;
        let mut is_ca = false;
        let mut san = Vec::new();
        // No EKU extension means any use is allowed.
        let mut client_auth = true;
        for ext in tbs.extensions().map(|e| e.as_slice()).unwrap_or_default() {
            let value = ext.extn_value.as_bytes();
            match ext.extn_id {
                ID_CE_BASIC_CONSTRAINTS => {
                    let bc = BasicConstraints::from_der(value)
                        .map_err(|e| CertError(format!("basicConstraints: {e}")))?;
                    is_ca = bc.ca;
                }
                ID_CE_SUBJECT_ALT_NAME => {
                    let names = SubjectAltName::from_der(value)
                        .map_err(|e| CertError(format!("subjectAltName: {e}")))?;
                    san = names.0.iter().map(general_name).collect();
                }
                ID_CE_EXT_KEY_USAGE => {
                    let eku = ExtendedKeyUsage::from_der(value)
                        .map_err(|e| CertError(format!("extendedKeyUsage: {e}")))?;
                    client_auth = eku.0.contains(&ID_KP_CLIENT_AUTH);
                }
                _ => {}
            }
        }
        Ok(Cert {
            der: der.to_vec(),
            subject: tbs.subject().to_string(),
            issuer: tbs.issuer().to_string(),
            serial: hex::encode_upper(tbs.serial_number().as_bytes()),
            not_before: to_time(validity.not_before)?,
            not_after: to_time(validity.not_after)?,
            key: spki_alg(spki),
            spki_der,
            is_ca,
            san,
            client_auth,
            sha256_fingerprint: hex::encode_upper(Sha256::digest(der)),
            cert,
        })
    }

    /// The signature schemes this certificate's key can make.
    pub fn schemes(&self) -> &'static [SignScheme] {
        match self.key {
            PublicKeyAlg::Rsa { .. } => &[SignScheme::RsaPkcs1Sha256, SignScheme::RsaPssSha256],
            PublicKeyAlg::EcP256 => &[SignScheme::EcdsaP256Sha256],
            PublicKeyAlg::Other => &[],
        }
    }
}

fn general_name(n: &GeneralName) -> String {
    match n {
        GeneralName::Rfc822Name(s) => format!("email:{}", s.as_str()),
        GeneralName::DnsName(s) => format!("DNS:{}", s.as_str()),
        GeneralName::UniformResourceIdentifier(s) => format!("URI:{}", s.as_str()),
        GeneralName::DirectoryName(d) => format!("DirName:{d}"),
        GeneralName::IpAddress(ip) => {
            let b = ip.as_bytes();
            let addr: Option<std::net::IpAddr> = <[u8; 4]>::try_from(b)
                .map(|a| std::net::Ipv4Addr::from(a).into())
                .or_else(|_| <[u8; 16]>::try_from(b).map(|a| std::net::Ipv6Addr::from(a).into()))
                .ok();
            match addr {
                Some(addr) => format!("IP:{addr}"),
                None => format!("IP:{}", hex::encode(b)),
            }
        }
        GeneralName::OtherName(o) => format!("othername:{}", o.type_id),
        GeneralName::RegisteredId(o) => format!("RID:{o}"),
        GeneralName::EdiPartyName(_) => "EdiPartyName".to_string(),
    }
}

/// RFC 3339 in UTC, whole seconds.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Verify a signature made on the token against a public key, in software
/// (ring), so a key that signs garbage or belongs to another certificate is
/// caught. `signature` is as [`crate::token::Token::sign`] returns it.
pub fn verify(spki_der: &[u8], scheme: SignScheme, message: &[u8], signature: &[u8]) -> bool {
    let Ok(spki) = SubjectPublicKeyInfoOwned::from_der(spki_der) else {
        return false;
    };
    if !scheme.fits(spki_alg(&spki)) {
        return false;
    }
    let Some(key) = spki.subject_public_key.as_bytes() else {
        return false;
    };
    let alg: &dyn ring::signature::VerificationAlgorithm = match scheme {
        SignScheme::RsaPkcs1Sha256 => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        SignScheme::RsaPssSha256 => &ring::signature::RSA_PSS_2048_8192_SHA256,
        SignScheme::EcdsaP256Sha256 => &ring::signature::ECDSA_P256_SHA256_FIXED,
    };
    ring::signature::UnparsedPublicKey::new(alg, key)
        .verify(message, signature)
        .is_ok()
}

/// What `status` reports per certificate.
#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    pub id: String,
    pub subject: String,
    /// The holder as people name them ("Ana Novak (Demo Company)").
    pub holder: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub days_left: i64,
    pub state: crate::policy::State,
    pub next_notice: Option<String>,
}

impl StatusEntry {
    /// The status of the certificate `cert` (CKA_ID `id`) at `now`.
    pub fn new(id: &[u8], cert: &Cert, policy: &Policy, now: OffsetDateTime) -> StatusEntry {
        let a = policy.assess(cert.not_before, cert.not_after, now);
        StatusEntry {
            id: hex::encode(id),
            subject: cert.subject.clone(),
            holder: cert.holder(),
            serial: cert.serial.clone(),
            not_before: rfc3339(cert.not_before),
            not_after: rfc3339(cert.not_after),
            days_left: a.days_left,
            state: a.state,
            next_notice: a.next_notice.map(|n| rfc3339(n.at)),
        }
    }
}

/// Whether `cert_der` is signed by the key of `ca_der` and names it as its
/// issuer (raw bytes). Checked with ring for the algorithms CAs use.
pub fn signed_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    use ring::signature as sig;
    let (Ok(cert), Ok(ca)) = (
        Certificate::from_der(cert_der),
        Certificate::from_der(ca_der),
    ) else {
        return false;
    };
    let (Some((issuer, _)), Some((_, ca_subject))) =
        (raw_issuer_subject(cert_der), raw_issuer_subject(ca_der))
    else {
        return false;
    };
    if issuer != ca_subject {
        return false;
    }
    let Some(tbs) = crate::rawcert::raw_tbs(cert_der) else {
        return false;
    };
    let Some(signature) = cert.signature().as_bytes() else {
        return false;
    };
    let ca_spki = ca.tbs_certificate().subject_public_key_info();
    let Some(ca_key) = ca_spki.subject_public_key.as_bytes() else {
        return false;
    };
    let ca_alg = spki_alg(ca_spki);
    let p384 = ca_spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<const_oid::ObjectIdentifier>().ok())
        == Some(const_oid::db::rfc5912::SECP_384_R_1);
    let oid = cert.signature_algorithm().oid.to_string();
    let alg: &dyn sig::VerificationAlgorithm = match (oid.as_str(), ca_alg, p384) {
        ("1.2.840.113549.1.1.11", PublicKeyAlg::Rsa { .. }, _) => &sig::RSA_PKCS1_2048_8192_SHA256,
        ("1.2.840.113549.1.1.12", PublicKeyAlg::Rsa { .. }, _) => &sig::RSA_PKCS1_2048_8192_SHA384,
        ("1.2.840.113549.1.1.13", PublicKeyAlg::Rsa { .. }, _) => &sig::RSA_PKCS1_2048_8192_SHA512,
        ("1.2.840.10045.4.3.2", PublicKeyAlg::EcP256, _) => &sig::ECDSA_P256_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", PublicKeyAlg::EcP256, _) => &sig::ECDSA_P256_SHA384_ASN1,
        ("1.2.840.10045.4.3.2", PublicKeyAlg::Other, true) => &sig::ECDSA_P384_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", PublicKeyAlg::Other, true) => &sig::ECDSA_P384_SHA384_ASN1,
        _ => return false,
    };
    sig::UnparsedPublicKey::new(alg, ca_key)
        .verify(&tbs, signature)
        .is_ok()
}
