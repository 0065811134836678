//! The bank's certificate authorities: ECDSA P-256 keys made and used with
//! ring, and certificates built with the x509-cert builder.
//!
//! Two CAs live in a bank directory: the *issuing* CA that signs client
//! certificates (the one EST `/cacerts` hands out and the one client
//! certificates are checked against), and a separate *TLS* CA that only
//! signs the server's own TLS certificate. Keeping them apart means a
//! client certificate can never pass as a server certificate, and the
//! trust anchor a client needs for TLS says nothing about whom the bank
//! certifies.
//!
//! Testers are asked to trust the TLS CA in a browser, so it is made as
//! harmless as a trusted root can be: it is name-constrained (critical
//! NameConstraints) to `localhost` and `127.0.0.1`, and its private key
//! lives only in memory during `init`, which signs the one server
//! certificate and forgets it (see [`super::init`]).

use std::net::Ipv4Addr;
use std::str::FromStr;

use const_oid::AssociatedOid;
use const_oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ID_EC_PUBLIC_KEY, ID_KP_CLIENT_AUTH, ID_KP_SERVER_AUTH, SECP_256_R_1,
};
use der::asn1::{BitString, Ia5String, OctetString};
use der::{Decode, Encode};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use signature::Keypair;
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SignatureBitStringEncoding, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef,
};
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::constraints::name::{GeneralSubtree, NameConstraints};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::BankError;

/// Distinguished names of the bank's own certificates (RFC 4514).
pub const ISSUING_CA_NAME: &str =
    "CN=certagent reference bank issuing CA,O=certagent reference bank";
pub const TLS_CA_NAME: &str = "CN=certagent reference bank TLS CA,O=certagent reference bank";
pub const TLS_SERVER_NAME: &str = "CN=localhost,O=certagent reference bank";

/// Lifetimes: long for the CAs (a tester's bank should outlive the tests),
/// 365 days for what the bank issues to clients.
pub const CA_DAYS: i64 = 3650;
pub const SERVER_DAYS: i64 = 825;
pub const CLIENT_DAYS: i64 = 365;

fn crypto(what: &str) -> impl FnOnce(ring::error::Unspecified) -> BankError + '_ {
    move |_| BankError::Crypto(what.to_string())
}

fn build_err(e: impl std::fmt::Display) -> BankError {
    BankError::Build(e.to_string())
}

/// An ECDSA P-256 key held in memory, signing with ring.
pub struct CaKey {
    pair: EcdsaKeyPair,
    spki_der: Vec<u8>,
    rng: SystemRandom,
}

impl CaKey {
    /// A new key and its PKCS#8 encoding (to be stored mode 0600).
    pub fn generate() -> Result<(CaKey, Vec<u8>), BankError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(crypto("cannot generate an ECDSA P-256 key"))?;
        let key = CaKey::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<CaKey, BankError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
            .map_err(|e| BankError::Crypto(format!("not an ECDSA P-256 PKCS#8 key: {e}")))?;
        let spki_der = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: ID_EC_PUBLIC_KEY,
                parameters: Some(der::Any::from(&SECP_256_R_1)),
            },
            subject_public_key: BitString::from_bytes(pair.public_key().as_ref())
                .map_err(build_err)?,
        }
        .to_der()
        .map_err(build_err)?;
        Ok(CaKey {
            pair,
            spki_der,
            rng,
        })
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    fn spki(&self) -> Result<SubjectPublicKeyInfoOwned, BankError> {
        SubjectPublicKeyInfoOwned::from_der(&self.spki_der).map_err(build_err)
    }
}

/// The CA's public key as the builder wants it.
#[derive(Clone)]
pub struct CaPublicKey(Vec<u8>);

impl EncodePublicKey for CaPublicKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::try_from(self.0.as_slice())?)
    }
}

/// A DER `ECDSA-Sig-Value`, as ring's `_ASN1` signing gives it.
pub struct CaSignature(Vec<u8>);

impl SignatureBitStringEncoding for CaSignature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

