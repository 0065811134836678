//! One question on screen at a time, for the whole agent.
//!
//! Every dialog (a logon's consent and PIN, a renewal's, "Show
//! certificate") takes the one [`Turn`]; a door that finds a dialog open is
//! told so at once instead of stacking a second window. A page whose
//! question was denied, or left to time out, is not allowed to ask again
//! for [`COOL_DOWN`]: it gets 429 and the user sees nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cryptoki::types::AuthPin;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::prompt::{Prompt, PromptError};
use crate::token::TokenInfo;

/// How long a page waits after its question was denied or timed out.
pub const COOL_DOWN: Duration = Duration::from_secs(30);
/// Cool-downs remembered at most (one per origin; origins are configured,
/// so this bound is only a guard).
const MAX_REMEMBERED: usize = 64;

/// The agent's dialogs.
pub struct Dialogs {
    prompt: Arc<dyn Prompt>,
    one: Arc<Semaphore>,
    cooling: Mutex<HashMap<String, Instant>>,
}

/// A dialog is already open.
#[derive(Debug, thiserror::Error)]
#[error("another question of certagent is on screen; answer it first")]
pub struct Occupied;

impl Dialogs {
    pub fn new(prompt: Arc<dyn Prompt>) -> Dialogs {
        Dialogs {
            prompt,
            one: Arc::new(Semaphore::new(1)),
            cooling: Mutex::new(HashMap::new()),
        }
    }

    /// The time `who` must still wait after a denied or timed-out question.
    pub fn cooling_down(&self, who: &str) -> Option<Duration> {
        let mut map = self.cooling.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, until| *until > now);
        map.get(who).map(|until| *until - now)
    }

    /// `who`'s question was denied or timed out: no new question for a while.
    pub fn cool_down(&self, who: &str) {
        let mut map = self.cooling.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_REMEMBERED {
            let now = Instant::now();
            map.retain(|_, until| *until > now);
        }
        if map.len() < MAX_REMEMBERED {
            map.insert(who.to_string(), Instant::now() + COOL_DOWN);
        }
    }

    /// The one turn to ask the user, or [`Occupied`] at once. The turn's
    /// questions share one conversation (one pinentry process), which ends
    /// with the turn.
    pub fn turn(&self) -> Result<Turn, Occupied> {
        let permit = self.one.clone().try_acquire_owned().map_err(|_| Occupied)?;
        Ok(Turn {
            prompt: self
                .prompt
                .conversation()
                .unwrap_or_else(|| self.prompt.clone()),
            _permit: permit,
        })
    }
}

/// The right to show dialogs, held for one operation's questions.
pub struct Turn {
    // Dropped first (fields drop in order): the conversation's program is
    // told BYE before the next turn can start one.
    prompt: Arc<dyn Prompt>,
    _permit: OwnedSemaphorePermit,
}

impl Turn {
    pub fn confirm(&self, question: &str) -> Result<bool, PromptError> {
        self.prompt.confirm(question)
    }

    pub fn pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        self.prompt.pin(token, purpose)
    }

    /// A card's admin PIN (its own dialog, never retried).
    pub fn admin_pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        self.prompt.admin_pin(token, purpose)
    }

    pub fn show(&self, text: &str) -> Result<(), PromptError> {
        self.prompt.show(text)
    }
}
