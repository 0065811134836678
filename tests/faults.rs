//! A fault at every PKCS#11 call: the renewal, the enrolment and the logon
//! run through the project's forwarding module (`tests/fault-module`), which
//! at call N either makes the token disappear (every call from N fails with
//! CKR_DEVICE_REMOVED, as a pulled token does) or kills the process. For
//! every N: no panic, a one-line error, a token that still has a usable
//! certificate, and a next, unfaulted run that finishes with exactly one
//! certificate and one private key, no journal and no orphaned candidate.
//!
//! Every index of the renewal and the logon runs; the enrolment, which needs
//! a fresh token and bank per index, runs every third index unless
//! `CERTAGENT_FAULT_ENROLL_STRIDE` says otherwise (`CERTAGENT_FAULT_STRIDE`
//! thins the others). `scripts/faults.sh` runs every index of all three and
//! prints the table.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certagent_bank::ServeOptions;
use common::agent::{ANA, ORIGIN};
use common::{PIN, SoftHsm, bank_cert_on_token, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pulled,
    Killed,
}

impl Mode {
    fn env(self) -> &'static str {
        match self {
            Mode::Pulled => "pulled",
            Mode::Killed => "kill",
        }
    }
}

fn stride() -> u64 {
    std::env::var("CERTAGENT_FAULT_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(1)
}

/// A token with Ana's bank certificate, the bank on loopback, and a
/// configuration whose module is the forwarding module. The renewal window
/// is wide (agent and bank alike), so every new certificate is due again
/// and one token serves every fault index in turn.
struct Env {
    hsm: SoftHsm,
    config: PathBuf,
    _rt: tokio::runtime::Runtime,
    _bank: certagent_bank::RunningBank,
    otp: String,
}

impl Env {
    fn new(days_left: i64, listen: Option<u16>) -> Env {
        let hsm = SoftHsm::new();
        let bank_dir = hsm.path().join("bank");
        certagent_bank::init(&bank_dir).expect("bank");
        let otp = certagent_bank::add_user(&bank_dir, "ana", ANA).expect("user");
        bank_cert_on_token(&hsm, &bank_dir, "01", "rsa:2048", ANA, days_left);
        let policy = certagent::policy::Policy {
            renew_window_days: 400,
            ..Default::default()
        };
        let (rt, bank) = common::serve_bank(
            &bank_dir,
            ServeOptions {
                policy,
                ..ServeOptions::default()
            },
        );
        let (pinentry, _) = common::scripted_pinentry(hsm.path());
        let listen = listen.map_or(String::new(), |p| {
            format!(
                "origins = [\"{ORIGIN}\"]\n[agent]\nlisten = \"127.0.0.1:{p}\"\npinentry = \"{}\"\n",
                pinentry.display()
            )
        });
        let config = hsm.path().join("faults.toml");
        std::fs::write(
            &config,
            format!(
                "[token]\nmodule = \"{}\"\nlabel = \"{}\"\n[policy]\nrenew_window_days = 400\n[bank]\nest_url = \"https://{}/.well-known/est\"\nserver_roots = \"{}\"\n{listen}",
                common::fault_module().display(),
                common::LABEL,
                bank.addr(),
                bank_dir.join("tls-roots.pem").display(),
            ),
        )
        .expect("config");
        Env {
            hsm,
            config,
            _rt: rt,
            _bank: bank,
            otp,
        }
    }

    fn command(&self, fault: Option<(u64, Mode)>, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_certagent"));
        cmd.env("SOFTHSM2_CONF", self.hsm.conf())
            .env("FAULT_PKCS11_MODULE", common::softhsm_module())
            .env("XDG_STATE_HOME", self.hsm.path().join("state"))
            .env("PINENTRY_TEST_DIR", self.hsm.path().join("prompt"))
            .env_remove("FAULT_PKCS11_AT")
            .env_remove("CERTAGENT_PIN")
            .arg("--config")
            .arg(&self.config);
        if let Some((n, mode)) = fault {
            cmd.env("FAULT_PKCS11_AT", n.to_string())
                .env("FAULT_PKCS11_MODE", mode.env());
        }
        if let Some(l) = log {
            cmd.env("FAULT_PKCS11_LOG", l);
        }
        cmd
    }

    fn certagent(&self, args: &[&str], fault: Option<(u64, Mode)>, log: Option<&Path>) -> Output {
        self.command(fault, log)
            .args(args)
            .env("CERTAGENT_PIN", PIN)
            .env("CERTAGENT_OTP", &self.otp)
            .output()
            .expect("certagent runs")
    }

    /// How many PKCS#11 calls `args` makes, unfaulted (and it succeeds).
    fn count(&self, args: &[&str]) -> u64 {
        let log = self.hsm.path().join("count.log");
        let _ = std::fs::remove_file(&log);
        let out = self.certagent(args, None, Some(&log));
        assert!(out.status.success(), "{}", text(&out));
        calls(&log)
    }

    /// (CKA_IDs of certificates, CKA_IDs of private keys), read with
    /// pkcs11-tool straight from SoftHSM.
    fn objects(&self) -> (Vec<String>, Vec<String>) {
        let out = self
            .hsm
            .pkcs11_tool(&["--login", "--pin", PIN, "--list-objects"]);
        assert!(out.status.success(), "{}", text(&out));
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let (mut certs, mut keys) = (Vec::new(), Vec::new());
        let mut kind = "";
        for line in listing.lines() {
            if line.starts_with("Certificate Object") {
                kind = "cert";
            } else if line.starts_with("Private Key Object") {
                kind = "key";
            } else if line.starts_with("Public Key Object") {
                kind = "pub";
            } else if let Some(id) = line.trim().strip_prefix("ID:") {
                match kind {
                    "cert" => certs.push(id.trim().to_string()),
                    "key" => keys.push(id.trim().to_string()),
                    _ => {}
                }
            }
        }
        (certs, keys)
    }

    fn journal_exists(&self) -> bool {
        std::fs::read_dir(self.hsm.path().join("state").join("certagent"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("renewal-"))
            })
            .unwrap_or(false)
    }
}