impl Keypair for CaKey {
    type VerifyingKey = CaPublicKey;
    fn verifying_key(&self) -> CaPublicKey {
        CaPublicKey(self.spki_der.clone())
    }
}

impl DynSignatureAlgorithmIdentifier for CaKey {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        // RFC 5758: ecdsa-with-SHA256 has absent parameters.
        Ok(AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA_256,
            parameters: None,
        })
    }
}

impl signature::Signer<CaSignature> for CaKey {
    fn try_sign(&self, msg: &[u8]) -> Result<CaSignature, signature::Error> {
        let sig = self
            .pair
            .sign(&self.rng, msg)
            .map_err(|_| signature::Error::from_source("ECDSA signing failed"))?;
        Ok(CaSignature(sig.as_ref().to_vec()))
    }
}

/// A CA: its key and its certificate.
pub struct Ca {
    pub key: CaKey,
    pub cert_der: Vec<u8>,
    pub name: Name,
}

impl Ca {
    /// A CA from its stored key and certificate; checks that they belong together.
    pub fn load(key_pkcs8: &[u8], cert_der: &[u8]) -> Result<Ca, BankError> {
        let key = CaKey::from_pkcs8(key_pkcs8)?;
        let cert = Certificate::from_der(cert_der).map_err(build_err)?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info().to_der().map_err(build_err)?;
        if spki != key.spki_der {
            return Err(BankError::Crypto(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        Ok(Ca {
            key,
            name: tbs.subject().clone(),
            cert_der: cert_der.to_vec(),
        })
    }

    /// A new self-signed CA called `name`, unconstrained (the issuing CA).
    pub fn create(name: &str) -> Result<(Ca, Vec<u8>), BankError> {
        Ca::create_with(name, None)
    }

    /// A new self-signed CA for the bank's TLS server only: name-constrained
    /// to the names of [`Ca::issue_tls_server`] (`localhost`, `127.0.0.1`),
    /// so that a browser that trusts it trusts it for nothing else.
    pub fn create_tls(name: &str) -> Result<(Ca, Vec<u8>), BankError> {
        Ca::create_with(name, Some(tls_name_constraints()?))
    }

    fn create_with(name: &str, constraints: Option<Extension>) -> Result<(Ca, Vec<u8>), BankError> {
        let (key, pkcs8) = CaKey::generate()?;
        let subject = parse_name(name)?;
        let now = OffsetDateTime::now_utc();
        let profile = Profile {
            issuer: subject.clone(),
            subject: subject.clone(),
            kind: Kind::Ca(constraints),
        };
        let der = sign(
            profile,
            &key,
            random_serial(|_| false)?,
            now - time::Duration::minutes(1),
            now + time::Duration::days(CA_DAYS),
            key.spki()?,
        )?;
        Ok((
            Ca {
                key,
                cert_der: der,
                name: subject,
            },
            pkcs8,
        ))
    }

    /// The TLS server certificate for 127.0.0.1 and localhost, with a new key.
    /// Returns (certificate DER, key PKCS#8).
    pub fn issue_tls_server(&self) -> Result<(Vec<u8>, Vec<u8>), BankError> {
        let (server_key, pkcs8) = CaKey::generate()?;
        let now = OffsetDateTime::now_utc();
        let san = SubjectAltName(vec![
            GeneralName::DnsName(Ia5String::new(TLS_DNS_NAME).map_err(build_err)?),
            GeneralName::IpAddress(OctetString::new(TLS_IP.octets().to_vec()).map_err(build_err)?),
        ]);
        let profile = Profile {
            issuer: self.name.clone(),
            subject: parse_name(TLS_SERVER_NAME)?,
            kind: Kind::TlsServer(extension(false, &san).map_err(build_err)?),
        };
        let der = sign(
            profile,
            &self.key,
            random_serial(|_| false)?,
            now - time::Duration::minutes(1),
            now + time::Duration::days(SERVER_DAYS),
            server_key.spki()?,
        )?;
        Ok((der, pkcs8))
    }

    /// A client certificate: `subject` and the optional subjectAltName
    /// extension are copied as given.
    pub fn issue_client(&self, req: &ClientCert) -> Result<Vec<u8>, BankError> {
        let profile = Profile {
            issuer: self.name.clone(),
            subject: req.subject.clone(),
            kind: Kind::Client(req.san.clone()),
        };
        sign(
            profile,
            &self.key,
            req.serial.clone(),
            req.not_before,
            req.not_after,
            req.spki.clone(),
        )
    }
}

/// What a client certificate is made of.
pub struct ClientCert {
    pub subject: Name,
    pub spki: SubjectPublicKeyInfoOwned,
    pub serial: SerialNumber,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub san: Option<Extension>,
}

/// The names the bank's TLS server certificate holds, and all the TLS CA
/// may ever vouch for.
pub const TLS_DNS_NAME: &str = "localhost";
pub const TLS_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// NameConstraints (RFC 5280 4.2.1.10, critical): permitted dNSName
/// `localhost` and iPAddress 127.0.0.1/32. Only those two name forms are
/// constrained; the server certificate has no others (IPv6 is not served,
/// so no `::1/128`: with an iPAddress subtree present, every IPv6 address
/// falls outside it).
fn tls_name_constraints() -> Result<Extension, BankError> {
    let mut ip_and_mask = TLS_IP.octets().to_vec();
    ip_and_mask.extend([0xff; 4]);
    let subtree = |base| GeneralSubtree {
        base,
        minimum: 0,
        maximum: None,
    };
    let constraints = NameConstraints {
        permitted_subtrees: Some(vec![
            subtree(GeneralName::DnsName(
                Ia5String::new(TLS_DNS_NAME).map_err(build_err)?,
            )),
            subtree(GeneralName::IpAddress(
                OctetString::new(ip_and_mask).map_err(build_err)?,
            )),
        ]),
        excluded_subtrees: None,
    };
    extension(true, &constraints).map_err(build_err)
}

/// Parse an RFC 4514 name, refusing an empty one.
pub fn parse_name(s: &str) -> Result<Name, BankError> {
    let bad = |reason: String| BankError::BadSubject {
        subject: s.to_string(),
        reason,
    };
    let name = Name::from_str(s).map_err(|e| bad(e.to_string()))?;
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    Ok(name)
}

/// A positive serial of exactly 16 random bytes that `taken` does not know.
/// The top byte is 0x40..=0x7f: positive, and never shortened by DER.
pub fn random_serial(taken: impl Fn(&str) -> bool) -> Result<SerialNumber, BankError> {
    let rng = SystemRandom::new();
    for _ in 0..16 {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes)
            .map_err(crypto("the random generator failed"))?;
        bytes[0] = (bytes[0] & 0x3f) | 0x40;
        if !taken(&hex::encode_upper(bytes)) {
            return SerialNumber::new(&bytes).map_err(build_err);
        }
    }
    Err(BankError::Crypto(
        "no unused serial number found in 16 tries".into(),
    ))
}

/// Seconds precision, as X.509 times carry.
fn x509_time(t: OffsetDateTime) -> Result<Time, BankError> {
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| BankError::Build(format!("{t} is before 1970")))?;
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    Time::try_from(st).map_err(build_err)
}

fn sign(
    profile: Profile,
    key: &CaKey,
    serial: SerialNumber,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    spki: SubjectPublicKeyInfoOwned,
) -> Result<Vec<u8>, BankError> {
    let validity = Validity::new(x509_time(not_before)?, x509_time(not_after)?);
    let builder = CertificateBuilder::new(profile, serial, validity, spki).map_err(build_err)?;
    let cert = builder.build::<_, CaSignature>(key).map_err(build_err)?;
    cert.to_der().map_err(build_err)
}

/// An extension holding `value`, DER-encoded.
fn extension<T: Encode + AssociatedOid>(critical: bool, value: &T) -> der::Result<Extension> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

enum Kind {
    /// With NameConstraints, if any.
    Ca(Option<Extension>),
    /// With its subjectAltName.
    TlsServer(Extension),
    /// With the subjectAltName copied from the request, if any.
    Client(Option<Extension>),
}

/// The bank's own certificate profile: exactly the extensions each kind
/// of certificate needs, no more.
struct Profile {
    issuer: Name,
    subject: Name,
    kind: Kind,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        let (eku, san) = match &self.kind {
            Kind::Ca(constraints) => {
                let mut out = vec![
                    extension(
                        true,
                        &BasicConstraints {
                            ca: true,
                            path_len_constraint: Some(0),
                        },
                    )?,
                    extension(true, &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))?,
                    extension(false, &ski)?,
                ];
                out.extend(constraints.iter().cloned());
                return Ok(out);
            }
            Kind::TlsServer(san) => (ID_KP_SERVER_AUTH, Some(san)),
            Kind::Client(san) => (ID_KP_CLIENT_AUTH, san.as_ref()),
        };
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(SubjectKeyIdentifier::try_from(issuer_spk)?.0),
            ..Default::default()
        };
        let mut out = vec![
            extension(
                true,
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
            )?,
            extension(true, &KeyUsage(KeyUsages::DigitalSignature.into()))?,
            extension(false, &ExtendedKeyUsage(vec![eku]))?,
            extension(false, &ski)?,
            extension(false, &aki)?,
        ];
        out.extend(san.cloned());
        Ok(out)
    }
}

