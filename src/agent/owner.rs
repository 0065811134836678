//! The token's one owner inside the agent.
//!
//! Every door (the page's status, logon and renewal, the tray's look,
//! notices and "Show certificate") reaches the token through the [`Owner`].
//! Looks read public objects without logging in and may run at any time.
//! Operations that log in hold the [`Lease`], of which there is one: a
//! second one is answered at once with [`Busy`], naming who holds the token
//! ("a renewal is using the token"), rather than queueing behind a dialog.
//!
//! The lease is where the PIN promise is kept: its login first logs the
//! token out, and "already logged in" is never success (see
//! [`Token::login`]), so every PIN a user types is checked by the token.
//! When the lease goes (on every path: success, error, a panic unwinding),
//! it logs the token out and closes its session, and the next operation
//! may start: a guard, never a flag reset at the end.
//!
//! The owner keeps what does not change while the token stays in its
//! reader: the last look (token info, the certificates and their CKA_IDs),
//! the slot, and the handles of keys already found, keyed by the token's
//! serial. The [watch](Owner::start_watch) drops them when the token goes
//! or comes: it waits on C_WaitForSlotEvent where the module has slot
//! events, and otherwise compares the slot list (one C_GetSlotList, no
//! session) every [`POLL`]; a software token's (profile `removable =
//! false`) is not watched at all.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::types::AuthPin;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{BankConfig, Config, TokenConfig};
use crate::drivers::Drivers;
use crate::holdings::{BankIssuers, TokenCerts};
use crate::renewal::{Journal, Step};
use crate::token::{Module, Token, TokenError, TokenInfo};

/// How often a module without slot events has its slot list compared.
pub const POLL: Duration = Duration::from_secs(20);
/// How often a card module certagent may initialise again is polled
/// (instead of waiting on its slot events).
pub const CARD_POLL: Duration = Duration::from_secs(1);
/// A cached look older than this is taken afresh (a certificate changed by
/// another program, with the token in its reader all along).
const LOOK_MAX_AGE: Duration = Duration::from_secs(30 * 60);
/// An operation that logs in uses a look at most this old, else reads the
/// certificates again through its own session. What the remembered look
/// does not hold is read again at once, and a key that is gone drops it.
const LEASE_LOOK_MAX_AGE: Duration = LOOK_MAX_AGE;

/// What the owner remembers of the token in its reader.
struct Cache {
    look: Snapshot,
    /// The certificates' object handles, by CKA_ID, from the token that
    /// took the look (see [`Lease::look`]).
    handles: Vec<(Vec<u8>, cryptoki::object::ObjectHandle)>,
    /// The token kept open between operations (see [`Owner::remember`]),
    /// out of here while a lease uses it.
    open: Option<Arc<Token>>,
    slot: cryptoki::slot::Slot,
    taken: Instant,
    taken_at: std::time::SystemTime,
}

/// Who holds the token, as the busy answer names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Logon,
    Renewal,
}

impl Use {
    fn holder(self) -> &'static str {
        match self {
            Use::Logon => "a logon",
            Use::Renewal => "a renewal",
        }
    }
}

/// The token is held by another operation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{holder} is using the token; try again when it finishes")]
pub struct Busy {
    pub holder: &'static str,
}

/// What a look at the token found.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub info: TokenInfo,
    pub certs: TokenCerts,
    /// The step of an interrupted renewal or enrolment waiting on this token.
    pub pending: Option<Step>,
}

