//! Certificate signing requests built with x509-cert and signed on the token.
//!
//! The subject (and subjectAltName, if any) is copied byte for byte from the
//! current certificate: the bank matches renewals on them.

use std::cell::RefCell;

use const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME;
use const_oid::db::rfc5912::{ECDSA_WITH_SHA_256, SHA_256_WITH_RSA_ENCRYPTION};
use der::asn1::BitString;
use der::{Decode, Encode};
use signature::Keypair;
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SignatureBitStringEncoding, SubjectPublicKeyInfoOwned,
};
use x509_cert::builder::{Builder, RequestBuilder};
use x509_cert::request::CertReq;

use crate::cert::Cert;
use crate::token::{SignScheme, Token, TokenError, ecdsa_raw_to_der};

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot build the certificate request: {0}")]
    Build(String),
    #[error("the key cannot sign a certificate request with {0}")]
    Scheme(SignScheme),
}

/// The public half of a token key, in the form the x509-cert builder wants.
#[derive(Debug, Clone)]
pub struct TokenPublicKey(SubjectPublicKeyInfoOwned);

impl EncodePublicKey for TokenPublicKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::try_from(self.0.to_der()?)?)
    }
}

/// A signature as X.509 carries it (DER for ECDSA).
#[derive(Debug, Clone)]
pub struct TokenSignature(Vec<u8>);

impl SignatureBitStringEncoding for TokenSignature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

/// Signs X.509 structures with a private key on the token.
pub struct TokenSigner<'a> {
    token: &'a Token,
    id: Vec<u8>,
    public: TokenPublicKey,
    scheme: SignScheme,
    // The builder flattens errors to `signature::Error`; keep the token's
    // own error so the caller can tell "token removed" from "bad PIN".
    last_error: RefCell<Option<TokenError>>,
}

impl<'a> TokenSigner<'a> {
    /// `scheme` must be PKCS#1 v1.5 for RSA or ECDSA for P-256: those are
    /// what every CA accepts in a request.
    pub fn new(
        token: &'a Token,
        id: &[u8],
        spki_der: &[u8],
        scheme: SignScheme,
    ) -> Result<Self, CsrError> {
        if scheme == SignScheme::RsaPssSha256 {
            return Err(CsrError::Scheme(scheme));
        }
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der)
            .map_err(|e| CsrError::Build(format!("public key: {e}")))?;
        if !scheme.fits(crate::token::spki_alg(&spki)) {
            return Err(CsrError::Scheme(scheme));
        }
        Ok(TokenSigner {
            token,
            id: id.to_vec(),
            public: TokenPublicKey(spki),
            scheme,
            last_error: RefCell::new(None),
        })
    }

    fn take_error(&self) -> Option<TokenError> {
        self.last_error.borrow_mut().take()
    }
}

impl Keypair for TokenSigner<'_> {
    type VerifyingKey = TokenPublicKey;
    fn verifying_key(&self) -> TokenPublicKey {
        self.public.clone()
    }
}

impl DynSignatureAlgorithmIdentifier for TokenSigner<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(match self.scheme {
            SignScheme::EcdsaP256Sha256 => AlgorithmIdentifierOwned {
                oid: ECDSA_WITH_SHA_256,
                parameters: None,
            },
            // `new` refuses PSS, so this is PKCS#1 v1.5 (parameters NULL, RFC 4055).
            SignScheme::RsaPkcs1Sha256 | SignScheme::RsaPssSha256 => AlgorithmIdentifierOwned {
                oid: SHA_256_WITH_RSA_ENCRYPTION,
                parameters: Some(der::asn1::Null.into()),
            },
        })
    }
}

