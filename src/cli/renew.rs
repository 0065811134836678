//! `certagent renew` and `certagent enroll`: the bank's old procedure
//! (pre-check, confirm, key on the token, issuance, install, show), made
//! safe against interruption by the renewal journal.

use std::sync::Arc;

use time::OffsetDateTime;

use super::status::{pick, print_certificate};
use super::{App, TokenCert, bank_certificates};
use crate::Error;
use crate::cert::{Cert, rfc3339};
use crate::config::BankConfig;
use crate::est::EstClient;
use crate::policy::State;
use crate::renewal::{self, Journal, Kind, Request, Step, Workflow};
use crate::tls::TokenCredential;
use crate::token::{Token, TokenError, blocking};

/// The default label of a bank certificate written by certagent.
const DEFAULT_LABEL: &str = "bank certificate";

fn bank(app: &App) -> Result<&BankConfig, Error> {
    app.config.bank.as_ref().ok_or_else(|| {
        Error::Usage(
            "the configuration has no [bank] section; est_url and server_roots are needed to reach the bank".into(),
        )
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Io)
}

fn progress(step: Step, message: &str) {
    eprintln!("[{}] {message}", step.as_str());
}

fn est_client(bank: &BankConfig, credential: Option<TokenCredential>) -> Result<EstClient, Error> {
    renewal::est_client(bank, credential).map_err(renewal_error)
}

fn renewal_error(e: impl Into<renewal::RenewalError>) -> Error {
    Error::Renewal(e.into())
}

async fn ca_certs(bank: &BankConfig) -> Result<Vec<Vec<u8>>, Error> {
    renewal::bank_ca_certs(bank, &progress)
        .await
        .map_err(renewal_error)
}

/// `GET /cacerts` over server-authenticated TLS.
pub(super) async fn fetch_cacerts(bank: &BankConfig) -> Result<Vec<Vec<u8>>, Error> {
    est_client(bank, None)?
        .cacerts()
        .await
        .map_err(renewal_error)
}

pub(super) fn renew(app: &App, id: Option<&str>, yes: bool) -> Result<(), Error> {
    let bank = bank(app)?;
    let token = Arc::new(app.open_token()?);
    let info = token.info()?;
    if info.pin_locked {
        return Err(TokenError::PinLocked.into());
    }
    let state_dir = crate::config::state_dir();
    let rt = runtime()?;

    if let Some(journal) = Journal::load(&state_dir, &info.serial).map_err(renewal_error)? {
        if journal.entry.kind != Kind::Renew {
            return Err(Error::Usage(
                "an interrupted enrolment is pending on this token; finish it with `certagent enroll --user ID`".into(),
            ));
        }
        eprintln!(
            "Resuming the renewal interrupted at step {} (started {}).",
            journal.entry.step.as_str(),
            journal.entry.started
        );
        app.login(&token, "resume the certificate renewal")?;
        let old = journal
            .entry
            .old_cert
            .as_deref()
            .and_then(|b| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok()
            })
            .and_then(|d| Cert::from_der(&d).ok());
        let old_id = journal
            .entry
            .old_id
            .as_deref()
            .and_then(|h| hex::decode(h).ok());
        let label = label_of(&token, old_id.as_deref());
        let credential = match (old, old_id) {
            (Some(cert), Some(id)) if journal.entry.step <= Step::CsrReady => Some(
                TokenCredential::new(token.clone(), &id, &cert)
                    .map_err(|e| Error::Usage(e.to_string()))?,
            ),
            _ => None,
        };
        let needs_bank = journal.entry.step <= Step::CsrReady;
        return rt.block_on(async {
            // Past the bank's answer (already verified), no network is needed.
            let ca = if needs_bank {
                ca_certs(bank).await?
            } else {
                Vec::new()
            };
            let wf = Workflow {
                token: token.clone(),
                token_serial: info.serial.clone(),
                state_dir: state_dir.clone(),
                est: est_client(bank, credential)?,
                ca_certs: ca,
                otp: None,
                progress: &progress,
            };
            finish(app, &token, wf.run(journal, &label).await)
        });
    }

    // Pre-check.
    let certs = bank_certificates(&token)?;
    let now = OffsetDateTime::now_utc();
    let policy = &app.config.policy;
    let target = match id {
        Some(_) => pick(&certs, id)?,
        None => {
            let due: Vec<&TokenCert> = certs
                .iter()
                .filter(|c| {
                    policy
                        .assess(c.cert.not_before, c.cert.not_after, now)
                        .state
                        == State::RenewalDue
                })
                .collect();
            match due.as_slice() {
                [one] => one,
                [] => pick(&certs, None)?,
                _ => {
                    return Err(Error::Usage(format!(
                        "{} certificates are due for renewal; choose one with --id",
                        due.len()
                    )));
                }
            }
        }
    };
    let a = policy.assess(target.cert.not_before, target.cert.not_after, now);
    match a.state {
        State::RenewalDue => {}
        State::Valid => {
            return Err(Error::Usage(format!(
                "the certificate {} is valid for {} more days; renewal opens on {} (in {} days)",
                target.cert.subject,
                a.days_left,
                rfc3339(a.renewal_opens),
                crate::policy::days_left(a.renewal_opens, now)
            )));
        }
        State::Expired => {
            return Err(Error::Usage(format!(
                "the certificate {} expired on {}; it cannot be renewed, but a new one can be obtained until {} with `certagent enroll --user ID` and the bank's one-time password",
                target.cert.subject,
                rfc3339(target.cert.not_after),
                rfc3339(a.grace_ends)
            )));
        }
        State::Lapsed => {
            return Err(Error::Usage(format!(
                "the certificate {} expired on {} and the grace period ended on {}: contact your bank to re-issue it",
                target.cert.subject,
                rfc3339(target.cert.not_after),
                rfc3339(a.grace_ends)
            )));
        }
        State::NotYetValid => {
            return Err(Error::Usage(format!(
                "the certificate {} is not valid before {}; check the computer's clock",
                target.cert.subject,
                rfc3339(target.cert.not_before)
            )));
        }
    }
    eprintln!(
        "Renewing {} (id {}), {} days left.",
        target.cert.subject,
        hex::encode(&target.id),
        a.days_left
    );
    if !yes
        && !app
            .prompt
            .confirm("Renew this certificate now? A new key is generated on the token.")?
    {
        return Err(Error::Usage("renewal cancelled".into()));
    }
    app.login(&token, "renew the bank certificate")?;
    let label = if target.label.is_empty() {
        DEFAULT_LABEL.to_string()
    } else {
        target.label.clone()
    };
    rt.block_on(async {
        let result = renewal::renew_now(
            token.clone(),
            &info.serial,
            bank,
            app.config.key,
            &target.id,
            &target.cert,
            &label,
            &state_dir,
            &progress,
        )
        .await;
        finish(app, &token, result)
    })
}

