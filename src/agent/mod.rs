//! The running agent (`certagent run`). It watches the token and keeps the
//! tray icon and desktop notices current, serves the local API for the
//! bank's pages, and renews from the menu, a notice, or a page, always with
//! the user's consent and PIN in its own pinentry window.
//!
//! Its parts: [`owner`], the token's one owner behind every door, with the
//! lease that operations logging in hold one at a time; [`prompts`], one
//! dialog at a time and a cool-down for pages that were refused; [`api`],
//! the local API (gate, status, logon, renewals); [`tray`] and [`notices`],
//! the desktop. The desk loop below ties them together on the main thread.

pub mod api;
pub mod icons;
pub mod notices;
pub mod owner;
pub mod prompts;
pub mod tray;

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Error;
use crate::cert::Cert;
use crate::config::Config;
use crate::drivers::Drivers;
use crate::i18n::{Arg, Lang, tr};
use crate::policy::State;
use crate::prompt::{Prompt, desktop_prompt, short};
use crate::token::TokenError;
use api::renewals::{Requester, renew_with_consent};
use notices::Ledger;
use owner::Owner;
use prompts::Prompts;
use tray::{Action, Look, Tray, View};

/// Renewals whose progress is kept for `GET /v1/renewals/{id}`.
const MAX_RENEWALS_KEPT: usize = 16;

/// What every door of the agent shares.
pub struct Agent {
    pub config: Config,
    pub owner: Arc<Owner>,
    pub prompts: Prompts,
    /// The per-user state directory (journal, notices, the bank's CA).
    pub state_dir: Option<PathBuf>,
    renewals: Mutex<Vec<RenewalStatus>>,
}

/// A renewal started through the API or the tray.
#[derive(Debug, Clone, Serialize)]
pub struct RenewalStatus {
    pub id: String,
    /// running | done | failed
    pub state: &'static str,
    pub step: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

impl Agent {
    pub fn new(config: Config, drivers: Drivers, prompt: Arc<dyn Prompt>) -> Agent {
        let state_dir = crate::config::state_dir()
            .map_err(|e| log::warn!("{e}; renewals from the agent are off"))
            .ok();
        let owner = Owner::new(&config, drivers, state_dir.clone());
        Agent {
            config,
            owner,
            prompts: Prompts::new(prompt),
            state_dir,
            renewals: Mutex::new(Vec::new()),
        }
    }

    /// The state of a renewal started through the API or the tray.
    pub fn renewal(&self, id: &str) -> Option<RenewalStatus> {
        self.renewals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    fn set_renewal(&self, status: RenewalStatus) {
        let mut list = self.renewals.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() >= MAX_RENEWALS_KEPT {
            list.remove(0);
        }
        list.push(status);
    }

    fn update_renewal(&self, id: &str, update: impl FnOnce(&mut RenewalStatus)) {
        let mut list = self.renewals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = list.iter_mut().find(|s| s.id == id) {
            update(s);
        }
    }
}

/// The longest the desk sleeps between looks at the wall clock (the token
/// is the watch's: this look reads the owner's remembered view, no round
/// trip). Waking re-reads the wall clock, so a suspend or a clock change is
/// noticed within this time; once a minute keeps an idle agent at one
/// wake-up a minute.
const TICK: Duration = Duration::from_secs(60);
/// While a renewal runs, its progress is shown this often.
const WORKING_TICK: Duration = Duration::from_millis(500);

/// A line on stdout for whoever watches the agent (a log, a test); a closed
/// stdout must not take the agent down, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        // One line in the journal, whatever names it carries.
        let line = crate::text::clean(&format!($($arg)*), crate::text::MESSAGE_MAX);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }};
}

