//! "Renew with consent", the door the page and the tray share: the same
//! pre-check as `certagent renew` ([`renewal::plan_renewal`]: an
//! interrupted renewal on the token is resumed, never overwritten), the
//! user's consent and PIN in the agent's own dialog, then the renewal in
//! the background holding the token's lease, so no logon can slip in while
//! it keeps the token logged in (for example while the bank answers 202).
//! Its progress is kept in the [`Agent`] ([`RenewalStatus`]).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;

use super::consent::{Refusal, consent_and_login, on_blocking_thread};
use super::owner::{Lease, Use};
use super::shared::{Agent, RenewalState, RenewalStatus};
use crate::cert::rfc3339;
use crate::config::BankConfig;
use crate::holdings::TokenCert;
use crate::prompt::short;
use crate::renewal::{self, Attempt, CardLogin, Plan, RenewalError, Step};

/// Who asks for a renewal, as the consent question names them.
pub enum Requester<'a> {
    /// A web page of this (allowed) origin.
    Page(&'a str),
    /// The user, from the tray menu or a notification.
    Desktop,
}

pub async fn start(
    agent: &Arc<Agent>,
    requester: Requester<'_>,
    id: Option<Vec<u8>>,
) -> Result<String, Refusal> {
    let Some(bank) = agent.config.bank.clone() else {
        return Err(Refusal::NoBank);
    };
    let Some(state_dir) = agent.state_dir.clone() else {
        return Err(Refusal::State(
            "the agent has no per-user state directory for the renewal journal (set XDG_STATE_HOME or HOME)".into(),
        ));
    };
    let from_page = matches!(requester, Requester::Page(_));
    let cool_key = match requester {
        Requester::Page(origin) => Some(origin.to_string()),
        Requester::Desktop => None,
    };
    if let Some(wait) = cool_key
        .as_deref()
        .and_then(|k| agent.dialogs.cooling_down(k))
    {
        return Err(Refusal::CoolingDown(wait));
    }
    let who = match requester {
        Requester::Page(origin) => crate::i18n::tr(
            "consent-renew-page",
            &[("origin", crate::i18n::Arg::Str(&short(origin, 120)))],
        ),
        Requester::Desktop => crate::i18n::tr("consent-renew-desktop", &[]),
    };
    renewal::check_state_dir(&state_dir).map_err(|e| Refusal::State(e.to_string()))?;
    agent.owner.learn_issuers().await;
    let mut lease = agent.owner.lease(Use::Renewal)?;
    let turn = agent.dialogs.turn()?;
    let a = agent.clone();
    let dir = state_dir.clone();
    let prepared = on_blocking_thread(move || -> Result<_, Refusal> {
        // A renewal reads the token afresh: it is about to change it.
        let look = lease.fresh_look()?;
        let token = lease.token()?;
        renewal::check_token(&token)?;
        let mut plan = renewal::plan_renewal(
            &dir,
            &look.info.serial,
            &look.certs,
            &a.config.policy,
            id.as_deref(),
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| match id.as_deref() {
            // A page names a certificate that is not one of the bank's it
            // may see: one answer whether it is absent, another issuer's
            // or one replaced, so a page learns nothing about the rest of
            // the token. (The user at the tray is told which.)
            Some(want) if from_page && !look.certs.bank.iter().any(|c| c.id == want) => {
                Refusal::NoSuchCertificate
            }
            _ => Refusal::Renewal(e),
        })?;
        // A card with fixed key slots: the new key's slot, before any question.
        renewal::choose_slot(&token, &mut plan, &dir, &a.owner.issuers())?;
        let on_card = token.card_family().is_some();
        drop(token);
        let described = short(&plan.describe(), 300);
        let args = [
            ("who", crate::i18n::Arg::Str(&who)),
            ("plan", crate::i18n::Arg::Str(&described)),
        ];
        let question = match &plan {
            Plan::Resume(_) => crate::i18n::tr("consent-renew-resume", &args),
            Plan::Start(_) => crate::i18n::tr("consent-renew-start", &args),
        };
        let purpose = crate::i18n::tr("purpose-renew", &[]);
        let info = look.info;
        let pin = consent_and_login(
            &a,
            &turn,
            &mut lease,
            &info,
            &question,
            &purpose,
            cool_key.as_deref(),
            "the user declined the renewal",
        )?;
        // On a card: its admin PIN too, in a dialog of its own; both are
        // kept for the attempt (it logs in on the card's other token and
        // as the admin) and dropped with it.
        let card = if on_card {
            let admin = if info.protected_auth_path {
                None
            } else {
                Some(turn.admin_pin(&info, &purpose)?)
            };
            Some(CardLogin { user: pin, admin })
        } else {
            drop(pin);
            None
        };
        let token = lease.token()?;
        Ok((lease, token, info.serial, plan, card))
    })
    .await;
    let (lease, token, serial, plan, card) = prepared?;

    let mut rid = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rid)
        .map_err(|_| Refusal::Internal("no randomness".into()))?;
    let rid = hex::encode(rid);
    agent.set_renewal(RenewalStatus {
        id: rid.clone(),
        state: RenewalState::Running,
        step: Step::Started.as_str().into(),
        message: "starting".into(),
        certificate: None,
        not_after: None,
    });
    let a = agent.clone();
    let task_id = rid.clone();
    tokio::spawn(async move {
        // Held until the renewal ends, however it ends; what the owner
        // remembers of the token is dropped then (the token changed).
        let mut lease = lease;
        lease.changed_token();
        let progress = |step: Step, message: &str| {
            a.update_renewal(&task_id, |s| {
                s.step = step.as_str().to_string();
                s.message = crate::text::clean(message, crate::text::MESSAGE_MAX);
            });
        };
        let result = run_renewal(
            &a,
            &mut lease,
            token,
            serial,
            &bank,
            &state_dir,
            card.as_ref(),
            &progress,
            plan,
        )
        .await;
        drop(card);
        match result {
            Ok(new) => a.update_renewal(&task_id, |s| {
                s.state = RenewalState::Done;
                s.step = Step::Done.as_str().into();
                s.message = crate::text::clean(
                    &format!("renewed: {}", new.cert.subject),
                    crate::text::MESSAGE_MAX,
                );
                s.certificate = Some(STANDARD.encode(&new.cert.der));
                s.not_after = Some(rfc3339(new.cert.not_after));
            }),
            Err(e) => {
                let text = crate::text::clean(&e.to_string(), crate::text::MESSAGE_MAX);
                a.update_renewal(&task_id, |s| {
                    s.state = RenewalState::Failed;
                    s.message = text.clone();
                });
            }
        }
    });
    Ok(rid)
}

