//! The desktop agent on a real D-Bus session bus (a private dbus-daemon):
//! the tray registers a StatusNotifierItem whose menu is exported over
//! com.canonical.dbusmenu; notices reach org.freedesktop.Notifications (a
//! recording server on the same bus stands in for the desktop's
//! notification daemon) once per threshold across restarts; activating
//! "Renew certificate…" over D-Bus renews against the reference bank.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certagent_bank::{self as bank, RunningBank, ServeOptions};
use common::SoftHsm;
use zbus::zvariant::{OwnedValue, Value};

const ANA: &str = "CN=Ana Novak,O=Demo Company d.o.o.,C=SI";
const INSTALL: &str = "apt-get install dbus-daemon";

/// A private session bus.
struct Bus {
    daemon: Child,
    address: String,
}

impl Bus {
    fn start() -> Bus {
        assert!(
            std::path::Path::new("/usr/bin/dbus-daemon").exists(),
            "dbus-daemon is missing; install it: {INSTALL}"
        );
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon starts");
        let mut line = String::new();
        BufReader::new(daemon.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("address");
        Bus {
            daemon,
            address: line.trim().to_string(),
        }
    }

    fn connect(&self) -> zbus::blocking::Connection {
        zbus::blocking::connection::Builder::address(self.address.as_str())
            .expect("address")
            .build()
            .expect("connect")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Records every notification it is sent.
/// (summary, body, actions) of one notification.
type Sent = (String, String, Vec<String>);

#[derive(Clone, Default)]
struct Notifications(Arc<Mutex<Vec<Sent>>>);

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        _hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut n = self.0.lock().expect("lock");
        n.push((summary, body, actions));
        n.len() as u32
    }
    fn get_capabilities(&self) -> Vec<String> {
        vec!["actions".into(), "body".into()]
    }
    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "test".into(),
            "certagent tests".into(),
            "1".into(),
            "1.2".into(),
        )
    }
    fn close_notification(&self, _id: u32) {}
}

impl Notifications {
    fn serve(bus: &Bus) -> (Notifications, zbus::blocking::Connection) {
        let n = Notifications::default();
        let conn = zbus::blocking::connection::Builder::address(bus.address.as_str())
            .expect("address")
            .name("org.freedesktop.Notifications")
            .expect("name")
            .serve_at("/org/freedesktop/Notifications", n.clone())
            .expect("serve")
            .build()
            .expect("notification server");
        (n, conn)
    }

    fn summaries(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .map(|(s, _, _)| s.clone())
            .collect()
    }
}

struct Setup {
    hsm: SoftHsm,
    bank_dir: std::path::PathBuf,
    _rt: tokio::runtime::Runtime,
    bank: RunningBank,
    config: std::path::PathBuf,
    prompt_dir: std::path::PathBuf,
    /// `LANG` for the agent; none: English whatever the test's locale.
    lang: Option<&'static str>,
}

impl Setup {
    fn new(days_left: i64) -> Setup {
        let hsm = SoftHsm::new();
        let bank_dir = hsm.path().join("bank");
        bank::init(&bank_dir).expect("bank");
        bank::add_user(&bank_dir, "ana", ANA).expect("user");
        let (rt, bank) = common::serve_bank(&bank_dir, ServeOptions::default());
        let (pinentry, prompt_dir) = common::scripted_pinentry(hsm.path());
        let config = hsm.config(
            "softhsm2",
            &format!(
                "[bank]\nest_url = \"https://{}/.well-known/est\"\nserver_roots = \"{}\"\n[agent]\npinentry = \"{}\"\n",
                bank.addr(),
                bank_dir.join("tls-roots.pem").display(),
                pinentry.display()
            ),
        );
        let s = Setup {
            hsm,
            bank_dir,
            _rt: rt,
            bank,
            config,
            prompt_dir,
            lang: None,
        };
        common::bank_cert_on_token(&s.hsm, &s.bank_dir, "01", "rsa:2048", ANA, days_left);
        s
    }

