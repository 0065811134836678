//! certagent for Windows under Wine: the programs `scripts/windows.sh build`
//! cross-builds into target/windows/ (`certagent.exe`, the soft token DLL
//! `softhsm2-x64.dll`, the forwarding fault module), run by Debian's Wine
//! against the reference bank on loopback.
//!
//! The token is SoftHSM built for Windows. Its files have one format on
//! Linux and Windows, so each token is made on Linux with pkcs11-tool (a
//! bank certificate on it) and every outcome is judged on Linux by
//! pkcs11-tool and openssl (`common::faults`): what certagent.exe did is
//! seen through tools that are not certagent.
//!
//! Run by `scripts/windows.sh test` (the `windows` nextest profile, one
//! test at a time: they share one Wine prefix, and with it one
//! `%LOCALAPPDATA%`); the main run leaves this binary to it. Missing
//! programs or Wine fail the tests, saying what to run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use certagent_bank::ServeOptions;
use common::agent::{ANA, ORIGIN};
use common::faults::{self, Mode};
use common::{LABEL, PIN, SoftHsm, bank_cert_on_token, text};

/// What `scripts/windows.sh build` puts in target/windows/.
const BUILT: [&str; 6] = [
    "certagent.exe",
    "certagent-bank.exe",
    "softhsm2-x64.dll",
    "certagent_fault_pkcs11.dll",
    "certagent-win-client.exe",
    "bcryptprimitives.dll",
];
const WINE: &str = "/usr/lib/wine/wine64";

/// The Windows programs and the Wine prefix the tests share.
fn windows_dir() -> PathBuf {
    let dir = std::env::var_os("CERTAGENT_WINDOWS_DIR")
        .map_or_else(|| common::repo_root().join("target/windows"), PathBuf::from);
    for f in BUILT {
        assert!(
            dir.join(f).is_file(),
            "{} is missing: run scripts/windows.sh build (or scripts/windows.sh test)",
            dir.join(f).display()
        );
    }
    assert!(
        Path::new(WINE).is_file(),
        "Wine is missing: apt-get install wine wine64 (scripts/windows.sh build installs it)"
    );
    dir
}

fn prefix() -> PathBuf {
    windows_dir().join("prefix-tests")
}

