//! The network cut at every stage of the EST exchange, through a real TCP
//! proxy on loopback between `certagent renew` and the reference bank: the
//! connection refused, the TLS handshake cut, the request cut mid-body, the
//! answer's first bytes then silence, the answer cut, and the answer lost
//! after the bank issued. Each run ends with a clear one-line error and a
//! token that still has its usable certificate; the next run (network back)
//! finishes with one certificate and one key, and where the bank had issued,
//! it is the same certificate (the bank answers an identical request with
//! the certificate it issued for it).

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certagent_bank::ServeOptions;
use common::agent::ANA;
use common::{PIN, SoftHsm, bank_cert_on_token, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to the connection that carries the renewal request
/// (the one after `/cacerts`); every other connection passes unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Forward everything.
    None,
    /// Accept and close at once, before the TLS handshake.
    Refused,
    /// Forward the client's first flight and the server's first bytes, then close.
    Handshake,
    /// Forward the client's bytes up to `n` fewer than it sends in a whole exchange.
    RequestBody(usize),
    /// Forward the server's bytes up to this many, then stall (connection open, silent).
    Silence(usize),
    /// Forward the server's bytes up to this many, then close.
    AnswerBroken(usize),
    /// Once the client has sent this many bytes (the whole request), read
    /// the whole answer and close without sending it.
    AnswerLost(usize),
}

#[derive(Default)]
struct Counts {
    /// (client→server, server→client) bytes per connection, in order.
    per_connection: Vec<(usize, usize)>,
}

struct Proxy {
    port: u16,
    cut: Arc<Mutex<Cut>>,
    /// The connection index (0-based) that gets the cut.
    target: Arc<AtomicUsize>,
    counts: Arc<Mutex<Counts>>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("proxy bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(Mutex::new(Cut::None));
        let target = Arc::new(AtomicUsize::new(1));
        let counts = Arc::new(Mutex::new(Counts::default()));
        let seen = Arc::new(AtomicUsize::new(0));
        {
            let (cut, target, counts) = (cut.clone(), target.clone(), counts.clone());
            rt.spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let index = seen.fetch_add(1, Ordering::SeqCst);
                    let mode = if index == target.load(Ordering::SeqCst) {
                        *cut.lock().expect("lock")
                    } else {
                        Cut::None
                    };
                    let counts = counts.clone();
                    tokio::spawn(async move {
                        let got = relay(client, upstream, mode).await;
                        counts.lock().expect("lock").per_connection.push(got);
                    });
                }
            });
        }
        Proxy {
            port,
            cut,
            target,
            counts,
            _rt: rt,
        }
    }

    fn set(&self, cut: Cut) {
        *self.cut.lock().expect("lock") = cut;
        self.counts.lock().expect("lock").per_connection.clear();
    }

    /// The next run's connections are counted from 0 again.
    fn reset_index(&self, seen_so_far: usize) {
        self.target.store(seen_so_far + 1, Ordering::SeqCst);
    }
}

/// Relay one connection under `mode`; returns the bytes forwarded each way.
async fn relay(mut client: TcpStream, upstream: std::net::SocketAddr, mode: Cut) -> (usize, usize) {
    if mode == Cut::Refused {
        return (0, 0);
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return (0, 0);
    };
    let (mut c_read, mut c_write) = client.split();
    let (mut s_read, mut s_write) = server.split();
    let mut up = 0usize;
    let mut down = 0usize;
    let mut cbuf = vec![0u8; 16384];
    let mut sbuf = vec![0u8; 16384];
    let up_limit = match mode {
        Cut::RequestBody(n) => Some(n),
        _ => None,
    };
    loop {
        tokio::select! {
            r = c_read.read(&mut cbuf) => {
                let Ok(n) = r else { break };
                if n == 0 { break; }
                let mut take = n;
                if let Some(limit) = up_limit {
                    take = n.min(limit.saturating_sub(up));
                }
                if take > 0 && s_write.write_all(&cbuf[..take]).await.is_err() { break; }
                up += take;
                if up_limit.is_some_and(|l| up >= l) { break; }
            }
            r = s_read.read(&mut sbuf) => {
                let Ok(n) = r else { break };
                if n == 0 { break; }
                match mode {
                    Cut::Handshake => {
                        // The server's first bytes reach the client, then the line goes dead.
                        let _ = c_write.write_all(&sbuf[..n.min(100)]).await;
                        break;
                    }
                    Cut::Silence(limit) | Cut::AnswerBroken(limit) if down + n > limit => {
                        let take = limit.saturating_sub(down);
                        let _ = c_write.write_all(&sbuf[..take]).await;
                        down += take;
                        if matches!(mode, Cut::Silence(_)) {
                            // Keep the connection open and say nothing more.
                            tokio::time::sleep(Duration::from_secs(120)).await;
                        }
                        break;
                    }
                    Cut::AnswerLost(sent) if up >= sent => {
                        // The answer (after the handshake) goes nowhere; the
                        // bank has issued.
                        let mut rest = Vec::new();
                        let _ = tokio::time::timeout(Duration::from_secs(2), s_read.read_to_end(&mut rest)).await;
                        break;
                    }
                    _ => {
                        if c_write.write_all(&sbuf[..n]).await.is_err() { break; }
                        down += n;
                    }
                }
            }
        }
    }
    (up, down)
}

