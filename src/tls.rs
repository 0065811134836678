//! TLS to the bank: rustls 0.23 with the ring provider, the bank's server
//! verified against `server_roots` (there is no insecure mode), and a client
//! certificate whose private key signs on the token.
//!
//! RSA keys sign with RSA-PSS in TLS 1.3; a token without PSS (by its
//! mechanism list or its driver profile) is limited to TLS 1.2 with
//! PKCS#1 v1.5. P-256 keys use ECDSA. Token signing is blocking, so it runs
//! under `block_in_place` and never stalls the async runtime's other tasks.

use std::path::Path;
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::crypto::ring as provider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{ClientConfig, RootCertStore, SignatureAlgorithm, SignatureScheme};

use crate::cert::Cert;
use crate::token::{PublicKeyAlg, SignScheme, Token, block_in_place, ecdsa_raw_to_der};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the bank's TLS trust anchors {path}: {reason}")]
    Roots { path: String, reason: String },
    #[error(
        "the token cannot authenticate with this {0} key in TLS (no usable signature mechanism)"
    )]
    NoScheme(PublicKeyAlg),
    #[error("TLS set-up failed: {0}")]
    Config(String),
}

/// Load PEM trust anchors (the bank's `server_roots`).
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let err = |reason: String| TlsError::Roots {
        path: path.display().to_string(),
        reason,
    };
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        store.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(store)
}

/// The current certificate with its key on the token, as a TLS client credential.
#[derive(Debug, Clone)]
pub struct TokenCredential {
    key: Arc<TokenKey>,
    certified: Arc<CertifiedKey>,
}

impl TokenCredential {
    /// `id` is the CKA_ID of the private key; `cert` the certificate to present.
    pub fn new(token: Arc<Token>, id: &[u8], cert: &Cert) -> Result<TokenCredential, TlsError> {
        let (algorithm, schemes) = match cert.key {
            PublicKeyAlg::Rsa { .. } => {
                let mut s = Vec::new();
                if token.supports(SignScheme::RsaPssSha256) {
                    s.push(SignatureScheme::RSA_PSS_SHA256);
                }
                if token.supports(SignScheme::RsaPkcs1Sha256) {
                    s.push(SignatureScheme::RSA_PKCS1_SHA256);
                }
                (SignatureAlgorithm::RSA, s)
            }
            PublicKeyAlg::EcP256 if token.supports(SignScheme::EcdsaP256Sha256) => (
                SignatureAlgorithm::ECDSA,
                vec![SignatureScheme::ECDSA_NISTP256_SHA256],
            ),
            other => return Err(TlsError::NoScheme(other)),
        };
        if schemes.is_empty() {
            return Err(TlsError::NoScheme(cert.key));
        }
        let key = Arc::new(TokenKey {
            token,
            id: id.to_vec(),
            algorithm,
            schemes,
        });
        let certified = Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(cert.der.clone())],
            key.clone(),
        ));
        Ok(TokenCredential { key, certified })
    }

    /// Whether TLS 1.3 is possible: it needs RSA-PSS for RSA keys.
    pub fn tls13_capable(&self) -> bool {
        self.key.algorithm != SignatureAlgorithm::RSA
            || self.key.schemes.contains(&SignatureScheme::RSA_PSS_SHA256)
    }
}

/// A client configuration trusting `roots`, optionally authenticating with a
/// token credential. TLS 1.3 is preferred; 1.2 is allowed (and is the only
/// version when the token key cannot do what 1.3 demands).
pub fn client_config(
    roots: RootCertStore,
    credential: Option<TokenCredential>,
) -> Result<ClientConfig, TlsError> {
    let versions: &[&rustls::SupportedProtocolVersion] = match &credential {
        Some(c) if !c.tls13_capable() => &[&rustls::version::TLS12],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    Ok(match credential {
        Some(c) => builder.with_client_cert_resolver(Arc::new(c)),
        None => builder.with_no_client_auth(),
    })
}

impl ResolvesClientCert for TokenCredential {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        // Present the certificate only if the server accepts a scheme we can make.
        self.key
            .schemes
            .iter()
            .any(|s| sigschemes.contains(s))
            .then(|| self.certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct TokenKey {
    token: Arc<Token>,
    id: Vec<u8>,
    algorithm: SignatureAlgorithm,
    /// In order of preference.
    schemes: Vec<SignatureScheme>,
}

impl SigningKey for TokenKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = *self.schemes.iter().find(|s| offered.contains(s))?;
        Some(Box::new(TokenTlsSigner {
            token: self.token.clone(),
            id: self.id.clone(),
            scheme,
        }))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }
}

#[derive(Debug)]
struct TokenTlsSigner {
    token: Arc<Token>,
    id: Vec<u8>,
    scheme: SignatureScheme,
}

impl Signer for TokenTlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let scheme = match self.scheme {
            SignatureScheme::RSA_PSS_SHA256 => SignScheme::RsaPssSha256,
            SignatureScheme::RSA_PKCS1_SHA256 => SignScheme::RsaPkcs1Sha256,
            SignatureScheme::ECDSA_NISTP256_SHA256 => SignScheme::EcdsaP256Sha256,
            other => {
                return Err(rustls::Error::General(format!(
                    "unsupported scheme {other:?}"
                )));
            }
        };
        let sign = || self.token.sign(&self.id, scheme, message);
        let raw = block_in_place(sign).map_err(|e| rustls::Error::General(e.to_string()))?;
        if scheme == SignScheme::EcdsaP256Sha256 {
            // TLS carries ECDSA signatures DER-encoded.
            ecdsa_raw_to_der(&raw).map_err(|e| rustls::Error::General(e.to_string()))
        } else {
            Ok(raw)
        }
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}