/// The token's owner. Cheap to share (`Arc`).
pub struct Owner {
    token: TokenConfig,
    drivers: Drivers,
    bank: Option<BankConfig>,
    state_dir: Option<PathBuf>,
    lease: Arc<Semaphore>,
    holder: Arc<Mutex<Option<&'static str>>>,
    issuers: Mutex<BankIssuers>,
    cache: Mutex<Option<Cache>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain data, valid after any panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Owner {
    pub fn new(config: &Config, drivers: Drivers, state_dir: Option<PathBuf>) -> Arc<Owner> {
        let issuers = crate::renewal::known_issuers(config.bank.as_ref(), state_dir.as_deref());
        Arc::new(Owner {
            token: config.token.clone(),
            drivers,
            bank: config.bank.clone(),
            state_dir,
            lease: Arc::new(Semaphore::new(1)),
            holder: Arc::new(Mutex::new(None)),
            issuers: Mutex::new(issuers),
            cache: Mutex::new(None),
        })
    }

    fn module(&self) -> Result<Arc<Module>, TokenError> {
        Module::load(&self.token.module, &self.drivers)
    }

    /// Forget what is cached about the token (it went, came, or changed).
    pub fn invalidate(&self) {
        *lock(&self.cache) = None;
    }

    /// The last look if it is recent and no certagent process changed the
    /// token since, else a fresh one (blocking). The interrupted-renewal
    /// state is always read afresh (a file, not the token).
    pub fn cached_look(&self) -> Result<Snapshot, TokenError> {
        self.cached_look_pin(false)
    }

    /// [`Owner::cached_look`]; with `fresh_pin`, a cached look gets the
    /// token's PIN state read again (one C_GetTokenInfo): the counter moves
    /// with every login attempt of any program, and no slot event says so.
    fn cached_look_pin(&self, fresh_pin: bool) -> Result<Snapshot, TokenError> {
        self.drop_if_changed();
        let cached = lock(&self.cache)
            .as_ref()
            .filter(|c| c.taken.elapsed() < LOOK_MAX_AGE)
            .map(|c| (c.look.clone(), c.slot));
        match cached {
            Some((mut look, slot)) => {
                if fresh_pin {
                    let info = match self.module().and_then(|m| m.token_info(slot)) {
                        Ok(info) => info,
                        Err(e) => {
                            self.invalidate();
                            return Err(e);
                        }
                    };
                    if info.serial != look.info.serial {
                        // Another token in that slot: look at it afresh.
                        self.invalidate();
                        return self.look_now();
                    }
                    if let Some(c) = lock(&self.cache).as_mut() {
                        c.look.info = info.clone();
                    }
                    look.info = info;
                }
                look.pending = self.pending(&look.info.serial);
                Ok(look)
            }
            None => self.look_now(),
        }
    }

    /// Drop the cache if a renewal or enrolment (of any certagent process)
    /// changed the token after the last look.
    fn drop_if_changed(&self) {
        let Some(dir) = &self.state_dir else { return };
        let Ok(changed) =
            std::fs::metadata(crate::renewal::changed_stamp(dir)).and_then(|m| m.modified())
        else {
            return;
        };
        let mut cache = lock(&self.cache);
        if cache.as_ref().is_some_and(|c| changed >= c.taken_at) {
            *cache = None;
        }
        drop(cache);
        // A card another process changed: OpenSC in this process still
        // shows it as it read it until the module is initialised again.
        if let Ok(module) = self.module()
            && module.read_cards_again_since(changed)
        {
            log::info!("read the card again: another certagent changed it");
            self.invalidate();
        }
    }

    fn pending(&self, serial: &str) -> Option<Step> {
        self.state_dir
            .as_deref()
            .and_then(|d| match Journal::load(d, serial) {
                Ok(j) => j.map(|j| j.entry.step),
                Err(e) => {
                    log::warn!("{e}");
                    Some(Step::Started)
                }
            })
    }

    /// Remember `look`, taken through `token`, and keep `token` open for
    /// the next operation where its module allows it: its session (not
    /// logged in between operations) spares each logon a C_OpenSession and
    /// a C_CloseSession, and keeps the certificates' handles valid for
    /// checking an old look in one call each (SoftHSM forgets a token's
    /// handles when its last session closes). A card whose module certagent
    /// may initialise again is never kept open: that needs every session
    /// closed.
    fn remember(&self, look: &Snapshot, token: &Arc<Token>) {
        let keep = token.may_stay_open().then(|| token.clone());
        *lock(&self.cache) = Some(Cache {
            look: look.clone(),
            handles: token.certificate_handles(),
            open: keep,
            slot: token.slot(),
            taken: Instant::now(),
            taken_at: std::time::SystemTime::now(),
        });
    }

    /// Watch the token: `changed` is called when it goes or comes. Waits on
    /// slot events where the module has them (no call while idle), else
    /// compares the slot list every [`POLL`]; a software token is not
    /// watched. Runs on a thread of its own.
    pub fn start_watch(self: &Arc<Self>, changed: impl Fn(bool) + Send + 'static) {
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("token-watch".into())
            .spawn(move || me.watch(changed));
        if let Err(e) = spawned {
            log::warn!("cannot watch the token: {e}");
        }
    }

    fn watch(&self, changed: impl Fn(bool)) {
        let Ok(module) = self.module() else {
            return;
        };
        // A module whose cards certagent reads again after changing them
        // (C_Finalize, C_Initialize: OpenSC) is never waited on: OpenSC
        // frees what a C_WaitForSlotEvent blocked in another thread still
        // uses (measured: the agent hung or crashed). It is polled instead,
        // every second: a C_GetSlotList that pcscd answers without the card.
        // A software token is never pulled: nothing to watch, and an idle
        // agent then makes no PKCS#11 call and no wakeup.
        if module
            .profile()
            .and_then(|p| p.capabilities.removable)
            .is_some_and(|r| !r)
        {
            return;
        }
        let rereads = module.profile().is_some_and(|p| !p.cards.is_empty());
        let events = !rereads
            && module
                .profile()
                .and_then(|p| p.capabilities.slot_events)
                .unwrap_or(true);
        let poll = if rereads { CARD_POLL } else { POLL };
        let mut last = module.present_slots().ok();
        if events {
            loop {
                match module.wait_for_slot_event() {
                    Ok(true) => {
                        self.invalidate();
                        let now = module.present_slots().ok();
                        changed(now.as_ref().is_some_and(|s| !s.is_empty()));
                        last = now;
                    }
                    // No slot events after all: poll.
                    Ok(false) => break,
                    Err(e) => {
                        log::debug!("waiting for slot events: {e}");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        }
        loop {
            std::thread::sleep(poll);
            let now = module.present_slots().ok();
            if now != last {
                self.invalidate();
                changed(now.as_ref().is_some_and(|s| !s.is_empty()));
                last = now;
            }
        }
    }

    /// Open the configured token (a session of its own, not logged in).
    fn open(&self) -> Result<Token, TokenError> {
        let module = Module::load(&self.token.module, &self.drivers)?;
        module.open(&self.token.selector)
    }

    /// What tells the bank's certificates apart, as known now.
    pub fn issuers(&self) -> BankIssuers {
        let mut issuers = lock(&self.issuers).clone();
        // Another process's renewal may have replaced a certificate since.
        if let Some(dir) = &self.state_dir {
            issuers.replaced = crate::renewal::retired::replaced_certificates(dir);
        }
        issuers
    }

    /// Learn the bank's issuing CA from `/cacerts` if no CA is known yet
    /// (server-authenticated TLS; remembered for the next start). Until it
    /// is known, no certificate counts as the bank's.
    pub async fn learn_issuers(&self) {
        if !lock(&self.issuers).ca_certs.is_empty() {
            return;
        }
        let (Some(bank), Some(dir)) = (&self.bank, &self.state_dir) else {
            return;
        };

        match crate::bank_ca::bank_ca_certs(bank, dir, &|| {}).await {
            Ok(ca_certs) => lock(&self.issuers).ca_certs = ca_certs,
            Err(e) => log::warn!("cannot learn the bank's issuing CA: {e}"),
        }
    }

    /// Snapshot at the token without logging in (blocking: call off the async
    /// workers, or through [`Owner::look`]).
    pub fn look_now(&self) -> Result<Snapshot, TokenError> {
        let token = match self.open() {
            Ok(t) => Arc::new(t),
            Err(e) => {
                self.invalidate();
                return Err(e);
            }
        };
        let look = self.look_with(&token)?;
        self.remember(&look, &token);
        Ok(look)
    }

    fn look_with(&self, token: &Token) -> Result<Snapshot, TokenError> {
        let info = token.info()?;
        let certs = crate::holdings::token_certificates(token, &self.issuers())?;
        // Read once per token while it stays in its reader (the module keeps
        // it): a logon later needs it and should not pay for it then.
        let _ = token.mechanisms();
        let pending = self.pending(&info.serial);
        Ok(Snapshot {
            info,
            certs,
            pending,
        })
    }

    /// The pages' view of the token, from async code: a look only when
    /// nothing recent is cached, and the PIN state always as the token says
    /// it now (the desk's tick uses [`Owner::cached_look`] and stays silent
    /// while idle).
    pub async fn snapshot(self: &Arc<Self>) -> Result<Snapshot, TokenError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.cached_look_pin(true))
            .await
            .unwrap_or_else(|e| {
                Err(TokenError::Unsupported {
                    what: format!("looking at the token (the task failed: {e})"),
                })
            })
    }

    /// The one lease for an operation that logs in, or [`Busy`] at once.
    pub fn lease(self: &Arc<Self>, what: Use) -> Result<Lease, Busy> {
        let permit = self.lease.clone().try_acquire_owned().map_err(|_| Busy {
            holder: lock(&self.holder).unwrap_or("another operation"),
        })?;
        *lock(&self.holder) = Some(what.holder());
        Ok(Lease {
            owner: self.clone(),
            token: None,
            changed: false,
            _permit: permit,
        })
    }

    /// Who holds the lease now, if anyone.
    pub fn holder(&self) -> Option<&'static str> {
        *lock(&self.holder)
    }
}

/// The exclusive right to log in to the token, for one operation.
pub struct Lease {
    owner: Arc<Owner>,
    token: Option<Arc<Token>>,
    changed: bool,
    // Dropped after `Drop::drop` has logged out: the next lease waits for it.
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// The token, opened on first use (blocking): a session on the slot
    /// the owner knows, its identity read afresh (one C_OpenSession and one
    /// C_GetTokenInfo); a different token there means a full look.
    pub fn token(&mut self) -> Result<Arc<Token>, TokenError> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        // The token kept open since the last operation, if it is still
        // the same token (one C_GetTokenInfo, which also reads the PIN
        // state afresh).
        let kept = lock(&self.owner.cache).as_mut().and_then(|c| {
            c.open
                .take()
                .map(|t| (t, c.look.info.serial.clone(), c.look.info.label.clone()))
        });
        if let Some((t, serial, label)) = kept {
            match t.refresh_info() {
                Ok(now) if now.serial == serial && now.label == label => {
                    self.token = Some(t.clone());
                    return Ok(t);
                }
                _ => self.owner.invalidate(),
            }
        }
        let known = lock(&self.owner.cache)
            .as_ref()
            .map(|c| (c.slot, c.look.info.clone()));
        let reuse = match known {
            Some((slot, info)) => {
                let opened = self
                    .owner
                    .module()
                    .and_then(|m| m.open_slot(slot, info.clone()));
                match opened {
                    Ok(t) => match t.refresh_info() {
                        Ok(now) if now.serial == info.serial && now.label == info.label => Some(t),
                        _ => None,
                    },
                    Err(_) => None,
                }
            }
            None => None,
        };
        let t = match reuse {
            Some(t) => Arc::new(t),
            None => {
                self.owner.invalidate();
                let t = Arc::new(self.owner.open()?);
                let look = self.owner.look_with(&t)?;
                self.owner.remember(&look, &t);
                t
            }
        };
        self.token = Some(t.clone());
        Ok(t)
    }

