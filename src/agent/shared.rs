//! What every door of the agent shares: the configuration, the token's
//! owner, the dialogs, the state directory, and the progress of renewals
//! started through the page or the tray.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::dialogs::Dialogs;
use super::owner::Owner;
use crate::config::Config;
use crate::drivers::Drivers;
use crate::prompt::Prompt;

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

    pub(super) fn set_renewal(&self, status: RenewalStatus) {
        let mut list = self.renewals.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() >= MAX_RENEWALS_KEPT {
            list.remove(0);
        }
        list.push(status);
    }

    pub(super) fn update_renewal(&self, id: &str, update: impl FnOnce(&mut RenewalStatus)) {
        let mut list = self.renewals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = list.iter_mut().find(|s| s.id == id) {
            update(s);
        }
    }
}
