//! `certagent renew` and `certagent enroll` on the terminal: the bank's old
//! procedure (pre-check, confirm, key on the token, issuance, install, show).
//! The procedure itself is [`crate::renewal`]'s, shared with the agent; this
//! file asks, prints and hands over.

use std::sync::Arc;

use time::OffsetDateTime;

use super::status::print_certificate;
use super::{App, TokenCert, runtime};
use crate::Error;
use crate::config::BankConfig;
use crate::est::EstClient;
use crate::i18n::Arg;
use crate::renewal::{self, Attempt, CardLogin, Plan, Step};
use crate::token::TokenError;

fn bank(app: &App) -> Result<&BankConfig, Error> {
    app.config.bank.as_ref().ok_or_else(|| {
        Error::Usage(
            "the configuration has no [bank] section; est_url and server_roots are needed to reach the bank".into(),
        )
    })
}

fn progress(step: Step, message: &str) {
    // Progress names certificates: one cleaned line.
    let message = crate::text::clean(message, crate::text::MESSAGE_MAX);
    eprintln!("[{}] {message}", step.as_str());
}

fn renewal_error(e: impl Into<renewal::RenewalError>) -> Error {
    Error::Renewal(e.into())
}

fn state_dir() -> Result<std::path::PathBuf, Error> {
    crate::config::state_dir().map_err(Error::Io)
}

/// `GET /cacerts` over server-authenticated TLS.
pub(super) async fn fetch_cacerts(bank: &BankConfig) -> Result<Vec<Vec<u8>>, Error> {
    let client: EstClient = crate::bank_ca::est_client(bank, None).map_err(renewal_error)?;
    client.cacerts().await.map_err(renewal_error)
}

fn hex_id(id: Option<&str>) -> Result<Option<Vec<u8>>, Error> {
    id.map(|h| {
        hex::decode(h.trim().trim_start_matches("0x"))
            .map_err(|_| Error::Usage(format!("--id {h:?} is not hex")))
    })
    .transpose()
}

/// What `renew` and `enroll` differ in.
enum Ask<'a> {
    Renew,
    Enroll { user: &'a str },
}

pub(super) fn renew(app: &App, id: Option<&str>, yes: bool) -> Result<(), Error> {
    run(app, Ask::Renew, id, yes)
}

pub(super) fn enroll(app: &App, user: &str, id: Option<&str>, yes: bool) -> Result<(), Error> {
    run(app, Ask::Enroll { user }, id, yes)
}

/// Pre-check (which may resume an interrupted attempt), confirm, PIN (and
/// one-time password), then the shared procedure; the login ends with it.
fn run(app: &App, ask: Ask<'_>, id: Option<&str>, yes: bool) -> Result<(), Error> {
    let bank = bank(app)?;
    let want = hex_id(id)?;
    let token = Arc::new(app.open_token()?);
    let info = token.info()?;
    if info.pin_locked {
        return Err(TokenError::PinLocked.into());
    }
    renewal::check_token(&token).map_err(renewal_error)?;
    let state_dir = state_dir()?;
    let certs = app.certificates_for_bank(&token)?;
    let now = OffsetDateTime::now_utc();
    let policy = &app.config.policy;
    let serial = &info.serial;
    let mut plan = match ask {
        Ask::Renew => {
            renewal::plan_renewal(&state_dir, serial, &certs, policy, want.as_deref(), now)
        }
        Ask::Enroll { user } => renewal::plan_enrollment(
            &state_dir,
            serial,
            &certs,
            policy,
            user,
            want.as_deref(),
            now,
        ),
    }
    .map_err(renewal_error)?;
    // A card with fixed key slots: the new key's slot, chosen before the
    // question so a full card is told before anything is asked.
    renewal::choose_slot(&token, &mut plan, &state_dir, &app.issuers()).map_err(renewal_error)?;
    let (doing, question, cancelled, purpose) = match ask {
        Ask::Renew => (
            "renew-doing",
            "renew-question",
            "renew-cancelled",
            "purpose-renew",
        ),
        Ask::Enroll { .. } => (
            "enroll-doing",
            "enroll-question",
            "enroll-cancelled",
            "purpose-enroll",
        ),
    };
    let described = plan.describe_in(app.lang);
    let described = &[("plan", Arg::Str(&described))];
    match &plan {
        Plan::Resume(_) => eprintln!("{}", app.tr("resuming", described)),
        Plan::Start(_) => {
            eprintln!("{}", app.tr(doing, described));
            if !yes && !app.prompt.confirm(&app.tr(question, &[]))? {
                return Err(Error::Usage(app.tr(cancelled, &[])));
            }
        }
    }
    renewal::check_state_dir(&state_dir).map_err(renewal_error)?;
    let otp = match ask {
        Ask::Enroll { user } => Some(app.prompt.otp(user)?),
        Ask::Renew => None,
    };
    let purpose = app.tr(purpose, &[]);
    let card = match token.card_family() {
        None => {
            app.login(&token, &purpose)?;
            None
        }
        Some(_) => Some(card_login(app, &token, &purpose)?),
    };
    let attempt = Attempt {
        token_serial: info.serial.clone(),
        bank,
        key: app.config.key,
        state_dir: &state_dir,
        otp,
        card: card.as_ref(),
        progress: &progress,
    };
    let mut door = Terminal {
        module: token.module_arc(),
        selector: &app.config.token.selector,
    };
    let ended = runtime()?.block_on(renewal::run(&mut door, token, &attempt, plan));
    let removed = || {
        let is_card = card.is_some();
        removed_during(is_card, &state_dir, &info.serial, &ask)
    };
    match (ended.token, ended.result) {
        (
            None,
            Err(renewal::RenewalError::Token(
                TokenError::Removed { .. } | TokenError::NotFound { .. },
            )),
        ) => Err(removed()),
        (None, result) => result.map(|_| ()).map_err(renewal_error),
        (Some(token), Err(_)) if gone(&token) => Err(removed()),
        (Some(token), result) => {
            // The login ends with the operation (other sessions of this
            // process would keep it otherwise).
            if let Err(e) = token.logout() {
                log::debug!("logging out: {e}");
            }
            finish(app, &token, result)
        }
    }
}