/// PEM with the given label (LF line ends).
pub fn pem(label: &str, der: &[u8]) -> Result<String, BankError> {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).map_err(build_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use certagent::cert::Cert;

    #[test]
    fn ca_and_client_certificates_have_the_promised_shape() {
        let (ca, pkcs8) = Ca::create(ISSUING_CA_NAME).unwrap();
        let again = Ca::load(&pkcs8, &ca.cert_der).unwrap();
        assert_eq!(again.name, ca.name);
        let ca_cert = Cert::from_der(&ca.cert_der).unwrap();
        assert!(ca_cert.is_ca);
        assert_eq!(ca_cert.subject, ISSUING_CA_NAME);

        let (_, client_key) = CaKey::generate().unwrap();
        let client = CaKey::from_pkcs8(&client_key).unwrap();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let serial = random_serial(|_| false).unwrap();
        let der = ca
            .issue_client(&ClientCert {
                subject: parse_name("CN=alice,O=Bank").unwrap(),
                spki: client.spki().unwrap(),
                serial: serial.clone(),
                not_before: now,
                not_after: now + time::Duration::days(365),
                san: None,
            })
            .unwrap();
        let c = Cert::from_der(&der).unwrap();
        assert_eq!(c.subject, "CN=alice,O=Bank");
        assert_eq!(c.issuer, ISSUING_CA_NAME);
        assert!(!c.is_ca && c.client_auth);
        assert_eq!(c.serial.len(), 32);
        assert_eq!(c.not_after - c.not_before, time::Duration::days(365));
        // The CA's signature verifies with ring.
        let cert = Certificate::from_der(&der).unwrap();
        let tbs = cert.tbs_certificate().to_der().unwrap();
        let point = SubjectPublicKeyInfoOwned::from_der(ca.key.spki_der()).unwrap();
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            point.subject_public_key.raw_bytes(),
        )
        .verify(&tbs, cert.signature().raw_bytes())
        .unwrap();
    }

    #[test]
    fn serials_avoid_taken_ones_and_are_positive() {
        for _ in 0..50 {
            let s = random_serial(|_| false).unwrap();
            assert_eq!(s.as_bytes().len(), 16);
            assert!(s.as_bytes()[0] & 0x80 == 0);
        }
        assert!(random_serial(|_| true).is_err());
    }

    #[test]
    fn names_must_parse_and_not_be_empty() {
        assert!(parse_name("CN=a,O=b").is_ok());
        assert!(parse_name("").is_err());
        assert!(parse_name("no equals sign").is_err());
    }
}
