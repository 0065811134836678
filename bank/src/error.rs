//! What can go wrong on the bank operator's side (files, keys, arguments).
//!
//! Refusals of EST requests are not errors of the bank: they are answers,
//! see [`super::rules::Refusal`].

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a bank already exists in {}: refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    #[error("{} holds no bank: run `certagent-bank init --dir {}` first", .0.display(), .0.display())]
    NotABank(PathBuf),
    #[error("the bank's state file {} is damaged: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("no user {0:?} is registered")]
    UnknownUser(String),
    #[error("user {0:?} is already registered")]
    UserExists(String),
    #[error("subject {subject:?} already belongs to user {user:?}")]
    SubjectTaken { subject: String, user: String },
    #[error("{0:?} is not a usable user ID: use 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadUser(String),
    #[error("{subject:?} is not a usable subject ({reason}); write it like \"CN=Alice,O=Bank\"")]
    BadSubject { subject: String, reason: String },
    #[error("not a usable public key: {0}")]
    BadKey(String),
    #[error("cannot build a certificate: {0}")]
    Build(String),
    #[error("cryptography failed: {0}")]
    Crypto(String),
    #[error("{what} {value:?} is not usable: {reason}")]
    BadUrl {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl BankError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        BankError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