/// A Linux path as Windows programs under Wine name it (drive Z: is /).
fn z(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// `%LOCALAPPDATA%\certagent` of the shared prefix, seen from Linux.
fn local_state() -> Option<PathBuf> {
    let users = prefix().join("drive_c/users");
    std::fs::read_dir(users)
        .ok()?
        .flatten()
        .filter(|u| u.file_name() != "Public")
        .map(|u| u.path().join("AppData/Local/certagent"))
        .next()
}

/// The renewal journals in `%LOCALAPPDATA%\certagent`.
fn journals() -> Vec<PathBuf> {
    local_state()
        .and_then(|d| std::fs::read_dir(d).ok())
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("renewal-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A token made on Linux with Ana's bank certificate, the bank on loopback
/// (Linux), and configurations for both sides: certagent.exe names every
/// file by its Windows path.
struct Env {
    hsm: SoftHsm,
    ca: PathBuf,
    otp: String,
    /// certagent.exe's configuration (module `softhsm2`: the DLL beside it).
    config: PathBuf,
    /// The same through the fault module in front of that DLL.
    fault_config: PathBuf,
    /// Linux certagent's configuration, for the same token and bank.
    linux_config: PathBuf,
    /// SoftHSM's configuration for the Windows DLL (Windows paths).
    win_conf: PathBuf,
    _rt: tokio::runtime::Runtime,
    _bank: certagent_bank::RunningBank,
}

impl Env {
    fn new(days_left: i64) -> Env {
        let dir = windows_dir();
        // One test at a time shares the prefix: a state directory of the
        // last test's is not this one's.
        if let Some(state) = local_state() {
            let _ = std::fs::remove_dir_all(state);
        }
        let hsm = SoftHsm::new();
        let bank_dir = hsm.path().join("bank");
        certagent_bank::init(&bank_dir).expect("bank");
        let otp = certagent_bank::add_user(&bank_dir, "ana", ANA).expect("user");
        bank_cert_on_token(&hsm, &bank_dir, "01", "rsa:2048", ANA, days_left);
        let policy = certagent::policy::Policy {
            renew_window_days: 400,
            ..Default::default()
        };
        let (rt, bank) = common::serve_bank(
            &bank_dir,
            ServeOptions {
                policy,
                ..ServeOptions::default()
            },
        );
        let win_conf = hsm.path().join("softhsm2-windows.conf");
        std::fs::write(
            &win_conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                z(&hsm.path().join("tokens"))
            ),
        )
        .expect("SoftHSM configuration for Windows");
        let bank_part = |roots: String, ca: String| {
            format!(
                "[policy]\nrenew_window_days = 400\n[bank]\nest_url = \"https://{}/.well-known/est\"\nserver_roots = '{roots}'\nca_certs = '{ca}'\n",
                bank.addr()
            )
        };
        let (roots, ca) = (bank_dir.join("tls-roots.pem"), bank_dir.join("ca.pem"));
        let write = |name: &str, module: &str, bank: String| {
            let path = hsm.path().join(name);
            std::fs::write(
                &path,
                format!("[token]\nmodule = '{module}'\nlabel = \"{LABEL}\"\n{bank}"),
            )
            .expect("config");
            path
        };
        let config = write("windows.toml", "softhsm2", bank_part(z(&roots), z(&ca)));
        let fault_config = write(
            "windows-faults.toml",
            &z(&dir.join("certagent_fault_pkcs11.dll")),
            bank_part(z(&roots), z(&ca)),
        );
        let linux_config = write(
            "linux.toml",
            "softhsm2",
            bank_part(roots.display().to_string(), ca.display().to_string()),
        );
        Env {
            hsm,
            ca,
            otp,
            config,
            fault_config,
            linux_config,
            win_conf,
            _rt: rt,
            _bank: bank,
        }
    }

    /// certagent.exe under Wine, in English, in UTC, with nothing of this
    /// process's certagent settings.
    fn exe(&self, config: &Path) -> Command {
        let dir = windows_dir();
        let mut cmd = Command::new(common::repo_root().join("scripts/windows/wine-run.sh"));
        cmd.arg(dir.join("certagent.exe"))
            .arg("--config")
            .arg(z(config))
            .env("WINEPREFIX", prefix())
            .env("SOFTHSM2_CONF", z(&self.win_conf))
            .env("LANG", "en_US.UTF-8")
            .env("TZ", "UTC")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .env_remove("CERTAGENT_CONFIG")
            .env_remove("CERTAGENT_PIN")
            .env_remove("CERTAGENT_OTP")
            .env_remove("CERTAGENT_TEST_CRASH_AT")
            .env_remove("FAULT_PKCS11_AT");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.exe(&self.config)
            .args(args)
            .env("CERTAGENT_PIN", PIN)
            .env("CERTAGENT_OTP", &self.otp)
            .output()
            .expect("wine runs")
    }

    /// Linux certagent on the same token and bank.
    fn linux(&self, args: &[&str]) -> Output {
        self.hsm.certagent(&self.linux_config, args, Some(PIN))
    }

    /// certagent.exe through the fault module, a fault at call `n`.
    fn faulted(&self, args: &[&str], fault: Option<(u64, Mode)>, log: Option<&Path>) -> Output {
        let dir = windows_dir();
        let mut cmd = self.exe(&self.fault_config);
        cmd.args(args)
            .env("CERTAGENT_PIN", PIN)
            .env("FAULT_PKCS11_MODULE", z(&dir.join("softhsm2-x64.dll")));
        if let Some((n, mode)) = fault {
            let _ = std::fs::remove_file(self.fired());
            cmd.env("FAULT_PKCS11_AT", n.to_string())
                .env("FAULT_PKCS11_MODE", mode.env())
                .env("FAULT_PKCS11_FIRED", z(&self.fired()));
        }
        if let Some(l) = log {
            cmd.env("FAULT_PKCS11_LOG", z(l));
        }
        cmd.output().expect("wine runs")
    }

    fn fired(&self) -> PathBuf {
        self.hsm.path().join("fired.log")
    }
}

fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", text(o));
    common::stdout(o)
}

#[test]
fn status_under_wine_reports_what_linux_reports_for_the_same_token() {
    let env = Env::new(20);
    let windows: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["status", "--json"]), "status.exe"))
            .expect("status --json from certagent.exe");
    let linux = common::json(&env.linux(&["status", "--json"]));
    println!("certagent.exe status --json:\n{windows:#}");
    assert_eq!(windows["certificates"], linux["certificates"]);
    assert_eq!(windows["certificates"].as_array().map(Vec::len), Some(1));
    assert_eq!(windows["certificates"][0]["state"], "renewal-due");
    // The token as both see it (its slot number aside, which is the
    // module's own on each platform).
    let (mut wt, mut lt) = (windows["token"].clone(), linux["token"].clone());
    for t in [&mut wt, &mut lt] {
        if let Some(o) = t.as_object_mut() {
            o.remove("slot");
        }
    }
    assert_eq!(wt, lt);
}

