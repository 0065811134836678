//! Smoke tests of the OpenPGP card stack (tests/common/openpgp.rs): pcscd,
//! vsmartcard's vpcd, the emulated card (tests/opcard-emulator) and OpenSC,
//! driven with OpenSC's `pkcs11-tool`. They pin what
//! tests/opcard-emulator/README.md reports, so a change in any part of the
//! stack shows up here.
//!
//! Needs root (pcscd in its own mount namespace) and
//! `cargo build --workspace` (the emulator), as CI runs it.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::faults::{self, Mode};
use common::openpgp::{ADMIN_PIN, OpenPgpCard, USER_PIN};

/// The token with the signature key (OpenPGP key slot 1).
const SIG_TOKEN: &str = "OpenPGP card (User PIN (sig))";
/// The token with the decryption and authentication keys (slots 2 and 3).
const USER_TOKEN: &str = "OpenPGP card (User PIN)";

fn run(card: &OpenPgpCard, args: &[&str]) -> (bool, String) {
    let out = card.pkcs11_tool_output(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(card: &OpenPgpCard, args: &[&str]) -> String {
    let (success, text) = run(card, args);
    assert!(success, "pkcs11-tool {args:?} failed:\n{text}");
    text
}

fn fails(card: &OpenPgpCard, args: &[&str]) -> String {
    let (success, text) = run(card, args);
    assert!(!success, "pkcs11-tool {args:?} succeeded:\n{text}");
    text
}

/// pkcs11-tool's arguments for `rest` on `token`, logged in with the admin
/// PIN (the SO login).
fn as_admin<'a>(token: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--token-label",
        token,
        "--login",
        "--login-type",
        "so",
        "--so-pin",
        ADMIN_PIN,
    ];
    args.extend_from_slice(rest);
    args
}

/// pkcs11-tool's arguments for `rest` on `token`, logged in with the user
/// PIN.
fn as_user<'a>(token: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--token-label", token, "--login", "--pin", USER_PIN];
    args.extend_from_slice(rest);
    args
}

/// Generate a key pair with the admin PIN (SO login) on `token`.
fn keygen(card: &OpenPgpCard, token: &str, key_type: &str, id: &str) -> String {
    ok(
        card,
        &as_admin(token, &["--keypairgen", "--key-type", key_type, "--id", id]),
    )
}

/// The slot's flags line for `token` in `pkcs11-tool -L`.
fn token_flags(card: &OpenPgpCard, token: &str) -> String {
    let list = card.list_slots();
    let section = list
        .split("Slot ")
        .find(|s| s.contains(&format!("token label        : {token}\n")))
        .unwrap_or_else(|| panic!("no token {token:?} in:\n{list}"));
    section
        .lines()
        .find(|l| l.contains("token flags"))
        .unwrap_or_else(|| panic!("no flags in:\n{section}"))
        .to_owned()
}

fn openssl_verify(dir: &std::path::Path, pubkey_der: &str, digest: &str, data: &str, sig: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args([
            "pkey", "-pubin", "-inform", "DER", "-in", pubkey_der, "-out", "pub.pem",
        ])
        .output()
        .expect("openssl pkey");
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("openssl")
        .current_dir(dir)
        .args([
            "dgst",
            digest,
            "-verify",
            "pub.pem",
            "-signature",
            sig,
            data,
        ])
        .output()
        .expect("openssl dgst");
    assert!(out.status.success(), "signature does not verify: {out:?}");
}

#[test]
fn blank_card_shows_two_tokens_in_the_virtual_reader() {
    let card = OpenPgpCard::start_with_serial("0000C0DE");
    let list = card.list_slots();
    assert!(list.contains("Virtual PCD 00 00"), "{list}");
    for token in [USER_TOKEN, SIG_TOKEN] {
        assert!(
            list.contains(&format!("token label        : {token}\n")),
            "{list}"
        );
    }
    assert!(
        list.contains("token model        : PKCS#15 emulated"),
        "{list}"
    );
    assert!(list.contains("serial num         : 00000000c0de"), "{list}");
    // vpcd's second reader stays empty.
    assert!(list.contains("Virtual PCD 00 01\n  (empty)"), "{list}");
    assert_eq!(
        token_flags(&card, USER_TOKEN).trim(),
        "token flags        : login required, token initialized, PIN initialized"
    );

    let mechanisms = ok(&card, &["-M"]);
    for m in [
        "SHA256-RSA-PKCS,",
        "ECDSA-SHA256,",
        "RSA-PKCS-KEY-PAIR-GEN,",
        "ECDSA-KEY-PAIR-GEN,",
    ] {
        assert!(mechanisms.contains(m), "{m} missing:\n{mechanisms}");
    }
    assert!(!mechanisms.contains("PSS"), "{mechanisms}");

    let objects = ok(&card, &["--login", "--pin", USER_PIN, "-O"]);
    assert!(
        !objects.contains("Key Object"),
        "a blank card has keys:\n{objects}"
    );
}

#[test]
fn rsa_2048_signature_key_needs_the_admin_pin_and_signs_pkcs1() {
    let card = OpenPgpCard::start();
    let dir = card.dir();

    let user = fails(
        &card,
        &as_user(
            SIG_TOKEN,
            &["--keypairgen", "--key-type", "rsa:2048", "--id", "01"],
        ),
    );
    assert!(user.contains("CKR_USER_NOT_LOGGED_IN"), "{user}");

    let started = Instant::now();
    keygen(&card, SIG_TOKEN, "rsa:2048", "01");
    let took = started.elapsed();
    eprintln!("RSA-2048 key generation took {took:?}");

    // The card names the key after its slot, whatever label was asked for,
    // and it is on the signature token only.
    let objects = ok(&card, &as_user(SIG_TOKEN, &["-O"]));
    assert!(objects.contains("Private Key Object; RSA"), "{objects}");
    assert!(
        objects.contains("Public Key Object; RSA 2048 bits"),
        "{objects}"
    );
    assert!(
        objects.contains("label:      Signature key\n  ID:         01"),
        "{objects}"
    );
    assert!(
        objects.contains("Usage:      sign, non-repudiation"),
        "{objects}"
    );
    let other = ok(&card, &as_user(USER_TOKEN, &["-O"]));
    assert!(!other.contains("Key Object"), "{other}");

    std::fs::write(dir.join("data.txt"), b"renew me\n").unwrap();
    let data = dir.join("data.txt");
    let sig = dir.join("rsa.sig");
    let pubkey = dir.join("rsa.pub.der");
    ok(
        &card,
        &as_user(
            SIG_TOKEN,
            &[
                "--sign",
                "-m",
                "SHA256-RSA-PKCS",
                "--id",
                "01",
                "-i",
                data.to_str().unwrap(),
                "-o",
                sig.to_str().unwrap(),
            ],
        ),
    );
    ok(
        &card,
        &[
            "--token-label",
            SIG_TOKEN,
            "--read-object",
            "--type",
            "pubkey",
            "--id",
            "01",
            "-o",
            pubkey.to_str().unwrap(),
        ],
    );
    openssl_verify(dir, "rsa.pub.der", "-sha256", "data.txt", "rsa.sig");

    let pss = fails(
        &card,
        &as_user(
            SIG_TOKEN,
            &[
                "--sign",
                "-m",
                "SHA256-RSA-PKCS-PSS",
                "--id",
                "01",
                "-i",
                data.to_str().unwrap(),
                "-o",
                sig.to_str().unwrap(),
            ],
        ),
    );
    assert!(pss.contains("CKR_MECHANISM_INVALID"), "{pss}");
}

