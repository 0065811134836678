//! What stops a renewal, in words for the user.

use std::path::PathBuf;
use std::time::Duration;

use crate::bank_ca::BankCaError;
use crate::est::EstError;
use crate::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Est(#[from] EstError),
    #[error("the bank's answer was rejected, and the token is unchanged: {0}")]
    BadAnswer(String),
    #[error("cannot build the certificate request: {0}")]
    Csr(String),
    #[error("the renewal journal {path}: {reason}")]
    Journal { path: PathBuf, reason: String },
    #[error(
        "the bank has not issued the certificate after {0:?}; run the same command later to collect it (the same request is sent again)"
    )]
    StillPending(Duration),
    /// Not now, but later it may be (not due yet, another attempt
    /// pending, the bank's CA not known yet): nothing was done.
    #[error("{0}")]
    NotNow(String),
    /// Not by this door, now or later (expired: enrol instead; lapsed;
    /// not the bank's; a card certagent cannot generate on; a full card;
    /// a choice to make): nothing was done.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
    /// The token (a card, a USB token) went away while the attempt ran:
    /// its journal stays, and the same command resumes it.
    #[error(
        "the {what} was removed during the renewal (at step {step}); insert it and run `{again}` again: the renewal resumes where it stopped"
    )]
    Removed {
        what: &'static str,
        step: String,
        again: String,
    },
    /// The card still did not show what was written after being read
    /// again several times ([`super::run`]); the journal stays.
    #[error(
        "the card must be read again before the renewal can go on; run the same command again to continue"
    )]
    CardNotReadAgain,
    /// The bank's CA, or the connection to the bank, is not at hand.
    #[error("{0}")]
    BankCa(String),
}

impl From<BankCaError> for RenewalError {
    fn from(e: BankCaError) -> RenewalError {
        match e {
            BankCaError::Est(e) => RenewalError::Est(e),
            BankCaError::Config(m) => RenewalError::BankCa(m),
        }
    }
}
