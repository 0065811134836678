//! PKCS#11 round trips per operation, counted through the project's
//! forwarding module: on a USB token every call is an APDU exchange of
//! 5-50 ms, so these budgets are what a user waits for. Counts are
//! deterministic for a given token and operation, so they are asserted.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certagent_bank::ServeOptions;
use common::agent::{ANA, ORIGIN};
use common::{PIN, SoftHsm, bank_cert_on_token, text};

/// The budgets (issue: fewer round trips to the token).
const STATUS: usize = 8;
const LOGON: usize = 12;
const RENEWAL: usize = 40;
const IDLE_PER_MINUTE: usize = 4;

struct Env {
    hsm: SoftHsm,
    config: PathBuf,
    port: u16,
    _rt: tokio::runtime::Runtime,
    _bank: certagent_bank::RunningBank,
}

impl Env {
    fn new(days_left: i64) -> Env {
        let hsm = SoftHsm::new();
        let bank_dir = hsm.path().join("bank");
        certagent_bank::init(&bank_dir).expect("bank");
        certagent_bank::add_user(&bank_dir, "ana", ANA).expect("user");
        bank_cert_on_token(&hsm, &bank_dir, "01", "rsa:2048", ANA, days_left);
        let (rt, bank) = common::serve_bank(&bank_dir, ServeOptions::default());
        let (pinentry, _) = common::scripted_pinentry(hsm.path());
        let port = common::agent::free_port();
        let config = hsm.path().join("calls.toml");
        std::fs::write(
            &config,
            format!(
                "[token]\nmodule = \"{}\"\nlabel = \"{}\"\n[bank]\nest_url = \"https://{}/.well-known/est\"\nserver_roots = \"{}\"\norigins = [\"{ORIGIN}\"]\n[agent]\nlisten = \"127.0.0.1:{port}\"\npinentry = \"{}\"\n",
                common::fault_module().display(),
                common::LABEL,
                bank.addr(),
                bank_dir.join("tls-roots.pem").display(),
                pinentry.display()
            ),
        )
        .expect("config");
        Env {
            hsm,
            config,
            port,
            _rt: rt,
            _bank: bank,
        }
    }

    fn command(&self, log: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_certagent"));
        cmd.env("SOFTHSM2_CONF", self.hsm.conf())
            .env("FAULT_PKCS11_MODULE", common::softhsm_module())
            .env("FAULT_PKCS11_LOG", log)
            .env("XDG_STATE_HOME", self.hsm.path().join("state"))
            .env("PINENTRY_TEST_DIR", self.hsm.path().join("prompt"))
            .env("CERTAGENT_PIN", PIN)
            .arg("--config")
            .arg(&self.config);
        cmd
    }
}

/// The calls logged, by function name, in order.
fn logged(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, f)| f.to_string()))
        .collect()
}

fn summary(calls: &[String]) -> String {
    let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
    for c in calls {
        *by.entry(c.as_str()).or_default() += 1;
    }
    by.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Calls between C_Initialize and C_Finalize (the work itself).
fn work(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| *c != "C_Initialize" && *c != "C_Finalize")
        .cloned()
        .collect()
}

#[test]
fn status_and_renewal_stay_within_their_round_trip_budgets() {
    let env = Env::new(20);
    // Learn the bank's CA once, as any first contact does.
    let warm = env.hsm.path().join("warm.log");
    let out = env
        .command(&warm)
        .args(["status"])
        .output()
        .expect("status");
    assert!(out.status.success(), "{}", text(&out));

    let log = env.hsm.path().join("status.log");
    let out = env.command(&log).args(["status"]).output().expect("status");
    assert!(out.status.success(), "{}", text(&out));
    let status = work(&logged(&log));
    println!("status: {} calls ({})", status.len(), summary(&status));

    let log = env.hsm.path().join("renew.log");
    let out = env
        .command(&log)
        .args(["renew", "--yes"])
        .output()
        .expect("renew");
    assert!(out.status.success(), "{}", text(&out));
    let renewal = work(&logged(&log));
    println!("renewal: {} calls ({})", renewal.len(), summary(&renewal));

    // The budget is for one token in one reader. SoftHSM always adds a
    // slot with an uninitialised token, which costs one C_GetTokenInfo to
    // tell apart; every further slot with a token is allowed that one call.
    let extra_slots = status
        .iter()
        .filter(|c| *c == "C_GetTokenInfo")
        .count()
        .saturating_sub(1);
    assert!(
        status.len() <= STATUS + extra_slots,
        "status makes {} calls (budget {STATUS}, +{extra_slots} for extra slots): {}",
        status.len(),
        summary(&status)
    );
    assert!(
        renewal.len() <= RENEWAL,
        "a renewal makes {} calls (budget {RENEWAL}): {}",
        renewal.len(),
        summary(&renewal)
    );
}