#[test]
fn ec_p256_authentication_key_signs_ecdsa_and_an_occupied_slot_refuses() {
    let card = OpenPgpCard::start();
    let dir = card.dir();
    keygen(&card, USER_TOKEN, "EC:prime256v1", "03");

    let objects = ok(&card, &as_user(USER_TOKEN, &["-O"]));
    assert!(
        objects.contains("label:      Authentication key\n  ID:         03"),
        "{objects}"
    );
    assert!(
        objects.contains("Public Key Object; EC  EC_POINT 256 bits"),
        "{objects}"
    );

    std::fs::write(dir.join("data.txt"), b"renew me\n").unwrap();
    let data = dir.join("data.txt");
    let sig = dir.join("ec.sig");
    let pubkey = dir.join("ec.pub.der");
    ok(
        &card,
        &as_user(
            USER_TOKEN,
            &[
                "--sign",
                "-m",
                "ECDSA-SHA256",
                "--signature-format",
                "openssl",
                "--id",
                "03",
                "-i",
                data.to_str().unwrap(),
                "-o",
                sig.to_str().unwrap(),
            ],
        ),
    );
    ok(
        &card,
        &[
            "--token-label",
            USER_TOKEN,
            "--read-object",
            "--type",
            "pubkey",
            "--id",
            "03",
            "-o",
            pubkey.to_str().unwrap(),
        ],
    );
    openssl_verify(dir, "ec.pub.der", "-sha256", "data.txt", "ec.sig");
    let before = std::fs::read(&pubkey).unwrap();

    // A second key into the same key slot: OpenSC refuses (non-unique ID,
    // reported as CKR_GENERAL_ERROR) and the old key stays.
    let again = fails(
        &card,
        &as_admin(
            USER_TOKEN,
            &["--keypairgen", "--key-type", "EC:prime256v1", "--id", "03"],
        ),
    );
    assert!(again.contains("CKR_GENERAL_ERROR"), "{again}");
    // An ID outside 01..03 has no key slot.
    let other = fails(
        &card,
        &as_admin(
            USER_TOKEN,
            &["--keypairgen", "--key-type", "EC:prime256v1", "--id", "05"],
        ),
    );
    assert!(other.contains("CKR_ARGUMENTS_BAD"), "{other}");
    // Deleting the key reports success and changes nothing.
    ok(
        &card,
        &as_admin(
            USER_TOKEN,
            &["--delete-object", "--type", "privkey", "--id", "03"],
        ),
    );
    ok(
        &card,
        &[
            "--token-label",
            USER_TOKEN,
            "--read-object",
            "--type",
            "pubkey",
            "--id",
            "03",
            "-o",
            pubkey.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&pubkey).unwrap(), before);
    let objects = ok(&card, &as_user(USER_TOKEN, &["-O"]));
    assert!(objects.contains("Private Key Object; EC"), "{objects}");
}

#[test]
fn certificate_written_with_the_admin_pin_reads_back() {
    let card = OpenPgpCard::start();
    let dir = card.dir();
    let out = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "cert.key",
            "-subj",
            "/CN=holder",
            "-days",
            "30",
            "-outform",
            "DER",
            "-out",
            "cert.der",
        ])
        .output()
        .expect("openssl req");
    assert!(out.status.success(), "{out:?}");
    let cert = dir.join("cert.der");
    let cert = cert.to_str().unwrap();

    let user = fails(
        &card,
        &as_user(
            SIG_TOKEN,
            &["--write-object", cert, "--type", "cert", "--id", "01"],
        ),
    );
    assert!(user.contains("CKR_PIN_LEN_RANGE"), "{user}");
    ok(
        &card,
        &as_admin(
            SIG_TOKEN,
            &[
                "--write-object",
                cert,
                "--type",
                "cert",
                "--id",
                "01",
                "--label",
                "ignored",
            ],
        ),
    );
    // Without a key 01 the certificate is listed on the other token, with a
    // public key object taken from it.
    let objects = ok(&card, &["--token-label", USER_TOKEN, "-O"]);
    assert!(objects.contains("Certificate Object"), "{objects}");
    assert!(objects.contains("label:      SIG certificate"), "{objects}");
    assert!(objects.contains("subject:    DN: CN=holder"), "{objects}");
    assert!(objects.contains("ID:         01"), "{objects}");
    assert!(objects.contains("Public Key Object"), "{objects}");

    // With the key, it moves to the key's token.
    keygen(&card, SIG_TOKEN, "EC:prime256v1", "01");
    let objects = ok(&card, &["--token-label", SIG_TOKEN, "-O"]);
    assert!(objects.contains("Certificate Object"), "{objects}");
    assert!(objects.contains("label:      SIG certificate"), "{objects}");
    let other = ok(&card, &["--token-label", USER_TOKEN, "-O"]);
    assert!(!other.contains("Certificate Object"), "{other}");

    let back = dir.join("back.der");
    ok(
        &card,
        &[
            "--token-label",
            SIG_TOKEN,
            "--read-object",
            "--type",
            "cert",
            "--id",
            "01",
            "-o",
            back.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(dir.join("cert.der")).unwrap()
    );
}

#[test]
fn wrong_user_pin_counts_down_to_locked() {
    let card = OpenPgpCard::start();
    let wrong = [
        "--token-label",
        USER_TOKEN,
        "--login",
        "--pin",
        "654321",
        "-O",
    ];
    let expected = [
        "login required, token initialized, PIN initialized",
        "login required, token initialized, final user PIN try, PIN initialized",
        "login required, token initialized, PIN initialized, user PIN locked",
    ];
    for flags in expected {
        let out = fails(&card, &wrong);
        assert!(out.contains("CKR_PIN_INCORRECT"), "{out}");
        // Both tokens share the user PIN's counter.
        for token in [USER_TOKEN, SIG_TOKEN] {
            assert_eq!(
                token_flags(&card, token).trim(),
                format!("token flags        : {flags}")
            );
        }
    }
    // Locked: the right PIN is refused too, still as CKR_PIN_INCORRECT.
    let right = fails(&card, &as_user(USER_TOKEN, &["-O"]));
    assert!(right.contains("CKR_PIN_INCORRECT"), "{right}");
}

#[test]
fn removed_card_comes_back_with_its_keys() {
    let mut card = OpenPgpCard::start();
    keygen(&card, USER_TOKEN, "EC:prime256v1", "03");
    let pubkey = card.dir().join("pub.der");
    let read = [
        "--token-label",
        USER_TOKEN,
        "--read-object",
        "--type",
        "pubkey",
        "--id",
        "03",
        "-o",
        pubkey.to_str().unwrap(),
    ];
    ok(&card, &read);
    let before = std::fs::read(&pubkey).unwrap();

    card.remove();
    let list = card.list_slots();
    assert!(list.contains("Virtual PCD 00 00\n  (empty)"), "{list}");

    card.insert();
    std::fs::remove_file(&pubkey).unwrap();
    ok(&card, &read);
    assert_eq!(std::fs::read(&pubkey).unwrap(), before);
}

