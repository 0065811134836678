//! End to end in Firefox ESR: Debian's `firefox-esr`, headless and driven
//! over Marionette (`common::firefox`), opens the reference bank's pages;
//! the pages call the agent (`certagent run --no-tray`) on loopback; a
//! scripted pinentry consents and gives the PIN; the bank verifies.
//!
//! Firefox ESR 153 has Local Network Access on (`network.lna.enabled`,
//! `network.lna.blocking`): a public site calling loopback waits on a
//! `loopback-network` prompt. The bank is made a public site on this
//! machine as `https://bank.test:PORT`: `network.dns.localDomains` resolves
//! the name to loopback and `network.lna.address_space.public.override`
//! marks the bank's address and port public (as Chromium's
//! `--ip-address-space-overrides` does). A name that is not a loopback one
//! is needed because `certagent browser-policy` writes only such names into
//! `network.lna.skip-domains` (a loopback name there would also exempt
//! every page's calls to this computer); the reference bank's own TLS CA is
//! name-constrained to localhost and 127.0.0.1, so these tests give that
//! bank a server certificate from a throwaway openssl CA of their own.
//!
//! Screenshots go to `target/tmp/screenshots/firefox-*.png`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use certagent_bank::ServeOptions;
use common::agent::{Agent, free_port};
use common::firefox::Browser;
use serde_json::{Value, json};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

/// The logon page's result once it settled, its `data-reason` and a
/// screenshot named `name`.
fn logon(browser: &Browser, origin: &str, name: &str) -> (String, String) {
    browser.goto(&format!("{origin}/"));
    browser.click("#logon");
    let text = browser.wait_text(
        "#result",
        &["Logged on as", "Error"],
        Duration::from_secs(30),
    );
    browser.screenshot(&shots().join(name));
    (text, browser.attribute("#result", "data-reason"))
}

#[test]
fn firefox_esr_logs_on_shows_the_notice_and_renews_on_the_banks_loopback_origin() {
    // The bank at https://localhost:PORT, its own name-constrained TLS CA
    // trusted in the profile; the agent allows that origin only.
    let agent = Agent::start_with(
        20,
        |bank| vec![bank.origin().to_string()],
        ServeOptions::default(),
    );
    let origin = agent.bank.origin().to_string();
    let browser = Browser::start(&[&agent.bank_dir.join("tls-roots.pem")], &[]);
    let wait = Duration::from_secs(30);

    let (result, reason) = logon(&browser, &origin, "firefox-logon.png");
    assert!(
        result.contains("Logged on as") && result.contains("Ana Novak"),
        "logon page says: {result} ({reason})"
    );
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);

    browser.goto(&format!("{origin}/notices"));
    let notice = browser.wait_text("#notice", &["expires in", "No notices", "Error"], wait);
    browser.screenshot(&shots().join("firefox-notices.png"));
    assert!(
        notice.contains("expires in 20 days"),
        "notices page says: {notice}"
    );

    browser.click("#renew");
    let progress = browser.wait_text("#progress", &["Renewed", "Error"], Duration::from_secs(60));
    browser.screenshot(&shots().join("firefox-renewed.png"));
    assert!(
        progress.contains("Renewed"),
        "renewal progress says: {progress}"
    );
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN", "CONFIRM", "GETPIN"]);
}

/// The public name the bank is served under (`.test` is reserved, RFC 2606).
const PUBLIC_HOST: &str = "bank.test";

/// Give the bank in `bank_dir` a TLS server certificate for
/// [`PUBLIC_HOST`], localhost and 127.0.0.1 from a throwaway openssl CA
/// made in `dir`, which becomes the bank's `tls-roots.pem` (what the
/// agent and the browser trust for it).
fn tls_for_public_host(dir: &Path, bank_dir: &Path) {
    let ca = common::OpensslCa::new(dir);
    let key = dir.join("bank-test-key.pem");
    let public = dir.join("bank-test-pub.pem");
    common::run(
        common::openssl()
            .args(["genpkey", "-algorithm", "EC", "-pkeyopt"])
            .arg("ec_paramgen_curve:P-256")
            .arg("-out")
            .arg(&key),
    );
    common::run(
        common::openssl()
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public),
    );
    let der = ca.issue(
        "bank-test",
        &public,
        &format!("/O=certagent tests/CN={PUBLIC_HOST}"),
        &format!(
            "subjectAltName=DNS:{PUBLIC_HOST},DNS:localhost,IP:127.0.0.1\n\
             extendedKeyUsage=serverAuth\n\
             keyUsage=critical,digitalSignature\n\
             basicConstraints=critical,CA:FALSE\n"
        ),
    );
    let cert_der = dir.join("bank-test.der");
    std::fs::write(&cert_der, der).expect("cert");
    common::run(
        common::openssl()
            .args(["x509", "-inform", "DER", "-in"])
            .arg(&cert_der)
            .arg("-out")
            .arg(bank_dir.join("tls-server.pem")),
    );
    std::fs::copy(&key, bank_dir.join("tls-server-key.pem")).expect("key");
    std::fs::copy(ca.dir.join("ca.pem"), bank_dir.join("tls-roots.pem")).expect("roots");
}

