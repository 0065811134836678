//! The token: the only place certagent talks PKCS#11.
//!
//! [`Module`] loads a PKCS#11 library once per process (cryptoki cannot
//! initialise a library twice); [`Token`] is one token in it with one
//! guarded session, the single owner of everything done on that token.
//! Everything above this module speaks of certificates and keys by CKA_ID.

mod error;
mod keys;
mod raw;
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
pub use keys::{KeyKind, PublicKeyAlg, SignScheme, ecdsa_raw_to_der, key_id_for_spki, spki_alg};
pub use uri::{TokenSelector, UriError};

pub type Result<T> = std::result::Result<T, TokenError>;

/// A loaded PKCS#11 library.
#[derive(Debug)]
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
    /// The profile named in the configuration or matched by path.
    named: Option<Profile>,
    drivers: Drivers,
    /// Read on first use (C_GetInfo): `tokens` and `doctor` show it, and a
    /// module known by neither name nor path is matched by manufacturer.
    library: OnceLock<LibraryInfo>,
    profile: OnceLock<Option<Profile>>,
    raw: Option<raw::Raw>,
    /// Mechanism lists by (slot, token serial): they do not change while
    /// the token stays in its reader.
    mechanisms: Mutex<HashMap<(u64, String), Vec<MechanismType>>>,
    /// Tokens of this module open in this process (each with its session).
    open_tokens: std::sync::atomic::AtomicUsize,
    /// When the module was last initialised (see [`Module::reinitialize`]).
    initialized_at: Mutex<std::time::SystemTime>,
    /// Held while the module is initialised again: one at a time.
    reinitializing: Mutex<()>,
    /// Module-level calls (slot lists, token info, opening sessions) hold
    /// it to read, [`Module::reinitialize`] to write: none runs across a
    /// C_Finalize.
    calls: std::sync::RwLock<()>,
}

/// What the library says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryInfo {
    pub path: String,
    pub profile: Option<String>,
    pub manufacturer: String,
    pub description: String,
    pub version: String,
    pub cryptoki_version: String,
}

/// One slot and its token, as `certagent tokens` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct SlotReport {
    pub slot_description: String,
    pub slot_manufacturer: String,
    pub removable: bool,
    pub hardware: bool,
    pub token: Option<TokenInfo>,
}

/// A token's identity and PIN state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub label: String,
    pub serial: String,
    pub manufacturer: String,
    pub model: String,
    pub initialized: bool,
    pub login_required: bool,
    pub user_pin_initialized: bool,
    pub pin_count_low: bool,
    pub pin_final_try: bool,
    pub pin_locked: bool,
    pub pin_to_be_changed: bool,
    pub protected_auth_path: bool,
    pub write_protected: bool,
}

impl TokenInfo {
    fn from_ck(t: &cryptoki::slot::TokenInfo) -> TokenInfo {
        TokenInfo {
            label: t.label().trim_end().to_string(),
            serial: t.serial_number().trim_end().to_string(),
            manufacturer: t.manufacturer_id().trim_end().to_string(),
            model: t.model().trim_end().to_string(),
            initialized: t.token_initialized(),
            login_required: t.login_required(),
            user_pin_initialized: t.user_pin_initialized(),
            pin_count_low: t.user_pin_count_low(),
            pin_final_try: t.user_pin_final_try(),
            pin_locked: t.user_pin_locked(),
            pin_to_be_changed: t.user_pin_to_be_changed(),
            protected_auth_path: t.protected_authentication_path(),
            write_protected: t.write_protected(),
        }
    }