/// Run the agent until SIGTERM, Ctrl-C or "Quit".
pub fn run(config: Config, drivers: Drivers, no_tray: bool, unattended: bool) -> Result<(), Error> {
    let prompt = desktop_prompt(config.agent.pinentry.as_deref(), unattended);
    let bank_site = config
        .bank
        .as_ref()
        .and_then(|b| b.origins.first().cloned());
    let agent = Arc::new(Agent::new(config, drivers, prompt));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Io)?;
    let (actions, inbox) = mpsc::channel::<Action>();
    rt.block_on(agent.owner.learn_issuers());
    {
        let changed = actions.clone();
        agent.owner.start_watch(move |present| {
            let _ = changed.send(Action::TokenChanged(present));
        });
    }

    let api = if agent
        .config
        .bank
        .as_ref()
        .is_some_and(|b| !b.origins.is_empty())
    {
        let running = rt
            .block_on(api::serve(agent.clone()))
            .map_err(|e| Error::Usage(e.to_string()))?;
        say!("certagent: local API on http://{}", running.addr());
        Some(running)
    } else {
        eprintln!(
            "certagent: no [bank] origins configured; the local API for the bank's pages is off"
        );
        None
    };
    {
        let quit = actions.clone();
        rt.spawn(async move {
            wait_for_signal().await;
            let _ = quit.send(Action::Quit);
        });
    }

    let mut desk = Desk {
        agent: agent.clone(),
        actions: actions.clone(),
        ledger: agent
            .state_dir
            .as_deref()
            .map(Ledger::load)
            .unwrap_or_default(),
        told_pending: false,
        tray: None,
        working: None,
        certs: Vec::new(),
    };
    let first = desk.check();
    if !no_tray {
        // Without a desktop the agent still serves the pages and sends what
        // notices it can; the reason is logged, not fatal.
        match Tray::start(first, actions.clone()) {
            Ok(tray) => {
                say!("certagent: tray icon registered");
                desk.tray = Some(tray);
            }
            Err(e) => eprintln!("certagent: {e}"),
        }
    }
    say!("certagent: ready");

    loop {
        let wait = if desk.working.is_some() {
            WORKING_TICK
        } else {
            desk.until_next()
        };
        match inbox.recv_timeout(wait) {
            Ok(Action::Quit) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(Action::Renew) => desk.renew(&rt),
            Ok(Action::ShowCertificate) => desk.show_certificate(),
            Ok(Action::OpenBankSite) => open_site(bank_site.as_deref()),
            Ok(Action::TokenChanged(present)) => {
                say!(
                    "certagent: token {}",
                    if present { "inserted" } else { "removed" }
                );
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        let view = desk.check();
        if let Some(t) = &desk.tray {
            t.show(view);
        }
    }
    drop(desk);
    if let Some(api) = api {
        rt.block_on(api.shutdown());
    }
    Ok(())
}

struct Desk {
    agent: Arc<Agent>,
    actions: Sender<Action>,
    ledger: Ledger,
    tray: Option<Tray>,
    /// The renewal started from the desktop, while it runs.
    working: Option<String>,
    /// The certificates at the last look, with their next notice instant.
    certs: Vec<(Cert, Option<OffsetDateTime>)>,
    /// Whether the user was told of the interrupted renewal on the token.
    told_pending: bool,
}

impl Desk {
    /// Look at the token, send due notices, and say what the tray shows.
    fn check(&mut self) -> View {
        let now = OffsetDateTime::now_utc();
        let policy = self.agent.config.policy.clone();
        // The watch's view: no round trip unless the token came or went.
        let look = match self.agent.owner.cached_look() {
            Ok(l) => l,
            Err(e) => {
                self.certs.clear();
                let tooltip = match e {
                    TokenError::NotFound { .. } | TokenError::Removed { .. } => {
                        tr("tray-no-token-tip", &[])
                    }
                    other => {
                        let e = crate::Error::Token(other).for_people(Lang::current());
                        tr("tray-token-problem", &[("error", Arg::Str(&e))])
                    }
                };
                return View {
                    look: Look::NoToken,
                    certificate_line: tr("tray-no-token", &[]),
                    tooltip,
                    can_renew: false,
                };
            }
        };
        let certs: Vec<Cert> = look.certs.bank.into_iter().map(|c| c.cert).collect();
        for c in &certs {
            if let Some(n) = notices::due(c, &policy, now, &self.ledger) {
                let (summary, body) = notices::text(c, &n, now);
                let renewable =
                    policy.assess(c.not_before, c.not_after, now).state == State::RenewalDue;
                match tray::notify(&summary, &body, renewable, self.actions.clone()) {
                    Ok(()) => {
                        say!("certagent: notice: {summary} ({})", c.subject);
                        self.ledger
                            .mark(&c.sha256_fingerprint, &policy, c.not_after, n.kind);
                        if let Err(e) = self.ledger.save() {
                            log::warn!("cannot remember the notice: {e}");
                        }
                    }
                    Err(e) => log::warn!("cannot show the notice {summary:?}: {e}"),
                }
            }
        }
        let present: Vec<String> = certs.iter().map(|c| c.sha256_fingerprint.clone()).collect();
        self.ledger.retain(&present);
        self.certs = certs
            .iter()
            .map(|c| {
                (
                    c.clone(),
                    policy
                        .notices(c.not_after)
                        .into_iter()
                        .map(|n| n.at)
                        .find(|&at| at > now),
                )
            })
            .collect();

        // The certificate that matters most: the worst state, then the soonest expiry.
        let rank = |s: State| match s {
            State::Lapsed => 0,
            State::Expired => 1,
            State::RenewalDue => 2,
            State::NotYetValid => 3,
            State::Valid => 4,
        };
        let worst = certs
            .iter()
            .map(|c| (c, policy.assess(c.not_before, c.not_after, now)))
            .min_by_key(|(c, a)| (rank(a.state), c.not_after));
        let mut view = match worst {
            None => View {
                look: Look::NoToken,
                certificate_line: "No bank certificate on the token".into(),
                tooltip: "No bank certificate: obtain one with certagent enroll".into(),
                can_renew: false,
            },
            Some((c, a)) => {
                // The holder and the expiry, once, for the menu line and the tooltip.
                let holder = short(&c.holder(), 64);
                let when =
                    crate::i18n::expiry(crate::policy::expires(c.not_after).then_some(a.days_left));
                View {
                    look: match a.state {
                        State::Valid | State::NotYetValid => Look::Valid,
                        State::RenewalDue => Look::RenewalDue,
                        State::Expired => Look::Expired,
                        State::Lapsed => Look::Lapsed,
                    },
                    certificate_line: format!("{holder}: {when}"),
                    tooltip: crate::i18n::tr(
                        "tray-tooltip",
                        &[
                            ("holder", crate::i18n::Arg::Str(&holder)),
                            ("when", crate::i18n::Arg::Str(&when)),
                        ],
                    ),
                    can_renew: a.state == State::RenewalDue,
                }
            }
        };
        if let Some(step) = look.pending {
            // An interrupted renewal waits: "Renew certificate…" resumes it.
            view.look = Look::RenewalDue;
            view.tooltip = tr("tray-pending", &[("step", Arg::Str(step.as_str()))]);
            view.can_renew = self.working.is_none();
            if !self.told_pending {
                self.told_pending = true;
                say!(
                    "certagent: an interrupted renewal (at step {}) waits on the token; Renew resumes it",
                    step.as_str()
                );
                if let Err(e) = tray::notify(
                    &tr("notice-pending-summary", &[]),
                    &tr("notice-pending-body", &[]),
                    true,
                    self.actions.clone(),
                ) {
                    log::warn!("cannot show the notice: {e}");
                }
            }
        } else {
            self.told_pending = false;
        }
        if let Some(id) = &self.working {
            match self.agent.renewal(id) {
                Some(s) if s.state == "running" => {
                    view.look = Look::Working;
                    view.tooltip = tr("tray-renewing", &[("step", Arg::Str(&s.message))]);
                    view.can_renew = false;
                }
                Some(s) => {
                    self.working = None;
                    let done = s.state == "done";
                    let summary = tr(
                        if done {
                            "notice-renewed-summary"
                        } else {
                            "notice-failed-summary"
                        },
                        &[],
                    );
                    let body = if done {
                        let until = s.not_after.as_deref().unwrap_or_default();
                        let until = OffsetDateTime::parse(until, &Rfc3339)
                            .map_or_else(|_| until.to_string(), crate::i18n::datetime);
                        tr("notice-renewed-body", &[("until", Arg::Str(&until))])
                    } else {
                        s.message.clone()
                    };
                    say!("certagent: renewal {}: {}", s.state, s.message);
                    if let Err(e) = tray::notify(&summary, &body, false, self.actions.clone()) {
                        log::warn!("cannot show the notice: {e}");
                    }
                    if done {
                        self.show_certificate();
                    }
                }
                None => self.working = None,
            }
        }
        view
    }

    /// Sleep until the next notice is due, but at most one tick.
    fn until_next(&self) -> Duration {
        let now = OffsetDateTime::now_utc();
        self.certs
            .iter()
            .filter_map(|(_, at)| *at)
            .map(|at| Duration::try_from(at - now).unwrap_or(Duration::ZERO))
            .min()
            .map_or(TICK, |d| d.min(TICK))
    }

    fn renew(&mut self, rt: &tokio::runtime::Runtime) {
        if self.working.is_some() {
            return;
        }
        match rt.block_on(renew_with_consent(&self.agent, Requester::Desktop, None)) {
            Ok(id) => {
                say!("certagent: renewal started");
                self.working = Some(id);
            }
            Err(e) => {
                say!("certagent: renewal not started: {e}");
                let _ = tray::notify(
                    &tr("notice-not-started-summary", &[]),
                    &e,
                    false,
                    self.actions.clone(),
                );
            }
        }
    }

    /// "Show certificate": the bank's certificates in one dialog (at most
    /// a few, each name shortened, so the text always fits the dialog).
    fn show_certificate(&self) {
        const SHOWN: usize = 3;
        let now = OffsetDateTime::now_utc();
        let policy = &self.agent.config.policy;
        let mut text = if self.certs.is_empty() {
            tr("show-none", &[])
        } else {
            self.certs
                .iter()
                .take(SHOWN)
                .map(|(c, _)| {
                    let a = policy.assess(c.not_before, c.not_after, now);
                    let (from, until) = (
                        crate::i18n::datetime(c.not_before),
                        crate::i18n::datetime(c.not_after),
                    );
                    let state = a.state.name_in(Lang::current());
                    let when = crate::i18n::expiry(
                        crate::policy::expires(c.not_after).then_some(a.days_left),
                    );
                    let (subject, issuer) = (short(&c.subject, 120), short(&c.issuer, 80));
                    tr(
                        "show-dialog",
                        &[
                            ("holder", Arg::Str(&c.holder())),
                            ("subject", Arg::Str(&subject)),
                            ("issuer", Arg::Str(&issuer)),
                            ("from", Arg::Str(&from)),
                            ("until", Arg::Str(&until)),
                            ("state", Arg::Str(&state)),
                            ("when", Arg::Str(&when)),
                            ("fingerprint", Arg::Str(&c.sha256_fingerprint)),
                        ],
                    )
                })
                .collect::<Vec<_>>()
                .join("\n\n")
        };
        if self.certs.len() > SHOWN {
            let more = i64::try_from(self.certs.len() - SHOWN).unwrap_or(i64::MAX);
            text.push_str("\n\n");
            text.push_str(&tr("show-more", &[("count", Arg::Num(more))]));
        }
        let turn = match self.agent.prompts.turn() {
            Ok(t) => t,
            Err(e) => {
                say!("certagent: {e}");
                return;
            }
        };
        std::thread::spawn(move || {
            if let Err(e) = turn.show(&text) {
                log::warn!("cannot show the certificate: {e}");
            }
        });
    }
}

/// The CN, or the whole subject.
fn open_site(site: Option<&str>) {
    match site {
        Some(url) => {
            if let Err(e) = std::process::Command::new("xdg-open").arg(url).spawn() {
                log::warn!("cannot open {url}: {e}");
            }
        }
        None => log::warn!("no bank site configured ([bank] origins)"),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