/// An agent whose bank is the public site `https://bank.test:PORT` (its
/// only allowed origin), and the Firefox preferences that make it one:
/// the name resolves to loopback, the bank's address and port count as
/// public.
fn public_bank() -> (Agent, String, Vec<(&'static str, Value)>) {
    let port = free_port();
    let origin = format!("https://{PUBLIC_HOST}:{port}");
    let agent = Agent::start_at(
        20,
        |_| vec![origin.clone()],
        ServeOptions {
            listen: ([127, 0, 0, 1], port).into(),
            origin: Some(origin.clone()),
            ..ServeOptions::default()
        },
        |hsm, bank_dir| tls_for_public_host(hsm.path(), bank_dir),
    );
    assert_eq!(agent.bank.origin(), origin);
    let prefs = vec![
        ("network.dns.localDomains", json!(PUBLIC_HOST)),
        (
            "network.lna.address_space.public.override",
            json!(format!("127.0.0.1:{port}")),
        ),
    ];
    (agent, origin, prefs)
}

fn start_public(agent: &Agent, prefs: &[(&str, Value)]) -> Browser {
    Browser::start(&[&agent.bank_dir.join("tls-roots.pem")], prefs)
}

/// Click "Log on" and check that Firefox holds the page's call to the
/// agent at its `loopback-network` prompt: the prompt is up, the page
/// still waits for the agent, and the agent never heard of it (the
/// scripted pinentry saw nothing new). Returns the page's text.
fn held_at_the_prompt(browser: &Browser, agent: &Agent, origin: &str, name: &str) -> String {
    let before = agent.prompts();
    browser.goto(&format!("{origin}/"));
    browser.click("#logon");
    let waiting = "Confirm the logon and enter your PIN";
    let text = browser.wait_text(
        "#result",
        &[waiting, "Logged on", "Error"],
        Duration::from_secs(30),
    );
    assert!(
        text.contains(waiting),
        "the page got past the agent call: {text}"
    );
    assert!(
        text.contains("choose Allow"),
        "the page says the browser may ask: {text}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let prompt = loop {
        let prompts = browser.prompts();
        if let Some(p) = prompts.into_iter().find(|(id, _)| id == "loopback-network") {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no loopback-network prompt: {:?}\n{}",
            browser.prompts(),
            browser.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        prompt
            .1
            .contains("wants to access other apps and services on this device"),
        "{prompt:?}"
    );
    // An agent that got the call would be at its consent prompt within a
    // second; give it several.
    std::thread::sleep(Duration::from_secs(4));
    browser.screenshot(&shots().join(name));
    assert_eq!(browser.text("#result"), text, "the page moved on");
    assert_eq!(browser.attribute("#result", "data-reason"), "");
    assert_eq!(agent.prompts(), before, "the agent was asked");
    text
}

// In the nextest group `etc-browser-policy` (the name has "policy"): a
// Firefox started while another test has the policy in /etc would not ask.
#[test]
fn firefox_esr_without_the_policy_holds_a_public_banks_call_at_its_prompt() {
    let (agent, origin, prefs) = public_bank();

    // (1) Nobody answers Firefox's prompt: the call waits at it (for
    // `network.lna.prompt.timeout`, 5 minutes), and the agent never
    // hears of it.
    {
        let browser = start_public(&agent, &prefs);
        for (name, value) in [
            ("network.lna.enabled", json!(true)),
            ("network.lna.blocking", json!(true)),
            ("network.lna.skip-domains", json!("")),
        ] {
            assert_eq!(browser.pref(name), value, "{name}");
        }
        held_at_the_prompt(&browser, &agent, &origin, "firefox-lna-prompt-logon.png");
    }

    // (2) The user answered "Block" (Firefox keeps the answer for the
    // site): the page says what to do, and the user is never asked by the
    // agent.
    {
        let browser = start_public(&agent, &prefs);
        browser.goto(&format!("{origin}/"));
        browser.set_permission("loopback-network", "denied");
        let (text, reason) = logon(&browser, &origin, "firefox-lna-denied-logon.png");
        assert_eq!(reason, "local-network-denied", "{text}");
        assert!(
            text.contains("Local network access") && text.contains("certagent browser-policy"),
            "the guidance names the setting and the policy: {text}"
        );
        browser.goto(&format!("{origin}/notices"));
        let notice =
            browser.wait_text("#notice", &["expires in", "Error"], Duration::from_secs(30));
        browser.screenshot(&shots().join("firefox-lna-denied-notices.png"));
        assert_eq!(
            browser.attribute("#notice", "data-reason"),
            "local-network-denied",
            "{notice}"
        );
        assert!(agent.prompts().is_empty(), "{:?}", agent.prompts());
    }

    // (3) The user answered "Allow": logon works.
    {
        let browser = start_public(&agent, &prefs);
        browser.goto(&format!("{origin}/"));
        browser.set_permission("loopback-network", "granted");
        let (text, reason) = logon(&browser, &origin, "firefox-lna-allowed-logon.png");
        assert!(
            text.contains("Logged on as") && text.contains("Ana Novak"),
            "with the permission: {text} ({reason})"
        );
        assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);
    }
}

/// Runs `certagent browser-policy --remove` when dropped, so that a failed
/// test does not leave the policy in /etc for the next one.
struct Installed<'a>(Option<&'a Agent>);

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        if let Some(agent) = self.0.take() {
            let _ = agent.cli(&["browser-policy", "--remove"], &[]);
        }
    }
}

