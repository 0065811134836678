//! The `certagent` command line against a SoftHSM token provisioned only by
//! pkcs11-tool and openssl (scripts/provision-token.sh).

mod common;

use std::process::Command;

use common::{LABEL, PIN, SoftHsm, json, stderr, stdout, text};
use serde_json::Value;

#[test]
fn status_reports_each_lifecycle_state_with_ids_and_days_left() {
    let hsm = SoftHsm::empty();
    hsm.provision(LABEL, &[200, 20, -5, -100]);
    let config = hsm.config("softhsm2", "");

    let status = json(&hsm.certagent(&config, &["status", "--json"], None));
    assert_eq!(status["token"]["label"], LABEL);
    let certs = status["certificates"].as_array().expect("certificates");
    assert_eq!(
        common::states(&status),
        [
            ("01".to_string(), 200, "valid".to_string()),
            ("02".to_string(), 20, "renewal-due".to_string()),
            ("03".to_string(), -5, "expired".to_string()),
            ("04".to_string(), -100, "lapsed".to_string()),
        ]
    );
    for c in certs {
        for key in ["subject", "serial", "not_before", "not_after"] {
            assert!(
                c[key].as_str().is_some_and(|s| !s.is_empty()),
                "{key} in {c}"
            );
        }
        assert!(c["subject"].as_str().expect("subject").contains("CN=User"));
        // Only a lapsed certificate has no notice left.
        assert_eq!(c["next_notice"].is_null(), c["state"] == "lapsed", "{c}");
    }

    // The human form says the same.
    let human = hsm.certagent(&config, &["status"], None);
    assert!(human.status.success(), "{}", text(&human));
    let h = stdout(&human);
    for want in [
        "valid (expires in 200 days)",
        "renewal-due (expires in 20 days)",
        "expired (expired 5 days ago)",
        "lapsed (expired 100 days ago)",
    ] {
        assert!(h.contains(want), "{want} missing in\n{h}");
    }
}

#[test]
fn tokens_lists_the_token_and_its_profile() {
    let hsm = SoftHsm::new();
    let config = hsm.config("softhsm2", "");
    let t = json(&hsm.certagent(&config, &["tokens", "--json"], None));
    assert_eq!(t["module"]["profile"], "softhsm2");
    let slots = t["slots"].as_array().expect("slots");
    let ours: Vec<&Value> = slots
        .iter()
        .filter(|s| s["token"]["label"] == LABEL)
        .collect();
    assert_eq!(ours.len(), 1, "{t}");
    let tok = &ours[0]["token"];
    assert_eq!(tok["manufacturer"], "SoftHSM project");
    assert_eq!(tok["pin_locked"], false);
    assert_eq!(tok["protected_auth_path"], false);
    assert!(
        ours[0]["uri"]
            .as_str()
            .expect("uri")
            .contains("token=bank-token")
    );

    let human = stdout(&hsm.certagent(&config, &["tokens"], None));
    assert!(
        human.contains("profile softhsm2") && human.contains("\"bank-token\""),
        "{human}"
    );
}

#[test]
fn doctor_passes_on_a_token_made_by_other_tools() {
    let hsm = SoftHsm::empty();
    hsm.provision(LABEL, &[200, 20, -5, -100]);
    let config = hsm.config("softhsm2", "");
    let out = hsm.certagent(&config, &["doctor"], Some(PIN));
    assert!(out.status.success(), "{}", text(&out));
    let o = stdout(&out);
    assert!(o.contains("ok    login"), "{o}");
    for id in ["01", "02", "03", "04"] {
        assert!(
            o.lines().any(|l| l.starts_with("ok ")
                && l.contains(&format!("cert {id} "))
                && l.contains("key signs and matches the certificate")),
            "{id}: {o}"
        );
    }
    let checks = json(&hsm.certagent(&config, &["doctor", "--json"], Some(PIN)));
    assert!(
        checks
            .as_array()
            .expect("list")
            .iter()
            .all(|c| c["outcome"] != "fail"),
        "{checks}"
    );
}