fn calls(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .count() as u64
}

/// What a faulted run must leave behind, and what it may print.
fn check_faulted(env: &Env, what: &str, n: u64, mode: Mode, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked"),
        "{what} {mode:?} at call {n}: a panic\n{}",
        text(out)
    );
    if !out.status.success() && mode == Mode::Pulled {
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.starts_with("certagent: ") && !last.trim_end().ends_with(':'),
            "{what} {mode:?} at call {n}: not a one-line reason: {last:?}\n{}",
            text(out)
        );
    }
    let (certs, keys) = env.objects();
    assert!(
        certs.iter().any(|c| keys.contains(c)),
        "{what} {mode:?} at call {n}: no usable certificate left (certs {certs:?}, keys {keys:?})"
    );
}

/// The unfaulted run after a fault: it finishes, and leaves one
/// certificate and one private key, paired, and no journal.
fn check_recovered(env: &Env, what: &str, n: u64, mode: Mode, out: &Output) {
    assert!(
        out.status.success(),
        "{what} after {mode:?} at call {n}: the next run failed\n{}",
        text(out)
    );
    let (certs, keys) = env.objects();
    assert!(
        certs.len() == 1 && keys.len() == 1 && certs == keys,
        "{what} after {mode:?} at call {n}: certs {certs:?}, keys {keys:?}"
    );
    assert!(
        !env.journal_exists(),
        "{what} after {mode:?} at call {n}: a journal is left"
    );
}

#[test]
fn a_fault_at_every_pkcs11_call_of_a_renewal_recovers() {
    let env = Env::new(20, None);
    let total = env.count(&["renew", "--yes"]);
    assert!(total > 10, "a renewal makes {total} calls");
    let mut table = Vec::new();
    for mode in [Mode::Pulled, Mode::Killed] {
        let mut recovered = 0;
        let mut tried = 0;
        for n in (1..=total).step_by(stride() as usize) {
            tried += 1;
            let out = env.certagent(&["renew", "--yes"], Some((n, mode)), None);
            check_faulted(&env, "renewal", n, mode, &out);
            let again = env.certagent(&["renew", "--yes"], None, None);
            check_recovered(&env, "renewal", n, mode, &again);
            recovered += 1;
        }
        table.push(format!(
            "renewal {mode:?}: {recovered}/{tried} recovered ({total} calls)"
        ));
    }
    println!("{}", table.join("\n"));
}

