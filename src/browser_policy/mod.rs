//! Managed browser policies that let the bank's web origins (`[bank] origins`)
//! call the agent on loopback without a Local Network Access prompt.
//!
//! Chromium-based browsers (Chromium, Google Chrome, Microsoft Edge, from
//! Chrome 142 on) ask the user before a public page may fetch a loopback
//! address; the managed policy `LocalNetworkAccessAllowedForUrls` lifts that
//! for the listed origins. Firefox (ESR 153 too) asks likewise ("wants to
//! access other apps and services on this device"); its preference
//! `network.lna.skip-domains` (set by the enterprise policy
//! `LocalNetworkAccess` → `SkipDomains`) lifts it for the listed hosts.
//!
//! This module makes the texts (JSON policy files for Linux, a `.reg` file
//! for Windows, a configuration profile for macOS, a preference file for
//! Debian's Firefox ESR) and installs or removes the Linux files. What it
//! installs it records in [`RECORD`], so that `remove` takes away exactly
//! those files and the directories it created, and nothing else.
//!
//! The files are written on every install for all the browsers, whether or
//! not that browser is installed yet: a browser installed later then finds
//! its policy, and a file under another browser's directory is inert.
//!
//! One concept a file: `origins.rs` checks the bank's origins; `texts.rs`
//! says what each browser's policy says; `install.rs` is the seam an
//! installer fits (the [`Installer`] trait, and [`installer`], which picks
//! this platform's), with one file per platform under `install/`: the
//! `/etc` files on Unix (`linux.rs`), a refusal elsewhere
//! (`unavailable.rs`).

use std::path::PathBuf;

mod install;
mod origins;
mod texts;

pub use install::{
    FileReport, FileStatus, InstallReport, Installer, RemoveReport, Unavailable, installer,
};
#[cfg(unix)]
pub use install::{Root, install, remove};
pub use origins::Origins;
pub use texts::{
    TARGETS, Target, chromium_json, content, firefox_policies_json, firefox_prefs,
    macos_mobileconfig, windows_reg,
};

/// Redirects the root of every path `install` and `remove` touch (and skips
/// the root check). For the project's tests only, which install into a
/// temporary directory; never set it on a real machine. Ignored when
/// certagent runs as root: the real install is root's, and a variable
/// left in (or passed into) a root environment must not turn
/// `sudo certagent browser-policy --install` into writing root-owned files
/// wherever it names.
pub const ROOT_ENV: &str = "CERTAGENT_POLICY_ROOT";

/// The Chromium policy (Chromium, Chrome, Edge; all platforms).
pub const CHROMIUM_POLICY: &str = "LocalNetworkAccessAllowedForUrls";

/// Firefox's preference: comma-separated host names whose pages skip the
/// Local Network Access checks.
pub const FIREFOX_PREF: &str = "network.lna.skip-domains";

/// Where `install` records what it wrote and which directories it created.
pub const RECORD: &str = "/var/lib/certagent/browser-policy.json";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "{0} has no [bank] origins: browser-policy has nothing to allow (add origins = [\"https://ib.bank.example\"] under [bank])"
    )]
    NoOrigins(String),
    #[error("bank.origins: {origin:?}: {reason}")]
    BadOrigin { origin: String, reason: String },
    #[error("browser-policy --{0} writes under /etc and needs root: run it with sudo")]
    NeedsRoot(&'static str),
    #[error(
        "browser-policy --{0} writes under HKLM\\SOFTWARE\\Policies and needs administrator rights: run it from a prompt opened with \"Run as administrator\""
    )]
    NeedsAdmin(&'static str),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Record { path: PathBuf, message: String },
    #[error(
        "browser-policy --{action} is not available on this platform ({os}): print the policies with `certagent browser-policy` and deploy them with the platform's own tools"
    )]
    NotAvailable {
        action: &'static str,
        os: &'static str,
    },
}

/// Valid origins from literals, for the unit tests of every file here.
#[cfg(test)]
fn test_origins(list: &[&str]) -> Origins {
    let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    Origins::new(&list, "test").expect("valid origins")
}
