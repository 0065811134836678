//! The agent's doors to one token, in the interleavings that broke its
//! promises: a logon while the token is out, a logon while a renewal holds
//! the token logged in, a page renewal after an interrupted CLI renewal, a
//! flood of prompts after "Deny", hostile certificate subjects in the
//! dialog, a certificate of another issuer on the token, and a journal
//! that names the wrong old certificate. Real SoftHSM tokens behind
//! OpenSC's spy, the reference bank on loopback TLS, `certagent run` as its
//! own process, and the scripted pinentry that logs every line.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certagent_bank::ServeOptions;
use common::agent::{ANA, Agent, ORIGIN};
use common::{PIN, bank_cert_on_token, text};

fn logon_body() -> String {
    format!(
        "{{\"challenge\":\"{}\"}}",
        URL_SAFE_NO_PAD.encode([7u8; 32])
    )
}

/// Wait for a renewal started through the API to end; returns its last state.
fn wait_renewal(agent: &Agent, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = agent.page("GET", &format!("/v1/renewals/{id}"), "");
        assert_eq!(s.status, 200, "{}", s.body);
        let j = s.json();
        if j["state"] != "running" || Instant::now() > deadline {
            return j;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (certificates, private keys) on the token, as pkcs11-tool lists them.
fn objects(agent: &Agent) -> (usize, usize) {
    let out = agent
        .hsm
        .pkcs11_tool(&["--login", "--pin", PIN, "--list-objects"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        listing.matches("Certificate Object").count(),
        listing.matches("Private Key Object").count(),
    )
}

#[test]
fn a_logon_while_the_token_is_out_does_not_shut_later_logons() {
    let agent = Agent::start(200);
    // Pull the token: its directory leaves the store SoftHSM reads.
    let tokens = agent.hsm.path().join("tokens");
    let dir = std::fs::read_dir(&tokens)
        .expect("store")
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("the token's directory");
    let away = agent.hsm.path().join("token-away");
    std::fs::rename(&dir, &away).expect("pull");
    let r = agent.page("POST", "/v1/logon", &logon_body());
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (503, Some("no-token")),
        "{}",
        r.body
    );
    // The door is not left shut: the next logon and a renewal meet the
    // token's real state (still out), not a stale "busy" from the first
    // attempt. (SoftHSM does not take a token back while the module stays
    // loaded, so re-insertion itself is not emulated here.)
    for _ in 0..3 {
        let r = agent.page("POST", "/v1/logon", &logon_body());
        assert_eq!(r.json()["error"], "no-token", "{}", r.body);
    }
    let r = agent.page("POST", "/v1/renewals", "{}");
    assert_eq!(r.json()["error"], "no-token", "{}", r.body);
    let s = agent.page("GET", "/v1/status", "").json();
    assert_eq!(s["token_present"], false, "{s}");
    assert!(agent.prompts().is_empty(), "no dialog without a token");
}

#[test]
fn a_wrong_pin_is_never_granted_while_a_renewal_holds_the_token() {
    let agent = Agent::start_with(
        20,
        |_| vec![ORIGIN.to_string()],
        ServeOptions {
            first_answer_202: true,
            ..ServeOptions::default()
        },
    );
    // A renewal with the right PIN; the bank answers 202 first, and the
    // renewal keeps the token logged in while it waits.
    let r = agent.page("POST", "/v1/renewals", "{}");
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["id"].as_str().expect("id").to_string();
    std::fs::write(agent.prompt_dir.join("pin"), "000000").expect("wrong pin");
    // A logon now: refused at once, no dialog, no login.
    let logins = agent.logins();
    let r = agent.page("POST", "/v1/logon", &logon_body());
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (409, Some("busy")),
        "{}",
        r.body
    );
    assert!(
        r.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("renewal")),
        "{}",
        r.body
    );
    assert_eq!(
        agent.logins(),
        logins,
        "no login while the renewal holds it"
    );
    let done = wait_renewal(&agent, &id);
    assert_eq!(done["state"], "done", "{done}");
    // After it: the wrong PIN reaches the token and is rejected.
    let r = agent.page("POST", "/v1/logon", &logon_body());
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("pin-incorrect")),
        "{}",
        r.body
    );

    // The other order: a logon whose consent is slow, and a renewal asked
    // for meanwhile; the logon's wrong PIN is still checked by the token.
    std::fs::write(agent.prompt_dir.join("slow"), "").expect("slow");
    let body = logon_body();
    std::thread::scope(|s| {
        let logon = s.spawn(|| agent.page("POST", "/v1/logon", &body));
        std::thread::sleep(Duration::from_millis(800));
        let r = agent.page("POST", "/v1/renewals", "{}");
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (409, Some("busy")),
            "{}",
            r.body
        );
        let r = logon.join().expect("logon");
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (403, Some("pin-incorrect")),
            "{}",
            r.body
        );
    });
}

