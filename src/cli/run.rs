//! `certagent run`: the agent. It watches the token and keeps the tray icon
//! and desktop notices current, serves the local API for the bank's pages,
//! and renews from the menu, a notice, or a page, always with the user's
//! consent and PIN in its own pinentry window.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

use time::OffsetDateTime;

use super::App;
use crate::Error;
use crate::api::{self, Agent, Requester};
use crate::cert::{Cert, rfc3339};
use crate::desktop::{self, Action, Look, Tray, View};
use crate::notices::{self, Ledger};
use crate::policy::State;
use crate::prompt::desktop_prompt;
use crate::token::{Module, TokenError};

/// The longest the agent sleeps between looks at the token and the wall
/// clock. Waking re-reads the wall clock, so a suspend or a clock change is
/// noticed within this time; it is the only periodic work, and it is cheap
/// (a slot listing and a few attribute reads).
const TICK: Duration = Duration::from_secs(15);
/// While a renewal runs, its progress is shown this often.
const WORKING_TICK: Duration = Duration::from_millis(500);

/// A line on stdout for whoever watches the agent (a log, a test); a closed
/// stdout must not take the agent down, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}

pub(super) fn run(app: App, no_tray: bool) -> Result<(), Error> {
    let prompt = desktop_prompt(app.config.agent.pinentry.as_deref());
    if std::fs::read_dir(crate::config::state_dir())
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("renewal-"))
        })
        .unwrap_or(false)
    {
        eprintln!("An interrupted renewal is pending; run `certagent renew` to finish it.");
    }
    let bank_site = app
        .config
        .bank
        .as_ref()
        .and_then(|b| b.origins.first().cloned());
    let agent = Arc::new(Agent::new(app.config, app.drivers, prompt));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Io)?;
    let (actions, inbox) = mpsc::channel::<Action>();

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
        ledger: Ledger::load(&crate::config::state_dir()),
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
}

impl Desk {
    /// Look at the token, send due notices, and say what the tray shows.
    fn check(&mut self) -> View {
        let now = OffsetDateTime::now_utc();
        let policy = self.agent.config.policy.clone();
        let certs = match read_certificates(&self.agent) {
            Ok(c) => c,
            Err(e) => {
                self.certs.clear();
                let tooltip = match e {
                    TokenError::NotFound { .. } | TokenError::Removed { .. } => {
                        "No token: insert your bank token".to_string()
                    }
                    other => format!("Token problem: {other}"),
                };
                return View {
                    look: Look::NoToken,
                    certificate_line: "No token".into(),
                    tooltip,
                    can_renew: false,
                };
            }
        };
        for c in &certs {
            if let Some(n) = notices::due(c, &policy, now, &self.ledger) {
                let (summary, body) = notices::text(c, &n, now);
                let renewable =
                    policy.assess(c.not_before, c.not_after, now).state == State::RenewalDue;
                match desktop::notify(&summary, &body, renewable, self.actions.clone()) {
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
            Some((c, a)) => View {
                look: match a.state {
                    State::Valid | State::NotYetValid => Look::Valid,
                    State::RenewalDue => Look::RenewalDue,
                    State::Expired => Look::Expired,
                    State::Lapsed => Look::Lapsed,
                },
                certificate_line: format!(
                    "{}: {}, {} days left",
                    short_name(&c.subject),
                    a.state,
                    a.days_left
                ),
                tooltip: format!(
                    "Bank certificate {}: {} days left ({})",
                    short_name(&c.subject),
                    a.days_left,
                    a.state
                ),
                can_renew: a.state == State::RenewalDue,
            },
        };
        if let Some(id) = &self.working {
            match self.agent.renewal(id) {
                Some(s) if s.state == "running" => {
                    view.look = Look::Working;
                    view.tooltip = format!("Renewing: {}", s.message);
                    view.can_renew = false;
                }
                Some(s) => {
                    self.working = None;
                    let done = s.state == "done";
                    let summary = if done {
                        "Bank certificate renewed"
                    } else {
                        "Renewal failed"
                    };
                    let body = if done {
                        format!(
                            "The new certificate is valid until {}.",
                            s.not_after.unwrap_or_default()
                        )
                    } else {
                        s.message.clone()
                    };
                    say!("certagent: renewal {}: {}", s.state, s.message);
                    if let Err(e) = desktop::notify(summary, &body, false, self.actions.clone()) {
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
        match rt.block_on(api::renew_with_consent(
            &self.agent,
            Requester::Desktop,
            None,
        )) {
            Ok(id) => {
                say!("certagent: renewal started");
                self.working = Some(id);
            }
            Err(e) => {
                say!("certagent: renewal not started: {e}");
                let _ = desktop::notify("Renewal not started", &e, false, self.actions.clone());
            }
        }
    }

    fn show_certificate(&self) {
        let now = OffsetDateTime::now_utc();
        let policy = &self.agent.config.policy;
        let text = if self.certs.is_empty() {
            "No bank certificate on the token.".to_string()
        } else {
            self.certs
                .iter()
                .map(|(c, _)| {
                    let a = policy.assess(c.not_before, c.not_after, now);
                    format!(
                        "{}\nIssued by {}\nValid {} to {}\n{} ({} days left): {}\nSHA-256 {}",
                        c.subject,
                        c.issuer,
                        rfc3339(c.not_before),
                        rfc3339(c.not_after),
                        a.state,
                        a.days_left,
                        a.state.advice(),
                        c.sha256_fingerprint
                    )
                })
                .collect::<Vec<_>>()
                .join("\n\n")
        };
        let prompt = self.agent.prompt.clone();
        std::thread::spawn(move || {
            if let Err(e) = prompt.show(&text) {
                log::warn!("cannot show the certificate: {e}");
            }
        });
    }
}

/// The bank certificates on the configured token.
fn read_certificates(agent: &Agent) -> Result<Vec<Cert>, TokenError> {
    let module = Module::load(&agent.config.token.module, &agent.drivers)?;
    let token = module.open(&agent.config.token.selector)?;
    Ok(crate::cert::bank_certificates(&token)?
        .into_iter()
        .map(|c| c.cert)
        .collect())
}

/// The CN, or the whole subject.
fn short_name(subject: &str) -> String {
    subject
        .split(',')
        .find_map(|p| p.strip_prefix("CN="))
        .unwrap_or(subject)
        .to_string()
}

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