#[test]
fn a_fault_at_every_pkcs11_call_of_an_enrolment_recovers() {
    // An enrolment replaces an expired certificate; each index needs a
    // fresh token and a fresh one-time password.
    let total = Env::new(-5, None).count(&["enroll", "--user", "ana", "--yes"]);
    let step = std::env::var("CERTAGENT_FAULT_ENROLL_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s: &u64| s > 0)
        // Every third index by default (each needs a fresh token and bank);
        // scripts/faults.sh runs them all.
        .unwrap_or(3);
    let mut table = Vec::new();
    for mode in [Mode::Pulled, Mode::Killed] {
        let (mut tried, mut recovered) = (0, 0);
        for n in (1..=total).step_by(step as usize) {
            tried += 1;
            let env = Env::new(-5, None);
            let args = ["enroll", "--user", "ana", "--yes"];
            let out = env.certagent(&args, Some((n, mode)), None);
            check_faulted(&env, "enrolment", n, mode, &out);
            // A run the fault did not stop is done: the one-time password
            // is spent, and there is nothing to run again.
            let again = if out.status.success() {
                out
            } else {
                env.certagent(&args, None, None)
            };
            // Killed after the enrolment was complete: the next run says so.
            let done_before = !again.status.success()
                && String::from_utf8_lossy(&again.stderr)
                    .contains("already holds a usable bank certificate");
            if !done_before {
                check_recovered(&env, "enrolment", n, mode, &again);
            }
            let (certs, keys) = env.objects();
            assert!(
                certs.len() == 1 && certs == keys && !env.journal_exists(),
                "enrolment after {mode:?} at call {n}: certs {certs:?}, keys {keys:?}"
            );
            recovered += 1;
        }
        table.push(format!(
            "enrolment {mode:?}: {recovered}/{tried} recovered ({total} calls, every {step})"
        ));
    }
    println!("{}", table.join("\n"));
}

/// `certagent run --no-tray` on the forwarding module.
struct Running {
    child: std::process::Child,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(env: &Env, port: u16, fault: Option<(u64, Mode)>, log: Option<&Path>) -> Running {
    Running {
        child: common::start_agent_process(env.command(fault, log)),
        port,
    }
}

fn logon(port: u16) -> (u16, String) {
    use std::io::{Read, Write};
    let body = format!(
        "{{\"challenge\":\"{}\"}}",
        URL_SAFE_NO_PAD.encode([3u8; 32])
    );
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, "connection refused".into());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let req = format!(
        "POST /v1/logon HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {ORIGIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(req.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let reply = common::agent::Reply::parse(&raw);
    (reply.status, reply.body)
}

#[test]
fn a_fault_at_every_pkcs11_call_of_a_logon_recovers() {
    let port = common::agent::free_port();
    let env = Env::new(200, Some(port));
    // Calls made by the agent up to "ready", then by one logon.
    let log = env.hsm.path().join("logon-count.log");
    let _ = std::fs::remove_file(&log);
    let (start, total) = {
        let agent = start_agent(&env, port, None, Some(&log));
        let start = calls(&log);
        let (status, body) = logon(agent.port);
        assert_eq!(status, 200, "{body}");
        (start, calls(&log))
    };
    assert!(total > start, "a logon makes PKCS#11 calls");
    let mut table = Vec::new();
    for mode in [Mode::Pulled, Mode::Killed] {
        let (mut tried, mut recovered) = (0, 0);
        for n in ((start + 1)..=total).step_by(stride() as usize) {
            tried += 1;
            {
                let agent = start_agent(&env, port, Some((n, mode)), None);
                let (status, body) = logon(agent.port);
                assert_ne!(
                    status, 500,
                    "logon {mode:?} at call {n}: an internal error: {body}"
                );
                if status != 200 && status != 0 {
                    let j: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| {
                        panic!("logon {mode:?} at {n}: not JSON ({e}): {body}")
                    });
                    assert!(
                        j["message"].as_str().is_some_and(|m| !m.contains('\n')),
                        "logon {mode:?} at call {n}: {body}"
                    );
                }
            }
            // Token back in (a new process): the logon works.
            let agent = start_agent(&env, port, None, None);
            let (status, body) = logon(agent.port);
            assert_eq!(status, 200, "logon after {mode:?} at call {n}: {body}");
            recovered += 1;
        }
        table.push(format!(
            "logon {mode:?}: {recovered}/{tried} recovered (calls {}..={total})",
            start + 1
        ));
    }
    let (certs, keys) = env.objects();
    assert_eq!((certs.len(), keys.len()), (1, 1));
    println!("{}", table.join("\n"));
}