/// CK_ULONG is 4 bytes on Windows: a class, a key type or a key size read
/// as 8 would be dropped, and no key or certificate would be found. The
/// certificate is found (CKA_CLASS), its key is an RSA key (CKA_KEY_TYPE)
/// that signs (doctor), and a key generated on Windows is 2048 bits
/// (CKA_MODULUS_BITS), as pkcs11-tool on Linux reads it.
#[test]
fn ulong_attributes_are_read_and_written_at_the_windows_size() {
    let env = Env::new(20);
    let show = ok(&env.run(&["show", "--id", "01"]), "show");
    assert!(show.contains("RSA 2048 bits"), "{show}");
    // Doctor finds the key by class and id, reads its key type, and signs
    // with each scheme the token offers (PSS and PKCS#1 on SoftHSM).
    let doctor = env.run(&["doctor"]);
    let said = text(&doctor);
    assert!(doctor.status.success(), "{said}");
    assert!(
        said.contains("ok    cert 01      key signs and matches the certificate (RS256, PS256)"),
        "{said}"
    );
    // The same module, slots and tokens as Linux's SoftHSM shows; only
    // the library's path is the platform's own.
    let mut tokens: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["tokens", "--json"]), "tokens --json"))
            .expect("tokens --json from certagent.exe");
    let mut linux = common::json(&env.linux(&["tokens", "--json"]));
    assert_eq!(
        tokens["module"]["path"],
        z(&windows_dir().join("softhsm2-x64.dll"))
    );
    for t in [&mut tokens, &mut linux] {
        if let Some(m) = t["module"].as_object_mut() {
            m.remove("path");
        }
    }
    assert_eq!(tokens, linux, "tokens --json under Wine and on Linux");
    ok(&env.run(&["renew", "--yes"]), "renew");
    let keys = env.hsm.pkcs11_tool(&[
        "--login",
        "--pin",
        PIN,
        "--list-objects",
        "--type",
        "pubkey",
    ]);
    let listed = common::stdout(&keys);
    assert!(listed.contains("RSA 2048 bits"), "{listed}");
    faults::assert_one_pair(&env.hsm, Some(&env.ca), "after the renewal on Windows");
}

/// A renewal over mutual TLS against the reference bank, killed after the
/// bank issued: the journal is in %LOCALAPPDATA%\certagent, the next run
/// resumes it, and the token ends with one working pair chained to the
/// bank's CA (pkcs11-tool and openssl on Linux).
#[test]
fn a_renewal_under_wine_resumes_from_its_journal_in_localappdata() {
    let env = Env::new(20);
    assert!(journals().is_empty());
    let crashed = env
        .exe(&env.config)
        .args(["renew", "--yes"])
        .env("CERTAGENT_PIN", PIN)
        .env("CERTAGENT_TEST_CRASH_AT", "issued")
        .output()
        .expect("wine runs");
    assert!(!crashed.status.success(), "{}", text(&crashed));
    assert!(
        String::from_utf8_lossy(&crashed.stderr).contains("test crash at issued"),
        "{}",
        text(&crashed)
    );
    let left = journals();
    assert_eq!(left.len(), 1, "one journal in %LOCALAPPDATA%\\certagent");
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&left[0]).expect("journal")).expect("json");
    assert_eq!(journal["step"], "issued", "{journal}");
    faults::assert_usable(&env.hsm, Some(&env.ca), "after the crash");
    ok(&env.run(&["renew", "--yes"]), "the resumed renewal");
    assert!(journals().is_empty(), "the journal is removed when done");
    faults::assert_one_pair(&env.hsm, Some(&env.ca), "after the resumed renewal");
}

#[test]
fn an_enrolment_after_expiry_under_wine_ends_with_one_valid_pair() {
    let env = Env::new(-5);
    let out = env.run(&["enroll", "--user", "ana", "--yes"]);
    ok(&out, "enroll");
    faults::assert_one_pair(&env.hsm, Some(&env.ca), "after the enrolment on Windows");
    // A new year's certificate (the tests' renewal window is 400 days wide,
    // so "renewal-due" is its state here).
    let status = common::json(&env.linux(&["status", "--json"]));
    assert!(
        status["certificates"][0]["days_left"].as_i64() >= Some(364),
        "{status}"
    );
}

/// Japanese where the Windows display language is Japanese, and dates in
/// the Windows time zone, named as Windows names it.
#[test]
fn japanese_and_the_windows_time_zone() {
    let have = Command::new("locale")
        .arg("-a")
        .output()
        .expect("locale -a");
    assert!(
        String::from_utf8_lossy(&have.stdout).contains("ja_JP.utf8"),
        "Wine shows Japanese only with the ja_JP.UTF-8 locale: run scripts/windows.sh build (it generates it)"
    );
    let env = Env::new(20);
    let ja = env
        .exe(&env.config)
        .arg("status")
        .env("LANG", "ja_JP.UTF-8")
        .env("TZ", "Asia/Tokyo")
        .output()
        .expect("wine runs");
    let ja = ok(&ja, "status in Japanese");
    println!("{ja}");
    assert!(ja.contains("有効期間"), "{ja}");
    assert!(ja.contains("(UTC+09:00)"), "{ja}");
    let en = env
        .exe(&env.config)
        .arg("status")
        .env("TZ", "Europe/Ljubljana")
        .output()
        .expect("wine runs");
    let en = ok(&en, "status in English");
    assert!(en.contains("valid "), "{en}");
    // Ljubljana: UTC+01:00 in winter, UTC+02:00 in summer.
    assert!(en.contains("UTC+01:00") || en.contains("UTC+02:00"), "{en}");
    assert!(!en.contains("有効期間"), "{en}");
}

