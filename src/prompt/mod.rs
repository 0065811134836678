//! Asking the person: PINs and confirmations.
//!
//! Every user-facing flow talks to the [`Prompt`] trait; the terminal,
//! the desktop (pinentry; on Windows the agent's own dialog in
//! `prompt/windows.rs`) and tests each implement it. A PIN lives in a
//! zeroizing secret from the moment it is read and is never logged.

use std::io::{BufRead, IsTerminal, Write};

use cryptoki::types::AuthPin;
use secrecy::SecretString;

use crate::token::TokenInfo;

mod assuan;
#[cfg(windows)]
pub mod windows;

/// Environment variable with the user PIN, for unattended tests only.
pub const PIN_ENV: &str = "CERTAGENT_PIN";
/// Environment variable with a card's admin PIN, for unattended tests only.
pub const ADMIN_PIN_ENV: &str = "CERTAGENT_ADMIN_PIN";
/// Environment variable with the bank's one-time password, for unattended tests only.
pub const OTP_ENV: &str = "CERTAGENT_OTP";

/// `CERTAGENT_PIN` and `CERTAGENT_OTP`, as the process found them.
struct EnvSecrets {
    pin: Option<SecretString>,
    admin_pin: Option<SecretString>,
    otp: Option<SecretString>,
}

static ENV_SECRETS: std::sync::OnceLock<EnvSecrets> = std::sync::OnceLock::new();

/// Take `CERTAGENT_PIN` and `CERTAGENT_OTP` out of the environment, once,
/// at start: they stay in this process (where a prompt that honours them
/// finds them) and no child (pinentry, the browser "Open bank site"
/// starts, the demo's bank) inherits them.
///
/// # Safety
///
/// Changes the environment: call it before any other thread runs (first
/// thing in `main`).
pub unsafe fn take_env_secrets() {
    let take = |name: &str| {
        let value = std::env::var_os(name)?;
        // SAFETY: the caller guarantees no other thread reads or writes
        // the environment now.
        unsafe { std::env::remove_var(name) };
        Some(SecretString::from(value.to_string_lossy().into_owned()))
    };
    let secrets = EnvSecrets {
        pin: take(PIN_ENV),
        admin_pin: take(ADMIN_PIN_ENV),
        otp: take(OTP_ENV),
    };
    let _ = ENV_SECRETS.set(secrets);
}

/// An unattended secret: the one taken at start, or (for a library user
/// that never took them) the environment's.
fn env_secret(name: &str) -> Option<SecretString> {
    use secrecy::ExposeSecret;
    match ENV_SECRETS.get() {
        Some(s) => {
            let v = match name {
                PIN_ENV => &s.pin,
                ADMIN_PIN_ENV => &s.admin_pin,
                _ => &s.otp,
            };
            v.as_ref()
                .map(|v| SecretString::from(v.expose_secret().to_string()))
        }
        None => std::env::var(name).ok().map(SecretString::from),
    }
}

/// Whether `CERTAGENT_PIN` or `CERTAGENT_OTP` was given to this process.
pub fn env_secrets_given() -> bool {
    env_secret(PIN_ENV).is_some()
        || env_secret(ADMIN_PIN_ENV).is_some()
        || env_secret(OTP_ENV).is_some()
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot ask for {what}: {why}; for unattended use set {hint}")]
    Unavailable {
        what: &'static str,
        why: String,
        hint: &'static str,
    },
    #[error("cancelled by the user")]
    Cancelled,
}

/// How certagent asks the user for things.
pub trait Prompt: Send + Sync {
    /// The user PIN for `token`. `purpose` says why, in a few words.
    fn pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError>;
    /// The admin PIN of a card (its security officer PIN: OpenPGP's PW3),
    /// which key generation needs on some cards. `purpose` says why.
    fn admin_pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        let _ = (token, purpose);
        Err(PromptError::Unavailable {
            what: "the card's admin PIN",
            why: "this prompt cannot ask for it".into(),
            hint: "CERTAGENT_ADMIN_PIN",
        })
    }
    /// A yes/no question; `false` means the user declined.
    fn confirm(&self, question: &str) -> Result<bool, PromptError>;
    /// The one-time password the bank gave for `user`.
    fn otp(&self, user: &str) -> Result<SecretString, PromptError>;
    /// Show information (a certificate, a result) until the user closes it.
    fn show(&self, text: &str) -> Result<(), PromptError> {
        println!("{text}");
        Ok(())
    }
    /// A prompt for the questions of one operation (a logon's consent and
    /// PIN, a renewal's PIN and admin PIN) that asks them all in one
    /// conversation: pinentry keeps one process for them, as gpg-agent
    /// does for a whole exchange. `None`: each question is asked on its own.
    fn conversation(&self) -> Option<std::sync::Arc<dyn Prompt>> {
        None
    }
}

