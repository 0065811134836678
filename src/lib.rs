//! certagent keeps internet-banking client certificates on PKCS#11 tokens
//! alive: it watches them, warns in time and renews them, with every key
//! generated and used on the token.
//!
//! The modules follow the story of a certificate:
//! [`config`] and [`drivers`] say which token; [`token`] is the only door to
//! it; [`cert`] reads what is on it; [`policy`] judges where each certificate
//! stands; [`csr`] asks for a new one, signed on the token; [`prompt`] asks
//! the person; [`cli`] ties them into commands.

pub mod api;
pub mod cert;
pub mod cli;
pub mod config;
pub mod csr;
pub mod desktop;
pub mod drivers;
pub mod error;
pub mod est;
pub mod notices;
pub mod pkcs7;
pub mod policy;
pub mod prompt;
pub mod renewal;
pub mod tls;
pub mod token;

pub use error::Error;