/// `scripts/windows.sh demo`'s story, in both languages, in a prefix of
/// its own.
#[test]
fn the_demo_runs_under_wine_in_english_and_japanese() {
    let dir = windows_dir();
    for (lang, done) in [("en_US.UTF-8", "Done;"), ("ja_JP.UTF-8", "完了")] {
        let out = Command::new(common::repo_root().join("scripts/windows/wine-run.sh"))
            .arg(dir.join("certagent.exe"))
            .arg("demo")
            .env("WINEPREFIX", prefix())
            .env("LANG", lang)
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .env_remove("SOFTHSM2_CONF")
            .env_remove("CERTAGENT_CONFIG")
            .output()
            .expect("wine runs");
        let said = text(&out);
        assert!(out.status.success(), "demo in {lang}: {said}");
        assert!(said.contains(done), "demo in {lang}: {said}");
        assert!(said.contains("[done]"), "demo in {lang}: {said}");
    }
}

/// A faulted certagent.exe ended as the fault says: killed (the fault
/// module ends the process with `TerminateProcess` and code 137, as Task
/// Manager would end it), or on its own with a one-line reason, never a
/// panic (101) or an abort.
fn assert_ended(out: &Output, mode: Mode, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{what}: a panic\n{err}");
    match mode {
        Mode::Killed => assert_eq!(out.status.code(), Some(137), "{what}: {}", text(out)),
        Mode::Pulled => {
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{what}: {}",
                text(out)
            );
            if !out.status.success() {
                let last = err.lines().last().unwrap_or("");
                assert!(
                    last.starts_with("certagent: "),
                    "{what}: not a one-line reason: {last:?}"
                );
            }
        }
    }
}

/// A fault at every PKCS#11 call of a renewal on Windows: the token pulled
/// there, or the process killed. Each time the token still has a usable
/// bank certificate, and the next run ends with exactly one pair and no
/// journal, judged on Linux.
#[test]
fn a_fault_at_every_pkcs11_call_of_a_renewal_under_wine_recovers() {
    let env = Env::new(20);
    let log = env.hsm.path().join("count.log");
    let counted = env.faulted(&["renew", "--yes"], None, Some(&log));
    ok(&counted, "the unfaulted renewal");
    let total = faults::calls(&log);
    assert!(total > 10, "a renewal makes {total} calls");
    let mut table = Vec::new();
    for mode in [Mode::Pulled, Mode::Killed] {
        let mut recovered = 0;
        for n in 1..=total {
            let what = format!("renewal {mode:?} at call {n}");
            let out = env.faulted(&["renew", "--yes"], Some((n, mode)), None);
            faults::assert_fired(&env.fired(), n, mode, &what);
            assert_ended(&out, mode, &what);
            faults::assert_usable(&env.hsm, Some(&env.ca), &what);
            let again = env.faulted(&["renew", "--yes"], None, None);
            assert!(
                again.status.success(),
                "{what}: the next run: {}",
                text(&again)
            );
            faults::assert_one_pair(&env.hsm, Some(&env.ca), &what);
            assert!(journals().is_empty(), "{what}: a journal is left");
            recovered += 1;
        }
        table.push(format!(
            "Windows renewal {mode:?}: {recovered}/{total} recovered ({total} calls)"
        ));
    }
    println!("{}", table.join("\n"));
}

