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
use common::faults::{self, Mode};
use common::{PIN, SoftHsm, bank_cert_on_token, text};

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
    ca: PathBuf,
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
            ca: bank_dir.join("ca.pem"),
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
            faults::arm(&mut cmd, n, mode, &self.fired());
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
        faults::calls(&log)
    }

    /// Where the forwarding module reports the fault it injected.
    fn fired(&self) -> PathBuf {
        self.hsm.path().join("fired.log")
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

/// What a faulted run must leave behind, and what it may print: the fault
/// fired, the process ended as the fault says, a pulled run's last line is
/// one reason, and a usable bank certificate is on the token.
fn check_faulted(env: &Env, what: &str, n: u64, mode: Mode, out: &Output) {
    let what = format!("{what} {mode:?} at call {n}");
    let err = String::from_utf8_lossy(&out.stderr);
    faults::assert_fired(&env.fired(), n, mode, &what);
    faults::assert_ended_cleanly(out.status, &err, mode, &format!("{what}\n{}", text(out)));
    if !out.status.success() && mode == Mode::Pulled {
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.starts_with("certagent: ") && !last.trim_end().ends_with(':'),
            "{what}: not a one-line reason: {last:?}\n{}",
            text(out)
        );
    }
    faults::assert_usable(&env.hsm, Some(&env.ca), &what);
}

/// The unfaulted run after a fault: it finishes, and leaves exactly one
/// bank certificate with its key pair, working, and no journal.
fn check_recovered(env: &Env, what: &str, n: u64, mode: Mode, out: &Output) {
    let what = format!("{what} after {mode:?} at call {n}");
    assert!(
        out.status.success(),
        "{what}: the next run failed\n{}",
        text(out)
    );
    faults::assert_one_pair(&env.hsm, Some(&env.ca), &what);
    assert!(!env.journal_exists(), "{what}: a journal is left");
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
        // Every index (each needs a fresh token and bank).
        .unwrap_or(1);
    let mut table = Vec::new();
    for mode in [Mode::Pulled, Mode::Killed] {
        let (mut tried, mut recovered) = (0, 0);
        for n in (1..=total).step_by(step as usize) {
            tried += 1;
            let env = Env::new(-5, None);
            let args = ["enroll", "--user", "ana", "--yes"];
            let out = env.certagent(&args, Some((n, mode)), None);
            check_faulted(&env, "enrolment", n, mode, &out);
            // The next run, always: after a fault that did not stop the
            // enrolment (the one-time password is spent) it finds the work
            // done and says so; otherwise it finishes the enrolment.
            let again = env.certagent(&args, None, None);
            let done_before = !again.status.success()
                && String::from_utf8_lossy(&again.stderr)
                    .contains("already holds a usable bank certificate");
            if done_before {
                let what = format!("enrolment after {mode:?} at call {n}");
                faults::assert_one_pair(&env.hsm, Some(&env.ca), &what);
                assert!(!env.journal_exists(), "{what}: a journal is left");
            } else {
                check_recovered(&env, "enrolment", n, mode, &again);
            }
            recovered += 1;
        }
        table.push(format!(
            "enrolment {mode:?}: {recovered}/{tried} recovered ({total} calls, every {step})"
        ));
    }
    println!("{}", table.join("\n"));
}

/// `certagent run --no-tray` on the forwarding module; its standard error
/// kept in a file.
struct Running {
    child: std::process::Child,
    port: u16,
    stderr: PathBuf,
}

