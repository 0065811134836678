//! The suites that matter on a second, independent token stack: kryoptic
//! (a PKCS#11 soft token written in Rust, built from crates.io by
//! tests/kryoptic-module) instead of SoftHSM. The token is initialised and
//! provisioned with OpenSC's pkcs11-tool and the reference bank only; what
//! certagent leaves on it is read back with pkcs11-tool, and a logon is
//! checked by the bank's own verifier.
//!
//! The module is built by `cargo build --workspace` (scripts/test.sh); its
//! Debian build needs are in scripts/setup.sh. A missing module or tool
//! fails the test with what to install; nothing is skipped.

mod common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::agent::{ANA, Agent, ORIGIN};
use common::renewal::{Env, new_cert_of, single_pair};
use common::{LABEL, Stack, TestToken, json, stderr, stdout, text};
use serde_json::Value;

/// The token's CKA_ID rule: SHA-1 of the modulus or of the EC point.
fn sha1_id(cert: &certagent::cert::Cert) -> Option<String> {
    certagent::token::key_id_for_spki(&cert.spki_der).map(hex::encode)
}

/// Every private key pkcs11-tool lists is sensitive, never extractable and
/// not extractable ("Access: sensitive, always sensitive, never extractable,
/// local").
fn assert_never_extractable(listing: &str) {
    let access: Vec<Vec<&str>> = listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Access:"))
        .map(|a| a.split(',').map(str::trim).collect())
        .collect();
    assert!(!access.is_empty(), "no private key listed:\n{listing}");
    for a in &access {
        assert!(
            a.contains(&"sensitive")
                && a.contains(&"never extractable")
                && !a.contains(&"extractable"),
            "{listing}"
        );
    }
}

#[test]
fn tokens_names_the_kryoptic_profile_and_its_token() {
    let token = TestToken::on(Stack::Kryoptic);
    let config = token.config(&token.module().display().to_string(), "");
    let t = json(&token.certagent(&config, &["tokens", "--json"], None));
    // Given by path (a build in target/), recognised by C_GetInfo.
    assert_eq!(t["module"]["profile"], "kryoptic", "{t}");
    assert_eq!(t["module"]["manufacturer"], "Kryoptic", "{t}");
    let slots = t["slots"].as_array().expect("slots");
    let ours: Vec<&Value> = slots
        .iter()
        .filter(|s| s["token"]["label"] == LABEL)
        .collect();
    assert_eq!(ours.len(), 1, "{t}");
    let tok = &ours[0]["token"];
    assert_eq!(tok["manufacturer"], Stack::Kryoptic.token_manufacturer());
    assert_eq!(tok["model"], "v1");
    assert_eq!(tok["pin_locked"], false);
    assert_eq!(tok["protected_auth_path"], false);
    assert!(
        ours[0]["uri"]
            .as_str()
            .expect("uri")
            .contains("token=bank-token"),
        "{t}"
    );

    let human = token.certagent(&config, &["tokens"], None);
    let h = stdout(&human);
    assert!(
        h.contains("profile kryoptic") && h.contains("\"bank-token\""),
        "{}",
        text(&human)
    );
    assert!(!h.contains("no matching profile"), "{h}");
}

