//! The one loop every door runs (`certagent renew` and `enroll`, the page,
//! the tray): the attempt goes as far as it can on the token as it was
//! read; where a card's module shows what was written only once it is
//! initialised again, the door closes the token ([`Reopen`]), the module
//! is initialised again, the same card is opened, and the attempt resumes
//! from its journal with the PINs already given.

use std::sync::Arc;
use std::time::Duration;

use super::attempt::{Attempt, execute};
use super::error::RenewalError;
use super::plan::Plan;
use super::plan::resume_after_reading;
use super::workflow::Pass;
use crate::holdings::TokenCert;
use crate::i18n::tr;
use crate::token::{Token, TokenError, block_in_place};

/// How many times a card is read again in one run: a card renewal needs
/// three (after the key generation, after the certificate write, after
/// the old certificate's removal); the bound is for a card that never
/// shows what was written.
const MAX_READS: usize = 6;
/// The module is initialised again only once no token of it is open
/// here; the bank connection's tasks let go of the token a moment after
/// the attempt (and another door may be reading the card): tried this
/// often, 100 ms apart.
const REINITIALIZE_TRIES: usize = 100;

/// How a door lets go of the token and opens it again.
pub trait Reopen {
    /// Let go of `token`: log out and drop every handle of it this door
    /// keeps, so its module can be initialised again.
    fn close(&mut self, token: Arc<Token>);
    /// Open the token again, once its module was initialised again.
    fn open(&mut self) -> Result<Arc<Token>, TokenError>;
}

/// How a run ended: the result, and the token as the run left it open
/// (`None` when it could not be opened again).
pub struct Ended {
    pub token: Option<Arc<Token>>,
    pub result: Result<TokenCert, RenewalError>,
}

/// Run a planned attempt to the end (see the module's doc).
pub async fn run(
    door: &mut impl Reopen,
    token: Arc<Token>,
    attempt: &Attempt<'_>,
    plan: Plan,
) -> Ended {
    let (mut token, mut plan) = (token, plan);
    for _ in 0..MAX_READS {
        let step = match execute(&token, attempt, plan).await {
            Ok(Pass::ReadCardAgain(step)) => step,
            Ok(Pass::Done(cert)) => return ended(token, Ok(*cert)),
            Err(e) => return ended(token, Err(e)),
        };
        attempt.progress.step(step, &tr("step-reading-card", &[]));
        let module = token.module_arc();
        door.close(token);
        let mut reinitialized = module.reinitialize();
        for _ in 1..REINITIALIZE_TRIES {
            if reinitialized.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            reinitialized = module.reinitialize();
        }
        drop(module);
        if let Err(e) = reinitialized {
            return Ended {
                token: None,
                result: Err(e.into()),
            };
        }
        let reopened = match block_in_place(|| door.open()) {
            Ok(t) => t,
            Err(e) => {
                return Ended {
                    token: None,
                    result: Err(e.into()),
                };
            }
        };
        token = reopened;
        let resumed = block_in_place(|| -> Result<Plan, RenewalError> {
            // The same card, checked before any PIN goes to it.
            let p = resume_after_reading(&token, &attempt.token_serial, attempt.state_dir)?;
            if let Some(c) = attempt.card {
                token.login(c.user.as_ref())?;
            }
            Ok(p)
        });
        plan = match resumed {
            Ok(p) => p,
            Err(e) => return ended(token, Err(e)),
        };
    }
    ended(token, Err(RenewalError::CardNotReadAgain))
}

fn ended(token: Arc<Token>, result: Result<TokenCert, RenewalError>) -> Ended {
    Ended {
        token: Some(token),
        result,
    }
}