    /// The token as last seen (certificates and identity), through the
    /// owner's cache; the PIN state in it is fresh from [`Lease::token`].
    pub fn look(&mut self) -> Result<Snapshot, TokenError> {
        self.owner.drop_if_changed();
        let token = self.token()?;
        let remembered = lock(&self.owner.cache)
            .as_ref()
            .map(|c| (c.look.clone(), c.handles.clone(), c.taken.elapsed()));
        let recent = match remembered {
            Some((l, _, age)) if age < LEASE_LOOK_MAX_AGE => Some(l),
            Some((l, handles, _)) if still_holds(&token, &l, &handles)? => Some(l),
            _ => None,
        };
        let mut look = match recent {
            Some(mut l) => {
                l.pending = self.owner.pending(&l.info.serial);
                l
            }
            None => self.fresh_look()?,
        };
        look.info = token.info()?;
        Ok(look)
    }

    /// Read the certificates again through this lease's session (the cache
    /// was old, or did not hold what the caller asked for).
    pub fn fresh_look(&mut self) -> Result<Snapshot, TokenError> {
        let token = self.token()?;
        let look = self.owner.look_with(&token)?;
        self.owner.remember(&look, &token);
        Ok(look)
    }

    /// Log in with this PIN (`None`: the reader's PIN pad). "Already
    /// logged in" is never taken as a success: the token itself checks
    /// this PIN. A rejected PIN is reported and never retried.
    pub fn login(&mut self, pin: Option<&AuthPin>) -> Result<(), TokenError> {
        let token = self.token()?;
        // Every lease logs out when it ends, so the token is logged out
        // here; should it not be (login state is per process), C_Login
        // says so without checking the PIN, and the PIN goes to the token
        // once more after a logout: checked by the token, never retried
        // after a refusal.
        match token.login(pin) {
            Err(TokenError::AlreadyLoggedIn) => {
                token.logout()?;
                token.login(pin)
            }
            other => other,
        }
    }

