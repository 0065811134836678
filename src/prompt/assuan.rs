//! One pinentry process for all the questions of one operation.
//!
//! gpg-agent keeps one pinentry for a whole exchange; certagent does the
//! same for a logon or a renewal: consent (`CONFIRM`), the PIN and a card's
//! admin PIN (`GETPIN`) are commands of one Assuan conversation, so the user
//! sees one program and the agent starts one process. Written here because
//! the `pinentry` crate starts a process for every question and has no way
//! to keep one.
//!
//! Everything the program answers is treated as hostile: lines are bounded
//! (Assuan's 1,000 bytes), the secret in `D` lines is bounded, decoded into
//! zeroizing memory and must be UTF-8, and anything unexpected ends the
//! conversation with an error.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use zeroize::Zeroizing;

/// Assuan's longest line, the final newline included.
const LINE_MAX: usize = 1000;
/// The most bytes a secret (`D` lines, decoded) may take.
const SECRET_MAX: usize = 4096;
/// How long a program that was told `BYE` may take to end before it is
/// killed.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// libgpg-error's codes (the low 16 bits of an `ERR` answer).
const GPG_ERR_TIMEOUT: u32 = 62;
const GPG_ERR_CANCELED: u32 = 99;
const GPG_ERR_NOT_CONFIRMED: u32 = 114;

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The user pressed Cancel (or closed the window).
    Cancelled,
    /// The dialog's timeout passed.
    Timeout,
    /// The user pressed the "not OK" button of a confirmation.
    NotConfirmed,
    /// The program said no for another reason (`ERR`); the conversation
    /// goes on.
    Refused(String),
    /// The program failed, ended or answered something unexpected: the
    /// conversation is over.
    Broken(String),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Broken(e.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Cancelled => f.write_str("cancelled"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::NotConfirmed => f.write_str("not confirmed"),
            Failure::Refused(why) | Failure::Broken(why) => f.write_str(why),
        }
    }
}

