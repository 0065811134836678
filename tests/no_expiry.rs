//! A certificate with RFC 5280's "no well-defined expiration date"
//! (notAfter `99991231235959Z`) on a real SoftHSM token, beside a bank
//! certificate: `status`, `status --json`, `show`, `doctor` and the running
//! agent's `/v1/status` all work and show it as valid, with no notice and
//! no renewal date. (Date arithmetic on it used to overflow and panic.)
//!
//! The certificate is issued by the reference bank's CA code with exactly
//! that notAfter (openssl 3.0 has no `-not_after`, and `-days` under a
//! frozen faketime clock fails now and then without a word) for a key
//! pkcs11-tool made on the token, and written beside it with pkcs11-tool.

mod common;

use std::path::Path;

use certagent_bank::ca::{Ca, ClientCert, parse_name, random_serial};
use common::agent::Agent;
use common::{LABEL, PIN, SoftHsm, openssl, run, text};
use der::Decode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use time::macros::datetime;

const NO_EXPIRY: &str = "9999-12-31T23:59:59Z";

/// An RSA key pair made on the token by pkcs11-tool (CKA_ID `id`) and a
/// certificate for it from the issuing CA of the bank in `bank_dir`, valid
/// from 2025-12-31T23:59:59Z to 9999-12-31T23:59:59Z (GeneralizedTime
/// 99991231235959Z), written beside it.
fn no_expiry_cert_on_token(hsm: &SoftHsm, id: &str, bank_dir: &Path) -> Vec<u8> {
    let ok = |o: std::process::Output| assert!(o.status.success(), "{}", text(&o));
    let login = ["--login", "--pin", PIN];
    ok(hsm.pkcs11_tool(
        &[
            &login[..],
            &[
                "--keypairgen",
                "--key-type",
                "rsa:2048",
                "--id",
                id,
                "--label",
                "forever key",
            ],
        ]
        .concat(),
    ));
    let dir = hsm.path();
    let pub_der = dir.join(format!("forever-{id}.pub.der"));
    ok(hsm.pkcs11_tool(&[
        "--read-object",
        "--type",
        "pubkey",
        "--id",
        id,
        "-o",
        &pub_der.display().to_string(),
    ]));
    let spki = std::fs::read(&pub_der).expect("public key");
    let key = PrivatePkcs8KeyDer::from_pem_file(bank_dir.join("ca-key.pem")).expect("CA key");
    let ca_cert = CertificateDer::from_pem_file(bank_dir.join("ca.pem")).expect("CA cert");
    let ca = Ca::load(key.secret_pkcs8_der(), ca_cert.as_ref()).expect("CA");
    let der = ca
        .issue_client(&ClientCert {
            subject: parse_name("CN=Forever,O=Demo Company,C=SI").expect("name"),
            spki: spki::SubjectPublicKeyInfoOwned::from_der(&spki).expect("SPKI"),
            serial: random_serial(|_| false).expect("serial"),
            not_before: datetime!(2025-12-31 23:59:59 UTC),
            not_after: datetime!(9999-12-31 23:59:59 UTC),
            san: None,
        })
        .expect("issue");
    let cert = dir.join(format!("forever-{id}.der"));
    std::fs::write(&cert, &der).expect("write cert");
    // As other tools read it: GeneralizedTime 99991231235959Z.
    let parsed = run(openssl()
        .args(["asn1parse", "-inform", "DER", "-in"])
        .arg(&cert));
    assert!(
        parsed.contains("GENERALIZEDTIME   :99991231235959Z"),
        "{parsed}"
    );
    ok(hsm.pkcs11_tool(
        &[
            &login[..],
            &[
                "--write-object",
                &cert.display().to_string(),
                "--type",
                "cert",
                "--id",
                id,
                "--label",
                "forever certificate",
            ],
        ]
        .concat(),
    ));
    der
}

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// The entry with CKA_ID `id` in a status list.
fn entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no certificate {id} in {list}"))
}

/// The time zones the commands run in: UTC, east of it (Japan: the local
/// date of 99991231235959Z is in year 10000) and west of it.
const ZONES: [&str; 3] = ["UTC", "Asia/Tokyo", "America/New_York"];

/// `certagent ARGS` with the time zone `tz` (and the language `lang`).
fn certagent_tz(
    hsm: &SoftHsm,
    config: &Path,
    args: &[&str],
    pin: Option<&str>,
    tz: &str,
    lang: &str,
) -> std::process::Output {
    let mut cmd = hsm.command();
    cmd.env("TZ", tz)
        .env("LANG", lang)
        .arg("--config")
        .arg(config)
        .args(args);
    if let Some(pin) = pin {
        cmd.env("CERTAGENT_PIN", pin);
    }
    cmd.output().expect("certagent runs")
}

#[test]
fn status_show_and_doctor_handle_a_certificate_without_expiry() {
    let hsm = SoftHsm::empty();
    hsm.provision(LABEL, &[200]);
    // With no [bank] configured every end-entity certificate is listed; the
    // no-expiry one comes from another CA than the provisioning one.
    let bank_dir = hsm.path().join("bank");
    certagent_bank::init(&bank_dir).expect("bank");
    no_expiry_cert_on_token(&hsm, "02", &bank_dir);
    let config = hsm.config("softhsm2", "");
    for tz in ZONES {
        no_expiry_in_zone(&hsm, &config, tz);
    }
}