/// Counts C_Login calls with OpenSC's PKCS#11 spy between certagent and SoftHSM.
#[test]
fn doctor_with_a_wrong_pin_fails_clearly_after_exactly_one_attempt() {
    let hsm = SoftHsm::empty();
    hsm.provision(LABEL, &[200]);
    let spy = common::spy_module();
    let config = hsm.config(&spy.display().to_string(), "");
    let log = hsm.path().join("spy.log");
    let out = Command::new(env!("CARGO_BIN_EXE_certagent"))
        .env("SOFTHSM2_CONF", hsm.conf())
        .env("PKCS11SPY", common::softhsm_module())
        .env("PKCS11SPY_OUTPUT", &log)
        .env("CERTAGENT_PIN", "999999")
        .env("XDG_CONFIG_HOME", hsm.path().join("xdg"))
        .arg("--config")
        .arg(&config)
        .arg("doctor")
        .output()
        .expect("certagent");
    assert!(!out.status.success(), "{}", text(&out));
    let o = stdout(&out);
    assert!(
        o.contains("FAIL  login") && o.contains("rejected the PIN; it was not retried"),
        "{o}"
    );
    assert!(
        stderr(&out).trim().lines().count() == 1,
        "one line on stderr: {}",
        text(&out)
    );
    let spylog = std::fs::read_to_string(&log).expect("spy log");
    let logins = spylog.lines().filter(|l| l.contains("C_Login")).count();
    assert_eq!(logins, 1, "C_Login calls:\n{spylog}");
    assert!(spylog.contains("CKR_PIN_INCORRECT"), "{spylog}");
    // No key was touched after the rejected PIN.
    assert!(!spylog.contains("C_SignInit"), "{spylog}");
}

#[test]
fn doctor_without_a_way_to_ask_for_the_pin_says_so() {
    let hsm = SoftHsm::empty();
    hsm.provision(LABEL, &[200]);
    let config = hsm.config("softhsm2", "");
    // No CERTAGENT_PIN and no terminal (stdin is not a tty under the test runner).
    let out = Command::new(env!("CARGO_BIN_EXE_certagent"))
        .env("SOFTHSM2_CONF", hsm.conf())
        .env_remove("CERTAGENT_PIN")
        .arg("--config")
        .arg(&config)
        .arg("doctor")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("certagent");
    assert!(!out.status.success());
    let o = stdout(&out);
    assert!(
        o.contains("FAIL  login") && o.contains("CERTAGENT_PIN"),
        "{o}"
    );
}

#[test]
fn show_describes_one_certificate() {
    let hsm = SoftHsm::empty();
    hsm.provision(LABEL, &[200, 20]);
    let config = hsm.config("softhsm2", "");
    let out = hsm.certagent(&config, &["show", "--id", "02"], None);
    assert!(out.status.success(), "{}", text(&out));
    let o = stdout(&out);
    for want in [
        "CN=User 2",
        "renewal-due (expires in 20 days)",
        "certagent renew",
        "Demo Bank Client CA",
        "RSA 2048 bits",
    ] {
        assert!(o.contains(want), "{want} missing:\n{o}");
    }
    let j = json(&hsm.certagent(&config, &["show", "--id", "02", "--json"], None));
    assert_eq!(j["id"], "02");
    assert!(
        j["pem"]
            .as_str()
            .expect("pem")
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    let several = hsm.certagent(&config, &["show"], None);
    assert!(!several.status.success());
    assert!(stderr(&several).contains("--id"), "{}", text(&several));
    let missing = hsm.certagent(&config, &["show", "--id", "ff"], None);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no certificate with id ff"),
        "{}",
        text(&missing)
    );
}