#[test]
fn firefox_esr_with_the_policy_lets_a_public_bank_log_on_and_after_remove_asks_again() {
    common::require_root("this test installs the browser policy under /etc");
    let (agent, origin, prefs) = public_bank();
    const FILE: &str = "/etc/firefox-esr/certagent.js";

    // IT installed the policy for the bank's origin: Firefox (started
    // after it) reads the drop-in file, asks nothing, logon works.
    let install = agent.cli(&["browser-policy", "--install"], &[]);
    let mut installed = Installed(Some(&agent));
    assert!(
        install.status.success(),
        "browser-policy --install: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let file = std::fs::read_to_string(FILE).expect("the preference file for Firefox ESR");
    assert!(
        file.contains(&format!(
            "pref(\"network.lna.skip-domains\", \"{PUBLIC_HOST}\");"
        )),
        "{file}"
    );
    {
        let browser = start_public(&agent, &prefs);
        assert_eq!(browser.pref("network.lna.skip-domains"), json!(PUBLIC_HOST));
        let (text, reason) = logon(&browser, &origin, "firefox-policy-logon.png");
        assert!(
            text.contains("Logged on as") && text.contains("Ana Novak"),
            "with the policy: {text} ({reason})"
        );
        assert!(
            !browser
                .prompts()
                .iter()
                .any(|(id, _)| id == "loopback-network"),
            "{:?}",
            browser.prompts()
        );
    }
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);

    // Removed: a new Firefox holds the call at its prompt again.
    installed.0 = None;
    let remove = agent.cli(&["browser-policy", "--remove"], &[]);
    assert!(
        remove.status.success(),
        "browser-policy --remove: {}",
        String::from_utf8_lossy(&remove.stderr)
    );
    assert!(!Path::new(FILE).exists());
    {
        let browser = start_public(&agent, &prefs);
        assert_eq!(browser.pref("network.lna.skip-domains"), json!(""));
        held_at_the_prompt(
            &browser,
            &agent,
            &origin,
            "firefox-policy-removed-logon.png",
        );
    }
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);
}

/// With the certagent add-on (installed temporarily, as about:debugging
/// does) and its native messaging host (`certagent`, named by a manifest
/// under this test's `~/.mozilla/native-messaging-hosts`), the public
/// bank's page logs on with no Local Network Access prompt and no policy:
/// the page says it used the extension, and Firefox asked nothing.
// In the nextest group `etc-browser-policy` (the name has "policy"): with
// the policy in /etc the API path would work too, and prove less.
#[test]
fn firefox_esr_with_the_extension_logs_on_from_a_public_bank_without_prompt_or_policy() {
    let (agent, origin, prefs) = public_bank();
    let home = tempfile::tempdir().expect("home");
    let hosts = home.path().join(".mozilla/native-messaging-hosts");
    std::fs::create_dir_all(&hosts).expect("hosts dir");
    std::fs::write(
        hosts.join("certagent.json"),
        certagent::native_messaging::firefox_manifest(env!("CARGO_BIN_EXE_certagent")),
    )
    .expect("host manifest");
    let state = agent.hsm.path().join("state");
    let browser = Browser::start_with(
        &[&agent.bank_dir.join("tls-roots.pem")],
        &prefs,
        &[("HOME", home.path()), ("XDG_STATE_HOME", &state)],
    );
    browser.install_temporary_addon(&common::repo_root().join("packaging/extension"));
    let (text, reason) = logon(&browser, &origin, "firefox-extension-logon.png");
    assert!(
        text.contains("Logged on as") && text.contains("Ana Novak"),
        "{text} ({reason})\n{}",
        browser.log()
    );
    assert_eq!(browser.attribute("html", "data-channel"), "extension");
    assert!(
        !browser
            .prompts()
            .iter()
            .any(|(id, _)| id == "loopback-network"),
        "Firefox asked: {:?}",
        browser.prompts()
    );
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);

    // A page that writes another origin into its request gets a token for
    // its own.
    let reply = browser.execute_async(
        r#"
        const [challenge, done] = arguments;
        const id = 'test-' + Math.random().toString(36).slice(2);
        window.addEventListener('message', (e) => {
          if (e.source === window && e.data && e.data.source === 'certagent-extension'
              && e.data.id === id) {
            done({status: e.data.status, body: e.data.body});
          }
        });
        window.postMessage({source: 'certagent-page', id, method: 'POST', path: '/v1/logon',
                            origin: 'https://evil.example', body: {challenge}},
                           location.origin);
        "#,
        json!(["AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"]),
    );
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["body"]["origin"], origin.as_str(), "{reply}");
}