/// `certagent.exe run` serves the local API only to its own user's
/// Windows programs: the owner of the client's socket (the TCP table) and
/// that process's user SID. A Windows program of the user gets the bank's
/// certificate; a Linux program, which no Windows process owns, gets 403.
#[test]
fn the_agent_under_wine_serves_its_users_windows_programs_and_refuses_others() {
    use std::io::{BufRead, Read, Write};
    let env = Env::new(20);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = env.hsm.path().join("agent.toml");
    let base = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &config,
        format!("{base}origins = [\"{ORIGIN}\"]\n[agent]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .expect("agent config");
    let mut agent = env
        .exe(&config)
        .args(["run", "--no-tray"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wine runs");
    let stdout = agent.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l == "certagent: ready");
    std::thread::spawn(move || lines.for_each(drop));
    let outcome = std::panic::catch_unwind(|| {
        assert!(ready, "certagent.exe run never said it was ready");
        // The user's Windows program.
        let client = Command::new(common::repo_root().join("scripts/windows/wine-run.sh"))
            .arg(windows_dir().join("certagent-win-client.exe"))
            .arg(format!("127.0.0.1:{port}"))
            .arg(ORIGIN)
            .arg("/v1/status")
            .env("WINEPREFIX", prefix())
            .output()
            .expect("wine runs");
        let said = ok(&client, "the Windows client");
        let (status, body) = said.split_once('\n').unwrap_or_default();
        assert!(status.starts_with("HTTP/1.1 200"), "{said}");
        let body: serde_json::Value = serde_json::from_str(body.trim()).expect("status JSON");
        assert_eq!(
            body["certificates"].as_array().map(Vec::len),
            Some(1),
            "{body}"
        );
        // A Linux program on the same machine: no Windows process owns it.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            s,
            "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {ORIGIN}\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("answer");
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(answer.contains("\"error\":\"user\""), "{answer}");
    });
    let _ = agent.kill();
    let _ = agent.wait();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

/// Without a configuration, certagent on Windows looks for OpenSC (there is
/// no p11-kit on Windows) and says where it looked and what to install.
#[test]
fn without_a_configuration_windows_looks_for_opensc() {
    let out = Command::new(common::repo_root().join("scripts/windows/wine-run.sh"))
        .arg(windows_dir().join("certagent.exe"))
        .arg("tokens")
        .env("WINEPREFIX", prefix())
        .env("LANG", "en_US.UTF-8")
        .env_remove("CERTAGENT_CONFIG")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .output()
        .expect("wine runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains("the opensc PKCS#11 module is not installed")
            && err.contains(r"C:\Program Files\OpenSC Project\OpenSC\pkcs11\opensc-pkcs11.dll"),
        "{err}"
    );
    assert!(!err.contains("p11-kit"), "{err}");
}

/// `reg` under Wine in `prefix`: its output, and whether it succeeded.
fn reg(prefix: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(common::repo_root().join("scripts/windows/wine-run.sh"))
        .arg("reg")
        .args(args)
        .env("WINEPREFIX", prefix)
        .output()
        .expect("wine runs reg");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
    )
}

/// `browser-policy --install` as administrator writes the list policies
/// under HKLM\SOFTWARE\Policies for Chrome, Chromium, Edge and Firefox,
/// keeping what IT listed already; `--remove` takes away exactly what it
/// added. Judged by Wine's own `reg query`, in a prefix of its own.
#[test]
fn browser_policies_go_into_the_registry_and_come_out_again() {
    let dir = windows_dir();
    let prefix = dir.join("prefix-policy");
    let _ = std::fs::remove_dir_all(&prefix);
    std::fs::create_dir_all(&prefix).expect("prefix");
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        "[token]\nmodule = \"softhsm2\"\nlabel = \"bank-token\"\n[bank]\n\
         est_url = \"https://127.0.0.1:8443/.well-known/est\"\nserver_roots = \"roots.pem\"\n\
         origins = [\"https://ib.bank.example\", \"http://127.0.0.1:8080\"]\n",
    )
    .expect("config");
    let policy = |action: &str| {
        let out = Command::new(common::repo_root().join("scripts/windows/wine-run.sh"))
            .arg(dir.join("certagent.exe"))
            .args(["--config", &z(&config), "browser-policy", action])
            .env("WINEPREFIX", &prefix)
            .env("LANG", "en_US.UTF-8")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .output()
            .expect("wine runs");
        ok(&out, &format!("browser-policy {action}"))
    };
    const EDGE: &str = r"HKLM\SOFTWARE\Policies\Microsoft\Edge\LocalNetworkAccessAllowedForUrls";
    // IT's own entry, which must survive both.
    let (added, _) = reg(
        &prefix,
        &[
            "add",
            EDGE,
            "/v",
            "1",
            "/d",
            "https://intranet.example",
            "/f",
        ],
    );
    assert!(added, "reg add");
    let policies = || reg(&prefix, &["query", r"HKLM\SOFTWARE\Policies", "/s"]).1;
    let before = policies();
    assert!(before.contains("https://intranet.example"), "{before}");

    let out = policy("--install");
    assert!(
        out.contains(r"HKLM\SOFTWARE\certagent\BrowserPolicy"),
        "{out}"
    );
    let query = |key: &str| {
        let (found, text) = reg(&prefix, &["query", key]);
        assert!(found, "{key} is missing");
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[1] == "REG_SZ").then(|| format!("{}={}", f[0], f[2]))
            })
            .collect::<Vec<_>>()
    };
    let ours = ["1=https://ib.bank.example", "2=http://127.0.0.1:8080"];
    for vendor in [r"Google\Chrome", "Chromium"] {
        let key = format!(r"HKLM\SOFTWARE\Policies\{vendor}\LocalNetworkAccessAllowedForUrls");
        assert_eq!(query(&key), ours, "{key}");
    }
    assert_eq!(
        query(EDGE),
        [
            "1=https://intranet.example",
            "2=https://ib.bank.example",
            "3=http://127.0.0.1:8080"
        ]
    );
    assert_eq!(
        query(r"HKLM\SOFTWARE\Policies\Mozilla\Firefox\LocalNetworkAccess\SkipDomains"),
        ["1=ib.bank.example"],
        "Firefox lists hosts, and never a loopback one"
    );
    // The control: the comparison below sees an install.
    assert_ne!(policies(), before);

    let out = policy("--remove");
    assert!(out.contains("removed"), "{out}");
    assert_eq!(
        policies(),
        before,
        "--remove leaves the policies as IT had them"
    );
    let (found, text) = reg(&prefix, &["query", r"HKLM\SOFTWARE\certagent"]);
    assert!(!found, "the record is gone: {text}");
    let out = policy("--remove");
    assert!(
        out.contains("nothing"),
        "a second --remove finds nothing: {out}"
    );
    let _ = std::fs::remove_dir_all(&prefix);
}

/// Where the Windows screenshots go.
fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

