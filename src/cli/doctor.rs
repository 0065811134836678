//! `certagent doctor`: one line per check, with what to do about a failure.

use serde::Serialize;
use time::OffsetDateTime;

use super::{App, pin_state, token_line};
use crate::Error;
use crate::cert::verify;
use crate::i18n::{Arg, Lang, tr_in};
use crate::policy::State;
use crate::prompt::PromptError;
use crate::text::{NAME_MAX, clean};
use crate::token::{Token, TokenError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: String,
    outcome: Outcome,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

struct Report {
    checks: Vec<Check>,
    json: bool,
    lang: Lang,
}

impl Report {
    fn add(&mut self, check: &str, outcome: Outcome, detail: String, fix: Option<String>) {
        let c = Check {
            check: check.to_string(),
            outcome,
            detail,
            fix,
        };
        if !self.json {
            let tag = match c.outcome {
                Outcome::Ok => "ok  ",
                Outcome::Warn => "warn",
                Outcome::Fail => "FAIL",
            };
            println!("{tag}  {:<12} {}", c.check, c.detail);
            if let Some(f) = &c.fix {
                let fix = tr_in(self.lang, "doctor-fix", &[("fix", Arg::Str(f))]);
                println!("      {:<12} {fix}", "");
            }
        }
        self.checks.push(c);
    }
    fn ok(&mut self, check: &str, detail: String) {
        self.add(check, Outcome::Ok, detail, None);
    }
    fn warn(&mut self, check: &str, detail: String, fix: &str) {
        self.add(check, Outcome::Warn, detail, Some(fix.to_string()));
    }
    fn fail(&mut self, check: &str, detail: String, fix: &str) {
        self.add(check, Outcome::Fail, detail, Some(fix.to_string()));
    }
    /// The message `id` in the report's language.
    fn t(&self, id: &str) -> String {
        tr_in(self.lang, id, &[])
    }
    fn ta(&self, id: &str, args: &[(&str, Arg<'_>)]) -> String {
        tr_in(self.lang, id, args)
    }
    /// An error as this report's reader reads it, on one line.
    fn said(&self, e: impl Into<Error>) -> String {
        e.into().for_people(self.lang).replace("\n  ", " ")
    }
}

pub(super) fn run(app: &App) -> Result<(), Error> {
    let mut r = Report {
        checks: Vec::new(),
        json: app.json,
        lang: app.lang,
    };
    checks(app, &mut r);
    let failed = r
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .count();
    if app.json {
        app.print_json(&r.checks)?;
    }
    if failed > 0 {
        return Err(Error::ChecksFailed(format!(
            "{failed} check{} failed",
            if failed == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

fn checks(app: &App, r: &mut Report) {
    match &app.config.source {
        Some(p) => r.ok("config", p.display().to_string()),
        None => {
            let path = crate::config::default_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| r.t("doctor-xdg"));
            let detail = r.ta("doctor-config-defaults", &[("path", Arg::Str(&path))]);
            r.ok("config", detail)
        }
    }

    let module = match app.module() {
        Ok(m) => m,
        Err(e) => {
            let (detail, fix) = (r.said(e), r.t("doctor-module-fix"));
            return r.fail("module", detail, &fix);
        }
    };
    let li = module.info();
    let profile = match li.profile.as_deref() {
        Some(p) => r.ta("cli-profile", &[("name", Arg::Str(p))]),
        None => r.t("cli-no-profile"),
    };
    let detail = r.ta(
        "doctor-module",
        &[
            ("path", Arg::Str(&li.path)),
            ("profile", Arg::Str(&profile)),
            ("maker", Arg::Str(&clean(&li.manufacturer, NAME_MAX))),
            ("description", Arg::Str(&clean(&li.description, NAME_MAX))),
        ],
    );
    r.ok("module", detail);

    let token = match module.open(&app.config.token.selector) {
        Ok(t) => t,
        Err(e) => {
            let proxy = li.profile.as_deref() == Some("p11-kit-proxy");
            let fix = if proxy {
                p11_kit_fix(r.lang)
            } else {
                r.t("doctor-token-fix")
            };
            let detail = r.said(e);
            return r.fail("token", detail, &fix);
        }
    };
    let info = match token.info() {
        Ok(i) => i,
        Err(e) => {
            let (detail, fix) = (r.said(e), r.t("doctor-insert-retry"));
            return r.fail("token", detail, &fix);
        }
    };
    r.ok("token", token_line(r.lang, &info));

    let state = pin_state(r.lang, &info);
    if info.pin_locked {
        let (detail, fix) = (r.t("doctor-pin-locked"), r.t("doctor-pin-locked-fix"));
        return r.fail("pin", detail, &fix);
    } else if info.pin_final_try || info.pin_count_low {
        let detail = r.ta("doctor-pin-counter", &[("state", Arg::Str(&state))]);
        let fix = r.t("doctor-pin-counter-fix");
        r.warn("pin", detail, &fix);
    } else if !info.user_pin_initialized {
        let (detail, fix) = (
            r.t("doctor-pin-uninitialised"),
            r.t("doctor-pin-uninitialised-fix"),
        );
        return r.fail("pin", detail, &fix);
    } else if info.protected_auth_path {
        let detail = r.ta("doctor-pin-pad", &[("state", Arg::Str(&state))]);
        r.ok("pin", detail);
    } else {
        r.ok("pin", state);
    }

    let purpose = r.t("purpose-doctor");
    match app.login(&token, &purpose) {
        Ok(()) => {
            let detail = r.t("doctor-logged-in");
            r.ok("login", detail)
        }
        Err(e) => {
            let fix = match &e {
                Error::Token(TokenError::PinIncorrect { .. }) => "doctor-login-pin-fix",
                Error::Prompt(PromptError::Unavailable { .. }) => "doctor-login-terminal-fix",
                Error::Prompt(PromptError::Cancelled) => "doctor-login-again-fix",
                Error::Token(TokenError::PinLocked) => "doctor-login-locked-fix",
                Error::Token(TokenError::NotFound { .. } | TokenError::Removed { .. }) => {
                    "doctor-login-insert-fix"
                }
                _ => "doctor-login-other-fix",
            };
            let (detail, fix) = (r.said(e), r.t(fix));
            return r.fail("login", detail, &fix);
        }
    }

    key_checks(app, &token, r);
    bank_check(app, r);
}

/// What to do when p11-kit's proxy shows no matching token. p11-kit
/// reads modules from /etc/pkcs11/modules/ and /usr/share/p11-kit/modules/
/// and, for a process that does not run as root, from the user's
/// ~/.config/pkcs11/modules/: as root, the user's list is skipped.
fn p11_kit_fix(lang: Lang) -> String {
    let user_dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config")))
        .map(|c| c.join("pkcs11/modules"));
    let user_modules = user_dir
        .as_ref()
        .and_then(|d| std::fs::read_dir(d).ok())
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "module"))
                .count()
        })
        .unwrap_or(0);
    let root = crate::platform::is_root();
    match (root, user_dir) {
        (true, Some(dir)) if user_modules > 0 => {
            let dir = dir.display().to_string();
            tr_in(
                lang,
                "doctor-p11kit-root-fix",
                &[
                    ("dir", Arg::Str(&dir)),
                    ("count", Arg::Num(user_modules as i64)),
                ],
            )
        }
        _ => tr_in(lang, "doctor-p11kit-fix", &[]),
    }
}

/// The bank answers `/cacerts` over TLS verified against `server_roots`.
fn bank_check(app: &App, r: &mut Report) {
    let Some(bank) = &app.config.bank else {
        let (detail, fix) = (r.t("doctor-no-bank"), r.t("doctor-no-bank-fix"));
        return r.warn("bank", detail, &fix);
    };
    let fetched = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Io)
        .and_then(|rt| rt.block_on(super::renew::fetch_cacerts(bank)));
    match fetched {
        Ok(certs) => {
            let ca = certs
                .first()
                .and_then(|d| crate::cert::Cert::from_der(d).ok())
                .map_or_else(|| "?".to_string(), |c| clean(&c.subject, NAME_MAX));
            let url = bank.est_url.to_string();
            let detail = r.ta(
                "doctor-bank-ok",
                &[("url", Arg::Str(&url)), ("ca", Arg::Str(&ca))],
            );
            r.ok("bank", detail);
        }
        Err(e) => {
            let (detail, fix) = (r.said(e), r.t("doctor-bank-fix"));
            r.fail("bank", detail, &fix)
        }
    }
}

fn key_checks(app: &App, token: &Token, r: &mut Report) {
    let certs = match app.certificates(token) {
        Ok(c) => c.bank,
        Err(e) => {
            let (detail, fix) = (r.said(e), r.t("doctor-insert-retry"));
            return r.fail("certificates", detail, &fix);
        }
    };
    if certs.is_empty() {
        let (detail, fix) = (r.t("doctor-no-cert"), r.t("doctor-no-cert-fix"));
        return r.fail("certificates", detail, &fix);
    }
    let now = OffsetDateTime::now_utc();
    // A fresh random challenge: a key that merely replays a signature fails.
    let mut challenge = [0u8; 32];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut challenge).is_err() {
        let (detail, fix) = (r.t("doctor-no-random"), r.t("doctor-no-random-fix"));
        return r.fail("certificates", detail, &fix);
    }
    for c in &certs {
        let name = format!("cert {}", short(&c.id));
        let who = c.cert.holder();
        let a = app
            .config
            .policy
            .assess(c.cert.not_before, c.cert.not_after, now);
        let when = crate::i18n::expiry_in(
            r.lang,
            crate::policy::expires(c.cert.not_after).then_some(a.days_left),
        );
        let (who, when) = (Arg::Str(&who), Arg::Str(&when));
        match a.state {
            State::Valid => {
                let detail = r.ta("doctor-cert-valid", &[("who", who), ("when", when)]);
                r.ok(&name, detail)
            }
            // The lifecycle is `status`'s business; here it is a warning,
            // since the token itself works.
            _ => {
                let state = a.state.name_in(r.lang);
                let detail = r.ta(
                    "doctor-cert-state",
                    &[("who", who), ("state", Arg::Str(&state)), ("when", when)],
                );
                let fix = a.state.advice_in(r.lang);
                r.warn(&name, detail, &fix)
            }
        }
        let key = match token.private_key(&c.id) {
            Ok(Some(k)) => k,
            Ok(None) => {
                let id = hex::encode(&c.id);
                let detail = r.ta("doctor-no-key", &[("id", Arg::Str(&id))]);
                let fix = r.t("doctor-no-key-fix");
                r.fail(&name, detail, &fix);
                continue;
            }
            Err(e) => {
                let (detail, fix) = (r.said(e), r.t("doctor-insert-retry"));
                r.fail(&name, detail, &fix);
                continue;
            }
        };
        if key.extractable || !key.sensitive {
            let detail = r.t(if key.extractable {
                "doctor-key-extractable"
            } else {
                "doctor-key-not-sensitive"
            });
            let fix = r.t("doctor-key-exposed-fix");
            r.warn(&name, detail, &fix);
        }
        let mut signed = Vec::new();
        for &scheme in c.cert.schemes() {
            if !token.supports(scheme) {
                continue;
            }
            match token.sign(&c.id, scheme, &challenge) {
                Ok(sig) if verify(&c.cert.spki_der, scheme, &challenge, &sig) => {
                    signed.push(scheme.jws_name())
                }
                Ok(_) => {
                    let scheme = scheme.to_string();
                    let detail = r.ta("doctor-sig-mismatch", &[("scheme", Arg::Str(&scheme))]);
                    let fix = r.t("doctor-sig-mismatch-fix");
                    r.fail(&name, detail, &fix);
                    signed.clear();
                    break;
                }
                Err(e) => {
                    let (scheme, error) = (scheme.to_string(), r.said(e));
                    let detail = r.ta(
                        "doctor-sign-failed",
                        &[("scheme", Arg::Str(&scheme)), ("error", Arg::Str(&error))],
                    );
                    let fix = r.t("doctor-insert-retry");
                    r.fail(&name, detail, &fix);
                    signed.clear();
                    break;
                }
            }
        }
        if !signed.is_empty() {
            let schemes = signed.join(", ");
            let detail = r.ta("doctor-key-ok", &[("schemes", Arg::Str(&schemes))]);
            r.ok(&name, detail);
        } else if !r
            .checks
            .last()
            .is_some_and(|l| l.check == name && l.outcome == Outcome::Fail)
        {
            let key = c.cert.key.to_string();
            let detail = r.ta("doctor-no-scheme", &[("key", Arg::Str(&key))]);
            let fix = r.t("doctor-no-scheme-fix");
            r.fail(&name, detail, &fix);
        }
    }
}

fn short(id: &[u8]) -> String {
    let h = hex::encode(id);
    if h.len() > 8 { h[..8].to_string() } else { h }
}
