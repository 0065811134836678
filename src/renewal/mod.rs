//! The renewal (and enrolment) workflow, journalled step by step, and the
//! one entry point every door uses: the CLI's `renew` and `enroll`, the
//! page's `/v1/renewals` and the tray all call [`plan_renewal`] (or
//! [`plan_enrollment`]) and then [`execute`], so an interrupted attempt is
//! resumed from wherever the user comes back, never overwritten.
//!
//! A new key is a *candidate* until its certificate is on the token and
//! proven: the old certificate and key are removed only after the new
//! certificate has been written, read back and test-signed. Every step is
//! written to the journal *before* it acts, so a crash, a kill, a pulled
//! token or a lost network at any point resumes on the next run:
//!
//! | journal step    | after a crash, the next run...                                   |
//! |-----------------|------------------------------------------------------------------|
//! | `generating-key`| adopts the key pair with the candidate label if one exists, else generates |
//! | `key-ready`     | builds the CSR with the journalled candidate key                  |
//! | `csr-ready`     | sends the journalled CSR again, byte for byte (same key)          |
//! | `issued`        | checks the journalled certificate again and installs it           |
//! | `installing`    | writes the certificate unless it is already on the token          |
//! | `installed`     | test-signs with the new key                                       |
//! | `retiring-old`  | removes the old certificate and key, if they are still the journal's |
//!
//! Resume trusts nothing it does not check: the issued certificate is
//! verified again (key, subject, chain, dates) before it is written; the old
//! id is deleted only while it still holds the journal's old certificate and
//! key; a candidate is removed only if its public key is the journal's.
//! A request the bank refuses, or an answer that fails verification, ends
//! the attempt: the candidate key is removed and the token is as before.

mod journal;
pub mod retired;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::i18n::{Arg, Lang, datetime_in, tr, tr_in};

use crate::cert::{BankIssuers, Cert, TokenCert, TokenCerts, rfc3339};
use crate::config::BankConfig;
use crate::est::{EstAnswer, EstClient, EstError};
use crate::policy::{Policy, State};
use crate::tls::{TokenCredential, client_config, load_roots};
use crate::token::{GeneratedKey, KeyKind, Token, TokenError, blocking};
use cryptoki::types::AuthPin;

pub use journal::{Entry, Journal, Kind};
use journal::{b64, crash_point, unb64};
pub use verify::verify_issued;

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
    /// The pre-check says no (not due, expired, lapsed, nothing to renew,
    /// another kind of attempt pending): nothing was done.
    #[error("{0}")]
    NotNow(String),
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
    /// A key was generated on a card that shows it only once read again:
    /// the caller re-initialises the module and resumes from the journal.
    #[error(
        "the card must be read again before the renewal can go on; run the same command again to continue"
    )]
    ReadCardAgain,
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

/// Where a renewal is. Serialised in the journal and reported to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Started,
    GeneratingKey,
    KeyReady,
    CsrReady,
    Issued,
    Installing,
    Installed,
    RetiringOld,
    Done,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Started => "started",
            Step::GeneratingKey => "generating-key",
            Step::KeyReady => "key-ready",
            Step::CsrReady => "csr-ready",
            Step::Issued => "issued",
            Step::Installing => "installing",
            Step::Installed => "installed",
            Step::RetiringOld => "retiring-old",
            Step::Done => "done",
        }
    }
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

/// What a new attempt needs to know.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: Kind,
    /// The certificate being replaced.
    pub old: Option<TokenCert>,
    /// The card's key slot for the new key, on a card whose slots are
    /// fixed (see [`choose_slot`]).
    pub slot: Option<Vec<u8>>,
    /// The retired key the new key replaces in that slot, if it is not free.
    pub replaces: Option<Vec<u8>>,
    /// Label for the new certificate and key.
    pub label: String,
}

/// What a renewal or enrolment will do, decided before the user is asked
/// anything (the pre-check).
#[derive(Debug)]
pub enum Plan {
    /// The interrupted attempt on this token, resumed where it stopped.
    Resume(Box<Journal>),
    /// A new attempt.
    Start(Box<Request>),
}

impl Plan {
    /// One sentence for the consent question and the terminal, in the
    /// user's language.
    pub fn describe(&self) -> String {
        self.describe_in(Lang::current())
    }

    /// [`Plan::describe`] in `lang`.
    pub fn describe_in(&self, lang: Lang) -> String {
        match self {
            Plan::Resume(j) => {
                let of = j
                    .old_cert()
                    .ok()
                    .flatten()
                    .map(|c| tr_in(lang, "plan-of", &[("who", Arg::Str(&c.holder()))]))
                    .unwrap_or_default();
                // The journal's instant, as people read it when it parses.
                let started = OffsetDateTime::parse(&j.entry.started, &Rfc3339).map_or_else(
                    |_| crate::text::clean(&j.entry.started, 64),
                    |t| datetime_in(lang, t),
                );
                let user = match &j.entry.kind {
                    Kind::Enroll { user } => crate::text::clean(user, crate::text::NAME_MAX),
                    Kind::Renew => String::new(),
                };
                let mut args = vec![
                    ("of", Arg::Str(&of)),
                    ("step", Arg::Str(j.entry.step.as_str())),
                    ("started", Arg::Str(&started)),
                ];
                match &j.entry.kind {
                    Kind::Renew => tr_in(lang, "plan-resume-renewal", &args),
                    Kind::Enroll { .. } => {
                        args.push(("user", Arg::Str(&user)));
                        tr_in(lang, "plan-resume-enrolment", &args)
                    }
                }
            }
            Plan::Start(r) => match (&r.kind, &r.old) {
                (Kind::Renew, Some(o)) => {
                    let (who, id, date) = (
                        o.cert.holder(),
                        hex::encode(&o.id),
                        datetime_in(lang, o.cert.not_after),
                    );
                    tr_in(
                        lang,
                        "plan-renew",
                        &[
                            ("who", Arg::Str(&who)),
                            ("id", Arg::Str(&id)),
                            ("date", Arg::Str(&date)),
                        ],
                    )
                }
                (Kind::Enroll { user }, Some(o)) => {
                    let (who, id) = (o.cert.holder(), hex::encode(&o.id));
                    tr_in(
                        lang,
                        "plan-enroll-replace",
                        &[
                            ("user", Arg::Str(user)),
                            ("who", Arg::Str(&who)),
                            ("id", Arg::Str(&id)),
                        ],
                    )
                }
                (Kind::Enroll { user }, None) => {
                    tr_in(lang, "plan-enroll-first", &[("user", Arg::Str(user))])
                }
                (Kind::Renew, None) => tr_in(lang, "plan-renew-any", &[]),
            },
        }
    }

