//! X.509 certificates as certagent reads them: parsed once from hostile
//! bytes into the few facts the rest of the program uses.

use const_oid::db::rfc5280::{
    ID_CE_BASIC_CONSTRAINTS, ID_CE_EXT_KEY_USAGE, ID_CE_SUBJECT_ALT_NAME,
};
use const_oid::db::rfc5912::ID_KP_CLIENT_AUTH;
use der::asn1::AnyRef;
use der::{Decode, Encode, Reader, SliceReader, Tag, Tagged};
use serde::Serialize;
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, SubjectAltName};

use crate::policy::Policy;
use crate::token::{PublicKeyAlg, SignScheme, Token, TokenError, spki_alg};

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
        GeneralName::IpAddress(ip) => match ip.as_bytes().len() {
            4 | 16 => {
                let b = ip.as_bytes();
                let addr: std::net::IpAddr = if b.len() == 4 {
                    std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()
                } else {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(b);
                    std::net::Ipv6Addr::from(a).into()
                };
                format!("IP:{addr}")
            }
            _ => format!("IP:{}", hex::encode(ip.as_bytes())),
        },
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
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub days_left: i64,
    pub state: crate::policy::State,
    pub next_notice: Option<String>,
}

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

impl StatusEntry {
    /// The status of the certificate `cert` (CKA_ID `id`) at `now`.
    pub fn new(id: &[u8], cert: &Cert, policy: &Policy, now: OffsetDateTime) -> StatusEntry {
        let a = policy.assess(cert.not_before, cert.not_after, now);
        StatusEntry {
            id: hex::encode(id),
            subject: cert.subject.clone(),
            serial: cert.serial.clone(),
            not_before: rfc3339(cert.not_before),
            not_after: rfc3339(cert.not_after),
            days_left: a.days_left,
            state: a.state,
            next_notice: a.next_notice.map(|n| rfc3339(n.at)),
        }
    }
}

/// A bank certificate on the token, with its CKA_ID and label.
#[derive(Debug, Clone)]
pub struct TokenCert {
    pub id: Vec<u8>,
    pub label: String,
    pub cert: Cert,
}

/// The bank certificates on the token: parseable end-entity certificates
/// (CA certificates some tokens carry are left out), soonest expiry first.
/// Unparseable objects are logged and skipped, never fatal.
pub fn bank_certificates(token: &Token) -> Result<Vec<TokenCert>, TokenError> {
    let mut out = Vec::new();
    for obj in token.certificates()? {
        match Cert::from_der(&obj.der) {
            Ok(cert) if cert.is_ca => {}
            Ok(cert) => out.push(TokenCert {
                id: obj.id,
                label: obj.label,
                cert,
            }),
            Err(e) => log::warn!(
                "skipping certificate object {:?} (id {}): {e}",
                obj.label,
                hex::encode(&obj.id)
            ),
        }
    }
    out.sort_by_key(|c| (c.cert.not_after, c.id.clone()));
    Ok(out)
}
