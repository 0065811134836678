//! The bank's web logon end to end: real TLS on loopback to the bank
//! embedded in-process, software keys made by `openssl`, certificates from
//! `bank::issue`, and certagent-auth:1 tokens signed by `openssl dgst` (an
//! implementation independent of the ring code that verifies them).
//!
//! Each test has its own bank directory and port. Run with
//! `cargo nextest run -p certagent-bank --test bank_logon`.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use certagent_bank::{self as bank, ServeOptions};
use common::https::{self, Key, Reply, Target, TestBank};
use common::{openssl, run_bytes as run};

const ALICE: &str = "CN=alice,O=Bank";
const EVIL: &str = "https://ib.bank.example.evil";

// ---------------------------------------------------------------- fixtures

static FILES: AtomicUsize = AtomicUsize::new(0);

impl TestBank {
    async fn start() -> TestBank {
        TestBank::start_with(ServeOptions::default()).await
    }

    async fn start_with(opts: ServeOptions) -> TestBank {
        TestBank::serve(opts).await
    }

    fn origin(&self) -> String {
        self.running().origin().to_string()
    }

    /// A certificate (DER) from this bank that expires in `days_left` days.
    fn issue(&self, subject: &str, key: &Key, days_left: i64) -> Vec<u8> {
        bank::issue(self.path(), subject, &key.spki, days_left).expect("issue")
    }

    /// A certificate (DER) signed by this bank's issuing CA with the given
    /// validity, whatever it is (reversed, or RFC 5280's no-expiry date),
    /// recorded as issued.
    fn issue_validity(
        &self,
        subject: &str,
        key: &Key,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Vec<u8> {
        use bank::store::{Paths, State, record_for};
        use der::Decode;
        use rustls_pki_types::pem::PemObject;
        let paths = Paths::new(self.path());
        let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(paths.ca_key()).unwrap();
        let ca_cert = rustls_pki_types::CertificateDer::from_pem_file(paths.ca_cert()).unwrap();
        let ca = bank::ca::Ca::load(pkcs8.secret_pkcs8_der(), ca_cert.as_ref()).unwrap();
        let der = ca
            .issue_client(&bank::ca::ClientCert {
                subject: bank::ca::parse_name(subject).unwrap(),
                spki: spki::SubjectPublicKeyInfoOwned::from_der(&key.spki).unwrap(),
                serial: bank::ca::random_serial(|_| false).unwrap(),
                not_before,
                not_after,
                san: None,
            })
            .unwrap();
        let mut state = State::load(&paths).unwrap();
        state.add_certificate(record_for(&der, "test", None).unwrap());
        state.save(&paths).unwrap();
        der
    }

    /// `alg` over `msg` with openssl, as JWS gives it (ES256 as r||s).
    fn sign(&self, key: &Key, alg: &str, msg: &[u8]) -> Vec<u8> {
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let msg_file = self.file(&format!("msg-{n}.bin"));
        std::fs::write(&msg_file, msg).unwrap();
        let mut cmd = openssl();
        cmd.args(["dgst", "-sha256", "-sign"]).arg(&key.pem);
        if alg == "PS256" {
            cmd.args([
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
                "-sigopt",
                "rsa_mgf1_md:sha256",
            ]);
        }
        let sig = run(cmd.arg(&msg_file));
        if alg == "ES256" {
            ecdsa_der_to_raw(&sig)
        } else {
            sig
        }
    }

    /// A fresh challenge from the bank (bytes).
    async fn challenge(&self) -> Vec<u8> {
        let reply = self.send("POST", "/logon/challenge", &[], Vec::new()).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let v = reply.json();
        let expires = v["expires"].as_str().expect("expires");
        let expires =
            time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
                .expect("RFC 3339");
        let ttl = expires - time::OffsetDateTime::now_utc();
        assert!(ttl <= time::Duration::minutes(5), "{ttl}");
        let text = v["challenge"].as_str().expect("challenge");
        assert!(!text.contains(['=', '+', '/']), "base64url, unpadded");
        let bytes = URL_SAFE_NO_PAD.decode(text).expect("base64url");
        assert_eq!(bytes.len(), 32);
        bytes
    }

    /// The token the agent would return: signed over `signed_origin` and
    /// `challenge`, naming `origin` and the challenge (as the page adds it).
    fn token(
        &self,
        key: &Key,
        cert: &[u8],
        alg: &str,
        challenge: &[u8],
        signed_origin: &str,
        origin: &str,
    ) -> Value {
        let sig = self.sign(key, alg, &message(signed_origin, challenge));
        json!({
            "format": "certagent-auth:1",
            "certificate": STANDARD.encode(cert),
            "algorithm": alg,
            "signature": STANDARD.encode(sig),
            "origin": origin,
            "challenge": URL_SAFE_NO_PAD.encode(challenge),
        })
    }

    /// A new challenge, a good token for it, and its verification.
    async fn log_on(&self, key: &Key, cert: &[u8], alg: &str) -> Reply {
        let challenge = self.challenge().await;
        let origin = self.origin();
        let token = self.token(key, cert, alg, &challenge, &origin, &origin);
        self.verify(&token).await
    }

    async fn verify(&self, token: &Value) -> Reply {
        self.send(
            "POST",
            "/logon/verify",
            &[],
            serde_json::to_vec(token).unwrap(),
        )
        .await
    }

    /// One request on a fresh TLS connection, as the browser on the bank's
    /// page sends it: POSTs are JSON and name the bank's origin, unless
    /// `headers` say otherwise (an empty value: no such header); the
    /// challenge cookie this browser holds goes with every request unless
    /// `headers` name a cookie, and an answer's challenge cookie is kept.
    /// A request that names its own cookie is another browser: its answer's
    /// cookies are not kept.
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let names = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let origin = self.origin();
        let held = self.held_challenge_cookie();
        let mut all: Vec<(&str, &str)> = Vec::new();
        if method == "POST" && !names("origin") {
            all.push(("origin", &origin));
        }
        let own_browser = !names("cookie");
        if let Some(cookie) = held.as_deref().filter(|_| own_browser) {
            all.push(("cookie", cookie));
        }
        all.extend_from_slice(headers);
        let reply = send_to(
            self.running().addr(),
            &self.file("tls-roots.pem"),
            method,
            path,
            &all,
            body,
        )
        .await;
        if let Some(set) = reply.set_cookie("logon_challenge").filter(|_| own_browser) {
            let pair = set.split(';').next().unwrap().to_string();
            // The bank clears it with an empty value. (A challenge made
            // with a zero lifetime, for the expiry test, is kept.)
            let cleared = pair == "logon_challenge=";
            *self.challenge_cookie.lock().unwrap() = (!cleared).then_some(pair);
        }
        reply
    }

