//! The desktop, behind one small trait: the tray icon and its menu,
//! notices, opening a page. One implementation per platform:
//! [`freedesktop`] (Linux and the BSDs: StatusNotifierItem and
//! org.freedesktop.Notifications over D-Bus, `xdg-open`), [`windows`]
//! (the notification area, its balloons, `ShellExecuteW`), and for any
//! other platform [`none`], which says there is no desktop instead of
//! pretending. The desk ([`super::desk`]) sees the desktop only through
//! [`Desktop`]; what it shows is a [`View`].

use std::sync::mpsc::Sender;

use super::icons::Badge;

#[cfg(all(unix, not(target_os = "macos")))]
mod freedesktop;
#[cfg(not(any(windows, all(unix, not(target_os = "macos")))))]
mod none;
#[cfg(windows)]
mod windows;

/// The tray's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub badge: Badge,
    /// The first (disabled) menu line: the certificate at a glance.
    pub certificate_line: String,
    pub tooltip: String,
    /// Whether "Renew certificate…" is enabled.
    pub can_renew: bool,
}

/// What the user asked for from the menu or a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Renew,
    ShowCertificate,
    OpenBankSite,
    Quit,
    /// The token watch saw the token come (`true`) or go.
    TokenChanged(bool),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot show the tray icon ({0}); is a desktop session running? Use `certagent run --no-tray` without one"
)]
pub struct TrayError(pub String);

/// What the agent asks of the desktop.
pub trait Desktop {
    /// Put the tray icon up, showing `first`; its menu's choices come back
    /// as [`Action`]s. Without it the agent still serves pages and notices.
    fn start_tray(&mut self, first: View) -> Result<(), TrayError>;
    /// Show `view` in the tray (nothing without a tray).
    fn show(&self, view: View);
    /// A desktop notice; with `renew`, it offers "Renew now", which comes
    /// back as [`Action::Renew`]. Returns once the desktop has it.
    fn notify(&self, summary: &str, body: &str, renew: bool) -> Result<(), String>;
    /// Open a web page in the user's browser.
    fn open_page(&self, url: &str) -> Result<(), String>;
}

/// This platform's desktop; the user's choices come back on `actions`.
pub fn this_platform(actions: Sender<Action>) -> Box<dyn Desktop> {
    #[cfg(all(unix, not(target_os = "macos")))]
    return Box::new(freedesktop::FreeDesktop::new(actions));
    #[cfg(windows)]
    return Box::new(windows::WindowsDesktop::new(actions));
    #[cfg(not(any(windows, all(unix, not(target_os = "macos")))))]
    return Box::new(none::NoDesktop::new(actions));
}

/// The most lines of a notice's body.
const NOTICE_LINES: usize = 12;

/// A notice's summary and body as shown: holders' names and the bank's
/// words cleaned, each line of the body on its own, a bounded number of
/// lines.
pub fn notice_text(summary: &str, body: &str) -> (String, String) {
    let summary = crate::text::clean(summary, crate::text::NAME_MAX);
    let body = body
        .split('\n')
        .take(NOTICE_LINES)
        .map(|l| crate::text::clean(l, crate::text::MESSAGE_MAX))
        .collect::<Vec<_>>()
        .join("\n");
    (summary, body)
}
