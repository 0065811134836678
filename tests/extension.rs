//! The browser vouches for the page: Debian's Chromium with the certagent
//! extension (unpacked, `packaging/extension/`) and its native messaging
//! host (`certagent` itself, named by a manifest in the browser profile),
//! the reference bank's page on a public https origin, and neither the
//! Local Network Access permission nor the browser policy. The logon goes
//! page → extension → host → agent; consent and PIN in the agent's own
//! (scripted) pinentry; the token verifies in openssl for the page's
//! origin. Screenshots go to `target/tmp/screenshots/extension-*.png`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certagent_bank::ServeOptions;
use common::agent::Agent;
use common::webdriver::{Browser, public_bank, trust_banks};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

/// Chromium with the unpacked extension, the host's manifest in its
/// profile (Chromium reads `NativeMessagingHosts/` in the user data
/// directory), and the agent's state directory for the host it starts.
fn chromium(agent: &Agent, extension: bool) -> Browser {
    let mut flags = trust_banks(&[&agent.bank_dir]);
    flags.push(public_bank(agent));
    if extension {
        let dir = common::repo_root().join("packaging/extension");
        flags.push(format!("--load-extension={}", dir.display()));
        flags.push(format!("--disable-extensions-except={}", dir.display()));
        // Chromium 137 and later accept --load-extension only with this.
        flags.push("--disable-features=DisableLoadExtensionCommandLineSwitch".into());
    }
    let state = agent.hsm.path().join("state");
    Browser::start_with(&flags, &[("XDG_STATE_HOME", &state)], |profile| {
        let hosts = profile.join("NativeMessagingHosts");
        std::fs::create_dir_all(&hosts).expect("NativeMessagingHosts");
        std::fs::write(
            hosts.join("certagent.json"),
            certagent::native_messaging::chromium_manifest(env!("CARGO_BIN_EXE_certagent")),
        )
        .expect("host manifest");
    })
}

/// Post one request to the extension from the page, as the bank's page
/// does, with `extra` fields a hostile page might add; its answer.
fn through_extension(browser: &Browser, request: serde_json::Value) -> serde_json::Value {
    browser.execute_async(
        r#"
        const [request, done] = arguments;
        const id = 'test-' + Math.random().toString(36).slice(2);
        const timer = setTimeout(() => done({timeout: true}), 25000);
        window.addEventListener('message', (e) => {
          if (e.source === window && e.data && e.data.source === 'certagent-extension'
              && e.data.id === id) {
            clearTimeout(timer);
            done({status: e.data.status, body: e.data.body});
          }
        });
        window.postMessage(Object.assign({source: 'certagent-page', id}, request),
                           location.origin);
        "#,
        serde_json::json!([request]),
    )
}

#[test]
fn with_the_extension_a_public_bank_page_logs_on_without_any_prompt_or_policy() {
    let agent = Agent::start_with(
        20,
        |bank| vec![bank.origin().to_string()],
        ServeOptions::default(),
    );
    let origin = agent.bank.origin().to_string();
    let browser = chromium(&agent, true);

    // The bank's own page: the logon goes through the extension.
    browser.goto(&format!("{origin}/"));
    browser.click("#logon");
    let text = browser.wait_text(
        "#result",
        &["Logged on as", "Error"],
        Duration::from_secs(30),
    );
    browser.screenshot(&shots().join("extension-logon.png"));
    assert!(
        text.contains("Logged on as") && text.contains("Ana Novak"),
        "{text} ({})",
        browser.attribute("#result", "data-reason")
    );
    assert_eq!(browser.attribute("html", "data-channel"), "extension");
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);

    // The token, asked for directly; a page that writes another origin
    // into its request still gets a token for its own.
    let challenge: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(11)).collect();
    let reply = through_extension(
        &browser,
        serde_json::json!({
            "method": "POST",
            "path": "/v1/logon",
            "origin": "https://evil.example",
            "body": {"challenge": URL_SAFE_NO_PAD.encode(&challenge)},
        }),
    );
    assert_eq!(reply["status"], 200, "{reply}");
    let token = &reply["body"];
    assert_eq!(token["origin"], origin.as_str(), "{token}");
    assert!(common::logon_token_verifies(
        agent.hsm.path(),
        token,
        &origin,
        &challenge
    ));
    assert!(!common::logon_token_verifies(
        agent.hsm.path(),
        token,
        "https://evil.example",
        &challenge
    ));
    assert_eq!(agent.logins(), 2);
}

#[test]
fn a_page_whose_origin_is_not_allowed_is_refused_by_the_agent() {
    // The agent allows another origin only: the bank's page is foreign.
    let agent = Agent::start_with(
        20,
        |_| vec!["https://other-bank.example".to_string()],
        ServeOptions::default(),
    );
    let origin = agent.bank.origin().to_string();
    let browser = chromium(&agent, true);
    browser.goto(&format!("{origin}/"));
    let reply = through_extension(
        &browser,
        serde_json::json!({"method": "GET", "path": "/v1/status"}),
    );
    assert_eq!(reply["status"], 403, "{reply}");
    assert_eq!(reply["body"]["error"], "origin", "{reply}");
    assert!(agent.prompts().is_empty());
}

#[test]
fn without_the_extension_the_page_falls_back_to_the_api() {
    let agent = Agent::start_with(
        20,
        |bank| vec![bank.origin().to_string()],
        ServeOptions::default(),
    );
    let origin = agent.bank.origin().to_string();
    let browser = chromium(&agent, false);
    browser.goto(&format!("{origin}/"));
    browser.grant("loopback-network");
    browser.click("#logon");
    let text = browser.wait_text(
        "#result",
        &["Logged on as", "Error"],
        Duration::from_secs(30),
    );
    browser.screenshot(&shots().join("extension-fallback-logon.png"));
    assert!(text.contains("Logged on as"), "{text}");
    assert_eq!(browser.attribute("html", "data-channel"), "api");
}
