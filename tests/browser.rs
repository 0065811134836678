//! End to end in a real browser: Debian's headless chromium, driven through
//! chromedriver, opens the reference bank's pages; the pages call the agent
//! (`certagent run --no-tray`) on loopback; a scripted pinentry consents and
//! gives the PIN; the bank verifies. Screenshots go to
//! `target/tmp/screenshots/`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use certagent_bank::ServeOptions;
use common::agent::{ANA, Agent};
use common::webdriver::{Browser, public_bank, trust_banks};

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
fn a_public_bank_page_reaches_the_agent_only_with_the_permission_or_the_policy() {
    common::require_root("this test installs the managed browser policy under /etc");
    let agent = Agent::start_with(
        20,
        |bank| vec![bank.origin().to_string()],
        ServeOptions::default(),
    );
    let origin = agent.bank.origin().to_string();
    let mut flags = trust_banks(&[&agent.bank_dir]);
    flags.push(public_bank(&agent));

    // (1) Neither permission nor policy: Chromium blocks the page's calls
    // to loopback; the page says what to do, and the user is never asked
    // by the agent.
    {
        let browser = Browser::start(&flags);
        let (text, reason) = logon(&browser, &origin, "lna-blocked-logon.png");
        assert_eq!(reason, "local-network-denied", "{text}");
        assert!(
            text.contains("Local network access") && text.contains("certagent browser-policy"),
            "the guidance names the setting and the policy: {text}"
        );
        browser.goto(&format!("{origin}/notices"));
        let notice =
            browser.wait_text("#notice", &["expires in", "Error"], Duration::from_secs(30));
        browser.screenshot(&shots().join("lna-blocked-notices.png"));
        assert_eq!(
            browser.attribute("#notice", "data-reason"),
            "local-network-denied",
            "{notice}"
        );
        assert!(agent.prompts().is_empty(), "{:?}", agent.prompts());
    }

    // (2) The user allowed the bank's site to reach this computer (the
    // permission Chromium asks for): logon works and the bank opens a session.
    {
        let browser = Browser::start(&flags);
        browser.goto(&format!("{origin}/"));
        browser.grant("loopback-network");
        let (text, reason) = logon(&browser, &origin, "lna-permitted-logon.png");
        assert!(
            text.contains("Logged on as") && text.contains("Ana Novak"),
            "with the permission: {text} ({reason})"
        );
        assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN"]);
    }

    // (3) IT installed the policy for the bank's origin: no permission, no
    // browser prompt, logon works. Removed, the page is blocked again.
    let install = agent.cli(&["browser-policy", "--install"], &[]);
    assert!(
        install.status.success(),
        "browser-policy --install: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let policy = std::fs::read_to_string("/etc/chromium/policies/managed/certagent.json")
        .expect("the policy file for Chromium");
    assert!(policy.contains(&origin), "{policy}");
    let outcome = {
        let browser = Browser::start(&flags);
        logon(&browser, &origin, "lna-policy-logon.png")
    };
    let remove = agent.cli(&["browser-policy", "--remove"], &[]);
    assert!(
        remove.status.success(),
        "browser-policy --remove: {}",
        String::from_utf8_lossy(&remove.stderr)
    );
    assert!(
        outcome.0.contains("Logged on as") && outcome.0.contains("Ana Novak"),
        "with the policy: {} ({})",
        outcome.0,
        outcome.1
    );
    assert_eq!(agent.prompts().len(), 4, "{:?}", agent.prompts());
    assert!(!std::path::Path::new("/etc/chromium/policies/managed/certagent.json").exists());
    {
        let browser = Browser::start(&flags);
        let (text, reason) = logon(&browser, &origin, "lna-policy-removed-logon.png");
        assert_eq!(reason, "local-network-denied", "after --remove: {text}");
    }
    assert_eq!(agent.prompts().len(), 4, "{:?}", agent.prompts());
}

#[test]
fn the_page_tells_an_agent_that_is_not_running_from_one_that_refuses_the_site() {
    // A bank site whose agent URL has nothing listening, on a loopback
    // origin (no Local Network Access gate).
    let agent = Agent::start_with(
        20,
        |bank| vec![bank.origin().to_string()],
        ServeOptions::default(),
    );
    let dir = agent.hsm.path().join("site-without-agent");
    certagent_bank::init(&dir).expect("site");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let dead = common::agent::free_port();
    let site = rt
        .block_on(certagent_bank::serve(
            &dir,
            ServeOptions {
                listen: "127.0.0.1:0".parse().expect("addr"),
                agent_url: format!("http://127.0.0.1:{dead}"),
                ..ServeOptions::default()
            },
        ))
        .expect("site serves");
    let browser = Browser::start(&trust_banks(&[&dir]));
    let (text, reason) = logon(&browser, site.origin(), "agent-not-running.png");
    assert_eq!(reason, "agent-not-running", "{text}");
    assert!(text.contains("Start it"), "{text}");
    assert!(agent.prompts().is_empty());
    rt.block_on(site.shutdown());
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
    assert_eq!(
        browser.attribute("#result", "data-reason"),
        "origin-not-allowed",
        "refused by the agent, not the site: {refused}"
    );
    assert!(refused.contains(&foreign), "names the site: {refused}");
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

#[test]
fn a_japanese_browser_gets_the_banks_pages_in_japanese_with_names_and_dates() {
    let agent = Agent::start_with(
        20,
        |bank| vec![bank.origin().to_string()],
        ServeOptions::default(),
    );
    let origin = agent.bank.origin().to_string();
    let mut flags = trust_banks(&[&agent.bank_dir]);
    flags.extend(["--lang=ja".to_string(), "--accept-lang=ja".to_string()]);
    let browser = Browser::start(&flags);
    let wait = Duration::from_secs(30);

    // Accept-Language: ja. The notice names the holder and the date as
    // people write them in Japanese.
    browser.goto(&format!("{origin}/notices"));
    let notice = browser.wait_text("#notice", &["有効期限を迎えます", "エラー", "Error"], wait);
    browser.screenshot(&shots().join("ja-notices.png"));
    assert!(
        notice.contains("Ana Novak (Demo Company d.o.o.)の電子証明書は")
            && notice.contains("年")
            && notice.contains("月")
            && notice.contains("日に有効期限を迎えます（あと20日）"),
        "{notice}"
    );
    assert!(
        !notice.contains("CN="),
        "a person's name, not a DN: {notice}"
    );
    assert_eq!(browser.text("h1"), "重要なお知らせ");

    browser.goto(&format!("{origin}/"));
    assert_eq!(browser.text("h1"), "ログオン");
    browser.click("#logon");
    let result = browser.wait_text("#result", &["ログオンしました", "エラー"], wait);
    browser.screenshot(&shots().join("ja-logon.png"));
    assert!(result.contains("ログオンしました"), "{result}");

    // An error from the agent in the customer's words, the agent's own
    // English message after it: the user declines in the dialog.
    std::fs::write(agent.prompt_dir.join("confirm"), "no").expect("decline");
    browser.goto(&format!("{origin}/"));
    browser.click("#logon");
    let result = browser.wait_text("#result", &["エラー", "ログオンしました"], wait);
    browser.screenshot(&shots().join("ja-declined.png"));
    assert!(
        result.starts_with("エラー：certagent の画面でログオンが拒否されました（"),
        "{result}"
    );

    // The switch in the header: English, whatever the browser asks for.
    browser.goto(&format!("{origin}/?lang=en"));
    assert_eq!(browser.text("h1"), "Log on");
}