/// `certagent.exe run` on the virtual display, in `lang`, serving the bank's
/// origin on a port of its own; returns once it says it is ready.
fn agent_on_display(
    env: &Env,
    x: &common::xvfb::Xvfb,
    lang: &str,
    tray: bool,
) -> (std::process::Child, u16, Said) {
    use std::io::BufRead;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = env.hsm.path().join(format!("agent-{lang}.toml"));
    let base = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &config,
        format!("{base}origins = [\"{ORIGIN}\"]\n[agent]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .expect("agent config");
    let mut cmd = env.exe(&config);
    cmd.arg("run");
    if !tray {
        cmd.arg("--no-tray");
    }
    let mut agent = cmd
        .env("DISPLAY", &x.display)
        .env("LANG", lang)
        .stdout(std::process::Stdio::piped())
        .stderr(
            std::fs::File::create(env.hsm.path().join(format!("agent-{lang}.err")))
                .expect("stderr file"),
        )
        .spawn()
        .expect("wine runs");
    let stdout = agent.stdout.take().expect("stdout");
    let said: Said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let said = said.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                said.lock().unwrap_or_else(|e| e.into_inner()).push(l);
            }
        });
    }
    if !wait_said(
        &said,
        "certagent: ready",
        std::time::Duration::from_secs(60),
    ) {
        let _ = agent.kill();
        panic!(
            "certagent.exe run never said it was ready: {:?}",
            self::said(&said)
        );
    }
    (agent, port, said)
}

/// Wine's virtual desktop (a taskbar with a notification area, as Windows
/// has) for every program of the shared prefix while this lives; Wine's
/// X11 windows again after.
struct VirtualDesktop;

impl VirtualDesktop {
    fn on() -> VirtualDesktop {
        for args in [
            &[
                "add",
                r"HKCU\Software\Wine\Explorer",
                "/v",
                "Desktop",
                "/d",
                "certagent",
                "/f",
            ][..],
            &[
                "add",
                r"HKCU\Software\Wine\Explorer\Desktops",
                "/v",
                "certagent",
                "/d",
                "1024x768",
                "/f",
            ][..],
        ] {
            assert!(reg(&prefix(), args).0, "reg {args:?}");
        }
        VirtualDesktop
    }
}

impl Drop for VirtualDesktop {
    fn drop(&mut self) {
        let _ = reg(
            &prefix(),
            &[
                "delete",
                r"HKCU\Software\Wine\Explorer",
                "/v",
                "Desktop",
                "/f",
            ],
        );
    }
}

/// Every Windows process of the shared prefix ended (a program started
/// on Wine's desktop outlives the Linux process that started it).
fn end_wine() {
    let _ = Command::new("/usr/lib/wine/wineserver")
        .arg("-k")
        .env("WINEPREFIX", prefix())
        .status();
}

