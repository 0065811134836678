//! The agent's one way to a logged-in token for an operation a door asks
//! for (a page's logon or renewal, the tray's renewal): consent in the
//! agent's own dialog, then the PIN (or the reader's PIN pad), then the
//! login the token checks, never retried. What stops an operation is a
//! [`Refusal`], in the agent's words; the local API maps each to an HTTP
//! answer (`api`), the tray shows its message.

use std::time::Duration;

use cryptoki::types::AuthPin;

use super::dialogs::{Occupied, Turn};
use super::owner::{Busy, Lease};
use super::shared::Agent;
use crate::prompt::PromptError;
use crate::renewal::RenewalError;
use crate::token::{TokenError, TokenInfo};

/// Why an operation asked through a door did not happen.
#[derive(Debug)]
pub enum Refusal {
    /// The user said no (the words say to what).
    Declined(&'static str),
    /// Another operation holds the token, or another dialog is open.
    Busy(String),
    /// A page that was just refused asks again too soon.
    CoolingDown(Duration),
    /// The PIN or consent dialog was cancelled or failed.
    Prompt(PromptError),
    Token(TokenError),
    /// The pre-check or the renewal said no.
    Renewal(RenewalError),
    /// A page named a certificate that is not one of the bank's on the
    /// token: one answer whether it is absent, another issuer's or one
    /// replaced, so a page learns nothing about the rest of the token.
    NoSuchCertificate,
    /// The agent's configuration has no `[bank]`.
    NoBank,
    /// The per-user state directory is missing or cannot be written.
    State(String),
    /// The agent itself failed (a task, the system's randomness).
    Internal(String),
}

impl Refusal {
    /// What the page or the user is told: one line, no secret.
    pub fn message(&self) -> String {
        match self {
            Refusal::Declined(what) => (*what).to_string(),
            Refusal::Busy(m) | Refusal::State(m) | Refusal::Internal(m) => m.clone(),
            Refusal::CoolingDown(wait) => format!(
                "the user declined a moment ago; this page may ask again in {} s",
                wait.as_secs().max(1)
            ),
            Refusal::Prompt(PromptError::Cancelled) => "the user cancelled".into(),
            Refusal::Prompt(e) => e.to_string(),
            Refusal::Token(e) | Refusal::Renewal(RenewalError::Token(e)) => token_message(e),
            Refusal::Renewal(e) => e.to_string(),
            Refusal::NoSuchCertificate => "no bank certificate with that id on the token".into(),
            Refusal::NoBank => "no [bank] in the agent's configuration".into(),
        }
    }
}

fn token_message(e: &TokenError) -> String {
    match e {
        TokenError::NotFound { .. } | TokenError::Removed { .. } => {
            "the token is not present; insert it and try again".into()
        }
        other => other.to_string(),
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Refusal {
        Refusal::Token(e)
    }
}

impl From<Busy> for Refusal {
    fn from(e: Busy) -> Refusal {
        Refusal::Busy(e.to_string())
    }
}

impl From<Occupied> for Refusal {
    fn from(e: Occupied) -> Refusal {
        Refusal::Busy(e.to_string())
    }
}

impl From<PromptError> for Refusal {
    fn from(e: PromptError) -> Refusal {
        Refusal::Prompt(e)
    }
}

impl From<RenewalError> for Refusal {
    fn from(e: RenewalError) -> Refusal {
        Refusal::Renewal(e)
    }
}

/// Consent, then the PIN (or the reader's PIN pad), then the login the
/// token checks. A denied or timed-out question cools `cool_key` down.
/// Returns the PIN the token accepted (`None`: the PIN pad), for an
/// operation that logs in again (a renewal on a card of several tokens);
/// everyone else drops it at once.
#[allow(clippy::too_many_arguments)]
pub fn consent_and_login(
    agent: &Agent,
    turn: &Turn,
    lease: &mut Lease,
    info: &TokenInfo,
    question: &str,
    purpose: &str,
    cool_key: Option<&str>,
    declined: &'static str,
) -> Result<Option<AuthPin>, Refusal> {
    let cool = || {
        if let Some(k) = cool_key {
            agent.dialogs.cool_down(k);
        }
    };
    let refused = |e: PromptError| {
        if matches!(e, PromptError::Cancelled) {
            cool();
        }
        Refusal::Prompt(e)
    };
    if !turn.confirm(question).map_err(refused)? {
        cool();
        return Err(Refusal::Declined(declined));
    }
    if info.pin_locked {
        return Err(Refusal::Token(TokenError::PinLocked));
    }
    if info.protected_auth_path {
        lease.login(None)?;
        Ok(None)
    } else {
        let pin = turn.pin(info, purpose).map_err(refused)?;
        lease.login(Some(&pin))?;
        Ok(Some(pin))
    }
}

/// Run blocking token and dialog work off the async workers.
pub async fn on_blocking_thread<T: Send + 'static, E: From<Refusal> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Refusal::Internal(format!("agent task failed: {e}")).into()))
}
