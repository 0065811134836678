//! End to end in a real browser: Debian's headless chromium, driven through
//! chromedriver, opens the reference bank's pages; the pages call the agent
//! (`certagent run --no-tray`) on loopback; a scripted pinentry consents and
//! gives the PIN; the bank verifies. Screenshots go to
//! `target/tmp/screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use certagent_bank::ServeOptions;
use common::agent::{ANA, Agent};
use common::webdriver::Browser;
use sha2::{Digest, Sha256};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

/// Trust exactly these banks' TLS server keys in this browser profile (the
/// banks' CAs are not in the system store), not "any certificate".
fn trust_banks(dirs: &[&Path]) -> Vec<String> {
    let pins: Vec<String> = dirs
        .iter()
        .map(|d| {
            let pem = std::fs::read(d.join("tls-server.pem")).expect("tls-server.pem");
            let (_, der) = der::pem::decode_vec(&pem).expect("pem");
            let cert = certagent::cert::Cert::from_der(&der).expect("cert");
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&cert.spki_der))
        })
        .collect();
    vec![format!(
        "--ignore-certificate-errors-spki-list={}",
        pins.join(",")
    )]
}

#[test]
fn logon_notice_and_renewal_in_a_real_browser_and_refusal_for_another_origin() {
    // The agent allows the bank's origin, https://localhost:PORT, only.
    let agent = Agent::start_with(
        20,
        |bank| vec![bank.origin().to_string()],
        ServeOptions::default(),
    );
    let origin = agent.bank.origin().to_string();
    // A second site with the same pages, calling the same agent, at an
    // origin the agent does not allow (another port is another origin).
    let other_dir = agent.hsm.path().join("other-site");
    certagent_bank::init(&other_dir).expect("other site");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let other = rt
        .block_on(certagent_bank::serve(
            &other_dir,
            ServeOptions {
                listen: "127.0.0.1:0".parse().expect("addr"),
                agent_url: format!("http://127.0.0.1:{}", agent.port),
                ..ServeOptions::default()
            },
        ))
        .expect("other site serves");
    let browser = Browser::start(&trust_banks(&[&agent.bank_dir, &other_dir]));
    let wait = Duration::from_secs(30);

    // Logon: challenge from the bank, signature from the agent, verified by the bank.
    browser.goto(&format!("{origin}/"));
    browser.click("#logon");
    let result = browser.wait_text("#result", &["Logged on as", "Error"], wait);
    browser.screenshot(&shots().join("logon.png"));
    assert!(
        result.contains("Logged on as") && result.contains("Ana Novak"),
        "logon page says: {result}"
    );
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);

    // The notices page shows the renewal notice for a certificate 20 days from expiry.
    browser.goto(&format!("{origin}/notices"));
    let notice = browser.wait_text("#notice", &["expires in", "No notices", "Error"], wait);
    browser.screenshot(&shots().join("notices.png"));
    assert!(
        notice.contains("expires in 20 days"),
        "notices page says: {notice}"
    );

    // The renew button runs the renewal in the agent, with progress.
    browser.click("#renew");
    let progress = browser.wait_text("#progress", &["Renewed", "Error"], Duration::from_secs(60));
    browser.screenshot(&shots().join("renewed.png"));
    assert!(
        progress.contains("Renewed"),
        "renewal progress says: {progress}"
    );
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN", "CONFIRM", "GETPIN"]);

    // The same pages from another origin call the agent and are refused by
    // it (the other site hands out challenges; the agent says no), and the
    // user is never asked.
    let foreign = other.origin().to_string();
    assert_ne!(foreign, origin);
    browser.goto(&format!("{foreign}/"));
    browser.click("#logon");
    let refused = browser.wait_text("#result", &["Logged on as", "Error"], wait);
    browser.screenshot(&shots().join("foreign-logon.png"));
    assert!(
        refused.contains("Error") && !refused.contains("Logged on"),
        "foreign origin: {refused}"
    );
    assert!(
        refused.to_lowercase().contains("agent"),
        "refused by the agent, not the site: {refused}"
    );
    browser.goto(&format!("{foreign}/notices"));
    let refused = browser.wait_text("#notice", &["expires in", "No notices", "Error"], wait);
    browser.screenshot(&shots().join("foreign-notices.png"));
    assert!(
        refused.contains("Error"),
        "foreign origin notices: {refused}"
    );
    assert_eq!(
        agent.prompts().len(),
        4,
        "a foreign page reached the prompt: {:?}",
        agent.prompts()
    );
    assert!(
        !refused.contains(ANA),
        "certificate details leaked to a foreign page"
    );
    rt.block_on(other.shutdown());
}
