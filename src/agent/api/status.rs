//! `GET /v1/status`: the agent's version, whether the token is present, and
//! the bank's certificates on it (no login, no prompt). Certificates of other
//! issuers are never shown to a page.

use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;

use super::gate::Failure;
use super::token_failure;
use crate::agent::shared::Agent;
use crate::cert::StatusEntry;
use crate::token::{TokenError, TokenInfo};

#[derive(Serialize)]
pub(super) struct StatusBody {
    version: &'static str,
    token_present: bool,
    token: Option<TokenInfo>,
    certificates: Vec<StatusEntry>,
    /// An interrupted renewal waits on this token (resumed by the next
    /// renewal from the page or the tray).
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted_renewal: Option<&'static str>,
}

pub(super) async fn status(agent: &Arc<Agent>) -> Result<StatusBody, Failure> {
    let version = env!("CARGO_PKG_VERSION");
    agent.owner.learn_issuers().await;
    match agent.owner.snapshot().await {
        Ok(look) => {
            let now = OffsetDateTime::now_utc();
            let policy = &agent.config.policy;
            Ok(StatusBody {
                version,
                token_present: true,
                certificates: look
                    .certs
                    .bank
                    .iter()
                    .map(|c| StatusEntry::new(&c.id, &c.cert, policy, now))
                    .collect(),
                token: Some(look.info),
                interrupted_renewal: look.pending.map(|s| s.as_str()),
            })
        }
        Err(TokenError::NotFound { .. } | TokenError::Removed { .. }) => Ok(StatusBody {
            version,
            token_present: false,
            token: None,
            certificates: Vec::new(),
            interrupted_renewal: None,
        }),
        Err(e) => Err(token_failure(e)),
    }
}
