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
const PAGE_STATUS: usize = 2;
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

    // Every call counts, SoftHSM's extra slot with its uninitialised token
    // included (one C_GetTokenInfo to tell it apart).
    assert!(
        status.len() <= STATUS,
        "status makes {} calls (budget {STATUS}): {}",
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

/// The page's logon (`page_to` sends the Host and Origin a page does).
fn logon(port: u16) -> (u16, String) {
    let body = format!(
        "{{\"challenge\":\"{}\"}}",
        URL_SAFE_NO_PAD.encode([3u8; 32])
    );
    let r = common::agent::page_to(port, "POST", "/v1/logon", &body);
    (r.status, r.body)
}

/// libfaketime, which moves the agent's clocks (wall and monotonic) by the
/// offset in a file it reads at every call: an idle spell of half an hour
/// in a second of the test's time.
fn faketime_library() -> PathBuf {
    let found = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|a| PathBuf::from(format!("/usr/lib/{a}/faketime/libfaketimeMT.so.1")))
        .find(|p| p.exists());
    found.unwrap_or_else(|| panic!("libfaketime is missing: apt-get install faketime"))
}

/// The calls logged from `from` on.
fn since(log: &Path, from: usize) -> Vec<String> {
    logged(log).get(from..).unwrap_or_default().to_vec()
}

/// The agent's budgets, every call counted by the forwarding module: a
/// logon, the page's status on an unchanged token, a minute of idling in
/// which the agent's clock passes the token view's refresh (30 minutes),
/// and the first logon after that idle spell.
#[test]
fn a_logon_a_page_status_and_an_idle_agent_stay_within_their_budgets() {
    let env = Env::new(200);
    let log = env.hsm.path().join("agent.log");
    let clock = env.hsm.path().join("clock-offset");
    std::fs::write(&clock, "+0").expect("clock");
    let mut cmd = env.command(&log);
    cmd.env("LD_PRELOAD", faketime_library())
        .env("FAKETIME_TIMESTAMP_FILE", &clock)
        .env("FAKETIME_NO_CACHE", "1");
    let mut agent = common::start_agent_process(cmd);
    // Let the start-up look finish, then count the logon alone.
    std::thread::sleep(Duration::from_millis(300));
    let before = logged(&log).len();
    let (status, body) = logon(env.port);
    assert_eq!(status, 200, "{body}");
    let logon_calls = since(&log, before);
    println!(
        "logon: {} calls ({})",
        logon_calls.len(),
        summary(&logon_calls)
    );

    // The page asks for the status twice; the token did not change.
    let mut page = Vec::new();
    for _ in 0..2 {
        let from = logged(&log).len();
        assert_eq!(
            common::agent::page_to(env.port, "GET", "/v1/status", "").status,
            200
        );
        page.push(since(&log, from));
    }
    for p in &page {
        println!("page status: {} calls ({})", p.len(), summary(p));
    }

    // Idle for a minute; a second in, the agent's clock moves 31 minutes
    // on: its view of the token is due for a refresh within the window.
    let idle_from = logged(&log).len();
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(&clock, format!("+{}", 31 * 60)).expect("clock");
    std::thread::sleep(Duration::from_secs(60));
    let idle = since(&log, idle_from);
    println!(
        "idle 61 s (the clock 31 min on): {} calls ({})",
        idle.len(),
        summary(&idle)
    );

    // The first logon after the idle spell.
    let from = logged(&log).len();
    let (status, body) = logon(env.port);
    assert_eq!(status, 200, "{body}");
    let after_idle = since(&log, from);
    println!(
        "logon after idling: {} calls ({})",
        after_idle.len(),
        summary(&after_idle)
    );
    let _ = agent.kill();
    let _ = agent.wait();

    // Positive control: the log counts this process's calls (the logon
    // signed, so C_Sign is in it).
    assert!(
        logon_calls.iter().any(|c| c == "C_Sign") && after_idle.iter().any(|c| c == "C_Sign"),
        "the call log misses the logon's signature: {logon_calls:?} / {after_idle:?}"
    );
    for (what, calls) in [
        ("a logon", &logon_calls),
        ("the first logon after idling", &after_idle),
    ] {
        assert!(
            calls.len() <= LOGON,
            "{what} makes {} calls (budget {LOGON}): {}",
            calls.len(),
            summary(calls)
        );
    }
    for p in &page {
        assert!(
            p.len() <= PAGE_STATUS,
            "the page's status makes {} calls (budget {PAGE_STATUS}): {}",
            p.len(),
            summary(p)
        );
    }
    assert!(
        idle.len() <= IDLE_PER_MINUTE,
        "an idle agent makes {} calls in a minute past a refresh (budget {IDLE_PER_MINUTE}): {}",
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