#[test]
fn bad_configuration_is_rejected_naming_key_and_file() {
    let hsm = SoftHsm::new();
    let config = hsm.config("softhsm2", "[policy]\nrenewal_window_days = 30\n");
    let out = hsm.certagent(&config, &["status"], None);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("renewal_window_days") && e.contains(&config.display().to_string()),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    let missing = hsm.path().join("nope.toml");
    let out = hsm.certagent(&missing, &["status"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope.toml"), "{}", text(&out));
}

#[test]
fn configuration_is_found_through_the_environment_and_uri_selects_the_token() {
    let hsm = SoftHsm::new();
    let path = hsm.path().join("env-config.toml");
    std::fs::write(
        &path,
        format!("[token]\nmodule = \"softhsm2\"\nuri = \"pkcs11:manufacturer=SoftHSM%20project;token={LABEL}\"\n"),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_certagent"))
        .env("SOFTHSM2_CONF", hsm.conf())
        .env("CERTAGENT_CONFIG", &path)
        .args(["status", "--json"])
        .output()
        .expect("certagent");
    let j = json(&out);
    assert_eq!(j["token"]["label"], LABEL);
    assert_eq!(j["certificates"].as_array().map(Vec::len), Some(0));

    std::fs::write(&path, "[token]\nuri = \"pkcs11:slot-id=0\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_certagent"))
        .env("CERTAGENT_CONFIG", &path)
        .arg("status")
        .output()
        .expect("certagent");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("slot-id"), "{}", text(&out));
}

#[test]
fn a_user_profile_folder_adds_a_module_profile() {
    let hsm = SoftHsm::new();
    let drivers = hsm.path().join("drivers");
    std::fs::create_dir(&drivers).expect("dir");
    std::fs::write(
        drivers.join("bank-softhsm.toml"),
        format!(
            "name = \"bank-softhsm\"\ndescription = \"the bank's test token\"\ninstall = \"ask the bank\"\n[paths]\nlinux = [\"{}\"]\n",
            common::softhsm_module().display()
        ),
    )
    .expect("profile");
    std::fs::write(
        drivers.join("absent.toml"),
        "name = \"absent\"\ndescription = \"not installed\"\ninstall = \"apt-get install absent-pkcs11\"\n[paths]\nlinux = [\"/nonexistent/absent.so\"]\n",
    )
    .expect("profile");
    let config = hsm.config("bank-softhsm", "");
    let t = json(&hsm.certagent(&config, &["tokens", "--json"], None));
    assert_eq!(t["module"]["profile"], "bank-softhsm");

    let config = hsm.config("absent", "");
    let out = hsm.certagent(&config, &["tokens"], None);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("apt-get install absent-pkcs11") && e.contains("/nonexistent/absent.so"),
        "{e}"
    );

    let config = hsm.config("no-such-profile", "");
    let out = hsm.certagent(&config, &["tokens"], None);
    assert!(
        stderr(&out).contains("softhsm2"),
        "known profiles listed: {}",
        text(&out)
    );
}

#[test]
fn a_missing_token_is_a_clear_error() {
    let hsm = SoftHsm::new();
    let path = hsm.path().join("other.toml");
    std::fs::write(
        &path,
        "[token]\nmodule = \"softhsm2\"\nlabel = \"other-token\"\n",
    )
    .expect("write");
    let out = hsm.certagent(&path, &["status"], None);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("other-token") && e.contains("insert the token"),
        "{e}"
    );
}

#[test]
fn demo_tells_the_whole_story_and_cleans_up() {
    common::require("softhsm2-util");
    let out = Command::new(env!("CARGO_BIN_EXE_certagent"))
        .arg("demo")
        .env_remove("SOFTHSM2_CONF")
        .env_remove("CERTAGENT_PIN")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("certagent demo");
    assert!(out.status.success(), "{}", text(&out));
    let o = stdout(&out);
    let e = stderr(&out);
    for want in [
        "renewal-due (expires in 20 days)",
        "desktop notice (30-day",
        "expired (expired 5 days ago)",
    ] {
        assert!(o.contains(want), "{want} missing:\n{o}");
    }
    for want in [
        "processing the request",
        "removed the old certificate and key",
        "[done]",
    ] {
        assert!(e.contains(want), "{want} missing:\n{e}");
    }
    // At the end both certificates are valid, and the temporary directory is gone.
    let tail = o.rsplit("== The token now").next().expect("final status");
    assert_eq!(
        tail.matches("state       valid (expires in 365 days)")
            .count(),
        2,
        "{tail}"
    );
    let dir = o
        .lines()
        .find_map(|l| {
            l.strip_prefix("Done; ")
                .and_then(|r| r.strip_suffix(" is removed."))
        })
        .expect("temp dir named");
    assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
}