/// The terminal. With `unattended`, `CERTAGENT_PIN` and `CERTAGENT_OTP`
/// (for unattended tests) are taken first: the one-shot commands a user
/// runs with them set opt in; the agent (`run`) only with `--unattended`.
#[derive(Debug, Default)]
pub struct TerminalPrompt {
    pub unattended: bool,
}

/// A warning about the PIN counter worth showing before asking.
pub fn pin_warning(token: &TokenInfo) -> Option<String> {
    if token.pin_final_try {
        Some(crate::i18n::tr("pin-final-try", &[]))
    } else if token.pin_count_low {
        Some(crate::i18n::tr("pin-count-low", &[]))
    } else {
        None
    }
}

use crate::i18n::Arg;

impl TerminalPrompt {
    /// A PIN from `env` (unattended only), else typed on the terminal after
    /// `question` (asked only when there is a terminal). Empty: cancelled.
    fn terminal_pin(
        &self,
        env: &'static str,
        what: &'static str,
        question: impl FnOnce() -> String,
    ) -> Result<AuthPin, PromptError> {
        if self.unattended
            && let Some(pin) = env_secret(env)
        {
            use secrecy::ExposeSecret;
            return Ok(AuthPin::from(pin.expose_secret().to_string()));
        }
        let tty_error = |why: String| PromptError::Unavailable {
            what,
            why,
            hint: env,
        };
        if !std::io::stdin().is_terminal() {
            return Err(tty_error("no terminal".into()));
        }
        let question = format!("{} ", question());
        let pin = rpassword::prompt_password(question).map_err(|e| tty_error(e.to_string()))?;
        if pin.is_empty() {
            return Err(PromptError::Cancelled);
        }
        Ok(AuthPin::from(pin))
    }
}

impl Prompt for TerminalPrompt {
    fn pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        self.terminal_pin(PIN_ENV, "the PIN", || {
            if let Some(w) = pin_warning(token) {
                eprintln!("{w}");
            }
            let label = crate::text::quoted(&token.label);
            crate::i18n::tr(
                "pin-terminal",
                &[("token", Arg::Str(&label)), ("purpose", Arg::Str(purpose))],
            )
        })
    }

    fn admin_pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        self.terminal_pin(ADMIN_PIN_ENV, "the card's admin PIN", || {
            let label = crate::text::quoted(&token.label);
            crate::i18n::tr(
                "admin-pin-terminal",
                &[("token", Arg::Str(&label)), ("purpose", Arg::Str(purpose))],
            )
        })
    }

    fn otp(&self, user: &str) -> Result<SecretString, PromptError> {
        if self.unattended
            && let Some(otp) = env_secret(OTP_ENV)
        {
            return Ok(otp);
        }
        if !std::io::stdin().is_terminal() {
            return Err(PromptError::Unavailable {
                what: "the one-time password",
                why: "no terminal".into(),
                hint: "CERTAGENT_OTP",
            });
        }
        let question = crate::i18n::tr("otp-terminal", &[("user", Arg::Str(user))]);
        let otp = rpassword::prompt_password(format!("{question} ")).map_err(|e| {
            PromptError::Unavailable {
                what: "the one-time password",
                why: e.to_string(),
                hint: "CERTAGENT_OTP",
            }
        })?;
        if otp.trim().is_empty() {
            return Err(PromptError::Cancelled);
        }
        Ok(SecretString::from(otp.trim().to_string()))
    }

    fn confirm(&self, question: &str) -> Result<bool, PromptError> {
        if !std::io::stdin().is_terminal() {
            return Err(PromptError::Unavailable {
                what: "a confirmation",
                why: "no terminal".into(),
                hint: "--yes",
            });
        }
        eprint!("{question} {} ", crate::i18n::tr("confirm-suffix", &[]));
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| PromptError::Unavailable {
                what: "a confirmation",
                why: e.to_string(),
                hint: "--yes",
            })?;
        Ok(matches!(
            line.trim(),
            "y" | "Y" | "yes" | "YES" | "Yes" | "はい"
        ))
    }
}

/// Fixed answers: for `certagent demo` (which made the token and knows its
/// PIN) and for tests. Never used for a real token.
pub struct ScriptedPrompt {
    pub pin: String,
    pub otp: Option<String>,
    pub confirm: bool,
}