struct Env {
    hsm: SoftHsm,
    config: PathBuf,
    bank_dir: PathBuf,
    proxy: Proxy,
    _rt: tokio::runtime::Runtime,
    _bank: certagent_bank::RunningBank,
}

impl Env {
    fn new() -> Env {
        let hsm = SoftHsm::new();
        let bank_dir = hsm.path().join("bank");
        certagent_bank::init(&bank_dir).expect("bank");
        certagent_bank::add_user(&bank_dir, "ana", ANA).expect("user");
        bank_cert_on_token(&hsm, &bank_dir, "01", "rsa:2048", ANA, 20);
        let (rt, bank) = common::serve_bank(&bank_dir, ServeOptions::default());
        let proxy = Proxy::start(bank.addr());
        // The bank's TLS certificate names 127.0.0.1, which the proxy is too.
        let config = hsm.config(
            "softhsm2",
            &format!(
                "[bank]\nest_url = \"https://127.0.0.1:{}/.well-known/est\"\nserver_roots = \"{}\"\n",
                proxy.port,
                bank_dir.join("tls-roots.pem").display()
            ),
        );
        Env {
            hsm,
            config,
            bank_dir,
            proxy,
            _rt: rt,
            _bank: bank,
        }
    }

    fn renew(&self) -> Output {
        self.hsm
            .certagent(&self.config, &["renew", "--yes"], Some(PIN))
    }

