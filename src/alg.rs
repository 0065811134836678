//! The names of key types and signature schemes, shared by the driver
//! profiles, the configuration and the token layer. Plain data: this module
//! imports nothing from the rest of certagent.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Key pairs certagent generates, named as in `[policy] key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    Rsa2048,
    Rsa3072,
    EcP256,
}

impl KeyKind {
    pub const ALL: [KeyKind; 3] = [KeyKind::Rsa2048, KeyKind::Rsa3072, KeyKind::EcP256];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Rsa2048 => "rsa-2048",
            KeyKind::Rsa3072 => "rsa-3072",
            KeyKind::EcP256 => "ec-p256",
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeyKind::Rsa2048 | KeyKind::Rsa3072)
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        KeyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not one of rsa-2048, rsa-3072, ec-p256"))
    }
}

/// Signature schemes made on the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SignScheme {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (JWS RS256).
    RsaPkcs1Sha256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (JWS PS256).
    RsaPssSha256,
    /// ECDSA on P-256 with SHA-256 (JWS ES256). The token gives r||s.
    EcdsaP256Sha256,
}

impl SignScheme {
    pub const ALL: [SignScheme; 3] = [
        SignScheme::RsaPkcs1Sha256,
        SignScheme::RsaPssSha256,
        SignScheme::EcdsaP256Sha256,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignScheme::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
            SignScheme::RsaPssSha256 => "rsa-pss-sha256",
            SignScheme::EcdsaP256Sha256 => "ecdsa-p256-sha256",
        }
    }

    /// The JWS (RFC 7518) algorithm name.
    pub fn jws_name(self) -> &'static str {
        match self {
            SignScheme::RsaPkcs1Sha256 => "RS256",
            SignScheme::RsaPssSha256 => "PS256",
            SignScheme::EcdsaP256Sha256 => "ES256",
        }
    }

    /// Whether the scheme applies to a key of this algorithm.
    pub fn fits(self, alg: PublicKeyAlg) -> bool {
        match self {
            SignScheme::RsaPkcs1Sha256 | SignScheme::RsaPssSha256 => {
                matches!(alg, PublicKeyAlg::Rsa { .. })
            }
            SignScheme::EcdsaP256Sha256 => alg == PublicKeyAlg::EcP256,
        }
    }
}

impl fmt::Display for SignScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignScheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SignScheme::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("{s:?} is not one of rsa-pkcs1-sha256, rsa-pss-sha256, ecdsa-p256-sha256")
            })
    }
}

/// The algorithm of a public key, as far as certagent cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PublicKeyAlg {
    Rsa { bits: usize },
    EcP256,
    Other,
}

impl fmt::Display for PublicKeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKeyAlg::Rsa { bits } => write!(f, "RSA {bits} bits"),
            PublicKeyAlg::EcP256 => f.write_str("EC P-256"),
            PublicKeyAlg::Other => f.write_str("unsupported key type"),
        }
    }
}
