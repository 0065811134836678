//! The `certagent` command line.

mod browser_policy;
mod demo;
mod doctor;
mod renew;
mod status;
mod tokens;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::Error;
use crate::cert::{BankIssuers, StatusEntry, TokenCerts};
use crate::config::Config;
use crate::drivers::Drivers;
use crate::i18n::{Arg, Lang, tr_in};
use crate::policy::Policy;
use crate::prompt::{Prompt, TerminalPrompt};
use crate::token::{Module, Token, TokenInfo};

#[derive(Debug, Parser)]
#[command(
    name = "certagent",
    version,
    about = "Keeps bank client certificates on PKCS#11 tokens alive"
)]
pub struct Cli {
    /// Configuration file (else $CERTAGENT_CONFIG, else the XDG config dir's certagent/config.toml)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print data as JSON
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Slots and tokens of the configured module, with PIN state
    Tokens,
    /// Each bank certificate on the token and where it stands
    Status,
    /// Full details of one certificate
    Show {
        /// CKA_ID of the certificate, in hex
        #[arg(long, value_name = "HEX")]
        id: Option<String>,
    },
    /// Check module, token, PIN, login and that each certificate's key signs and matches
    Doctor,
    /// Renew the certificate in the renewal window over EST with mutual TLS
    Renew {
        /// CKA_ID of the certificate to renew, in hex
        #[arg(long, value_name = "HEX")]
        id: Option<String>,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
    /// Obtain a certificate with the bank's ID and one-time password (first issuance, or after expiry)
    Enroll {
        /// The user ID the bank gave
        #[arg(long, value_name = "ID")]
        user: String,
        /// CKA_ID of the expired certificate to replace, in hex
        #[arg(long, value_name = "HEX")]
        id: Option<String>,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
    /// The agent: tray icon, desktop notices and the local API for the bank's web pages
    Run {
        /// Serve the API and notices without a tray icon
        #[arg(long)]
        no_tray: bool,
        /// For unattended tests only: take the PIN and one-time password from CERTAGENT_PIN and CERTAGENT_OTP
        #[arg(long)]
        unattended: bool,
    },
    /// The whole story on a fresh SoftHSM token and the reference bank (certagent-bank beside certagent)
    Demo,
    /// Print, install (root) or remove the managed browser policies that let `[bank] origins` reach the agent
    #[command(name = "browser-policy")]
    BrowserPolicy {
        /// Write the Linux policy files under /etc (Chromium, Chrome, Edge, Firefox ESR); needs root
        #[arg(long, conflicts_with = "remove")]
        install: bool,
        /// Remove the files --install wrote and the directories it created; needs root
        #[arg(long)]
        remove: bool,
    },
}

/// What every command starts from.
pub(crate) struct App {
    pub config: Config,
    pub drivers: Drivers,
    pub json: bool,
    /// The language of human-readable output: the user's; English with
    /// `--json`, whose texts stay the same for every script.
    pub lang: Lang,
    pub prompt: Box<dyn Prompt>,
}

pub fn run(cli: Cli) -> Result<(), Error> {
    if let Command::Demo = cli.command {
        // The demo brings its own token and bank; no configuration is read.
        return demo::run(cli.json);
    }
    if let Command::BrowserPolicy { install, remove } = cli.command {
        // Needs only `[bank] origins` (and --remove not even that): no
        // driver profiles are read.
        let action = match (install, remove) {
            (true, _) => browser_policy::Action::Install,
            (_, true) => browser_policy::Action::Remove,
            _ => browser_policy::Action::Print,
        };
        return browser_policy::run(cli.config.as_deref(), cli.json, action);
    }
    let config = Config::discover(cli.config.as_deref())?;
    let drivers = Drivers::load(&Drivers::user_dirs(config.dir()))?;
    let app = App {
        config,
        drivers,
        json: cli.json,
        lang: if cli.json { Lang::En } else { Lang::current() },
        // A one-shot command run with CERTAGENT_PIN/OTP set opts in.
        prompt: Box::new(TerminalPrompt { unattended: true }),
    };
    match cli.command {
        Command::Tokens => tokens::run(&app),
        Command::Status => status::status(&app),
        Command::Show { id } => status::show(&app, id.as_deref()),
        Command::Doctor => doctor::run(&app),
        Command::Renew { id, yes } => renew::renew(&app, id.as_deref(), yes),
        Command::Enroll { user, id, yes } => renew::enroll(&app, &user, id.as_deref(), yes),
        Command::Demo => demo::run(cli.json),
        Command::BrowserPolicy { .. } => Err(Error::Usage(
            "browser-policy is handled before the configuration is loaded".into(),
        )),
        Command::Run {
            no_tray,
            unattended,
        } => crate::agent::run(app.config, app.drivers, no_tray, unattended),
    }
}

impl App {
    /// The message `id` in the output's language.
    pub fn tr(&self, id: &str, args: &[(&str, Arg<'_>)]) -> String {
        tr_in(self.lang, id, args)
    }

    pub fn module(&self) -> Result<Arc<Module>, Error> {
        Ok(Module::load(&self.config.token.module, &self.drivers)?)
    }

    pub fn open_token(&self) -> Result<Token, Error> {
        Ok(self.module()?.open(&self.config.token.selector)?)
    }

    pub fn print_json<T: serde::Serialize>(&self, value: &T) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        Ok(())
    }

    /// Log in with the PIN from the prompt, or the PIN pad. Never retries;
    /// a token already logged in by this process is an error, not a
    /// success, so the token checks this PIN.
    pub fn login(&self, token: &Token, purpose: &str) -> Result<(), Error> {
        let info = token.info()?;
        if info.pin_locked {
            return Err(crate::token::TokenError::PinLocked.into());
        }
        if info.protected_auth_path {
            eprintln!("{}", self.tr("cli-enter-on-pad", &[]));
            token.login(None)?;
        } else {
            let pin = self.prompt.pin(&info, purpose)?;
            token.login(Some(&pin))?;
        }
        Ok(())
    }
}

pub(crate) use crate::cert::TokenCert;

impl App {
    /// What tells the bank's certificates apart: the pinned or remembered CA,
    /// else `/cacerts` fetched now (and remembered), else the configured
    /// issuer name. Without a `[bank]` section every end-entity certificate
    /// is listed; with one whose CA cannot be learnt, the reason is shown
    /// and every certificate is listed apart as not the bank's.
    pub fn issuers(&self) -> BankIssuers {
        match self.issuers_or_reason() {
            Ok(i) => i,
            Err(unlearnt) => {
                let (known, e) = *unlearnt;
                if !known.known() {
                    let reason = e.to_string();
                    eprintln!(
                        "{}",
                        self.tr("cli-issuers-unknown", &[("reason", Arg::Str(&reason))])
                    );
                }
                known
            }
        }
    }

    /// As [`App::issuers`], but when the CA could not be learnt, the reason
    /// (with what is known without it).
    fn issuers_or_reason(&self) -> Result<BankIssuers, Box<(BankIssuers, Error)>> {
        let Some(bank) = self.config.bank.as_ref() else {
            return Ok(BankIssuers {
                any: true,
                ..BankIssuers::default()
            });
        };
        let state = crate::config::state_dir().ok();
        let known = crate::renewal::known_issuers(Some(bank), state.as_deref());
        if !known.ca_certs.is_empty() {
            return Ok(known);
        }
        let fetched = runtime().and_then(|rt| {
            rt.block_on(async {
                let dir = state.clone().unwrap_or_default();
                crate::renewal::bank_ca_certs(bank, &dir, &|_: crate::renewal::Step, _: &str| {})
                    .await
                    .map_err(Error::Renewal)
            })
        });
        match fetched {
            Ok(ca_certs) => Ok(BankIssuers { ca_certs, ..known }),
            Err(e) => Err(Box::new((known, e))),
        }
    }

    /// The certificates on the token for an operation with the bank: when
    /// the bank's CA is not known and cannot be learnt, the reason is the error.
    pub fn certificates_for_bank(&self, token: &Token) -> Result<TokenCerts, Error> {
        let issuers = match self.issuers_or_reason() {
            Ok(i) => i,
            Err(unlearnt) if unlearnt.0.known() => unlearnt.0,
            Err(unlearnt) => return Err(unlearnt.1),
        };
        Ok(crate::cert::token_certificates(token, &issuers)?)
    }

    /// The certificates on the token, the bank's apart from the others.
    pub fn certificates(&self, token: &Token) -> Result<TokenCerts, Error> {
        Ok(crate::cert::token_certificates(token, &self.issuers())?)
    }
}

/// A runtime for the commands that talk to the bank.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Io)
}

pub(crate) fn status_entry(c: &TokenCert, policy: &Policy, now: OffsetDateTime) -> StatusEntry {
    StatusEntry::new(&c.id, &c.cert, policy, now)
}

/// The token line shared by human-readable outputs.
pub(crate) fn token_line(lang: Lang, t: &TokenInfo) -> String {
    // The label quoted and escaped: it is the token's, not ours.
    let label = format!("{:?}", t.label);
    tr_in(
        lang,
        "cli-token",
        &[
            ("label", Arg::Str(&label)),
            ("serial", Arg::Str(&t.serial)),
            ("maker", Arg::Str(&t.manufacturer)),
            ("model", Arg::Str(&t.model)),
        ],
    )
}

/// PIN state in words.
pub(crate) fn pin_state(lang: Lang, t: &TokenInfo) -> String {
    let id = if t.pin_locked {
        "pin-state-locked"
    } else if t.pin_final_try {
        "pin-state-final-try"
    } else if t.pin_count_low {
        "pin-state-count-low"
    } else if !t.user_pin_initialized {
        "pin-state-uninitialised"
    } else {
        "pin-state-ok"
    };
    tr_in(lang, id, &[])
}

/// `label` padded to `width` columns as a terminal shows it (CJK
/// characters take two), and followed by one space at least.
pub(crate) fn pad(label: &str, width: usize) -> String {
    let cols: usize = label.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum();
    format!("{label}{}", " ".repeat(width.saturating_sub(cols).max(1)))
}

fn is_wide(c: char) -> bool {
    matches!(u32::from(c),
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF | 0xA960..=0xA97F | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6)
}