#[test]
fn removal_and_insertion_are_slot_events() {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};

    let mut card = OpenPgpCard::start();
    for (name, value) in card.env() {
        // SAFETY: set before the module is loaded, while this test's process
        // runs no other threads that read the environment (nextest: a
        // process per test).
        unsafe { std::env::set_var(name, value) };
    }
    let pkcs11 = Pkcs11::new(card.module()).expect("load opensc-pkcs11.so");
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    assert_eq!(pkcs11.get_slots_with_token().unwrap().len(), 2);
    // Nothing happened yet.
    while pkcs11.get_slot_event().unwrap().is_some() {}

    card.remove();
    let removed = wait_for_slot_event(&pkcs11);
    assert_eq!(
        pkcs11.get_slots_with_token().unwrap().len(),
        0,
        "after event on {removed:?}"
    );

    card.insert();
    let inserted = wait_for_slot_event(&pkcs11);
    assert_eq!(
        pkcs11.get_slots_with_token().unwrap().len(),
        2,
        "after event on {inserted:?}"
    );
}

/// C_WaitForSlotEvent (blocking), given 20 seconds.
fn wait_for_slot_event(pkcs11: &cryptoki::context::Pkcs11) -> cryptoki::slot::Slot {
    let pkcs11 = pkcs11.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(pkcs11.wait_for_slot_event()));
    rx.recv_timeout(Duration::from_secs(20))
        .expect("no slot event within 20 s")
        .expect("C_WaitForSlotEvent")
}

// ---------------------------------------------------------------------
// certagent on the card: what a customer with an OpenPGP card runs.

/// A card with an RSA-2048 authentication key (slot 03) and a bank
/// certificate for it expiring in `days_left` days, provisioned the way
/// a bank's card tool does it (admin PIN); the bank's CA in `bank_dir`.
fn provisioned_card(days_left: i64) -> (OpenPgpCard, std::path::PathBuf) {
    let card = OpenPgpCard::start();
    let bank_dir = card.dir().join("bank");
    certagent_bank::init(&bank_dir).expect("bank CA");
    keygen(&card, USER_TOKEN, "rsa:2048", "03");
    let spki = slot_public_key(&card, USER_TOKEN, "03").expect("public key 03");
    let der = certagent_bank::issue(
        &bank_dir,
        "CN=Ana Novak,O=Demo Company d.o.o.,C=SI",
        &spki,
        days_left,
    )
    .expect("issued");
    let cert = card.dir().join("auth-cert.der");
    std::fs::write(&cert, der).expect("write");
    ok(
        &card,
        &as_admin(
            USER_TOKEN,
            &[
                "--write-object",
                &cert.display().to_string(),
                "--type",
                "cert",
                "--id",
                "03",
            ],
        ),
    );
    (card, bank_dir)
}

/// certagent configured for the card's user token through the `opensc`
/// profile; `pin` as CERTAGENT_PIN.
fn certagent(card: &OpenPgpCard, args: &[&str], pin: Option<&str>) -> std::process::Output {
    certagent_with(card, "", args, pin)
}

/// As [`certagent`], with `extra` configuration after `[token]`.
fn certagent_with(
    card: &OpenPgpCard,
    extra: &str,
    args: &[&str],
    pin: Option<&str>,
) -> std::process::Output {
    certagent_through(card, "opensc", extra, args, pin)
}

/// As [`certagent_with`], the card reached through `module` (a profile
/// name: `opensc`, or `p11-kit-proxy`, the Linux default, which loads
/// OpenSC as Debian registers it).
fn certagent_through(
    card: &OpenPgpCard,
    module: &str,
    extra: &str,
    args: &[&str],
    pin: Option<&str>,
) -> std::process::Output {
    let mut cmd = card_cli(card, module, extra, args);
    if let Some(pin) = pin {
        cmd.env("CERTAGENT_PIN", pin);
    }
    cmd.output().expect("certagent runs")
}

/// `certagent ARGS` for the card's user token through `module` (a profile
/// name or a library path), with `extra` configuration after `[token]`.
fn card_cli(card: &OpenPgpCard, module: &str, extra: &str, args: &[&str]) -> Command {
    let config = card.dir().join("certagent.toml");
    std::fs::write(
        &config,
        format!("[token]\nmodule = \"{module}\"\nlabel = \"{USER_TOKEN}\"\n{extra}"),
    )
    .expect("config");
    let mut cmd = common::certagent_in(card.dir());
    cmd.envs(card.env())
        .arg("--config")
        .arg(&config)
        .args(args)
        .stdin(std::process::Stdio::null());
    cmd
}

#[test]
fn certagent_reads_the_card_and_its_key_signs_pkcs1_only() {
    let (card, _bank) = provisioned_card(20);

    let out = certagent(&card, &["tokens"], None);
    assert!(out.status.success(), "{}", common::text(&out));
    let tokens = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        tokens.contains("profile opensc")
            && tokens.contains(USER_TOKEN)
            && tokens.contains(SIG_TOKEN),
        "{tokens}"
    );

    let out = certagent(&card, &["status", "--json"], None);
    assert!(out.status.success(), "{}", common::text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let certs = status["certificates"].as_array().expect("certificates");
    assert_eq!(certs.len(), 1, "{status}");
    assert_eq!(certs[0]["id"], "03", "{status}");
    assert_eq!(certs[0]["state"], "renewal-due", "{status}");
    assert_eq!(
        certs[0]["holder"], "Ana Novak (Demo Company d.o.o.)",
        "{status}"
    );

    // doctor logs in once and has the key sign a fresh challenge: PKCS#1
    // v1.5 only (the card has no RSA-PSS).
    let out = certagent(&card, &["doctor"], Some(USER_PIN));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains("ok    login")
            && report.contains("key signs and matches the certificate (RS256)"),
        "{}",
        common::text(&out)
    );
    assert!(!report.contains("PS256"), "{report}");
}

/// The card really counts: three wrong PINs lock it. `tokens` and `doctor`
/// say "final try" with one try left and "LOCKED" at none; doctor's one
/// C_Login per run is the only attempt (the counter moves by one), and a
/// locked card is never asked for a PIN again.
#[test]
fn a_pin_counter_going_3_1_locked_shows_in_tokens_and_doctor() {
    let (card, bank_dir) = provisioned_card(200);
    let pin_line = |card: &OpenPgpCard| {
        let out = certagent(card, &["tokens"], None);
        assert!(out.status.success(), "{}", common::text(&out));
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        // The user token's block: its PIN line.
        let block = t
            .split("- slot")
            .find(|b| b.contains(&format!("token \"{USER_TOKEN}\"")))
            .unwrap_or_else(|| panic!("no user token in\n{t}"))
            .to_string();
        block
            .lines()
            .find(|l| l.trim_start().starts_with("PIN "))
            .unwrap_or_else(|| panic!("no PIN line in\n{block}"))
            .trim()
            .to_string()
    };
    assert_eq!(pin_line(&card), "PIN ok");

    // Wrong once: the token rejects it; doctor says so and never retries.
    let out = certagent(&card, &["doctor"], Some("999999"));
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains("FAIL  login") && report.contains("rejected the PIN; it was not retried"),
        "{}",
        common::text(&out)
    );
    // One wrong PIN: the card's flags do not tell yet (OpenSC sets no
    // "count low").
    assert_eq!(pin_line(&card), "PIN ok");

    // Wrong twice: one try left.
    let out = certagent(&card, &["doctor"], Some("999999"));
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains("WARNING: one more wrong PIN locks the token"),
        "{report}"
    );
    assert_eq!(pin_line(&card), "PIN final try");
    let out = certagent(&card, &["doctor"], None);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains("warn  pin          PIN counter: final try"),
        "{}",
        common::text(&out)
    );

    // Wrong a third time: locked.
    let out = certagent(&card, &["doctor"], Some("999999"));
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("now locked"), "{}", common::text(&out));
    assert_eq!(pin_line(&card), "PIN LOCKED");

    // Locked: doctor stops at the PIN check and asks for no PIN, even the
    // right one (the card would refuse it as incorrect anyway).
    let out = certagent(&card, &["doctor"], Some(USER_PIN));
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains("FAIL  pin          the user PIN is locked") && !report.contains("login"),
        "{}",
        common::text(&out)
    );
    let (_rt, bank) = common::serve_bank(&bank_dir, certagent_bank::ServeOptions::default());
    let out = certagent_with(
        &card,
        &bank_config(&bank_dir, bank.addr()),
        &["renew", "--yes"],
        Some(USER_PIN),
    );
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(e.contains("locked"), "{}", common::text(&out));
}