    pub fn kind(&self) -> &Kind {
        match self {
            Plan::Resume(j) => &j.entry.kind,
            Plan::Start(r) => &r.kind,
        }
    }
}

/// The label to give the new certificate: the replaced one's, else the default.
fn label_for(old: Option<&TokenCert>) -> String {
    old.map(|o| o.label.clone())
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| DEFAULT_LABEL.to_string())
}

/// Whether certagent can generate the new key on `token`. On a card
/// whose keys live in slots the card fixes it can only where the driver
/// profile describes the family (`[[cards]]`: OpenPGP cards). Asked before
/// anything else, so nothing is asked and nothing changes.
pub fn check_token(token: &Token) -> Result<(), RenewalError> {
    if !token.fixed_key_slots() {
        return Ok(());
    }
    let info = token.info()?;
    if token.card_family().is_none() {
        return Err(RenewalError::NotNow(format!(
            "the token {:?} ({}) keeps its keys in slots the card fixes, as PIV cards do, and certagent cannot generate the new key into them; nothing was changed on the token. Renew with the card's own tool or ask your bank; logon with the current certificate keeps working",
            info.label, info.model
        )));
    }
    Ok(())
}

/// On a card with fixed key slots, choose the slot for the new key: the
/// first of the family's signing slots that holds nothing (no key, no
/// certificate) and is not the current key's; else the slot the module
/// overwrites (`overwrite_without_id`) if it holds a key certagent retired
/// there itself and no certificate. certagent never generates over any
/// other key: the card's owner may use it for something else (OpenPGP:
/// e-mail signatures, SSH).
pub fn choose_slot(
    token: &Token,
    plan: &mut Plan,
    state_dir: &Path,
    bank: &BankIssuers,
) -> Result<(), RenewalError> {
    let Some(family) = token.card_family() else {
        return Ok(());
    };
    let Plan::Start(req) = plan else {
        return Ok(());
    };
    let certs = blocking(|| token.certificates())?;
    let serial = token.info()?.serial;
    let current = req.old.as_ref().map(|o| o.id.clone());
    let overwritable = family
        .overwrite_without_id
        .as_deref()
        .and_then(|h| hex::decode(h).ok());
    let mut taken = Vec::new();
    let mut reusable = None;
    for id in family.slot_ids() {
        if current.as_deref() == Some(&id[..]) {
            continue;
        }
        let key = blocking(|| token.public_key(&id))?;
        let certified = certs.iter().any(|c| c.id == id);
        match key {
            None if !certified => {
                req.slot = Some(id);
                return Ok(());
            }
            Some(spki)
                if !certified
                    && overwritable.as_deref() == Some(&id[..])
                    && retired::is_retired(state_dir, &serial, &id, &spki, bank) =>
            {
                reusable = Some((id.clone(), spki));
            }
            _ => {}
        }
        // Why the slot is taken, in the words the renewal used when it
        // left the key there.
        let replaced = certs.iter().any(|c| {
            use sha2::Digest;
            c.id == id
                && bank
                    .replaced
                    .contains(&hex::encode(sha2::Sha256::digest(&c.der)))
        });
        taken.push(if replaced {
            format!(
                "slot {} holds the retired key of the bank certificate certagent replaced, which the card cannot remove",
                hex::encode(&id)
            )
        } else {
            format!(
                "slot {} holds a key certagent did not put there",
                hex::encode(&id)
            )
        });
    }
    if let Some((id, spki)) = reusable {
        req.slot = Some(id);
        req.replaces = Some(spki);
        return Ok(());
    }
    Err(RenewalError::NotNow(format!(
        "the {} has no free key slot for the new key: {}; certagent never generates over such a key (the card cannot delete keys either). Free a slot with the card's own tool if its key is no longer used (for an OpenPGP card: openpgp-tool --delete-key) and renew again, or ask your bank; nothing was changed",
        family.name,
        taken.join("; ")
    )))
}

/// After a card was read again ([`RenewalError::ReadCardAgain`]): the
/// reopened `token` must be the same card (checked before any PIN goes to
/// it), and the attempt resumes from its journal.
pub fn resume_after_reading(
    token: &Token,
    serial: &str,
    state_dir: &Path,
) -> Result<Plan, RenewalError> {
    if token.info()?.serial != serial {
        return Err(RenewalError::Other(
            "another token answered when the card was read again; insert the card and renew again to continue".into(),
        ));
    }
    Journal::load(state_dir, serial)?
        .map(|mut j| {
            j.continued = true;
            Plan::Resume(Box::new(j))
        })
        .ok_or_else(|| {
            RenewalError::Other(
                "the journal of this attempt is gone since the card was read again; renew again to start a new one".into(),
            )
        })
}

