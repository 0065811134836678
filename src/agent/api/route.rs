//! The API's requests, by method and path, for both doors a page has to
//! the agent: HTTP on loopback (`super::handle`, after the gate) and the
//! browser extension's channel (`super::channel`, after its own checks).
//! Both come here with an origin already allowed; the answer is a status
//! and a JSON body, which each door puts on its own wire.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::gate::{self, Failure};
use super::{logon, renewals, status};
use crate::agent::shared::Agent;

/// A request's body, still on the wire or already read.
pub(super) enum Payload {
    Http(Box<Request<Incoming>>),
    Json(Option<serde_json::Value>),
}

impl Payload {
    async fn json<T: DeserializeOwned>(self) -> Result<T, Failure> {
        match self {
            Payload::Http(req) => gate::read_json(*req).await,
            Payload::Json(Some(v)) => serde_json::from_value(v)
                .map_err(|e| Failure::new(400, "json", format!("malformed request: {e}"))),
            Payload::Json(None) => Err(Failure::new(400, "json", "the request has no body")),
        }
    }
}

/// A successful answer.
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

fn answer(status: StatusCode, body: &impl Serialize) -> Answer {
    Answer {
        status,
        body: serde_json::to_value(body).unwrap_or_default(),
    }
}

/// Serve `method path` for a page of `origin` (allowed already).
pub(super) async fn route(
    agent: &Arc<Agent>,
    origin: &str,
    method: &Method,
    path: &str,
    payload: Payload,
) -> Result<Answer, Failure> {
    match (method, path) {
        (&Method::GET, "/v1/status") => status::status(agent)
            .await
            .map(|b| answer(StatusCode::OK, &b)),
        (&Method::POST, "/v1/logon") => {
            let req = payload.json().await?;
            logon::logon(agent, origin, req)
                .await
                .map(|b| answer(StatusCode::OK, &b))
        }
        (&Method::POST, "/v1/renewals") => {
            let req = payload.json().await?;
            renewals::from_page(agent, origin, req)
                .await
                .map(|b| answer(StatusCode::ACCEPTED, &b))
        }
        (&Method::GET, p) if p.starts_with("/v1/renewals/") => {
            let id = p.get("/v1/renewals/".len()..).unwrap_or_default();
            agent
                .renewal(id)
                .map(|s| answer(StatusCode::OK, &s))
                .ok_or_else(|| Failure::new(404, "not-found", "no such renewal"))
        }
        (_, "/v1/status" | "/v1/logon" | "/v1/renewals") => Err(Failure::new(
            405,
            "method",
            format!("{method} is not allowed here"),
        )),
        _ => Err(Failure::new(404, "not-found", "no such endpoint")),
    }
}
