//! The reference bank end to end: real TLS on loopback, software client
//! keys and requests made by `openssl`, the bank embedded in-process, and
//! strongSwan's `pki --est` as an EST client this project did not write.
//!
//! Each test has its own bank directory and port. Run with
//! `cargo nextest run -p certagent-bank --test bank`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

use certagent::cert::Cert;
use certagent::policy::Policy;
use certagent_bank::{self as bank, ServeOptions};
use common::https::{self, Key, Reply, Target, TestBank};
use common::{openssl, require_with as require, run_bytes as run};

const PKI_INSTALL: &str = "install: apt-get install strongswan-pki libstrongswan-extra-plugins";
const UA: &str = "certagent-bank-tests/1";

// ---------------------------------------------------------------- fixtures

impl TestBank {
    async fn start() -> TestBank {
        TestBank::start_with(false, Policy::default()).await
    }

    async fn start_with(first_answer_202: bool, policy: Policy) -> TestBank {
        TestBank::serve(ServeOptions {
            first_answer_202,
            policy,
            ..ServeOptions::default()
        })
        .await
    }

    fn ca_der(&self) -> Vec<u8> {
        CertificateDer::from_pem_file(self.file("ca.pem"))
            .expect("ca.pem")
            .as_ref()
            .to_vec()
    }

    /// A PKCS#10 request (DER) by `openssl req -new`; `subj` in openssl's
    /// "/O=Bank/CN=alice" form.
    fn csr(&self, key: &Key, subj: &str) -> Vec<u8> {
        self.csr_with(key, subj, &[])
    }

    fn csr_with(&self, key: &Key, subj: &str, extra: &[&str]) -> Vec<u8> {
        run(openssl()
            .args(["req", "-new", "-subj", subj, "-outform", "DER", "-key"])
            .arg(&key.pem)
            .args(extra))
    }

    /// A certificate from `bank::issue`, written as PEM; returns its path.
    fn issue(&self, subject: &str, key: &Key, days_left: i64) -> PathBuf {
        let der = bank::issue(self.path(), subject, &key.spki, days_left).expect("issue");
        let path = self.file(&format!(
            "issued-{}.pem",
            hex::encode(&der[der.len() - 8..])
        ));
        std::fs::write(&path, bank::ca::pem("CERTIFICATE", &der).unwrap()).unwrap();
        path
    }

    async fn enroll(&self, user: &str, otp: &str, csr: &[u8]) -> Reply {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{otp}"));
        self.send(
            "POST",
            "/.well-known/est/simpleenroll",
            &[("authorization", &format!("Basic {auth}"))],
            certagent::pkcs7::encode_base64_lines(csr).into_bytes(),
            None,
        )
        .await
    }

    async fn reenroll(&self, cert: &Path, key: &Key, csr: &[u8]) -> Reply {
        self.send(
            "POST",
            "/.well-known/est/simplereenroll",
            &[],
            certagent::pkcs7::encode_base64_lines(csr).into_bytes(),
            Some((cert, &key.pem)),
        )
        .await
    }

    /// One request on a fresh TLS connection, with a User-Agent unless
    /// `headers` set one (an empty value means: send none).
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        identity: Option<(&Path, &Path)>,
    ) -> Reply {
        let mut all: Vec<(&str, &str)> = Vec::new();
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
        {
            all.push(("user-agent", UA));
        }
        if method == "POST" {
            all.push(("content-type", "application/pkcs10"));
        }
        all.extend_from_slice(headers);
        let roots = self.file("tls-roots.pem");
        let target = Target {
            addr: self.addr(),
            roots: &roots,
            host: format!("127.0.0.1:{}", self.addr().port()),
            identity,
        };
        https::send(&target, method, path, &all, body).await
    }

    fn users(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.file("users.json")).unwrap()).unwrap()
    }
}

/// What the EST tests check on an answer.
trait EstReply {
    fn certificate(&self) -> Cert;
    fn refused(&self, status: u16, reason_part: &str);
}

impl EstReply for Reply {
    /// The one certificate of a successful enroll, checked for its framing.
    fn certificate(&self) -> Cert {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/pkcs7-mime; smime-type=certs-only")
        );
        assert_eq!(self.header("content-transfer-encoding"), Some("base64"));
        let certs = certagent::pkcs7::decode_response(&self.body).expect("certs-only PKCS#7");
        assert_eq!(certs.len(), 1, "just the new certificate");
        Cert::from_der(&certs[0]).expect("certificate")
    }

    fn refused(&self, status: u16, reason_part: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert!(
            self.text().contains(reason_part),
            "expected {reason_part:?} in {:?}",
            self.text()
        );
        assert_eq!(
            self.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(self.text().trim_end().lines().count(), 1, "one line");
    }
}

