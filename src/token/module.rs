//! The loaded PKCS#11 library: one per path for the whole process, its
//! slots and tokens, initialising it again for a card, and finding a token
//! by its selector.

use super::*;

/// A loaded PKCS#11 library.
#[derive(Debug)]
pub struct Module {
    pub(super) ctx: Pkcs11,
    pub(super) path: PathBuf,
    /// The profile named in the configuration or matched by path.
    pub(super) named: Option<Profile>,
    pub(super) drivers: Drivers,
    /// Read on first use (C_GetInfo): `tokens` and `doctor` show it, and a
    /// module known by neither name nor path is matched by manufacturer.
    pub(super) library: OnceLock<LibraryInfo>,
    pub(super) profile: OnceLock<Option<Profile>>,
    pub(super) raw: Option<raw::Raw>,
    /// Mechanism lists by (slot, token serial): they do not change while
    /// the token stays in its reader.
    pub(super) mechanisms: Mutex<HashMap<(u64, String), Vec<MechanismType>>>,
    /// Tokens of this module open in this process (each with its session).
    pub(super) open_tokens: std::sync::atomic::AtomicUsize,
    /// When the module was last initialised (see [`Module::reinitialize`]).
    pub(super) initialized_at: Mutex<std::time::SystemTime>,
    /// Held while the module is initialised again: one at a time.
    pub(super) reinitializing: Mutex<()>,
    /// Module-level calls (slot lists, token info, opening sessions) hold
    /// it to read, [`Module::reinitialize`] to write: none runs across a
    /// C_Finalize.
    pub(super) calls: std::sync::RwLock<()>,
}

// One context per library path for the whole process: cryptoki cannot
// initialise a library twice, and C_Finalize would pull tokens from under
// other users in the process.
static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();

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
    pub(super) fn reading(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.calls.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn slot_list(&self, token_present: bool) -> Result<Vec<Slot>> {
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
    pub(super) fn open_session(&self, slot: Slot, read_only: bool) -> Result<Session> {
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
    pub(super) fn reader_of(&self, slot: Slot) -> Result<String> {
        let _calls = self.reading();
        let si = self.ctx.get_slot_info(slot).map_err(error::map)?;
        Ok(si.slot_description().trim_end().to_string())
    }

    pub(super) fn token_info_ck(&self, slot: Slot) -> std::result::Result<TokenInfo, CkError> {
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

pub(super) fn resolve(spec: &str, drivers: &Drivers) -> Result<(PathBuf, Option<Profile>)> {
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
    // A bare file name is a library shipped beside the program (a Windows
    // application's directory, where an installer puts its DLLs).
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let located = |p: &String| -> Option<PathBuf> {
        let path = Path::new(p);
        if path.components().count() == 1 && !path.has_root() {
            beside.as_ref().map(|d| d.join(path))
        } else {
            Some(path.to_path_buf())
        }
    };
    match candidates.iter().filter_map(located).find(|p| p.exists()) {
        Some(p) => Ok((p, Some(profile.clone()))),
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
