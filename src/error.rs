//! The error every command can end with, one line for the user.

use crate::cert::CertError;
use crate::config::ConfigError;
use crate::csr::CsrError;
use crate::drivers::DriverError;
use crate::prompt::PromptError;
use crate::token::TokenError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error(transparent)]
    BrowserPolicy(#[from] crate::browser_policy::PolicyError),
    #[error(transparent)]
    Renewal(crate::renewal::RenewalError),
    /// A request the user made that cannot be met (bad argument, no such certificate).
    #[error("{0}")]
    Usage(String),
    /// Checks ran and some failed (the details were already printed).
    #[error("{0}")]
    ChecksFailed(String),
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}
