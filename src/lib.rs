//! certagent keeps internet-banking client certificates on PKCS#11 tokens
//! alive: it watches them, warns in time and renews them, with every key
//! generated and used on the token.
//!
//! The modules follow the story of a certificate:
//! [`config`] and [`drivers`] say which token; [`token`] is the only door to
//! it; [`cert`] reads what is on it; [`policy`] judges where each certificate
//! stands; [`csr`] asks for a new one, signed on the token; [`renewal`]
//! runs the journalled renewal every door shares; [`prompt`] asks the
//! person; [`agent`] is the running agent (the token's one owner, the local
//! API, the tray); [`cli`] parses commands, asks on the terminal and prints.

#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod agent;
pub mod alg;
pub mod bank_ca;
pub mod browser_policy;
pub mod cert;
pub mod cli;
pub mod config;
pub mod csr;
pub mod drivers;
pub mod error;
pub mod est;
pub mod holdings;
pub mod i18n;
pub mod native_messaging;
pub mod pkcs7;
pub mod platform;
pub mod policy;
pub mod prompt;
pub mod rawcert;
pub mod renewal;
pub mod state_file;
pub mod text;
pub mod tls;
pub mod token;

pub use error::Error;