/// The pre-check of a renewal: an interrupted renewal on this token is
/// resumed; otherwise the one bank certificate in its renewal window (or
/// the one `want` names) is renewed if the bank's rules allow it now.
pub fn plan_renewal(
    state_dir: &Path,
    token_serial: &str,
    certs: &TokenCerts,
    policy: &Policy,
    want: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<Plan, RenewalError> {
    if let Some(journal) = Journal::load(state_dir, token_serial)? {
        return match &journal.entry.kind {
            Kind::Renew => Ok(Plan::Resume(Box::new(journal))),
            Kind::Enroll { user } => Err(RenewalError::NotNow(format!(
                "an interrupted enrolment for user {user} is pending on this token; finish it with `certagent enroll --user {user}`"
            ))),
        };
    }
    let target = match want {
        Some(id) => pick(certs, id)?,
        None => {
            let due: Vec<&TokenCert> = certs
                .bank
                .iter()
                .filter(|c| {
                    policy
                        .assess(c.cert.not_before, c.cert.not_after, now)
                        .state
                        == State::RenewalDue
                })
                .collect();
            match due.as_slice() {
                [one] => *one,
                [] => only_one(certs)?,
                _ => {
                    return Err(RenewalError::NotNow(format!(
                        "{} certificates are due for renewal; choose one with --id",
                        due.len()
                    )));
                }
            }
        }
    };
    let a = policy.assess(target.cert.not_before, target.cert.not_after, now);
    let subject = &crate::text::clean(&target.cert.subject, crate::text::NAME_MAX);
    let refusal = match a.state {
        State::RenewalDue => None,
        State::Valid => Some(match a.renewal_opens {
            Some(opens) => format!(
                "the certificate {subject} is valid for {} more days; renewal opens on {} (in {} days)",
                a.days_left,
                rfc3339(opens),
                crate::policy::days_left(opens, now)
            ),
            None => format!("the certificate {subject} has no expiry date; it is never renewed"),
        }),
        State::Expired => Some(format!(
            "the certificate {subject} expired on {}; it cannot be renewed, but a new one can be obtained until {} with `certagent enroll --user ID` and the bank's one-time password",
            rfc3339(target.cert.not_after),
            a.grace_ends
                .map_or_else(|| "the end of time".into(), rfc3339)
        )),
        State::Lapsed => Some(format!(
            "the certificate {subject} expired on {} and the grace period ended on {}: contact your bank to re-issue it",
            rfc3339(target.cert.not_after),
            a.grace_ends
                .map_or_else(|| "the end of time".into(), rfc3339)
        )),
        State::NotYetValid => Some(format!(
            "the certificate {subject} is not valid before {}; check the computer's clock",
            rfc3339(target.cert.not_before)
        )),
    };
    if let Some(r) = refusal {
        return Err(RenewalError::NotNow(r));
    }
    Ok(Plan::Start(Box::new(Request {
        kind: Kind::Renew,
        old: Some(target.clone()),
        slot: None,
        replaces: None,
        label: label_for(Some(target)),
    })))
}

/// The pre-check of an enrolment (first certificate, or after expiry with
/// the bank's ID and one-time password): an interrupted enrolment for the
/// same user is resumed; a certificate that can still be renewed is not
/// replaced this way.
pub fn plan_enrollment(
    state_dir: &Path,
    token_serial: &str,
    certs: &TokenCerts,
    policy: &Policy,
    user: &str,
    want: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<Plan, RenewalError> {
    let wanted = Kind::Enroll {
        user: user.to_string(),
    };
    if let Some(journal) = Journal::load(state_dir, token_serial)? {
        if journal.entry.kind == wanted {
            return Ok(Plan::Resume(Box::new(journal)));
        }
        return Err(RenewalError::NotNow(match &journal.entry.kind {
            Kind::Renew => {
                "an interrupted renewal is pending on this token; finish it with `certagent renew`"
                    .into()
            }
            Kind::Enroll { user } => format!(
                "an interrupted enrolment for user {user} is pending on this token; finish it with `certagent enroll --user {user}`"
            ),
        }));
    }
    let old: Option<&TokenCert> = match want {
        Some(id) => Some(pick(certs, id)?),
        None => {
            let gone: Vec<&TokenCert> = certs
                .bank
                .iter()
                .filter(|c| {
                    matches!(
                        policy
                            .assess(c.cert.not_before, c.cert.not_after, now)
                            .state,
                        State::Expired | State::Lapsed
                    )
                })
                .collect();
            let usable = certs.bank.iter().find(|c| {
                matches!(
                    policy
                        .assess(c.cert.not_before, c.cert.not_after, now)
                        .state,
                    State::Valid | State::RenewalDue
                )
            });
            match (gone.as_slice(), usable) {
                ([], Some(c)) => {
                    return Err(RenewalError::NotNow(format!(
                        "the token already holds a usable bank certificate, {} (valid until {}); enroll is for a first certificate or after expiry (use `certagent renew` in the renewal window)",
                        c.cert.subject,
                        rfc3339(c.cert.not_after)
                    )));
                }
                ([], None) => None,
                ([one], _) => Some(*one),
                (_, _) => {
                    return Err(RenewalError::NotNow(format!(
                        "{} expired certificates are on the token; choose the one to replace with --id",
                        gone.len()
                    )));
                }
            }
        }
    };
    if let Some(o) = old {
        let state = policy
            .assess(o.cert.not_before, o.cert.not_after, now)
            .state;
        if matches!(state, State::Valid | State::RenewalDue) {
            return Err(RenewalError::NotNow(format!(
                "the certificate {} is still {state}; use `certagent renew` (enroll is for a first certificate or after expiry)",
                o.cert.subject
            )));
        }
    }
    Ok(Plan::Start(Box::new(Request {
        kind: wanted,
        old: old.cloned(),
        slot: None,
        replaces: None,
        label: label_for(old),
    })))
}

/// The bank certificate with this CKA_ID.
fn pick<'a>(certs: &'a TokenCerts, id: &[u8]) -> Result<&'a TokenCert, RenewalError> {
    if let Some(c) = certs.bank.iter().find(|c| c.id == id) {
        return Ok(c);
    }
    if certs.superseded.iter().any(|c| c == id) {
        return Err(RenewalError::NotNow(format!(
            "the certificate with id {} has been replaced by a newer bank certificate on the token; certagent renews the newer one",
            hex::encode(id)
        )));
    }
    if certs.others.iter().any(|c| c.id == id) {
        return Err(RenewalError::NotNow(format!(
            "the certificate with id {} was not issued by the bank; certagent renews only the bank's certificates",
            hex::encode(id)
        )));
    }
    Err(RenewalError::NotNow(format!(
        "no bank certificate with id {} on the token",
        hex::encode(id)
    )))
}