fn bank_config(bank_dir: &std::path::Path, addr: std::net::SocketAddr) -> String {
    format!(
        "[bank]\nest_url = \"https://{addr}/.well-known/est\"\nserver_roots = \"{}\"\n",
        bank_dir.join("tls-roots.pem").display()
    )
}

/// As [`certagent_through`], with the card's admin PIN as well
/// (CERTAGENT_ADMIN_PIN), as a renewal on the card asks for it.
fn certagent_admin(
    card: &OpenPgpCard,
    module: &str,
    extra: &str,
    args: &[&str],
    admin_pin: &str,
) -> std::process::Output {
    card_cli(card, module, extra, args)
        .env("CERTAGENT_PIN", USER_PIN)
        .env("CERTAGENT_ADMIN_PIN", admin_pin)
        .output()
        .expect("certagent runs")
}

/// The object of `kind` (`pubkey`, `cert`) in key slot `id` on `token`, as
/// pkcs11-tool reads it (DER); `None` when there is none.
fn read_object(card: &OpenPgpCard, token: &str, kind: &str, id: &str) -> Option<Vec<u8>> {
    let path = card.dir().join(format!("{kind}-{id}.der"));
    let _ = std::fs::remove_file(&path);
    let (success, _) = run(
        card,
        &[
            "--token-label",
            token,
            "--read-object",
            "--type",
            kind,
            "--id",
            id,
            "-o",
            &path.display().to_string(),
        ],
    );
    success.then(|| std::fs::read(&path).expect("object"))
}

/// The public key in key slot `id` as pkcs11-tool reads it (DER SPKI).
fn slot_public_key(card: &OpenPgpCard, token: &str, id: &str) -> Option<Vec<u8>> {
    read_object(card, token, "pubkey", id)
}

/// A renewal on the OpenPGP card: the new key is generated with the admin
/// PIN into the free signature slot 01 (on the card's second token), the
/// request goes over TLS 1.2 with PKCS#1 (the card has no PSS), and the
/// bank's certificate lands in slot 01 with the new key. The old
/// certificate in 03 is removed; the old key stays (the card cannot
/// delete keys) and is reported. Afterwards status shows one valid bank
/// certificate, whose key is the card's new one, and doctor signs with it.
#[test]
fn a_renewal_on_the_card_uses_its_free_slot_and_the_admin_pin() {
    let (card, bank_dir) = provisioned_card(20);
    let (_rt, bank) = common::serve_bank(&bank_dir, certagent_bank::ServeOptions::default());
    let config = bank_config(&bank_dir, bank.addr());
    let old_key = slot_public_key(&card, USER_TOKEN, "03").expect("key 03");

    let out = certagent_admin(&card, "opensc", &config, &["renew", "--yes"], ADMIN_PIN);
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    for line in [
        "in its free key slot 01",
        "reading the card again",
        "removed the old certificate (slot 03)",
        "the old key stays in the card's key slot 03",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }

    let out = certagent_with(&card, &config, &["status", "--json"], None);
    let status = common::stdout(&out);
    assert!(out.status.success(), "{}", common::text(&out));
    let j: serde_json::Value = serde_json::from_str(&status).expect("json");
    let certs: Vec<&serde_json::Value> = j["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .collect();
    assert_eq!(certs.len(), 1, "{status}");
    assert_eq!(certs[0]["id"], "01", "{status}");
    assert_eq!(certs[0]["state"], "valid", "{status}");

    // The certificate's key is the card's new key in slot 01, not the old one.
    let new_key = slot_public_key(&card, SIG_TOKEN, "01").expect("key 01 on the signature token");
    assert_ne!(new_key, old_key);
    let cert = card.dir().join("new-cert.der");
    std::fs::write(
        &cert,
        read_object(&card, SIG_TOKEN, "cert", "01").expect("certificate 01"),
    )
    .expect("write");
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&cert)
        .args(["-pubkey", "-noout"])
        .output()
        .expect("openssl");
    let pem = String::from_utf8_lossy(&out.stdout).into_owned();
    let out = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(pem.as_bytes())?;
            c.wait_with_output()
        })
        .expect("openssl pkey");
    assert_eq!(
        out.stdout, new_key,
        "the certificate's key is the card's new key"
    );
    // The old key is still on the card (deletes do nothing), its
    // certificate is gone.
    assert_eq!(slot_public_key(&card, USER_TOKEN, "03"), Some(old_key));

    let out = certagent(&card, &["doctor"], Some(USER_PIN));
    let report = common::stdout(&out);
    assert!(
        out.status.success() && report.contains("key signs and matches the certificate (RS256)"),
        "{}",
        common::text(&out)
    );

    // The agent finds the new certificate on the card's other token and
    // logs on with its key: one PIN, one C_Login (on that token).
    use base64::Engine;
    let agent = CardAgent::start(&card, &bank_dir, bank.addr());
    let chal64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let r = agent.logon(&chal64);
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    assert_eq!(t["algorithm"], "RS256", "{t}");
    assert_eq!(agent.logins(), 1, "one C_Login, seen by the spy");
    assert_eq!(
        common::prompts_seen(&agent.prompt_dir),
        ["CONFIRM", "GETPIN"]
    );
}

/// A provisioned card (bank certificate in 03, 20 days left), the bank
/// and a configuration with a renewal window of 400 days, agent and bank
/// alike: every new certificate is due at once.
fn card_with_wide_window() -> (
    OpenPgpCard,
    String,
    tokio::runtime::Runtime,
    certagent_bank::RunningBank,
) {
    let (card, bank_dir) = provisioned_card(20);
    let policy = certagent::policy::Policy {
        renew_window_days: 400,
        ..Default::default()
    };
    let (rt, bank) = common::serve_bank(
        &bank_dir,
        certagent_bank::ServeOptions {
            policy,
            ..Default::default()
        },
    );
    let config = format!(
        "[policy]\nrenew_window_days = 400\n{}",
        bank_config(&bank_dir, bank.addr())
    );
    (card, config, rt, bank)
}