    /// The challenge cookie (`logon_challenge=...`) this browser holds.
    fn held_challenge_cookie(&self) -> Option<String> {
        self.challenge_cookie.lock().unwrap().clone()
    }
}

/// SHA-256(origin) || SHA-256(challenge), as the agent signs it.
fn message(origin: &str, challenge: &[u8]) -> Vec<u8> {
    let mut m = Sha256::digest(origin.as_bytes()).to_vec();
    m.extend(Sha256::digest(challenge));
    m
}

/// openssl's DER `ECDSA-Sig-Value` as JWS r||s (32 bytes each).
fn ecdsa_der_to_raw(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30, "SEQUENCE");
    assert!(der[1] < 0x80, "short length for P-256");
    let mut i = 2;
    let mut out = Vec::with_capacity(64);
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "INTEGER");
        let len = usize::from(der[i + 1]);
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.iter().take_while(|b| **b == 0).count()..];
        assert!(int.len() <= 32);
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

/// One request to a bank's web side, as a page would send it (JSON for POST
/// unless `headers` name a content type; Host localhost).
async fn send_to(
    addr: SocketAddr,
    roots: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut all: Vec<(&str, &str)> = Vec::new();
    let names_type = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if method == "POST" && !names_type {
        all.push(("content-type", "application/json"));
    }
    all.extend_from_slice(headers);
    let target = Target {
        addr,
        roots,
        host: format!("localhost:{}", addr.port()),
        identity: None,
    };
    https::send(&target, method, path, &all, body).await
}

/// What the logon tests check on an answer.
trait LogonReply {
    fn json(&self) -> Value;
    fn set_cookie(&self, name: &str) -> Option<String>;
    fn logged_on(&self) -> Value;
    fn session_cookie(&self) -> String;
    fn refused(&self, status: u16, code: &str) -> String;
}