/// Wait (up to `within`) for a line of the agent's that starts with `start`.
fn wait_said(lines: &Said, start: &str, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if said(lines).iter().any(|l| l.starts_with(start)) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// What the agent has said on stdout so far.
type Said = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

fn said(lines: &Said) -> Vec<String> {
    lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A Windows program of the user posts a logon to the agent, in the
/// background: its status line and body.
fn logon_from_windows(
    port: u16,
    challenge: &[u8],
) -> std::thread::JoinHandle<(String, serde_json::Value)> {
    use base64::Engine;
    let body = format!(
        "{{\"challenge\":\"{}\"}}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(challenge)
    );
    std::thread::spawn(move || {
        let out = Command::new(common::repo_root().join("scripts/windows/wine-run.sh"))
            .arg(windows_dir().join("certagent-win-client.exe"))
            .arg(format!("127.0.0.1:{port}"))
            .arg(ORIGIN)
            .arg("/v1/logon")
            .arg(body)
            .env("WINEPREFIX", prefix())
            .output()
            .expect("wine runs");
        let said = ok(&out, "the Windows client");
        let (status, body) = said.split_once('\n').unwrap_or_default();
        let body = serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null);
        (status.to_string(), body)
    })
}

/// Wine's Japanese dialog font ("MS UI Gothic", which Windows has) taken
/// from Debian's IPA fonts, as a Wine user sets it: without it Wine draws
/// Japanese as boxes. Windows itself needs nothing of the kind.
fn japanese_fonts() {
    let (done, _) = reg(
        &prefix(),
        &[
            "add",
            r"HKCU\Software\Wine\Fonts\Replacements",
            "/v",
            "MS UI Gothic",
            "/d",
            "IPAPGothic",
            "/f",
        ],
    );
    assert!(done, "reg add the font replacement");
    assert!(
        Path::new("/usr/share/fonts/opentype/ipafont-gothic/ipagp.ttf").is_file(),
        "the IPA fonts are missing: apt-get install fonts-ipafont-gothic (scripts/windows.sh build installs it)"
    );
}

/// A logon through certagent's own Windows dialogs, driven by key presses
/// on a virtual display: consent (Allow), then the PIN typed into the
/// password field; the token verifies in openssl for the page's origin
/// and not for another. Then Deny (Esc): no PIN dialog, 403 `declined`.
/// In English and Japanese, a screenshot of each dialog.
#[test]
fn a_logon_through_the_native_windows_dialogs() {
    let env = Env::new(200);
    japanese_fonts();
    let x = common::xvfb::Xvfb::start();
    let blank = shots().join("windows-blank.png");
    x.screenshot(&blank);
    assert_eq!(
        common::xvfb::Xvfb::colours(&blank),
        1,
        "the control: an empty screen has one colour"
    );
    for (lang, tag) in [("en_US.UTF-8", "en"), ("ja_JP.UTF-8", "ja")] {
        let (mut agent, port, _) = agent_on_display(&env, &x, lang, false);
        let outcome = std::panic::catch_unwind(|| {
            let challenge: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(13)).collect();
            // Generous: Wine's first window in a prefix builds its font cache.
            let wait = std::time::Duration::from_secs(120);
            let logon = logon_from_windows(port, &challenge);
            let consent = x
                .wait_window("certagent", &[], wait)
                .expect("the consent dialog appears");
            std::thread::sleep(std::time::Duration::from_millis(500));
            let shot = shots().join(format!("windows-consent-{tag}.png"));
            x.screenshot(&shot);
            assert!(common::xvfb::Xvfb::colours(&shot) > 2, "{}", shot.display());
            x.keys(&consent, &["Return"]);
            assert!(x.wait_gone("certagent", &consent, wait), "Allow closes it");
            let pin = x
                .wait_window("certagent", std::slice::from_ref(&consent), wait)
                .expect("the PIN dialog appears");
            std::thread::sleep(std::time::Duration::from_millis(500));
            x.type_text(&pin, PIN);
            let shot = shots().join(format!("windows-pin-{tag}.png"));
            x.screenshot(&shot);
            x.keys(&pin, &["Return"]);
            let (status, token) = logon.join().expect("the client thread");
            assert!(status.starts_with("HTTP/1.1 200"), "{status} {token}");
            assert_eq!(token["format"], "certagent-auth:1");
            assert_eq!(token["origin"], ORIGIN);
            assert!(
                common::logon_token_verifies(env.hsm.path(), &token, ORIGIN, &challenge),
                "openssl verifies the token for the page's origin"
            );
            assert!(
                !common::logon_token_verifies(
                    env.hsm.path(),
                    &token,
                    "https://evil.example",
                    &challenge
                ),
                "and not for another"
            );

            // Deny: Esc on the consent dialog; no PIN dialog follows.
            let logon = logon_from_windows(port, &challenge);
            let consent = x
                .wait_window("certagent", &[], wait)
                .expect("the consent dialog appears again");
            std::thread::sleep(std::time::Duration::from_millis(500));
            x.keys(&consent, &["Escape"]);
            let (status, body) = logon.join().expect("the client thread");
            assert!(status.starts_with("HTTP/1.1 403"), "{status} {body}");
            assert_eq!(body["error"], "declined", "{body}");
            assert!(
                x.windows("certagent").is_empty(),
                "no PIN dialog after Deny"
            );
        });
        let _ = agent.kill();
        let _ = agent.wait();
        if let Err(e) = outcome {
            std::panic::resume_unwind(e);
        }
    }
}

