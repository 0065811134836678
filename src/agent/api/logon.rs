//! `POST /v1/logon`: an origin-bound signature, after the user's consent and
//! PIN in the agent's own window.
//!
//! The order is fixed: the request is checked; the page's cool-down; the
//! token's lease (409 while a renewal or another logon holds it); the one
//! dialog turn; consent; then the PIN, which the token checks (the lease
//! logs the token out before the login); then one signature over
//! SHA-256(origin) || SHA-256(challenge). Every guard is released when the
//! closure ends, on every path.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::gate::Failure;
use super::{parse_id, token_failure};
use crate::agent::consent::{Refusal, consent_and_login, on_blocking_thread};
use crate::agent::owner::Use;
use crate::agent::shared::Agent;
use crate::holdings::TokenCert;
use crate::policy::State;
use crate::prompt::short;
use crate::token::{PublicKeyAlg, SignScheme, TokenError};

/// The format tag of logon tokens.
pub const TOKEN_FORMAT: &str = "certagent-auth:1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogonRequest {
    challenge: String,
    id: Option<String>,
}

#[derive(Serialize)]
pub(super) struct LogonToken {
    format: &'static str,
    certificate: String,
    algorithm: &'static str,
    signature: String,
    origin: String,
}

/// Which bank certificate: the one named, else the single usable one.
pub(super) fn choose(
    certs: Vec<TokenCert>,
    id: Option<&[u8]>,
    usable: impl Fn(&TokenCert) -> bool,
) -> Result<TokenCert, Failure> {
    match id {
        Some(want) => certs
            .into_iter()
            .find(|c| c.id == want)
            .ok_or_else(|| Refusal::NoSuchCertificate.into()),
        None => {
            let mut usable: Vec<_> = certs.into_iter().filter(|c| usable(c)).collect();
            match usable.len() {
                1 => Ok(usable.remove(0)),
                0 => Err(Failure::new(
                    409,
                    "no-certificate",
                    "no usable bank certificate on the token",
                )),
                _ => Err(Failure::new(
                    400,
                    "ambiguous",
                    "several certificates are on the token; name one with id",
                )),
            }
        }
    }
}

pub(super) async fn logon(
    agent: &Arc<Agent>,
    origin: &str,
    req: LogonRequest,
) -> Result<LogonToken, Failure> {
    // Everything about the request is checked before the user is bothered.
    let challenge = URL_SAFE_NO_PAD
        .decode(req.challenge.trim_end_matches('='))
        .map_err(|_| Failure::new(400, "challenge", "the challenge is not base64url"))?;
    if !(32..=64).contains(&challenge.len()) {
        return Err(Failure::new(
            400,
            "challenge",
            "the challenge must be 32 to 64 bytes",
        ));
    }
    let id = parse_id(req.id.as_deref())?;
    if let Some(wait) = agent.dialogs.cooling_down(origin) {
        return Err(Refusal::CoolingDown(wait).into());
    }
    agent.owner.learn_issuers().await;
    let mut lease = agent.owner.lease(Use::Logon).map_err(Refusal::from)?;
    let turn = agent.dialogs.turn().map_err(Refusal::from)?;
    let a = agent.clone();
    let origin = origin.to_string();
    on_blocking_thread(move || {
        let mut look = lease.look().map_err(token_failure)?;
        let now = OffsetDateTime::now_utc();
        let policy = &a.config.policy;
        let usable = |c: &TokenCert| {
            matches!(
                policy
                    .assess(c.cert.not_before, c.cert.not_after, now)
                    .state,
                State::Valid | State::RenewalDue
            )
        };
        // The remembered certificates first; what they do not hold is read
        // again from the token (it may have changed since).
        let chosen = match choose(look.certs.bank.clone(), id.as_deref(), usable) {
            Ok(c) => c,
            Err(_) => {
                let info = look.info.clone();
                look = lease.fresh_look().map_err(token_failure)?;
                look.info = info;
                choose(look.certs.bank.clone(), id.as_deref(), usable)?
            }
        };
        let state = policy
            .assess(chosen.cert.not_before, chosen.cert.not_after, now)
            .state;
        if !matches!(state, State::Valid | State::RenewalDue) {
            return Err(Failure::new(
                409,
                "certificate",
                format!("the certificate is {state}; {}", state.advice()),
            ));
        }
        let lang = crate::i18n::Lang::current();
        let (origin_short, holder) = (short(&origin, 120), short(&chosen.cert.holder(), 200));
        let until = crate::i18n::date_in(lang, chosen.cert.not_after);
        let question = crate::i18n::tr_in(
            lang,
            "consent-logon",
            &[
                ("origin", crate::i18n::Arg::Str(&origin_short)),
                ("holder", crate::i18n::Arg::Str(&holder)),
                ("until", crate::i18n::Arg::Str(&until)),
            ],
        );
        let purpose = crate::i18n::tr_in(
            lang,
            "purpose-logon",
            &[("origin", crate::i18n::Arg::Str(&origin_short))],
        );
        let info = look.info;
        consent_and_login(
            &a,
            &turn,
            &mut lease,
            &info,
            &question,
            &purpose,
            Some(&origin),
            "the user declined the logon",
        )?;
        drop(turn);
        let token = lease.token().map_err(token_failure)?;
        let scheme = match chosen.cert.key {
            PublicKeyAlg::EcP256 => SignScheme::EcdsaP256Sha256,
            _ if token.supports(SignScheme::RsaPssSha256) => SignScheme::RsaPssSha256,
            _ => SignScheme::RsaPkcs1Sha256,
        };
        let mut message = Vec::with_capacity(64);
        message.extend_from_slice(&Sha256::digest(origin.as_bytes()));
        message.extend_from_slice(&Sha256::digest(&challenge));
        let signature = match token.sign(&chosen.id, scheme, &message) {
            Ok(s) => s,
            Err(e @ TokenError::KeyNotFound { .. }) => {
                // The token changed under the remembered view: look again next time.
                lease.changed_token();
                return Err(token_failure(e));
            }
            Err(e) => return Err(token_failure(e)),
        };
        Ok(LogonToken {
            format: TOKEN_FORMAT,
            certificate: STANDARD.encode(&chosen.cert.der),
            algorithm: scheme.jws_name(),
            signature: STANDARD.encode(signature),
            origin,
        })
    })
    .await
}
