//! The local API against hostile callers and real parts: `certagent run
//! --no-tray` as its own process, a SoftHSM token behind OpenSC's PKCS#11 spy
//! (to count logins), a scripted Assuan pinentry that logs every command it
//! receives (to prove a refused request never reached the prompt), and the
//! reference bank for renewals.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::agent::{Agent, ORIGIN, Reply};
use common::{openssl, run};

fn challenge(n: usize) -> String {
    URL_SAFE_NO_PAD.encode((0..n).map(|i| i as u8).collect::<Vec<_>>())
}

#[test]
fn hostile_requests_are_refused_before_any_prompt_or_token_access() {
    let agent = Agent::start(20);
    let host = agent.host();
    let good = format!("{{\"challenge\":\"{}\"}}", challenge(32));
    let json = ("Content-Type", "application/json");
    let table: Vec<(&str, Reply, u16)> = vec![
        (
            "foreign origin",
            agent.send(
                "POST",
                "/v1/logon",
                &[("Host", &host), ("Origin", "https://evil.example"), json],
                good.as_bytes(),
            ),
            403,
        ),
        (
            "no origin",
            agent.send(
                "POST",
                "/v1/logon",
                &[("Host", &host), json],
                good.as_bytes(),
            ),
            403,
        ),
        (
            "null origin",
            agent.send(
                "POST",
                "/v1/logon",
                &[("Host", &host), ("Origin", "null"), json],
                good.as_bytes(),
            ),
            403,
        ),
        (
            "origin with path",
            agent.send(
                "GET",
                "/v1/status",
                &[("Host", &host), ("Origin", "https://ib.bank.example/")],
                b"",
            ),
            403,
        ),
        (
            "rebinding host",
            agent.send(
                "POST",
                "/v1/logon",
                &[
                    ("Host", &format!("attacker.example:{}", agent.port)),
                    ("Origin", ORIGIN),
                    json,
                ],
                good.as_bytes(),
            ),
            403,
        ),
        (
            "no host",
            agent.send("GET", "/v1/status", &[("Origin", ORIGIN)], b""),
            403,
        ),
        (
            "GET with side effects",
            agent.page("GET", "/v1/logon", ""),
            405,
        ),
        ("GET renewals", agent.page("GET", "/v1/renewals", ""), 405),
        (
            "form post",
            agent.send(
                "POST",
                "/v1/logon",
                &[
                    ("Host", &host),
                    ("Origin", ORIGIN),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                b"challenge=x",
            ),
            400,
        ),
        (
            "text/plain",
            agent.send(
                "POST",
                "/v1/logon",
                &[
                    ("Host", &host),
                    ("Origin", ORIGIN),
                    ("Content-Type", "text/plain"),
                ],
                good.as_bytes(),
            ),
            400,
        ),
        (
            "oversized",
            agent.send(
                "POST",
                "/v1/logon",
                &[("Host", &host), ("Origin", ORIGIN), json],
                &vec![b' '; 20 * 1024],
            ),
            413,
        ),
        (
            "truncated JSON",
            agent.page("POST", "/v1/logon", &good[..good.len() - 3]),
            400,
        ),
        (
            "broken JSON",
            agent.page("POST", "/v1/logon", "{challenge: 1}"),
            400,
        ),
        (
            "unknown field",
            agent.page(
                "POST",
                "/v1/logon",
                &format!("{{\"challenge\":\"{}\",\"pin\":\"1234\"}}", challenge(32)),
            ),
            400,
        ),
        (
            "bad base64",
            agent.page("POST", "/v1/logon", "{\"challenge\":\"***not base64***\"}"),
            400,
        ),
        (
            "short challenge",
            agent.page(
                "POST",
                "/v1/logon",
                &format!("{{\"challenge\":\"{}\"}}", challenge(31)),
            ),
            400,
        ),
        (
            "long challenge",
            agent.page(
                "POST",
                "/v1/logon",
                &format!("{{\"challenge\":\"{}\"}}", challenge(65)),
            ),
            400,
        ),
        (
            "bad id",
            agent.page(
                "POST",
                "/v1/logon",
                &format!("{{\"challenge\":\"{}\",\"id\":\"zz\"}}", challenge(32)),
            ),
            400,
        ),
        ("unknown path", agent.page("GET", "/v1/keys", ""), 404),
    ];
    for (name, reply, want) in table {
        assert_eq!(reply.status, want, "{name}: {}", reply.body);
        if want == 403 {
            assert!(
                reply.header("access-control-allow-origin").is_none(),
                "{name}: CORS header on a refusal"
            );
            assert!(
                !reply.body.contains("Ana"),
                "{name}: leaked certificate details"
            );
        } else {
            assert_eq!(
                reply.header("access-control-allow-origin"),
                Some(ORIGIN),
                "{name}"
            );
        }
        assert!(reply.json()["error"].is_string(), "{name}: {}", reply.body);
    }
    assert!(
        agent.prompts().is_empty(),
        "a refused request reached the prompt: {:?}",
        agent.prompts()
    );
    assert_eq!(
        agent.logins(),
        0,
        "a refused request logged in to the token"
    );
}

#[test]
fn preflight_is_answered_for_the_allowed_origin_only() {
    let agent = Agent::start(20);
    let host = agent.host();
    let r = agent.send(
        "OPTIONS",
        "/v1/logon",
        &[
            ("Host", &host),
            ("Origin", ORIGIN),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
            ("Access-Control-Request-Private-Network", "true"),
        ],
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    assert!(
        r.header("access-control-allow-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("content-type"))
    );
    assert_eq!(
        r.header("access-control-allow-private-network"),
        Some("true")
    );
    let r = agent.send(
        "OPTIONS",
        "/v1/logon",
        &[
            ("Host", &host),
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(r.status, 403);
    assert!(r.header("access-control-allow-origin").is_none());
}

#[test]
fn status_reports_the_certificate_to_the_allowed_page() {
    let agent = Agent::start(20);
    let r = agent.page("GET", "/v1/status", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    let j = r.json();
    assert_eq!(j["token_present"], true);
    assert_eq!(j["certificates"][0]["state"], "renewal-due");
    assert_eq!(j["certificates"][0]["days_left"], 20);
    assert!(agent.prompts().is_empty());
}

#[test]
fn logon_token_verifies_in_openssl_over_the_origin_bound_message() {
    let agent = Agent::start(200);
    let chal: Vec<u8> = (0..32).map(|i| (i * 7) as u8).collect();
    let r = agent.page(
        "POST",
        "/v1/logon",
        &format!("{{\"challenge\":\"{}\"}}", URL_SAFE_NO_PAD.encode(&chal)),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    assert_eq!(t["format"], "certagent-auth:1");
    assert_eq!(t["origin"], ORIGIN);
    assert_eq!(t["algorithm"], "PS256");
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);
    // Consent and PIN in one pinentry conversation: one process started
    // (and ended: the next logon starts one again).
    assert_eq!(agent.pinentry_starts(), 1, "one dialog process per logon");
    assert_eq!(agent.logins(), 1);

    let dir = agent.hsm.path();
    let cert = STANDARD
        .decode(t["certificate"].as_str().expect("cert"))
        .expect("b64");
    std::fs::write(dir.join("logon-cert.der"), &cert).expect("write");
    run(openssl()
        .args(["x509", "-inform", "DER", "-in"])
        .arg(dir.join("logon-cert.der"))
        .arg("-pubkey")
        .arg("-noout")
        .arg("-out")
        .arg(dir.join("logon-pub.pem")));
    use sha2::{Digest, Sha256};
    let verify = |origin: &str| -> bool {
        let mut msg = Sha256::digest(origin.as_bytes()).to_vec();
        msg.extend_from_slice(&Sha256::digest(&chal));
        std::fs::write(dir.join("msg"), &msg).expect("msg");
        std::fs::write(
            dir.join("sig"),
            STANDARD
                .decode(t["signature"].as_str().expect("sig"))
                .expect("b64"),
        )
        .expect("sig");
        openssl()
            .args([
                "dgst",
                "-sha256",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
                "-verify",
            ])
            .arg(dir.join("logon-pub.pem"))
            .arg("-signature")
            .arg(dir.join("sig"))
            .arg(dir.join("msg"))
            .output()
            .expect("openssl")
            .status
            .success()
    };
    assert!(verify(ORIGIN), "openssl rejected the logon signature");
    assert!(
        !verify("https://evil.example"),
        "the signature must be worthless at another origin"
    );
}

#[test]
fn declined_consent_and_wrong_pin_are_clear_and_never_retried() {
    let agent = Agent::start(200);
    let body = format!("{{\"challenge\":\"{}\"}}", challenge(32));
    std::fs::write(agent.prompt_dir.join("confirm"), "no").expect("confirm");
    let r = agent.page("POST", "/v1/logon", &body);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("declined")),
        "{}",
        r.body
    );
    assert_eq!(agent.prompts(), ["CONFIRM"], "no PIN asked after a refusal");
    assert_eq!(agent.logins(), 0);
    // The page may not ask again at once (tests/agent.rs floods it).
    let r = agent.page("POST", "/v1/logon", &body);
    assert_eq!(r.status, 429, "{}", r.body);

    let agent = Agent::start(200);
    std::fs::write(agent.prompt_dir.join("pin"), "000000").expect("pin");
    let r = agent.page("POST", "/v1/logon", &body);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("pin-incorrect")),
        "{}",
        r.body
    );
    assert!(
        r.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("not retried"))
    );
    assert_eq!(agent.logins(), 1, "exactly one login attempt");
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"], "PIN asked once");
}

/// gpg-agent's way: one pinentry process for an exchange. Each logon's
/// consent and PIN go to one process, which is told BYE when the logon
/// ends; the next logon starts its own.
#[test]
fn consent_and_pin_share_one_pinentry_process_per_logon() {
    let agent = Agent::start(200);
    let body = format!("{{\"challenge\":\"{}\"}}", challenge(32));
    let byes = || {
        std::fs::read_to_string(agent.prompt_dir.join("log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "BYE")
            .count()
    };
    for n in 1..=2 {
        let r = agent.page("POST", "/v1/logon", &body);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(agent.prompts().len(), 2 * n, "{:?}", agent.prompts());
        assert_eq!(agent.pinentry_starts(), n, "one process for logon {n}");
        // BYE is sent as the logon goes on to sign; the script logs it on
        // its own time.
        let deadline = Instant::now() + Duration::from_secs(10);
        while byes() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(byes(), n, "logon {n}'s pinentry was told BYE");
    }
}

/// A refused page's requests on a kept-alive connection are each refused
/// and the connection stays: a refusal costs a read, not a reconnect.
#[test]
fn a_refused_origin_keeps_its_connection_and_each_request_is_refused() {
    use std::io::{Read, Write};
    let agent = Agent::start(200);
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", agent.port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let evil = format!(
        "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: https://evil.example\r\n\r\n",
        agent.port
    );
    let good = format!(
        "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: {ORIGIN}\r\nConnection: close\r\n\r\n",
        agent.port
    );
    tcp.write_all(format!("{evil}{evil}{good}").as_bytes())
        .expect("write");
    let mut all = String::new();
    tcp.read_to_string(&mut all).expect("read");
    let statuses: Vec<&str> = all
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &all[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["403", "403", "200"], "{all}");
    assert!(
        !all.contains("access-control-allow-origin: https://evil"),
        "{all}"
    );
}

#[test]
fn only_one_logon_prompt_at_a_time() {
    let agent = Agent::start(200);
    std::fs::write(agent.prompt_dir.join("slow"), "").expect("slow");
    let body = format!("{{\"challenge\":\"{}\"}}", challenge(32));
    let first = std::thread::scope(|s| {
        let first = s.spawn(|| agent.page("POST", "/v1/logon", &body));
        std::thread::sleep(Duration::from_millis(800));
        let second = agent.page("POST", "/v1/logon", &body);
        assert_eq!(
            (second.status, second.json()["error"].as_str()),
            (409, Some("busy")),
            "{}",
            second.body
        );
        first.join().expect("first")
    });
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        agent.prompts().iter().filter(|p| *p == "CONFIRM").count(),
        1
    );
}

#[test]
fn a_renewal_started_by_the_page_runs_to_the_end() {
    let agent = Agent::start(20);
    let r = agent.page("POST", "/v1/renewals", "{}");
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let s = agent.page("GET", &format!("/v1/renewals/{id}"), "");
        assert_eq!(s.status, 200, "{}", s.body);
        let j = s.json();
        if j["state"] != "running" || Instant::now() > deadline {
            break j;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(last["state"], "done", "{last}");
    assert!(
        last["certificate"].is_string() && last["not_after"].is_string(),
        "{last}"
    );
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);
    assert_eq!(agent.pinentry_starts(), 1, "one dialog process per renewal");
    let s = agent.page("GET", "/v1/status", "").json();
    assert_eq!(s["certificates"][0]["state"], "valid", "{s}");
    assert_eq!(agent.page("GET", "/v1/renewals/ffff", "").status, 404);
}

/// A certificate of another issuer (a national eID, say) under CKA_ID
/// `id`: self-signed, for a key that never was on the token.
fn foreign_cert_on_token(hsm: &common::TestToken, id: &str) {
    let dir = hsm.path();
    let der = dir.join(format!("foreign-{id}.der"));
    run(openssl()
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-keyout"])
        .arg(dir.join(format!("foreign-{id}.key")))
        .args(["-subj", "/C=SI/CN=Ana Novak (national eID)", "-days", "365"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-outform", "DER", "-out"])
        .arg(&der));
    let out = hsm.pkcs11_tool(&[
        "--login",
        "--pin",
        common::PIN,
        "--write-object",
        &der.display().to_string(),
        "--type",
        "cert",
        "--id",
        id,
        "--label",
        "eID",
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
}

#[test]
fn a_page_cannot_tell_another_issuers_certificate_from_an_absent_one() {
    let agent = Agent::start_prepared(20, |hsm, _| foreign_cert_on_token(hsm, "0e"));
    // The CLI (the user) sees it as another issuer's.
    let listed = agent.cli(&["status", "--json"], &[]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("national eID"),
        "{}",
        common::text(&listed)
    );
    for (path, body) in [
        ("/v1/renewals", "{\"id\":\"ID\"}".to_string()),
        (
            "/v1/logon",
            format!("{{\"challenge\":\"{}\",\"id\":\"ID\"}}", challenge(32)),
        ),
    ] {
        let foreign = agent.page("POST", path, &body.replace("ID", "0e"));
        let absent = agent.page("POST", path, &body.replace("ID", "0f"));
        println!("{path}: 0e -> {} {}", foreign.status, foreign.body);
        println!("{path}: 0f -> {} {}", absent.status, absent.body);
        assert_eq!(
            (foreign.status, &foreign.body),
            (absent.status, &absent.body),
            "{path}: another issuer's certificate answered apart from an absent one"
        );
        assert!(!foreign.body.contains("eID") && !foreign.body.contains("0e"));
    }
    assert!(agent.prompts().is_empty(), "{:?}", agent.prompts());
    assert_eq!(agent.logins(), 0);
}

#[test]
fn another_os_users_request_is_refused_before_anything_else() {
    common::require_with("setpriv", "apt-get install util-linux");
    common::require_with("curl", "apt-get install curl");
    common::require_root("this test acts as another OS user (nobody)");
    let agent = Agent::start(20);
    let url = format!("http://127.0.0.1:{}/v1/status", agent.port);
    let host = format!("Host: {}", agent.host());
    let curl = |as_nobody: bool| -> String {
        let mut cmd = if as_nobody {
            let mut c = std::process::Command::new("setpriv");
            c.args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "curl",
            ]);
            c
        } else {
            std::process::Command::new("curl")
        };
        let out = cmd
            .args(["-s", "-w", "\n%{http_code}", "-H", &host])
            .args(["-H", &format!("Origin: {ORIGIN}"), &url])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let theirs = curl(true);
    assert!(theirs.ends_with("403"), "{theirs}");
    assert!(
        theirs.contains("\"user\"") && !theirs.contains("Ana"),
        "{theirs}"
    );
    // As well over an IPv4-mapped IPv6 socket.
    let mapped = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(["/usr/bin/python3", "-c"])
        .arg(format!(
            "import socket\ns=socket.create_connection(('::ffff:127.0.0.1',{}))\ns.sendall(b'GET /v1/status HTTP/1.1\\r\\n{}\\r\\nOrigin: {ORIGIN}\\r\\n\\r\\n')\nprint(s.makefile('rb').read().decode())",
            agent.port, host
        ))
        .output()
        .expect("python3 as nobody");
    let theirs = String::from_utf8_lossy(&mapped.stdout);
    assert!(
        theirs.starts_with("HTTP/1.1 403")
            && theirs.contains("\"user\"")
            && !theirs.contains("Ana"),
        "{theirs}{}",
        String::from_utf8_lossy(&mapped.stderr)
    );
    let ours = curl(false);
    assert!(ours.ends_with("200") && ours.contains("Ana"), "{ours}");
    assert!(agent.prompts().is_empty());
}

#[test]
fn a_port_taken_by_another_user_names_that_user() {
    common::require_with("setpriv", "apt-get install util-linux");
    assert!(
        std::path::Path::new("/usr/bin/python3").exists(),
        "/usr/bin/python3 is missing: apt-get install python3"
    );
    common::require_root("this test listens as another OS user (nobody)");
    let hsm = common::SoftHsm::new();
    let port = common::agent::free_port();
    let mut holder = std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
        ])
        .arg(format!(
            "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',{port}))\ns.listen()\ntime.sleep(30)"
        ))
        .spawn()
        .expect("python3 as nobody");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the other user's listener did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(hsm.path().join("roots.pem"), "").expect("roots");
    let config = hsm.config(
        "softhsm2",
        &format!(
            "[bank]\nest_url = \"https://127.0.0.1:1/.well-known/est\"\nserver_roots = \"roots.pem\"\norigins = [\"{ORIGIN}\"]\n[agent]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    let out = hsm.certagent(&config, &["run", "--no-tray"], None);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("taken by nobody's program"),
        "{}",
        common::text(&out)
    );
}

#[test]
fn one_process_holding_connections_cannot_starve_the_browser() {
    common::require_with("python3", "apt-get install python3");
    let agent = Agent::start(20);
    // Another process of the same user opens 300 connections and sends
    // half a request on each, then reports how many the agent left open.
    let hog = r#"
import socket, sys, time
port = int(sys.argv[1])
socks = []
for _ in range(300):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /v1/status HTTP/1.1\r\n")
    socks.append(s)
def still_open():
    n = 0
    for s in socks:
        s.settimeout(0.01)
        try:
            n += s.recv(1) != b""
        except socket.timeout:
            n += 1
        except OSError:
            pass
    return n
# A closed connection stays closed, so the count only falls, to what the
# agent keeps open; on a loaded machine the agent may take a while to
# reach the last of 300 connections, so look until it stops falling at
# the cap, or 20 seconds have passed.
deadline = time.time() + 20
open_ = still_open()
while open_ > 8 and time.time() < deadline:
    time.sleep(0.5)
    open_ = still_open()
print(open_, flush=True)
sys.stdin.read()
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", hog, &agent.port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("the hog's count");
    // While it holds its connections, the page is answered.
    let status = agent.page("GET", "/v1/status", "");
    drop(child.stdin.take());
    let _ = child.wait();
    // At most the cap stays open. Fewer is no fault: on a loaded machine
    // the agent may reach the last of the 300 only after its header
    // timeout (10 s) has closed some it kept; none at all would be one.
    let kept: usize = line.trim().parse().expect("the hog's count");
    assert!(
        (1..=8).contains(&kept),
        "connections the agent kept open for one process: {kept}"
    );
    assert_eq!(status.status, 200, "{}", status.body);
}

#[test]
fn the_agent_ignores_certagent_pin_unless_run_unattended_and_never_passes_it_on() {
    let good = format!("{{\"challenge\":\"{}\"}}", challenge(32));
    // `run` with a wrong CERTAGENT_PIN: ignored, the PIN comes from the
    // agent's own prompt, and pinentry does not inherit the variables.
    let agent = Agent::start_env(
        20,
        &[("CERTAGENT_PIN", "999999"), ("CERTAGENT_OTP", "000000")],
        &[],
    );
    let r = agent.page("POST", "/v1/logon", &good);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);
    assert_eq!(common::pinentry_inherited(&agent.prompt_dir), "");

    // `run --unattended` (for unattended tests): the PIN is the variable's;
    // consent is still asked, and pinentry still inherits nothing.
    let agent = Agent::start_env(20, &[("CERTAGENT_PIN", common::PIN)], &["--unattended"]);
    std::fs::write(agent.prompt_dir.join("pin"), "999999").expect("pin");
    let r = agent.page("POST", "/v1/logon", &good);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(agent.prompts(), ["CONFIRM"]);
    assert_eq!(common::pinentry_inherited(&agent.prompt_dir), "");
}

#[test]
fn a_japanese_desktop_gets_the_consent_and_pin_dialogs_in_japanese() {
    let agent = Agent::start_env(20, &[("LANG", "ja_JP.UTF-8")], &[]);
    let r = agent.page(
        "POST",
        "/v1/logon",
        &format!("{{\"challenge\":\"{}\"}}", challenge(32)),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let lines = agent.prompt_lines().join("\n");
    for want in [
        "電子証明書によるログオンを求めています",
        "許可する",
        "拒否する",
        "のPINを入力してください",
    ] {
        assert!(lines.contains(want), "{want} not in the dialogs:\n{lines}");
    }
    assert!(!lines.contains("asks to log you on"), "{lines}");
}

/// A GET of `/v1/status` as the allowed page sends it, from a socket of
/// the family `to` names (an IPv6 socket for `[::ffff:127.0.0.1]:port`, as
/// Java and other dual-stack clients make by default).
fn status_from(to: std::net::SocketAddr, port: u16) -> (std::net::SocketAddr, Reply) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(to).expect("connect");
    let local = s.local_addr().expect("local address");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let req = format!(
        "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {ORIGIN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    (local, Reply::parse(&raw))
}

#[test]
fn the_own_user_is_served_over_an_ipv4_mapped_ipv6_socket() {
    let agent = Agent::start(20);
    let mapped = std::net::SocketAddr::new(
        std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
        agent.port,
    );
    let (local, r) = status_from(mapped, agent.port);
    println!("from {local}: {} {}", r.status, r.body);
    assert!(local.is_ipv6(), "the client's socket is IPv6: {local}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Ana"), "{}", r.body);
    // And over a plain IPv4 socket, as before.
    let plain = std::net::SocketAddr::from(([127, 0, 0, 1], agent.port));
    assert_eq!(status_from(plain, agent.port).1.status, 200);
}

/// `python3 -c script args…` as root (which may become other users: the
/// system's Python, which they can run).
fn python(script: &str, args: &[String]) -> std::process::Child {
    std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3")
}

fn first_line(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("a line from python3");
    line
}

/// Run as root: `users` processes, each as an OS user of its own (uid
/// 20000, 20001, …), each opening `per` connections to the agent on `port`
/// with half a request and holding them; prints "ready" once all have
/// tried, then holds until stdin closes.
const HOLDERS: &str = r#"
import os, signal, socket, sys, time
port, users, per = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
r, w = os.pipe()
kids = []
for i in range(users):
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setgroups([]); os.setgid(65534); os.setuid(20000 + i)
        socks = []
        for _ in range(per):
            try:
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET /v1/status HTTP/1.1\r\n")
                socks.append(s)
            except OSError:
                pass
        os.write(w, b"x")
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
os.close(w)
n = 0
while n < users:
    b = os.read(r, 64)
    if not b:
        break
    n += len(b)
print("ready", flush=True)
sys.stdin.read()
for k in kids:
    os.kill(k, signal.SIGKILL)
"#;

#[test]
fn other_users_connections_never_shut_out_the_own_user() {
    assert!(
        std::path::Path::new("/usr/bin/python3").exists(),
        "/usr/bin/python3 is missing: apt-get install python3"
    );
    common::require_root("this test connects as other OS users");
    let agent = Agent::start(20);
    // 40 other users, 8 idle connections each: more than the 256 the agent
    // serves at once.
    let mut holders = python(HOLDERS, &[agent.port.to_string(), "40".into(), "8".into()]);
    assert_eq!(first_line(&mut holders).trim(), "ready");
    let status = agent.page("GET", "/v1/status", "");
    drop(holders.stdin.take());
    let _ = holders.wait();
    assert_eq!(status.status, 200, "{}", status.body);
}

#[test]
fn a_flood_of_refused_connections_leaves_the_log_bounded() {
    assert!(
        std::path::Path::new("/usr/bin/python3").exists(),
        "/usr/bin/python3 is missing: apt-get install python3"
    );
    common::require_root("this test connects as other OS users");
    let agent = Agent::start_logged(20);
    let started = Instant::now();
    let mut holders = python(HOLDERS, &[agent.port.to_string(), "40".into(), "8".into()]);
    assert_eq!(first_line(&mut holders).trim(), "ready");
    // Another user connects and hangs up 3000 times, as fast as it can.
    let flood = r#"
import os, socket, sys
os.setgroups([]); os.setgid(65534); os.setuid(21000)
port = int(sys.argv[1])
done = 0
for _ in range(3000):
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
        done += 1
    except OSError:
        pass
print(done, flush=True)
"#;
    let mut flooder = python(flood, &[agent.port.to_string()]);
    let done = first_line(&mut flooder);
    let _ = flooder.wait();
    let status = agent.page("GET", "/v1/status", "");
    drop(holders.stdin.take());
    let _ = holders.wait();
    std::thread::sleep(Duration::from_millis(1500));
    let secs = started.elapsed().as_secs();
    let log = agent.stderr();
    let lines = log.lines().filter(|l| l.contains("local API")).count();
    println!(
        "{} connections in {secs} s: {lines} log lines, {} bytes; last: {:?}",
        done.trim(),
        log.len(),
        log.lines().rev().find(|l| l.contains("local API"))
    );
    assert_eq!(status.status, 200, "{}", status.body);
    assert!(
        lines as u64 <= secs + 3 && log.len() < 16 * 1024,
        "{lines} lines in {secs} s:\n{}",
        log.lines().take(20).collect::<Vec<_>>().join("\n")
    );
}