/// The terminal's way to read a card again: it owns the only token.
struct Terminal<'a> {
    module: Arc<crate::token::Module>,
    selector: &'a crate::token::TokenSelector,
}

impl renewal::Reopen for Terminal<'_> {
    fn close(&mut self, token: Arc<crate::token::Token>) {
        if let Err(e) = token.logout() {
            log::debug!("logging out before reading the card again: {e}");
        }
    }

    fn open(&mut self) -> Result<Arc<crate::token::Token>, TokenError> {
        self.module.open(self.selector).map(Arc::new)
    }
}

/// The user PIN (logged in with it now, so a wrong one stops here) and the
/// card's admin PIN, for a renewal on a card with fixed key slots. Each is
/// asked once and never retried.
fn card_login(
    app: &App,
    token: &Arc<crate::token::Token>,
    purpose: &str,
) -> Result<CardLogin, Error> {
    let info = token.info()?;
    let user = if info.protected_auth_path {
        eprintln!("{}", app.tr("cli-enter-on-pad", &[]));
        None
    } else {
        Some(app.prompt.pin(&info, purpose)?)
    };
    token.logout()?;
    token.login(user.as_ref())?;
    let admin = if info.protected_auth_path {
        None
    } else {
        Some(app.prompt.admin_pin(&info, purpose)?)
    };
    Ok(CardLogin { user, admin })
}

/// Whether the token went away as the renewal failed (pulled, or its
/// reader gone): one C_GetTokenInfo.
fn gone(token: &crate::token::Token) -> bool {
    matches!(
        token.refresh_info(),
        Err(TokenError::Removed { .. } | TokenError::NotFound { .. })
    )
}

/// The renewal stopped because the token was removed: say so, at which
/// step, and how to go on (the journal stays; the same command resumes).
fn removed_during(
    is_card: bool,
    state_dir: &std::path::Path,
    serial: &str,
    ask: &Ask<'_>,
) -> Error {
    let step = renewal::Journal::load(state_dir, serial)
        .ok()
        .flatten()
        .map_or_else(
            || "the start".to_string(),
            |j| j.entry.step.as_str().to_string(),
        );
    let again = match ask {
        Ask::Renew => "certagent renew".to_string(),
        Ask::Enroll { user } => format!("certagent enroll --user {user}"),
    };
    renewal_error(renewal::RenewalError::Removed {
        what: if is_card { "card" } else { "token" },
        step,
        again,
    })
}

fn finish(
    app: &App,
    token: &crate::token::Token,
    result: Result<TokenCert, renewal::RenewalError>,
) -> Result<(), Error> {
    let mut new = result.map_err(renewal_error)?;
    eprintln!("[done] {}", app.tr("renew-done", &[]));
    // Shown from what was installed (read back and test-signed by the
    // renewal): no second pass over the token, but for a card, which names
    // its certificates itself: the label is the one the card shows.
    if token.card_family().is_some()
        && let Ok(certs) = token.certificates()
        && let Some(c) = certs.into_iter().find(|c| c.der == new.cert.der)
    {
        new.id = c.id;
        new.label = c.label;
    }
    print_certificate(app, &new)
}