#[test]
fn demo_without_the_bank_program_says_where_it_looked() {
    // A certagent with no certagent-bank beside it: a hard link (a copy
    // where linking fails) in a directory of its own.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let lone = dir.path().join("certagent");
    std::fs::hard_link(env!("CARGO_BIN_EXE_certagent"), &lone)
        .or_else(|_| std::fs::copy(env!("CARGO_BIN_EXE_certagent"), &lone).map(drop))
        .expect("certagent alone");
    let out = Command::new(&lone)
        .arg("demo")
        .env_remove("SOFTHSM2_CONF")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("certagent demo");
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "", "nothing is started");
    let e = stderr(&out);
    let looked = dir
        .path()
        .canonicalize()
        .expect("dir")
        .join("certagent-bank");
    assert_eq!(
        e.trim_end(),
        format!(
            "certagent: certagent demo needs the certagent-bank program next to certagent (looked for {}); build it with `cargo build` or install the certagent package",
            looked.display()
        ),
    );
}

#[test]
fn errors_under_json_are_json_on_stdout_and_say_what_to_do() {
    let hsm = SoftHsm::empty();
    let write = |name: &str, body: &str| {
        let p = hsm.path().join(name);
        std::fs::write(&p, body).expect("config");
        p
    };
    // A module path with no file behind it.
    let missing = write(
        "missing.toml",
        "[token]\nmodule = \"/nonexistent/libp11.so\"\n",
    );
    let out = hsm.certagent(&missing, &["status"], None);
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(
        e.contains("no such file") && e.contains("[token] module") && !e.contains("libloading"),
        "{e}"
    );
    // A file that is not a library.
    let not_lib = write(
        "notlib.toml",
        &format!("[token]\nmodule = \"{}\"\n", missing.display()),
    );
    let e = stderr(&hsm.certagent(&not_lib, &["status"], None));
    assert!(
        e.contains("not a PKCS#11 library") && !e.contains("libloading"),
        "{e}"
    );
    // --json: one object on stdout, the exit status says it failed.
    let out = hsm.certagent(&missing, &["--json", "status"], None);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    assert_eq!(v["error"], "module-load", "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("no such file"))
    );
    // No token at all: said plainly, in text and JSON.
    let any = write("any.toml", "[token]\nmodule = \"softhsm2\"\n");
    let out = hsm.certagent(&any, &["--json", "status"], None);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    assert_eq!(v["error"], "no-token", "{v}");
    let m = v["message"].as_str().unwrap_or_default();
    assert!(
        !m.contains("matching any token") && m.contains("insert the token"),
        "{m}"
    );
    // doctor's fix for a PIN it cannot ask names the way to give one.
    hsm.provision(LABEL, &[200]);
    let config = hsm.config("softhsm2", "");
    let out = Command::new(env!("CARGO_BIN_EXE_certagent"))
        .env("SOFTHSM2_CONF", hsm.conf())
        .env_remove("CERTAGENT_PIN")
        .args(["--config", &config.display().to_string(), "doctor"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("certagent");
    let o = stdout(&out);
    assert!(!o.contains("see the message"), "{o}");
    assert!(
        o.contains("fix: run `certagent doctor` in a terminal"),
        "{o}"
    );
}

/// p11-kit's proxy (the Linux default profile) in front of SoftHSM, which
/// Debian's softhsm2 registers with p11-kit: every command works through
/// it. (Its function list is a new instance per caller: certagent's
/// one-round-trip calls step aside and cryptoki does the work.)
#[test]
fn doctor_and_status_work_through_p11_kits_proxy() {
    let registered = std::path::Path::new("/usr/share/p11-kit/modules/softhsm2.module");
    assert!(
        registered.exists(),
        "{} is missing: apt-get install softhsm2 p11-kit-modules",
        registered.display()
    );
    let hsm = SoftHsm::empty();
    hsm.provision(LABEL, &[200, 20]);
    let config = hsm.config("p11-kit-proxy", "");
    let status = json(&hsm.certagent(&config, &["status", "--json"], None));
    let states: Vec<&str> = status["certificates"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["state"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(states.len(), 2, "{status}");
    let out = hsm.certagent(&config, &["doctor"], Some(PIN));
    let o = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(o.contains("profile p11-kit-proxy"), "{o}");
    assert!(!o.contains("FAIL"), "{o}");
}

/// A Japanese user: status, show, doctor, tokens and an error in Japanese,
/// with names as people write them and dates in the locale's form and the
/// computer's own time zone; `--json` stays the same for scripts.
#[test]
fn a_japanese_user_reads_japanese_with_local_dates() {
    let hsm = SoftHsm::empty();
    hsm.provision(LABEL, &[200, 20, -5]);
    let config = hsm.config("softhsm2", "");
    let ja = |args: &[&str], pin: Option<&str>| {
        let mut cmd = hsm.command();
        cmd.env("LANG", "ja_JP.UTF-8")
            .env("TZ", "Asia/Tokyo")
            .arg("--config")
            .arg(&config)
            .args(args);
        if let Some(pin) = pin {
            cmd.env("CERTAGENT_PIN", pin);
        }
        cmd.output().expect("certagent runs")
    };

    let out = ja(&["status"], None);
    assert!(out.status.success(), "{}", text(&out));
    let o = stdout(&out);
    for want in [
        "トークン \"",
        "シリアル番号",
        "有効（有効期限まであと200日）：対応は不要です",
        "更新期間中（有効期限まであと20日）",
        "有効期限切れ（有効期限から5日経過）",
        "今すぐ更新してください",
        "(JST)",
    ] {
        assert!(o.contains(want), "{want:?} missing in\n{o}");
    }
    // The holder in sentences; a date as 2026年12月14日, not RFC 3339.
    assert!(!o.contains("CN=User"), "{o}");
    assert!(
        o.lines()
            .any(|l| l.contains("年") && l.contains("月") && l.contains("日 ")),
        "{o}"
    );
    assert!(
        rfc3339_in(&o).is_none(),
        "an RFC 3339 date for a person: {o}"
    );

    let out = ja(&["show", "--id", "02"], None);
    let o = stdout(&out);
    for want in ["サブジェクト", "CN=User", "更新の受付開始", "対処"] {
        assert!(o.contains(want), "{want:?} missing in\n{o}");
    }

    let out = ja(&["tokens"], None);
    assert!(stdout(&out).contains("PIN：正常"), "{}", text(&out));

    let out = ja(&["doctor"], Some("999999"));
    assert!(!out.status.success());
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(
        o.contains("FAIL  login") && o.contains("トークンがPINを受け付けませんでした"),
        "{o}"
    );
    assert!(o.contains("対処："), "{o}");
    assert!(e.contains("一部の確認で問題が見つかりました"), "{e}");

    // An error: what went wrong in Japanese, the English details below.
    let missing = hsm.path().join("other.toml");
    std::fs::write(
        &missing,
        "[token]\nmodule = \"softhsm2\"\nlabel = \"other-token\"\n",
    )
    .expect("write");
    let mut cmd = hsm.command();
    let out = cmd
        .env("LANG", "ja_JP.UTF-8")
        .arg("--config")
        .arg(&missing)
        .arg("status")
        .output()
        .expect("certagent runs");
    let e = stderr(&out);
    assert!(
        e.starts_with("certagent: トークンが挿入されていません。")
            && e.contains("詳細：")
            && e.contains("other-token"),
        "{e}"
    );

    // Help in Japanese too.
    let out = ja(&["renew", "--help"], None);
    let o = stdout(&out);
    assert!(
        o.contains("使い方:") && o.contains("更新する電子証明書の CKA_ID"),
        "{}",
        text(&out)
    );

    // A wrong command line: clap's English, after a Japanese line.
    let out = ja(&["renw"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).starts_with("certagent: コマンドの指定に誤りがあります。"),
        "{}",
        text(&out)
    );

    // --json is the same in every language.
    let json_ja = json(&ja(&["status", "--json"], None));
    let json_en = json(&hsm.certagent(&config, &["status", "--json"], None));
    assert_eq!(json_ja["certificates"], json_en["certificates"]);
}

/// The first RFC 3339 date-time in `text` (`2026-12-14T09:00`), if any.
fn rfc3339_in(text: &str) -> Option<&str> {
    let shape = b"dddd-dd-ddTdd:dd";
    let b = text.as_bytes();
    (0..b.len().saturating_sub(shape.len() - 1)).find_map(|i| {
        let w = b.get(i..i + shape.len())?;
        let fits = w.iter().zip(shape).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        });
        if fits {
            text.get(i..i + shape.len())
        } else {
            None
        }
    })
}

#[test]
fn the_rfc3339_finder_finds_what_it_should() {
    assert_eq!(
        rfc3339_in("until 2026-12-14T09:00:00Z\n"),
        Some("2026-12-14T09:00")
    );
    assert_eq!(rfc3339_in("2026年12月14日 09:00 (JST)"), None);
    assert_eq!(rfc3339_in("Token 2026-12-14 T"), None);
}