impl signature::Signer<TokenSignature> for TokenSigner<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<TokenSignature, signature::Error> {
        let raw = self.token.sign(&self.id, self.scheme, msg).map_err(|e| {
            let text = e.to_string();
            *self.last_error.borrow_mut() = Some(e);
            signature::Error::from_source(text)
        })?;
        let sig = if self.scheme == SignScheme::EcdsaP256Sha256 {
            ecdsa_raw_to_der(&raw).map_err(|e| signature::Error::from_source(e.to_string()))?
        } else {
            raw
        };
        Ok(TokenSignature(sig))
    }
}

/// The signature scheme a request for this key uses.
pub fn scheme_for(spki_der: &[u8]) -> Option<SignScheme> {
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der).ok()?;
    match crate::token::spki_alg(&spki) {
        crate::token::PublicKeyAlg::Rsa { .. } => Some(SignScheme::RsaPkcs1Sha256),
        crate::token::PublicKeyAlg::EcP256 => Some(SignScheme::EcdsaP256Sha256),
        crate::token::PublicKeyAlg::Other => None,
    }
}

/// A request copying `template` when there is one; with none (a first
/// enrolment) the subject is left empty for the bank to fill in from its
/// own records of the user.
pub fn build_for(
    token: &Token,
    id: &[u8],
    spki_der: &[u8],
    template: Option<&Cert>,
) -> Result<Vec<u8>, CsrError> {
    match template {
        Some(t) => build(token, id, spki_der, t),
        None => {
            let scheme = scheme_for(spki_der)
                .ok_or_else(|| CsrError::Build("the new key is neither RSA nor EC P-256".into()))?;
            let signer = TokenSigner::new(token, id, spki_der, scheme)?;
            let builder = RequestBuilder::new(x509_cert::name::Name::default())
                .map_err(|e| CsrError::Build(e.to_string()))?;
            let req: CertReq =
                builder.build::<_, TokenSignature>(&signer).map_err(|e| {
                    match signer.take_error() {
                        Some(token_error) => CsrError::Token(token_error),
                        None => CsrError::Build(e.to_string()),
                    }
                })?;
            req.to_der().map_err(|e| CsrError::Build(e.to_string()))
        }
    }
}

/// Build a PKCS#10 request for the token key `id` (public key `spki_der`),
/// copying subject and subjectAltName from `template`. Returns DER.
pub fn build(
    token: &Token,
    id: &[u8],
    spki_der: &[u8],
    template: &Cert,
) -> Result<Vec<u8>, CsrError> {
    let scheme = scheme_for(spki_der)
        .ok_or_else(|| CsrError::Build("the new key is neither RSA nor EC P-256".into()))?;
    let signer = TokenSigner::new(token, id, spki_der, scheme)?;
    let tbs = template.cert.tbs_certificate();
    let mut builder =
        RequestBuilder::new(tbs.subject().clone()).map_err(|e| CsrError::Build(e.to_string()))?;
    let san = tbs
        .extensions()
        .into_iter()
        .flatten()
        .find(|e| e.extn_id == ID_CE_SUBJECT_ALT_NAME);
    if let Some(san) = san {
        builder
            .add_extension(san.clone())
            .map_err(|e| CsrError::Build(e.to_string()))?;
    }
    let req: CertReq =
        builder
            .build::<_, TokenSignature>(&signer)
            .map_err(|e| match signer.take_error() {
                Some(token_error) => CsrError::Token(token_error),
                None => CsrError::Build(e.to_string()),
            })?;
    let der = req.to_der().map_err(|e| CsrError::Build(e.to_string()))?;
    // Byte for byte: the request's subject must be the certificate's own bytes.
    let (_, original) = crate::cert::raw_issuer_subject(&template.der)
        .ok_or_else(|| CsrError::Build("cannot find the subject in the certificate".into()))?;
    let copied = req
        .info
        .subject
        .to_der()
        .map_err(|e| CsrError::Build(e.to_string()))?;
    if original != copied {
        return Err(CsrError::Build(
            "the certificate's subject is not canonically encoded and cannot be copied exactly"
                .into(),
        ));
    }
    Ok(der)
}