/// Renewal after renewal on the card. The first goes from slot 03 into
/// the free slot 01 and leaves the old key in 03, recorded as retired. The
/// second goes back into 03, over that retired key (OpenSC replaces slot
/// 03's key when no id is given; an explicit id into an occupied slot is
/// refused); the certificate in 01 cannot be removed without erasing 03's
/// on this card, so it stays, replaced: listed apart, never used or
/// renewed. The third finds no slot it may use (01 holds a key with a
/// certificate) and is refused before anything is asked or changed.
/// (A renewal window of 400 days makes each new certificate due at once.)
#[test]
fn renewal_after_renewal_alternates_slots_then_says_the_card_is_full() {
    let (card, config, _rt, _bank) = card_with_wide_window();
    let first_key = slot_public_key(&card, USER_TOKEN, "03").expect("key 03");

    let out = certagent_admin(&card, "opensc", &config, &["renew", "--yes"], ADMIN_PIN);
    assert!(out.status.success(), "{}", common::text(&out));
    // What the user reads: no "resuming" in a run never interrupted (the
    // card is read again within it), and the summary names the object as
    // the card shows it (pkcs11-tool: id 01, "SIG certificate" on the
    // signature token), with the issued certificate's own end date.
    let said = common::text(&out);
    assert!(!said.contains("resuming the attempt"), "{said}");
    let label = card_certificate_label(&card, SIG_TOKEN, "01");
    assert!(
        said.contains(&format!("id 01 label \"{label}\"")),
        "the summary's label is not the card's {label:?}: {said}"
    );
    assert!(!said.contains("New one until"), "{said}");
    let second_key = slot_public_key(&card, SIG_TOKEN, "01").expect("key 01");
    assert_eq!(
        bank_certificates(&card, &config),
        vec![("01".to_owned(), "renewal-due".to_owned())]
    );

    let out = certagent_admin(&card, "opensc", &config, &["renew", "--yes"], ADMIN_PIN);
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("in key slot 03, replacing the old key certagent retired there"),
        "{text}"
    );
    assert!(
        text.contains("the old certificate stays in slot 01"),
        "{text}"
    );
    let third_key = slot_public_key(&card, USER_TOKEN, "03").expect("key 03 again");
    assert_ne!(third_key, first_key, "the retired key was replaced");
    assert_eq!(slot_public_key(&card, SIG_TOKEN, "01"), Some(second_key));
    assert_eq!(
        bank_certificates(&card, &config),
        vec![("03".to_owned(), "renewal-due".to_owned())]
    );
    let said = common::text(&out);
    assert!(!said.contains("resuming the attempt"), "{said}");
    let label = card_certificate_label(&card, USER_TOKEN, "03");
    assert!(
        said.contains(&format!("id 03 label \"{label}\"")),
        "the summary's label is not the card's {label:?}: {said}"
    );
    let out = certagent_with(&card, &config, &["status", "--json"], None);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["other_certificates"][0]["id"], "01", "{j}");
    assert_eq!(j["other_certificates"][0]["replaced"], true, "{j}");
    // The replaced bank certificate under a heading of its own, not among
    // the certificates that are not the bank's.
    let out = certagent_with(&card, &config, &["status"], None);
    let listing = common::stdout(&out);
    assert!(
        listing.contains("replaced by a newer one") && !listing.contains("not the bank's"),
        "{listing}"
    );
    let out = certagent(&card, &["doctor"], Some(USER_PIN));
    assert!(
        common::stdout(&out).contains("key signs and matches the certificate (RS256)"),
        "{}",
        common::text(&out)
    );

    let out = certagent_admin(&card, "opensc", &config, &["renew", "--yes"], ADMIN_PIN);
    let e = common::stderr(&out);
    assert!(!out.status.success(), "{}", common::text(&out));
    assert!(
        e.contains("no free key slot")
            && e.contains(
                "slot 01 holds the retired key of the bank certificate certagent replaced"
            )
            && !e.contains("did not retire")
            && e.contains("nothing was changed"),
        "{}",
        common::text(&out)
    );
    assert!(!e.contains("[generating-key]"), "{e}");
    assert_eq!(slot_public_key(&card, USER_TOKEN, "03"), Some(third_key));
}

/// An agent that runs while `certagent renew` renews the card (OpenSC in
/// the agent's process still shows the card as it read it): its next
/// logon uses the new certificate and key, on the card's other token.
#[test]
fn an_agent_running_during_a_card_renewal_logs_on_with_the_new_certificate() {
    use base64::Engine;
    let (card, bank_dir) = provisioned_card(20);
    let (_rt, bank) = common::serve_bank(&bank_dir, certagent_bank::ServeOptions::default());
    let config = bank_config(&bank_dir, bank.addr());
    let agent = CardAgent::start(&card, &bank_dir, bank.addr());
    let chal64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([5u8; 32]);
    let before = agent.logon(&chal64);
    assert_eq!(before.status, 200, "{}", before.body);

    let out = certagent_admin(&card, "opensc", &config, &["renew", "--yes"], ADMIN_PIN);
    assert!(out.status.success(), "{}", common::text(&out));
    let renewed = base64::engine::general_purpose::STANDARD
        .encode(read_object(&card, SIG_TOKEN, "cert", "01").expect("renewed certificate"));

    let after = agent.logon(&chal64);
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(
        after.json()["certificate"],
        renewed.as_str(),
        "{}",
        after.body
    );
    let status = common::agent::page_to(agent.port, "GET", "/v1/status", "").json();
    assert_eq!(status["certificates"][0]["state"], "valid", "{status}");
}

/// The agent renews the card when the bank's page asks: the user allows
/// it, gives the PIN and then the card's admin PIN in a dialog of its own;
/// the agent reads the card again where OpenSC needs it and ends with the
/// new certificate in slot 01, which its next logon uses.
#[test]
fn the_agent_renews_the_card_with_the_pin_and_the_admin_pin() {
    use base64::Engine;
    let (card, bank_dir) = provisioned_card(20);
    let (_rt, bank) = common::serve_bank(&bank_dir, certagent_bank::ServeOptions::default());
    let config = bank_config(&bank_dir, bank.addr());
    let agent = CardAgent::start(&card, &bank_dir, bank.addr());
    std::fs::write(agent.prompt_dir.join("admin-pin"), ADMIN_PIN).expect("admin pin");

    let r = common::agent::page_to(agent.port, "POST", "/v1/renewals", "{}");
    assert!(r.status == 200 || r.status == 202, "{}", r.body);
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let s = common::agent::page_to(agent.port, "GET", &format!("/v1/renewals/{id}"), "").json();
        if s["state"] != "running" {
            break s;
        }
        assert!(Instant::now() < deadline, "still running: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        common::prompts_seen(&agent.prompt_dir),
        ["CONFIRM", "GETPIN", "GETPIN"]
    );
    let descriptions = agent.pin_descriptions();
    assert!(descriptions[1].contains("ADMIN PIN"), "{descriptions:?}");
    assert_eq!(
        bank_certificates(&card, &config),
        vec![("01".to_owned(), "valid".to_owned())]
    );
    let chal64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([3u8; 32]);
    let r = agent.logon(&chal64);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["certificate"], done["certificate"], "{}", r.body);
}

