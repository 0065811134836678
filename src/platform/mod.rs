//! The few things the operating system does differently for certagent's
//! files and process, one file per platform ([`unix`] for Linux and the
//! BSDs, [`windows`]); everything else in certagent is the same code
//! everywhere. The larger seams have their own: the caller check
//! (`agent::api::peer`), the desktop (`agent::desktop`), the browser-policy
//! installer (`browser_policy::install`), the time zone and language
//! (`i18n`).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