#[test]
fn status_and_show_report_each_bank_certificate_on_kryoptic() {
    let env = Env::on(Stack::Kryoptic, false);
    env.provision("01", "rsa:2048", ANA, 200);
    env.provision("02", "EC:prime256v1", ANA, 20);
    env.provision("03", "rsa:2048", ANA, -5);
    env.provision("04", "rsa:2048", ANA, -100);

    let status = env.status_json();
    assert_eq!(status["token"]["label"], LABEL, "{status}");
    assert_eq!(
        common::states(&status),
        [
            ("01".to_string(), 200, "valid".to_string()),
            ("02".to_string(), 20, "renewal-due".to_string()),
            ("03".to_string(), -5, "expired".to_string()),
            ("04".to_string(), -100, "lapsed".to_string()),
        ],
        "{status}"
    );

    let out = env.certagent(&["show", "--id", "02"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let o = stdout(&out);
    for want in [
        "Ana Novak",
        "renewal-due (expires in 20 days)",
        "certagent renew",
        "P-256",
    ] {
        assert!(o.contains(want), "{want} missing:\n{o}");
    }
    let j = json(&env.certagent(&["show", "--id", "01", "--json"], &[]));
    assert_eq!(j["id"], "01");
    assert!(
        j["pem"]
            .as_str()
            .expect("pem")
            .starts_with("-----BEGIN CERTIFICATE-----"),
        "{j}"
    );
}

#[test]
fn doctor_signs_with_rsa_and_ec_keys_on_kryoptic() {
    let env = Env::on(Stack::Kryoptic, false);
    env.provision("01", "rsa:2048", ANA, 200);
    env.provision("02", "EC:prime256v1", ANA, 20);
    let out = env.certagent(&["doctor"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let o = stdout(&out);
    assert!(o.contains("profile kryoptic"), "{o}");
    assert!(o.contains("ok    login"), "{o}");
    assert!(o.contains("ok    bank"), "{o}");
    for id in ["01", "02"] {
        assert!(
            o.lines().any(|l| l.starts_with("ok ")
                && l.contains(&format!("cert {id} "))
                && l.contains("key signs and matches the certificate")),
            "{id}: {o}"
        );
    }
    let checks = json(&env.certagent(&["doctor", "--json"], &[]));
    assert!(
        checks
            .as_array()
            .expect("list")
            .iter()
            .all(|c| c["outcome"] != "fail"),
        "{checks}"
    );
}

/// OpenSC's spy traces kryoptic (the module exports only C_GetFunctionList)
/// and counts the logins.
#[test]
fn doctor_with_a_wrong_pin_on_kryoptic_tries_exactly_once() {
    let token = TestToken::on(Stack::Kryoptic);
    let config = token.config(&common::spy_module().display().to_string(), "");
    let log = token.path().join("spy.log");
    let out = token
        .command()
        .env("PKCS11SPY", token.module())
        .env("PKCS11SPY_OUTPUT", &log)
        .env("CERTAGENT_PIN", "99999999")
        .arg("--config")
        .arg(&config)
        .arg("doctor")
        .output()
        .expect("certagent");
    assert!(!out.status.success(), "{}", text(&out));
    let o = stdout(&out);
    assert!(
        o.contains("FAIL  login") && o.contains("rejected the PIN; it was not retried"),
        "{}",
        text(&out)
    );
    let spylog = std::fs::read_to_string(&log).expect("spy log");
    let logins = spylog.lines().filter(|l| l.contains("C_Login")).count();
    assert_eq!(logins, 1, "C_Login calls:\n{spylog}");
    assert!(spylog.contains("CKR_PIN_INCORRECT"), "{spylog}");
    assert!(!spylog.contains("C_SignInit"), "{spylog}");
}

#[test]
fn renew_on_kryoptic_leaves_one_never_extractable_pair_under_the_sha1_id() {
    let env = Env::on(Stack::Kryoptic, true);
    let old = env.provision("01", "rsa:2048", ANA, 20);
    let out = env.certagent(&["renew", "--yes"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stderr(&out).contains("processing the request"),
        "202 shown: {}",
        text(&out)
    );

    let id = single_pair(&env.objects());
    assert_ne!(id, "01");
    let new = new_cert_of(&env);
    assert_ne!(new.der, old);
    assert_eq!(sha1_id(&new), Some(id));
    assert_eq!(new.subject, ANA);
    assert_never_extractable(&env.private_keys());
    assert_eq!(env.status_json()["certificates"][0]["state"], "valid");
    assert!(!env.journal_exists());

    // The bank saw 202 then 200 on simplereenroll, over TLS 1.3 (RSA-PSS
    // signed on kryoptic).
    let reenrolls = env.reenrolls();
    let statuses: Vec<i64> = reenrolls
        .iter()
        .filter_map(|r| r["status"].as_i64())
        .collect();
    assert_eq!(statuses, [202, 200], "{reenrolls:?}");
    assert!(
        reenrolls.iter().all(|r| {
            let v = r["tls"].as_str().unwrap_or_default();
            v.contains("1.3") || v.contains("1_3")
        }),
        "{reenrolls:?}"
    );

    let out = env.certagent(&["doctor"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("ok    bank"), "{}", text(&out));
}

/// An expired certificate of `key_type`, enrolled anew with `policy_key`.
fn enroll_after_expiry(key_type: &str, policy_key: &str) -> certagent::cert::Cert {
    let mut env = Env::on(Stack::Kryoptic, false);
    env.provision("01", key_type, ANA, -5);
    env.write_config("", &format!("key = \"{policy_key}\"\n"));
    assert_eq!(env.status_json()["certificates"][0]["state"], "expired");
    let out = env.certagent(
        &["enroll", "--user", "ana", "--yes"],
        &[("CERTAGENT_OTP", &env.otp)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let id = single_pair(&env.objects());
    assert_ne!(id, "01");
    let new = new_cert_of(&env);
    assert_eq!(sha1_id(&new), Some(id));
    assert_eq!(new.subject, ANA);
    assert_eq!(env.status_json()["certificates"][0]["state"], "valid");
    assert_never_extractable(&env.private_keys());
    new
}

#[test]
fn enroll_rsa_2048_on_kryoptic() {
    let new = enroll_after_expiry("rsa:2048", "rsa-2048");
    assert_eq!(new.key, certagent::token::PublicKeyAlg::Rsa { bits: 2048 });
}

#[test]
fn enroll_ec_p256_on_kryoptic() {
    let new = enroll_after_expiry("EC:prime256v1", "ec-p256");
    assert_eq!(new.key, certagent::token::PublicKeyAlg::EcP256);
}

#[test]
fn logon_through_the_agent_on_kryoptic_verifies_at_the_bank() {
    let agent = Agent::start_on(Stack::Kryoptic, 200);
    let chal: Vec<u8> = (0..32).map(|i| (i * 11 + 3) as u8).collect();
    let chal64 = URL_SAFE_NO_PAD.encode(&chal);
    let r = agent.page(
        "POST",
        "/v1/logon",
        &format!("{{\"challenge\":\"{chal64}\"}}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut t = r.json();
    assert_eq!(t["format"], "certagent-auth:1");
    assert_eq!(t["origin"], ORIGIN);
    assert_eq!(t["algorithm"], "PS256", "kryoptic has RSA-PSS");
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);
    assert_eq!(agent.logins(), 1, "one C_Login, seen by the spy");

    // The bank's own verifier: signature over this origin and challenge,
    // the chain to its CA, its record of the certificate, the lifecycle.
    use certagent_bank::store::{Paths, State};
    let paths = Paths::new(&agent.bank_dir);
    let ca_pem = std::fs::read(paths.ca_cert()).expect("ca.pem");
    let (_, ca_der) = der::pem::decode_vec(&ca_pem).expect("ca pem");
    let state = State::load(&paths).expect("bank state");
    let policy = certagent::policy::Policy::default();
    // The challenge the bank's cookie bound to this browser.
    let cookie = chal64.clone();
    let verify = |token: &Value, origin: &str| {
        certagent_bank::logon::verify_body(
            &serde_json::to_vec(token).expect("json"),
            Some(&cookie),
            origin,
            &ca_der,
            &state,
            &policy,
            time::OffsetDateTime::now_utc(),
        )
    };
    t["challenge"] = Value::String(chal64);
    let who = verify(&t, ORIGIN).expect("the bank accepts the logon");
    assert_eq!(who.subject, ANA);
    assert_eq!(who.user.as_deref(), Some("ana"));

    // Worthless at another origin, even when it says that origin.
    let evil = "https://evil.example";
    t["origin"] = Value::String(evil.into());
    assert!(verify(&t, evil).is_err(), "signature bound to {ORIGIN}");
    // And a signature that is not the token's is refused.
    t["origin"] = Value::String(ORIGIN.into());
    let mut sig = STANDARD
        .decode(t["signature"].as_str().expect("sig"))
        .expect("b64");
    if let Some(b) = sig.last_mut() {
        *b ^= 1;
    }
    t["signature"] = Value::String(STANDARD.encode(sig));
    assert!(verify(&t, ORIGIN).is_err(), "a flipped bit is refused");
}

/// p11-kit's proxy, as a root process (CI) uses it: the user's own module
/// list (~/.config/pkcs11/modules) is skipped, and doctor says so and what
/// to do; registered for everyone in /etc/pkcs11/modules/, the token shows.
#[test]
fn p11_kit_as_root_skips_the_users_modules_doctor_says_so_and_etc_works() {
    common::require_root("p11-kit skips user module lists only for root");
    let proxy = [
        "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
        "/usr/lib/aarch64-linux-gnu/p11-kit-proxy.so",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    assert!(
        proxy.is_some(),
        "p11-kit's proxy is missing; install it: apt-get install p11-kit-modules"
    );
    let hsm = TestToken::on(Stack::Kryoptic);
    let line = format!("module: {}\n", hsm.module().display());
    let user_modules = hsm.path().join("xdg/pkcs11/modules");
    std::fs::create_dir_all(&user_modules).expect("user module dir");
    std::fs::write(user_modules.join("certagent-kryoptic.module"), &line).expect("module file");
    let config = hsm.config("p11-kit-proxy", "");

    let out = hsm.certagent(&config, &["doctor"], None);
    let o = stdout(&out);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        o.contains("FAIL  token") && o.contains("p11-kit skips your own module list"),
        "{o}"
    );
    assert!(o.contains("/etc/pkcs11/modules/"), "{o}");

    // Registered for everyone: the proxy shows the token.
    struct Registered(std::path::PathBuf, bool);
    impl Drop for Registered {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            if self.1 {
                let _ = self.0.parent().map(std::fs::remove_dir);
            }
        }
    }
    let etc = std::path::Path::new("/etc/pkcs11/modules");
    let created = !etc.exists();
    std::fs::create_dir_all(etc).expect("/etc/pkcs11/modules");
    let file = etc.join(format!("certagent-test-{}.module", std::process::id()));
    std::fs::write(&file, &line).expect("register the module");
    let _registered = Registered(file, created);
    let tokens = json(&hsm.certagent(&config, &["tokens", "--json"], None));
    assert!(
        tokens.to_string().contains(LABEL),
        "the proxy shows the token once registered in /etc: {tokens}"
    );
}
