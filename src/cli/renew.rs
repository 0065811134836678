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
use crate::renewal::{self, Plan, Renewal, Step};
use crate::token::TokenError;

fn bank(app: &App) -> Result<&BankConfig, Error> {
    app.config.bank.as_ref().ok_or_else(|| {
        Error::Usage(
            "the configuration has no [bank] section; est_url and server_roots are needed to reach the bank".into(),
        )
    })
}

fn progress(step: Step, message: &str) {
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
    let client: EstClient = renewal::est_client(bank, None).map_err(renewal_error)?;
    client.cacerts().await.map_err(renewal_error)
}

fn hex_id(id: Option<&str>) -> Result<Option<Vec<u8>>, Error> {
    id.map(|h| {
        hex::decode(h.trim().trim_start_matches("0x"))
            .map_err(|_| Error::Usage(format!("--id {h:?} is not hex")))
    })
    .transpose()
}

pub(super) fn renew(app: &App, id: Option<&str>, yes: bool) -> Result<(), Error> {
    let bank = bank(app)?;
    let want = hex_id(id)?;
    let token = Arc::new(app.open_token()?);
    let info = token.info()?;
    if info.pin_locked {
        return Err(TokenError::PinLocked.into());
    }
    let state_dir = state_dir()?;
    let certs = app.certificates_for_bank(&token)?;
    let plan = renewal::plan_renewal(
        &state_dir,
        &info.serial,
        &certs,
        &app.config.policy,
        want.as_deref(),
        OffsetDateTime::now_utc(),
    )
    .map_err(renewal_error)?;
    match &plan {
        Plan::Resume(_) => eprintln!("Resuming {}.", plan.describe()),
        Plan::Start(_) => {
            eprintln!("Renewing: {}.", plan.describe());
            if !yes
                && !app
                    .prompt
                    .confirm("Renew this certificate now? A new key is generated on the token.")?
            {
                return Err(Error::Usage("renewal cancelled".into()));
            }
        }
    }
    renewal::check_state_dir(&state_dir).map_err(renewal_error)?;
    app.login(&token, "renew the bank certificate")?;
    let rt = runtime()?;
    let result = rt.block_on(renewal::execute(
        Renewal {
            token: token.clone(),
            token_serial: info.serial.clone(),
            bank,
            key: app.config.key,
            state_dir: &state_dir,
            otp: None,
            progress: &progress,
        },
        plan,
    ));
    // The login ends with the operation (other sessions of this process
    // would keep it otherwise).
    if let Err(e) = token.logout() {
        log::debug!("logging out: {e}");
    }
    finish(app, result)
}

pub(super) fn enroll(app: &App, user: &str, id: Option<&str>, yes: bool) -> Result<(), Error> {
    let bank = bank(app)?;
    let want = hex_id(id)?;
    let token = Arc::new(app.open_token()?);
    let info = token.info()?;
    if info.pin_locked {
        return Err(TokenError::PinLocked.into());
    }
    let state_dir = state_dir()?;
    let certs = app.certificates_for_bank(&token)?;
    let plan = renewal::plan_enrollment(
        &state_dir,
        &info.serial,
        &certs,
        &app.config.policy,
        user,
        want.as_deref(),
        OffsetDateTime::now_utc(),
    )
    .map_err(renewal_error)?;
    match &plan {
        Plan::Resume(_) => eprintln!("Resuming {}.", plan.describe()),
        Plan::Start(_) => {
            eprintln!("Obtaining {}.", plan.describe());
            if !yes
                && !app
                    .prompt
                    .confirm("Obtain a new certificate now? A new key is generated on the token.")?
            {
                return Err(Error::Usage("enrolment cancelled".into()));
            }
        }
    }
    renewal::check_state_dir(&state_dir).map_err(renewal_error)?;
    let otp = app.prompt.otp(user)?;
    app.login(&token, "obtain a new bank certificate")?;
    let rt = runtime()?;
    let result = rt.block_on(renewal::execute(
        Renewal {
            token: token.clone(),
            token_serial: info.serial.clone(),
            bank,
            key: app.config.key,
            state_dir: &state_dir,
            otp: Some(otp),
            progress: &progress,
        },
        plan,
    ));
    // The login ends with the operation (other sessions of this process
    // would keep it otherwise).
    if let Err(e) = token.logout() {
        log::debug!("logging out: {e}");
    }
    finish(app, result)
}

fn finish(app: &App, result: Result<TokenCert, renewal::RenewalError>) -> Result<(), Error> {
    let new = result.map_err(renewal_error)?;
    eprintln!("[done] the new certificate is on the token:");
    // Shown from what was installed (read back and test-signed by the
    // renewal): no second pass over the token.
    print_certificate(app, &new)
}