impl Prompt for ScriptedPrompt {
    fn pin(&self, _token: &TokenInfo, _purpose: &str) -> Result<AuthPin, PromptError> {
        Ok(AuthPin::from(self.pin.clone()))
    }

    fn confirm(&self, _question: &str) -> Result<bool, PromptError> {
        Ok(self.confirm)
    }

    fn otp(&self, _user: &str) -> Result<SecretString, PromptError> {
        self.otp
            .clone()
            .map(SecretString::from)
            .ok_or(PromptError::Cancelled)
    }
}

/// The desktop: an Assuan pinentry program (GETPIN for secrets, CONFIRM for
/// consent), so the PIN is typed into a window of its own, never a web page.
/// Each question on its own starts the program once; an operation's
/// questions asked through [`Prompt::conversation`] share one process.
#[derive(Debug, Clone)]
pub struct PinentryPrompt {
    binary: std::path::PathBuf,
}

/// How long a pinentry window waits for the user, in seconds.
const PINENTRY_TIMEOUT: u16 = 120;

/// The most bytes a pinentry text may take once Assuan-escaped. Assuan
/// limits a line to 1000 bytes (the command word and the final newline
/// included).
pub const ASSUAN_TEXT_MAX: usize = 900;

/// Text made safe for a dialog: each line through [`crate::text::clean`]
/// (no control, bidirectional or invisible characters), the line breaks
/// kept.
pub fn clean(text: &str) -> String {
    text.split('\n')
        .map(|line| crate::text::clean(line, usize::MAX))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A name (certificate subject, origin) for a sentence:
/// [`crate::text::clean`], at most `max` characters (cut with an ellipsis).
pub fn short(text: &str, max: usize) -> String {
    crate::text::clean(text, max)
}

/// Cleaned text that fits one Assuan line: cut (with an ellipsis, when
/// that fits) so that its escaped form stays within `max` bytes. Escaped as
/// the pinentry crate sends it: `\n`, `\r` and `%` take three bytes, and so
/// does a final backslash.
pub fn fit_assuan(text: &str, max: usize) -> String {
    let escaped_len = |c: char| match c {
        '\n' | '\r' | '%' => 3,
        c => c.len_utf8(),
    };
    let wire_len =
        |s: &str| s.chars().map(escaped_len).sum::<usize>() + if s.ends_with('\\') { 2 } else { 0 };
    let text = clean(text);
    if wire_len(&text) <= max {
        return text;
    }
    let ellipsis = if '…'.len_utf8() <= max { "…" } else { "" };
    let budget = max - ellipsis.len();
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        if used + escaped_len(c) > budget {
            break;
        }
        used += escaped_len(c);
        out.push(c);
    }
    out.push_str(ellipsis);
    // Without an ellipsis the cut may end in a backslash, escaped longer.
    while wire_len(&out) > max {
        out.pop();
    }
    out
}

impl PinentryPrompt {
    /// The configured program, else `pinentry` from `PATH`.
    pub fn find(configured: Option<&std::path::Path>) -> Result<PinentryPrompt, PromptError> {
        let name = configured.unwrap_or(std::path::Path::new("pinentry"));
        let binary = locate(name).ok_or_else(|| PromptError::Unavailable {
            what: "the PIN",
            why: format!("the pinentry program {} was not found", name.display()),
            hint: "[agent] pinentry, or install one: apt-get install pinentry-gnome3",
        })?;
        Ok(PinentryPrompt { binary })
    }
}

/// `name` as a program to start: a path as it is, a bare name searched in
/// `PATH` (with `.exe` on Windows). Only an existing file is taken.
fn locate(name: &std::path::Path) -> Option<std::path::PathBuf> {
    let is_program = |p: &std::path::Path| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        }
        #[cfg(not(unix))]
        {
            p.is_file()
        }
    };
    if name.components().count() > 1 || name.is_absolute() {
        return is_program(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let candidate = dir.join(name);
        if is_program(&candidate) {
            return Some(candidate);
        }
        #[cfg(windows)]
        {
            let exe = candidate.with_extension("exe");
            if is_program(&exe) {
                return Some(exe);
            }
        }
        None
    })
}

/// One operation's questions to pinentry: the program is started at the
/// first and kept for the rest (started again only if it ended), and told
/// `BYE` when the operation's turn ends.
struct PinentrySession {
    binary: std::path::PathBuf,
    conversation: std::sync::Mutex<Option<assuan::Conversation>>,
}

