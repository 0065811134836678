//! `certagent demo`: the whole story in a few seconds, on a fresh SoftHSM
//! token in a temporary directory and the reference bank: the
//! `certagent-bank` program beside `certagent`, driven as a tester would.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use cryptoki::types::AuthPin;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;

use super::{App, renew, status};
use crate::Error;
use crate::config::{AgentConfig, BankConfig, Config, DEFAULT_LISTEN, TokenConfig};
use crate::drivers::Drivers;
use crate::i18n::{Arg, Lang, tr};
use crate::policy::{NoticeKind, Policy};
use crate::prompt::ScriptedPrompt;
use crate::token::{KeyKind, Module, Token, TokenSelector};

const LABEL: &str = "demo-token";
const PIN: &str = "482916";
const SO_PIN: &str = "so-482916";
const ANA: &str = "CN=Ana Novak,O=Demo Company d.o.o.,C=SI";
const BOR: &str = "CN=Bor Kos,O=Demo Company d.o.o.,C=SI";

fn heading(id: &str) {
    println!();
    println!("== {}", tr(id, &[]));
}

fn bank_error(e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("reference bank: {e}"))
}

pub(super) fn run(json: bool) -> Result<(), Error> {
    let bank = BankProgram::beside_this_program()?;
    let work = tempfile::Builder::new()
        .prefix("certagent-demo-")
        .tempdir()
        .map_err(Error::Io)?;
    let dir = work.path();

    // A SoftHSM store of our own. SoftHSM reads SOFTHSM2_CONF when the module
    // is first loaded, which has not happened yet in this process; the
    // journal goes to a state directory of our own too.
    std::fs::create_dir(dir.join("tokens")).map_err(Error::Io)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .map_err(Error::Io)?;
    // SAFETY: no other thread exists yet in this process.
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &conf);
        std::env::set_var("XDG_STATE_HOME", dir.join("state"));
    }

    heading("demo-fresh");
    let drivers = Drivers::builtin();
    let module = Module::load("softhsm2", &drivers)?;
    let token = module.init_token(
        LABEL,
        &AuthPin::from(SO_PIN.to_string()),
        &AuthPin::from(PIN.to_string()),
    )?;
    let (label, dir_shown) = (format!("{LABEL:?}"), dir.display().to_string());
    println!(
        "{}",
        tr(
            "demo-token",
            &[
                ("label", Arg::Str(&label)),
                ("dir", Arg::Str(&dir_shown)),
                ("module", Arg::Str(&module.info().path)),
            ],
        )
    );

    let bank_dir = dir.join("bank");
    bank.init(&bank_dir)?;
    let ana_otp = bank.add_user(&bank_dir, "ana", ANA)?;
    let bor_otp = bank.add_user(&bank_dir, "bor", BOR)?;
    let policy = Policy::default();
    // Stopped (killed and reaped) when this goes out of scope, on every
    // path out of here; declared after `work`, so before it is removed.
    let serving = bank.serve(&bank_dir, &policy)?;
    let addr: SocketAddr = serving.addr;
    let (est, ca) = (
        format!("https://{addr}/.well-known/est"),
        bank_dir.join("ca.pem").display().to_string(),
    );
    println!(
        "{}",
        tr(
            "demo-bank",
            &[("est", Arg::Str(&est)), ("ca", Arg::Str(&ca))]
        )
    );

    let app = App {
        config: demo_config(addr, &bank_dir, policy.clone()),
        drivers,
        json,
        lang: if json { Lang::En } else { Lang::current() },
        prompt: Box::new(ScriptedPrompt {
            pin: PIN.into(),
            otp: None,
            confirm: true,
        }),
    };

    heading("demo-ana");
    token.login(Some(&AuthPin::from(PIN.to_string())))?;
    let ana_id = issue_onto_token(&token, &bank, &bank_dir, ANA, 20, "Ana's bank certificate")?;
    let _ = ana_otp; // Ana renews with her certificate; her first OTP stays unused.
    status::status(&app)?;
    notice(&token, &ana_id, &policy)?;

    heading("demo-renewal");
    // The renewal logs in with its own PIN prompt (a login already in
    // place would not let the token check that PIN): the demo's ends here.
    token.logout()?;
    renew::renew(&app, Some(&hex::encode(&ana_id)), true)?;

    heading("demo-bor");
    token.login(Some(&AuthPin::from(PIN.to_string())))?;
    let bor_id = issue_onto_token(&token, &bank, &bank_dir, BOR, -5, "Bor's bank certificate")?;
    token.logout()?;
    status::status(&app)?;
    let app = App {
        prompt: Box::new(ScriptedPrompt {
            pin: PIN.into(),
            otp: Some(bor_otp),
            confirm: true,
        }),
        ..app
    };
    println!("{}", tr("demo-bor-otp", &[]));
    renew::enroll(&app, "bor", Some(&hex::encode(&bor_id)), true)?;

    heading("demo-now");
    status::status(&app)?;
    drop(serving);
    drop(token);
    println!();
    println!("{}", tr("demo-done", &[("dir", Arg::Str(&dir_shown))]));
    Ok(())
}