    fn objects(&self) -> (usize, usize) {
        let out = self
            .hsm
            .pkcs11_tool(&["--login", "--pin", PIN, "--list-objects"]);
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            listing.matches("Certificate Object").count(),
            listing.matches("Private Key Object").count(),
        )
    }

    fn issued_serials(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.bank_dir.join("issued.json")).unwrap_or_default();
        let j: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        j["certificates"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["serial"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn status_serial(&self) -> String {
        let out = self
            .hsm
            .certagent(&self.config, &["status", "--json"], None);
        assert!(out.status.success(), "{}", text(&out));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        j["certificates"][0]["serial"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

#[test]
fn a_bank_that_refuses_connections_is_a_clear_error_and_nothing_changes() {
    let env = Env::new();
    let dead = common::agent::free_port();
    let config = env.hsm.config(
        "softhsm2",
        &format!(
            "[bank]\nest_url = \"https://127.0.0.1:{dead}/.well-known/est\"\nserver_roots = \"{}\"\n",
            env.bank_dir.join("tls-roots.pem").display()
        ),
    );
    let before = env.objects();
    let out = env.hsm.certagent(&config, &["renew", "--yes"], Some(PIN));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.contains("cannot reach the bank")),
        "{}",
        text(&out)
    );
    assert_eq!(env.objects(), before, "token untouched");
    assert!(
        !env.hsm.path().join("state").join("certagent").exists()
            || std::fs::read_dir(env.hsm.path().join("state").join("certagent"))
                .map(|d| d
                    .flatten()
                    .all(|e| !e.file_name().to_string_lossy().starts_with("renewal-")))
                .unwrap_or(true),
        "no journal"
    );
}

#[test]
fn the_network_cut_at_every_stage_recovers_with_the_same_certificate() {
    // Calibrate: a whole renewal through the proxy, counting each
    // connection's bytes; then make the token due again with a new
    // environment for each stage.
    let calibrate = Env::new();
    calibrate.proxy.set(Cut::None);
    let out = calibrate.renew();
    assert!(out.status.success(), "{}", text(&out));
    let conns = calibrate
        .proxy
        .counts
        .lock()
        .expect("lock")
        .per_connection
        .clone();
    // /cacerts (the CLI learns the bank's CA), /cacerts (the renewal),
    // /simplereenroll: the last connection carries the request.
    let (req_up, req_down) = *conns.last().expect("connections");
    assert!(
        conns.len() >= 2 && req_up > 1000 && req_down > 1000,
        "{conns:?}"
    );
    let request_index = conns.len() - 1;
    drop(calibrate);

    let stages = [
        ("closed at once", Cut::Refused),
        ("handshake cut", Cut::Handshake),
        ("request cut mid-body", Cut::RequestBody(req_up - 200)),
        ("answer begun, then silence", Cut::Silence(req_down - 400)),
        ("answer cut", Cut::AnswerBroken(req_down - 200)),
        (
            "answer lost after the bank issued",
            Cut::AnswerLost(req_up - 60),
        ),
    ];
    for (name, cut) in stages {
        let env = Env::new();
        let issued_before = env.issued_serials();
        env.proxy.reset_index(request_index - 1);
        env.proxy.set(cut);
        let out = env.renew();
        assert!(
            !out.status.success(),
            "{name}: the renewal went through\n{}",
            text(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.starts_with("certagent: ") && !err.contains("panicked"),
            "{name}: not a clear one-line error: {last:?}\n{}",
            text(&out)
        );
        let (certs, keys) = env.objects();
        assert!(
            certs >= 1 && keys >= 1,
            "{name}: the old certificate is gone"
        );
        let issued_by_cut = env.issued_serials();
        if matches!(cut, Cut::AnswerLost(_)) {
            assert!(
                issued_by_cut.len() > issued_before.len(),
                "{name}: the bank did not issue, so the case tested nothing"
            );
        }
        // Network back.
        env.proxy.set(Cut::None);
        env.proxy.reset_index(usize::MAX - 1);
        let again = env.renew();
        assert!(
            again.status.success(),
            "{name}: the next run failed\n{}",
            text(&again)
        );
        assert_eq!(env.objects(), (1, 1), "{name}: one certificate and one key");
        let serial = env.status_serial();
        if issued_by_cut.len() > issued_before.len() {
            // The bank issued during the cut: the next run got that certificate.
            assert_eq!(
                issued_by_cut.last(),
                Some(&serial),
                "{name}: another certificate than the one issued for the request"
            );
            assert_eq!(
                env.issued_serials().len(),
                issued_by_cut.len(),
                "{name}: issued twice"
            );
        }
        println!("{name}: {last}");
    }
}

/// `certagent renew` with its state directory on a tmpfs of its own, made
/// read-only or full, in a private mount namespace (`unshare`).
fn renew_with_state_on(env: &Env, how: &str) -> Output {
    common::require_with("unshare", "apt-get install util-linux");
    let state = env.hsm.path().join("state-mount");
    std::fs::create_dir_all(&state).expect("mount point");
    let prepare = match how {
        "read-only" => "mount -o remount,ro \"$S\"",
        "full" => "dd if=/dev/zero of=\"$S/fill\" bs=4k 2>/dev/null; true",
        other => panic!("unknown disk fault {other}"),
    };
    let script = format!("mount -t tmpfs -o size=256k tmpfs \"$S\" && {prepare} && exec \"$@\"");
    let out = std::process::Command::new("unshare")
        .args(["--map-root-user", "--mount", "sh", "-c", &script, "sh"])
        .arg(env!("CARGO_BIN_EXE_certagent"))
        .arg("--config")
        .arg(&env.config)
        .args(["renew", "--yes"])
        .env("S", &state)
        .env("SOFTHSM2_CONF", env.hsm.conf())
        .env("XDG_STATE_HOME", &state)
        .env("CERTAGENT_PIN", PIN)
        .output()
        .expect("unshare runs");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("unshare:"),
        "cannot make a private mount namespace here: {}",
        text(&out)
    );
    out
}

#[test]
fn a_read_only_or_full_state_directory_stops_the_renewal_before_the_token() {
    for how in ["read-only", "full"] {
        let env = Env::new();
        env.proxy.set(Cut::None);
        let before = env.objects();
        let out = renew_with_state_on(&env, how);
        assert!(!out.status.success(), "{how}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.contains("state-mount") && last.contains("cannot be written"),
            "{how}: the path and the reason: {last:?}\n{}",
            text(&out)
        );
        assert!(
            last.contains(if how == "full" {
                "No space"
            } else {
                "Read-only"
            }),
            "{how}: {last}"
        );
        assert_eq!(env.objects(), before, "{how}: the token was touched");
    }
}
