//! The running agent (`certagent run`). It watches the token and keeps the
//! tray icon and desktop notices current, serves the local API for the
//! bank's pages, and renews from the menu, a notice, or a page, always with
//! the user's consent and PIN in its own pinentry window.
//!
//! Its parts: [`owner`], the token's one owner behind every door, with the
//! lease that operations logging in hold one at a time; [`dialogs`], one
//! dialog at a time and a cool-down for pages that were refused;
//! [`consent`] (consent, PIN, login) and [`renew`] ("renew with consent"),
//! the doors the page and the tray share; [`api`], the local API (gate,
//! status, logon, renewals), which only maps their refusals to HTTP;
//! [`desk`], the main thread's loop, with [`view`] (what the tray shows)
//! and [`notices`]; [`desktop`], the platform's tray, notices and browser
//! behind one trait, drawing [`icons`].

pub mod api;
pub mod consent;
mod desk;
pub mod desktop;
pub mod dialogs;
pub mod icons;
pub mod notices;
pub mod owner;
pub mod renew;
mod view;

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::Error;
use crate::config::Config;
use crate::drivers::Drivers;
use crate::prompt::{Prompt, desktop_prompt};
use desk::Desk;
use desktop::Action;
use dialogs::Dialogs;
use owner::Owner;

/// Renewals whose progress is kept for `GET /v1/renewals/{id}`.
const MAX_RENEWALS_KEPT: usize = 16;

/// What every door of the agent shares.
pub struct Agent {
    pub config: Config,
    pub owner: Arc<Owner>,
    pub dialogs: Dialogs,
    /// The per-user state directory (journal, notices, the bank's CA).
    pub state_dir: Option<PathBuf>,
    renewals: Mutex<Vec<RenewalStatus>>,
}

/// Where a renewal started through the API or the tray is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RenewalState {
    Running,
    Done,
    Failed,
}

impl RenewalState {
    pub fn as_str(self) -> &'static str {
        match self {
            RenewalState::Running => "running",
            RenewalState::Done => "done",
            RenewalState::Failed => "failed",
        }
    }
}

/// A renewal started through the API or the tray.
#[derive(Debug, Clone, Serialize)]
pub struct RenewalStatus {
    pub id: String,
    pub state: RenewalState,
    pub step: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

impl Agent {
    pub fn new(config: Config, drivers: Drivers, prompt: Arc<dyn Prompt>) -> Agent {
        let state_dir = crate::config::state_dir()
            .map_err(|e| log::warn!("{e}; renewals from the agent are off"))
            .ok();
        let owner = Owner::new(&config, drivers, state_dir.clone());
        Agent {
            config,
            owner,
            dialogs: Dialogs::new(prompt),
            state_dir,
            renewals: Mutex::new(Vec::new()),
        }
    }

    /// The state of a renewal started through the API or the tray.
    pub fn renewal(&self, id: &str) -> Option<RenewalStatus> {
        self.renewals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    fn set_renewal(&self, status: RenewalStatus) {
        let mut list = self.renewals.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() >= MAX_RENEWALS_KEPT {
            list.remove(0);
        }
        list.push(status);
    }

    fn update_renewal(&self, id: &str, update: impl FnOnce(&mut RenewalStatus)) {
        let mut list = self.renewals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = list.iter_mut().find(|s| s.id == id) {
            update(s);
        }
    }
}

/// A line on stdout for whoever watches the agent (a log, a test); a closed
/// stdout must not take the agent down, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        // One line in the journal, whatever names it carries.
        let line = crate::text::clean(&format!($($arg)*), crate::text::MESSAGE_MAX);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }};
}
pub(crate) use say;

/// Run the agent until SIGTERM, Ctrl-C or "Quit".
pub fn run(config: Config, drivers: Drivers, no_tray: bool, unattended: bool) -> Result<(), Error> {
    let prompt = desktop_prompt(config.agent.pinentry.as_deref(), unattended);
    let bank_site = config
        .bank
        .as_ref()
        .and_then(|b| b.origins.first().cloned());
    let agent = Arc::new(Agent::new(config, drivers, prompt));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Io)?;
    let (actions, inbox) = mpsc::channel::<Action>();
    rt.block_on(agent.owner.learn_issuers());
    {
        let changed = actions.clone();
        agent.owner.start_watch(move |present| {
            let _ = changed.send(Action::TokenChanged(present));
        });
    }

    let api = if agent
        .config
        .bank
        .as_ref()
        .is_some_and(|b| !b.origins.is_empty())
    {
        let running = rt
            .block_on(api::serve(agent.clone()))
            .map_err(|e| Error::Usage(e.to_string()))?;
        say!("certagent: local API on http://{}", running.addr());
        Some(running)
    } else {
        eprintln!(
            "certagent: no [bank] origins configured; the local API for the bank's pages is off"
        );
        None
    };
    {
        let quit = actions.clone();
        rt.spawn(async move {
            wait_for_signal().await;
            let _ = quit.send(Action::Quit);
        });
    }

    let mut desk = Desk::new(agent.clone(), desktop::this_platform(actions.clone()));
    let first = desk.check();
    if !no_tray {
        // Without a desktop the agent still serves the pages and sends what
        // notices it can; the reason is logged, not fatal.
        match desk.desktop.start_tray(first) {
            Ok(()) => say!("certagent: tray icon registered"),
            Err(e) => eprintln!("certagent: {e}"),
        }
    }
    say!("certagent: ready");

    loop {
        match inbox.recv_timeout(desk.wait()) {
            Ok(Action::Quit) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(Action::Renew) => desk.renew(&rt),
            Ok(Action::ShowCertificate) => desk.show_certificate(),
            Ok(Action::OpenBankSite) => desk.open_site(bank_site.as_deref()),
            Ok(Action::TokenChanged(present)) => {
                say!(
                    "certagent: token {}",
                    if present { "inserted" } else { "removed" }
                );
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        let view = desk.check();
        desk.desktop.show(view);
    }
    drop(desk);
    if let Some(api) = api {
        rt.block_on(api.shutdown());
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