fn only_one(certs: &TokenCerts) -> Result<&TokenCert, RenewalError> {
    match certs.bank.as_slice() {
        [one] => Ok(one),
        [] if !certs.issuer_known => Err(RenewalError::NotNow(
            "the bank's issuing CA is not known yet, so no certificate on the token can be told to be the bank's; set [bank] ca_certs or let certagent reach the bank once".into(),
        )),
        [] => Err(RenewalError::NotNow(
            "no bank certificate on the token; obtain one with `certagent enroll --user ID`".into(),
        )),
        _ => Err(RenewalError::NotNow(format!(
            "{} bank certificates are on the token; choose one with --id",
            certs.bank.len()
        ))),
    }
}

/// Check, before anything touches the token, that the journal can be
/// written: the state directory exists (or can be made) and takes a file of
/// a journal's size. A read-only or full disk stops the renewal here, with
/// the path and the reason, and nothing changed.
pub fn check_state_dir(state_dir: &Path) -> Result<(), RenewalError> {
    let fail = |e: std::io::Error| RenewalError::Journal {
        path: state_dir.to_path_buf(),
        reason: format!(
            "cannot be written ({e}); nothing was changed, fix the directory or free space and try again"
        ),
    };
    crate::config::ensure_state_dir(state_dir).map_err(fail)?;
    let probe = state_dir.join(format!(".write-check-{}", std::process::id()));
    let _ = std::fs::remove_file(&probe);
    let result = (|| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)?;
        // A journal holds two certificates and a CSR in base64: a few KiB.
        f.write_all(&[b' '; 16 * 1024])?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&probe);
    result.map_err(fail)
}

/// What [`execute`] works with. The caller has done the pre-check, the
/// consent and the login.
pub struct Renewal<'a> {
    pub token: Arc<Token>,
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

/// Run a planned attempt to the end: start a new one (journalled) or resume
/// the interrupted one. Returns the new certificate, already on the token.
pub async fn execute(r: Renewal<'_>, plan: Plan) -> Result<TokenCert, RenewalError> {
    let state_dir = r.state_dir.to_path_buf();
    let result = execute_inner(r, plan).await;
    // Whatever happened, the token may have changed: tell a running agent.
    if let Err(e) = std::fs::write(changed_stamp(&state_dir), b"") {
        log::debug!("cannot mark the token changed: {e}");
    }
    result
}

