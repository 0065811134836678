//! `certagent status` and `certagent show`.

use serde::Serialize;
use time::OffsetDateTime;

use super::{App, TokenCert, pad, status_entry, token_line};
use crate::Error;
use crate::cert::{StatusEntry, rfc3339};
use crate::i18n::{Arg, datetime_in};
use crate::policy::Assessment;
use crate::text::{MESSAGE_MAX, NAME_MAX, clean, quoted};
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
    /// A bank certificate certagent replaced that the card could not
    /// remove: it stays until it expires, never used or renewed.
    replaced: bool,
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
    token.end_with_process();
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
            replaced: certs.superseded.contains(&c.id) && certs.issuer_known,
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
    println!("{}", token_line(app.lang, &info));
    for (replaced, heading) in [(true, "status-replaced"), (false, "status-others")] {
        let group: Vec<&OtherEntry> = others.iter().filter(|o| o.replaced == replaced).collect();
        if group.is_empty() {
            continue;
        }
        println!();
        println!("  {}", app.tr(heading, &[]));
        for o in group {
            let (subject, issuer) = (clean(&o.subject, NAME_MAX), clean(&o.issuer, NAME_MAX));
            let line = app.tr(
                "status-other",
                &[
                    ("subject", Arg::Str(&subject)),
                    ("id", Arg::Str(&o.id)),
                    ("issuer", Arg::Str(&issuer)),
                ],
            );
            println!("    {line}");
        }
    }
    if entries.is_empty() {
        println!("{}", app.tr("status-none", &[]));
        return Ok(());
    }
    let field = |id: &str| pad(&app.tr(id, &[]), 12);
    for (c, e) in certs.bank.iter().zip(&entries) {
        // Named by its holder; `show` has the whole subject.
        println!();
        println!("  {}", c.cert.holder());
        println!("    {}{}", field("field-id"), e.id);
        println!("    {}{}", field("field-serial"), e.serial);
        let (from, until) = (
            crate::i18n::datetime_in(app.lang, c.cert.not_before),
            crate::i18n::datetime_in(app.lang, c.cert.not_after),
        );
        let range = app.tr(
            "valid-range",
            &[("from", Arg::Str(&from)), ("until", Arg::Str(&until))],
        );
        let expires = crate::policy::expires(c.cert.not_after);
        if expires {
            println!("    {}{range}", field("field-valid"));
        } else {
            println!(
                "    {}{range} {}",
                field("field-valid"),
                app.tr("no-expiry-date", &[])
            );
        }
        let (state, when) = (
            e.state.name_in(app.lang),
            crate::i18n::expiry_in(app.lang, expires.then_some(e.days_left)),
        );
        let state = app.tr(
            "state-when",
            &[("state", Arg::Str(&state)), ("when", Arg::Str(&when))],
        );
        let advice = e.state.advice_in(app.lang);
        let line = app.tr(
            "status-state",
            &[("state", Arg::Str(&state)), ("advice", Arg::Str(&advice))],
        );
        println!("    {}{line}", field("field-state"));
        let next = app
            .config
            .policy
            .assess(c.cert.not_before, c.cert.not_after, now)
            .next_notice;
        if let Some(n) = next {
            let at = datetime_in(app.lang, n.at);
            println!("    {}{at}", field("field-next-notice"));
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
    token.end_with_process();
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
    print!("{}", describe(app, c, &a, &report));
    Ok(())
}

/// `a` is the assessment `r` was made from (its times unformatted).
fn describe(app: &App, c: &TokenCert, a: &Assessment, r: &ShowReport<'_>) -> String {
    let lang = app.lang;
    let s = &r.status;
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{}{v}\n", pad(&app.tr(k, &[]), 18)));
    // Names from the certificate, cleaned (whole: `show` is where the
    // subject is read in full).
    line("show-subject", &clean(&s.subject, MESSAGE_MAX));
    line("show-issuer", &clean(r.issuer, MESSAGE_MAX));
    line("show-serial", &s.serial);
    line("show-valid-from", &datetime_in(lang, c.cert.not_before));
    let until = datetime_in(lang, c.cert.not_after);
    let state = s.state.name_in(lang);
    let when = crate::i18n::expiry_in(lang, r.expires.then_some(s.days_left));
    let state = app.tr(
        "state-when",
        &[("state", Arg::Str(&state)), ("when", Arg::Str(&when))],
    );
    if r.expires {
        line("show-valid-until", &until);
    } else {
        line(
            "show-valid-until",
            &format!("{until} {}", app.tr("no-expiry-date", &[])),
        );
    }
    line("show-state", &state);
    line("show-advice", &s.state.advice_in(lang));
    if r.expires {
        line(
            "show-renewal-opens",
            &a.renewal_opens
                .map_or_else(|| app.tr("show-never", &[]), |t| datetime_in(lang, t)),
        );
        line(
            "show-grace-ends",
            &a.grace_ends
                .map_or_else(|| app.tr("show-no-end", &[]), |t| datetime_in(lang, t)),
        );
    } else {
        line("show-renewal-opens", &app.tr("show-never-renews", &[]));
    }
    if let Some(n) = a.next_notice {
        line("show-next-notice", &datetime_in(lang, n.at));
    }
    line("show-key", &r.key);
    if !r.subject_alt_names.is_empty() {
        line(
            "show-san",
            &clean(&r.subject_alt_names.join(", "), MESSAGE_MAX),
        );
    }
    line(
        "show-client-auth",
        &app.tr(
            if r.client_auth {
                "show-client-auth-yes"
            } else {
                "show-client-auth-no"
            },
            &[],
        ),
    );
    let label = quoted(r.label);
    line(
        "show-object",
        &app.tr(
            "show-object-value",
            &[("id", Arg::Str(&s.id)), ("label", Arg::Str(&label))],
        ),
    );
    line("SHA-256", r.sha256_fingerprint);
    out
}
