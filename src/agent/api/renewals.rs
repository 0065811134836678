//! The page's door to renewals: `POST /v1/renewals` starts (or resumes)
//! one through [`crate::agent::renew`], `GET /v1/renewals/{id}` reports
//! its progress. Refusals become HTTP answers here ([`super::failure`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::gate::Failure;
use super::parse_id;
use crate::agent::renew::{Requester, start};
use crate::agent::shared::Agent;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RenewalRequest {
    id: Option<String>,
}

#[derive(Serialize)]
pub struct RenewalStarted {
    pub id: String,
}

pub(super) async fn from_page(
    agent: &Arc<Agent>,
    origin: &str,
    req: RenewalRequest,
) -> Result<RenewalStarted, Failure> {
    let id = parse_id(req.id.as_deref())?;
    let id = start(agent, Requester::Page(origin), id).await?;
    Ok(RenewalStarted { id })
}