    /// `pkcs11:` URI naming this token (RFC 7512), as p11tool prints it.
    pub fn uri(&self) -> String {
        format!(
            "pkcs11:model={};manufacturer={};serial={};token={}",
            pct(&self.model),
            pct(&self.manufacturer),
            pct(&self.serial),
            pct(&self.label)
        )
    }
}

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// One context per library path for the whole process: cryptoki cannot
// initialise a library twice, and C_Finalize would pull tokens from under
// other users in the process.
static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves PKCS#11 state as the token has
    // it, which is still the truth; carry on with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Module {
    /// Resolve `spec` (a profile name or a library path) and load it.
    pub fn load(spec: &str, drivers: &Drivers) -> Result<Arc<Module>> {
        let (path, profile) = resolve(spec, drivers)?;
        let mut modules = lock(MODULES.get_or_init(Default::default));
        if let Some(m) = modules.get(&path) {
            return Ok(m.clone());
        }
        let load_err = |reason: String| TokenError::ModuleLoad {
            path: path.clone(),
            reason,
        };
        if !path.exists() {
            return Err(load_err(
                "there is no such file: set [token] module to a profile name (as in drivers/: softhsm2, opensc, ...) or to the module library's full path".into(),
            ));
        }
        let ctx = Pkcs11::new(&path).map_err(|e| {
            // cryptoki wraps the loader's message as "libloading error (...)".
            let why = e.to_string();
            let why = why
                .strip_prefix("libloading error (")
                .and_then(|w| w.strip_suffix(')'))
                .unwrap_or(&why)
                .to_string();
            load_err(format!(
                "it is not a PKCS#11 library this program can load ({why}); set [token] module to the module's .so for this computer, or to a profile name"
            ))
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(load_err(e.to_string())),
        }
        let named = profile.or_else(|| drivers.by_path(&path).cloned());
        let raw = raw::Raw::load(&path);
        let module = Arc::new(Module {
            ctx,
            path: path.clone(),
            named,
            drivers: drivers.clone(),
            library: OnceLock::new(),
            profile: OnceLock::new(),
            raw,
            mechanisms: Mutex::new(HashMap::new()),
            open_tokens: std::sync::atomic::AtomicUsize::new(0),
            initialized_at: Mutex::new(std::time::SystemTime::now()),
            reinitializing: Mutex::new(()),
            calls: std::sync::RwLock::new(()),
        });
        modules.insert(path, module.clone());
        Ok(module)
    }

    /// What the library says about itself (C_GetInfo, once), with the
    /// profile as [`Module::profile`] finds it: named, by path, else by the
    /// library's manufacturer (a module built or installed where no profile
    /// looks, e.g. kryoptic).
    pub fn info(&self) -> &LibraryInfo {
        self.library.get_or_init(|| {
            let path = self.path.display().to_string();
            match self.ctx.get_library_info() {
                Ok(info) => {
                    let v = info.library_version();
                    let c = info.cryptoki_version();
                    let manufacturer = info.manufacturer_id().trim_end().to_string();
                    let profile = self
                        .named
                        .as_ref()
                        .or_else(|| self.drivers.by_library_manufacturer(&manufacturer))
                        .map(|p| p.name.clone());
                    LibraryInfo {
                        path,
                        profile,
                        manufacturer,
                        description: info.library_description().trim_end().to_string(),
                        version: format!("{}.{}", v.major(), v.minor()),
                        cryptoki_version: format!("{}.{}", c.major(), c.minor()),
                    }
                }
                Err(e) => LibraryInfo {
                    path,
                    profile: self.named.as_ref().map(|p| p.name.clone()),
                    manufacturer: String::new(),
                    description: format!("(C_GetInfo failed: {e})"),
                    version: String::new(),
                    cryptoki_version: String::new(),
                },
            }
        })
    }

    /// The driver profile: named or matched by path, else by the library's
    /// manufacturer (which costs a C_GetInfo, once).
    pub fn profile(&self) -> Option<&Profile> {
        self.profile
            .get_or_init(|| {
                self.named.clone().or_else(|| {
                    self.drivers
                        .by_library_manufacturer(&self.info().manufacturer)
                        .cloned()
                })
            })
            .as_ref()
    }

    /// Slots (with a token present, or all): one C_GetSlotList where the
    /// module allows it.
    /// The read side of [`Module::calls`] (poison is harmless: it guards no data).
    fn reading(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.calls.read().unwrap_or_else(|e| e.into_inner())
    }

    fn slot_list(&self, token_present: bool) -> Result<Vec<Slot>> {
        let _calls = self.reading();
        if let Some(r) = self.raw.as_ref().and_then(|r| r.slots(token_present)) {
            return r
                .map_err(error::map)?
                .into_iter()
                .map(|id| Slot::try_from(id).map_err(error::map))
                .collect();
        }
        if token_present {
            self.ctx.get_slots_with_token().map_err(error::map)
        } else {
            self.ctx.get_all_slots().map_err(error::map)
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every slot, with its token if one is present.
    pub fn slots(&self) -> Result<Vec<SlotReport>> {
        let slots = self.slot_list(false)?;
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            let _calls = self.reading();
            let si = self.ctx.get_slot_info(slot).map_err(error::map)?;
            let token = if si.token_present() {
                match self.ctx.get_token_info(slot) {
                    Ok(t) => Some(TokenInfo::from_ck(&t)),
                    // Pulled out between the two calls.
                    Err(CkError::Pkcs11(RvError::TokenNotPresent, _)) => None,
                    Err(e) => return Err(error::map(e)),
                }
            } else {
                None
            };
            out.push(SlotReport {
                slot_description: si.slot_description().trim_end().to_string(),
                slot_manufacturer: si.manufacturer_id().trim_end().to_string(),
                removable: si.removable_device(),
                hardware: si.hardware_slot(),
                token,
            });
        }
        Ok(out)
    }

    /// Initialise a new token in a slot that holds an uninitialised one
    /// (SoftHSM always offers one) and set its user PIN. For the demo and
    /// testers; real tokens are initialised by their issuer.
    pub fn init_token(
        self: &Arc<Self>,
        label: &str,
        so_pin: &AuthPin,
        user_pin: &AuthPin,
    ) -> Result<Token> {
        let mut free = None;
        for slot in self.ctx.get_slots_with_token().map_err(error::map)? {
            let info = self.ctx.get_token_info(slot).map_err(error::map)?;
            if !info.token_initialized() {
                free = Some(slot);
                break;
            }
        }
        let slot = free.ok_or_else(|| TokenError::Unsupported {
            what: "initialising a new token (no free slot)".into(),
        })?;
        self.ctx
            .init_token(slot, so_pin, label)
            .map_err(error::map)?;
        let selector = TokenSelector {
            label: Some(label.to_string()),
            ..TokenSelector::default()
        };
        // Slot ids may change after C_InitToken: find the token again by label.
        {
            let token = self.open(&selector)?;
            let session = token.session();
            session
                .login(UserType::So, Some(so_pin))
                .map_err(error::map)?;
            session.init_pin(user_pin).map_err(error::map)?;
            session.logout().map_err(error::map)?;
        }
        self.open(&selector)
    }

    /// Open a session on a token already found (by [`Module::open`]) in
    /// `slot`, without looking through the slots again: one C_OpenSession.
    /// The caller checks the identity with [`Token::refresh_info`] where it matters.
    /// The identity and PIN state of the token in `slot` (one
    /// C_GetTokenInfo).
    pub fn token_info(&self, slot: Slot) -> Result<TokenInfo> {
        let _calls = self.reading();
        self.ctx
            .get_token_info(slot)
            .map(|t| TokenInfo::from_ck(&t))
            .map_err(error::map)
    }

    /// Finalize and initialize the module again, so it reads every card
    /// afresh. OpenSC keeps what it read of a card for as long as it is
    /// initialised: a key generated on an OpenPGP card lands on the card's
    /// other token and signs only after this. Refused while any token of
    /// this module is open here (its sessions would end under it). Never
    /// while a thread waits in C_WaitForSlotEvent on this module: OpenSC
    /// frees what that call still uses (the agent polls such modules).
    pub fn reinitialize(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let _one = lock(&self.reinitializing);
        let _calls = self.calls.write().unwrap_or_else(|e| e.into_inner());
        if self.open_tokens.load(Ordering::SeqCst) > 0 {
            return Err(TokenError::Unsupported {
                what: "reading the card again while one of its tokens is in use here".into(),
            });
        }
        *lock(&self.initialized_at) = std::time::SystemTime::now();
        lock(&self.mechanisms).clear();
        match self.ctx.clone().finalize() {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiNotInitialized, _)) => {}
            Err(e) => return Err(error::map(e)),
        }
        match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
            Err(e) => Err(error::map(e)),
        }
    }

    /// Initialise the module again if a certagent process changed a card
    /// at `changed`, after the module was last initialised, and the module
    /// carries card families whose module keeps what it read of a card
    /// (`[[cards]]`): the agent sees another process's renewal that way.
    /// `false` when it was not needed or not possible now (a token is open:
    /// the next look tries again).
    pub fn read_cards_again_since(&self, changed: std::time::SystemTime) -> bool {
        let cards = self.profile().is_some_and(|p| !p.cards.is_empty());
        if !cards || changed < *lock(&self.initialized_at) {
            return false;
        }
        match self.reinitialize() {
            Ok(()) => true,
            Err(e) => {
                log::debug!("not reading the card again yet: {e}");
                false
            }
        }
    }

    /// Open a session for a new [`Token`], counted in `open_tokens` from
    /// before C_OpenSession (the token's `Drop` counts it out), so a
    /// re-initialisation never runs under it.
    fn open_session(&self, slot: Slot, read_only: bool) -> Result<Session> {
        use std::sync::atomic::Ordering;
        let _calls = self.reading();
        self.open_tokens.fetch_add(1, Ordering::SeqCst);
        let session = if read_only {
            self.ctx.open_ro_session(slot)
        } else {
            self.ctx.open_rw_session(slot)
        };
        if session.is_err() {
            self.open_tokens.fetch_sub(1, Ordering::SeqCst);
        }
        session.map_err(error::map)
    }

    /// The reader (slot description) of `slot`.
    fn reader_of(&self, slot: Slot) -> Result<String> {
        let _calls = self.reading();
        let si = self.ctx.get_slot_info(slot).map_err(error::map)?;
        Ok(si.slot_description().trim_end().to_string())
    }

    fn token_info_ck(&self, slot: Slot) -> std::result::Result<TokenInfo, CkError> {
        let _calls = self.reading();
        self.ctx
            .get_token_info(slot)
            .map(|t| TokenInfo::from_ck(&t))
    }

    pub fn open_slot(self: &Arc<Self>, slot: Slot, info: TokenInfo) -> Result<Token> {
        Token::open(self.clone(), slot, info)
    }

    /// The slots that hold a token now (one C_GetSlotList): what a cheap
    /// watch compares between looks.
    pub fn present_slots(&self) -> Result<Vec<u64>> {
        Ok(self.slot_list(true)?.iter().map(|s| s.id()).collect())
    }

    /// Block until a slot event (C_WaitForSlotEvent). `Ok(false)`: the
    /// module has no slot events (SoftHSM), the caller polls instead.
    pub fn wait_for_slot_event(&self) -> Result<bool> {
        match self.ctx.wait_for_slot_event() {
            Ok(_) => Ok(true),
            Err(CkError::Pkcs11(RvError::FunctionNotSupported, _)) => Ok(false),
            Err(e) => Err(error::map(e)),
        }
    }

    /// Open the one token `selector` names.
    pub fn open(self: &Arc<Self>, selector: &TokenSelector) -> Result<Token> {
        let mut found = Vec::new();
        let mut present = Vec::new();
        for slot in self.slot_list(true)? {
            let info = match self.token_info_ck(slot) {
                Ok(t) => t,
                Err(CkError::Pkcs11(RvError::TokenNotPresent, _)) => continue,
                // A token that cannot say who it is (being pulled, or broken)
                // is not one to open; the others may still match.
                Err(e) => {
                    log::warn!("skipping slot {slot}: its token does not answer ({e})");
                    continue;
                }
            };
            if !info.initialized {
                continue;
            }
            present.push(format!("{:?} serial {}", info.label, info.serial));
            if selector.matches(&info.label, &info.serial, &info.manufacturer, &info.model) {
                found.push((slot, info));
            }
        }
        let present = if present.is_empty() {
            "no initialised token is present".to_string()
        } else {
            format!("present: {}", present.join("; "))
        };
        match found.len() {
            0 => Err(TokenError::NotFound {
                wanted: selector.to_string(),
                present,
            }),
            1 => {
                let (slot, info) = found.remove(0);
                Token::open(self.clone(), slot, info)
            }
            count => Err(TokenError::Ambiguous {
                wanted: selector.to_string(),
                count,
                present,
            }),
        }
    }
}