/// The agent polls a card module (it never waits in C_WaitForSlotEvent on
/// a module it may initialise again): a card taken out and put back shows
/// in the page's status within seconds.
#[test]
fn the_agent_sees_the_card_go_and_come_back() {
    let (mut card, bank_dir) = provisioned_card(200);
    let (_rt, bank) = common::serve_bank(&bank_dir, certagent_bank::ServeOptions::default());
    let agent = CardAgent::start(&card, &bank_dir, bank.addr());
    let present = |agent: &CardAgent| {
        common::agent::page_to(agent.port, "GET", "/v1/status", "").json()["token_present"] == true
    };
    let within = |agent: &CardAgent, want: bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while present(agent) != want {
            assert!(
                Instant::now() < deadline,
                "token_present never became {want}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    within(&agent, true);
    card.remove();
    let gone = Instant::now();
    within(&agent, false);
    println!("removal seen after {:?}", gone.elapsed());
    card.insert();
    let back = Instant::now();
    within(&agent, true);
    println!("insertion seen after {:?}", back.elapsed());
}

/// After expiry, the bank's ID and one-time password bring a new
/// certificate onto the card (`certagent enroll`): the new key goes into
/// the free slot 01 with the admin PIN, no TLS client certificate is used,
/// and the expired certificate in 03 is removed.
#[test]
fn an_enrolment_on_the_card_replaces_the_expired_certificate() {
    let (card, bank_dir) = provisioned_card(-5);
    let otp = certagent_bank::add_user(&bank_dir, "ana", "CN=Ana Novak,O=Demo Company d.o.o.,C=SI")
        .expect("bank user");
    let (_rt, bank) = common::serve_bank(&bank_dir, certagent_bank::ServeOptions::default());
    let config = bank_config(&bank_dir, bank.addr());
    assert_eq!(
        bank_certificates(&card, &config),
        vec![("03".to_owned(), "expired".to_owned())]
    );
    let out = card_cli(
        &card,
        "opensc",
        &config,
        &["enroll", "--user", "ana", "--yes"],
    )
    .env("CERTAGENT_PIN", USER_PIN)
    .env("CERTAGENT_ADMIN_PIN", ADMIN_PIN)
    .env("CERTAGENT_OTP", &otp)
    .output()
    .expect("certagent runs");
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("in its free key slot 01"), "{text}");
    assert!(
        text.contains("removed the old certificate (slot 03)"),
        "{text}"
    );
    assert_eq!(
        bank_certificates(&card, &config),
        vec![("01".to_owned(), "valid".to_owned())]
    );
    let out = certagent(&card, &["doctor"], Some(USER_PIN));
    assert!(
        common::stdout(&out).contains("key signs and matches the certificate (RS256)"),
        "{}",
        common::text(&out)
    );
}

/// The same renewal through p11-kit's proxy, the default module on Linux
/// (Debian registers OpenSC with it): the proxy carries the card family
/// too, and initialising the proxy again initialises OpenSC behind it.
#[test]
fn a_renewal_on_the_card_through_p11_kit() {
    let (card, bank_dir) = provisioned_card(20);
    let (_rt, bank) = common::serve_bank(&bank_dir, certagent_bank::ServeOptions::default());
    let config = bank_config(&bank_dir, bank.addr());
    let out = certagent_admin(
        &card,
        "p11-kit-proxy",
        &config,
        &["renew", "--yes"],
        ADMIN_PIN,
    );
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("in its free key slot 01"), "{text}");
    let out = certagent_through(&card, "p11-kit-proxy", &config, &["status", "--json"], None);
    assert!(out.status.success(), "{}", common::text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["certificates"][0]["id"], "01", "{j}");
    assert_eq!(j["certificates"][0]["state"], "valid", "{j}");
    assert_eq!(j["certificates"].as_array().map(Vec::len), Some(1), "{j}");
}

/// A wrong admin PIN stops the renewal at the key generation: the card
/// is asked once (never again automatically), nothing is generated, the
/// certificate stays usable; the same command with the right admin PIN
/// continues the journalled attempt and finishes it.
#[test]
fn a_wrong_admin_pin_stops_the_card_renewal_and_the_next_run_finishes_it() {
    let (card, bank_dir) = provisioned_card(20);
    let (_rt, bank) = common::serve_bank(&bank_dir, certagent_bank::ServeOptions::default());
    let config = bank_config(&bank_dir, bank.addr());

    let out = certagent_admin(&card, "opensc", &config, &["renew", "--yes"], "87654321");
    assert!(!out.status.success(), "{}", common::text(&out));
    let e = common::stderr(&out);
    assert!(
        e.contains("rejected the admin PIN; it was not retried"),
        "{}",
        common::text(&out)
    );
    assert_eq!(
        slot_public_key(&card, SIG_TOKEN, "01"),
        None,
        "no key generated"
    );
    assert_eq!(
        bank_certificates(&card, &config),
        vec![("03".to_owned(), "renewal-due".to_owned())]
    );
    let out = certagent_admin(&card, "opensc", &config, &["renew", "--yes"], ADMIN_PIN);
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("resuming the attempt"), "{text}");
    assert_eq!(
        bank_certificates(&card, &config),
        vec![("01".to_owned(), "valid".to_owned())]
    );
}

