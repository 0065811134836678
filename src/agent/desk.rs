//! The desk: the agent's main thread. It looks at the token through the
//! owner (no login), sends due notices and records them, shows the tray's
//! [`View`], follows a renewal started from the desktop, and answers the
//! menu. It sees the desktop only through [`Desktop`] and reaches the
//! renewal through [`super::renew`], as the page does.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::desktop::{Desktop, View};
use super::events::say;
use super::icons::Badge;
use super::notices::{self, Ledger};
use super::renew::{Requester, start};
use super::shared::{Agent, RenewalState};
use super::view;
use crate::cert::Cert;
use crate::i18n::{Arg, Lang, tr};
use crate::policy::State;
use crate::prompt::short;
use crate::renewal::Step;

/// The longest the desk sleeps between looks at the wall clock (the token
/// is the watch's: this look reads the owner's remembered view, no round
/// trip). Waking re-reads the wall clock, so a suspend or a clock change is
/// noticed within this time (a notice's own time is waited for exactly);
/// ten minutes keep an idle agent's wake-ups far below one a minute.
const TICK: Duration = Duration::from_secs(600);
/// While a renewal runs, its progress is shown this often.
const WORKING_TICK: Duration = Duration::from_millis(500);

pub struct Desk {
    agent: Arc<Agent>,
    pub desktop: Box<dyn Desktop>,
    ledger: Ledger,
    /// The renewal started from the desktop, while it runs.
    working: Option<String>,
    /// The certificates at the last look, with their next notice instant.
    certs: Vec<(Cert, Option<OffsetDateTime>)>,
    /// Whether the user was told of the interrupted renewal on the token.
    told_pending: bool,
}

impl Desk {
    pub fn new(agent: Arc<Agent>, desktop: Box<dyn Desktop>) -> Desk {
        let ledger = agent
            .state_dir
            .as_deref()
            .map(Ledger::load)
            .unwrap_or_default();
        Desk {
            agent,
            desktop,
            ledger,
            working: None,
            certs: Vec::new(),
            told_pending: false,
        }
    }

    /// Look at the token, send due notices, and say what the tray shows.
    pub fn check(&mut self) -> View {
        let now = OffsetDateTime::now_utc();
        // The watch's view: no round trip unless the token came or went.
        let snapshot = match self.agent.owner.cached_look() {
            Ok(s) => s,
            Err(e) => {
                self.certs.clear();
                return view::unreadable(e);
            }
        };
        let certs: Vec<Cert> = snapshot.certs.bank.into_iter().map(|c| c.cert).collect();
        self.send_due_notices(&certs, now);
        let mut view = view::of(&certs, &self.agent.config.policy, now);
        self.mind_pending(&mut view, snapshot.pending);
        self.follow_renewal(&mut view);
        view
    }

    /// How long to wait for the next action before looking again.
    pub fn wait(&self) -> Duration {
        if self.working.is_some() {
            WORKING_TICK
        } else {
            self.until_next()
        }
    }

    /// Send each notice that is due and record it; remember when the next
    /// one of each certificate falls.
    fn send_due_notices(&mut self, certs: &[Cert], now: OffsetDateTime) {
        let policy = self.agent.config.policy.clone();
        for c in certs {
            if let Some(n) = notices::due(c, &policy, now, &self.ledger) {
                let (summary, body) = notices::text(c, &n, now);
                let renewable =
                    policy.assess(c.not_before, c.not_after, now).state == State::RenewalDue;
                match self.desktop.notify(&summary, &body, renewable) {
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
    }

    /// An interrupted renewal waits on the token: "Renew certificate…"
    /// resumes it; the user is told once.
    fn mind_pending(&mut self, view: &mut View, pending: Option<Step>) {
        let Some(step) = pending else {
            self.told_pending = false;
            return;
        };
        view.badge = Badge::RenewalDue;
        view.tooltip = tr("tray-pending", &[("step", Arg::Str(step.as_str()))]);
        view.can_renew = self.working.is_none();
        if !self.told_pending {
            self.told_pending = true;
            say!(
                "certagent: an interrupted renewal (at step {}) waits on the token; Renew resumes it",
                step.as_str()
            );
            if let Err(e) = self.desktop.notify(
                &tr("notice-pending-summary", &[]),
                &tr("notice-pending-body", &[]),
                true,
            ) {
                log::warn!("cannot show the notice: {e}");
            }
        }
    }

    /// The renewal started from the desktop: its progress in the tray
    /// while it runs, a notice when it ends.
    fn follow_renewal(&mut self, view: &mut View) {
        let Some(id) = &self.working else {
            return;
        };
        let Some(s) = self.agent.renewal(id) else {
            self.working = None;
            return;
        };
        if s.state == RenewalState::Running {
            view.badge = Badge::Working;
            view.tooltip = tr("tray-renewing", &[("step", Arg::Str(&s.message))]);
            view.can_renew = false;
            return;
        }
        self.working = None;
        let done = s.state == RenewalState::Done;
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
        say!("certagent: renewal {}: {}", s.state.as_str(), s.message);
        if let Err(e) = self.desktop.notify(&summary, &body, false) {
            log::warn!("cannot show the notice: {e}");
        }
        if done {
            self.show_certificate();
        }
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

    /// "Renew certificate…" from the menu or a notice.
    pub fn renew(&mut self, rt: &tokio::runtime::Runtime) {
        if self.working.is_some() {
            return;
        }
        match rt.block_on(start(&self.agent, Requester::Desktop, None)) {
            Ok(id) => {
                say!("certagent: renewal started");
                self.working = Some(id);
            }
            Err(e) => {
                let e = e.message();
                say!("certagent: renewal not started: {e}");
                let _ = self
                    .desktop
                    .notify(&tr("notice-not-started-summary", &[]), &e, false);
            }
        }
    }

    /// "Open the bank's site".
    pub fn open_site(&self, site: Option<&str>) {
        match site {
            Some(url) => {
                if let Err(e) = self.desktop.open_page(url) {
                    log::warn!("cannot open {url}: {e}");
                }
            }
            None => log::warn!("no bank site configured ([bank] origins)"),
        }
    }

    /// "Show certificate": the bank's certificates in one dialog (at most
    /// a few, each name shortened, so the text always fits the dialog).
    pub fn show_certificate(&self) {
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
        let turn = match self.agent.dialogs.turn() {
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