impl PinentrySession {
    /// Run `ask` in the conversation. A conversation that broke is not
    /// used again.
    fn ask<T>(
        &self,
        what: &'static str,
        ask: impl FnOnce(&mut assuan::Conversation) -> Result<T, assuan::Failure>,
    ) -> Result<T, PromptError> {
        let mut guard = self.conversation.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_mut().is_some_and(|c| c.ended()) {
            *guard = None;
        }
        let conversation = match guard.as_mut() {
            Some(c) => c,
            None => {
                guard.insert(assuan::Conversation::open(&self.binary).map_err(|e| failed(what, e))?)
            }
        };
        let result = ask(conversation);
        if matches!(result, Err(assuan::Failure::Broken(_))) {
            *guard = None;
        }
        result.map_err(|e| failed(what, e))
    }

    /// The dialog's texts. Each is sent unless the conversation has it
    /// already, so nothing of an earlier question shows in this one and
    /// nothing is sent twice. (A confirmation or message shows no prompt.)
    fn texts(
        c: &mut assuan::Conversation,
        description: &str,
        prompt: Option<&str>,
        ok: &str,
        cancel: &str,
    ) -> Result<(), assuan::Failure> {
        let (description, ok, cancel) = (
            fit_assuan(description, ASSUAN_TEXT_MAX),
            fit_assuan(ok, 100),
            fit_assuan(cancel, 100),
        );
        let prompt = prompt.map(|p| fit_assuan(p, 200));
        let timeout = PINENTRY_TIMEOUT.to_string();
        let mut texts = vec![
            ("SETTITLE", "certagent"),
            ("SETDESC", description.as_str()),
            ("SETOK", ok.as_str()),
            ("SETCANCEL", cancel.as_str()),
            ("SETTIMEOUT", timeout.as_str()),
        ];
        if let Some(p) = &prompt {
            texts.push(("SETPROMPT", p.as_str()));
        }
        c.set_all(&texts)
    }

    fn secret(&self, text: SecretText) -> Result<SecretString, PromptError> {
        let (ok, cancel) = (
            crate::i18n::tr("dialog-ok", &[]),
            crate::i18n::tr("dialog-cancel", &[]),
        );
        let secret = self.ask(text.what, |c| {
            Self::texts(c, &text.description, Some(&text.prompt), &ok, &cancel)?;
            c.command("GETPIN", None)
        })?;
        use secrecy::ExposeSecret;
        match secret {
            Some(s) if !s.expose_secret().is_empty() => Ok(s),
            _ => Err(PromptError::Cancelled),
        }
    }
}

fn failed(what: &'static str, e: assuan::Failure) -> PromptError {
    match e {
        assuan::Failure::Cancelled | assuan::Failure::Timeout => PromptError::Cancelled,
        other => PromptError::Unavailable {
            what,
            why: format!("pinentry failed: {other}"),
            hint: "[agent] pinentry",
        },
    }
}

/// What a dialog that asks for a secret says: what it asks for (in
/// errors), why (the description) and the field's label. Every desktop
/// prompt (pinentry, the Windows dialog) says the same.
pub(crate) struct SecretText {
    pub what: &'static str,
    pub description: String,
    pub prompt: String,
}

/// The user PIN's texts, with the counter's warning where there is one.
pub(crate) fn pin_text(token: &TokenInfo, purpose: &str) -> SecretText {
    use crate::i18n::{Arg, tr};
    let label = short(&token.label, 32);
    let mut description = tr(
        "pin-description",
        &[("token", Arg::Str(&label)), ("purpose", Arg::Str(purpose))],
    );
    if let Some(w) = pin_warning(token) {
        description.push_str("\n\n");
        description.push_str(&w);
    }
    SecretText {
        what: "the PIN",
        description,
        prompt: tr("pin-prompt", &[]),
    }
}

/// A card's admin PIN's texts.
pub(crate) fn admin_pin_text(token: &TokenInfo, purpose: &str) -> SecretText {
    use crate::i18n::{Arg, tr};
    let label = short(&token.label, 32);
    SecretText {
        what: "the card's admin PIN",
        description: tr(
            "admin-pin-description",
            &[("token", Arg::Str(&label)), ("purpose", Arg::Str(purpose))],
        ),
        prompt: tr("admin-pin-prompt", &[]),
    }
}

