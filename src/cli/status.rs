//! `certagent status` and `certagent show`.

use serde::Serialize;
use time::OffsetDateTime;

use super::{App, TokenCert, status_entry, token_line};
use crate::Error;
use crate::cert::{StatusEntry, rfc3339};
use crate::token::TokenInfo;

#[derive(Serialize)]
struct StatusReport {
    token: TokenJson,
    certificates: Vec<StatusEntry>,
    /// End-entity certificates not issued by the bank: never offered to a
    /// page, used for logon or renewed.
    other_certificates: Vec<OtherEntry>,
}

#[derive(Serialize)]
struct OtherEntry {
    id: String,
    subject: String,
    issuer: String,
    not_after: String,
}

#[derive(Serialize)]
struct TokenJson {
    #[serde(flatten)]
    info: TokenInfo,
    uri: String,
}

pub(super) fn status(app: &App) -> Result<(), Error> {
    let token = app.open_token()?;
    let info = token.info()?;
    let now = OffsetDateTime::now_utc();
    let certs = app.certificates(&token)?;
    let entries: Vec<StatusEntry> = certs
        .bank
        .iter()
        .map(|c| status_entry(c, &app.config.policy, now))
        .collect();
    let others: Vec<OtherEntry> = certs
        .others
        .iter()
        .map(|c| OtherEntry {
            id: hex::encode(&c.id),
            subject: c.cert.subject.clone(),
            issuer: c.cert.issuer.clone(),
            not_after: rfc3339(c.cert.not_after),
        })
        .collect();
    if app.json {
        return app.print_json(&StatusReport {
            token: TokenJson {
                uri: info.uri(),
                info,
            },
            certificates: entries,
            other_certificates: others,
        });
    }
    println!("{}", token_line(&info));
    if !others.is_empty() {
        println!();
        println!("  other certificates (not the bank's; certagent leaves them alone):");
        for o in &others {
            println!("    {} (id {}), issued by {}", o.subject, o.id, o.issuer);
        }
    }
    if entries.is_empty() {
        println!("no bank certificate on the token; obtain one with `certagent enroll --user ID`");
        return Ok(());
    }
    for (c, e) in certs.bank.iter().zip(&entries) {
        println!();
        println!("  {}", e.subject);
        println!("    id          {}", e.id);
        println!("    serial      {}", e.serial);
        if crate::policy::expires(c.cert.not_after) {
            println!("    valid       {} to {}", e.not_before, e.not_after);
            println!(
                "    state       {} ({}): {}",
                e.state,
                crate::i18n::expiry(Some(e.days_left)),
                e.state.advice()
            );
        } else {
            println!(
                "    valid       {} to {} (no expiry date)",
                e.not_before, e.not_after
            );
            println!(
                "    state       {} (never expires): {}",
                e.state,
                e.state.advice()
            );
        }
        if let Some(n) = &e.next_notice {
            println!("    next notice {n}");
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ShowReport<'a> {
    #[serde(flatten)]
    status: StatusEntry,
    label: &'a str,
    issuer: &'a str,
    key: String,
    subject_alt_names: &'a [String],
    client_auth: bool,
    sha256_fingerprint: &'a str,
    /// `null` for a certificate without expiry (RFC 5280's 99991231235959Z).
    renewal_opens: Option<String>,
    /// `null` when the grace period never ends.
    grace_ends: Option<String>,
    advice: &'static str,
    pem: String,
    /// False for RFC 5280's "no well-defined expiration date".
    #[serde(skip)]
    expires: bool,
}

pub(super) fn pick<'a>(certs: &'a [TokenCert], id: Option<&str>) -> Result<&'a TokenCert, Error> {
    let list = || {
        certs
            .iter()
            .map(|c| format!("{} ({})", hex::encode(&c.id), c.cert.subject))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match id {
        Some(hexid) => {
            let want = hex::decode(hexid.trim().trim_start_matches("0x"))
                .map_err(|_| Error::Usage(format!("--id {hexid:?} is not hex")))?;
            certs.iter().find(|c| c.id == want).ok_or_else(|| {
                Error::Usage(format!(
                    "no certificate with id {hexid} on the token (present: {})",
                    if certs.is_empty() {
                        "none".into()
                    } else {
                        list()
                    }
                ))
            })
        }
        None => match certs {
            [] => Err(Error::Usage("no bank certificate on the token".into())),
            [one] => Ok(one),
            _ => Err(Error::Usage(format!(
                "the token holds {} certificates; choose one with --id ({})",
                certs.len(),
                list()
            ))),
        },
    }
}

pub(super) fn show(app: &App, id: Option<&str>) -> Result<(), Error> {
    let token = app.open_token()?;
    let certs = app.certificates(&token)?;
    let c = pick(&certs.bank, id)?;
    print_certificate(app, c)
}

/// One certificate as a person reads it (or JSON with `--json`).
pub(super) fn print_certificate(app: &App, c: &TokenCert) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    let a = app
        .config
        .policy
        .assess(c.cert.not_before, c.cert.not_after, now);
    let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &c.cert.der)
        .map_err(|e| Error::Usage(format!("cannot encode PEM: {e}")))?;
    let report = ShowReport {
        status: status_entry(c, &app.config.policy, now),
        label: &c.label,
        issuer: &c.cert.issuer,
        key: c.cert.key.to_string(),
        subject_alt_names: &c.cert.san,
        client_auth: c.cert.client_auth,
        sha256_fingerprint: &c.cert.sha256_fingerprint,
        renewal_opens: a.renewal_opens.map(rfc3339),
        grace_ends: a.grace_ends.map(rfc3339),
        advice: a.state.advice(),
        pem,
        expires: crate::policy::expires(c.cert.not_after),
    };
    if app.json {
        return app.print_json(&report);
    }
    print!("{}", describe(&report));
    Ok(())
}

fn describe(r: &ShowReport<'_>) -> String {
    let s = &r.status;
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<18}{v}\n"));
    line("Subject", &s.subject);
    line("Issued by", r.issuer);
    line("Serial number", &s.serial);
    line("Valid from", &s.not_before);
    if r.expires {
        line("Valid until", &s.not_after);
        line(
            "State",
            &format!("{} ({})", s.state, crate::i18n::expiry(Some(s.days_left))),
        );
    } else {
        line("Valid until", &format!("{} (no expiry date)", s.not_after));
        line("State", &format!("{} (never expires)", s.state));
    }
    line("What to do", r.advice);
    if r.expires {
        line(
            "Renewal opens",
            r.renewal_opens.as_deref().unwrap_or("never"),
        );
        line("New one until", r.grace_ends.as_deref().unwrap_or("no end"));
    } else {
        line("Renewal opens", "never (the certificate does not expire)");
    }
    if let Some(n) = &s.next_notice {
        line("Next notice", n);
    }
    line("Key", &r.key);
    if !r.subject_alt_names.is_empty() {
        line("Alternative names", &r.subject_alt_names.join(", "));
    }
    line(
        "Client logon",
        if r.client_auth {
            "allowed"
        } else {
            "NOT allowed by the certificate's key usage"
        },
    );
    line("Token object", &format!("id {} label {:?}", s.id, r.label));
    line("SHA-256", r.sha256_fingerprint);
    out
}