fn no_expiry_in_zone(hsm: &SoftHsm, config: &Path, tz: &str) {
    let en = |args: &[&str], pin| certagent_tz(hsm, config, args, pin, tz, "C.UTF-8");
    let ja = |args: &[&str]| certagent_tz(hsm, config, args, None, tz, "ja_JP.UTF-8");

    let status = json(&en(&["status", "--json"], None));
    let certs = &status["certificates"];
    let bank = entry(certs, "01");
    assert_eq!(bank["state"], "valid", "{tz}");
    assert_eq!(bank["days_left"], 200, "{tz}");
    assert!(bank["next_notice"].is_string(), "{tz}: {bank}");
    let forever = entry(certs, "02");
    assert_eq!(forever["state"], "valid", "{tz}: {forever}");
    assert_eq!(forever["not_after"], NO_EXPIRY);
    assert_eq!(forever["not_before"], "2025-12-31T23:59:59Z");
    assert!(forever["next_notice"].is_null(), "{tz}: {forever}");
    assert!(forever["days_left"].as_i64().is_some_and(|d| d > 2_000_000));

    let human = stdout(&en(&["status"], None));
    assert!(
        human.contains("valid (expires in 200 days)"),
        "{tz}: {human}"
    );
    assert!(
        human.contains("valid (never expires)") && human.contains("(no expiry date)"),
        "{tz}: {human}"
    );
    // East of UTC its local date would be in year 10000: UTC stands in.
    // West of it, it is the local evening of 31 December 9999.
    let until = match tz {
        "America/New_York" => "31 December 9999, 18:59 EST (no expiry date)",
        _ => "31 December 9999, 23:59 UTC (no expiry date)",
    };
    assert!(human.contains(until), "{tz}: {human}");
    let japanese = stdout(&ja(&["status"]));
    let until = match tz {
        "America/New_York" => "9999年12月31日 18:59 (EST)",
        _ => "9999年12月31日 23:59 (UTC)",
    };
    assert!(japanese.contains(until), "{tz}: {japanese}");

    for show in [
        en(&["show", "--id", "02"], None),
        ja(&["show", "--id", "02"]),
    ] {
        let show = stdout(&show);
        assert!(show.contains("CN=Forever"), "{tz}: {show}");
        assert!(show.contains("9999"), "{tz}: {show}");
    }
    let show = stdout(&en(&["show", "--id", "02"], None));
    assert!(
        show.lines()
            .any(|l| l.starts_with("Renewal opens") && l.contains("never")),
        "{tz}: {show}"
    );
    assert!(!show.contains("Next notice"), "{tz}: {show}");
    let j = json(&en(&["show", "--id", "02", "--json"], None));
    assert_eq!(j["state"], "valid");
    assert!(j["renewal_opens"].is_null(), "{j}");
    assert!(j["grace_ends"].is_null(), "{j}");
    assert!(j["next_notice"].is_null(), "{j}");
    // The bank certificate's show still has its dates.
    let j = json(&en(&["show", "--id", "01", "--json"], None));
    assert!(
        j["renewal_opens"].is_string() && j["grace_ends"].is_string(),
        "{j}"
    );

    let doctor = stdout(&en(&["doctor"], Some(PIN)));
    for id in ["01", "02"] {
        assert!(
            doctor.lines().any(|l| l.starts_with("ok ")
                && l.contains(&format!("cert {id} "))
                && l.contains("key signs and matches the certificate")),
            "{tz} {id}: {doctor}"
        );
    }
    let checks = json(&en(&["doctor", "--json"], Some(PIN)));
    assert!(
        checks
            .as_array()
            .expect("list")
            .iter()
            .all(|c| c["outcome"] != "fail"),
        "{tz}: {checks}"
    );
}

#[test]
fn the_agent_starts_with_a_certificate_without_expiry_and_answers() {
    // On the token before the agent starts: its first look used to panic.
    let agent = Agent::start_prepared(200, |hsm, bank_dir| {
        no_expiry_cert_on_token(hsm, "02", bank_dir);
    });
    let reply = agent.page("GET", "/v1/status", "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let s = reply.json();
    let forever = entry(&s["certificates"], "02");
    assert_eq!(forever["state"], "valid", "{s}");
    assert_eq!(forever["not_after"], NO_EXPIRY);
    assert!(forever["next_notice"].is_null(), "{forever}");
    assert_eq!(entry(&s["certificates"], "01")["days_left"], 200);

    // One put on the token by another tool while the agent runs: the agent
    // keeps its view of the token until the token comes or goes (the
    // watch), but the CLI beside it reads the token and shows it.
    no_expiry_cert_on_token(&agent.hsm, "03", &agent.bank_dir);
    let out = agent.cli(&["status", "--json"], &[]);
    let cli = json(&out);
    assert!(entry(&cli["certificates"], "03")["next_notice"].is_null());
}

/// East of UTC the local date of 99991231235959Z is past year 9999: the
/// page's logon with that certificate (its consent names the date) under
/// Japan's time zone, in English and Japanese, answers 200 and a signature,
/// and the agent's standard error has no panic.
#[test]
fn in_japans_time_zone_the_page_logs_on_with_a_certificate_without_expiry() {
    use base64::Engine;
    for lang in ["C.UTF-8", "ja_JP.UTF-8"] {
        let agent = Agent::start_prepared_in(
            200,
            &[("TZ", "Asia/Tokyo"), ("LANG", lang), ("LC_ALL", lang)],
            |hsm, bank_dir| {
                no_expiry_cert_on_token(hsm, "02", bank_dir);
            },
        );
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
        let body = format!("{{\"challenge\":\"{challenge}\",\"id\":\"02\"}}");
        let reply = agent.page("POST", "/v1/logon", &body);
        assert_eq!(
            reply.status,
            200,
            "{lang}: {}\n{}",
            reply.body,
            agent.stderr()
        );
        assert!(reply.json()["signature"].is_string(), "{}", reply.body);
        assert!(!agent.stderr().contains("panicked"), "{}", agent.stderr());
    }
}
