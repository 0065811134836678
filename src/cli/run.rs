//! `certagent run`: the agent. For now the local API for the bank's pages;
//! the tray and desktop notices come with the desktop agent.

use std::sync::Arc;

use super::App;
use crate::Error;
use crate::api::{self, Agent};
use crate::prompt::{PinentryPrompt, Prompt};

pub(super) fn run(app: App, no_tray: bool) -> Result<(), Error> {
    if !no_tray {
        log::warn!("this build has no tray icon yet; serving the local API only");
    }
    // Consent and PIN always go through the agent's own pinentry window.
    let prompt: Arc<dyn Prompt> =
        Arc::new(PinentryPrompt::find(app.config.agent.pinentry.as_deref())?);
    let journal_dir = crate::config::state_dir();
    if std::fs::read_dir(&journal_dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("renewal-"))
        })
        .unwrap_or(false)
    {
        eprintln!("An interrupted renewal is pending; run `certagent renew` to finish it.");
    }
    let agent = Arc::new(Agent::new(app.config, app.drivers, prompt));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Io)?;
    rt.block_on(async move {
        let running = api::serve(agent)
            .await
            .map_err(|e| Error::Usage(e.to_string()))?;
        println!("certagent: local API on http://{}", running.addr());
        wait_for_signal().await;
        running.shutdown().await;
        Ok(())
    })
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