/// The tray icon by the clock and a notice, under Wine's desktop on a
/// virtual display: at 20 days left the 30-day notice shows as a balloon
/// from the icon, once: a restart does not show it again (the ledger in
/// %LOCALAPPDATA%). The icon's menu opens with a right click and its last
/// item, Quit, ends the agent. Screenshots of the notice and the menu in
/// English and Japanese.
#[test]
fn the_tray_icon_its_menu_and_a_notice_under_wine() {
    let env = Env::new(20);
    japanese_fonts();
    let x = common::xvfb::Xvfb::start();
    let _desktop = VirtualDesktop::on();
    let wait = std::time::Duration::from_secs(60);
    for (lang, tag, summary) in [
        (
            "en_US.UTF-8",
            "en",
            "certagent: notice: Your bank certificate expires in 20 days",
        ),
        ("ja_JP.UTF-8", "ja", "certagent: notice: "),
    ] {
        // A fresh ledger for each language.
        if let Some(state) = local_state() {
            let _ = std::fs::remove_file(state.join("notices.json"));
        }
        let (mut agent, _port, lines) = agent_on_display(&env, &x, lang, true);
        let outcome = std::panic::catch_unwind(|| {
            assert!(
                wait_said(&lines, "certagent: tray icon registered", wait),
                "{:?}",
                said(&lines)
            );
            assert!(wait_said(&lines, summary, wait), "{:?}", said(&lines));
            // The balloon rises above the taskbar, where a bare desktop has
            // one colour; wait for it there (it fades in).
            let shot = shots().join(format!("windows-tray-notice-{tag}.png"));
            let above = shots().join(format!("windows-tray-notice-{tag}-above-bar.png"));
            let shown = (0..40).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(250));
                x.screenshot(&shot);
                let cropped = Command::new("convert")
                    .arg(&shot)
                    .args(["-crop", "500x90+524+655", "+repage"])
                    .arg(&above)
                    .status()
                    .expect("convert runs");
                assert!(cropped.success());
                common::xvfb::Xvfb::colours(&above) > 1
            });
            assert!(shown, "no balloon in {}", shot.display());
        });
        let _ = agent.kill();
        let _ = agent.wait();
        end_wine();
        if let Err(e) = outcome {
            std::panic::resume_unwind(e);
        }
    }

    // Again, in each language: the notice was shown; it is not shown
    // twice. The menu opens with a right click; Quit ends the agent.
    for (lang, tag) in [("en_US.UTF-8", "en"), ("ja_JP.UTF-8", "ja")] {
        let (mut agent, _port, lines) = agent_on_display(&env, &x, lang, true);
        let outcome = std::panic::catch_unwind(|| {
            assert!(wait_said(&lines, "certagent: tray icon registered", wait));
            std::thread::sleep(std::time::Duration::from_secs(3));
            let notices: Vec<String> = said(&lines)
                .into_iter()
                .filter(|l| l.starts_with("certagent: notice:"))
                .collect();
            assert!(notices.is_empty(), "shown again: {notices:?}");
            let xdo = |args: &[&str]| {
                let ok = Command::new("xdotool")
                    .args(args)
                    .env("DISPLAY", &x.display)
                    .status()
                    .expect("xdotool runs")
                    .success();
                assert!(ok, "xdotool {args:?}");
            };
            // The icon is at the bar's right end.
            xdo(&["mousemove", "1013", "758"]);
            std::thread::sleep(std::time::Duration::from_millis(300));
            xdo(&["click", "3"]);
            std::thread::sleep(std::time::Duration::from_millis(1500));
            let shot = shots().join(format!("windows-tray-menu-{tag}.png"));
            x.screenshot(&shot);
            // Quit is the menu's last item, just above the pointer (the
            // menu opens upwards from it and keeps to the screen's right
            // edge).
            xdo(&["mousemove", "924", "749"]);
            std::thread::sleep(std::time::Duration::from_millis(500));
            xdo(&["click", "1"]);
        });
        let ended = (0..100).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            agent.try_wait().ok().flatten()
        });
        if ended.is_none() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        end_wine();
        if let Err(e) = outcome {
            std::panic::resume_unwind(e);
        }
        assert!(
            ended.is_some_and(|s| s.success()),
            "Quit in the tray's menu ends the agent: {ended:?} {:?}",
            said(&lines)
        );
    }
}

/// The browser extension's door on Windows: `certagent.exe native-host`
/// (as a browser starts it, the browser's framing on stdin and stdout)
/// reaches `certagent.exe run` through the user's named pipe, under Wine:
/// the bank's origin is served, another origin refused by the agent.
#[test]
fn the_extension_channel_under_wine_reaches_the_agent_by_its_pipe() {
    use std::io::Write;
    let env = Env::new(20);
    let x = common::xvfb::Xvfb::start();
    let (mut agent, _port, lines) = agent_on_display(&env, &x, "en_US.UTF-8", false);
    let outcome =
        std::panic::catch_unwind(|| {
            assert!(
                said(&lines).iter().any(|l| l
                    .starts_with(r"certagent: browser extension channel on \\.\pipe\certagent-")),
                "{:?}",
                said(&lines)
            );
            let frame = |v: serde_json::Value| {
                let body = serde_json::to_vec(&v).expect("JSON");
                let mut f = (body.len() as u32).to_le_bytes().to_vec();
                f.extend(body);
                f
            };
            let mut input = frame(serde_json::json!({
                "origin": ORIGIN, "method": "GET", "path": "/v1/status"
            }));
            input.extend(frame(serde_json::json!({
                "origin": "https://evil.example", "method": "GET", "path": "/v1/status"
            })));
            let mut host = Command::new(common::repo_root().join("scripts/windows/wine-run.sh"))
                .arg(windows_dir().join("certagent.exe"))
                .arg(format!(
                    "chrome-extension://{}/",
                    certagent::native_messaging::CHROMIUM_EXTENSION_ID
                ))
                .env("WINEPREFIX", prefix())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("wine runs");
            host.stdin
                .take()
                .expect("stdin")
                .write_all(&input)
                .expect("write");
            let out = host.wait_with_output().expect("host output");
            assert!(out.status.success(), "{}", text(&out));
            let mut rest = out.stdout.as_slice();
            let mut replies = Vec::new();
            while rest.len() >= 4 {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                replies.push(
                    serde_json::from_slice::<serde_json::Value>(&rest[4..4 + len]).expect("reply"),
                );
                rest = &rest[4 + len..];
            }
            assert_eq!(replies.len(), 2, "{replies:?} {}", text(&out));
            assert_eq!(replies[0]["status"], 200, "{replies:?}");
            assert_eq!(
                replies[0]["body"]["certificates"].as_array().map(Vec::len),
                Some(1)
            );
            assert_eq!(replies[1]["status"], 403, "{replies:?}");
            assert_eq!(replies[1]["body"]["error"], "origin");
        });
    let _ = agent.kill();
    let _ = agent.wait();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}