/// The bank certificates `status --json` shows on the card: (id, state).
fn bank_certificates(card: &OpenPgpCard, config: &str) -> Vec<(String, String)> {
    let out = certagent_with(card, config, &["status", "--json"], None);
    assert!(out.status.success(), "{}", common::text(&out));
    let j: serde_json::Value = serde_json::from_str(&common::stdout(&out)).expect("json");
    j["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_owned(),
                c["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A fault at PKCS#11 calls of a renewal on the card: through the
/// forwarding module (tests/fault-module) in front of OpenSC, the card
/// disappears at call N (every later call fails with CKR_DEVICE_REMOVED)
/// or the process is killed there, re-initialisations of the module
/// included. After each: the card still has a usable bank certificate,
/// and the next, unfaulted run ends with exactly one bank certificate,
/// valid, in slot 01, that doctor signs with. Each index needs a fresh
/// card (the slot the renewal used is taken for good); the first and last
/// index and a dozen more from an offset that moves from run to run
/// ([`card_fault_indices`]); `scripts/faults.sh` runs every call. Each
/// fault must fire, and the faulted run must end as the fault says.
#[test]
fn a_fault_at_pkcs11_calls_of_a_card_renewal_recovers() {
    let setup = || {
        let (card, bank_dir) = provisioned_card(20);
        let (rt, bank) = common::serve_bank(&bank_dir, certagent_bank::ServeOptions::default());
        let config = bank_config(&bank_dir, bank.addr());
        (card, config, rt, bank)
    };
    fault_sweep("card renewal", setup, ("01", "valid"), "renewal opens");
}

/// As [`a_fault_at_pkcs11_calls_of_a_card_renewal_recovers`], for the
/// second renewal on a card: back into slot 03, over the key the first
/// renewal retired there (generated without an id; resume tells the new
/// key from the retired one by the journalled public key). A renewal
/// window of 400 days makes each new certificate due at once; a run after
/// a finished renewal finds no slot it may use.
#[test]
fn a_fault_at_pkcs11_calls_of_a_second_card_renewal_recovers() {
    let setup = || {
        let (card, config, rt, bank) = card_with_wide_window();
        let out = certagent_admin(&card, "opensc", &config, &["renew", "--yes"], ADMIN_PIN);
        assert!(out.status.success(), "{}", common::text(&out));
        (card, config, rt, bank)
    };
    fault_sweep(
        "second card renewal",
        setup,
        ("03", "renewal-due"),
        "no free key slot",
    );
}

/// Count the calls of an unfaulted renewal on a card from `setup`, then
/// for every stride-th call index, pulled and killed, on a fresh card from
/// `setup`: a usable bank certificate is left, and the next unfaulted run
/// (or, when the faulted one had finished, its refusal saying `finished`)
/// leaves exactly the bank certificate `want` that doctor signs with.
fn fault_sweep(
    what: &str,
    setup: impl Fn() -> (
        OpenPgpCard,
        String,
        tokio::runtime::Runtime,
        certagent_bank::RunningBank,
    ),
    want: (&str, &str),
    finished: &str,
) {
    let fault = common::fault_module();
    let module = fault.display().to_string();
    let (card, config, _rt, _bank) = setup();
    let log = card.dir().join("calls.log");
    let out = certagent_faulted(&card, &module, &config, None, Some(&log));
    assert!(out.status.success(), "{}", common::text(&out));
    let total = std::fs::read_to_string(&log)
        .expect("call log")
        .lines()
        .count() as u64;
    assert!(total > 50, "a {what} makes {total} calls");
    drop(card);
    let indices = card_fault_indices(total);
    let want = vec![(want.0.to_owned(), want.1.to_owned())];
    let mut table = Vec::new();
    for mode in [Mode::Pulled, Mode::Killed] {
        let (mut tried, mut recovered) = (0, 0);
        for &n in &indices {
            tried += 1;
            let (card, config, _rt, _bank) = setup();
            let fired = card.dir().join("fired.log");
            let out = certagent_faulted(&card, &module, &config, Some((n, mode, &fired)), None);
            let what = format!("{what}, {mode:?} at call {n} of {total}");
            faults::assert_fired(&fired, n, mode, &what);
            faults::assert_ended_cleanly(
                out.status,
                &common::stderr(&out),
                mode,
                &format!("{what}\n{}", common::text(&out)),
            );
            if mode == Mode::Pulled && !out.status.success() {
                let err = common::stderr(&out);
                let last = err.lines().last().unwrap_or("");
                assert!(
                    last.starts_with("certagent: ") && !last.trim_end().ends_with(':'),
                    "{what}: not a one-line reason: {last:?}\n{}",
                    common::text(&out)
                );
            }
            let usable = bank_certificates(&card, &config);
            assert!(
                usable
                    .iter()
                    .any(|(_, s)| s == "valid" || s == "renewal-due"),
                "{what}: no usable certificate left: {usable:?}\n{}",
                common::text(&out)
            );
            let again = certagent_admin(&card, "opensc", &config, &["renew", "--yes"], ADMIN_PIN);
            // A fault after the very end leaves nothing to do.
            let done_before = common::stderr(&again).contains(finished);
            assert!(
                again.status.success() || done_before,
                "{what}: the next run failed:\n{}\nthe faulted run:\n{}",
                common::text(&again),
                common::text(&out)
            );
            assert_eq!(
                bank_certificates(&card, &config),
                want,
                "{what}:\n{}",
                common::text(&again)
            );
            let doctor = certagent(&card, &["doctor"], Some(USER_PIN));
            assert!(
                common::stdout(&doctor).contains("key signs and matches the certificate (RS256)"),
                "{what}: {}",
                common::text(&doctor)
            );
            recovered += 1;
        }
        table.push(format!(
            "{what} {mode:?}: {recovered}/{tried} recovered ({total} calls: {})",
            describe(&indices)
        ));
    }
    println!("{}", table.join("\n"));
}

/// The call indices a card sweep faults, of `total`: the first and the
/// last, and every `CERTAGENT_FAULT_CARD_STRIDE`-th from an offset that
/// moves from run to run (`CERTAGENT_FAULT_CARD_OFFSET`, else the clock),
/// so runs over time cover every index. Stride 1 is every call.
fn card_fault_indices(total: u64) -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let stride = var("CERTAGENT_FAULT_CARD_STRIDE")
        .filter(|&s| s > 0)
        .unwrap_or(total / 12 + 1);
    let offset = var("CERTAGENT_FAULT_CARD_OFFSET").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }) % stride;
    let mut all: Vec<u64> = (1 + offset..=total).step_by(stride as usize).collect();
    all.push(1);
    all.push(total);
    all.sort_unstable();
    all.dedup();
    all
}

/// The indices as a person reads them (to rerun one: the offset printed).
fn describe(indices: &[u64]) -> String {
    indices
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `certagent renew --yes` on the card through the forwarding module,
/// with a fault at call N reported into a file (see `common::faults`) and
/// a call log if asked.
fn certagent_faulted(
    card: &OpenPgpCard,
    module: &str,
    config: &str,
    fault: Option<(u64, Mode, &std::path::Path)>,
    log: Option<&std::path::Path>,
) -> std::process::Output {
    let mut cmd = card_cli(card, module, config, &["renew", "--yes"]);
    cmd.env("CERTAGENT_PIN", USER_PIN)
        .env("CERTAGENT_ADMIN_PIN", ADMIN_PIN)
        .env("FAULT_PKCS11_MODULE", card.module());
    if let Some((n, mode, fired)) = fault {
        faults::arm(&mut cmd, n, mode, fired);
    }
    if let Some(log) = log {
        cmd.env("FAULT_PKCS11_LOG", log);
    }
    cmd.output().expect("certagent runs")
}

/// `certagent run` on the card, its PIN dialog the scripted pinentry, its
/// token behind OpenSC's spy (to count C_Login); killed when dropped.
struct CardAgent {
    child: std::process::Child,
    port: u16,
    prompt_dir: std::path::PathBuf,
    spy_log: std::path::PathBuf,
}

impl CardAgent {
    fn start(card: &OpenPgpCard, bank_dir: &std::path::Path, bank: std::net::SocketAddr) -> Self {
        let (pinentry, prompt_dir) = common::scripted_pinentry(card.dir());
        std::fs::write(prompt_dir.join("pin"), USER_PIN).expect("pin");
        let port = common::agent::free_port();
        let config = card.dir().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[token]\nmodule = \"{}\"\nlabel = \"{USER_TOKEN}\"\n{}origins = [\"{}\"]\n[agent]\nlisten = \"127.0.0.1:{port}\"\npinentry = \"{}\"\n",
                common::spy_module().display(),
                bank_config(bank_dir, bank),
                common::agent::ORIGIN,
                pinentry.display()
            ),
        )
        .expect("config");
        let spy_log = card.dir().join("spy.log");
        let mut cmd = common::certagent_in(card.dir());
        cmd.envs(card.env())
            .env("PKCS11SPY", card.module())
            .env("PKCS11SPY_OUTPUT", &spy_log)
            .env("PINENTRY_TEST_DIR", &prompt_dir)
            .arg("--config")
            .arg(&config);
        CardAgent {
            child: common::start_agent_process(cmd),
            port,
            prompt_dir,
            spy_log,
        }
    }

    fn logon(&self, challenge: &str) -> common::agent::Reply {
        common::agent::page_to(
            self.port,
            "POST",
            "/v1/logon",
            &format!("{{\"challenge\":\"{challenge}\"}}"),
        )
    }

    fn logins(&self) -> usize {
        std::fs::read_to_string(&self.spy_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("C_Login"))
            .count()
    }

    /// The descriptions the PIN dialogs showed.
    fn pin_descriptions(&self) -> Vec<String> {
        std::fs::read_to_string(self.prompt_dir.join("lines"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("SETDESC") && l.contains("PIN"))
            .map(String::from)
            .collect()
    }
}

