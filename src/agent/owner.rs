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

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use cryptoki::types::AuthPin;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cert::{BankIssuers, TokenCerts};
use crate::config::{BankConfig, Config, TokenConfig};
use crate::drivers::Drivers;
use crate::renewal::{Journal, Step};
use crate::token::{Module, Token, TokenError, TokenInfo};

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
pub struct Look {
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
        })
    }

    /// Open the configured token (a session of its own, not logged in).
    fn open(&self) -> Result<Token, TokenError> {
        let module = Module::load(&self.token.module, &self.drivers)?;
        module.open(&self.token.selector)
    }

    /// What tells the bank's certificates apart, as known now.
    pub fn issuers(&self) -> BankIssuers {
        lock(&self.issuers).clone()
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
        let quiet = |_: Step, _: &str| {};
        match crate::renewal::bank_ca_certs(bank, dir, &quiet).await {
            Ok(ca_certs) => lock(&self.issuers).ca_certs = ca_certs,
            Err(e) => log::warn!("cannot learn the bank's issuing CA: {e}"),
        }
    }

    /// Look at the token without logging in (blocking: call off the async
    /// workers, or through [`Owner::look`]).
    pub fn look_now(&self) -> Result<Look, TokenError> {
        let token = self.open()?;
        self.look_with(&token)
    }

    fn look_with(&self, token: &Token) -> Result<Look, TokenError> {
        let info = token.info()?;
        let certs = crate::cert::token_certificates(token, &self.issuers())?;
        let pending =
            self.state_dir
                .as_deref()
                .and_then(|d| match Journal::load(d, &info.serial) {
                    Ok(j) => j.map(|j| j.entry.step),
                    Err(e) => {
                        log::warn!("{e}");
                        Some(Step::Started)
                    }
                });
        Ok(Look {
            info,
            certs,
            pending,
        })
    }

    /// Look at the token from async code.
    pub async fn look(self: &Arc<Self>) -> Result<Look, TokenError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.look_now())
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
    // Dropped after `Drop::drop` has logged out: the next lease waits for it.
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// The token, opened on first use (blocking).
    pub fn token(&mut self) -> Result<Arc<Token>, TokenError> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let t = Arc::new(self.owner.open()?);
        self.token = Some(t.clone());
        Ok(t)
    }

    /// Look at the token through this lease's session.
    pub fn look(&mut self) -> Result<Look, TokenError> {
        let token = self.token()?;
        self.owner.look_with(&token)
    }

    /// Log in with this PIN (`None`: the reader's PIN pad). The token is
    /// logged out first, so the token itself checks this PIN; a rejected
    /// PIN is reported and never retried.
    pub fn login(&mut self, pin: Option<&AuthPin>) -> Result<(), TokenError> {
        let token = self.token()?;
        token.logout()?;
        token.login(pin)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(t) = self.token.take()
            && let Err(e) = t.logout()
        {
            log::debug!("logging out after the operation: {e}");
        }
        *lock(&self.owner.holder) = None;
    }
}