/// A key pair on the token and a certificate from the bank expiring in
/// `days_left` days, as if the bank had issued it a year ago.
fn issue_onto_token(
    token: &Token,
    bank: &BankProgram,
    bank_dir: &Path,
    subject: &str,
    days_left: i64,
    label: &str,
) -> Result<Vec<u8>, Error> {
    let key = token.generate_key_pair(KeyKind::Rsa2048, label)?;
    let der = bank.issue(bank_dir, subject, &key.spki_der, days_left)?;
    token.write_certificate(&key.id, label, &der)?;
    Ok(key.id)
}

/// What the agent would have shown on the desktop by now.
fn notice(token: &Token, id: &[u8], policy: &Policy) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    for c in token.certificates()? {
        if c.id != id {
            continue;
        }
        let cert = crate::cert::Cert::from_der(&c.der)?;
        let passed = policy
            .notices(cert.not_after)
            .into_iter()
            .rev()
            .find(|n| n.at <= now);
        if let Some(n) = passed
            && let NoticeKind::DaysBefore(d) = n.kind
        {
            // The very text the agent shows.
            let (summary, body) = crate::agent::notices::text(&cert, &n, now);
            let due = crate::i18n::datetime(n.at);
            println!(
                "{}",
                tr(
                    "demo-notice",
                    &[
                        ("days", Arg::Num(i64::from(d))),
                        ("due", Arg::Str(&due)),
                        ("summary", Arg::Str(&summary)),
                        ("body", Arg::Str(&body)),
                    ],
                )
            );
        }
    }
    Ok(())
}

fn demo_config(addr: SocketAddr, bank_dir: &Path, policy: Policy) -> Config {
    Config {
        source: None,
        token: TokenConfig {
            module: "softhsm2".into(),
            selector: TokenSelector {
                label: Some(LABEL.into()),
                ..TokenSelector::default()
            },
        },
        bank: Some(BankConfig {
            est_url: format!("https://{addr}/.well-known/est"),
            server_roots: bank_dir.join("tls-roots.pem"),
            origins: Vec::new(),
            ca_certs: None,
            issuer: None,
        }),
        policy,
        key: KeyKind::Rsa2048,
        agent: AgentConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 31270))),
            pinentry: None,
        },
    }
}

/// The reference bank's program, `certagent-bank`, where it is built and
/// installed: in the directory of the running `certagent` (symlinks
/// resolved). The demo uses only its command line, as a tester would.
struct BankProgram {
    path: PathBuf,
}

/// How long `certagent-bank serve` may take to say where it listens.
const SERVE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// What `certagent-bank serve` prints first, followed by `ADDR/.well-known/est/`.
const LISTENING: &str = "listening on https://";

impl BankProgram {
    fn beside_this_program() -> Result<BankProgram, Error> {
        let name = format!("certagent-bank{}", std::env::consts::EXE_SUFFIX);
        let exe = std::env::current_exe()
            .and_then(|exe| exe.canonicalize())
            .map_err(|e| {
                Error::Usage(format!(
                    "certagent demo needs the {name} program next to certagent, but cannot tell where certagent is: {e}"
                ))
            })?;
        let path = exe.with_file_name(&name);
        if !path.is_file() {
            return Err(Error::Usage(format!(
                "certagent demo needs the certagent-bank program next to certagent (looked for {}); build it with `cargo build` or install the certagent package",
                path.display()
            )));
        }
        Ok(BankProgram { path })
    }

    fn command(&self, args: &[&OsStr]) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// One operator command to completion; its standard output.
    fn run(&self, args: &[&OsStr]) -> Result<String, Error> {
        let what = args
            .first()
            .map_or(Default::default(), |a| a.to_string_lossy());
        let out = self
            .command(args)
            .output()
            .map_err(|e| bank_error(format!("cannot run {}: {e}", self.path.display())))?;
        if !out.status.success() {
            return Err(bank_error(format!(
                "certagent-bank {what} failed ({}): {}",
                out.status,
                reason(&out.stderr)
            )));
        }
        String::from_utf8(out.stdout)
            .map_err(|_| bank_error(format!("certagent-bank {what} printed something not UTF-8")))
    }

