//! `certagent doctor`: one line per check, with what to do about a failure.

use serde::Serialize;
use time::OffsetDateTime;

use super::{App, pin_state, token_line};
use crate::Error;
use crate::cert::verify;
use crate::policy::State;
use crate::prompt::PromptError;
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

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
    json: bool,
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
                println!("      {:<12} fix: {f}", "");
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
}

pub(super) fn run(app: &App) -> Result<(), Error> {
    let mut r = Report {
        json: app.json,
        ..Report::default()
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
        None => r.ok(
            "config",
            format!(
                "built-in defaults (no file at {})",
                crate::config::default_path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "the XDG config dir".into())
            ),
        ),
    }

    let module = match app.module() {
        Ok(m) => m,
        Err(e) => {
            return r.fail(
                "module",
                e.to_string(),
                "install the token's PKCS#11 module, or set [token] module to a profile name or library path",
            );
        }
    };
    let li = module.info();
    r.ok(
        "module",
        format!(
            "{} ({}; {} {})",
            li.path,
            li.profile
                .as_deref()
                .map(|p| format!("profile {p}"))
                .unwrap_or_else(|| "no matching profile".into()),
            li.manufacturer,
            li.description
        ),
    );

    let token = match module.open(&app.config.token.selector) {
        Ok(t) => t,
        Err(e) => {
            let proxy = li.profile.as_deref() == Some("p11-kit-proxy");
            return r.fail(
                "token",
                e.to_string(),
                &if proxy {
                    p11_kit_fix()
                } else {
                    "insert the token, and check [token] label, serial or uri".into()
                },
            );
        }
    };
    let info = match token.info() {
        Ok(i) => i,
        Err(e) => return r.fail("token", e.to_string(), "insert the token and try again"),
    };
    r.ok("token", token_line(&info));

    let state = pin_state(&info);
    if info.pin_locked {
        return r.fail(
            "pin",
            "the user PIN is locked".into(),
            "ask your bank administrator (the token's security officer) to unlock it",
        );
    } else if info.pin_final_try || info.pin_count_low {
        r.warn(
            "pin",
            format!("PIN counter: {state}"),
            "enter the PIN carefully: the token locks after too many wrong PINs",
        );
    } else if !info.user_pin_initialized {
        return r.fail(
            "pin",
            "the user PIN is not initialised".into(),
            "initialise the token's user PIN with its administration tool",
        );
    } else {
        r.ok(
            "pin",
            format!(
                "{state}{}",
                if info.protected_auth_path {
                    " (PIN pad)"
                } else {
                    ""
                }
            ),
        );
    }

    match app.login(&token, "certagent doctor") {
        Ok(()) => r.ok("login", "logged in".into()),
        Err(Error::Token(e @ TokenError::PinIncorrect { .. })) => {
            return r.fail(
                "login",
                e.to_string(),
                "check the PIN and run `certagent doctor` again; certagent never retries a PIN by itself",
            );
        }
        Err(e) => {
            let fix = match &e {
                Error::Prompt(PromptError::Unavailable { .. }) => {
                    "run `certagent doctor` in a terminal to type the PIN (or set CERTAGENT_PIN for an unattended check)"
                }
                Error::Prompt(PromptError::Cancelled) => {
                    "run `certagent doctor` again and enter the PIN"
                }
                Error::Token(TokenError::PinLocked) => {
                    "ask your bank administrator (the token's security officer) to unlock the PIN"
                }
                Error::Token(TokenError::NotFound { .. } | TokenError::Removed { .. }) => {
                    "insert the token and run `certagent doctor` again"
                }
                _ => "correct what the message names, then run `certagent doctor` again",
            };
            return r.fail("login", e.to_string(), fix);
        }
    }

    key_checks(app, &token, r);
    bank_check(app, r);
}

/// What to do when p11-kit's proxy shows no matching token. p11-kit
/// reads modules from /etc/pkcs11/modules/ and /usr/share/p11-kit/modules/
/// and, for a process that does not run as root, from the user's
/// ~/.config/pkcs11/modules/: as root, the user's list is skipped.
fn p11_kit_fix() -> String {
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
    #[cfg(unix)]
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    #[cfg(not(unix))]
    let root = false;
    match (root, user_dir) {
        (true, Some(dir)) if user_modules > 0 => format!(
            "p11-kit skips your own module list ({}, {user_modules} module(s)) in a program running as root: run certagent as your user, or register the module for everyone in /etc/pkcs11/modules/ (a NAME.module file with `module: /path/to/lib.so`)",
            dir.display()
        ),
        _ => "insert the token; p11-kit's proxy shows only modules registered with p11-kit (`p11-kit list-modules`): register the token's module in /etc/pkcs11/modules/ or ~/.config/pkcs11/modules/, or set [token] module to the module itself".into(),
    }
}