pub(super) fn enroll(app: &App, user: &str, id: Option<&str>, yes: bool) -> Result<(), Error> {
    let bank = bank(app)?;
    let token = Arc::new(app.open_token()?);
    let info = token.info()?;
    if info.pin_locked {
        return Err(TokenError::PinLocked.into());
    }
    let state_dir = crate::config::state_dir();
    let rt = runtime()?;
    let pending = Journal::load(&state_dir, &info.serial).map_err(renewal_error)?;
    let wanted = Kind::Enroll {
        user: user.to_string(),
    };
    if let Some(j) = &pending
        && j.entry.kind != wanted
    {
        return Err(Error::Usage(match &j.entry.kind {
            Kind::Renew => {
                "an interrupted renewal is pending on this token; finish it with `certagent renew`"
                    .into()
            }
            Kind::Enroll { user } => format!(
                "an interrupted enrolment for user {user} is pending on this token; finish it with `certagent enroll --user {user}`"
            ),
        }));
    }
    let (old, label) = match &pending {
        Some(j) => {
            eprintln!(
                "Resuming the enrolment interrupted at step {}.",
                j.entry.step.as_str()
            );
            let old_id = j.entry.old_id.as_deref().and_then(|h| hex::decode(h).ok());
            (None, label_of(&token, old_id.as_deref()))
        }
        None => {
            let certs = bank_certificates(&token)?;
            let now = OffsetDateTime::now_utc();
            let policy = &app.config.policy;
            let old: Option<&TokenCert> = match id {
                Some(_) => Some(pick(&certs, id)?),
                None => {
                    let gone: Vec<&TokenCert> = certs
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
                    match gone.as_slice() {
                        [] => None,
                        [one] => Some(*one),
                        _ => {
                            return Err(Error::Usage(format!(
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
                    return Err(Error::Usage(format!(
                        "the certificate {} is still {state}; use `certagent renew` (enroll is for a first certificate or after expiry)",
                        o.cert.subject
                    )));
                }
                eprintln!(
                    "Obtaining a new certificate for user {user} to replace {} (id {}, {state}).",
                    o.cert.subject,
                    hex::encode(&o.id)
                );
            } else {
                eprintln!("Obtaining a first certificate for user {user}.");
            }
            let label = old
                .filter(|o| !o.label.is_empty())
                .map_or(DEFAULT_LABEL.to_string(), |o| o.label.clone());
            (old.map(|o| (o.id.clone(), o.cert.clone())), label)
        }
    };
    if pending.is_none()
        && !yes
        && !app
            .prompt
            .confirm("Obtain a new certificate now? A new key is generated on the token.")?
    {
        return Err(Error::Usage("enrolment cancelled".into()));
    }
    let otp = app.prompt.otp(user)?;
    app.login(&token, "obtain a new bank certificate")?;
    let needs_bank = pending
        .as_ref()
        .is_none_or(|j| j.entry.step <= Step::CsrReady);
    rt.block_on(async {
        let ca = if needs_bank {
            ca_certs(bank).await?
        } else {
            Vec::new()
        };
        let journal = match pending {
            Some(j) => j,
            None => {
                let req = Request {
                    kind: Kind::Enroll {
                        user: user.to_string(),
                    },
                    old,
                    label: label.clone(),
                    key: app.config.key,
                };
                renewal::start(&state_dir, &info.serial, &req).map_err(renewal_error)?
            }
        };
        let wf = Workflow {
            token: token.clone(),
            token_serial: info.serial.clone(),
            state_dir: state_dir.clone(),
            est: est_client(bank, None)?,
            ca_certs: ca,
            otp: Some(otp),
            progress: &progress,
        };
        finish(app, &token, wf.run(journal, &label).await)
    })
}

/// The label to give the new certificate: the replaced one's, else the default.
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

fn finish(
    app: &App,
    token: &Token,
    result: Result<Cert, renewal::RenewalError>,
) -> Result<(), Error> {
    let new = result.map_err(renewal_error)?;
    eprintln!("[done] the new certificate is on the token:");
    let certs = bank_certificates(token)?;
    match certs.iter().find(|c| c.cert.der == new.der) {
        Some(c) => print_certificate(app, c),
        None => Err(Error::Usage(
            "the new certificate is not on the token after all".into(),
        )),
    }
}
