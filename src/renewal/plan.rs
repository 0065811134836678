//! The pre-check, before the user is asked anything: what the attempt
//! will do ([`Plan`]: resume the interrupted one, or start one for which
//! certificate), whether the bank's rules allow it now, and on a card
//! with fixed key slots, which slot takes the new key.

use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::RenewalError;
use super::journal::{Journal, Kind};
use super::retired;
use crate::cert::rfc3339;
use crate::holdings::{BankIssuers, TokenCert, TokenCerts};
use crate::i18n::{Arg, Lang, datetime_in, tr_in};
use crate::policy::{Policy, State};
use crate::token::{Token, block_in_place};

/// The label of a bank certificate written by certagent when the old one had none.
pub const DEFAULT_LABEL: &str = "bank certificate";

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
        return Err(RenewalError::Refused(format!(
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
    let certs = block_in_place(|| token.certificates())?;
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
        let key = block_in_place(|| token.public_key(&id))?;
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
    Err(RenewalError::Refused(format!(
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
                    return Err(RenewalError::Refused(format!(
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
            Some(opens) => RenewalError::NotNow(format!(
                "the certificate {subject} is valid for {} more days; renewal opens on {} (in {} days)",
                a.days_left,
                rfc3339(opens),
                crate::policy::days_left(opens, now)
            )),
            None => RenewalError::Refused(format!(
                "the certificate {subject} has no expiry date; it is never renewed"
            )),
        }),
        State::Expired => Some(RenewalError::Refused(format!(
            "the certificate {subject} expired on {}; it cannot be renewed, but a new one can be obtained until {} with `certagent enroll --user ID` and the bank's one-time password",
            rfc3339(target.cert.not_after),
            a.grace_ends
                .map_or_else(|| "the end of time".into(), rfc3339)
        ))),
        State::Lapsed => Some(RenewalError::Refused(format!(
            "the certificate {subject} expired on {} and the grace period ended on {}: contact your bank to re-issue it",
            rfc3339(target.cert.not_after),
            a.grace_ends
                .map_or_else(|| "the end of time".into(), rfc3339)
        ))),
        State::NotYetValid => Some(RenewalError::NotNow(format!(
            "the certificate {subject} is not valid before {}; check the computer's clock",
            rfc3339(target.cert.not_before)
        ))),
    };
    if let Some(r) = refusal {
        return Err(r);
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
                    return Err(RenewalError::Refused(format!(
                        "the token already holds a usable bank certificate, {} (valid until {}); enroll is for a first certificate or after expiry (use `certagent renew` in the renewal window)",
                        c.cert.subject,
                        rfc3339(c.cert.not_after)
                    )));
                }
                ([], None) => None,
                ([one], _) => Some(*one),
                (_, _) => {
                    return Err(RenewalError::Refused(format!(
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
            return Err(RenewalError::Refused(format!(
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
        return Err(RenewalError::Refused(format!(
            "the certificate with id {} has been replaced by a newer bank certificate on the token; certagent renews the newer one",
            hex::encode(id)
        )));
    }
    if certs.others.iter().any(|c| c.id == id) {
        return Err(RenewalError::Refused(format!(
            "the certificate with id {} was not issued by the bank; certagent renews only the bank's certificates",
            hex::encode(id)
        )));
    }
    Err(RenewalError::Refused(format!(
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
        [] => Err(RenewalError::Refused(
            "no bank certificate on the token; obtain one with `certagent enroll --user ID`".into(),
        )),
        _ => Err(RenewalError::Refused(format!(
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
