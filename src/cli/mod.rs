//! The `certagent` command line.

mod browser_policy;
mod demo;
mod doctor;
mod native_messaging;
mod renew;
mod status;
mod tokens;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::Error;
use crate::cert::StatusEntry;
use crate::config::Config;
use crate::drivers::Drivers;
use crate::holdings::{BankIssuers, TokenCerts};
use crate::i18n::{Arg, Lang, tr_in};
use crate::policy::Policy;
use crate::prompt::{Prompt, TerminalPrompt};
use crate::token::{Module, Token, TokenInfo};

/// The command line. Its help texts are in the catalogues (`help-*` in
/// src/i18n/*.ftl), in the user's language: see [`command`].
#[derive(Debug, Parser)]
#[command(name = "certagent", version)]
pub struct Cli {
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, global = true)]
    pub json: bool,
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; what each does is `help-NAME` in src/i18n/en.ftl.
#[derive(Debug, Subcommand)]
pub enum Command {
    Tokens,
    Status,
    Show {
        #[arg(long, value_name = "HEX")]
        id: Option<String>,
    },
    Doctor,
    Renew {
        #[arg(long, value_name = "HEX")]
        id: Option<String>,
        #[arg(long)]
        yes: bool,
    },
    Enroll {
        #[arg(long, value_name = "ID")]
        user: String,
        #[arg(long, value_name = "HEX")]
        id: Option<String>,
        #[arg(long)]
        yes: bool,
    },
    Run {
        #[arg(long)]
        no_tray: bool,
        #[arg(long)]
        unattended: bool,
    },
    Demo,
    #[command(name = "browser-policy")]
    BrowserPolicy {
        #[arg(long, conflicts_with = "remove")]
        install: bool,
        #[arg(long)]
        remove: bool,
    },
    #[command(name = "native-messaging")]
    NativeMessaging {
        #[arg(long, conflicts_with = "remove")]
        install: bool,
        #[arg(long)]
        remove: bool,
    },
    #[command(name = "native-host")]
    NativeHost,
}

/// The command line with every help text in `lang`: the command's, each
/// subcommand's (`help-NAME`) and each option's (`help-NAME-ARG`, else the
/// shared `help-arg-ARG`), the headings and clap's own help and version
/// flags. Built first, so the flags clap adds are there to be named.
pub fn command(lang: Lang) -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    cmd.build();
    localize(cmd, lang, None)
}

fn localize(cmd: clap::Command, lang: Lang, sub: Option<&str>) -> clap::Command {
    let t = |id: &str| tr_in(lang, id, &[]);
    let about = match sub {
        None => "help-about".to_string(),
        Some(name) => format!("help-{name}"),
    };
    let template = format!(
        "{{before-help}}{{about-with-newline}}\n{} {{usage}}\n\n{{all-args}}{{after-help}}",
        t("help-usage")
    );
    let mut cmd = cmd
        .about(t(&about))
        .help_template(template)
        .subcommand_help_heading(t("help-commands"));
    let ids: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        let own = sub.map(|name| format!("help-{name}-{id}"));
        let key = own
            .filter(|k| crate::i18n::has(k))
            .unwrap_or_else(|| format!("help-arg-{id}"));
        let (help, heading) = (t(&key), t("help-options"));
        cmd = cmd.mut_arg(id, |a| a.help(help).help_heading(heading));
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(&name, |c| localize(c, lang, Some(&name)));
    }
    cmd
}

pub(crate) struct App {
    pub config: Config,
    pub drivers: Drivers,
    pub json: bool,
    /// The language of human-readable output: the user's; English with
    /// `--json`, whose texts stay the same for every script.
    pub lang: Lang,
    pub prompt: Box<dyn Prompt>,
}

/// The native messaging host, as the browser starts it (with its own
/// arguments, no subcommand): see [`crate::native_messaging`].
pub fn native_host() -> Result<(), Error> {
    native_messaging::host()
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
    if let Command::NativeMessaging { install, remove } = cli.command {
        let action = match (install, remove) {
            (true, _) => native_messaging::Action::Install,
            (_, true) => native_messaging::Action::Remove,
            _ => native_messaging::Action::Print,
        };
        return native_messaging::run(cli.json, action);
    }
    if let Command::NativeHost = cli.command {
        // The agent reads the configuration; the host only forwards.
        return native_messaging::host();
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
        Command::BrowserPolicy { .. } | Command::NativeMessaging { .. } | Command::NativeHost => {
            Err(Error::Usage(
                "this command is handled before the configuration is loaded".into(),
            ))
        }
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

pub(crate) use crate::holdings::TokenCert;

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
                    let reason = crate::text::clean(&e.to_string(), crate::text::MESSAGE_MAX);
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
                crate::bank_ca::bank_ca_certs(bank, &dir, &|| {})
                    .await
                    .map_err(|e| Error::Renewal(e.into()))
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
        Ok(crate::holdings::token_certificates(token, &issuers)?)
    }

    /// The certificates on the token, the bank's apart from the others.
    pub fn certificates(&self, token: &Token) -> Result<TokenCerts, Error> {
        Ok(crate::holdings::token_certificates(token, &self.issuers())?)
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
    // The names cleaned, the label quoted: they are the token's, not ours.
    use crate::text::{NAME_MAX, clean, quoted};
    let label = quoted(&t.label);
    tr_in(
        lang,
        "cli-token",
        &[
            ("label", Arg::Str(&label)),
            ("serial", Arg::Str(&clean(&t.serial, NAME_MAX))),
            ("maker", Arg::Str(&clean(&t.manufacturer, NAME_MAX))),
            ("model", Arg::Str(&clean(&t.model, NAME_MAX))),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand and option has its help text in both languages
    /// (a missing one would show its message id), and the Japanese help
    /// is Japanese.
    #[test]
    fn every_help_text_is_in_both_languages() {
        fn walk(cmd: &clap::Command, path: &str, lang: Lang, seen: &mut usize) {
            let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(
                !about.is_empty() && !about.starts_with("help-"),
                "{path} in {lang:?}: {about:?}"
            );
            for a in cmd.get_arguments() {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(
                    !help.is_empty() && !help.starts_with("help-"),
                    "{path} --{} in {lang:?}: {help:?}",
                    a.get_id()
                );
                *seen += 1;
            }
            for c in cmd.get_subcommands() {
                walk(c, &format!("{path} {}", c.get_name()), lang, seen);
            }
        }
        for lang in [Lang::En, Lang::Ja] {
            let mut seen = 0;
            walk(&command(lang), "certagent", lang, &mut seen);
            assert!(seen > 40, "{seen} options");
        }
        let ja = command(Lang::Ja).render_long_help().to_string();
        assert!(ja.contains("使い方:") && ja.contains("電子証明書"), "{ja}");
        let en = command(Lang::En).render_long_help().to_string();
        assert!(en.starts_with("Keeps bank client certificates"), "{en}");
    }
}