async fn execute_inner(r: Renewal<'_>, plan: Plan) -> Result<TokenCert, RenewalError> {
    let (journal, fresh, label) = match plan {
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
            let label = label_of(&r.token, j.old_id().as_deref());
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
    let ca_certs = if needs_bank {
        bank_ca_certs(r.bank, r.state_dir, r.progress).await?
    } else {
        match known_ca_certs(r.bank, r.state_dir) {
            Some(c) => c,
            None => bank_ca_certs(r.bank, r.state_dir, r.progress).await?,
        }
    };
    let credential = match (&journal.entry.kind, journal.old_id(), journal.old_cert()?) {
        (Kind::Renew, Some(id), Some(cert)) if needs_bank => Some(
            TokenCredential::new(r.token.clone(), &id, &cert)
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
        token: r.token.clone(),
        est: est_client(r.bank, credential)?,
        ca_certs,
        otp: r.otp,
        card: r.card,
        state_dir: r.state_dir.to_path_buf(),
        progress: r.progress,
        fresh,
    };
    wf.run(journal, &label).await
}

/// The label of the certificate being replaced, else the default.
fn label_of(token: &Token, old_id: Option<&[u8]>) -> String {
    old_id
        .and_then(|id| {
            blocking(|| token.certificates())
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

/// Everything a run works with.
struct Workflow<'a> {
    token: Arc<Token>,
    /// The bank, for the mode of this attempt (with the client credential for renewals).
    est: EstClient,
    /// The issuing CA certificates (DER): pinned, remembered, or from `/cacerts`.
    ca_certs: Vec<Vec<u8>>,
    /// The one-time password for enrolments.
    otp: Option<SecretString>,
    /// The PINs for a card with fixed key slots.
    card: Option<&'a CardLogin>,
    /// Where keys certagent leaves on a card are recorded ([`retired`]).
    state_dir: PathBuf,
    progress: &'a dyn Progress,
    /// The attempt was started by this run (nothing of it can be on the
    /// token from before, so nothing needs to be looked for).
    fresh: bool,
}

impl Workflow<'_> {
    /// Run (or resume) the attempt in `journal` to the end. Returns the new
    /// certificate. On a refusal or a bad answer the candidate is removed.
    async fn run(&self, mut journal: Journal, label: &str) -> Result<TokenCert, RenewalError> {
        let result = self.drive(&mut journal, label).await;
        match result {
            Ok(cert) => {
                journal.remove()?;
                Ok(cert)
            }
            Err(e) if abandons(&e) && journal.entry.step <= Step::CsrReady => {
                self.abandon(journal);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Remove the candidate key of an attempt and its journal. A key is
    /// removed only if its public key is the journalled candidate's (or,
    /// before that was journalled, if it carries the attempt's unique label).
    fn abandon(&self, journal: Journal) {
        let e = &journal.entry;
        if e.fixed_slot {
            // The card cannot delete keys: the candidate stays in its slot,
            // unused, and the user is told which.
            // It is not recorded as retired: no certificate of the bank's
            // shows it was certagent's (see `retired`), so no later attempt
            // generates over it.
            if let Some(id) = &e.candidate_id {
                self.progress
                    .step(e.step, &tr("step-candidate-stays", &[("id", Arg::Str(id))]));
            }
            if let Err(err) = journal.remove() {
                log::warn!("{err}");
            }
            return;
        }
        let spki = unb64(&e.candidate_spki, "candidate key").ok();
        let mut ids: Vec<Vec<u8>> = e
            .candidate_id
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .into_iter()
            .collect();
        if let Ok(more) = blocking(|| self.token.private_key_ids_with_label(&e.candidate_label)) {
            ids.extend(more);
        }
        ids.sort();
        ids.dedup();
        for id in ids.into_iter().filter(|id| !id.is_empty()) {
            let theirs = blocking(|| self.token.public_key(&id));
            let ours = match (&spki, theirs) {
                (Some(want), Ok(Some(have))) => *want == have,
                // No public key to compare: only the attempt's own label vouches.
                (_, Ok(None)) => {
                    blocking(|| self.token.private_key_ids_with_label(&e.candidate_label))
                        .is_ok_and(|l| l.contains(&id))
                }
                (None, Ok(Some(_))) => true,
                (_, Err(_)) => false,
            };
            if !ours {
                log::warn!(
                    "not removing key {}: it is not this attempt's candidate",
                    hex::encode(&id)
                );
                continue;
            }
            match blocking(|| self.token.delete_all(&id)) {
                Ok(n) if n > 0 => self.progress.step(
                    e.step,
                    &tr(
                        "step-removed-candidate",
                        &[("id", Arg::Str(&hex::encode(&id)))],
                    ),
                ),
                Ok(_) => {}
                Err(err) => {
                    log::warn!("could not remove candidate key {}: {err}", hex::encode(&id))
                }
            }
        }
        if let Err(err) = journal.remove() {
            log::warn!("{err}");
        }
    }

    async fn drive(&self, j: &mut Journal, label: &str) -> Result<TokenCert, RenewalError> {
        let old_cert = j.old_cert()?;
        if !self.fresh {
            self.check_journal(j, old_cert.as_ref())?;
        }
        // What this run did itself, so it need not look again: a key it
        // generated has its handles known, a certificate it wrote is there.
        let mut generated_here = false;
        let mut written_here = false;
        // A card whose module keeps what it read (OpenSC) is read afresh
        // before anything is removed from it.
        let mut card_written_here = false;
        loop {
            match j.entry.step {
                Step::Started => j.advance(Step::GeneratingKey)?,
                Step::GeneratingKey if j.entry.fixed_slot => {
                    let id = self.candidate_id(j)?;
                    // The slot was free when the attempt began (or held the
                    // key certagent retired there): any other key there now
                    // is the one this attempt generated.
                    let replaced = retired::replaced(&j.entry);
                    let found = if self.fresh {
                        None
                    } else {
                        blocking(|| self.token.public_key(&id))?
                            .filter(|k| replaced.as_ref() != Some(k))
                    };
                    match found {
                        Some(spki) => {
                            self.progress
                                .step(Step::GeneratingKey, &tr("step-found-candidate", &[]));
                            j.entry.candidate_spki = Some(b64(&spki));
                            j.advance(Step::KeyReady)?;
                        }
                        None => {
                            // Over a key only where certagent can show it
                            // retired that key (the journal is a file).
                            if let Some(key) = &replaced {
                                let serial = &j.entry.token_serial;
                                let bank = self.bank();
                                if !retired::is_retired(&self.state_dir, serial, &id, key, &bank) {
                                    return Err(RenewalError::Other(format!(
                                        "slot {} holds a key certagent cannot show it retired; it never generates over such a key. Nothing was changed",
                                        hex::encode(&id)
                                    )));
                                }
                            }
                            self.progress.step(
                                Step::GeneratingKey,
                                &tr(
                                    if replaced.is_some() {
                                        "step-generating-over-retired"
                                    } else {
                                        "step-generating-slot"
                                    },
                                    &[
                                        ("key", Arg::Str(&j.entry.key.to_string())),
                                        ("id", Arg::Str(&hex::encode(&id))),
                                    ],
                                ),
                            );
                            let (kind, label_c) = (j.entry.key, j.entry.candidate_label.clone());
                            // Over a retired key the module wants no id (it
                            // refuses one for an occupied slot).
                            let named = replaced.is_none().then_some(&id[..]);
                            self.as_admin(|| {
                                self.token.generate_key_pair_in_slot(kind, named, &label_c)
                            })?;
                            crash_point("after-keygen");
                            // The card shows the new key only once read again.
                            return Err(RenewalError::ReadCardAgain);
                        }
                    }
                }
                Step::GeneratingKey => {
                    let label_c = j.entry.candidate_label.clone();
                    // A fresh attempt's label is new: nothing to adopt.
                    let adopted = if self.fresh {
                        None
                    } else {
                        blocking(|| self.token.adopt_key_pair(&label_c))?
                    };
                    let key: GeneratedKey = match adopted {
                        Some(key) => {
                            self.progress
                                .step(Step::GeneratingKey, &tr("step-found-candidate", &[]));
                            key
                        }
                        None => {
                            self.progress.step(
                                Step::GeneratingKey,
                                &tr(
                                    "step-generating",
                                    &[("key", Arg::Str(&j.entry.key.to_string()))],
                                ),
                            );
                            let key =
                                blocking(|| self.token.generate_key_pair(j.entry.key, &label_c))?;
                            crash_point("after-keygen");
                            generated_here = true;
                            key
                        }
                    };
                    j.entry.candidate_id = Some(hex::encode(&key.id));
                    j.entry.candidate_spki = Some(b64(&key.spki_der));
                    j.advance(Step::KeyReady)?;
                }
                Step::KeyReady => {
                    let id = self.candidate_id(j)?;
                    let spki = unb64(&j.entry.candidate_spki, "candidate key")?;
                    self.user_login_for(j, &id)?;
                    self.progress
                        .step(Step::KeyReady, &tr("step-signing-csr", &[]));
                    let csr = blocking(|| {
                        crate::csr::build_for(&self.token, &id, &spki, old_cert.as_ref())
                    })
                    .map_err(|e| match e {
                        crate::csr::CsrError::Token(t) => RenewalError::Token(t),
                        other => RenewalError::Csr(other.to_string()),
                    })?;
                    j.entry.csr = Some(b64(&csr));
                    j.advance(Step::CsrReady)?;
                }
                Step::CsrReady => {
                    let csr = unb64(&j.entry.csr, "certificate request")?;
                    if let Some(old) = j.old_id().filter(|_| j.entry.kind == Kind::Renew) {
                        // The current key authenticates the TLS connection.
                        self.user_login_for(j, &old)?;
                    }
                    let certs = self.submit(&j.entry.kind, &csr).await?;
                    crash_point("after-submit");
                    let spki = unb64(&j.entry.candidate_spki, "candidate key")?;
                    self.progress
                        .step(Step::CsrReady, &tr("step-checking", &[]));
                    let new = verify_issued(
                        &certs,
                        &spki,
                        old_cert.as_ref(),
                        &self.ca_certs,
                        OffsetDateTime::now_utc(),
                    )?;
                    j.entry.issued = Some(b64(&new.der));
                    j.advance(Step::Issued)?;
                }
                Step::Issued => j.advance(Step::Installing)?,
                Step::Installing => {
                    let id = self.candidate_id(j)?;
                    let der = unb64(&j.entry.issued, "issued certificate")?;
                    let spki = unb64(&j.entry.candidate_spki, "candidate key")?;
                    // The journal is a file: check its certificate again
                    // (key, subject, chain, dates) before it goes on the token.
                    verify_issued(
                        std::slice::from_ref(&der),
                        &spki,
                        old_cert.as_ref(),
                        &self.ca_certs,
                        OffsetDateTime::now_utc(),
                    )?;
                    if !generated_here
                        && blocking(|| self.token.public_key(&id))?.as_deref() != Some(&spki[..])
                    {
                        return Err(RenewalError::Other(format!(
                            "the key {} on the token is not the candidate this attempt generated; nothing was installed and the old certificate is kept",
                            hex::encode(&id)
                        )));
                    }
                    // A key generated by this run has no certificate yet.
                    let present = !generated_here
                        && blocking(|| self.token.certificates())?
                            .into_iter()
                            .any(|c| c.der == der && c.id == id);
                    if !present {
                        self.progress
                            .step(Step::Installing, &tr("step-installing", &[]));
                        if j.entry.fixed_slot {
                            self.as_admin(|| self.token.write_certificate(&id, label, &der))?;
                            card_written_here = true;
                        } else {
                            blocking(|| self.token.write_certificate(&id, label, &der))?;
                        }
                        crash_point("after-install");
                        written_here = true;
                    }
                    // A card names its keys itself.
                    if !j.entry.fixed_slot {
                        blocking(|| self.token.set_key_label(&id, label))?;
                    }
                    j.advance(Step::Installed)?;
                }
                Step::Installed => {
                    let id = self.candidate_id(j)?;
                    let der = unb64(&j.entry.issued, "issued certificate")?;
                    self.progress
                        .step(Step::Installed, &tr("step-reading-back", &[]));
                    // Read back: the object this run wrote through its handle,
                    // else every certificate under the id.
                    let back: Vec<Vec<u8>> = if written_here {
                        blocking(|| self.token.certificate_value(&id))?
                            .into_iter()
                            .collect()
                    } else {
                        blocking(|| self.token.certificates())?
                            .into_iter()
                            .filter(|c| c.id == id)
                            .map(|c| c.der)
                            .collect()
                    };
                    if !back.contains(&der) {
                        // Not there after all (token swapped?): write it again.
                        j.advance(Step::Installing)?;
                        continue;
                    }
                    let cert =
                        Cert::from_der(&der).map_err(|e| RenewalError::Other(e.to_string()))?;
                    let scheme = *cert
                        .schemes()
                        .first()
                        .ok_or_else(|| RenewalError::Other("unsupported key type".into()))?;
                    let mut challenge = [0u8; 32];
                    ring::rand::SecureRandom::fill(
                        &ring::rand::SystemRandom::new(),
                        &mut challenge,
                    )
                    .map_err(|_| RenewalError::Other("no system randomness".into()))?;
                    self.user_login_for(j, &id)?;
                    let sig = blocking(|| self.token.sign(&id, scheme, &challenge))?;
                    if !crate::cert::verify(&cert.spki_der, scheme, &challenge, &sig) {
                        return Err(RenewalError::Other(
                            "the new key's test signature does not verify against the new certificate; the old certificate is kept".into(),
                        ));
                    }
                    j.advance(Step::RetiringOld)?;
                }
                Step::RetiringOld if j.entry.fixed_slot => {
                    if card_written_here {
                        return Err(RenewalError::ReadCardAgain);
                    }
                    if !self.retire_on_card(j, old_cert.as_ref())? {
                        return Err(RenewalError::ReadCardAgain);
                    }
                }
                Step::RetiringOld => {
                    let candidate = self.candidate_id(j)?;
                    if let (Some(old), Some(old_cert)) = (j.old_id(), old_cert.as_ref())
                        && old != candidate
                    {
                        self.retire(&old, old_cert)?;
                    }
                    j.advance(Step::Done)?;
                }
                Step::Done => {
                    let der = unb64(&j.entry.issued, "issued certificate")?;
                    let cert =
                        Cert::from_der(&der).map_err(|e| RenewalError::Other(e.to_string()))?;
                    return Ok(TokenCert {
                        id: self.candidate_id(j)?,
                        label: label.to_string(),
                        cert,
                    });
                }
            }
        }
    }

    /// The bank's issuers as this attempt knows them: its CA certificates.
    fn bank(&self) -> BankIssuers {
        BankIssuers {
            ca_certs: self.ca_certs.clone(),
            ..BankIssuers::default()
        }
    }

    /// A journal from an earlier run is a file that anything running as
    /// the user could have edited: before it acts on the token again, the
    /// certificate it replaces must be the bank's (signed by the bank's
    /// issuing CA; its dates do not matter), and a certificate it says the
    /// bank issued must still verify (key, subject, chain, dates). Either
    /// failing stops the run before any token call.
    fn check_journal(&self, j: &Journal, old_cert: Option<&Cert>) -> Result<(), RenewalError> {
        let stop = |why: String| {
            RenewalError::Other(format!(
                "the journal of the interrupted attempt ({}) {why}; nothing was changed on the token. If you did not start that attempt, remove the journal",
                j.path().display()
            ))
        };
        match (old_cert, &j.entry.kind) {
            (Some(old), _) => {
                if !self.bank().issued(old) {
                    return Err(stop(format!(
                        "names a certificate the bank did not issue ({})",
                        crate::text::clean(&old.subject, crate::text::NAME_MAX)
                    )));
                }
            }
            (None, Kind::Renew) => return Err(stop("lacks the certificate being renewed".into())),
            (None, Kind::Enroll { .. }) => {}
        }
        if j.entry.issued.is_some() {
            let der = unb64(&j.entry.issued, "issued certificate")?;
            let spki = unb64(&j.entry.candidate_spki, "candidate key")?;
            verify_issued(
                std::slice::from_ref(&der),
                &spki,
                old_cert,
                &self.ca_certs,
                OffsetDateTime::now_utc(),
            )
            .map_err(|e| stop(format!("holds a certificate that does not verify: {e}")))?;
        }
        Ok(())
    }

    /// Remove the old certificate and key, but only while the old id still
    /// holds the journal's old certificate and its key: an id that now holds
    /// something else is left alone, and the user is told. Every object
    /// removed is shown to be the old one: the certificate byte for byte,
    /// a key by its public key; a key whose public key cannot be read goes
    /// only beside the old certificate or public key. Private keys go
    /// first, so an interruption leaves what proves the rest.
    fn retire(&self, old: &[u8], old_cert: &Cert) -> Result<(), RenewalError> {
        use crate::token::Class;
        let mut objects = blocking(|| self.token.objects_with_id(old))?;
        let proven = |o: &crate::token::IdObject| {
            if o.class == Class::CERTIFICATE {
                o.value.as_deref() == Some(&old_cert.der[..])
            } else {
                o.spki.as_deref() == Some(&old_cert.spki_der[..])
            }
        };
        let vouched = objects
            .iter()
            .any(|o| o.class != Class::PRIVATE_KEY && proven(o));
        let foreign = objects.iter().any(|o| {
            !(proven(o) || (o.class == Class::PRIVATE_KEY && o.spki.is_none() && vouched))
        });
        objects.sort_by_key(|o| o.class != Class::PRIVATE_KEY);
        if foreign {
            self.progress.step(
                Step::RetiringOld,
                &tr("step-left-alone", &[("id", Arg::Str(&hex::encode(old)))]),
            );
            return Ok(());
        }
        let n = blocking(|| self.token.destroy(&objects))?;
        crash_point("after-retire");
        if n > 0 {
            self.progress.step(
                Step::RetiringOld,
                &tr("step-removed-old", &[("id", Arg::Str(&hex::encode(old)))]),
            );
        }
        Ok(())
    }

    /// On a card with fixed key slots: log in as the admin (the SO login)
    /// for `f`, and out again, whatever `f` did. A rejected admin PIN is
    /// reported, never retried.
    fn as_admin<T>(&self, f: impl FnOnce() -> Result<T, TokenError>) -> Result<T, RenewalError> {
        let card = self.card.ok_or_else(|| {
            RenewalError::Other("this card needs its admin PIN, and none was given".into())
        })?;
        blocking(|| {
            self.token.login_admin(card.admin.as_ref())?;
            let result = f();
            if let Err(e) = self.token.logout() {
                log::debug!("logging the admin out: {e}");
            }
            result
        })
        .map_err(RenewalError::from)
    }

    /// On a card with fixed key slots: make sure the token holding key
    /// slot `id` is logged in as the user (a card's tokens log in apart).
    fn user_login_for(&self, j: &Journal, id: &[u8]) -> Result<(), RenewalError> {
        if !j.entry.fixed_slot {
            return Ok(());
        }
        let card = self.card.ok_or_else(|| {
            RenewalError::Other("this card needs the user PIN, and none was given".into())
        })?;
        blocking(|| self.token.login_for(id, card.user.as_ref())).map_err(RenewalError::from)
    }

    /// Retire the old certificate on a card, on a fresh read of it (this
    /// run changed nothing on it). The new certificate is checked first: if
    /// the card lost it, it is written again. The old certificate is
    /// removed (admin login) unless the family's module would erase the new
    /// one with it; the removal is checked on the next fresh read, and tried
    /// once. The old key stays, since the card cannot delete keys. What
    /// could not be done is reported; the new certificate is proven by now,
    /// so it does not fail the renewal. `Ok(false)`: read the card again
    /// and come back.
    fn retire_on_card(
        &self,
        j: &mut Journal,
        old_cert: Option<&Cert>,
    ) -> Result<bool, RenewalError> {
        let family = self.token.card_family().cloned().ok_or_else(|| {
            RenewalError::Other("the token is no longer the card this attempt began on".into())
        })?;
        let new = self.candidate_id(j)?;
        let der = unb64(&j.entry.issued, "issued certificate")?;
        let certs = blocking(|| self.token.certificates())?;
        if !certs.iter().any(|c| c.id == new && c.der == der) {
            // Not on the card after all: install it again.
            j.advance(Step::Installing)?;
            return Ok(true);
        }
        if let (Some(old), Some(old_cert)) = (j.old_id(), old_cert)
            && old != new
        {
            let old_hex = hex::encode(&old);
            let there = certs.iter().any(|c| c.id == old && c.der == old_cert.der);
            let erases_new = family
                .certificate_deletes_erase
                .as_deref()
                .is_some_and(|e| e == hex::encode(&new));
            if there && !erases_new && !j.entry.old_removal_tried {
                match self.as_admin(|| self.token.delete_certificate_if(&old, &old_cert.der)) {
                    Ok(_) => {}
                    // The card was not reached (pulled, another PIN): the
                    // journal is unchanged and the next run tries again.
                    Err(RenewalError::Token(e)) if e.is_user_actionable() => return Err(e.into()),
                    // OpenSC 0.23 erases an OpenPGP card's certificate and
                    // still answers CKR_GENERAL_ERROR: the next read tells.
                    Err(e) => log::info!("removing the old certificate {old_hex}: {e}"),
                }
                crash_point("after-retire");
                // Tried once, the card answered: the next fresh read says
                // whether it worked, and it is not tried again.
                j.entry.old_removal_tried = true;
                j.advance(Step::RetiringOld)?;
                return Ok(false);
            }
            if there {
                // Listed apart from now on, never used or renewed.
                if let Err(e) = retired::remember_replaced(&self.state_dir, &old_cert.der) {
                    log::warn!("cannot record the replaced certificate {old_hex}: {e}");
                }
            }
            let message = match (there, erases_new) {
                (false, _) => "step-removed-old-cert",
                (true, true) => "step-old-cert-stays",
                (true, false) => "step-old-cert-error",
            };
            self.progress.step(
                Step::RetiringOld,
                &tr(message, &[("id", Arg::Str(&old_hex))]),
            );
            if family.keys_stay {
                self.progress.step(
                    Step::RetiringOld,
                    &tr("step-old-key-stays", &[("id", Arg::Str(&old_hex))]),
                );
                if !there {
                    let serial = j.entry.token_serial.clone();
                    self.remember_retired(&serial, &old, old_cert);
                }
            }
        }
        j.advance(Step::Done)?;
        Ok(true)
    }

    /// Record a key certagent leaves unused on a card (see [`retired`]).
    fn remember_retired(&self, serial: &str, slot: &[u8], cert: &Cert) {
        if let Err(e) = retired::remember(&self.state_dir, serial, slot, cert) {
            log::warn!(
                "cannot record the retired key in slot {}: {e}",
                hex::encode(slot)
            );
        }
    }

    fn candidate_id(&self, j: &Journal) -> Result<Vec<u8>, RenewalError> {
        j.entry
            .candidate_id
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| RenewalError::Other("the journal lacks the candidate key id".into()))
    }

    /// Send the request; on 202 send the identical bytes again after the
    /// server's Retry-After, within a bounded total wait.
    async fn submit(&self, kind: &Kind, csr: &[u8]) -> Result<Vec<Vec<u8>>, RenewalError> {
        let started = std::time::Instant::now();
        let mut attempt = 1u32;
        loop {
            self.progress.step(
                Step::CsrReady,
                &if attempt == 1 {
                    tr("step-sending", &[])
                } else {
                    tr(
                        "step-sending-again",
                        &[("attempt", Arg::Num(i64::from(attempt)))],
                    )
                },
            );
            let answer = match kind {
                Kind::Renew => self.est.simplereenroll(csr).await?,
                Kind::Enroll { user } => {
                    let otp = self
                        .otp
                        .as_ref()
                        .ok_or_else(|| RenewalError::Other("no one-time password".into()))?;
                    self.est
                        .simpleenroll(csr, user, otp.expose_secret())
                        .await?
                }
            };
            match answer {
                EstAnswer::Issued(certs) => return Ok(certs),
                EstAnswer::Pending(after) => {
                    let waited = started.elapsed();
                    if waited.saturating_add(after) > MAX_PENDING_WAIT {
                        return Err(RenewalError::StillPending(waited));
                    }
                    self.progress.step(
                        Step::CsrReady,
                        &tr(
                            "step-bank-busy",
                            &[(
                                "seconds",
                                Arg::Num(i64::try_from(after.as_secs()).unwrap_or(i64::MAX)),
                            )],
                        ),
                    );
                    tokio::time::sleep(after).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Errors after which the attempt is given up (and its candidate removed):
/// the bank said no, or said something unusable. Network trouble and a
/// pending request keep the journal for a later resume.
fn abandons(e: &RenewalError) -> bool {
    matches!(
        e,
        RenewalError::BadAnswer(_)
            | RenewalError::Est(EstError::Refused { .. })
            | RenewalError::Est(EstError::Answer(_))
    )
}

/// An EST client for the configured bank, authenticating with `credential`
/// (renewal) or with TLS server authentication only (enrolment, /cacerts).
pub fn est_client(
    bank: &BankConfig,
    credential: Option<TokenCredential>,
) -> Result<EstClient, RenewalError> {
    let roots = load_roots(&bank.server_roots).map_err(|e| RenewalError::Other(e.to_string()))?;
    let tls = client_config(roots, credential).map_err(|e| RenewalError::Other(e.to_string()))?;
    Ok(EstClient::new(&bank.est_url, tls)?)
}

/// The file where `/cacerts` of this bank is remembered.
fn cacerts_file(bank: &BankConfig, state_dir: &Path) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bank.est_url.as_bytes());
    let tag = hex::encode(digest.get(..8).unwrap_or_default());
    state_dir.join(format!("bank-cacerts-{tag}.json"))
}

fn read_pinned(path: &Path) -> Result<Vec<Vec<u8>>, RenewalError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: String| RenewalError::Other(format!("[bank] ca_certs {}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    Ok(certs)
}

/// The bank's issuing CA as known without the network: the `ca_certs` pin,
/// else `/cacerts` remembered from the last contact.
pub fn known_ca_certs(bank: &BankConfig, state_dir: &Path) -> Option<Vec<Vec<u8>>> {
    if let Some(path) = &bank.ca_certs {
        return read_pinned(path).ok();
    }
    let text = std::fs::read(cacerts_file(bank, state_dir)).ok()?;
    let list: Vec<String> = serde_json::from_slice(&text).ok()?;
    let certs: Vec<Vec<u8>> = list
        .iter()
        .filter_map(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok())
        .filter(|d| Cert::from_der(d).is_ok())
        .collect();
    (!certs.is_empty()).then_some(certs)
}

/// Remember `/cacerts` (fetched over server-authenticated TLS) for the next
/// start, when the bank may not be reachable.
fn remember_cacerts(bank: &BankConfig, state_dir: &Path, certs: &[Vec<u8>]) {
    let list: Vec<String> = certs.iter().map(|c| b64(c)).collect();
    let path = cacerts_file(bank, state_dir);
    let write = || -> std::io::Result<()> {
        crate::config::ensure_state_dir(state_dir)?;
        write_private(
            &path,
            &serde_json::to_vec(&list).map_err(std::io::Error::other)?,
        )
    };
    if let Err(e) = write() {
        log::warn!("cannot remember the bank's CA in {}: {e}", path.display());
    }
}

/// Write a small state file whole, readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::state_file::write(path, bytes, crate::state_file::Mode::Private)
}

/// What tells the bank's certificates apart, without the network.
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

/// The issuing CA: the `ca_certs` pin, else `/cacerts` over
/// server-authenticated TLS (remembered for later).
pub async fn bank_ca_certs(
    bank: &BankConfig,
    state_dir: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Vec<u8>>, RenewalError> {
    if let Some(path) = &bank.ca_certs {
        return read_pinned(path);
    }
    progress.step(Step::Started, &tr("step-fetching-cacerts", &[]));
    let certs = est_client(bank, None)?.cacerts().await?;
    remember_cacerts(bank, state_dir, &certs);
    Ok(certs)
}
