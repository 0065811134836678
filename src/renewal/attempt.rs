//! One attempt as a door hands it over ([`Attempt`], after the
//! pre-check, the consent and the login): started (its journal written)
//! or resumed, the bank's CA and the TLS credential at hand, then the
//! workflow ([`super::workflow`]) as far as it goes on the token as read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;
use time::OffsetDateTime;

use super::error::RenewalError;
use super::journal::{Entry, Journal, Kind, b64};
use super::plan::{DEFAULT_LABEL, Plan, Request};
use super::retired;
use super::step::{Progress, Seen, Step};
use super::workflow::{CardLogin, Pass, Workflow};
use crate::bank_ca::{bank_ca_certs, est_client, known_ca_certs, read_pinned};
use crate::cert::rfc3339;
use crate::config::BankConfig;
use crate::holdings::BankIssuers;
use crate::i18n::{Arg, tr};
use crate::tls::TokenCredential;
use crate::token::{KeyKind, Token, block_in_place};

/// What an attempt works with. The caller has done the pre-check, the
/// consent and the login.
pub struct Attempt<'a> {
    pub token_serial: String,
    pub bank: &'a BankConfig,
    pub key: KeyKind,
    pub state_dir: &'a Path,
    /// The one-time password, for enrolments.
    pub otp: Option<SecretString>,
    /// The PINs, on a card with fixed key slots (see [`CardLogin`]).
    pub card: Option<&'a CardLogin>,
    pub progress: &'a dyn Progress,
}

/// The file whose time says when certagent last changed a token (a
/// renewal or enrolment, in any process): a running agent drops what it
/// remembers of the token when it is newer than its last look.
pub fn changed_stamp(state_dir: &Path) -> PathBuf {
    state_dir.join("token-changed")
}

/// Run a planned attempt as far as it goes on `token` as it was read:
/// start a new one (journalled) or resume the interrupted one. The doors
/// call [`run`], which reads a card again when this asks it to.
pub(super) async fn execute(
    token: &Arc<Token>,
    r: &Attempt<'_>,
    plan: Plan,
) -> Result<Pass, RenewalError> {
    let state_dir = r.state_dir.to_path_buf();
    let result = execute_inner(token, r, plan).await;
    // Whatever happened, the token may have changed: tell a running agent.
    if let Err(e) = std::fs::write(changed_stamp(&state_dir), b"") {
        log::debug!("cannot mark the token changed: {e}");
    }
    result
}

async fn execute_inner(
    token: &Arc<Token>,
    r: &Attempt<'_>,
    plan: Plan,
) -> Result<Pass, RenewalError> {
    let (journal, started, label) = match plan {
        Plan::Resume(j) => {
            let j = *j;
            if !j.continued {
                r.progress.step(
                    j.entry.step,
                    &tr(
                        "step-resuming",
                        &[("step", Arg::Str(j.entry.step.as_str()))],
                    ),
                );
            }
            let label = label_of(token, j.old_id().as_deref());
            (j, false, label)
        }
        Plan::Start(req) => (
            start(r.state_dir, &r.token_serial, &req, r.key)?,
            true,
            req.label.clone(),
        ),
    };
    let needs_bank = journal.entry.step <= Step::CsrReady;
    // The issuing CA is needed to check an answer, and again on resume to
    // check the journalled certificate before it is installed.
    let fetching = || {
        r.progress
            .step(Step::Started, &tr("step-fetching-cacerts", &[]))
    };
    let known = if needs_bank {
        None
    } else {
        known_ca_certs(r.bank, r.state_dir)
    };
    let ca_certs = match known {
        Some(c) => c,
        None => bank_ca_certs(r.bank, r.state_dir, &fetching).await?,
    };
    let credential = match (&journal.entry.kind, journal.old_id(), journal.old_cert()?) {
        (Kind::Renew, Some(id), Some(cert)) if needs_bank => Some(
            TokenCredential::new(token.clone(), &id, &cert)
                .map_err(|e| RenewalError::Other(e.to_string()))?,
        ),
        (Kind::Renew, _, _) if needs_bank => {
            return Err(RenewalError::Other(
                "the journal of this renewal lacks the certificate being renewed".into(),
            ));
        }
        _ => None,
    };
    let wf = Workflow {
        token: token.clone(),
        est: est_client(r.bank, credential)?,
        ca_certs,
        otp: r.otp.as_ref(),
        card: r.card,
        state_dir: r.state_dir.to_path_buf(),
        progress: r.progress,
    };
    let seen = Seen {
        started,
        ..Default::default()
    };
    wf.run(journal, &label, seen).await
}

/// The label of the certificate being replaced, else the default.
fn label_of(token: &Token, old_id: Option<&[u8]>) -> String {
    old_id
        .and_then(|id| {
            block_in_place(|| token.certificates())
                .ok()?
                .into_iter()
                .find(|c| c.id == id && !c.label.is_empty())
                .map(|c| c.label)
        })
        .unwrap_or_else(|| DEFAULT_LABEL.to_string())
}

/// Start a new attempt: write its journal (refused if one is pending).
fn start(
    state_dir: &Path,
    token_serial: &str,
    req: &Request,
    key: KeyKind,
) -> Result<Journal, RenewalError> {
    let now = rfc3339(OffsetDateTime::now_utc());
    let mut nonce = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| RenewalError::Other("no system randomness".into()))?;
    Journal::create(
        state_dir,
        Entry {
            version: 1,
            kind: req.kind.clone(),
            token_serial: token_serial.to_string(),
            old_id: req.old.as_ref().map(|o| hex::encode(&o.id)),
            old_cert: req.old.as_ref().map(|o| b64(&o.cert.der)),
            key,
            candidate_label: format!("certagent candidate {}", hex::encode(nonce)),
            candidate_id: req.slot.as_ref().map(hex::encode),
            fixed_slot: req.slot.is_some(),
            old_removal_tried: false,
            replaced_spki: req.replaces.as_deref().map(b64),
            candidate_spki: None,
            csr: None,
            issued: None,
            step: Step::Started,
            started: now.clone(),
            updated: now,
        },
    )
}

/// What tells the bank's certificates apart, without the network: the
/// bank's CA as known ([`crate::bank_ca`]) and the certificates a renewal
/// replaced ([`retired`]).
pub fn known_issuers(bank: Option<&BankConfig>, state_dir: Option<&Path>) -> BankIssuers {
    let Some(bank) = bank else {
        return BankIssuers::default();
    };
    BankIssuers {
        ca_certs: state_dir
            .and_then(|d| known_ca_certs(bank, d))
            .or_else(|| bank.ca_certs.as_deref().and_then(|p| read_pinned(p).ok()))
            .unwrap_or_default(),
        issuer_name: bank.issuer.clone(),
        any: false,
        replaced: state_dir
            .map(retired::replaced_certificates)
            .unwrap_or_default(),
    }
}