/// A running pinentry program and its pipes.
pub(crate) struct Conversation {
    /// Always `Some` until the conversation is dropped.
    child: Option<Child>,
    /// The texts set so far (`SETDESC` and the like), so that a later
    /// question sends only what changes.
    texts: Vec<(&'static str, String)>,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

impl Conversation {
    /// Start `binary` and read its greeting.
    pub fn open(binary: &Path) -> Result<Conversation, Failure> {
        let mut child = Command::new(binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::Broken(format!("cannot start {}: {e}", binary.display())))?;
        let (Some(to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::Broken("no pipes to the program".into()));
        };
        let mut conversation = Conversation {
            child: Some(child),
            texts: Vec::new(),
            to,
            from: BufReader::new(from),
        };
        conversation.answer()?;
        // Where a text-mode pinentry would draw (pinentry-gnome3 falls back
        // to it without a display), when there is a terminal. A program
        // that does not know an option says so and is still usable.
        #[cfg(unix)]
        if std::fs::File::open("/dev/tty").is_ok() {
            let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
            for option in ["ttyname=/dev/tty".to_string(), format!("ttytype={term}")] {
                match conversation.command("OPTION", Some(&option)) {
                    Err(Failure::Broken(why)) => return Err(Failure::Broken(why)),
                    Err(e) => log::debug!("pinentry refused OPTION {option}: {e}"),
                    Ok(_) => {}
                }
            }
        }
        Ok(conversation)
    }

    /// Set the texts of the next dialog (`SETDESC`, `SETOK`...), those not
    /// set to that already. They go out in one write and their answers are
    /// read after it (Assuan servers read line by line, so the commands
    /// queue in the pipe): one round trip to the program, not one each.
    /// The dialog itself (`CONFIRM`, `GETPIN`) is sent only after every
    /// text is known to be set, so it never shows a text of before.
    pub fn set_all(&mut self, texts: &[(&'static str, &str)]) -> Result<(), Failure> {
        let changed: Vec<(&'static str, &str)> = texts
            .iter()
            .filter(|(verb, value)| !self.texts.iter().any(|(v, t)| v == verb && t == value))
            .copied()
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let mut lines = String::new();
        for (verb, value) in &changed {
            lines.push_str(&encode(verb, Some(value))?);
        }
        self.to.write_all(lines.as_bytes())?;
        self.to.flush()?;
        // Every answer is read, even after a refusal, so the next command
        // meets its own.
        let mut first_error = None;
        for (verb, value) in changed {
            match self.answer() {
                Ok(_) => {
                    self.texts.retain(|(v, _)| *v != verb);
                    self.texts.push((verb, value.to_string()));
                }
                Err(Failure::Broken(why)) => return Err(Failure::Broken(why)),
                Err(e) => {
                    self.texts.retain(|(v, _)| *v != verb);
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Whether the program has ended (the user killed it, it crashed).
    pub fn ended(&mut self) -> bool {
        !matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Send one command; its data (a secret) where it returned some.
    pub fn command(
        &mut self,
        verb: &str,
        parameter: Option<&str>,
    ) -> Result<Option<SecretString>, Failure> {
        let line = encode(verb, parameter)?;
        self.to.write_all(line.as_bytes())?;
        self.to.flush()?;
        self.answer()
    }

    /// Read until `OK` or `ERR`, collecting `D` lines.
    fn answer(&mut self) -> Result<Option<SecretString>, Failure> {
        let mut data: Option<Zeroizing<Vec<u8>>> = None;
        loop {
            let line = self.line()?;
            let line = line.as_slice();
            if line == b"OK" || line.starts_with(b"OK ") {
                return match data {
                    None => Ok(None),
                    Some(mut bytes) => {
                        let owned = std::mem::take(&mut *bytes);
                        match String::from_utf8(owned) {
                            Ok(text) => Ok(Some(SecretString::from(text))),
                            Err(e) => {
                                drop(Zeroizing::new(e.into_bytes()));
                                Err(Failure::Broken("the answer is not UTF-8".into()))
                            }
                        }
                    }
                };
            }
            if let Some(rest) = line.strip_prefix(b"ERR ") {
                return Err(error(rest));
            }
            if let Some(encoded) = line.strip_prefix(b"D ") {
                let buffer = data.get_or_insert_with(|| Zeroizing::new(Vec::new()));
                decode_into(encoded, buffer)?;
                continue;
            }
            if line.starts_with(b"INQUIRE ") {
                // pinentry asks nothing of certagent's commands; decline.
                self.to.write_all(b"CAN\n")?;
                self.to.flush()?;
                continue;
            }
            if line.starts_with(b"S ") || line == b"S" || line.starts_with(b"#") {
                continue;
            }
            return Err(Failure::Broken("an answer that is not Assuan".into()));
        }
    }

    /// One line, without its line ending, in zeroizing memory (it may be a
    /// `D` line with the secret).
    fn line(&mut self) -> Result<Zeroizing<Vec<u8>>, Failure> {
        // Room for the longest line up front: growing would leave a copy
        // of what was read so far (a secret) behind in freed memory.
        let mut line = Zeroizing::new(Vec::with_capacity(LINE_MAX));
        let read = (&mut self.from)
            .take(LINE_MAX as u64)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Err(Failure::Broken("the program ended".into()));
        }
        if line.last() != Some(&b'\n') {
            return Err(Failure::Broken(
                "a line longer than Assuan allows, or none".into(),
            ));
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(line)
    }
}

impl Drop for Conversation {
    /// `BYE`; the program is then given a moment to end (killed after
    /// that) and reaped on a thread of its own, so an operation never
    /// waits for its dialog program to exit.
    fn drop(&mut self) {
        let _ = self.to.write_all(b"BYE\n").and_then(|()| self.to.flush());
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let reaper = std::thread::Builder::new()
            .name("pinentry-reaper".into())
            .spawn(move || reap(child));
        if let Err(e) = reaper {
            log::warn!("cannot wait for the pinentry program: {e}");
        }
    }
}

/// Wait for `child` to end after `BYE`, killing it after [`CLOSE_WAIT`].
fn reap(mut child: Child) {
    let deadline = Instant::now() + CLOSE_WAIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => break,
        }
    }
    log::warn!("the pinentry program did not end after BYE; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// A command line: `%`, CR and LF percent-escaped (and a final backslash,
/// which Assuan would read as a continuation), within Assuan's limit.
fn encode(verb: &str, parameter: Option<&str>) -> Result<String, Failure> {
    let mut line = String::from(verb);
    if let Some(p) = parameter {
        line.push(' ');
        for c in p.chars() {
            match c {
                '\n' => line.push_str("%0A"),
                '\r' => line.push_str("%0D"),
                '%' => line.push_str("%25"),
                c => line.push(c),
            }
        }
        if line.ends_with('\\') {
            line.pop();
            line.push_str("%5C");
        }
    }
    line.push('\n');
    if line.len() > LINE_MAX {
        return Err(Failure::Broken(format!(
            "{verb}: a text longer than Assuan allows"
        )));
    }
    Ok(line)
}

/// Append a `D` line's percent-decoded bytes to `out`, within
/// [`SECRET_MAX`].
fn decode_into(encoded: &[u8], out: &mut Vec<u8>) -> Result<(), Failure> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while let Some(&b) = encoded.get(i) {
        let byte = if b == b'%' {
            let high = encoded.get(i + 1).copied().and_then(hex);
            let low = encoded.get(i + 2).copied().and_then(hex);
            match (high, low) {
                (Some(h), Some(l)) => {
                    i += 3;
                    h << 4 | l
                }
                _ => return Err(Failure::Broken("a bad escape in the answer".into())),
            }
        } else {
            i += 1;
            b
        };
        if out.len() >= SECRET_MAX {
            return Err(Failure::Broken("an answer longer than a PIN".into()));
        }
        // Grow by hand so a reallocation never leaves a copy behind.
        if out.len() == out.capacity() {
            let mut bigger = Vec::with_capacity((out.capacity() * 2).clamp(64, SECRET_MAX));
            bigger.extend_from_slice(out);
            let mut old = std::mem::replace(out, bigger);
            zeroize::Zeroize::zeroize(&mut old);
        }
        out.push(byte);
    }
    Ok(())
}

/// `ERR <code> [description]` as a [`Failure`].
fn error(rest: &[u8]) -> Failure {
    let text = String::from_utf8_lossy(rest);
    let mut words = text.splitn(2, ' ');
    let code = words
        .next()
        .and_then(|c| c.parse::<u64>().ok())
        .map(|c| (c & 0xFFFF) as u32);
    match code {
        Some(GPG_ERR_CANCELED) => Failure::Cancelled,
        Some(GPG_ERR_TIMEOUT) => Failure::Timeout,
        Some(GPG_ERR_NOT_CONFIRMED) => Failure::NotConfirmed,
        _ => Failure::Refused(format!(
            "the program answered ERR {}",
            crate::text::clean(&text, 120)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn commands_are_escaped_and_bounded() {
        assert_eq!(encode("GETPIN", None).unwrap(), "GETPIN\n");
        assert_eq!(
            encode("SETDESC", Some("a%b\r\nc\\")).unwrap(),
            "SETDESC a%25b%0D%0Ac%5C\n"
        );
        assert!(encode("SETDESC", Some(&"x".repeat(LINE_MAX))).is_err());
    }

    #[test]
    fn data_lines_decode_within_the_bound() {
        let mut out = Vec::new();
        decode_into(b"12%2534%0A", &mut out).unwrap();
        assert_eq!(out, b"12%34\n");
        assert!(decode_into(b"%zz", &mut Vec::new()).is_err());
        assert!(decode_into(b"%4", &mut Vec::new()).is_err());
        let mut big = Vec::new();
        let line = vec![b'7'; 900];
        let mut result = Ok(());
        for _ in 0..10 {
            result = decode_into(&line, &mut big);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err() && big.len() <= SECRET_MAX);
    }

    #[test]
    fn errors_map_by_their_low_sixteen_bits() {
        assert!(matches!(
            error(b"83886179 Operation cancelled"),
            Failure::Cancelled
        ));
        assert!(matches!(error(b"83886142 Timeout"), Failure::Timeout));
        assert!(matches!(error(b"114"), Failure::NotConfirmed));
        assert!(matches!(error(b"nonsense"), Failure::Refused(_)));
    }

    /// A conversation with a shell script: two questions, one process.
    #[cfg(unix)]
    #[test]
    fn one_process_answers_several_commands() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("pinentry");
        let starts = dir.path().join("starts");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\necho start >> '{}'\necho 'OK hello'\nwhile read -r l; do case \"$l\" in \
                 GETPIN) printf 'D 12%%2534\\nOK\\n';; CONFIRM) echo 'ERR 83886179 cancelled';; \
                 BYE) echo OK; exit 0;; *) echo OK;; esac; done\n",
                starts.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Conversation::open(&program).unwrap();
        assert!(matches!(
            c.command("CONFIRM", None),
            Err(Failure::Cancelled)
        ));
        let pin = c.command("GETPIN", None).unwrap().unwrap();
        assert_eq!(pin.expose_secret(), "12%34");
        assert!(c.command("SETDESC", Some("x")).unwrap().is_none());
        c.set_all(&[("SETTITLE", "t"), ("SETOK", "Allow")]).unwrap();
        c.set_all(&[("SETTITLE", "t"), ("SETOK", "Allow")]).unwrap();
        c.set_all(&[("SETOK", "OK")]).unwrap();
        let pin = c.command("GETPIN", None).unwrap().unwrap();
        assert_eq!(pin.expose_secret(), "12%34", "in step after the texts");
        drop(c);
        let started = std::fs::read_to_string(&starts).unwrap();
        assert_eq!(started.lines().count(), 1);
    }

    /// A program that floods one endless line is cut off, not buffered.
    #[cfg(unix)]
    #[test]
    fn an_endless_line_ends_the_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("pinentry");
        std::fs::write(&program, "#!/bin/sh\nexec tr -d '\\n' < /dev/zero\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            Conversation::open(&program),
            Err(Failure::Broken(_))
        ));
    }
}