impl LogonReply for Reply {
    fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), Some("application/json"));
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The value of the cookie `name` this answer sets, with its attributes.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }

    /// A successful logon: the answer's JSON, with the session cookie checked.
    fn logged_on(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text());
        let cookie = self.set_cookie("session").expect("session cookie");
        let value = cookie
            .strip_prefix("session=")
            .and_then(|c| c.split(';').next())
            .unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(value).unwrap().len(), 32);
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(cookie.split("; ").any(|a| a == attr), "{attr} in {cookie}");
        }
        assert_eq!(self.header("cache-control"), Some("no-store"));
        self.json()
    }

    fn session_cookie(&self) -> String {
        let cookie = self.set_cookie("session").expect("session cookie");
        cookie.split(';').next().unwrap().to_string()
    }

    /// A refusal with this status and `error` code, and a message.
    fn refused(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        assert_eq!(v["error"], code, "{v}");
        let message = v["message"].as_str().expect("message").to_string();
        assert!(!message.is_empty() && !message.contains('\n'));
        assert!(self.set_cookie("session").is_none());
        message
    }
}

// ------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_logs_on_with_a_renewal_notice_at_20_days() {
    let bank = TestBank::start().await;
    bank::add_user(bank.path(), "alice", ALICE).unwrap();
    let key = bank.key("alice", "rsa");
    let cert = bank.issue(ALICE, &key, 20);
    let reply = bank.log_on(&key, &cert, "RS256").await;
    let v = reply.logged_on();
    assert_eq!(v["subject"], ALICE);
    assert_eq!(v["state"], "renewal-due");
    assert_eq!(v["days_left"], 20);
    assert_eq!(v["renewal_notice"], true);

    // The session knows who it is; without the cookie there is none.
    let cookie = reply.session_cookie();
    let session = bank
        .send("GET", "/logon/session", &[("cookie", &cookie)], Vec::new())
        .await;
    assert_eq!(session.status, 200, "{}", session.text());
    assert_eq!(session.json()["subject"], ALICE);
    bank.send("GET", "/logon/session", &[], Vec::new())
        .await
        .refused(401, "no_session");
    let forged = format!("session={}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    bank.send("GET", "/logon/session", &[("cookie", &forged)], Vec::new())
        .await
        .refused(401, "no_session");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps256_logs_on_without_a_notice_at_200_days() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "rsa");
    let cert = bank.issue(ALICE, &key, 200);
    let v = bank.log_on(&key, &cert, "PS256").await.logged_on();
    assert_eq!(v["subject"], ALICE);
    assert_eq!(v["state"], "valid");
    assert_eq!(v["days_left"], 200);
    assert_eq!(v["renewal_notice"], false);
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_logs_on() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    let v = bank.log_on(&key, &cert, "ES256").await.logged_on();
    assert_eq!(v["subject"], ALICE);
    assert_eq!(v["renewal_notice"], false);
    let key = bank.key("bob", "ec");
    let cert = bank.issue("CN=bob,O=Bank", &key, 20);
    let v = bank.log_on(&key, &cert, "ES256").await.logged_on();
    assert_eq!(v["subject"], "CN=bob,O=Bank");
    assert_eq!(v["renewal_notice"], true);
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_token_unchanged_logs_on_with_the_challenge_cookie() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    let reply = bank.send("POST", "/logon/challenge", &[], Vec::new()).await;
    let cookie = reply
        .set_cookie("logon_challenge")
        .expect("challenge cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/logon"] {
        assert!(cookie.split("; ").any(|a| a == attr), "{attr} in {cookie}");
    }
    let challenge = URL_SAFE_NO_PAD
        .decode(reply.json()["challenge"].as_str().unwrap())
        .unwrap();
    let origin = bank.origin();
    let mut token = bank.token(&key, &cert, "ES256", &challenge, &origin, &origin);
    token.as_object_mut().unwrap().remove("challenge");
    let pair = cookie.split(';').next().unwrap().to_string();
    let body = serde_json::to_vec(&token).unwrap();
    let reply = bank
        .send("POST", "/logon/verify", &[("cookie", &pair)], body.clone())
        .await;
    assert_eq!(reply.logged_on()["subject"], ALICE);
    // The answer clears the challenge cookie.
    let cleared = reply.set_cookie("logon_challenge").expect("cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // Without cookie or field there is no challenge to check against.
    bank.send("POST", "/logon/verify", &[("cookie", "")], body)
        .await
        .refused(400, "no_challenge");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_challenge_is_refused() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    let challenge = bank.challenge().await;
    let cookie = bank.held_challenge_cookie().expect("challenge cookie");
    let origin = bank.origin();
    let token = bank.token(&key, &cert, "ES256", &challenge, &origin, &origin);
    bank.verify(&token).await.logged_on();
    // Replayed with the cookie it came with (the answer cleared it).
    let message = bank
        .send(
            "POST",
            "/logon/verify",
            &[("cookie", &cookie)],
            serde_json::to_vec(&token).unwrap(),
        )
        .await
        .refused(403, "challenge_used");
    assert!(message.contains("already used"), "{message}");

    // A failed attempt spends the challenge too.
    let challenge = bank.challenge().await;
    let mut bad = bank.token(&key, &cert, "ES256", &challenge, &origin, &origin);
    bad["signature"] = json!(STANDARD.encode([1u8; 64]));
    bank.verify(&bad).await.refused(403, "bad_signature");
    let good = bank.token(&key, &cert, "ES256", &challenge, &origin, &origin);
    bank.verify(&good).await.refused(403, "challenge_used");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_is_only_good_in_the_browser_it_was_issued_to() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    let origin = bank.origin();
    // This browser's challenge, and a token for it (the page adds the field).
    let mine = bank.challenge().await;
    let token = bank.token(&key, &cert, "ES256", &mine, &origin, &origin);
    let body = serde_json::to_vec(&token).unwrap();

    // Sent by a client that holds no challenge cookie: refused, whatever
    // the body says.
    let reply = bank
        .send("POST", "/logon/verify", &[("cookie", "")], body.clone())
        .await;
    println!("without the cookie: {} {}", reply.status, reply.text());
    let message = reply.refused(403, "no_challenge_cookie");
    assert!(message.contains("issued to"), "{message}");

    // Sent by another browser, with the cookie of its own challenge.
    let other = bank
        .send("POST", "/logon/challenge", &[("cookie", "")], Vec::new())
        .await;
    let theirs = other.set_cookie("logon_challenge").expect("their cookie");
    let theirs = theirs.split(';').next().unwrap().to_string();
    let reply = bank
        .send(
            "POST",
            "/logon/verify",
            &[("cookie", &theirs)],
            body.clone(),
        )
        .await;
    println!(
        "with another browser's cookie: {} {}",
        reply.status,
        reply.text()
    );
    let message = reply.refused(403, "challenge_mismatch");
    assert!(
        message.contains("not the one this browser was given"),
        "{message}"
    );
    // That browser's own challenge is spent by the attempt.
    let their_challenge = URL_SAFE_NO_PAD
        .decode(other.json()["challenge"].as_str().unwrap())
        .unwrap();
    let their_token = bank.token(&key, &cert, "ES256", &their_challenge, &origin, &origin);
    bank.send(
        "POST",
        "/logon/verify",
        &[("cookie", &theirs)],
        serde_json::to_vec(&their_token).unwrap(),
    )
    .await
    .refused(403, "challenge_used");

    // In the browser it was issued to, the same token logs on.
    bank.send("POST", "/logon/verify", &[], body)
        .await
        .logged_on();
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_is_required_on_challenge_and_verify() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    let origin = bank.origin();

    let reply = bank
        .send("POST", "/logon/challenge", &[("origin", "")], Vec::new())
        .await;
    println!(
        "challenge without Origin: {} {}",
        reply.status,
        reply.text()
    );
    let message = reply.refused(403, "no_origin");
    assert!(message.contains(&origin), "{message}");
    assert!(reply.set_cookie("logon_challenge").is_none());
    bank.send(
        "POST",
        "/logon/challenge",
        &[("origin", "null")],
        Vec::new(),
    )
    .await
    .refused(403, "cross_origin");

    let challenge = bank.challenge().await;
    let token = bank.token(&key, &cert, "ES256", &challenge, &origin, &origin);
    let body = serde_json::to_vec(&token).unwrap();
    let reply = bank
        .send("POST", "/logon/verify", &[("origin", "")], body.clone())
        .await;
    println!("verify without Origin: {} {}", reply.status, reply.text());
    reply.refused(403, "no_origin");
    bank.send("POST", "/logon/verify", &[("origin", EVIL)], body.clone())
        .await
        .refused(403, "cross_origin");
    // Refused before the challenge was looked at: it still works from the
    // bank's page.
    bank.send("POST", "/logon/verify", &[], body)
        .await
        .logged_on();
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_challenge_requests_does_not_evict_a_logon_in_progress() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    let origin = bank.origin();
    let in_progress = bank.challenge().await;

    // Another client on the same address asks again and again, without
    // the cookie of the logon in progress.
    let (mut issued, mut refused) = (0, 0);
    for _ in 0..40 {
        let reply = bank
            .send("POST", "/logon/challenge", &[("cookie", "")], Vec::new())
            .await;
        match reply.status {
            200 => issued += 1,
            _ => {
                let message = reply.refused(429, "too_many_challenges");
                assert!(message.contains("too many logons in progress"), "{message}");
                let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=300).contains(&retry), "{retry}");
                refused += 1;
            }
        }
    }
    println!("flood of 40 challenge requests: {issued} issued, {refused} refused with 429");
    assert!(refused > 0 && issued < 40);

    // The logon whose challenge came before the flood still verifies.
    let token = bank.token(&key, &cert, "ES256", &in_progress, &origin, &origin);
    bank.verify(&token).await.logged_on();
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_challenge_is_refused() {
    let bank = TestBank::start_with(ServeOptions {
        challenge_ttl: Duration::ZERO,
        ..ServeOptions::default()
    })
    .await;
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    let reply = bank.log_on(&key, &cert, "ES256").await;
    let message = reply.refused(403, "challenge_expired");
    assert!(message.contains("expired"), "{message}");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_unreadable_challenge_is_refused() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    let origin = bank.origin();
    let made_up = [42u8; 32];
    let forged = format!("logon_challenge={}", URL_SAFE_NO_PAD.encode(made_up));
    let token = bank.token(&key, &cert, "ES256", &made_up, &origin, &origin);
    let with_forged = [("cookie", forged.as_str())];
    let verify = |token: &Value| {
        bank.send(
            "POST",
            "/logon/verify",
            &with_forged,
            serde_json::to_vec(token).unwrap(),
        )
    };
    let message = verify(&token).await.refused(403, "unknown_challenge");
    assert!(message.contains("did not issue"), "{message}");
    let mut token = token;
    token["challenge"] = json!("not*base64url");
    verify(&token).await.refused(400, "bad_challenge");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_for_another_origin_is_refused() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    let challenge = bank.challenge().await;
    let token = bank.token(&key, &cert, "ES256", &challenge, EVIL, EVIL);
    let message = bank.verify(&token).await.refused(403, "wrong_origin");
    assert!(message.contains(EVIL), "{message}");
    assert!(message.contains(&bank.origin()), "{message}");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_over_another_origin_is_refused_whatever_the_field_says() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "rsa");
    let cert = bank.issue(ALICE, &key, 200);
    let challenge = bank.challenge().await;
    let origin = bank.origin();
    // A phishing page relayed the bank's challenge; the agent signed for
    // the phishing origin; the relay rewrites the field.
    let token = bank.token(&key, &cert, "RS256", &challenge, EVIL, &origin);
    bank.verify(&token).await.refused(403, "bad_signature");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_algorithm_or_a_signature_that_does_not_verify_is_refused() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "rsa");
    let cert = bank.issue(ALICE, &key, 200);
    let origin = bank.origin();

    let c = bank.challenge().await;
    let mut token = bank.token(&key, &cert, "RS256", &c, &origin, &origin);
    token["algorithm"] = json!("HS256");
    let message = bank
        .verify(&token)
        .await
        .refused(400, "unsupported_algorithm");
    assert!(message.contains("HS256"), "{message}");

    let c = bank.challenge().await;
    let mut token = bank.token(&key, &cert, "RS256", &c, &origin, &origin);
    token["algorithm"] = json!("ES256");
    bank.verify(&token).await.refused(400, "algorithm_mismatch");

    // A PSS signature named RS256 is a signature that does not verify.
    let c = bank.challenge().await;
    let mut token = bank.token(&key, &cert, "PS256", &c, &origin, &origin);
    token["algorithm"] = json!("RS256");
    bank.verify(&token).await.refused(403, "bad_signature");

    // One bit off.
    let c = bank.challenge().await;
    let mut token = bank.token(&key, &cert, "RS256", &c, &origin, &origin);
    let mut sig = STANDARD
        .decode(token["signature"].as_str().unwrap())
        .unwrap();
    sig[10] ^= 1;
    token["signature"] = json!(STANDARD.encode(sig));
    bank.verify(&token).await.refused(403, "bad_signature");

    // Signed by another key than the certificate's.
    let other = bank.key("mallory", "rsa");
    let c = bank.challenge().await;
    let token = bank.token(&other, &cert, "RS256", &c, &origin, &origin);
    bank.verify(&token).await.refused(403, "bad_signature");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_bank_is_refused() {
    let bank = TestBank::start().await;
    let other = tempfile::tempdir().unwrap();
    bank::init(other.path()).unwrap();
    let key = bank.key("alice", "ec");
    let foreign = bank::issue(other.path(), ALICE, &key.spki, 200).unwrap();
    let message = bank
        .log_on(&key, &foreign, "ES256")
        .await
        .refused(403, "untrusted_certificate");
    assert!(message.contains("not issued by this bank"), "{message}");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lapsed_and_unrecorded_certificates_are_refused() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "ec");
    let expired = bank.issue(ALICE, &key, -5);
    let message = bank
        .log_on(&key, &expired, "ES256")
        .await
        .refused(403, "certificate_expired");
    assert!(message.contains("expired on"), "{message}");
    assert!(message.contains("certagent enroll"), "{message}");

    let key = bank.key("bob", "ec");
    let lapsed = bank.issue("CN=bob,O=Bank", &key, -100);
    let message = bank
        .log_on(&key, &lapsed, "ES256")
        .await
        .refused(403, "certificate_lapsed");
    assert!(message.contains("the bank must re-issue"), "{message}");

    // Signed by the bank's CA, but the bank has no record of it.
    let key = bank.key("carol", "ec");
    let cert = bank.issue("CN=carol,O=Bank", &key, 200);
    let issued = bank.file("issued.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&issued).unwrap()).unwrap();
    state["certificates"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["subject"] != "CN=carol,O=Bank");
    std::fs::write(&issued, serde_json::to_vec(&state).unwrap()).unwrap();
    bank.log_on(&key, &cert, "ES256")
        .await
        .refused(403, "unknown_certificate");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_whose_validity_ends_before_it_begins_is_refused_and_the_bank_carries_on() {
    // Any web client can send one; the signature is good (its own key), so
    // the verifier reaches the validity. It used to panic there (`clamp`
    // with min > max) and answer 500.
    let bank = TestBank::start().await;
    let key = bank.key("mallory", "ec");
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let cert = bank.issue_validity(
        "CN=mallory,O=Bank",
        &key,
        now + time::Duration::days(10),
        now - time::Duration::days(10),
    );
    let message = bank
        .log_on(&key, &cert, "ES256")
        .await
        .refused(400, "bad_certificate");
    assert!(message.contains("ends before it begins"), "{message}");
    // The bank still logs a good certificate on.
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    bank.log_on(&key, &cert, "ES256").await.logged_on();
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_expiry_logs_on_as_valid_without_a_notice() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "ec");
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let cert = bank.issue_validity(
        ALICE,
        &key,
        now - time::Duration::days(1),
        time::macros::datetime!(9999-12-31 23:59:59 UTC),
    );
    let v = bank.log_on(&key, &cert, "ES256").await.logged_on();
    assert_eq!(v["state"], "valid");
    assert_eq!(v["renewal_notice"], false);
    assert_eq!(v["not_after"], "9999-12-31T23:59:59Z");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_certificate_is_refused() {
    let bank = TestBank::start().await;
    bank::add_user(bank.path(), "alice", ALICE).unwrap();
    let old_key = bank.key("old", "ec");
    let old = bank.issue(ALICE, &old_key, 20);
    let new_key = bank.key("new", "rsa");
    let new = bank.issue(ALICE, &new_key, 200);
    let message = bank
        .log_on(&old_key, &old, "ES256")
        .await
        .refused(403, "superseded_certificate");
    assert!(message.contains("replaced"), "{message}");
    bank.log_on(&new_key, &new, "PS256").await.logged_on();
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_405_413_415() {
    let bank = TestBank::start().await;
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    let origin = bank.origin();
    let post = |body: Vec<u8>| bank.send("POST", "/logon/verify", &[], body);

    post(b"{not json".to_vec()).await.refused(400, "bad_json");
    let message = post(br#"{"format": "certagent-auth:1"}"#.to_vec())
        .await
        .refused(400, "bad_json");
    assert!(message.contains("missing field"), "{message}");

    let c = bank.challenge().await;
    let mut token = bank.token(&key, &cert, "ES256", &c, &origin, &origin);
    token["format"] = json!("webeid:1");
    bank.verify(&token).await.refused(400, "bad_format");

    let c = bank.challenge().await;
    let mut token = bank.token(&key, &cert, "ES256", &c, &origin, &origin);
    token["certificate"] = json!("%%% not base64 %%%");
    let message = bank.verify(&token).await.refused(400, "bad_base64");
    assert!(message.contains("certificate"), "{message}");

    let c = bank.challenge().await;
    let mut token = bank.token(&key, &cert, "ES256", &c, &origin, &origin);
    token["signature"] = json!("***");
    let message = bank.verify(&token).await.refused(400, "bad_base64");
    assert!(message.contains("signature"), "{message}");

    let c = bank.challenge().await;
    let mut token = bank.token(&key, &cert, "ES256", &c, &origin, &origin);
    token["certificate"] = json!(STANDARD.encode(b"not a certificate"));
    bank.verify(&token).await.refused(400, "bad_certificate");

    // 17 KiB of otherwise valid JSON.
    let mut big = bank.token(&key, &cert, "ES256", &c, &origin, &origin);
    big["padding"] = json!("x".repeat(17 * 1024));
    let message = bank.verify(&big).await.refused(413, "too_large");
    assert!(message.contains("16 KiB"), "{message}");

    let c = bank.challenge().await;
    let token = bank.token(&key, &cert, "ES256", &c, &origin, &origin);
    bank.send(
        "POST",
        "/logon/verify",
        &[("content-type", "text/plain")],
        serde_json::to_vec(&token).unwrap(),
    )
    .await
    .refused(415, "not_json");

    let wrong = bank.send("GET", "/logon/verify", &[], Vec::new()).await;
    wrong.refused(405, "method_not_allowed");
    assert_eq!(wrong.header("allow"), Some("POST"));
    bank.send("GET", "/logon/challenge", &[], Vec::new())
        .await
        .refused(405, "method_not_allowed");
    bank.send("POST", "/logon/session", &[], Vec::new())
        .await
        .refused(405, "method_not_allowed");
    bank.send("GET", "/logon/nothing", &[], Vec::new())
        .await
        .refused(404, "not_found");
    // EST is still there, on the same listener.
    let cacerts = bank
        .send("GET", "/.well-known/est/cacerts", &[], Vec::new())
        .await;
    assert_eq!(cacerts.status, 200);
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_origin_is_the_one_tokens_are_checked_for() {
    let origin = "https://ib.bank.example";
    let bank = TestBank::start_with(ServeOptions {
        origin: Some(format!("{origin}/")),
        ..ServeOptions::default()
    })
    .await;
    assert_eq!(bank.origin(), origin);
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    bank.log_on(&key, &cert, "ES256").await.logged_on();

    // What a browser sends from another site's page.
    let from_evil = bank
        .send("POST", "/logon/challenge", &[("origin", EVIL)], Vec::new())
        .await;
    from_evil.refused(403, "cross_origin");
    let from_us = bank
        .send(
            "POST",
            "/logon/challenge",
            &[("origin", origin)],
            Vec::new(),
        )
        .await;
    assert_eq!(from_us.status, 200, "{}", from_us.text());
    bank.stop().await;

    // The default is https://localhost:PORT.
    let bank = TestBank::start().await;
    let port = bank.running().addr().port();
    assert_eq!(bank.origin(), format!("https://localhost:{port}"));
    bank.stop().await;

    let dir = tempfile::tempdir().unwrap();
    bank::init(dir.path()).unwrap();
    for (origin, agent_url) in [
        (Some("ftp://x".to_string()), bank::DEFAULT_AGENT_URL),
        (None, "http://127.0.0.1:1/'; script-src *"),
    ] {
        let err = bank::serve(
            dir.path(),
            ServeOptions {
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                origin,
                agent_url: agent_url.to_string(),
                ..ServeOptions::default()
            },
        )
        .await
        .err()
        .expect("refused");
        assert!(err.to_string().contains("is not usable"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logon_requests_are_in_the_request_log() {
    let bank = TestBank::start().await;
    bank::add_user(bank.path(), "alice", ALICE).unwrap();
    let key = bank.key("alice", "ec");
    let cert = bank.issue(ALICE, &key, 20);
    bank.log_on(&key, &cert, "ES256").await.logged_on();
    bank::add_user(bank.path(), "xavier", "CN=x,O=Other").unwrap();
    bank.log_on(&key, &bank.issue("CN=x,O=Other", &key, -5), "ES256")
        .await
        .refused(403, "certificate_expired");
    let lines = bank.log_lines();
    let paths: Vec<_> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/logon/challenge",
            "/logon/verify",
            "/logon/challenge",
            "/logon/verify"
        ]
    );
    assert_eq!(lines[1]["method"], "POST");
    assert_eq!(lines[1]["status"], 200);
    assert_eq!(lines[1]["user"], "alice");
    assert!(
        lines[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("logged on as CN=alice,O=Bank"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[3]["status"], 403);
    assert_eq!(
        lines[3]["user"], "xavier",
        "the holder of a refused certificate"
    );
    assert_eq!(lines[2]["user"], Value::Null);
    assert!(
        lines[3]["reason"]
            .as_str()
            .unwrap()
            .starts_with("certificate_expired: the certificate expired on"),
        "{}",
        lines[3]
    );
    assert_eq!(lines[3]["tls"], "TLSv1_3");
    bank.stop().await;
}

/// The `id="..."` values in an HTML page.
fn element_ids(html: &str) -> Vec<&str> {
    html.split("id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect()
}

/// Every `src`/`href` of a page: all on the bank itself.
fn assert_no_external_resources(html: &str) {
    for attr in ["src=\"", "href=\""] {
        for link in html.split(attr).skip(1) {
            let link = link.split('"').next().unwrap();
            assert!(link.starts_with('/') && !link.starts_with("//"), "{link}");
        }
    }
    assert!(!html.contains("<script>"), "no inline scripts");
    assert!(!html.contains("style=\""), "no inline styles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_have_a_strict_csp_and_the_elements_the_story_needs() {
    let bank = TestBank::start().await;
    for (path, ids) in [
        ("/", &["logon", "result", "renewal"][..]),
        ("/notices", &["notice", "renew", "progress"][..]),
    ] {
        let page = bank.send("GET", path, &[], Vec::new()).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text());
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let csp = page.header("content-security-policy").expect("CSP");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self' http://127.0.0.1:31270",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        let html = page.text();
        let found = element_ids(&html);
        for id in ids {
            assert!(found.contains(id), "{path} has id={id}: {found:?}");
        }
        assert!(html.contains(r#"<script src="/static/bank.js" defer></script>"#));
        assert_no_external_resources(&html);
    }
    let logon = bank.send("GET", "/", &[], Vec::new()).await.text();
    assert!(logon.contains("Log on with your token"));
    let notices = bank.send("GET", "/notices", &[], Vec::new()).await.text();
    assert!(notices.contains("Renew now"));

    let script = bank.send("GET", "/static/bank.js", &[], Vec::new()).await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let js = script.text();
    for needle in [
        "'/logon/challenge'",
        "'/v1/logon'",
        "'/logon/verify'",
        "'/v1/status'",
        "'/v1/renewals'",
        "Logged on as ",
        "Error: ",
        "${c.days_left} days, on ${when(c.not_after)}",
        "有効期限を迎えます",
        "Renewed: new certificate valid until ",
        "No notices",
        "500",
    ] {
        assert!(js.contains(needle), "{needle} in bank.js");
    }
    let css = bank.send("GET", "/static/bank.css", &[], Vec::new()).await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let post = bank.send("POST", "/", &[], Vec::new()).await;
    assert_eq!(post.status, 405);
    let missing = bank.send("GET", "/favicon.ico", &[], Vec::new()).await;
    assert_eq!(missing.status, 404);
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_url_is_injected_into_the_pages_and_their_policy() {
    let bank = TestBank::start_with(ServeOptions {
        agent_url: "http://127.0.0.1:4321/".to_string(),
        ..ServeOptions::default()
    })
    .await;
    for path in ["/", "/notices"] {
        let page = bank.send("GET", path, &[], Vec::new()).await;
        assert!(
            page.text()
                .contains(r#"<meta name="certagent-agent" content="http://127.0.0.1:4321">"#),
            "{path}"
        );
        assert!(!page.text().contains("31270"));
        let csp = page.header("content-security-policy").unwrap();
        assert!(
            csp.contains("connect-src 'self' http://127.0.0.1:4321;"),
            "{csp}"
        );
    }
    bank.stop().await;
}

#[test]
fn cli_serve_takes_origin_and_agent_url() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_certagent-bank"))
        .args(["init", "--dir", d])
        .output()
        .unwrap();
    assert!(init.status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_certagent-bank"))
        .args([
            "serve",
            "--dir",
            d,
            "--listen",
            "127.0.0.1:0",
            "--origin",
            "https://ib.bank.example",
            "--agent-url",
            "http://127.0.0.1:4000",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (first, second) = {
        use std::io::BufRead;
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (mut a, mut b) = (String::new(), String::new());
        out.read_line(&mut a).unwrap();
        out.read_line(&mut b).unwrap();
        (a, b)
    };
    let addr: SocketAddr = first
        .trim()
        .strip_prefix("listening on https://")
        .and_then(|s| s.strip_suffix("/.well-known/est/"))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    assert_eq!(second.trim(), "logon page at https://ib.bank.example/");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let page = rt.block_on(send_to(
        addr,
        &tmp.path().join("tls-roots.pem"),
        "GET",
        "/",
        &[],
        Vec::new(),
    ));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(page.status, 200);
    assert!(page.text().contains(r#"content="http://127.0.0.1:4000""#));
}