impl Running {
    /// What the agent wrote to standard error so far.
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(env: &Env, port: u16, fault: Option<(u64, Mode)>, log: Option<&Path>) -> Running {
    let stderr = env.hsm.path().join("agent-stderr.log");
    let file = std::fs::File::create(&stderr).expect("agent stderr file");
    Running {
        child: common::start_agent_process_to(env.command(fault, log), file.into()),
        port,
        stderr,
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
        let start = faults::calls(&log);
        let (status, body) = logon(agent.port);
        assert_eq!(status, 200, "{body}");
        (start, faults::calls(&log))
    };
    assert!(total > start, "a logon makes PKCS#11 calls");
    let mut table = Vec::new();
    for mode in [Mode::Pulled, Mode::Killed] {
        let (mut tried, mut recovered) = (0, 0);
        for n in ((start + 1)..=total).step_by(stride() as usize) {
            tried += 1;
            {
                let what = format!("logon {mode:?} at call {n}");
                let mut agent = start_agent(&env, port, Some((n, mode)), None);
                let (status, body) = logon(agent.port);
                faults::assert_fired(&env.fired(), n, mode, &what);
                match mode {
                    // Pulled: the agent answers (an error a page can show,
                    // or the logon if the fault came after the signature)
                    // and keeps running.
                    Mode::Pulled => {
                        assert!(
                            status == 200 || (400..500).contains(&status) || status == 503,
                            "{what}: answered {status}: {body}\n{}",
                            agent.stderr()
                        );
                        if status != 200 {
                            let j: serde_json::Value = serde_json::from_str(&body)
                                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
                            assert!(
                                j["message"].as_str().is_some_and(|m| !m.contains('\n')),
                                "{what}: {body}"
                            );
                        }
                        assert!(
                            matches!(agent.child.try_wait(), Ok(None)),
                            "{what}: the agent ended\n{}",
                            agent.stderr()
                        );
                        assert!(
                            !agent.stderr().contains("panicked"),
                            "{what}: a panic in the agent\n{}",
                            agent.stderr()
                        );
                    }
                    Mode::Killed => {
                        let status = agent.child.wait().expect("agent ends");
                        faults::assert_ended_cleanly(status, &agent.stderr(), mode, &what);
                    }
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
    faults::assert_one_pair(&env.hsm, Some(&env.ca), "after the logon sweep");
    println!("{}", table.join("\n"));
}

/// The sweeps' checks can fail: a fault set beyond the last call never
/// fires, a process that aborts or is killed by another signal is a crash,
/// and a stray public key or a certificate over another key is not "one
/// working pair". Each check is run on such a case and must refuse it.
#[test]
fn the_sweeps_checks_fail_when_they_should() {
    use std::os::unix::process::ExitStatusExt;
    let refuses = |what: &str, f: &dyn Fn()| {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        assert!(r.is_err(), "the check passed on {what}");
    };
    let env = Env::new(20, None);
    // A fault that never fires: the run finishes, the module reports nothing.
    let out = env.certagent(&["renew", "--yes"], Some((100_000, Mode::Pulled)), None);
    assert!(out.status.success(), "{}", text(&out));
    refuses("a fault that never fired", &|| {
        check_faulted(&env, "renewal", 100_000, Mode::Pulled, &out)
    });
    // The same run with a fault that fired passes, so the refusal above is
    // the fault's absence, not something else.
    let n = 3;
    let out = env.certagent(&["renew", "--yes"], Some((n, Mode::Pulled)), None);
    check_faulted(&env, "renewal", n, Mode::Pulled, &out);
    // Crashes: an abort (SIGABRT), a panic's exit status, and a kill where
    // the fault did not kill.
    refuses("an abort", &|| {
        faults::assert_ended_cleanly(ExitStatusExt::from_raw(6), "", Mode::Pulled, "abort")
    });
    refuses("a panic's status", &|| {
        faults::assert_ended_cleanly(ExitStatusExt::from_raw(101 << 8), "", Mode::Pulled, "101")
    });
    refuses("a panic message", &|| {
        faults::assert_ended_cleanly(
            ExitStatusExt::from_raw(1 << 8),
            "thread 'main' panicked at src/x.rs",
            Mode::Pulled,
            "panic",
        )
    });
    refuses("a run that was not killed", &|| {
        faults::assert_ended_cleanly(ExitStatusExt::from_raw(0), "", Mode::Killed, "not killed")
    });
    // The token: one working pair now...
    let id = faults::assert_one_pair(&env.hsm, Some(&env.ca), "before");
    // ... a stray public key beside it is not.
    let ok = |o: Output| assert!(o.status.success(), "{}", text(&o));
    let keypair = |id: &str| {
        ok(env.hsm.pkcs11_tool(&[
            "--login",
            "--pin",
            PIN,
            "--keypairgen",
            "--key-type",
            "rsa:2048",
            "--id",
            id,
        ]))
    };
    keypair("77");
    ok(env.hsm.pkcs11_tool(&[
        "--login",
        "--pin",
        PIN,
        "--delete-object",
        "--type",
        "privkey",
        "--id",
        "77",
    ]));
    refuses("a stray public key", &|| {
        faults::assert_one_pair(&env.hsm, Some(&env.ca), "stray");
    });
    ok(env
        .hsm
        .pkcs11_tool(&["--delete-object", "--type", "pubkey", "--id", "77"]));
    faults::assert_one_pair(&env.hsm, Some(&env.ca), "stray removed");
    // A certificate whose key is not the token's key under its id.
    let other = env.hsm.path().join("other.der");
    let spki = {
        keypair("78");
        let p = env.hsm.path().join("pub78.der");
        ok(env.hsm.pkcs11_tool(&[
            "--read-object",
            "--type",
            "pubkey",
            "--id",
            "78",
            "-o",
            &p.display().to_string(),
        ]));
        std::fs::read(&p).expect("pub")
    };
    let der = certagent_bank::issue(&env.hsm.path().join("bank"), ANA, &spki, 100).expect("issue");
    std::fs::write(&other, der).expect("write");
    ok(env.hsm.pkcs11_tool(&[
        "--login",
        "--pin",
        PIN,
        "--delete-object",
        "--type",
        "cert",
        "--id",
        &id,
    ]));
    ok(env.hsm.pkcs11_tool(&[
        "--login",
        "--pin",
        PIN,
        "--write-object",
        &other.display().to_string(),
        "--type",
        "cert",
        "--id",
        &id,
    ]));
    for kind in ["privkey", "pubkey"] {
        ok(env.hsm.pkcs11_tool(&[
            "--login",
            "--pin",
            PIN,
            "--delete-object",
            "--type",
            kind,
            "--id",
            "78",
        ]));
    }
    refuses("a certificate over another key", &|| {
        faults::assert_one_pair(&env.hsm, Some(&env.ca), "mismatch");
    });
}
