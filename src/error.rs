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

impl Error {
    /// A stable code for scripts: `--json` prints `{"error": code,
    /// "message": text}` on stdout.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Driver(_) => "driver",
            Error::Token(e) => e.code(),
            Error::Cert(_) => "certificate",
            Error::Csr(_) => "csr",
            Error::Prompt(PromptError::Cancelled) => "cancelled",
            Error::Prompt(_) => "prompt",
            Error::Renewal(_) => "renewal",
            Error::BrowserPolicy(_) => "browser-policy",
            Error::Usage(_) => "usage",
            Error::ChecksFailed(_) => "checks-failed",
            Error::Io(_) => "io",
        }
    }
}

impl Error {
    /// The error as a person reads it in `lang`. English is the one line
    /// it has always been. Other languages say what went wrong and what to
    /// do in their own words, then the English line as details (it names
    /// files, tokens and PKCS#11 codes).
    pub fn for_people(&self, lang: crate::i18n::Lang) -> String {
        // One line, cleaned: errors carry names and the bank's words.
        let line = crate::text::clean(&self.to_string(), crate::text::MESSAGE_MAX);
        if lang == crate::i18n::Lang::En {
            return line;
        }
        let id = match self {
            Error::Token(TokenError::PinIncorrect { locked: true, .. }) => {
                "error-pin-incorrect-locked".to_string()
            }
            Error::Token(TokenError::PinIncorrect {
                final_try: true, ..
            }) => "error-pin-incorrect-final".to_string(),
            e => format!("error-{}", e.code()),
        };
        let what = crate::i18n::tr_in(lang, &id, &[]);
        let details = crate::i18n::tr_in(
            lang,
            "error-details",
            &[("details", crate::i18n::Arg::Str(&line))],
        );
        format!("{what}\n  {details}")
    }
}