    /// `certagent-bank init --dir DIR`.
    fn init(&self, dir: &Path) -> Result<(), Error> {
        self.run(&["init".as_ref(), "--dir".as_ref(), dir.as_os_str()])
            .map(drop)
    }

    /// `certagent-bank add-user`: the user's one-time password.
    fn add_user(&self, dir: &Path, user: &str, subject: &str) -> Result<String, Error> {
        let out = self.run(&[
            "add-user".as_ref(),
            "--dir".as_ref(),
            dir.as_os_str(),
            "--user".as_ref(),
            user.as_ref(),
            "--subject".as_ref(),
            subject.as_ref(),
        ])?;
        match out.trim() {
            "" => Err(bank_error(
                "certagent-bank add-user printed no one-time password",
            )),
            otp => Ok(otp.to_string()),
        }
    }

    /// `certagent-bank issue` for a public key (DER SubjectPublicKeyInfo):
    /// the certificate (DER) from the PEM it prints.
    fn issue(
        &self,
        dir: &Path,
        subject: &str,
        spki_der: &[u8],
        days_left: i64,
    ) -> Result<Vec<u8>, Error> {
        // In the demo's directory, beside (not in) the bank's.
        let pubkey = tempfile::Builder::new()
            .prefix("pubkey-")
            .suffix(".der")
            .tempfile_in(dir.parent().unwrap_or(dir))
            .map_err(Error::Io)?;
        std::fs::write(pubkey.path(), spki_der).map_err(Error::Io)?;
        let pem = self.run(&[
            "issue".as_ref(),
            "--dir".as_ref(),
            dir.as_os_str(),
            "--subject".as_ref(),
            subject.as_ref(),
            "--pubkey".as_ref(),
            pubkey.path().as_os_str(),
            "--days-left".as_ref(),
            days_left.to_string().as_ref(),
        ])?;
        let cert = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            bank_error(format!(
                "certagent-bank issue printed no PEM certificate: {e}"
            ))
        })?;
        Ok(cert.as_ref().to_vec())
    }

    /// `certagent-bank serve` on a free loopback port, answering each new
    /// enroll request with 202 first to show EST's "come back later" too.
    /// Returns once the bank says where it listens.
    fn serve(&self, dir: &Path, policy: &Policy) -> Result<ServingBank, Error> {
        let child = self
            .command(&[
                "serve".as_ref(),
                "--dir".as_ref(),
                dir.as_os_str(),
                "--listen".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--first-202".as_ref(),
                "--renew-window-days".as_ref(),
                policy.renew_window_days.to_string().as_ref(),
                "--reissue-grace-days".as_ref(),
                policy.reissue_grace_days.to_string().as_ref(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| bank_error(format!("cannot run {}: {e}", self.path.display())))?;
        let mut serving = ServingBank {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            readers: Vec::new(),
        };
        // Every line of its standard output, read to the end so the bank
        // never writes into a closed pipe.
        let Some(stdout) = serving.child.stdout.take() else {
            return Err(bank_error("the bank's output is not readable"));
        };
        let (lines_tx, lines) = mpsc::channel();
        serving.readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines_tx.send(line);
            }
        }));
        let started = std::time::Instant::now();
        loop {
            let left = SERVE_START_TIMEOUT.saturating_sub(started.elapsed());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(LISTENING) {
                        let addr = rest.split('/').next().unwrap_or_default();
                        serving.addr = addr.parse().map_err(|_| {
                            bank_error(format!("certagent-bank serve: no address in {line:?}"))
                        })?;
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(bank_error(format!(
                        "certagent-bank serve did not say where it listens within {} s",
                        SERVE_START_TIMEOUT.as_secs()
                    )));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = serving.child.wait().map_err(Error::Io)?;
                    let mut stderr = Vec::new();
                    if let Some(mut err) = serving.child.stderr.take() {
                        let _ = err.read_to_end(&mut stderr);
                    }
                    return Err(bank_error(format!(
                        "certagent-bank serve stopped ({status}): {}",
                        reason(&stderr)
                    )));
                }
            }
        }
        // From here on what the bank logs goes where ours goes.
        if let Some(mut err) = serving.child.stderr.take() {
            serving.readers.push(std::thread::spawn(move || {
                let _ = std::io::copy(&mut err, &mut std::io::stderr());
            }));
        }
        Ok(serving)
    }
}

/// A running `certagent-bank serve`; dropping it kills and reaps it.
struct ServingBank {
    child: Child,
    addr: SocketAddr,
    readers: Vec<JoinHandle<()>>,
}

impl Drop for ServingBank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its pipes are closed now: the readers end.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// The bank's one-line reason from its standard error.
fn reason(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no reason given");
    line.strip_prefix("certagent-bank: ")
        .unwrap_or(line)
        .to_string()
}
