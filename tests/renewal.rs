//! Renewal and enrolment end to end: a real SoftHSM token, the reference
//! bank on loopback TLS, and `certagent` as a separate process (so it can be
//! killed mid-way). The first key and certificate on the token are put there
//! with pkcs11-tool, as the bank's old procedure would have.

mod common;

use certagent_bank as bank;
use common::renewal::{ANA, Env, new_cert_of, single_pair};
use common::{stderr, stdout, text};

#[test]
fn renew_through_202_replaces_a_pkcs11_tool_key_with_a_token_generated_one() {
    let env = Env::new(true);
    let old = env.provision("01", "rsa:2048", ANA, 20);
    let out = env.certagent(&["renew", "--yes"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("processing the request"), "202 shown: {err}");

    // The token holds exactly the issued certificate and its key pair, under
    // the SHA-1 CKA_ID; the old pair is gone.
    let objs = env.objects();
    let id = single_pair(&objs);
    assert_ne!(id, "01");
    let new = new_cert_of(&env);
    assert_ne!(new.der, old);
    assert_eq!(
        certagent::token::key_id_for_spki(&new.spki_der).map(hex::encode),
        Some(id.clone())
    );
    assert_eq!(new.subject, ANA);
    let listing = env.private_keys();
    assert!(
        listing.contains("never extractable") && listing.contains("sensitive"),
        "{listing}"
    );
    assert_eq!(env.status_json()["certificates"][0]["state"], "valid");

    // The bank saw 202 then 200 on simplereenroll, authenticated by the old certificate.
    let reenrolls = env.reenrolls();
    let statuses: Vec<i64> = reenrolls
        .iter()
        .filter_map(|r| r["status"].as_i64())
        .collect();
    assert_eq!(statuses, [202, 200], "{reenrolls:?}");
    assert!(
        reenrolls
            .iter()
            .all(|r| r.to_string().contains("Ana Novak")),
        "{reenrolls:?}"
    );
    assert!(!env.journal_exists());

    let out = env.certagent(&["doctor"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok    bank"),
        "{}",
        text(&out)
    );
}

#[test]
fn enroll_turns_an_expired_certificate_into_a_valid_one() {
    let env = Env::new(false);
    env.provision("01", "rsa:2048", ANA, -5);
    assert_eq!(env.status_json()["certificates"][0]["state"], "expired");
    let refused = env.certagent(&["renew", "--yes"], &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("certagent enroll"),
        "{}",
        text(&refused)
    );

    let out = env.certagent(
        &["enroll", "--user", "ana", "--yes"],
        &[("CERTAGENT_OTP", &env.otp)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let id = single_pair(&env.objects());
    assert_ne!(id, "01");
    assert_eq!(env.status_json()["certificates"][0]["state"], "valid");
    assert_eq!(new_cert_of(&env).subject, ANA);
}

#[test]
fn renewal_outside_the_window_is_refused_by_the_agent_and_by_the_bank() {
    let mut env = Env::new(false);
    env.provision("01", "rsa:2048", ANA, 200);
    let before = env.objects();
    let out = env.certagent(&["renew", "--yes"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("renewal opens on"), "{}", text(&out));
    // Only /cacerts (to tell the bank's certificates apart), no request.
    assert!(
        env.requests()
            .iter()
            .all(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/cacerts"))),
        "no certificate request sent to the bank: {:?}",
        env.requests()
    );

    // An agent configured with a wider window asks anyway: the bank says no.
    env.write_config("", "renew_window_days = 300\n");
    let out = env.certagent(&["renew", "--yes"], &[]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("403") && e.contains("renewal opens"),
        "{}",
        text(&out)
    );
    assert_eq!(env.objects(), before, "token unchanged");
    assert!(!env.journal_exists());
}

#[test]
fn a_lapsed_certificate_needs_the_bank_to_reissue() {
    let env = Env::new(false);
    env.provision("01", "rsa:2048", ANA, -100);
    let before = env.objects();
    let out = env.certagent(
        &["enroll", "--user", "ana", "--yes"],
        &[("CERTAGENT_OTP", &env.otp)],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("403"), "{}", text(&out));
    assert_eq!(env.objects(), before, "token unchanged");

    let otp = bank::reissue(&env.bank_dir, "ana").expect("reissue");
    let out = env.certagent(
        &["enroll", "--user", "ana", "--yes"],
        &[("CERTAGENT_OTP", &otp)],
    );
    assert!(out.status.success(), "{}", text(&out));
    single_pair(&env.objects());
    assert_eq!(env.status_json()["certificates"][0]["state"], "valid");
}

#[test]
fn a_bank_with_the_wrong_server_certificate_is_refused_before_any_request() {
    let mut env = Env::new(false);
    env.provision("01", "rsa:2048", ANA, 20);
    let before = env.objects();
    let other = env.hsm.path().join("other-bank");
    bank::init(&other).expect("other bank");
    env.write_config("", "");
    let roots = other.join("tls-roots.pem");
    let cfg = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace(
            &env.bank_dir.join("tls-roots.pem").display().to_string(),
            &roots.display().to_string(),
        );
    std::fs::write(&env.config, cfg).expect("config");
    let out = env.certagent(&["renew", "--yes"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("server_roots"), "{}", text(&out));
    assert!(
        env.requests().is_empty(),
        "no request reached the bank: {:?}",
        env.requests()
    );
    assert_eq!(env.objects(), before);
    // doctor says the same about the bank.
    let out = env.certagent(&["doctor"], &[]);
    assert!(!out.status.success());
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(
        o.contains("FAIL  bank") && o.contains("server_roots"),
        "{}",
        text(&out)
    );
}

#[test]
fn tls_1_2_with_pkcs1_when_the_driver_profile_has_no_pss() {
    let mut env = Env::new(false);
    env.provision("01", "rsa:2048", ANA, 20);
    let drivers = env.hsm.path().join("drivers");
    std::fs::create_dir_all(&drivers).expect("dir");
    std::fs::write(
        drivers.join("softhsm2.toml"),
        format!(
            "name = \"softhsm2\"\ndescription = \"SoftHSM without PSS\"\ninstall = \"apt-get install softhsm2\"\n[paths]\nlinux = [\"{}\"]\n[capabilities]\nsigning = [\"rsa-pkcs1-sha256\", \"ecdsa-p256-sha256\"]\n",
            common::softhsm_module().display()
        ),
    )
    .expect("profile");
    env.write_config("", "");
    let out = env.certagent(&["renew", "--yes"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let r = env.requests();
    let tls: Vec<String> = r
        .iter()
        .filter_map(|r| r["tls"].as_str().map(String::from))
        .collect();
    assert!(
        tls.iter().any(|v| v.contains("1.2") || v.contains("1_2")),
        "{r:?}"
    );
    single_pair(&env.objects());
}

#[test]
fn tls_1_3_with_pss_by_default() {
    let env = Env::new(false);
    env.provision("01", "rsa:2048", ANA, 20);
    let out = env.certagent(&["renew", "--yes"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let r = env.requests();
    let reenroll = r
        .iter()
        .find(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("simplereenroll"))
        })
        .expect("reenroll");
    let v = reenroll["tls"].as_str().unwrap_or_default();
    assert!(v.contains("1.3") || v.contains("1_3"), "{reenroll}");
}

#[test]
fn an_ec_p256_certificate_renews_to_an_ec_p256_key() {
    let mut env = Env::new(false);
    env.provision("01", "EC:prime256v1", ANA, 20);
    env.write_config("", "key = \"ec-p256\"\n");
    let out = env.certagent(&["renew", "--yes"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let id = single_pair(&env.objects());
    let new = new_cert_of(&env);
    assert_eq!(new.key, certagent::token::PublicKeyAlg::EcP256);
    assert_eq!(
        certagent::token::key_id_for_spki(&new.spki_der).map(hex::encode),
        Some(id)
    );
}

#[test]
fn a_killed_renewal_resumes_at_every_step_without_a_second_key() {
    let points = [
        "started",
        "generating-key",
        "after-keygen",
        "key-ready",
        "csr-ready",
        "after-submit",
        "issued",
        "installing",
        "after-install",
        "installed",
        "retiring-old",
        "after-retire",
        "done",
    ];
    for point in points {
        let env = Env::new(false);
        env.provision("01", "rsa:2048", ANA, 20);
        let out = env.certagent(&["renew", "--yes"], &[("CERTAGENT_TEST_CRASH_AT", point)]);
        assert!(
            !out.status.success(),
            "{point}: should have crashed: {}",
            text(&out)
        );
        assert!(
            stderr(&out).contains(&format!("test crash at {point}")),
            "{point}: {}",
            text(&out)
        );
        assert!(env.journal_exists(), "{point}: journal kept");
        // The old certificate stays usable until the new one is proven.
        let objs = env.objects();
        assert!(
            objs.iter().any(|(k, i)| k == "Certificate" && i == "01")
                || objs.iter().filter(|(k, _)| k == "Certificate").count() == 1,
            "{point}: no usable certificate left: {objs:?}"
        );
        assert!(
            objs.iter().filter(|(k, _)| k == "Private Key").count() <= 2,
            "{point}: {objs:?}"
        );

        let out = env.certagent(&["renew", "--yes"], &[]);
        assert!(
            out.status.success(),
            "{point}: resume failed: {}",
            text(&out)
        );
        if point != "started" {
            assert!(stderr(&out).contains("Resuming"), "{point}: {}", text(&out));
        }
        let id = single_pair(&env.objects());
        assert_ne!(id, "01", "{point}");
        assert!(!env.journal_exists(), "{point}: journal left behind");
    }
}

#[test]
fn bad_answers_are_rejected_and_the_token_is_unchanged() {
    for case in [
        "other-key",
        "other-subject",
        "other-ca",
        "garbage-base64",
        "not-pkcs7",
    ] {
        let env = Env::new(false);
        env.provision("01", "rsa:2048", ANA, 20);
        let before = env.objects();
        let fake = FakeBank::start(&env, case);
        let cfg = std::fs::read_to_string(&env.config)
            .expect("config")
            .replace(&env.addr().to_string(), &fake.addr.to_string());
        std::fs::write(&env.config, cfg).expect("config");
        let out = env.certagent(&["renew", "--yes"], &[]);
        assert!(!out.status.success(), "{case}: accepted: {}", text(&out));
        let e = stderr(&out);
        let expect = match case {
            "other-key" => "another key",
            "other-subject" => "subject",
            "other-ca" => "chain",
            "garbage-base64" => "base64",
            _ => "PKCS#7",
        };
        assert!(e.contains(expect), "{case}: {}", text(&out));
        assert_eq!(env.objects(), before, "{case}: token changed");
        assert!(!env.journal_exists(), "{case}: journal left behind");
    }
}

/// An EST server that answers renewals with a crafted bad answer.
/// A subject with no common name whose organisation is written backwards
/// behind a right-to-left override: "Demo Bank" on screen, if shown raw.
const REVERSED_SUBJECT: &str = "O=\u{202E}knaB omeD,C=SI";
/// A refusal with a right-to-left override, a zero-width space and a line
/// separator.
const REFUSAL: &str = "renewal \u{202E}denied\u{200B} by the bank\u{2028}call us\r\n";

/// Bidirectional, invisible and control characters (but the line breaks
/// between lines of output).
fn hidden_in(out: &str) -> Vec<char> {
    out.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
        })
        .collect()
}

#[test]
fn a_reversed_holder_and_a_reversed_refusal_reach_the_terminal_cleaned() {
    let env = Env::new(false);
    env.provision("01", "rsa:2048", REVERSED_SUBJECT, 20);
    // The bank's certificate, named by its whole subject (it has no CN).
    let out = env.certagent(&["status"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("  O=knaB omeD,C=SI\n"), "{status}");
    assert_eq!(hidden_in(&status), Vec::<char>::new(), "{status:?}");
    // `show` has the subject in full: cleaned too.
    let out = env.certagent(&["show"], &[]);
    let show = String::from_utf8_lossy(&out.stdout);
    assert!(show.contains("O=knaB omeD,C=SI"), "{}", text(&out));
    assert_eq!(hidden_in(&show), Vec::<char>::new(), "{show:?}");

    // The renewal names the holder, and the bank refuses it.
    let fake = FakeBank::start(&env, "refusal");
    let cfg = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace(&env.addr().to_string(), &fake.addr.to_string());
    std::fs::write(&env.config, cfg).expect("config");
    let out = env.certagent(&["renew", "--yes"], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(e.contains("O=knaB omeD,C=SI"), "{}", text(&out));
    assert!(
        e.contains("the bank refused (403): renewal denied by the bank call us"),
        "{}",
        text(&out)
    );
    assert_eq!(hidden_in(&o), Vec::<char>::new(), "{o:?}");
    assert_eq!(hidden_in(&e), Vec::<char>::new(), "{e:?}");
    // The same for scripts: one cleaned line in the JSON error.
    let out = env.certagent(&["renew", "--yes", "--json"], &[]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let message = j["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("renewal denied by the bank call us"),
        "{j}"
    );
    assert_eq!(hidden_in(message), Vec::<char>::new(), "{j}");
}

struct FakeBank {
    addr: std::net::SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl FakeBank {
    fn start(env: &Env, case: &'static str) -> FakeBank {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use std::sync::Arc;

        let dir = env.hsm.path().join("fake");
        std::fs::create_dir_all(&dir).expect("dir");
        let run = |args: &[&str]| {
            let o = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl");
            assert!(o.status.success(), "{}", text(&o));
        };
        // The fake has its own server certificate, added to the trusted roots
        // so that only its answers are under test.
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=127.0.0.1",
            "-days",
            "2",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ]);
        let roots = env.bank_dir.join("tls-roots.pem");
        let mut pem = std::fs::read_to_string(&roots).expect("roots");
        pem.push_str(&std::fs::read_to_string(dir.join("cert.pem")).expect("cert"));
        std::fs::write(&roots, pem).expect("roots");

        let other_bank = env.hsm.path().join("fake-other-bank");
        bank::init(&other_bank).expect("other bank");
        run(&["genpkey", "-algorithm", "RSA", "-out", "other.pem"]);
        run(&[
            "pkey",
            "-in",
            "other.pem",
            "-pubout",
            "-outform",
            "DER",
            "-out",
            "other.der",
        ]);
        let other_spki = std::fs::read(dir.join("other.der")).expect("spki");
        let ca_pem = std::fs::read(env.bank_dir.join("ca.pem")).expect("ca");
        let ca_der: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&ca_pem)
            .map(|c| c.expect("ca").to_vec())
            .collect();

        let certs = vec![CertificateDer::from_pem_file(dir.join("cert.pem")).expect("cert")];
        let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).expect("key");
        let mut client_roots = rustls::RootCertStore::empty();
        for c in &ca_der {
            client_roots
                .add(CertificateDer::from(c.clone()))
                .expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(client_roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .expect("verifier");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = env
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let bank_dir = env.bank_dir.clone();
        let task = env.rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let (bank_dir, other_bank, other_spki, ca_der) = (
                    bank_dir.clone(),
                    other_bank.clone(),
                    other_spki.clone(),
                    ca_der.clone(),
                );
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (bank_dir, other_bank, other_spki, ca_der) = (
                                bank_dir.clone(),
                                other_bank.clone(),
                                other_spki.clone(),
                                ca_der.clone(),
                            );
                            async move {
                                use http_body_util::BodyExt;
                                let path = req.uri().path().to_string();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let answer: String = if path.ends_with("cacerts") {
                                    certagent::pkcs7::encode_base64_lines(
                                        &certagent::pkcs7::encode_certs_only(&ca_der).expect("p7"),
                                    )
                                } else {
                                    let csr =
                                        certagent::pkcs7::decode_base64(&body).expect("csr b64");
                                    use der::{Decode, Encode};
                                    let req =
                                        x509_cert::request::CertReq::from_der(&csr).expect("csr");
                                    let spki = req.info.public_key.to_der().expect("spki");
                                    let issued = match case {
                                        "other-key" => Some(
                                            bank::issue(&bank_dir, ANA, &other_spki, 365)
                                                .expect("issue"),
                                        ),
                                        "other-subject" => Some(
                                            bank::issue(
                                                &bank_dir,
                                                "CN=Mallory,O=Elsewhere",
                                                &spki,
                                                365,
                                            )
                                            .expect("issue"),
                                        ),
                                        "other-ca" => Some(
                                            bank::issue(&other_bank, ANA, &spki, 365)
                                                .expect("issue"),
                                        ),
                                        _ => None,
                                    };
                                    match (case, issued) {
                                        (_, Some(der)) => certagent::pkcs7::encode_base64_lines(
                                            &certagent::pkcs7::encode_certs_only(&[der])
                                                .expect("p7"),
                                        ),
                                        ("garbage-base64", _) => {
                                            "%%% this is not base64 %%%".to_string()
                                        }
                                        _ => certagent::pkcs7::encode_base64_lines(
                                            b"hello, this is not PKCS#7",
                                        ),
                                    }
                                };
                                if case == "refusal" && !path.ends_with("cacerts") {
                                    // The bank's words, turned around and
                                    // with invisible characters.
                                    return Ok::<_, std::convert::Infallible>(
                                        hyper::Response::builder()
                                            .status(403)
                                            .header("Content-Type", "text/plain; charset=utf-8")
                                            .body(http_body_util::Full::new(bytes::Bytes::from(
                                                REFUSAL,
                                            )))
                                            .expect("response"),
                                    );
                                }
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .header(
                                            "Content-Type",
                                            "application/pkcs7-mime; smime-type=certs-only",
                                        )
                                        .header("Content-Transfer-Encoding", "base64")
                                        .body(http_body_util::Full::new(bytes::Bytes::from(answer)))
                                        .expect("response"),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        FakeBank { addr, _task: task }
    }
}

/// The journal is a file anything running as the user can edit. Edited to
/// a late step naming another pair on the token (a national eID's at 0e,
/// from another CA) as the one being replaced, `renew` refuses before any
/// token call and the pair stays, as pkcs11-tool sees it; the same journal
/// unedited finishes the renewal and removes the real old pair (the
/// control: the test sees a removal when there is one).
#[test]
fn an_edited_journal_never_removes_a_pair_that_is_not_the_banks() {
    use base64::Engine;
    let env = Env::new(false);
    env.provision("01", "rsa:2048", ANA, 20);
    let other_ca = env.hsm.path().join("other-ca");
    bank::init(&other_ca).expect("another CA");
    let eid = common::bank_cert_on_token(
        &env.hsm,
        &other_ca,
        "0e",
        "rsa:2048",
        "CN=Ana Novak,O=National eID",
        900,
    );
    let crashed = env.certagent(
        &["renew", "--yes"],
        &[("CERTAGENT_TEST_CRASH_AT", "after-install")],
    );
    assert!(!crashed.status.success(), "{}", text(&crashed));
    let journal = std::fs::read_dir(env.state_dir().join("certagent"))
        .expect("state dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("renewal-"))
        })
        .expect("a journal after the crash");
    let original = std::fs::read(&journal).expect("journal");
    let ids = |env: &Env| -> Vec<(String, String)> { env.objects() };
    let has_eid = |objs: &[(String, String)]| {
        ["Certificate", "Private Key", "Public Key"]
            .iter()
            .all(|k| objs.iter().any(|(kind, id)| kind == k && id == "0e"))
    };
    for step in ["retiring-old", "installed"] {
        let mut j: serde_json::Value = serde_json::from_slice(&original).expect("json");
        j["step"] = step.into();
        j["old_id"] = "0e".into();
        j["old_cert"] = base64::engine::general_purpose::STANDARD
            .encode(&eid)
            .into();
        std::fs::write(&journal, serde_json::to_vec(&j).expect("json")).expect("edit");
        let out = env.certagent(&["renew", "--yes"], &[]);
        assert!(!out.status.success(), "{step}: {}", text(&out));
        assert!(
            stderr(&out).contains("did not issue"),
            "{step}: not the refusal: {}",
            text(&out)
        );
        assert!(
            has_eid(&ids(&env)),
            "{step}: the eID pair was touched: {:?}",
            ids(&env)
        );
        assert!(
            ids(&env).iter().any(|(_, id)| id == "01"),
            "{step}: {:?}",
            ids(&env)
        );
    }
    // The unedited journal: the renewal finishes and the old pair 01 goes.
    std::fs::write(&journal, &original).expect("restore");
    let out = env.certagent(&["renew", "--yes"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let objs = ids(&env);
    assert!(
        !objs.iter().any(|(_, id)| id == "01"),
        "the old pair stayed: {objs:?}"
    );
    assert!(has_eid(&objs), "{objs:?}");
}