/// Write a certificate as PEM next to the bank's files.
fn save_pem(bank: &TestBank, name: &str, cert: &Cert) -> PathBuf {
    let path = bank.file(name);
    std::fs::write(&path, bank::ca::pem("CERTIFICATE", &cert.der).unwrap()).unwrap();
    path
}

/// openssl agrees the certificate chains to the issuing CA for client auth.
fn openssl_verifies(bank: &TestBank, cert: &Path) {
    let out = run(openssl()
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(bank.file("ca.pem"))
        .arg(cert));
    assert!(String::from_utf8_lossy(&out).contains(": OK"));
}

const ALICE: &str = "CN=alice,O=Bank";
const ALICE_SUBJ: &str = "/O=Bank/CN=alice";

// ------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cacerts_decodes_to_the_issuing_ca() {
    let bank = TestBank::start().await;
    let reply = bank
        .send("GET", "/.well-known/est/cacerts", &[], Vec::new(), None)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/pkcs7-mime"));
    assert_eq!(reply.header("content-transfer-encoding"), Some("base64"));
    assert!(reply.text().contains("\r\n"), "RFC 7030 style line breaks");
    let certs = certagent::pkcs7::decode_response(&reply.body).unwrap();
    assert_eq!(certs, vec![bank.ca_der()]);
    let ca = Cert::from_der(&certs[0]).unwrap();
    assert!(ca.is_ca);

    // A client that names no User-Agent (strongSwan) gets one line.
    let plain = bank
        .send(
            "GET",
            "/.well-known/est/cacerts",
            &[("user-agent", "")],
            Vec::new(),
            None,
        )
        .await;
    assert!(!plain.text().contains('\n'));
    assert_eq!(
        certagent::pkcs7::decode_response(&plain.body).unwrap(),
        certs
    );
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reenroll_at_20_days_left_issues_a_new_certificate() {
    let bank = TestBank::start().await;
    bank::add_user(bank.path(), "alice", ALICE).unwrap();
    let old_key = bank.key("old", "ec");
    let old = bank.issue(ALICE, &old_key, 20);
    let new_key = bank.key("new", "rsa");
    let san = ["-addext", "subjectAltName=email:alice@bank.example"];
    let reply = bank
        .reenroll(&old, &old_key, &bank.csr_with(&new_key, ALICE_SUBJ, &san))
        .await;
    let cert = reply.certificate();
    assert_eq!(cert.subject, ALICE);
    assert!(
        cert.san.is_empty(),
        "the current certificate has no SAN, whatever the request asks: {:?}",
        cert.san
    );
    assert_eq!(cert.spki_der, new_key.spki);
    assert!(cert.client_auth && !cert.is_ca);
    let now = OffsetDateTime::now_utc();
    let days = (cert.not_after - now).whole_days();
    assert!((364..=365).contains(&days), "{days} days");
    assert!(cert.not_before < now);
    let old_cert = Cert::from_der(&CertificateDer::from_pem_file(&old).unwrap()).unwrap();
    assert_ne!(cert.serial, old_cert.serial);
    let path = save_pem(&bank, "renewed.pem", &cert);
    openssl_verifies(&bank, &path);
    assert_eq!(
        bank.users()["users"]["alice"]["current_serial"],
        cert.serial.as_str()
    );
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reenroll_takes_the_san_of_the_current_certificate_not_the_request() {
    // A window as long as a certificate's life, so a fresh one renews.
    let policy = Policy {
        renew_window_days: 400,
        ..Policy::default()
    };
    let bank = TestBank::start_with(false, policy).await;
    let otp = bank::add_user(bank.path(), "alice", ALICE).unwrap();
    let key = bank.key("first", "ec");
    let own = ["-addext", "subjectAltName=email:alice@bank.example"];
    let first = bank
        .enroll("alice", &otp, &bank.csr_with(&key, ALICE_SUBJ, &own))
        .await
        .certificate();
    assert_eq!(first.san, ["email:alice@bank.example"]);
    let first_path = save_pem(&bank, "first.pem", &first);

    let more = [
        "-addext",
        "subjectAltName=email:alice@bank.example,DNS:evil.example,email:mallory@evil.example",
    ];
    let second = bank.key("second", "ec");
    let renewed = bank
        .reenroll(
            &first_path,
            &key,
            &bank.csr_with(&second, ALICE_SUBJ, &more),
        )
        .await
        .certificate();
    println!("asked for {more:?}, got SAN {:?}", renewed.san);
    assert_eq!(renewed.san, first.san);
    // Byte for byte: the extension is the current certificate's.
    assert_eq!(san_extension(&renewed.der), san_extension(&first.der));

    // Another subjectAltName instead of the current one: the current one.
    let renewed_path = save_pem(&bank, "renewed.pem", &renewed);
    let other = ["-addext", "subjectAltName=email:mallory@evil.example"];
    let third = bank
        .reenroll(
            &renewed_path,
            &second,
            &bank.csr_with(&bank.key("third", "ec"), ALICE_SUBJ, &other),
        )
        .await
        .certificate();
    println!("asked for {other:?}, got SAN {:?}", third.san);
    assert_eq!(third.san, ["email:alice@bank.example"]);

    // A certificate without one renews without one.
    let bob_key = bank.key("bob", "ec");
    let bob = bank.issue("CN=bob,O=Bank", &bob_key, 20);
    let evil = ["-addext", "subjectAltName=DNS:evil.example"];
    let renewed = bank
        .reenroll(
            &bob,
            &bob_key,
            &bank.csr_with(&bank.key("bob2", "ec"), "/O=Bank/CN=bob", &evil),
        )
        .await
        .certificate();
    println!(
        "asked for {evil:?} without a SAN, got SAN {:?}",
        renewed.san
    );
    assert!(renewed.san.is_empty(), "{:?}", renewed.san);
    assert_eq!(san_extension(&renewed.der), None);
    bank.stop().await;
}

/// The subjectAltName extension of a certificate, DER as it stands.
fn san_extension(cert_der: &[u8]) -> Option<(bool, Vec<u8>)> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(cert_der).unwrap();
    cert.tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)
        .map(|e| (e.critical, e.extn_value.as_bytes().to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_gets_the_remembered_answer_only_with_the_same_credentials() {
    let bank = TestBank::start().await;
    let otp = bank::add_user(bank.path(), "bob", "CN=bob,O=Bank").unwrap();
    let csr = bank.csr(&bank.key("bob", "ec"), "/O=Bank/CN=bob");
    let first = bank.enroll("bob", &otp, &csr).await.certificate();
    // The client lost the answer and sends the identical request again.
    let again = bank.enroll("bob", &otp, &csr).await.certificate();
    assert_eq!(again.serial, first.serial);
    // Someone who has the request (a CSR is no secret) but not the password.
    for (user, password) in [("bob", "WRONGWRONG22"), ("mallory", &otp)] {
        let replay = bank.enroll(user, password, &csr).await;
        println!(
            "simpleenroll replayed as {user} without bob's credentials: {} {}",
            replay.status,
            replay.text().trim()
        );
        replay.refused(403, "wrong one-time password");
    }

    // Renewal: the identical body under another client certificate.
    let alice_key = bank.key("alice", "ec");
    let alice = bank.issue(ALICE, &alice_key, 20);
    let csr = bank.csr(&bank.key("alice2", "ec"), ALICE_SUBJ);
    let renewed = bank.reenroll(&alice, &alice_key, &csr).await.certificate();
    let again = bank.reenroll(&alice, &alice_key, &csr).await.certificate();
    assert_eq!(again.serial, renewed.serial);
    let mallory_key = bank.key("mallory", "ec");
    let mallory = bank.issue("CN=mallory,O=Bank", &mallory_key, 20);
    let replay = bank.reenroll(&mallory, &mallory_key, &csr).await;
    println!(
        "simplereenroll replayed with another certificate: {} {}",
        replay.status,
        replay.text().trim()
    );
    replay.refused(403, "is not the certificate's subject");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reenroll_is_refused_at_200_days_left() {
    let bank = TestBank::start().await;
    let key = bank.key("k", "ec");
    let cert = bank.issue(ALICE, &key, 200);
    let reply = bank
        .reenroll(&cert, &key, &bank.csr(&bank.key("n", "ec"), ALICE_SUBJ))
        .await;
    reply.refused(403, "renewal opens on ");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reenroll_with_the_same_key_is_refused() {
    let bank = TestBank::start().await;
    let key = bank.key("k", "ec");
    let cert = bank.issue(ALICE, &key, 20);
    let reply = bank
        .reenroll(&cert, &key, &bank.csr(&key, ALICE_SUBJ))
        .await;
    reply.refused(403, "certified before");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reenroll_with_another_subject_is_refused() {
    let bank = TestBank::start().await;
    let key = bank.key("k", "ec");
    let cert = bank.issue(ALICE, &key, 20);
    let csr = bank.csr(&bank.key("n", "ec"), "/O=Bank/CN=mallory");
    bank.reenroll(&cert, &key, &csr)
        .await
        .refused(403, "is not the certificate's subject");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reenroll_without_a_client_certificate_is_refused() {
    let bank = TestBank::start().await;
    let csr = bank.csr(&bank.key("n", "ec"), ALICE_SUBJ);
    bank.send(
        "POST",
        "/.well-known/est/simplereenroll",
        &[],
        certagent::pkcs7::encode_base64_lines(&csr).into_bytes(),
        None,
    )
    .await
    .refused(403, "client certificate");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_certificate_cannot_renew_again_after_a_renewal() {
    let bank = TestBank::start().await;
    // A certificate of no registered user follows the same rule.
    let key = bank.key("k", "ec");
    let old = bank.issue(ALICE, &key, 20);
    let first = bank
        .reenroll(&old, &key, &bank.csr(&bank.key("n1", "ec"), ALICE_SUBJ))
        .await;
    first.certificate();
    let again = bank
        .reenroll(&old, &key, &bank.csr(&bank.key("n2", "ec"), ALICE_SUBJ))
        .await;
    again.refused(403, "already replaced");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simpleenroll_with_the_otp_works_for_a_new_user_once() {
    let bank = TestBank::start().await;
    let otp = bank::add_user(bank.path(), "bob", "CN=bob,O=Bank").unwrap();
    assert_eq!(otp.len(), 12);
    let key = bank.key("bob", "rsa");
    let cert = bank
        .enroll("bob", &otp, &bank.csr(&key, "/O=Bank/CN=bob"))
        .await
        .certificate();
    assert_eq!(cert.subject, "CN=bob,O=Bank");
    assert_eq!(cert.spki_der, key.spki);
    openssl_verifies(&bank, &save_pem(&bank, "bob.pem", &cert));
    let user = &bank.users()["users"]["bob"];
    assert_eq!(user["otp_used"], true);
    assert_eq!(user["current_serial"], cert.serial.as_str());

    // The same password again, with a new key: refused.
    let again = bank
        .enroll(
            "bob",
            &otp,
            &bank.csr(&bank.key("bob2", "ec"), "/O=Bank/CN=bob"),
        )
        .await;
    again.refused(403, "already used");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simpleenroll_refuses_wrong_or_missing_credentials() {
    let bank = TestBank::start().await;
    let otp = bank::add_user(bank.path(), "bob", "CN=bob,O=Bank").unwrap();
    let csr = bank.csr(&bank.key("bob", "ec"), "/O=Bank/CN=bob");
    bank.enroll("bob", "WRONGWRONG22", &csr)
        .await
        .refused(403, "wrong one-time password");
    bank.enroll("nobody", &otp, &csr)
        .await
        .refused(403, "wrong one-time password");
    let missing = bank
        .send(
            "POST",
            "/.well-known/est/simpleenroll",
            &[],
            certagent::pkcs7::encode_base64_lines(&csr).into_bytes(),
            None,
        )
        .await;
    missing.refused(401, "authentication required");
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Basic realm=\"certagent-bank\"")
    );
    // The password still works: failures did not consume it.
    bank.enroll("bob", &otp, &csr).await.certificate();
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simpleenroll_with_a_subject_other_than_the_registered_one_is_refused() {
    let bank = TestBank::start().await;
    let otp = bank::add_user(bank.path(), "bob", "CN=bob,O=Bank").unwrap();
    let csr = bank.csr(&bank.key("bob", "ec"), "/O=Bank/CN=alice");
    bank.enroll("bob", &otp, &csr)
        .await
        .refused(403, "is not the registered subject");
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simpleenroll_is_refused_while_the_certificate_is_valid() {
    let bank = TestBank::start().await;
    let otp = bank::add_user(bank.path(), "alice", ALICE).unwrap();
    for days_left in [200, 20] {
        bank.issue(ALICE, &bank.key(&format!("k{days_left}"), "ec"), days_left);
        let csr = bank.csr(&bank.key(&format!("n{days_left}"), "ec"), ALICE_SUBJ);
        bank.enroll("alice", &otp, &csr)
            .await
            .refused(403, "still valid: renew with simplereenroll");
    }
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simpleenroll_works_after_expiry_within_the_grace_period() {
    let bank = TestBank::start().await;
    let otp = bank::add_user(bank.path(), "alice", ALICE).unwrap();
    bank.issue(ALICE, &bank.key("old", "ec"), -10);
    let key = bank.key("new", "ec");
    let cert = bank
        .enroll("alice", &otp, &bank.csr(&key, ALICE_SUBJ))
        .await
        .certificate();
    assert_eq!(cert.spki_der, key.spki);
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simpleenroll_after_the_grace_period_needs_the_banks_reissue() {
    let bank = TestBank::start().await;
    let otp = bank::add_user(bank.path(), "alice", ALICE).unwrap();
    bank.issue(ALICE, &bank.key("old", "ec"), -100);
    let csr = bank.csr(&bank.key("new", "ec"), ALICE_SUBJ);
    bank.enroll("alice", &otp, &csr)
        .await
        .refused(403, "grace period over: the bank must re-issue");

    let new_otp = bank::reissue(bank.path(), "alice").unwrap();
    assert_ne!(new_otp, otp);
    bank.enroll("alice", &otp, &csr)
        .await
        .refused(403, "wrong one-time password");
    let cert = bank.enroll("alice", &new_otp, &csr).await.certificate();
    assert_eq!(cert.subject, ALICE);
    // The re-issue allowed one enrolment, not more.
    let user = &bank.users()["users"]["alice"];
    assert_eq!(user["reissued"], false);
    assert_eq!(user["otp_used"], true);
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_answer_202_then_200_for_the_identical_request() {
    let bank = TestBank::start_with(true, Policy::default()).await;
    let otp = bank::add_user(bank.path(), "bob", "CN=bob,O=Bank").unwrap();
    let csr = bank.csr(&bank.key("bob", "ec"), "/O=Bank/CN=bob");
    let first = bank.enroll("bob", &otp, &csr).await;
    assert_eq!(first.status, 202, "{}", first.text());
    assert_eq!(first.header("retry-after"), Some("1"));
    assert!(first.body.is_empty());
    assert_eq!(bank.users()["users"]["bob"]["otp_used"], false);
    let cert = bank.enroll("bob", &otp, &csr).await.certificate();
    assert_eq!(cert.subject, "CN=bob,O=Bank");

    // Renewal goes through approval too.
    let key = bank.key("alice", "ec");
    let old = bank.issue(ALICE, &key, 20);
    let csr = bank.csr(&bank.key("alice2", "ec"), ALICE_SUBJ);
    assert_eq!(bank.reenroll(&old, &key, &csr).await.status, 202);
    bank.reenroll(&old, &key, &csr).await.certificate();
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_404_405_413() {
    let bank = TestBank::start().await;
    let otp = bank::add_user(bank.path(), "bob", "CN=bob,O=Bank").unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("bob:{otp}"));
    let basic = format!("Basic {auth}");
    let post = |body: Vec<u8>| {
        let basic = basic.clone();
        let bank = &bank;
        async move {
            bank.send(
                "POST",
                "/.well-known/est/simpleenroll",
                &[("authorization", &basic)],
                body,
                None,
            )
            .await
        }
    };
    post(b"%%% not base64 %%%".to_vec())
        .await
        .refused(400, "not base64");
    post(b"aGVsbG8gd29ybGQ=".to_vec())
        .await
        .refused(400, "not a PKCS#10");
    post(Vec::new()).await.refused(400, "empty");
    // A request whose signature does not verify.
    let mut csr = bank.csr(&bank.key("bob", "ec"), "/O=Bank/CN=bob");
    let last = csr.len() - 1;
    csr[last] ^= 0x01;
    post(certagent::pkcs7::encode_base64_lines(&csr).into_bytes())
        .await
        .refused(400, "signature does not verify");
    post(vec![b'A'; 70 * 1024])
        .await
        .refused(413, "larger than 64 KiB");

    let key = bank.key("k", "ec");
    let cert = bank.issue("CN=carol,O=Bank", &key, 20);
    bank.send(
        "POST",
        "/.well-known/est/simplereenroll",
        &[],
        b"garbage".to_vec(),
        Some((&cert, &key.pem)),
    )
    .await
    .refused(400, "");

    bank.send("GET", "/.well-known/est/nothing", &[], Vec::new(), None)
        .await
        .refused(404, "no such EST operation");
    bank.send("GET", "/nothing", &[], Vec::new(), None)
        .await
        .refused(404, "no such page");
    let wrong = bank
        .send(
            "GET",
            "/.well-known/est/simpleenroll",
            &[],
            Vec::new(),
            None,
        )
        .await;
    wrong.refused(405, "use POST");
    assert_eq!(wrong.header("allow"), Some("POST"));
    bank.send("POST", "/.well-known/est/cacerts", &[], Vec::new(), None)
        .await
        .refused(405, "use GET");
    // None of this consumed the password.
    assert_eq!(bank.users()["users"]["bob"]["otp_used"], false);
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_log_has_one_json_line_per_request() {
    let bank = TestBank::start().await;
    let otp = bank::add_user(bank.path(), "bob", "CN=bob,O=Bank").unwrap();
    bank.send("GET", "/.well-known/est/cacerts", &[], Vec::new(), None)
        .await;
    bank.enroll("bob", "WRONGWRONG22", b"x").await;
    let key = bank.key("k", "ec");
    let cert = bank.issue(ALICE, &key, 20);
    bank.reenroll(&cert, &key, &bank.csr(&bank.key("n", "ec"), ALICE_SUBJ))
        .await
        .certificate();
    let _ = otp;
    let lines = bank.log_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        let time = line["time"].as_str().unwrap();
        OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).unwrap();
        for field in ["method", "path", "client_cert", "user", "status", "reason"] {
            assert!(line.get(field).is_some(), "{field} in {line}");
        }
    }
    assert_eq!(lines[0]["method"], "GET");
    assert_eq!(lines[0]["path"], "/.well-known/est/cacerts");
    assert_eq!(lines[0]["client_cert"], serde_json::Value::Null);
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[1]["user"], "bob");
    assert_eq!(lines[1]["status"], 400);
    assert_eq!(lines[2]["client_cert"], ALICE);
    assert_eq!(lines[2]["status"], 200);
    assert!(
        lines[2]["reason"]
            .as_str()
            .unwrap()
            .starts_with("issued certificate")
    );
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_then_add_user_makes_the_certificate_the_users() {
    let bank = TestBank::start().await;
    let key = bank.key("k", "ec");
    let der = bank::issue(bank.path(), ALICE, &key.spki, 20).unwrap();
    let cert = Cert::from_der(&der).unwrap();
    bank::add_user(bank.path(), "alice", ALICE).unwrap();
    assert_eq!(
        bank.users()["users"]["alice"]["current_serial"],
        cert.serial.as_str()
    );
    // Operator errors are errors, not panics.
    assert!(bank::add_user(bank.path(), "alice", "CN=x").is_err());
    assert!(bank::add_user(bank.path(), "alice2", ALICE).is_err());
    assert!(bank::add_user(bank.path(), "a:b", "CN=y").is_err());
    assert!(bank::reissue(bank.path(), "nobody").is_err());
    assert!(bank::issue(bank.path(), ALICE, b"not a key", 20).is_err());
    assert!(
        bank::init(bank.path()).is_err(),
        "init refuses to overwrite"
    );
    bank.stop().await;
}

// --------------------------------------------------------------- strongSwan

/// `pki` must be there: this test fails, never skips, without it.
fn require_pki() {
    require("pki", PKI_INSTALL);
    let out = Command::new("pki").args(["--est", "--help"]).output();
    let text = out
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    assert!(
        text.contains("--userpass"),
        "pki --est is not usable; {PKI_INSTALL}"
    );
}

/// Run `pki` (bounded by `timeout`), returning stdout; fails with its log.
fn pki(args: &[&str]) -> Vec<u8> {
    let out = Command::new("timeout")
        .arg("60")
        .arg("pki")
        .args(args)
        .output()
        .expect("pki runs");
    assert!(
        out.status.success(),
        "pki {args:?} failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strongswan_pki_enrolls_and_reenrolls() {
    require_pki();
    // Renewal opens 400 days before expiry, so the fresh 365-day certificate
    // can renew at once; and every request waits for "approval" (202) first,
    // which pki must poll through.
    let policy = Policy {
        renew_window_days: 400,
        ..Policy::default()
    };
    let bank = TestBank::start_with(true, policy).await;
    let otp = bank::add_user(bank.path(), "sw", "CN=strongswan user,O=Bank").unwrap();
    let url = format!("https://127.0.0.1:{}", bank.addr().port());
    let p = |name: &str| bank.file(name).to_string_lossy().into_owned();
    let dn = "O=Bank, CN=strongswan user";

    let (key1, req1, cert1) = (p("sw-key1.der"), p("sw-req1.der"), p("sw-cert1.der"));
    let (key2, req2, cert2) = (p("sw-key2.der"), p("sw-req2.der"), p("sw-cert2.der"));
    // pki trusts the bank's TLS server by its own certificate: strongSwan
    // 5.9 cannot load the TLS CA, whose critical NameConstraints has an
    // iPAddress subtree ("found unsupported critical X.509 extension").
    let (tls_roots, ca) = (p("tls-server.pem"), p("ca.pem"));
    let userpass = format!("sw:{otp}");
    let enrolled = tokio::task::spawn_blocking(move || {
        std::fs::write(&key1, pki(&["--gen", "--type", "ecdsa", "--size", "256"])).unwrap();
        std::fs::write(&req1, pki(&["--req", "--in", &key1, "--dn", dn])).unwrap();
        let cert = pki(&[
            "--est",
            "--url",
            &url,
            "--in",
            &req1,
            "--cacert",
            &tls_roots,
            "--cacert",
            &ca,
            "--userpass",
            &userpass,
            "--interval",
            "1",
            "--maxpolltime",
            "20",
        ]);
        std::fs::write(&cert1, &cert).unwrap();

        std::fs::write(&key2, pki(&["--gen", "--type", "rsa", "--size", "2048"])).unwrap();
        std::fs::write(&req2, pki(&["--req", "--in", &key2, "--dn", dn])).unwrap();
        let renewed = pki(&[
            "--est",
            "--url",
            &url,
            "--in",
            &req2,
            "--cacert",
            &tls_roots,
            "--cacert",
            &ca,
            "--cert",
            &cert1,
            "--key",
            &key1,
            "--interval",
            "1",
            "--maxpolltime",
            "20",
        ]);
        std::fs::write(&cert2, &renewed).unwrap();
        (cert, renewed)
    })
    .await
    .expect("pki runs");

    let first = Cert::from_der(&enrolled.0).expect("pki wrote the enrolled certificate (DER)");
    let second = Cert::from_der(&enrolled.1).expect("pki wrote the renewed certificate (DER)");
    assert_eq!(first.subject, "CN=strongswan user,O=Bank");
    assert_eq!(second.subject, first.subject);
    assert_ne!(second.serial, first.serial);
    assert_ne!(second.spki_der, first.spki_der);
    let users = bank.users();
    assert_eq!(
        users["users"]["sw"]["current_serial"],
        second.serial.as_str()
    );
    let statuses: Vec<u64> = bank
        .log_lines()
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 200, 202, 200]);
    bank.stop().await;
}

// ---------------------------------------------------------------------- CLI

/// The tester CA (`tls-roots.pem`, which testers trust in a browser) may
/// vouch for the bank's own loopback names only, and its key is not kept.
#[test]
fn init_makes_a_name_constrained_tls_ca_and_keeps_no_key_for_it() {
    use der::Decode;
    use x509_cert::ext::pkix::constraints::name::NameConstraints;
    use x509_cert::ext::pkix::name::GeneralName;

    let tmp = tempfile::tempdir().unwrap();
    let out = bank_cli(&["init", "--dir", tmp.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let files: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    println!("files after init: {files:?}");
    assert!(
        !tmp.path().join("tls-ca-key.pem").exists(),
        "the TLS CA's private key is on disk: {files:?}"
    );
    assert!(files.iter().all(|f| !f.starts_with("tls-ca")), "{files:?}");

    let der = CertificateDer::from_pem_file(tmp.path().join("tls-roots.pem")).unwrap();
    let cert = x509_cert::Certificate::from_der(der.as_ref()).unwrap();
    let ext = cert
        .tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_NAME_CONSTRAINTS)
        .cloned()
        .expect("the TLS CA has a NameConstraints extension");
    assert!(ext.critical, "NameConstraints must be critical");
    let nc = NameConstraints::from_der(ext.extn_value.as_bytes()).unwrap();
    assert_eq!(nc.excluded_subtrees, None);
    let permitted: Vec<String> = nc
        .permitted_subtrees
        .expect("permitted subtrees")
        .iter()
        .map(|t| {
            assert_eq!((t.minimum, t.maximum), (0, None));
            match &t.base {
                GeneralName::DnsName(n) => format!("DNS:{}", n.as_str()),
                GeneralName::IpAddress(ip) => format!("IP:{}", hex::encode(ip.as_bytes())),
                other => panic!("unexpected subtree {other:?}"),
            }
        })
        .collect();
    println!("permitted: {permitted:?}");
    assert_eq!(permitted, ["DNS:localhost", "IP:7f000001ffffffff"]);

    // openssl reads it the same way, and the server certificate is within it.
    let text = String::from_utf8(run(openssl()
        .args(["x509", "-noout", "-text", "-in"])
        .arg(tmp.path().join("tls-roots.pem"))))
    .unwrap();
    let shown: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("Name Constraints"))
        .take(4)
        .map(str::trim)
        .collect();
    println!("openssl: {shown:?}");
    assert_eq!(shown.first(), Some(&"X509v3 Name Constraints: critical"));
    let verified = run(openssl()
        .args(["verify", "-CAfile"])
        .arg(tmp.path().join("tls-roots.pem"))
        .arg(tmp.path().join("tls-server.pem")));
    assert!(String::from_utf8_lossy(&verified).contains(": OK"));
}

fn bank_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_certagent-bank"))
        .args(args)
        .output()
        .expect("certagent-bank runs")
}

#[test]
fn cli_init_add_user_issue_reissue_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bank");
    let d = dir.to_str().unwrap();
    let ok = |args: &[&str]| {
        let out = bank_cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["init", "--dir", d]);
    for f in ["ca.pem", "tls-roots.pem"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("ca-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let otp = ok(&[
        "add-user",
        "--dir",
        d,
        "--user",
        "alice",
        "--subject",
        ALICE,
    ]);
    assert_eq!(otp.trim().len(), 12);
    let otp2 = ok(&["reissue", "--dir", d, "--user", "alice"]);
    assert_ne!(otp.trim(), otp2.trim());

    let key = tmp.path().join("k.pem");
    run(openssl()
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key));
    let pubkey = tmp.path().join("k.der");
    run(openssl()
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&pubkey));
    let pem = ok(&[
        "issue",
        "--dir",
        d,
        "--subject",
        ALICE,
        "--pubkey",
        pubkey.to_str().unwrap(),
        "--days-left",
        "-5",
    ]);
    let cert = Cert::from_der(
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    let left = certagent::policy::days_left(cert.not_after, OffsetDateTime::now_utc());
    assert_eq!(left, -5, "expired 5 days (and a moment) ago");
    let out = tmp.path().join("c.pem");
    let printed = ok(&[
        "issue",
        "--dir",
        d,
        "--subject",
        ALICE,
        "--pubkey",
        pubkey.to_str().unwrap(),
        "--days-left",
        "30",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(printed.is_empty());
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    for args in [
        vec!["init"],
        vec!["frobnicate"],
        vec!["init", "--dir", d],
        vec!["reissue", "--dir", d, "--user", "nobody"],
        vec![
            "add-user",
            "--dir",
            d,
            "--user",
            "alice",
            "--subject",
            ALICE,
        ],
        vec![
            "add-user",
            "--dir",
            d,
            "--user",
            "x",
            "--subject",
            "not a name",
        ],
        vec![
            "issue",
            "--dir",
            d,
            "--subject",
            ALICE,
            "--pubkey",
            "/nonexistent",
            "--days-left",
            "1",
        ],
        vec![
            "add-user",
            "--dir",
            "/nonexistent/bank",
            "--user",
            "x",
            "--subject",
            "CN=x",
        ],
    ] {
        let out = bank_cli(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
        assert!(err.starts_with("certagent-bank: "), "{err}");
    }
}

#[test]
fn cli_serve_prints_its_address_and_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    assert!(bank_cli(&["init", "--dir", d]).status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_certagent-bank"))
        .args([
            "serve",
            "--dir",
            d,
            "--listen",
            "127.0.0.1:0",
            "--renew-window-days",
            "40",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    {
        use std::io::BufRead;
        let stdout = child.stdout.take().unwrap();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
    }
    let addr = line
        .trim()
        .strip_prefix("listening on https://")
        .and_then(|s| s.strip_suffix("/.well-known/est/"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr, "-CAfile"])
        .arg(tmp.path().join("tls-roots.pem"))
        .args(["-verify_return_error", "-verify_ip", "127.0.0.1", "-brief"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Verification: OK"), "{text}");
}