/// The one-time password's texts.
pub(crate) fn otp_text(user: &str) -> SecretText {
    use crate::i18n::{Arg, tr};
    SecretText {
        what: "the one-time password",
        description: tr("otp-description", &[("user", Arg::Str(user))]),
        prompt: tr("otp-prompt", &[]),
    }
}

impl PinentryPrompt {
    /// A conversation of its own for one question.
    fn once(&self) -> PinentrySession {
        PinentrySession {
            binary: self.binary.clone(),
            conversation: std::sync::Mutex::new(None),
        }
    }
}

impl Prompt for PinentryPrompt {
    fn pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        self.once().pin(token, purpose)
    }

    fn admin_pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        self.once().admin_pin(token, purpose)
    }

    fn confirm(&self, question: &str) -> Result<bool, PromptError> {
        self.once().confirm(question)
    }

    fn show(&self, text: &str) -> Result<(), PromptError> {
        self.once().show(text)
    }

    fn otp(&self, user: &str) -> Result<SecretString, PromptError> {
        self.once().otp(user)
    }

    fn conversation(&self) -> Option<std::sync::Arc<dyn Prompt>> {
        Some(std::sync::Arc::new(self.once()))
    }
}

impl Prompt for PinentrySession {
    fn pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        self.secret(pin_text(token, purpose))
    }

    fn admin_pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        self.secret(admin_pin_text(token, purpose))
    }

    fn confirm(&self, question: &str) -> Result<bool, PromptError> {
        let (allow, deny) = (
            crate::i18n::tr("dialog-allow", &[]),
            crate::i18n::tr("dialog-deny", &[]),
        );
        self.ask("a confirmation", |c| {
            Self::texts(c, question, None, &allow, &deny)?;
            match c.command("CONFIRM", None) {
                Ok(_) => Ok(true),
                Err(assuan::Failure::Cancelled | assuan::Failure::NotConfirmed) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    fn show(&self, text: &str) -> Result<(), PromptError> {
        let (ok, cancel) = (
            crate::i18n::tr("dialog-ok", &[]),
            crate::i18n::tr("dialog-cancel", &[]),
        );
        self.ask("a message", |c| {
            Self::texts(c, text, None, &ok, &cancel)?;
            c.command("MESSAGE", None).map(|_| ())
        })
    }

    fn otp(&self, user: &str) -> Result<SecretString, PromptError> {
        self.secret(otp_text(user))
    }
}

/// The agent's prompt: pinentry where one is installed (or configured), else
/// the terminal if there is one, else an explanation at the moment a prompt
/// is needed (the agent still shows status and notices).
///
/// With `unattended` (`run --unattended`, never the default), the PIN and
/// the one-time password come from `CERTAGENT_PIN` and `CERTAGENT_OTP`
/// where they are set; confirmations are still asked.
pub fn desktop_prompt(
    configured: Option<&std::path::Path>,
    unattended: bool,
) -> std::sync::Arc<dyn Prompt> {
    // On Windows the agent asks in a window of its own, unless a pinentry
    // program (Gpg4win's) is configured.
    #[cfg(windows)]
    let found = match configured {
        Some(_) => PinentryPrompt::find(configured).map(|p| std::sync::Arc::new(p) as _),
        None => Ok(std::sync::Arc::new(windows::WindowsPrompt) as std::sync::Arc<dyn Prompt>),
    };
    #[cfg(not(windows))]
    let found = PinentryPrompt::find(configured).map(|p| std::sync::Arc::new(p) as _);
    let inner: std::sync::Arc<dyn Prompt> = match found {
        Ok(p) => p,
        Err(e) if std::io::stdin().is_terminal() => {
            log::warn!("{e}; asking on the terminal instead");
            std::sync::Arc::new(TerminalPrompt { unattended: false })
        }
        Err(e) => std::sync::Arc::new(NoPrompt(e.to_string())),
    };
    if unattended {
        std::sync::Arc::new(EnvFirst(inner))
    } else {
        if env_secrets_given() {
            log::warn!(
                "{PIN_ENV}/{OTP_ENV} are set and ignored: the agent asks in its own window \
                 (run --unattended is for unattended tests only)"
            );
        }
        inner
    }
}

/// The PIN and one-time password from the environment where given (for
/// unattended tests), everything else from `0`.
struct EnvFirst(std::sync::Arc<dyn Prompt>);

impl Prompt for EnvFirst {
    fn pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        use secrecy::ExposeSecret;
        match env_secret(PIN_ENV) {
            Some(pin) => Ok(AuthPin::from(pin.expose_secret().to_string())),
            None => self.0.pin(token, purpose),
        }
    }
    fn admin_pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        use secrecy::ExposeSecret;
        match env_secret(ADMIN_PIN_ENV) {
            Some(pin) => Ok(AuthPin::from(pin.expose_secret().to_string())),
            None => self.0.admin_pin(token, purpose),
        }
    }
    fn confirm(&self, question: &str) -> Result<bool, PromptError> {
        self.0.confirm(question)
    }
    fn otp(&self, user: &str) -> Result<SecretString, PromptError> {
        match env_secret(OTP_ENV) {
            Some(otp) => Ok(otp),
            None => self.0.otp(user),
        }
    }
    fn show(&self, text: &str) -> Result<(), PromptError> {
        self.0.show(text)
    }
    fn conversation(&self) -> Option<std::sync::Arc<dyn Prompt>> {
        self.0
            .conversation()
            .map(|c| std::sync::Arc::new(EnvFirst(c)) as std::sync::Arc<dyn Prompt>)
    }
}

/// No way to ask: every question fails with the reason.
struct NoPrompt(String);

impl NoPrompt {
    fn fail(&self, what: &'static str) -> PromptError {
        PromptError::Unavailable {
            what,
            why: self.0.clone(),
            hint: "[agent] pinentry (install one: apt-get install pinentry-gnome3)",
        }
    }
}

impl Prompt for NoPrompt {
    fn pin(&self, _token: &TokenInfo, _purpose: &str) -> Result<AuthPin, PromptError> {
        Err(self.fail("the PIN"))
    }
    fn confirm(&self, _question: &str) -> Result<bool, PromptError> {
        Err(self.fail("a confirmation"))
    }
    fn otp(&self, _user: &str) -> Result<SecretString, PromptError> {
        Err(self.fail("the one-time password"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_control_characters_never_reach_a_dialog() {
        let subject = "CN=Ana\u{202E}gnp.exe,O=Bank\u{0007}\u{200F}\u{2066}x\u{2069}";
        let c = clean(subject);
        assert_eq!(c, "CN=Anagnp.exe,O=Bankx");
        assert!(short("a\nb", 10) == "a b");
    }

    #[test]
    fn every_text_fits_an_assuan_line() {
        for text in [
            "%".repeat(2000),
            "\n".repeat(2000),
            "証".repeat(2000),
            format!("{}\\", "a".repeat(899)),
        ] {
            let fitted = fit_assuan(&text, ASSUAN_TEXT_MAX);
            let escaped: usize = fitted
                .chars()
                .map(|c| match c {
                    '\n' | '\r' | '%' => 3,
                    c => c.len_utf8(),
                })
                .sum();
            assert!(escaped <= ASSUAN_TEXT_MAX, "{escaped}");
        }
        assert_eq!(fit_assuan("short", 900), "short");
        assert_eq!(short(&"x".repeat(300), 10).chars().count(), 10);
    }

    /// The parameter as the pinentry crate puts it on the wire (0.8,
    /// assuan.rs): `\n`, `\r` and `%` escaped, and a final backslash too.
    fn wire_len(text: &str) -> usize {
        text.chars()
            .map(|c| match c {
                '\n' | '\r' | '%' => 3,
                c => c.len_utf8(),
            })
            .sum::<usize>()
            + if text.ends_with('\\') { 2 } else { 0 }
    }

    /// Found by fuzzing (fuzz/ prompt_text): below 3 bytes the ellipsis
    /// alone overran the limit ("…" for a limit of 0).
    #[test]
    fn a_limit_too_small_for_the_ellipsis_is_kept() {
        let text = "\0\0Enter the PIN of y\u{202e} mo.cknab\n%\r\\";
        for max in 0..8 {
            let fitted = fit_assuan(text, max);
            assert!(wire_len(&fitted) <= max, "{max}: {fitted:?}");
        }
        assert_eq!(fit_assuan("abc", 0), "");
        assert_eq!(fit_assuan("abcd", 2), "ab");
        assert_eq!(fit_assuan("abcd", 3), "…");
    }

    /// The pinentry crate escapes a final backslash as `%5C`: a text that
    /// fits byte for byte but ends in one must still fit once escaped.
    #[test]
    fn a_final_backslash_counts_as_escaped() {
        for max in [1, 2, 3, 10, ASSUAN_TEXT_MAX] {
            let text = format!("{}\\", "a".repeat(max.saturating_sub(1)));
            let fitted = fit_assuan(&text, max);
            assert!(wire_len(&fitted) <= max, "{max}: {fitted:?}");
        }
    }
}
