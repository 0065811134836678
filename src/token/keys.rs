//! Key types, signature schemes, and the public-key encodings around them.

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912::{ID_EC_PUBLIC_KEY, RSA_ENCRYPTION, SECP_256_R_1};
use der::asn1::{BitString, OctetString, UintRef};
use der::{Decode, Encode, Sequence};
use sha1::{Digest, Sha1};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

pub use crate::alg::{KeyKind, PublicKeyAlg, SignScheme};

/// PKCS#1 RSAPublicKey.
#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

/// DER of the named-curve parameters for P-256, as CKA_EC_PARAMS wants them.
pub(crate) fn p256_params_der() -> Vec<u8> {
    // Encoding a constant OID cannot fail.
    SECP_256_R_1.to_der().unwrap_or_default()
}

/// SubjectPublicKeyInfo DER for an RSA key from its modulus and exponent.
pub fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, der::Error> {
    let key = RsaPublicKey {
        modulus: UintRef::new(strip_zeros(modulus))?,
        public_exponent: UintRef::new(strip_zeros(exponent))?,
    };
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: RSA_ENCRYPTION,
            parameters: Some(der::asn1::Null.into()),
        },
        subject_public_key: BitString::from_bytes(&key.to_der()?)?,
    };
    spki.to_der()
}

/// SubjectPublicKeyInfo DER for a P-256 key from its uncompressed point.
pub fn ec_p256_spki(point: &[u8]) -> Result<Vec<u8>, der::Error> {
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(der::Any::from(&SECP_256_R_1)),
        },
        subject_public_key: BitString::from_bytes(point)?,
    };
    spki.to_der()
}

/// CKA_EC_POINT is a DER OCTET STRING around the point in PKCS#11, but some
/// modules return the bare point; accept both, and only uncompressed P-256.
pub fn ec_point_from_attribute(raw: &[u8]) -> Option<Vec<u8>> {
    let point = if raw.len() == 65 && raw.first() == Some(&0x04) {
        raw.to_vec()
    } else {
        OctetString::from_der(raw).ok()?.as_bytes().to_vec()
    };
    (point.len() == 65 && point.first() == Some(&0x04)).then_some(point)
}

/// The CKA_ID rule NSS and OpenSC use: SHA-1 of the RSA modulus (unsigned,
/// big-endian, no leading zeros) or of the uncompressed EC point.
pub fn key_id_for_rsa(modulus: &[u8]) -> Vec<u8> {
    Sha1::digest(strip_zeros(modulus)).to_vec()
}

pub fn key_id_for_ec(point: &[u8]) -> Vec<u8> {
    Sha1::digest(point).to_vec()
}

/// The CKA_ID a key with this SubjectPublicKeyInfo gets.
pub fn key_id_for_spki(spki_der: &[u8]) -> Option<Vec<u8>> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der).ok()?;
    let bits = spki.subject_public_key.as_bytes()?;
    match spki.algorithm.oid {
        RSA_ENCRYPTION => {
            let key = RsaPublicKey::from_der(bits).ok()?;
            Some(key_id_for_rsa(key.modulus.as_bytes()))
        }
        ID_EC_PUBLIC_KEY => Some(key_id_for_ec(bits)),
        _ => None,
    }
}

/// What kind of key a SubjectPublicKeyInfo holds.
pub fn spki_alg(spki: &SubjectPublicKeyInfoOwned) -> PublicKeyAlg {
    match spki.algorithm.oid {
        RSA_ENCRYPTION => spki
            .subject_public_key
            .as_bytes()
            .and_then(|b| RsaPublicKey::from_der(b).ok())
            .map(|k| PublicKeyAlg::Rsa {
                bits: bit_length(k.modulus.as_bytes()),
            })
            .unwrap_or(PublicKeyAlg::Other),
        ID_EC_PUBLIC_KEY => {
            let curve: Option<ObjectIdentifier> = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as().ok());
            if curve == Some(SECP_256_R_1) {
                PublicKeyAlg::EcP256
            } else {
                PublicKeyAlg::Other
            }
        }
        _ => PublicKeyAlg::Other,
    }
}

fn bit_length(be: &[u8]) -> usize {
    let b = strip_zeros(be);
    match b.first() {
        Some(&top) => b.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(start..).unwrap_or_default()
}

/// r||s (as a token gives it) to the DER `ECDSA-Sig-Value` X.509 wants.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, der::Error> {
    #[derive(Sequence)]
    struct EcdsaSig<'a> {
        r: UintRef<'a>,
        s: UintRef<'a>,
    }
    if raw.len() != 64 {
        return Err(der::Error::from(der::ErrorKind::Length {
            tag: der::Tag::Sequence,
        }));
    }
    let (r, s) = raw.split_at(32);
    EcdsaSig {
        r: UintRef::new(strip_zeros(r))?,
        s: UintRef::new(strip_zeros(s))?,
    }
    .to_der()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in KeyKind::ALL {
            assert_eq!(k.as_str().parse::<KeyKind>().unwrap(), k);
        }
        for s in SignScheme::ALL {
            assert_eq!(s.as_str().parse::<SignScheme>().unwrap(), s);
        }
        assert!("rsa-1024".parse::<KeyKind>().is_err());
    }

    #[test]
    fn ec_point_both_encodings() {
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        assert_eq!(ec_point_from_attribute(&point), Some(point.clone()));
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend(&point);
        assert_eq!(ec_point_from_attribute(&wrapped), Some(point.clone()));
        assert_eq!(ec_point_from_attribute(&[0x04, 0x01, 0x02]), None);
        assert_eq!(ec_point_from_attribute(&[]), None);
    }

    #[test]
    fn rsa_spki_round_trips_and_id_ignores_leading_zero() {
        let mut modulus = vec![0x00, 0xc1];
        modulus.extend([0x55u8; 255]);
        let spki = rsa_spki(&modulus, &[1, 0, 1]).unwrap();
        let parsed = SubjectPublicKeyInfoOwned::from_der(&spki).unwrap();
        assert_eq!(spki_alg(&parsed), PublicKeyAlg::Rsa { bits: 2048 });
        assert_eq!(key_id_for_spki(&spki), Some(key_id_for_rsa(&modulus[1..])));
    }

    #[test]
    fn ecdsa_der_conversion() {
        let mut raw = vec![0u8; 64];
        raw[31] = 1;
        raw[32] = 0x80;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        // SEQUENCE { INTEGER 1, INTEGER 0x0080.. (33 bytes, sign byte) }
        assert_eq!(&der[..5], &[0x30, 3 + 35, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 0x21, 0x00]);
        assert!(ecdsa_raw_to_der(&raw[..63]).is_err());
    }
}