    fn prompts(&self) -> Vec<String> {
        common::prompts_seen(&self.prompt_dir)
    }
}
/// `certagent run` on the bus; its stdout lines are collected.
struct AgentProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl AgentProcess {
    fn start(s: &Setup, bus: &Bus, tray: bool) -> AgentProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_certagent"));
        cmd.env("SOFTHSM2_CONF", s.hsm.conf())
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("XDG_STATE_HOME", s.hsm.path().join("state"))
            .env("PINENTRY_TEST_DIR", &s.prompt_dir)
            // The icon theme: only what a test puts there.
            .env("XDG_DATA_HOME", s.hsm.path().join("data"))
            .env("XDG_DATA_DIRS", s.hsm.path().join("data-dirs"))
            .env_remove("CERTAGENT_PIN")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .env("LANG", s.lang.unwrap_or("C.UTF-8"))
            .args(["--config", &s.config.display().to_string(), "run"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if !tray {
            cmd.arg("--no-tray");
        }
        let mut child = cmd.spawn().expect("certagent run");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(l);
            }
        });
        let p = AgentProcess { child, lines };
        p.wait_for("certagent: ready", Duration::from_secs(20));
        p
    }

    fn wait_for(&self, text: &str, timeout: Duration) -> String {
        self.wait_for_any(&[text], timeout)
    }

    /// The first line containing any of `texts`.
    fn wait_for_any(&self, texts: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .expect("lock")
                .iter()
                .find(|l| texts.iter().any(|t| l.contains(t)))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "agent never said {texts:?}; it said {:?}",
                self.lines.lock().expect("lock")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The StatusNotifierItem's bus name, waiting for it to appear.
fn tray_item(conn: &zbus::blocking::Connection) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dbus = zbus::blocking::fdo::DBusProxy::new(conn).expect("bus proxy");
        let names = dbus.list_names().expect("names");
        if let Some(n) = names
            .iter()
            .find(|n| n.as_str().starts_with("org.kde.StatusNotifierItem-"))
        {
            return n.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no StatusNotifierItem on the bus: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A dbusmenu layout node: (id, properties, children).
type MenuNode = (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>);

/// (id, label, enabled) of every menu item, from dbusmenu's GetLayout.
fn menu_items(
    conn: &zbus::blocking::Connection,
    item: &str,
) -> (zbus::zvariant::OwnedObjectPath, Vec<(i32, String, bool)>) {
    let props = zbus::blocking::fdo::PropertiesProxy::builder(conn)
        .destination(item.to_string())
        .expect("dest")
        .path("/StatusNotifierItem")
        .expect("path")
        .build()
        .expect("props");
    let iface = zbus::names::InterfaceName::try_from("org.kde.StatusNotifierItem").expect("iface");
    let menu: zbus::zvariant::OwnedObjectPath = props
        .get(iface, "Menu")
        .expect("Menu property")
        .try_into()
        .expect("object path");
    let reply = conn
        .call_method(
            Some(item),
            menu.as_str(),
            Some("com.canonical.dbusmenu"),
            "GetLayout",
            &(0i32, -1i32, Vec::<String>::new()),
        )
        .expect("GetLayout");
    let (_rev, layout): (u32, MenuNode) = reply.body().deserialize().expect("layout");
    let mut items = Vec::new();
    for child in layout.2 {
        let (id, props, _): MenuNode = child.try_into().expect("child");
        let label = props
            .get("label")
            .and_then(|v| String::try_from(v.clone()).ok())
            .unwrap_or_default();
        let enabled = props
            .get("enabled")
            .and_then(|v| bool::try_from(v.clone()).ok())
            .unwrap_or(true);
        items.push((id, label, enabled));
    }
    (menu, items)
}

#[test]
fn tray_menu_renews_and_the_30_day_notice_comes_once_across_restarts() {
    let s = Setup::new(20);
    let bus = Bus::start();
    let (notes, _server) = Notifications::serve(&bus);
    let conn = bus.connect();

    let agent = AgentProcess::start(&s, &bus, true);
    agent.wait_for("tray icon registered", Duration::from_secs(5));
    assert_eq!(
        notes.summaries(),
        ["Your bank certificate expires in 20 days"]
    );
    let (_, body, actions) = notes.0.lock().expect("lock")[0].clone();
    assert!(body.contains("Ana Novak"), "{body}");
    assert!(
        actions.contains(&"renew".to_string()),
        "the notice offers renewal: {actions:?}"
    );

    let item = tray_item(&conn);
    let (menu, items) = menu_items(&conn, &item);
    let labels: Vec<&str> = items
        .iter()
        .map(|(_, l, _)| l.as_str())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        labels[0].contains("Ana Novak (Demo Company") && labels[0].contains("expires in 20 days"),
        "{labels:?}"
    );
    for want in [
        "Renew certificate…",
        "Show certificate",
        "Open bank site",
        "Quit",
    ] {
        assert!(labels.contains(&want), "{want} missing: {labels:?}");
    }
    let tooltip = tray_property(&conn, &item, "ToolTip");
    assert!(
        format!("{tooltip:?}").contains("expires in 20 days"),
        "{tooltip:?}"
    );

    // A restart does not repeat the notice.
    drop(agent);
    let agent = AgentProcess::start(&s, &bus, true);
    assert_eq!(
        notes.summaries().len(),
        1,
        "notice repeated after restart: {:?}",
        notes.summaries()
    );

    // "Renew certificate…" activated over D-Bus renews against the bank.
    let item = tray_item(&conn);
    let (menu2, items) = menu_items(&conn, &item);
    let _ = menu;
    let renew = items
        .iter()
        .find(|(_, l, _)| l == "Renew certificate…")
        .expect("renew item");
    assert!(renew.2, "renew is enabled in the window");
    conn.call_method(
        Some(item.as_str()),
        menu2.as_str(),
        Some("com.canonical.dbusmenu"),
        "Event",
        &(renew.0, "clicked", Value::from(0i32), 0u32),
    )
    .expect("Event");
    let done = agent.wait_for_any(
        &["renewal done", "renewal failed", "renewal not started"],
        Duration::from_secs(60),
    );
    assert!(done.contains("renewal done"), "{done}");
    assert_eq!(
        s.prompts(),
        ["CONFIRM", "GETPIN"],
        "consent and PIN in the agent's own prompt"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !notes
        .summaries()
        .iter()
        .any(|n| n == "Bank certificate renewed")
    {
        assert!(
            Instant::now() < deadline,
            "no renewed notice: {:?}",
            notes.summaries()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = s.hsm.certagent(&s.config, &["status", "--json"], None);
    let j: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(j["certificates"][0]["state"], "valid", "{j}");
    drop(s.bank);
}

#[test]
fn at_9_days_the_10_day_notice_once_and_none_without_a_tray() {
    let s = Setup::new(9);
    let bus = Bus::start();
    let (notes, _server) = Notifications::serve(&bus);
    let agent = AgentProcess::start(&s, &bus, false);
    assert_eq!(
        notes.summaries(),
        ["Your bank certificate expires in 9 days"],
        "only the latest notice"
    );
    drop(agent);
    let _agent = AgentProcess::start(&s, &bus, false);
    assert_eq!(
        notes.summaries().len(),
        1,
        "repeated: {:?}",
        notes.summaries()
    );
    // --no-tray registers no StatusNotifierItem.
    let conn = bus.connect();
    let names = zbus::blocking::fdo::DBusProxy::new(&conn)
        .expect("proxy")
        .list_names()
        .expect("names");
    assert!(
        !names
            .iter()
            .any(|n| n.as_str().starts_with("org.kde.StatusNotifierItem-")),
        "{names:?}"
    );
}

#[test]
fn the_tray_resumes_an_interrupted_renewal_and_says_it_waits() {
    let s = Setup::new(20);
    // `certagent renew` dies after the bank issued the new certificate.
    let mut cli = Command::new(env!("CARGO_BIN_EXE_certagent"));
    let out = cli
        .env("SOFTHSM2_CONF", s.hsm.conf())
        .env("XDG_STATE_HOME", s.hsm.path().join("state"))
        .env("CERTAGENT_PIN", common::PIN)
        .env("CERTAGENT_TEST_CRASH_AT", "issued")
        .args([
            "--config",
            &s.config.display().to_string(),
            "renew",
            "--yes",
        ])
        .output()
        .expect("certagent renew");
    assert!(!out.status.success(), "{}", common::text(&out));

    let bus = Bus::start();
    let (notes, _server) = Notifications::serve(&bus);
    let conn = bus.connect();
    let agent = AgentProcess::start(&s, &bus, true);
    agent.wait_for("an interrupted renewal", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !notes
        .summaries()
        .iter()
        .any(|n| n == "An interrupted renewal waits")
    {
        assert!(
            Instant::now() < deadline,
            "no notice of the interrupted renewal: {:?}",
            notes.summaries()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let item = tray_item(&conn);
    let (menu, items) = menu_items(&conn, &item);
    let renew = items
        .iter()
        .find(|(_, l, _)| l == "Renew certificate…")
        .expect("renew item");
    assert!(renew.2, "renew resumes: it is enabled");
    conn.call_method(
        Some(item.as_str()),
        menu.as_str(),
        Some("com.canonical.dbusmenu"),
        "Event",
        &(renew.0, "clicked", Value::from(0i32), 0u32),
    )
    .expect("Event");
    let done = agent.wait_for_any(
        &["renewal done", "renewal failed", "renewal not started"],
        Duration::from_secs(60),
    );
    assert!(done.contains("renewal done"), "{done}");
    let status = s.hsm.certagent(&s.config, &["status", "--json"], None);
    let j: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let certs = j["certificates"].as_array().expect("list");
    assert_eq!(certs.len(), 1, "one certificate left: {j}");
    assert_eq!(certs[0]["state"], "valid", "{j}");
    drop(s.bank);
}

/// A StatusNotifierItem property of the tray.
fn tray_property(conn: &zbus::blocking::Connection, item: &str, name: &str) -> OwnedValue {
    zbus::blocking::fdo::PropertiesProxy::builder(conn)
        .destination(item.to_string())
        .expect("dest")
        .path("/StatusNotifierItem")
        .expect("path")
        .build()
        .expect("props")
        .get(
            zbus::names::InterfaceName::try_from("org.kde.StatusNotifierItem").expect("iface"),
            name,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_tray_icon_is_named_from_the_theme_or_drawn_at_64_pixels() {
    let bus = Bus::start();
    let s = Setup::new(20);
    let conn = bus.connect();

    // No icon theme: one 64-pixel pixmap of the renewal-due glyph.
    let agent = AgentProcess::start(&s, &bus, true);
    let item = tray_item(&conn);
    let name: String = tray_property(&conn, &item, "IconName")
        .try_into()
        .expect("IconName");
    assert_eq!(name, "");
    let pixmaps: Vec<(i32, i32, Vec<u8>)> = tray_property(&conn, &item, "IconPixmap")
        .try_into()
        .expect("IconPixmap");
    let sizes: Vec<(i32, i32)> = pixmaps.iter().map(|(w, h, _)| (*w, *h)).collect();
    assert_eq!(sizes, [(64, 64)]);
    drop(agent);

    // The package's icons in the theme: the tray names the state's icon.
    for size in certagent::agent::icons::SIZES {
        let rel = format!("icons/hicolor/{size}x{size}/status");
        let dir = s.hsm.path().join("data-dirs").join(&rel);
        std::fs::create_dir_all(&dir).expect("theme dir");
        for badge in certagent::agent::icons::BADGES {
            let file = format!("{}.png", certagent::agent::icons::theme_name(badge));
            std::fs::copy(
                common::repo_root().join("packaging").join(&rel).join(&file),
                dir.join(&file),
            )
            .expect("copy the packaged icon");
        }
    }
    let _agent = AgentProcess::start(&s, &bus, true);
    let item = tray_item(&conn);
    let name: String = tray_property(&conn, &item, "IconName")
        .try_into()
        .expect("IconName");
    assert_eq!(name, "certagent-renewal-due");
}

#[test]
fn a_japanese_desktop_gets_japanese_notices_and_tray_menu() {
    let mut s = Setup::new(20);
    s.lang = Some("ja_JP.UTF-8");
    let bus = Bus::start();
    let (notes, _server) = Notifications::serve(&bus);
    let _agent = AgentProcess::start(&s, &bus, true);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while notes.summaries().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(notes.summaries(), ["電子証明書の有効期限まであと20日です"]);
    let conn = bus.connect();
    let item = tray_item(&conn);
    let (_, items) = menu_items(&conn, &item);
    let labels: Vec<&str> = items.iter().map(|(_, l, _)| l.as_str()).collect();
    for want in [
        "電子証明書を更新…",
        "電子証明書を表示",
        "銀行のサイトを開く",
        "終了",
    ] {
        assert!(labels.contains(&want), "{want} missing: {labels:?}");
    }
}