impl Drop for CardAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A logon from the bank's page through the agent on the card: signed
/// RS256 (the card has no RSA-PSS), one C_Login, accepted by the bank's own
/// verifier. With one PIN try left the PIN dialog says it is the last;
/// a locked card is never asked for a PIN.
#[test]
fn logon_through_the_agent_on_the_card() {
    use base64::Engine;
    let (card, bank_dir) = provisioned_card(200);
    let (_rt, bank) = common::serve_bank(&bank_dir, certagent_bank::ServeOptions::default());
    let agent = CardAgent::start(&card, &bank_dir, bank.addr());
    let chal64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([9u8; 32]);

    let r = agent.logon(&chal64);
    assert_eq!(r.status, 200, "{}", r.body);
    let mut t = r.json();
    assert_eq!(t["algorithm"], "RS256", "no RSA-PSS on the card: {t}");
    assert_eq!(
        common::prompts_seen(&agent.prompt_dir),
        ["CONFIRM", "GETPIN"]
    );
    assert_eq!(agent.logins(), 1, "one C_Login, seen by the spy");

    use certagent_bank::store::{Paths, State};
    let paths = Paths::new(&bank_dir);
    let ca_pem = std::fs::read(paths.ca_cert()).expect("ca.pem");
    let (_, ca_der) = der::pem::decode_vec(&ca_pem).expect("ca pem");
    let state = State::load(&paths).expect("bank state");
    t["challenge"] = serde_json::Value::String(chal64.clone());
    let who = certagent_bank::logon::verify_body(
        &serde_json::to_vec(&t).expect("json"),
        Some(&chal64),
        common::agent::ORIGIN,
        &ca_der,
        &state,
        &certagent::policy::Policy::default(),
        time::OffsetDateTime::now_utc(),
    )
    .expect("the bank accepts the logon");
    assert_eq!(who.holder, "Ana Novak (Demo Company d.o.o.)");

    // Two wrong PINs elsewhere (doctor): one try left. The agent's PIN
    // dialog says so; the right PIN then logs on (and the card's counter
    // starts again).
    for _ in 0..2 {
        let out = certagent(&card, &["doctor"], Some("999999"));
        assert!(!out.status.success(), "{}", common::text(&out));
    }
    // The page's status says so too, though no slot event told the agent.
    let status = common::agent::page_to(agent.port, "GET", "/v1/status", "").json();
    assert_eq!(status["token"]["pin_final_try"], true, "{status}");
    let r = agent.logon(&chal64);
    assert_eq!(r.status, 200, "{}", r.body);
    let warned = agent.pin_descriptions();
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(!warned[0].contains("last try"), "{warned:?}");
    assert!(warned[1].contains("last try"), "{warned:?}");
    assert_eq!(agent.logins(), 2);

    // Locked (three wrong PINs): no PIN is asked and the card sees no
    // login. (The user's consent still comes first: a page learns nothing
    // of the card, not even that it is locked, before the user allows it.)
    for _ in 0..3 {
        let out = certagent(&card, &["doctor"], Some("999999"));
        assert!(!out.status.success(), "{}", common::text(&out));
    }
    let status = common::agent::page_to(agent.port, "GET", "/v1/status", "").json();
    assert_eq!(status["token"]["pin_locked"], true, "{status}");
    let asked = common::prompts_seen(&agent.prompt_dir).len();
    let r = agent.logon(&chal64);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "pin-locked", "{}", r.body);
    assert_eq!(
        common::prompts_seen(&agent.prompt_dir)[asked..],
        ["CONFIRM"],
        "the consent, and no PIN dialog"
    );
    assert_eq!(agent.logins(), 2, "no C_Login on a locked card");
}

/// The label pkcs11-tool shows for the certificate `id` on the card's
/// token `token_label`.
fn card_certificate_label(card: &OpenPgpCard, token_label: &str, id: &str) -> String {
    let out = Command::new("pkcs11-tool")
        .envs(card.env())
        .arg("--module")
        .arg(card.module())
        .args([
            "--token-label",
            token_label,
            "-O",
            "--type",
            "cert",
            "--id",
            id,
        ])
        .output()
        .expect("pkcs11-tool");
    assert!(out.status.success(), "{}", common::text(&out));
    let listing = common::stdout(&out);
    listing
        .lines()
        .find_map(|l| l.trim().strip_prefix("label:"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| panic!("no label in {listing}"))
}

/// A card pulled during a renewal (at its key generation, and at the
/// certificate write): `renew` says the card was removed, at which step,
/// and that the same command resumes; the next run finishes.
#[test]
fn a_card_pulled_during_the_renewal_says_so_and_how_to_go_on() {
    let fault = common::fault_module();
    let module = fault.display().to_string();
    for call in ["C_GenerateKeyPair", "C_CreateObject"] {
        let (card, bank_dir) = provisioned_card(20);
        let (_rt, bank) = common::serve_bank(&bank_dir, certagent_bank::ServeOptions::default());
        let config = bank_config(&bank_dir, bank.addr());
        // Where the call comes, from an unfaulted count on a twin card.
        let n = {
            let (twin, twin_bank) = provisioned_card(20);
            let (_rt2, bank2) =
                common::serve_bank(&twin_bank, certagent_bank::ServeOptions::default());
            let twin_config = bank_config(&twin_bank, bank2.addr());
            let log = twin.dir().join("calls.log");
            let out = certagent_faulted(&twin, &module, &twin_config, None, Some(&log));
            assert!(out.status.success(), "{}", common::text(&out));
            let calls = std::fs::read_to_string(&log).expect("log");
            calls
                .lines()
                .find_map(|l| {
                    let (n, f) = l.split_once(' ')?;
                    (f == call).then(|| n.parse::<u64>().ok()).flatten()
                })
                .unwrap_or_else(|| panic!("no {call} in the renewal"))
        };
        let fired = card.dir().join("fired.log");
        let out = certagent_faulted(
            &card,
            &module,
            &config,
            Some((n, Mode::Pulled, &fired)),
            None,
        );
        faults::assert_fired(&fired, n, Mode::Pulled, call);
        let e = common::stderr(&out);
        let last = e.lines().last().unwrap_or("");
        assert!(!out.status.success(), "{call}: {}", common::text(&out));
        assert!(
            last.contains("the card was removed during the renewal")
                && last.contains("run `certagent renew` again"),
            "{call}: {}",
            common::text(&out)
        );
        let again = certagent_admin(&card, "opensc", &config, &["renew", "--yes"], ADMIN_PIN);
        assert!(again.status.success(), "{call}: {}", common::text(&again));
        assert_eq!(
            bank_certificates(&card, &config),
            vec![("01".to_owned(), "valid".to_owned())],
            "{call}"
        );
    }
}