#[test]
fn a_page_renewal_resumes_an_interrupted_cli_renewal() {
    let agent = Agent::start(20);
    // The CLI's renewal dies after the bank issued (the bank has marked
    // the old certificate replaced: a fresh attempt would be refused).
    let out = agent.cli(
        &["renew", "--yes"],
        &[
            ("CERTAGENT_PIN", PIN),
            ("CERTAGENT_TEST_CRASH_AT", "issued"),
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let status = agent.page("GET", "/v1/status", "").json();
    assert_eq!(status["interrupted_renewal"], "issued", "{status}");
    let r = agent.page("POST", "/v1/renewals", "{}");
    assert_eq!(r.status, 202, "{}", r.body);
    let done = wait_renewal(&agent, r.json()["id"].as_str().expect("id"));
    assert_eq!(done["state"], "done", "{done}");
    assert!(
        agent
            .prompt_lines()
            .iter()
            .any(|l| l.contains("interrupted renewal waits")),
        "the consent says it resumes: {:?}",
        agent.prompt_lines()
    );
    assert_eq!(objects(&agent), (1, 1), "one certificate and one key");
    let status = agent.page("GET", "/v1/status", "").json();
    assert_eq!(status["certificates"][0]["state"], "valid", "{status}");
    assert!(status["interrupted_renewal"].is_null(), "{status}");
}

#[test]
fn after_deny_a_flood_of_logons_raises_no_prompt() {
    let agent = Agent::start(200);
    std::fs::write(agent.prompt_dir.join("confirm"), "no").expect("deny");
    let r = agent.page("POST", "/v1/logon", &logon_body());
    assert_eq!(r.json()["error"], "declined", "{}", r.body);
    for _ in 0..20 {
        let r = agent.page("POST", "/v1/logon", &logon_body());
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (429, Some("cool-down")),
            "{}",
            r.body
        );
        let r = agent.page("POST", "/v1/renewals", "{}");
        assert_eq!(r.status, 429, "{}", r.body);
    }
    assert_eq!(agent.prompts(), ["CONFIRM"], "one prompt per cool-down");
    assert_eq!(agent.logins(), 0);
}

#[test]
fn hostile_subjects_are_shortened_and_cleaned_in_the_dialog() {
    let agent = Agent::start(200);
    // A second certificate whose subject is 2 KiB long and carries a
    // right-to-left override; the page asks for it by id.
    let long = format!(
        "CN=Ana \u{202E}gnp.exe Novak,O={},C=SI",
        "Demo Company ".repeat(160)
    );
    // pkcs11-tool refuses so long a subject; GnuTLS's p11tool writes it.
    common::require("p11tool");
    let out = agent.hsm.pkcs11_tool(&[
        "--login",
        "--pin",
        PIN,
        "--keypairgen",
        "--key-type",
        "rsa:2048",
        "--id",
        "03",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let spki_file = agent.hsm.path().join("pub-03.der");
    let out = agent.hsm.pkcs11_tool(&[
        "--read-object",
        "--type",
        "pubkey",
        "--id",
        "03",
        "-o",
        &spki_file.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let spki = std::fs::read(&spki_file).expect("public key");
    let der = certagent_bank::issue(&agent.bank_dir, &long, &spki, 200).expect("issued");
    let pem = agent.hsm.path().join("long.pem");
    std::fs::write(
        &pem,
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        ),
    )
    .expect("pem");
    let out = std::process::Command::new("p11tool")
        .env("SOFTHSM2_CONF", agent.hsm.conf())
        .env("GNUTLS_PIN", PIN)
        .arg(format!("--provider={}", common::softhsm_module().display()))
        .args(["--login", "--write", "--id", "03", "--label", "long"])
        .arg("--load-certificate")
        .arg(&pem)
        .arg(format!("pkcs11:token={}", common::LABEL))
        .output()
        .expect("p11tool");
    assert!(out.status.success(), "{}", text(&out));
    let r = agent.page(
        "POST",
        "/v1/logon",
        &format!(
            "{{\"challenge\":\"{}\",\"id\":\"03\"}}",
            URL_SAFE_NO_PAD.encode([7u8; 32])
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let lines = agent.prompt_lines();
    let confirm = lines
        .iter()
        .find(|l| l.starts_with("SETDESC") && l.contains("log you on"))
        .unwrap_or_else(|| panic!("a consent dialog: {lines:?}"));
    assert!(confirm.contains("Ana gnp.exe Novak"), "{confirm}");
    for l in &lines {
        assert!(l.len() < 1000, "an Assuan line of {} bytes", l.len());
        assert!(
            !l.contains('\u{202E}'),
            "a bidi override reached the dialog"
        );
    }
}

#[test]
fn a_certificate_of_another_issuer_is_never_offered_to_the_page() {
    let agent = Agent::start(20);
    let other = agent.hsm.path().join("national-eid");
    certagent_bank::init(&other).expect("another CA");
    bank_cert_on_token(
        &agent.hsm,
        &other,
        "02",
        "rsa:2048",
        "CN=Ana Novak,SERIALNUMBER=PNOSI-123,C=SI",
        300,
    );
    // pkcs11-tool wrote the token's files while the agent runs: SoftHSM
    // may answer a read in the middle of that write with a general error,
    // and the agent then reports no token for that look. Look again until
    // the token answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let s = loop {
        let s = agent.page("GET", "/v1/status", "").json();
        if s["token_present"] == true || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let certs = s["certificates"].as_array().expect("list");
    assert_eq!(certs.len(), 1, "{s}");
    assert_eq!(certs[0]["id"], "01", "{s}");
    let r = agent.page(
        "POST",
        "/v1/logon",
        &format!(
            "{{\"challenge\":\"{}\",\"id\":\"02\"}}",
            URL_SAFE_NO_PAD.encode([1u8; 32])
        ),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    // The same answer as for an id not on the token at all.
    let r = agent.page("POST", "/v1/renewals", "{\"id\":\"02\"}");
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(agent.prompts().is_empty(), "{:?}", agent.prompts());
    // The CLI lists it apart and never renews it.
    let out = agent.cli(&["status", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["certificates"].as_array().map(Vec::len), Some(1), "{j}");
    assert_eq!(j["other_certificates"][0]["id"], "02", "{j}");
    let out = agent.cli(&["renew", "--id", "02", "--yes"], &[("CERTAGENT_PIN", PIN)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not issued by the bank"),
        "{}",
        text(&out)
    );
    // The bank's own renewal leaves the other certificate alone.
    let out = agent.cli(&["renew", "--yes"], &[("CERTAGENT_PIN", PIN)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(objects(&agent), (2, 2));
}

#[test]
fn resume_refuses_to_delete_an_old_id_that_holds_another_certificate() {
    let agent = Agent::start(20);
    // Interrupted after the new certificate is on the token and proven.
    let out = agent.cli(
        &["renew", "--yes"],
        &[
            ("CERTAGENT_PIN", PIN),
            ("CERTAGENT_TEST_CRASH_AT", "installed"),
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    // Another certificate now sits under id 05; the journal is made to name it.
    bank_cert_on_token(&agent.hsm, &agent.bank_dir, "05", "rsa:2048", ANA, 100);
    let state = agent.hsm.path().join("state").join("certagent");
    let journal = std::fs::read_dir(&state)
        .expect("state dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("renewal-"))
        })
        .expect("a journal");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&journal)
            .expect("journal")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the journal is private");
    }
    let mut j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&journal).expect("read")).expect("json");
    j["old_id"] = "05".into();
    std::fs::write(&journal, serde_json::to_vec(&j).expect("json")).expect("write");
    let out = agent.cli(&["renew", "--yes"], &[("CERTAGENT_PIN", PIN)]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("left id 05 alone"), "{err}");
    // 01 (old), 05 (the other) and the new one: nothing was deleted.
    assert_eq!(objects(&agent), (3, 3));
}

/// The page is told "not now" apart from "never through this door": a
/// certificate not yet in its renewal window is `not-due` (it will be),
/// an expired one is `refused` (it needs an enrolment with the bank's
/// one-time password). Neither asks the user anything nor logs in.
#[test]
fn a_page_is_told_not_due_apart_from_refused() {
    for (days_left, code) in [(200, "not-due"), (-5, "refused")] {
        let agent = Agent::start(days_left);
        let r = agent.page("POST", "/v1/renewals", "{}");
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (409, Some(code)),
            "{days_left} days left: {}",
            r.body
        );
        assert!(agent.prompts().is_empty(), "{:?}", agent.prompts());
        assert_eq!(agent.logins(), 0);
    }
}
