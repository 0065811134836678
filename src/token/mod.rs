//! The token: the only place certagent talks PKCS#11.
//!
//! [`Module`] loads a PKCS#11 library once per process (cryptoki cannot
//! initialise a library twice); [`Token`] is one token in it with one
//! guarded session, the single owner of everything done on that token.
//! Everything above this module speaks of certificates and keys by CKA_ID.

mod card;
mod error;
mod info;
mod keygen;
mod keys;
mod login;
mod module;
mod objects;
mod raw;
mod sign;
mod uri;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::{Decode, Encode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::drivers::{CardFamily, Drivers, Profile};

pub use error::TokenError;
pub use info::{LibraryInfo, SlotReport, TokenInfo};
pub use keys::{KeyKind, PublicKeyAlg, SignScheme, ecdsa_raw_to_der, key_id_for_spki, spki_alg};
pub use module::Module;
pub use uri::{TokenSelector, UriError};

pub type Result<T> = std::result::Result<T, TokenError>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves PKCS#11 state as the token has
    // it, which is still the truth; carry on with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A certificate object on the token.
#[derive(Debug, Clone)]
pub struct CertObject {
    pub id: Vec<u8>,
    pub label: String,
    pub der: Vec<u8>,
}

/// The security-relevant attributes of a private key.
#[derive(Debug, Clone, Serialize)]
pub struct PrivateKeyInfo {
    pub id: String,
    pub label: String,
    pub key_type: String,
    pub token: bool,
    pub private: bool,
    pub sensitive: bool,
    pub extractable: bool,
    pub never_extractable: bool,
    pub always_sensitive: bool,
    pub sign: bool,
    pub local: bool,
    pub always_authenticate: bool,
}

/// A key pair freshly generated on the token.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// CKA_ID of both halves.
    pub id: Vec<u8>,
    /// The public key as DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

/// An object on the token with this CKA_ID, as [`Token::objects_with_id`]
/// reads it.
#[derive(Debug, Clone)]
pub struct IdObject {
    pub class: ObjectClass,
    /// CKA_VALUE of a certificate.
    pub value: Option<Vec<u8>>,
    /// The SubjectPublicKeyInfo of a public key (or of a private key whose
    /// public components are readable).
    pub spki: Option<Vec<u8>>,
    handle: ObjectHandle,
}

/// Object handles already found, by (class, CKA_ID). PKCS#11 handles stay
/// valid for every session of the application until the object is
/// destroyed or the token removed; this cache lives with one `Token`.
type Handles = HashMap<(u64, Vec<u8>), ObjectHandle>;

/// One token with one guarded session.
pub struct Token {
    module: Arc<Module>,
    slot: Slot,
    session: Mutex<Session>,
    /// Token info as read when the token was opened; [`Token::refresh_info`] reads it again.
    info: Mutex<TokenInfo>,
    // Read on first use: only signing needs it.
    mechanisms: OnceLock<Vec<MechanismType>>,
    handles: Mutex<Handles>,
    /// The card's other tokens, for a card family that shows one card as
    /// several PKCS#11 tokens (OpenPGP through OpenSC: the signature key
    /// on a token of its own). Same reader, serial, maker and model.
    siblings: Vec<Token>,
}

// CK_OBJECT_CLASS is a CK_ULONG: u64 here, u32 on Windows.
#[allow(clippy::useless_conversion)]
fn class_key(class: ObjectClass) -> u64 {
    u64::from(cryptoki_sys::CK_OBJECT_CLASS::from(class))
}

/// Attribute buffers for the one-call reads: generous for what tokens hold.
const CERT_VALUE_MAX: usize = 8 * 1024;
const ID_MAX: usize = 256;
const LABEL_MAX: usize = 256;
const MODULUS_MAX: usize = 1024;

impl Drop for Token {
    fn drop(&mut self) {
        self.module
            .open_tokens
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("slot", &self.slot).finish()
    }
}
impl Token {
    /// The slot the token is in.
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// Whether this token may stay open between operations: not a card of
    /// several tokens, and not on a module certagent may initialise again
    /// to read a card afresh (that needs every session closed).
    pub fn may_stay_open(&self) -> bool {
        self.siblings.is_empty()
            && self.card_family().is_none()
            && self.module.profile().is_none_or(|p| p.cards.is_empty())
    }

    /// For a command that reads and then ends the process (`status`,
    /// `show`): the session, read-only and never logged in there, ends with
    /// the process instead of by a C_CloseSession, one round trip fewer on
    /// a USB token (the module's state goes with the process either way).
    /// Never for a token that logged in: that session is closed, so the
    /// login ends on the token at once.
    pub fn end_with_process(self) {
        std::mem::forget(self);
    }

    pub(super) fn open(module: Arc<Module>, slot: Slot, info: TokenInfo) -> Result<Token> {
        let mut token = Token::one(module, slot, info)?;
        if token.card_family().is_some() {
            token.siblings = token.open_siblings()?;
        }
        Ok(token)
    }

    /// The token in `slot` with a session of its own, no siblings.
    pub(super) fn one(module: Arc<Module>, slot: Slot, info: TokenInfo) -> Result<Token> {
        let session = module.open_session(slot, info.write_protected)?;
        Ok(Token {
            module,
            slot,
            session: Mutex::new(session),
            info: Mutex::new(info),
            mechanisms: OnceLock::new(),
            handles: Mutex::new(HashMap::new()),
            siblings: Vec::new(),
        })
    }

    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The module, shared (to initialise it again once this token is closed).
    pub fn module_arc(&self) -> Arc<Module> {
        self.module.clone()
    }

    /// The token's identity and PIN state as read when it was opened
    /// (or last refreshed): no round trip.
    pub fn info(&self) -> Result<TokenInfo> {
        Ok(lock(&self.info).clone())
    }

    /// The token's identity and PIN state, read afresh (C_GetTokenInfo).
    pub fn refresh_info(&self) -> Result<TokenInfo> {
        let fresh = self.module.token_info(self.slot)?;
        *lock(&self.info) = fresh.clone();
        Ok(fresh)
    }

    pub(super) fn session(&self) -> MutexGuard<'_, Session> {
        lock(&self.session)
    }
}

pub use cryptoki::object::ObjectClass as Class;

/// Run blocking token work from async code: on a multi-thread tokio runtime
/// the worker hands its other tasks away first, so the runtime never stalls
/// on a slow token (or a PIN pad).
pub fn block_in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
