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
mod events;
pub mod icons;
pub mod notices;
pub mod owner;
pub mod renew;
pub(crate) mod shared;
mod view;

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};

use crate::Error;
use crate::config::Config;
use crate::drivers::Drivers;
use crate::prompt::desktop_prompt;
use desk::Desk;
use desktop::Action;
use events::say;
pub use shared::{Agent, RenewalState, RenewalStatus};

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
        // A blocking thread left idle ends after this (tokio's default is
        // 10 s): the threads of the start-up (the session bus's connect,
        // the first look) are gone before the agent settles, and an idle
        // agent has nothing left to wake.
        .thread_keep_alive(std::time::Duration::from_secs(2))
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
    // The browser extension's door (native messaging), beside the API.
    let channel = match (&api, api::channel::socket_path()) {
        (Some(_), Ok(path)) => match rt.block_on(api::channel::serve(agent.clone(), path)) {
            Ok(c) => {
                say!(
                    "certagent: browser extension channel on {}",
                    c.path().display()
                );
                Some(c)
            }
            Err(e) => {
                eprintln!("certagent: no channel for the browser extension: {e}");
                None
            }
        },
        (Some(_), Err(e)) => {
            eprintln!("certagent: no channel for the browser extension: {e}");
            None
        }
        (None, _) => None,
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
        // The tray's item is served by tasks of the agent's runtime.
        let started = {
            let _runtime = rt.enter();
            desk.desktop.start_tray(first)
        };
        match started {
            Ok(()) => {
                say!("certagent: tray icon registered");
                // Where notices come from the tray icon (Windows), the
                // first look's could not go out: they do now.
                let view = desk.check();
                desk.desktop.show(view);
            }
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
    if let Some(channel) = channel {
        rt.block_on(channel.shutdown());
    }
    Ok(())
}

async fn wait_for_signal() {
    crate::platform::terminated().await
}
