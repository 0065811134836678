//! The renewal (and enrolment) workflow, journalled step by step, and the
//! one entry point every door uses: the CLI's `renew` and `enroll`, the
//! page's `/v1/renewals` and the tray all call [`plan_renewal`] (or
//! [`plan_enrollment`]) and then [`run`], so an interrupted attempt is
//! resumed from wherever the user comes back, never overwritten.
//!
//! A new key is a *candidate* until its certificate is on the token and
//! proven: the old certificate and key are removed only after the new
//! certificate has been written, read back and test-signed. Every step is
//! written to the journal *before* it acts, so a crash, a kill, a pulled
//! token or a lost network at any point resumes on the next run. What each
//! step does and where a run resumes from it is one table, [`step::TABLE`].
//!
//! Resume trusts nothing it does not check: the issued certificate is
//! verified again (key, subject, chain, dates) before it is written; the old
//! id is deleted only while it still holds the journal's old certificate and
//! key; a candidate is removed only if its public key is the journal's.
//! A request the bank refuses, or an answer that fails verification, ends
//! the attempt: the candidate key is removed and the token is as before.
//!
//! The files: [`plan`] (the pre-check), [`step`] (the table), [`workflow`]
//! (a handler per step) and [`card`] (the steps of a card with fixed key
//! slots), [`run`] (the one loop every door runs, reading a card again),
//! [`journal`], [`retired`] (keys left on a card), [`verify`] (the bank's answer).

mod card;
mod journal;
mod plan;
pub mod retired;
mod run;
pub mod step;
mod verify;
mod workflow;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use time::OffsetDateTime;

use crate::bank_ca::{BankCaError, bank_ca_certs, est_client, known_ca_certs, read_pinned};
use crate::cert::rfc3339;
use crate::config::BankConfig;
use crate::est::EstError;
use crate::holdings::BankIssuers;
use crate::i18n::{Arg, tr};
use crate::tls::TokenCredential;
use crate::token::{KeyKind, Token, TokenError, block_in_place};
use cryptoki::types::AuthPin;

use journal::b64;
pub use journal::{Entry, Journal, Kind};
pub use plan::{
    Plan, Request, check_state_dir, check_token, choose_slot, plan_enrollment, plan_renewal,
};
pub use run::{Ended, Reopen, run};
pub use step::Step;
pub use verify::verify_issued;
use workflow::{Pass, Workflow};

/// The longest certagent keeps resending a request the bank answered with 202.
pub const MAX_PENDING_WAIT: Duration = Duration::from_secs(300);
/// The label of a bank certificate written by certagent when the old one had none.
pub const DEFAULT_LABEL: &str = "bank certificate";

#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Est(#[from] EstError),
    #[error("the bank's answer was rejected, and the token is unchanged: {0}")]
    BadAnswer(String),
    #[error("cannot build the certificate request: {0}")]
    Csr(String),
    #[error("the renewal journal {path}: {reason}")]
    Journal { path: PathBuf, reason: String },
    #[error(
        "the bank has not issued the certificate after {0:?}; run the same command later to collect it (the same request is sent again)"
    )]
    StillPending(Duration),
    /// Not now, but later it may be (not due yet, another attempt
    /// pending, the bank's CA not known yet): nothing was done.
    #[error("{0}")]
    NotNow(String),
    /// Not by this door, now or later (expired: enrol instead; lapsed;
    /// not the bank's; a card certagent cannot generate on; a full card;
    /// a choice to make): nothing was done.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
    /// The token (a card, a USB token) went away while the attempt ran:
    /// its journal stays, and the same command resumes it.
    #[error(
        "the {what} was removed during the renewal (at step {step}); insert it and run `{again}` again: the renewal resumes where it stopped"
    )]
    Removed {
        what: &'static str,
        step: String,
        again: String,
    },
    /// The card still did not show what was written after being read
    /// again several times ([`run`]); the journal stays.
    #[error(
        "the card must be read again before the renewal can go on; run the same command again to continue"
    )]
    CardNotReadAgain,
    /// The bank's CA, or the connection to the bank, is not at hand.
    #[error("{0}")]
    BankCa(String),
}

/// The PINs a renewal on a card with fixed key slots uses as it goes: the
/// user PIN for the card's other token, the admin PIN for key generation
/// and certificate writes. Asked once before the attempt, checked by the
/// card at each login, never retried on a refusal, and dropped (zeroized)
/// with the attempt. `None`: the reader's PIN pad.
pub struct CardLogin {
    pub user: Option<AuthPin>,
    pub admin: Option<AuthPin>,
}

/// What the workflow tells its caller as it goes.
pub trait Progress: Sync {
    fn step(&self, step: Step, message: &str);
}

impl<F: Fn(Step, &str) + Sync> Progress for F {
    fn step(&self, step: Step, message: &str) {
        self(step, message)
    }
}

impl From<BankCaError> for RenewalError {
    fn from(e: BankCaError) -> RenewalError {
        match e {
            BankCaError::Est(e) => RenewalError::Est(e),
            BankCaError::Config(m) => RenewalError::BankCa(m),
        }
    }
}

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
async fn execute(token: &Arc<Token>, r: &Attempt<'_>, plan: Plan) -> Result<Pass, RenewalError> {
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
    let seen = step::Seen {
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