fn resolve(spec: &str, drivers: &Drivers) -> Result<(PathBuf, Option<Profile>)> {
    let looks_like_path =
        spec.contains(['/', '\\']) || [".so", ".dll", ".dylib"].iter().any(|x| spec.contains(x));
    if looks_like_path {
        return Ok((PathBuf::from(spec), None));
    }
    let profile = drivers
        .get(spec)
        .ok_or_else(|| TokenError::UnknownProfile {
            name: spec.to_string(),
            known: drivers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let candidates = profile.paths_for_this_os();
    match candidates.iter().find(|p| Path::new(p).exists()) {
        Some(p) => Ok((PathBuf::from(p), Some(profile.clone()))),
        None => Err(TokenError::ModuleMissing {
            profile: profile.name.clone(),
            tried: if candidates.is_empty() {
                "no known location on this system".into()
            } else {
                candidates.join(", ")
            },
            install: profile.install.clone(),
        }),
    }
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

    fn open(module: Arc<Module>, slot: Slot, info: TokenInfo) -> Result<Token> {
        let mut token = Token::one(module, slot, info)?;
        if token.card_family().is_some() {
            token.siblings = token.open_siblings()?;
        }
        Ok(token)
    }

    /// The token in `slot` with a session of its own, no siblings.
    fn one(module: Arc<Module>, slot: Slot, info: TokenInfo) -> Result<Token> {
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

    /// The other tokens of this card: present, on the same reader, with the
    /// same serial, maker and model.
    fn open_siblings(&self) -> Result<Vec<Token>> {
        let reader = self.module.reader_of(self.slot)?;
        let me = lock(&self.info).clone();
        let mut out = Vec::new();
        for slot in self.module.slot_list(true)? {
            if slot == self.slot || self.module.reader_of(slot).ok().as_ref() != Some(&reader) {
                continue;
            }
            let Ok(info) = self.module.token_info(slot) else {
                continue;
            };
            if info.serial == me.serial
                && info.manufacturer == me.manufacturer
                && info.model == me.model
                && info.initialized
            {
                out.push(Token::one(self.module.clone(), slot, info)?);
            }
        }
        Ok(out)
    }

    /// The card family of this token whose fixed key slots certagent can
    /// renew into (driver profile `[[cards]]`, by token label), if any.
    pub fn card_family(&self) -> Option<&CardFamily> {
        let label = lock(&self.info).label.clone();
        // No profile knows a card of this label: no need to ask the module
        // who it is (C_GetInfo) to find its profile.
        let known = self.module.drivers.iter().any(|p| {
            p.cards
                .iter()
                .any(|c| label.starts_with(c.label_prefix.trim()))
        });
        if !known || !self.fixed_key_slots() {
            return None;
        }
        self.module
            .profile()?
            .cards
            .iter()
            .find(|c| label.starts_with(c.label_prefix.trim()))
    }

    /// This token and the card's other tokens.
    pub fn members(&self) -> impl Iterator<Item = &Token> {
        std::iter::once(self).chain(self.siblings.iter())
    }

    /// The token of this card that holds key slot `id` (by the family's
    /// `key_tokens`); this token for any other id or token.
    pub fn member_for(&self, id: &[u8]) -> &Token {
        if self.siblings.is_empty() {
            return self;
        }
        let Some(label) = self
            .card_family()
            .and_then(|f| f.key_tokens.get(&hex::encode(id)))
        else {
            return self;
        };
        self.members()
            .find(|t| lock(&t.info).label == *label)
            .unwrap_or(self)
    }

    /// The member for `id` when it is another token than this one.
    fn elsewhere(&self, id: &[u8]) -> Option<&Token> {
        let m = self.member_for(id);
        (!std::ptr::eq(m, self)).then_some(m)
    }

    /// Whether this token keeps keys in slots the card fixes (the CKA_ID
    /// is the card's, key generation wants a particular slot): the driver
    /// profile says so for the module or for this token's model.
    pub fn fixed_key_slots(&self) -> bool {
        let Some(p) = self.module.profile() else {
            return false;
        };
        let model = lock(&self.info).model.clone();
        p.quirks.fixed_key_ids
            || p.quirks
                .fixed_key_id_models
                .iter()
                .any(|m| m.trim() == model.trim())
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

    /// C_GetAttributeValue of `wanted` (type, buffer size) in one call where
    /// the module allows it, else through cryptoki's two calls.
    fn attributes(
        &self,
        h: ObjectHandle,
        wanted: &[(AttributeType, usize)],
    ) -> Result<Vec<Attribute>> {
        if let Some(raw) = &self.module.raw {
            let types: Vec<(cryptoki_sys::CK_ATTRIBUTE_TYPE, usize)> = wanted
                .iter()
                .map(|(t, n)| (cryptoki_sys::CK_ATTRIBUTE_TYPE::from(*t), *n))
                .collect();
            let session = self.session();
            if let Some(r) = raw.attributes(session.handle(), h.handle(), &types) {
                let values = r.map_err(error::map)?;
                let mut out = Vec::new();
                for ((t, _), v) in wanted.iter().zip(values) {
                    let Some(v) = v else { continue };
                    if let Some(a) = attribute_from(*t, v) {
                        out.push(a);
                    }
                }
                return Ok(out);
            }
        }
        let types: Vec<AttributeType> = wanted.iter().map(|(t, _)| *t).collect();
        self.session().get_attributes(h, &types).map_err(error::map)
    }

    /// The certificate objects this token's searches found, by CKA_ID:
    /// handles stay valid for the whole application (any session, logged
    /// in or not) until the object is destroyed. Empty for a card of
    /// several tokens (their handles belong to each token).
    pub fn certificate_handles(&self) -> Vec<(Vec<u8>, ObjectHandle)> {
        if !self.siblings.is_empty() {
            return Vec::new();
        }
        let cert = class_key(ObjectClass::CERTIFICATE);
        lock(&self.handles)
            .iter()
            .filter(|((class, _), _)| *class == cert)
            .map(|((_, id), h)| (id.clone(), *h))
            .collect()
    }

    /// The CKA_VALUE of object `h` (one call); `None` when the handle no
    /// longer names an object (destroyed, or the token changed) or it
    /// cannot be read; an error only when the token is gone.
    pub fn value_of(&self, h: ObjectHandle) -> Result<Option<Vec<u8>>> {
        match self.attributes(h, &[(AttributeType::Value, CERT_VALUE_MAX)]) {
            Ok(attrs) => Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })),
            Err(e @ TokenError::Removed { .. }) => Err(e),
            // An invalid handle (or anything else the object says): the
            // caller reads afresh.
            Err(_) => Ok(None),
        }
    }

    fn cache(&self, class: ObjectClass, id: &[u8], h: ObjectHandle) {
        lock(&self.handles).insert((class_key(class), id.to_vec()), h);
    }

    fn forget(&self, h: ObjectHandle) {
        lock(&self.handles).retain(|_, v| *v != h);
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        lock(&self.session)
    }

    /// Log the user in. `pin` is `None` on a protected authentication path
    /// (PIN pad). A rejected PIN is reported with the token's fresh PIN
    /// state and never retried.
    ///
    /// "Already logged in" is an error, never a success: a PIN that reaches
    /// this call must be checked by the token. Callers that own the token
    /// call [`Token::logout`] first.
    pub fn login(&self, pin: Option<&AuthPin>) -> Result<()> {
        if self.siblings.is_empty() {
            return self.login_here(pin);
        }
        // A card of several tokens: log in where its certificates' keys
        // are (one C_Login where they share a token), stopping at the
        // first refusal; the token itself when it holds none.
        let mut ids: Vec<Vec<u8>> = self.certificates()?.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        let mut done: Vec<Slot> = Vec::new();
        for id in &ids {
            let m = self.member_for(id);
            if !done.contains(&m.slot) {
                m.login_here(pin)?;
                done.push(m.slot);
            }
        }
        if done.is_empty() {
            self.login_here(pin)?;
        }
        Ok(())
    }

    /// Log the user in on the token that holds key slot `id`, unless it is
    /// logged in already (a card's other token, during a renewal).
    pub fn login_for(&self, id: &[u8], pin: Option<&AuthPin>) -> Result<()> {
        let m = self.member_for(id);
        if m.is_logged_in_here() {
            return Ok(());
        }
        m.login_here(pin)
    }

    /// Log in as the security officer: the card's admin PIN, for key
    /// generation and certificate writes where the family needs it. Every
    /// token of the card is logged out first; a rejected PIN is never
    /// retried.
    pub fn login_admin(&self, pin: Option<&AuthPin>) -> Result<()> {
        self.logout()?;
        match self.session().login(UserType::So, pin) {
            Ok(()) => Ok(()),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(TokenError::AdminPinIncorrect),
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(TokenError::AdminPinIncorrect),
            Err(e) => Err(error::map(e)),
        }
    }

    fn login_here(&self, pin: Option<&AuthPin>) -> Result<()> {
        let result = self.session().login(UserType::User, pin);
        match result {
            Ok(()) => Ok(()),
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                Err(TokenError::AlreadyLoggedIn)
            }
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                let after = self.refresh_info().ok();
                Err(TokenError::PinIncorrect {
                    count_low: after.as_ref().is_some_and(|i| i.pin_count_low),
                    final_try: after.as_ref().is_some_and(|i| i.pin_final_try),
                    locked: after.as_ref().is_some_and(|i| i.pin_locked),
                })
            }
            Err(e) => Err(error::map(e)),
        }
    }

    /// Log out (the login state is the application's, shared by all its
    /// sessions on this token). Not being logged in is not an error.
    pub fn logout(&self) -> Result<()> {
        let mut first = Ok(());
        for m in self.members() {
            // Private objects' handles need not outlive the login (SoftHSM
            // gives them new ones at the next): find them again then.
            let private = class_key(ObjectClass::PRIVATE_KEY);
            lock(&m.handles).retain(|(class, _), _| *class != private);
            let r = match m.session().logout() {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => Ok(()),
                Err(e) => Err(error::map(e)),
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Whether the session (or, on a card of several tokens, any of its
    /// tokens) is logged in as the user.
    pub fn is_logged_in(&self) -> bool {
        self.members().any(Token::is_logged_in_here)
    }

    fn is_logged_in_here(&self) -> bool {
        use cryptoki::session::SessionState;
        self.session()
            .get_session_info()
            .map(|s| {
                matches!(
                    s.session_state(),
                    SessionState::RwUser | SessionState::RoUser
                )
            })
            .unwrap_or(false)
    }

    /// The mechanisms the token lists.
    pub fn mechanisms(&self) -> &[MechanismType] {
        self.mechanisms.get_or_init(|| {
            let key = (self.slot.id(), lock(&self.info).serial.clone());
            if let Some(known) = lock(&self.module.mechanisms).get(&key) {
                return known.clone();
            }
            let listed = match self
                .module
                .raw
                .as_ref()
                .and_then(|r| r.mechanisms(self.slot.id()))
            {
                Some(r) => r.map(|l| {
                    l.into_iter()
                        .filter_map(|m| MechanismType::try_from(m).ok())
                        .collect()
                }),
                None => self.module.ctx.get_mechanism_list(self.slot),
            };
            match listed {
                Ok(list) => {
                    lock(&self.module.mechanisms).insert(key, list.clone());
                    list
                }
                Err(e) => {
                    log::warn!("cannot read the token's mechanism list: {e}");
                    Vec::new()
                }
            }
        })
    }

    fn has(&self, m: MechanismType) -> bool {
        self.mechanisms().contains(&m)
    }

    /// Whether the token can make signatures of this scheme: its mechanism
    /// list offers a way, and the module profile does not rule it out.
    pub fn supports(&self, scheme: SignScheme) -> bool {
        let by_profile = self.module.profile().is_none_or(|p| p.signs_with(scheme));
        let by_token = match scheme {
            SignScheme::RsaPkcs1Sha256 => {
                self.has(MechanismType::SHA256_RSA_PKCS) || self.has(MechanismType::RSA_PKCS)
            }
            SignScheme::RsaPssSha256 => {
                self.has(MechanismType::SHA256_RSA_PKCS_PSS)
                    || self.has(MechanismType::RSA_PKCS_PSS)
            }
            SignScheme::EcdsaP256Sha256 => self.has(MechanismType::ECDSA),
        };
        by_profile && by_token
    }

    fn find(&self, template: &[Attribute]) -> Result<Vec<ObjectHandle>> {
        self.session().find_objects(template).map_err(error::map)
    }

    /// Every X.509 certificate object on the token (no login needed): one
    /// search, one attribute read per certificate.
    pub fn certificates(&self) -> Result<Vec<CertObject>> {
        let mut out = self.certificates_here()?;
        for s in &self.siblings {
            for c in s.certificates_here()? {
                if !out.iter().any(|o| o.id == c.id && o.der == c.der) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    fn certificates_here(&self) -> Result<Vec<CertObject>> {
        let handles = self.find(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
        ])?;
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            let attrs = self.attributes(
                h,
                &[
                    (AttributeType::Id, ID_MAX),
                    (AttributeType::Label, LABEL_MAX),
                    (AttributeType::Value, CERT_VALUE_MAX),
                ],
            )?;
            let mut c = CertObject {
                id: Vec::new(),
                label: String::new(),
                der: Vec::new(),
            };
            for a in attrs {
                match a {
                    Attribute::Id(v) => c.id = v,
                    Attribute::Label(v) => c.label = String::from_utf8_lossy(&v).into_owned(),
                    Attribute::Value(v) => c.der = v,
                    _ => {}
                }
            }
            if !c.der.is_empty() {
                self.cache(ObjectClass::CERTIFICATE, &c.id, h);
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The objects carrying this CKA_ID (certificates, public and private
    /// keys), each read in one call: what the retire step checks before it
    /// deletes anything.
    pub fn objects_with_id(&self, id: &[u8]) -> Result<Vec<IdObject>> {
        if id.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for h in self.find(&[Attribute::Id(id.to_vec())])? {
            let attrs = self.attributes(
                h,
                &[
                    (AttributeType::Class, 8),
                    (AttributeType::Value, CERT_VALUE_MAX),
                    (AttributeType::KeyType, 8),
                    (AttributeType::Modulus, MODULUS_MAX),
                    (AttributeType::PublicExponent, 16),
                    (AttributeType::EcPoint, 128),
                ],
            )?;
            let mut class = None;
            let mut value = None;
            let (mut kt, mut n, mut e, mut point) = (None, None, None, None);
            for a in attrs {
                match a {
                    Attribute::Class(c) => class = Some(c),
                    Attribute::Value(v) => value = Some(v),
                    Attribute::KeyType(t) => kt = Some(t),
                    Attribute::Modulus(v) => n = Some(v),
                    Attribute::PublicExponent(v) => e = Some(v),
                    Attribute::EcPoint(v) => point = Some(v),
                    _ => {}
                }
            }
            let Some(class) = class else { continue };
            if ![
                ObjectClass::CERTIFICATE,
                ObjectClass::PUBLIC_KEY,
                ObjectClass::PRIVATE_KEY,
            ]
            .contains(&class)
            {
                continue;
            }
            let spki = spki_from_parts(kt, n, e, point).ok();
            out.push(IdObject {
                class,
                value: (class == ObjectClass::CERTIFICATE)
                    .then_some(value)
                    .flatten(),
                spki,
                handle: h,
            });
        }
        Ok(out)
    }

    /// Destroy these objects (from [`Token::objects_with_id`]).
    pub fn destroy(&self, objects: &[IdObject]) -> Result<usize> {
        let mut n = 0;
        for o in objects {
            self.session()
                .destroy_object(o.handle)
                .map_err(error::map)?;
            self.forget(o.handle);
            n += 1;
        }
        Ok(n)
    }

    fn key_handle(&self, class: ObjectClass, id: &[u8]) -> Result<Option<ObjectHandle>> {
        if let Some(h) = lock(&self.handles).get(&(class_key(class), id.to_vec())) {
            return Ok(Some(*h));
        }
        let found = self
            .find(&[Attribute::Class(class), Attribute::Id(id.to_vec())])?
            .into_iter()
            .next();
        if let Some(h) = found {
            self.cache(class, id, h);
        }
        Ok(found)
    }

    /// The private key with this CKA_ID, with its attributes (needs login).
    pub fn private_key(&self, id: &[u8]) -> Result<Option<PrivateKeyInfo>> {
        if let Some(m) = self.elsewhere(id) {
            return m.private_key(id);
        }
        let Some(h) = self.key_handle(ObjectClass::PRIVATE_KEY, id)? else {
            return Ok(None);
        };
        let attrs = self
            .session()
            .get_attributes(
                h,
                &[
                    AttributeType::Label,
                    AttributeType::KeyType,
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::Sign,
                    AttributeType::Local,
                    AttributeType::AlwaysAuthenticate,
                ],
            )
            .map_err(error::map)?;
        let mut k = PrivateKeyInfo {
            id: hex::encode(id),
            label: String::new(),
            key_type: String::new(),
            token: false,
            private: false,
            sensitive: false,
            // Unknown means possibly extractable.
            extractable: true,
            never_extractable: false,
            always_sensitive: false,
            sign: false,
            local: false,
            always_authenticate: false,
        };
        for a in attrs {
            match a {
                Attribute::Label(v) => k.label = String::from_utf8_lossy(&v).into_owned(),
                Attribute::KeyType(t) => {
                    k.key_type = if t == KeyType::RSA {
                        "rsa".into()
                    } else if t == KeyType::EC {
                        "ec".into()
                    } else {
                        format!("{t}")
                    }
                }
                Attribute::Token(v) => k.token = v,
                Attribute::Private(v) => k.private = v,
                Attribute::Sensitive(v) => k.sensitive = v,
                Attribute::Extractable(v) => k.extractable = v,
                Attribute::NeverExtractable(v) => k.never_extractable = v,
                Attribute::AlwaysSensitive(v) => k.always_sensitive = v,
                Attribute::Sign(v) => k.sign = v,
                Attribute::Local(v) => k.local = v,
                Attribute::AlwaysAuthenticate(v) => k.always_authenticate = v,
                _ => {}
            }
        }
        Ok(Some(k))
    }

    /// The public key object with this CKA_ID as DER SubjectPublicKeyInfo.
    pub fn public_key(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(m) = self.elsewhere(id) {
            return m.public_key(id);
        }
        let Some(h) = self.key_handle(ObjectClass::PUBLIC_KEY, id)? else {
            return Ok(None);
        };
        self.spki_of(h).map(Some)
    }

    fn spki_of(&self, h: ObjectHandle) -> Result<Vec<u8>> {
        let attrs = self.attributes(
            h,
            &[
                (AttributeType::KeyType, 8),
                (AttributeType::Modulus, MODULUS_MAX),
                (AttributeType::PublicExponent, 16),
                (AttributeType::EcPoint, 128),
            ],
        )?;
        let (mut kt, mut n, mut e, mut point) = (None, None, None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => kt = Some(t),
                Attribute::Modulus(v) => n = Some(v),
                Attribute::PublicExponent(v) => e = Some(v),
                Attribute::EcPoint(v) => point = Some(v),
                _ => {}
            }
        }
        spki_from_parts(kt, n, e, point)
    }

    /// Generate a key pair on the token: private key sensitive and never
    /// extractable, both halves on the token, CKA_ID the SHA-1 of the
    /// modulus or EC point (as NSS and OpenSC derive it).
    pub fn generate_key_pair(&self, kind: KeyKind, label: &str) -> Result<GeneratedKey> {
        // A random provisional id, replaced by the derived one once the
        // public key is known (the modulus does not exist before C_GenerateKeyPair).
        let mut provisional = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut provisional)
            .map_err(|_| TokenError::Unsupported {
                what: "randomness".into(),
            })?;
        let provisional = provisional.to_vec();
        let (mechanism, public, private) = key_templates(kind, &provisional, label);
        let (pub_h, priv_h) = self
            .session()
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(|e| match error::map(e) {
                TokenError::Full { .. } => TokenError::Full {
                    what: "a new key pair".into(),
                },
                other => other,
            })?;
        let spki_der = match self.spki_of(pub_h) {
            Ok(s) => s,
            Err(e) => {
                self.destroy_quietly(&[pub_h, priv_h]);
                return Err(e);
            }
        };
        let Some(id) = keys::key_id_for_spki(&spki_der) else {
            self.destroy_quietly(&[pub_h, priv_h]);
            return Err(TokenError::Malformed("generated public key".into()));
        };
        // Both halves get the derived id, or (on a token that will not
        // change CKA_ID) both keep the provisional one. Any other failure
        // is an error: the pair stays under its unique label, and resume
        // adopts it by that label whatever ids the halves carry by then.
        let read_only = |e: &CkError| {
            matches!(
                e,
                CkError::Pkcs11(RvError::AttributeReadOnly | RvError::ActionProhibited, _)
            )
        };
        let s = self.session();
        match s.update_attributes(pub_h, &[Attribute::Id(id.clone())]) {
            Ok(()) => {}
            Err(e) if read_only(&e) => {
                log::warn!(
                    "the token would not set CKA_ID to the SHA-1 of the public key ({e}); keeping id {}",
                    hex::encode(&provisional)
                );
                return Ok(GeneratedKey {
                    id: provisional,
                    spki_der,
                });
            }
            Err(e) => return Err(error::map(e)),
        }
        match s.update_attributes(priv_h, &[Attribute::Id(id.clone())]) {
            Ok(()) => {
                drop(s);
                self.cache(ObjectClass::PUBLIC_KEY, &id, pub_h);
                self.cache(ObjectClass::PRIVATE_KEY, &id, priv_h);
                Ok(GeneratedKey { id, spki_der })
            }
            Err(e) if read_only(&e) => {
                log::warn!(
                    "the token would not set the private key's CKA_ID ({e}); keeping id {}",
                    hex::encode(&provisional)
                );
                s.update_attributes(pub_h, &[Attribute::Id(provisional.clone())])
                    .map_err(error::map)?;
                Ok(GeneratedKey {
                    id: provisional,
                    spki_der,
                })
            }
            Err(e) => Err(error::map(e)),
        }
    }

    /// Generate a key pair into the card's key slot `id` (a card whose
    /// slots are fixed: the id names the slot). The caller is logged in as
    /// the card wants it (the admin for OpenPGP cards). What the module
    /// answers about the new pair is not trusted (OpenSC's values are
    /// bogus, and the pair signs only once the card is read again): the
    /// public key is read by id afterwards.
    /// `id: None` lets the module choose (OpenSC on an OpenPGP card: slot
    /// 03, replacing the key there).
    pub fn generate_key_pair_in_slot(
        &self,
        kind: KeyKind,
        id: Option<&[u8]>,
        label: &str,
    ) -> Result<()> {
        let (mechanism, mut public, mut private) =
            key_templates(kind, id.unwrap_or_default(), label);
        if id.is_none() {
            for t in [&mut public, &mut private] {
                t.retain(|a| !matches!(a, Attribute::Id(_)));
            }
        }
        self.session()
            .generate_key_pair(&mechanism, &public, &private)
            .map(|_| ())
            .map_err(error::map)
    }

    /// Remove the certificate with this CKA_ID if it holds `der`, through
    /// this token's session (logged in as the card wants it). `Ok(false)`:
    /// no such certificate here.
    pub fn delete_certificate_if(&self, id: &[u8], der: &[u8]) -> Result<bool> {
        let mut removed = false;
        for h in self.find(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Id(id.to_vec()),
        ])? {
            let value = self.attributes(h, &[(AttributeType::Value, CERT_VALUE_MAX)])?;
            if value
                .iter()
                .any(|a| matches!(a, Attribute::Value(v) if v == der))
            {
                self.session().destroy_object(h).map_err(error::map)?;
                self.forget(h);
                removed = true;
            }
        }
        Ok(removed)
    }

    fn destroy_quietly(&self, handles: &[ObjectHandle]) {
        let s = self.session();
        for h in handles {
            if let Err(e) = s.destroy_object(*h) {
                log::warn!("could not remove an incomplete object from the token: {e}");
            }
        }
    }

    /// Sign `message` with the private key `id`. RSA signatures are the
    /// usual big-endian integer; ECDSA gives r||s (64 bytes), as JWS wants
    /// it; use [`ecdsa_raw_to_der`] for X.509.
    pub fn sign(&self, id: &[u8], scheme: SignScheme, message: &[u8]) -> Result<Vec<u8>> {
        if let Some(m) = self.elsewhere(id) {
            return m.sign(id, scheme, message);
        }
        let key = self
            .key_handle(ObjectClass::PRIVATE_KEY, id)?
            .ok_or_else(|| TokenError::KeyNotFound {
                id: hex::encode(id),
            })?;
        let digest = Sha256::digest(message);
        let pss = PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32u64.into(),
        };
        // Prefer the token hashing the message itself; fall back to hashing
        // on the host where the token only has the raw mechanism.
        let (mechanism, data): (Mechanism, Vec<u8>) = match scheme {
            SignScheme::RsaPkcs1Sha256 if self.has(MechanismType::SHA256_RSA_PKCS) => {
                (Mechanism::Sha256RsaPkcs, message.to_vec())
            }
            SignScheme::RsaPkcs1Sha256 if self.has(MechanismType::RSA_PKCS) => {
                // DigestInfo for SHA-256 (RFC 8017 section 9.2, note 1).
                let mut di = vec![
                    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
                    0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
                ];
                di.extend_from_slice(&digest);
                (Mechanism::RsaPkcs, di)
            }
            SignScheme::RsaPssSha256 if self.has(MechanismType::SHA256_RSA_PKCS_PSS) => {
                (Mechanism::Sha256RsaPkcsPss(pss), message.to_vec())
            }
            SignScheme::RsaPssSha256 if self.has(MechanismType::RSA_PKCS_PSS) => {
                (Mechanism::RsaPkcsPss(pss), digest.to_vec())
            }
            // Few tokens have CKM_ECDSA_SHA256 (SoftHSM has not): hash here.
            SignScheme::EcdsaP256Sha256 if self.has(MechanismType::ECDSA) => {
                (Mechanism::Ecdsa, digest.to_vec())
            }
            _ => {
                return Err(TokenError::Unsupported {
                    what: format!("{scheme} signatures"),
                });
            }
        };
        let session = self.session();
        let sig = match self.module.raw.as_ref().filter(|r| r.active()) {
            // C_SignInit, then one C_Sign into a buffer large enough for any key.
            Some(raw) => {
                session.sign_init(&mechanism, key).map_err(error::map)?;
                match raw.sign(session.handle(), &data) {
                    Some(sig) => sig.map_err(error::map)?,
                    None => {
                        // End the operation cryptoki began (C_SignFinal
                        // always ends it), so the session stays usable.
                        let _ = session.sign_final();
                        return Err(TokenError::Unsupported {
                            what: "signing in one call with this module; try again".into(),
                        });
                    }
                }
            }
            None => session.sign(&mechanism, key, &data).map_err(error::map)?,
        };
        drop(session);
        if scheme == SignScheme::EcdsaP256Sha256 && sig.len() != 64 {
            return Err(TokenError::Malformed(format!(
                "an ECDSA P-256 signature of {} bytes",
                sig.len()
            )));
        }
        Ok(sig)
    }

    /// Store a certificate under `id` with the attributes browsers and
    /// `pkcs11-tool` expect (subject, issuer and serial from the certificate).
    pub fn write_certificate(&self, id: &[u8], label: &str, der: &[u8]) -> Result<()> {
        let malformed = |e: String| TokenError::Malformed(format!("certificate to store: {e}"));
        let cert = Certificate::from_der(der).map_err(|e| malformed(e.to_string()))?;
        let (issuer, subject) = crate::rawcert::raw_issuer_subject(der)
            .ok_or_else(|| malformed("no issuer or subject".into()))?;
        let serial = cert
            .tbs_certificate()
            .serial_number()
            .to_der()
            .map_err(|e| malformed(e.to_string()))?;
        let template = [
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Subject(subject),
            Attribute::Issuer(issuer),
            // CKA_SERIAL_NUMBER is the DER INTEGER, tag and length included.
            Attribute::SerialNumber(serial),
            Attribute::Value(der.to_vec()),
        ];
        let h = self
            .session()
            .create_object(&template)
            .map_err(|e| match error::map(e) {
                TokenError::Full { .. } => TokenError::Full {
                    what: "the new certificate".into(),
                },
                other => other,
            })?;
        self.cache(ObjectClass::CERTIFICATE, id, h);
        Ok(())
    }

    /// Set CKA_LABEL on the key pair with this CKA_ID (a certificate gets
    /// its label when it is written).
    pub fn set_key_label(&self, id: &[u8], label: &str) -> Result<()> {
        for class in [ObjectClass::PUBLIC_KEY, ObjectClass::PRIVATE_KEY] {
            if let Some(h) = self.key_handle(class, id)? {
                self.session()
                    .update_attributes(h, &[Attribute::Label(label.as_bytes().to_vec())])
                    .map_err(error::map)?;
            }
        }
        Ok(())
    }

    /// The certificate with this CKA_ID as stored (CKA_VALUE), read through
    /// a handle already known where possible.
    pub fn certificate_value(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        for s in &self.siblings {
            if let Some(v) = s.certificate_value(id)? {
                return Ok(Some(v));
            }
        }
        let Some(h) = self.key_handle(ObjectClass::CERTIFICATE, id)? else {
            return Ok(None);
        };
        let attrs = self.attributes(h, &[(AttributeType::Value, CERT_VALUE_MAX)])?;
        Ok(attrs.into_iter().find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        }))
    }

    /// CKA_IDs of private keys carrying this label (for finding a candidate
    /// key whose generation was interrupted before it was journalled).
    pub fn private_key_ids_with_label(&self, label: &str) -> Result<Vec<Vec<u8>>> {
        let handles = self.find(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?;
        let mut ids = Vec::new();
        for h in handles {
            for a in self
                .session()
                .get_attributes(h, &[AttributeType::Id])
                .map_err(error::map)?
            {
                if let Attribute::Id(id) = a {
                    ids.push(id);
                }
            }
        }
        Ok(ids)
    }

    /// Find the key pair generated under `label` (unique per attempt) and
    /// give both halves the CKA_ID derived from the public key. This repairs
    /// a generation interrupted anywhere between C_GenerateKeyPair and the
    /// second CKA_ID update (the halves may carry different ids then).
    /// `None` when no complete pair carries the label.
    pub fn adopt_key_pair(&self, label: &str) -> Result<Option<GeneratedKey>> {
        let by_label = |class| {
            self.find(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
        };
        let publics = by_label(ObjectClass::PUBLIC_KEY)?;
        let privates = by_label(ObjectClass::PRIVATE_KEY)?;
        let (Some(&pub_h), Some(_)) = (publics.first(), privates.first()) else {
            return Ok(None);
        };
        let spki_der = self.spki_of(pub_h)?;
        let derived = keys::key_id_for_spki(&spki_der)
            .ok_or_else(|| TokenError::Malformed("public key".into()))?;
        let s = self.session();
        for h in publics.iter().chain(privates.iter()) {
            s.update_attributes(*h, &[Attribute::Id(derived.clone())])
                .map_err(error::map)?;
        }
        Ok(Some(GeneratedKey {
            id: derived,
            spki_der,
        }))
    }

    /// Remove every object of these classes with this CKA_ID; returns how many.
    /// An empty CKA_ID names nothing: it is refused, since a search for it
    /// would match every object whose CKA_ID is empty.
    pub fn delete(&self, id: &[u8], classes: &[ObjectClass]) -> Result<usize> {
        if id.is_empty() {
            return Err(TokenError::Unsupported {
                what: "deleting objects by an empty CKA_ID".into(),
            });
        }
        let mut n = 0;
        for class in classes {
            for h in self.find(&[Attribute::Class(*class), Attribute::Id(id.to_vec())])? {
                self.session().destroy_object(h).map_err(error::map)?;
                self.forget(h);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Remove the certificate, public and private key with this CKA_ID.
    pub fn delete_all(&self, id: &[u8]) -> Result<usize> {
        self.delete(
            id,
            &[
                ObjectClass::CERTIFICATE,
                ObjectClass::PUBLIC_KEY,
                ObjectClass::PRIVATE_KEY,
            ],
        )
    }
}

pub use cryptoki::object::ObjectClass as Class;

/// The mechanism and templates for a new key pair of `kind` under `id`
/// and `label`: both halves on the token, the private key sensitive, never
/// extractable and for signing only.
fn key_templates(
    kind: KeyKind,
    id: &[u8],
    label: &str,
) -> (Mechanism<'static>, Vec<Attribute>, Vec<Attribute>) {
    let common = |private: bool| {
        vec![
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    };
    let mut public = common(false);
    public.push(Attribute::Verify(true));
    let mut private = common(true);
    private.extend([
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ]);
    let mechanism = match kind {
        KeyKind::Rsa2048 | KeyKind::Rsa3072 => {
            let bits: u64 = if kind == KeyKind::Rsa2048 { 2048 } else { 3072 };
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            public.push(Attribute::Encrypt(false));
            private.push(Attribute::Decrypt(false));
            Mechanism::RsaPkcsKeyPairGen
        }
        KeyKind::EcP256 => {
            public.push(Attribute::EcParams(keys::p256_params_der()));
            Mechanism::EccKeyPairGen
        }
    };
    (mechanism, public, private)
}

/// A public key's SubjectPublicKeyInfo from its attributes.
fn spki_from_parts(
    kt: Option<KeyType>,
    n: Option<Vec<u8>>,
    e: Option<Vec<u8>>,
    point: Option<Vec<u8>>,
) -> Result<Vec<u8>> {
    let malformed = |what: &str| TokenError::Malformed(what.to_string());
    match kt {
        Some(t) if t == KeyType::RSA => {
            let (n, e) = n
                .zip(e)
                .ok_or_else(|| malformed("RSA public key without modulus"))?;
            keys::rsa_spki(&n, &e).map_err(|e| malformed(&format!("RSA public key: {e}")))
        }
        Some(t) if t == KeyType::EC => {
            let point = point
                .as_deref()
                .and_then(keys::ec_point_from_attribute)
                .ok_or_else(|| {
                    malformed("EC public key that is not an uncompressed P-256 point")
                })?;
            keys::ec_p256_spki(&point).map_err(|e| malformed(&format!("EC public key: {e}")))
        }
        _ => Err(TokenError::Unsupported {
            what: "keys other than RSA and EC P-256".into(),
        }),
    }
}

/// An attribute value read in one call, as cryptoki's typed attribute.
fn attribute_from(t: AttributeType, v: Vec<u8>) -> Option<Attribute> {
    let ulong = |v: &[u8]| -> Option<u64> {
        let bytes: [u8; 8] = v.try_into().ok()?;
        Some(u64::from_ne_bytes(bytes))
    };
    Some(match t {
        AttributeType::Id => Attribute::Id(v),
        AttributeType::Label => Attribute::Label(v),
        AttributeType::Value => Attribute::Value(v),
        AttributeType::Modulus => Attribute::Modulus(v),
        AttributeType::PublicExponent => Attribute::PublicExponent(v),
        AttributeType::EcPoint => Attribute::EcPoint(v),
        AttributeType::Class => Attribute::Class(ObjectClass::try_from(ulong(&v)?).ok()?),
        AttributeType::KeyType => Attribute::KeyType(KeyType::try_from(ulong(&v)?).ok()?),
        _ => return None,
    })
}

/// Run blocking token work from async code: on a multi-thread tokio runtime
/// the worker hands its other tasks away first, so the runtime never stalls
/// on a slow token (or a PIN pad).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