/// Run the attempt ([`renewal::run`]): on a card whose module shows a
/// change only when initialised again, the lease closes the token (once
/// no other door has the card open: the status page may be reading it)
/// and opens it again.
#[allow(clippy::too_many_arguments)]
async fn run_renewal(
    a: &Arc<Agent>,
    lease: &mut Lease,
    token: Arc<crate::token::Token>,
    serial: String,
    bank: &BankConfig,
    state_dir: &std::path::Path,
    card: Option<&CardLogin>,
    progress: &(dyn renewal::Progress + Sync),
    plan: Plan,
) -> Result<TokenCert, RenewalError> {
    let attempt = Attempt {
        token_serial: serial,
        bank,
        key: a.config.key,
        state_dir,
        otp: None,
        card,
        progress,
    };
    renewal::run(&mut LeaseDoor(lease), token, &attempt, plan)
        .await
        .result
}

/// The agent's way to read a card again: through the token's lease.
struct LeaseDoor<'a>(&'a mut Lease);

impl renewal::Reopen for LeaseDoor<'_> {
    fn close(&mut self, token: Arc<crate::token::Token>) {
        drop(token);
        self.0.close_token();
    }

    fn open(&mut self) -> Result<Arc<crate::token::Token>, crate::token::TokenError> {
        self.0.token()
    }
}