/// The bank answers `/cacerts` over TLS verified against `server_roots`.
fn bank_check(app: &App, r: &mut Report) {
    let Some(bank) = &app.config.bank else {
        return r.warn(
            "bank",
            "no [bank] section in the configuration".into(),
            "add [bank] est_url and server_roots to renew from certagent",
        );
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
                .map_or_else(|| "?".to_string(), |c| c.subject);
            r.ok("bank", format!("{} answers; issuing CA {ca}", bank.est_url));
        }
        Err(e) => r.fail(
            "bank",
            e.to_string(),
            "check the network, [bank] est_url, and that server_roots holds the bank's TLS trust anchor",
        ),
    }
}

fn key_checks(app: &App, token: &Token, r: &mut Report) {
    let certs = match app.certificates(token) {
        Ok(c) => c.bank,
        Err(e) => {
            return r.fail(
                "certificates",
                e.to_string(),
                "insert the token and try again",
            );
        }
    };
    if certs.is_empty() {
        return r.fail(
            "certificates",
            "no bank certificate on the token".into(),
            "obtain one with `certagent enroll --user ID` and the bank's one-time password",
        );
    }
    let now = OffsetDateTime::now_utc();
    // A fresh random challenge: a key that merely replays a signature fails.
    let mut challenge = [0u8; 32];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut challenge).is_err() {
        return r.fail(
            "certificates",
            "no system randomness".into(),
            "check the system",
        );
    }
    for c in &certs {
        let name = format!("cert {}", short(&c.id));
        let who = &c.cert.subject;
        let a = app
            .config
            .policy
            .assess(c.cert.not_before, c.cert.not_after, now);
        match a.state {
            State::Valid => r.ok(
                &name,
                format!("{who}: valid, {}", crate::i18n::expiry(Some(a.days_left))),
            ),
            // The lifecycle is `status`'s business; here it is a warning,
            // since the token itself works.
            _ => r.warn(
                &name,
                format!(
                    "{who}: {} ({})",
                    a.state,
                    crate::i18n::expiry(Some(a.days_left))
                ),
                a.state.advice(),
            ),
        }
        let key = match token.private_key(&c.id) {
            Ok(Some(k)) => k,
            Ok(None) => {
                r.fail(
                    &name,
                    format!("no private key with id {} on the token", hex::encode(&c.id)),
                    "the certificate is unusable without its key; obtain a new one with `certagent enroll`",
                );
                continue;
            }
            Err(e) => {
                r.fail(&name, e.to_string(), "insert the token and try again");
                continue;
            }
        };
        if key.extractable || !key.sensitive {
            r.warn(
                &name,
                format!(
                    "the private key is {}",
                    if key.extractable {
                        "extractable"
                    } else {
                        "not sensitive"
                    }
                ),
                "renew the certificate: certagent's new keys never leave the token",
            );
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
                    r.fail(
                        &name,
                        format!("a {scheme} signature by the key does not verify against the certificate"),
                        "the key and certificate do not belong together; obtain a new certificate with `certagent enroll`",
                    );
                    signed.clear();
                    break;
                }
                Err(e) => {
                    r.fail(
                        &name,
                        format!("{scheme} signing failed: {e}"),
                        "insert the token and try again",
                    );
                    signed.clear();
                    break;
                }
            }
        }
        if !signed.is_empty() {
            r.ok(
                &name,
                format!(
                    "key signs and matches the certificate ({})",
                    signed.join(", ")
                ),
            );
        } else if !r
            .checks
            .last()
            .is_some_and(|l| l.check == name && l.outcome == Outcome::Fail)
        {
            r.fail(
                &name,
                format!(
                    "the token offers no way to sign with this {} key",
                    c.cert.key
                ),
                "check the token's driver profile and mechanisms (`certagent tokens`)",
            );
        }
    }
}

fn short(id: &[u8]) -> String {
    let h = hex::encode(id);
    if h.len() > 8 { h[..8].to_string() } else { h }
}