/// `certagent run --no-tray` on the forwarding module, logging its calls.
fn start_agent(env: &Env, log: &Path) -> std::process::Child {
    common::start_agent_process(env.command(log))
}

fn logon(port: u16) -> u16 {
    use std::io::{Read, Write};
    let body = format!(
        "{{\"challenge\":\"{}\"}}",
        URL_SAFE_NO_PAD.encode([3u8; 32])
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let req = format!(
        "POST /v1/logon HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {ORIGIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    common::agent::Reply::parse(&raw).status
}

#[test]
fn a_logon_and_an_idle_agent_stay_within_their_budgets() {
    let env = Env::new(200);
    let log = env.hsm.path().join("agent.log");
    let mut agent = start_agent(&env, &log);
    // Let the start-up look finish, then count the logon alone.
    std::thread::sleep(Duration::from_millis(300));
    let before = logged(&log).len();
    assert_eq!(logon(env.port), 200);
    let calls = logged(&log);
    let logon_calls: Vec<String> = calls.get(before..).unwrap_or_default().to_vec();
    println!(
        "logon: {} calls ({})",
        logon_calls.len(),
        summary(&logon_calls)
    );
    // Idle: 30 seconds with nothing asked.
    let idle_from = logged(&log).len();
    std::thread::sleep(Duration::from_secs(30));
    let idle: Vec<String> = logged(&log).get(idle_from..).unwrap_or_default().to_vec();
    let _ = agent.kill();
    let _ = agent.wait();
    println!("idle 30 s: {} calls ({})", idle.len(), summary(&idle));
    assert!(
        logon_calls.len() <= LOGON,
        "a logon makes {} calls (budget {LOGON}): {}",
        logon_calls.len(),
        summary(&logon_calls)
    );
    assert!(
        idle.len() * 2 <= IDLE_PER_MINUTE,
        "an idle agent makes {} calls in 30 s (budget {IDLE_PER_MINUTE} a minute): {}",
        idle.len(),
        summary(&idle)
    );
}

fn status_present(port: u16) -> Option<bool> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let req = format!(
        "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {ORIGIN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    common::agent::Reply::parse(&raw).json()["token_present"].as_bool()
}

#[test]
fn the_watch_sees_the_token_go_and_come_within_a_second_without_touching_it() {
    use std::sync::{Arc, Mutex};
    let env = Env::new(200);
    let presence = env.hsm.path().join("token-in-reader");
    std::fs::write(&presence, "").expect("insert");
    // The forwarding module in presence mode acts as a reader with slot
    // events; a user profile next to the configuration says so.
    std::fs::create_dir_all(env.hsm.path().join("drivers")).expect("drivers dir");
    std::fs::write(
        env.hsm.path().join("drivers").join("fault-reader.toml"),
        format!(
            "name = \"fault-reader\"\ndescription = \"SoftHSM behind the test reader\"\ninstall = \"cargo build --workspace\"\n[paths]\nlinux = [\"{}\"]\n[capabilities]\nkey_types = [\"rsa-2048\"]\nsigning = [\"rsa-pkcs1-sha256\", \"rsa-pss-sha256\", \"ecdsa-p256-sha256\"]\nslot_events = true\n",
            common::fault_module().display()
        ),
    )
    .expect("profile");
    let log = env.hsm.path().join("watch.log");
    let mut child = env
        .command(&log)
        .env("FAULT_PKCS11_PRESENCE", &presence)
        .args(["run", "--no-tray"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("certagent run");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(l);
            }
        });
    }
    let said = |text: &str, within: Duration| -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if lines.lock().expect("lock").iter().any(|l| l.contains(text)) {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    };
    assert!(said("certagent: ready", Duration::from_secs(20)).is_some());
    // Idle: the watch waits on the slot event; nothing else touches the token.
    std::thread::sleep(Duration::from_millis(500));
    let from = logged(&log).len();
    std::thread::sleep(Duration::from_secs(3));
    let idle: Vec<String> = logged(&log).get(from..).unwrap_or_default().to_vec();
    assert!(idle.is_empty(), "idle calls: {}", summary(&idle));

    std::fs::remove_file(&presence).expect("pull");
    let took = said("certagent: token removed", Duration::from_secs(5));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "removal seen after {took:?}"
    );
    assert_eq!(status_present(env.port), Some(false));
    std::fs::write(&presence, "").expect("insert");
    let took = said("certagent: token inserted", Duration::from_secs(5));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "insertion seen after {took:?}"
    );
    assert_eq!(status_present(env.port), Some(true));
    println!("watch: removal and insertion seen within a second; idle calls: 0");
    let _ = child.kill();
    let _ = child.wait();
}
