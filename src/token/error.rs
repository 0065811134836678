//! Token errors, phrased for the person holding the token.

use std::path::PathBuf;

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

/// Everything that can go wrong between certagent and a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The module name matched no profile and is not a path.
    #[error(
        "unknown PKCS#11 module {name:?}: it is neither a profile ({known}) nor a path to a library"
    )]
    UnknownProfile { name: String, known: String },
    /// A profile's library is not installed.
    #[error(
        "the {profile} PKCS#11 module is not installed (looked for {tried}); install it: {install}; or set [token] module to the library's path"
    )]
    ModuleMissing {
        profile: String,
        tried: String,
        install: String,
    },
    /// The library exists but cannot be loaded or initialised.
    #[error("cannot load the PKCS#11 module {path}: {reason}")]
    ModuleLoad { path: PathBuf, reason: String },
    /// No token matching the configuration is present.
    #[error("{}", not_found_message(wanted, present))]
    NotFound { wanted: String, present: String },
    /// More than one token matches.
    #[error("{count} tokens match {wanted} ({present}); set [token] serial to choose one")]
    Ambiguous {
        wanted: String,
        count: usize,
        present: String,
    },
    /// The token was pulled out, or is not in its reader.
    #[error("the token was removed (during {function}); insert it and try again")]
    Removed { function: String },
    /// The PIN was rejected. It is never retried automatically.
    #[error("{}", pin_incorrect_message(*.final_try, *.count_low, *.locked))]
    PinIncorrect {
        count_low: bool,
        final_try: bool,
        locked: bool,
    },
    /// Another operation of this program holds the token logged in; a PIN
    /// typed now would not be checked, so the login is refused.
    #[error(
        "the token is already logged in by another operation of certagent; try again when it finishes"
    )]
    AlreadyLoggedIn,
    /// The card's admin PIN (the SO login) was rejected. Never retried.
    #[error(
        "the card rejected the admin PIN; it was not retried and nothing was changed by this step (the card counts wrong admin PINs too: check it before trying again)"
    )]
    AdminPinIncorrect,
    /// The user PIN is blocked.
    #[error(
        "the token's PIN is locked after too many wrong PINs: ask your bank administrator (the token's security officer) to unlock it"
    )]
    PinLocked,
    /// The PIN was refused for its length or characters before any check.
    #[error(
        "the PIN was refused for its length or characters ({0}); the token did not count it as a wrong PIN"
    )]
    PinFormat(String),
    /// An operation needs a login first.
    #[error("the token needs the PIN before this operation (log in first)")]
    NotLoggedIn,
    /// The token is full.
    #[error(
        "the token has no room left for {what}: remove certificates or keys you no longer need (see `certagent show`) and try again"
    )]
    Full { what: String },
    /// The token is write-protected.
    #[error("the token is write-protected; it cannot store {what}")]
    WriteProtected { what: String },
    /// No private key pairs with a certificate.
    #[error("no private key with id {id} on the token")]
    KeyNotFound { id: String },
    /// The token cannot do what is asked.
    #[error("the token does not support {what}")]
    Unsupported { what: String },
    /// The token answered with something malformed.
    #[error("the token returned malformed data: {0}")]
    Malformed(String),
    /// Any other PKCS#11 failure.
    #[error("PKCS#11 {function} failed: {rv}")]
    Pkcs11 { function: String, rv: String },
}

fn not_found_message(wanted: &str, present: &str) -> String {
    if wanted == "any token" {
        format!("{present}: insert the token and try again")
    } else {
        format!(
            "no token matching {wanted} is present ({present}); insert the token, or fix [token] label, serial or uri in the configuration"
        )
    }
}

impl TokenError {
    /// A stable code for scripts (`--json`), as the local API's.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::UnknownProfile { .. } => "module-unknown",
            TokenError::ModuleMissing { .. } => "module-missing",
            TokenError::ModuleLoad { .. } => "module-load",
            TokenError::NotFound { .. } | TokenError::Removed { .. } => "no-token",
            TokenError::Ambiguous { .. } => "token-ambiguous",
            TokenError::PinIncorrect { .. } => "pin-incorrect",
            TokenError::AlreadyLoggedIn => "busy",
            TokenError::PinLocked => "pin-locked",
            TokenError::AdminPinIncorrect => "admin-pin-incorrect",
            TokenError::PinFormat(_) => "pin-format",
            TokenError::NotLoggedIn => "not-logged-in",
            TokenError::Full { .. } => "token-full",
            TokenError::WriteProtected { .. } => "token-write-protected",
            TokenError::KeyNotFound { .. } => "key-not-found",
            TokenError::Unsupported { .. } => "unsupported",
            TokenError::Malformed(_) => "token-malformed",
            TokenError::Pkcs11 { .. } => "pkcs11",
        }
    }
}

fn pin_incorrect_message(final_try: bool, count_low: bool, locked: bool) -> String {
    let tail = if locked {
        " The PIN is now locked: ask your bank administrator to unlock the token."
    } else if final_try {
        " WARNING: one more wrong PIN locks the token."
    } else if count_low {
        " The token reports few tries left."
    } else {
        ""
    };
    format!("the token rejected the PIN; it was not retried.{tail}")
}

/// The one mapping from cryptoki errors to what we tell users.
pub(crate) fn map(e: CkError) -> TokenError {
    match e {
        CkError::Pkcs11(rv, function) => map_rv(rv, function),
        CkError::LibraryLoading(e) => TokenError::ModuleLoad {
            path: PathBuf::new(),
            reason: e.to_string(),
        },
        other => TokenError::Pkcs11 {
            function: "cryptoki".into(),
            rv: other.to_string(),
        },
    }
}

fn map_rv(rv: RvError, function: Function) -> TokenError {
    let function = format!("{function}");
    match rv {
        RvError::TokenNotPresent
        | RvError::DeviceRemoved
        | RvError::SessionHandleInvalid
        | RvError::SessionClosed => TokenError::Removed { function },
        RvError::PinLocked => TokenError::PinLocked,
        RvError::PinIncorrect => TokenError::PinIncorrect {
            count_low: false,
            final_try: false,
            locked: false,
        },
        RvError::PinLenRange | RvError::PinInvalid => TokenError::PinFormat(rv.to_string()),
        RvError::UserNotLoggedIn => TokenError::NotLoggedIn,
        RvError::DeviceMemory | RvError::HostMemory => TokenError::Full {
            what: "this object".into(),
        },
        RvError::TokenWriteProtected => TokenError::WriteProtected {
            what: "new objects".into(),
        },
        RvError::MechanismInvalid | RvError::FunctionNotSupported => TokenError::Unsupported {
            what: format!("{function} with this mechanism"),
        },
        other => TokenError::Pkcs11 {
            function,
            rv: format!("{other:?}"),
        },
    }
}

impl TokenError {
    /// Whether the user can fix this by acting on the token (insert it,
    /// enter another PIN) and trying again.
    pub fn is_user_actionable(&self) -> bool {
        matches!(
            self,
            TokenError::NotFound { .. }
                | TokenError::Removed { .. }
                | TokenError::PinIncorrect { .. }
                | TokenError::AdminPinIncorrect
                | TokenError::PinFormat(_)
        )
    }
}