    /// Log out and close this lease's token (the lease itself goes on): a
    /// card's module is about to be initialised again.
    pub fn close_token(&mut self) {
        if let Some(t) = self.token.take()
            && let Err(e) = t.logout()
        {
            log::debug!("logging out before reading the card again: {e}");
        }
        self.owner.invalidate();
    }

    /// The operation changed the token (a renewal): what the owner
    /// remembers of it is dropped when the lease ends.
    pub fn changed_token(&mut self) {
        self.changed = true;
    }
}

/// Whether an old look still holds: each of its certificates (at most
/// [`VERIFY_MAX`]) read again through its remembered handle, one call
/// each, is the same certificate. Cheaper than a new search (four calls
/// and more) for the usual token of one or two certificates; a certificate
/// gone or changed, or one without a handle, means a fresh look. A
/// certificate another program *added* beside the old ones shows at the
/// next slot event, when a page names it, or once the old ones expire.
fn still_holds(
    token: &Token,
    look: &Snapshot,
    handles: &[(Vec<u8>, cryptoki::object::ObjectHandle)],
) -> Result<bool, TokenError> {
    let certs: Vec<&crate::holdings::TokenCert> = look
        .certs
        .bank
        .iter()
        .chain(look.certs.others.iter())
        .collect();
    if certs.len() > VERIFY_MAX {
        return Ok(false);
    }
    for c in certs {
        let Some((_, h)) = handles.iter().find(|(id, _)| *id == c.id) else {
            log::debug!(
                "an old look: no handle for certificate {}",
                hex::encode(&c.id)
            );
            return Ok(false);
        };
        if token.value_of(*h)?.as_deref() != Some(c.cert.der.as_slice()) {
            log::debug!("an old look: certificate {} changed", hex::encode(&c.id));
            return Ok(false);
        }
    }
    Ok(true)
}

/// An old look of more certificates than this is read afresh instead.
const VERIFY_MAX: usize = 3;

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(t) = self.token.take() {
            match t.logout() {
                // Logged out: kept open for the next operation, if the
                // owner still remembers this token and its module allows.
                Ok(()) if !self.changed && t.may_stay_open() => {
                    if let Some(c) = lock(&self.owner.cache).as_mut()
                        && c.slot == t.slot()
                        && c.open.is_none()
                    {
                        c.open = Some(t);
                    }
                }
                Ok(()) => {}
                Err(e) => {
                    // Not known to be logged out: no session of it stays
                    // open (closing a token's last session logs it out).
                    log::debug!("logging out after the operation: {e}");
                    drop(t);
                    self.owner.invalidate();
                }
            }
        }
        if self.changed {
            self.owner.invalidate();
        }
        *lock(&self.owner.holder) = None;
    }
}
