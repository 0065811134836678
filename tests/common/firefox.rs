//! A small Marionette client for Debian's `firefox-esr`, with the same
//! surface as [`super::webdriver::Browser`] (start, goto, click, text,
//! wait_text, attribute, screenshot), so the Firefox tests read like the
//! Chromium ones. Nothing beyond Firefox itself is needed: Firefox runs
//! headless with `--marionette`, and Marionette speaks length-prefixed
//! JSON over TCP (`LEN:[0, id, "WebDriver:Navigate", {...}]`, answered
//! with `LEN:[1, id, error, result]`).
//!
//! Each browser gets a fresh temporary profile: `marionette.port` 0 in its
//! `user.js` (Firefox picks a free port and writes it to the profile's
//! `MarionetteActivePort`, so parallel tests never race for one), the
//! preferences that keep Firefox off the network (updates, telemetry,
//! captive portal detection, Safe Browsing, remote settings), and the
//! banks' TLS roots imported into the profile's own NSS database with
//! `certutil` (trusted to issue server certificates, nothing else; no
//! "accept any certificate").

use std::cell::RefCell;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::webdriver::{poll_text, save_png};

const FIREFOX: &str = "/usr/bin/firefox-esr";
const INSTALL: &str = "apt-get install firefox-esr libnss3-tools";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Preferences that keep Firefox from reaching out on this closed network
/// (the Firefox counterpart of the Chromium helper's flags).
fn quiet_prefs() -> Vec<(&'static str, Value)> {
    vec![
        // No first-run pages, default-browser question or start page.
        ("browser.shell.checkDefaultBrowser", json!(false)),
        ("browser.startup.homepage_override.mstone", json!("ignore")),
        ("browser.startup.page", json!(0)),
        ("browser.newtabpage.enabled", json!(false)),
        ("browser.aboutwelcome.enabled", json!(false)),
        ("datareporting.policy.firstRunURL", json!("")),
        ("toolkit.startup.max_resumed_crashes", json!(-1)),
        // Updates of Firefox, add-ons, system add-ons, plugins.
        ("app.update.auto", json!(false)),
        ("app.update.disabledForTesting", json!(true)),
        ("extensions.update.enabled", json!(false)),
        ("extensions.systemAddon.update.enabled", json!(false)),
        ("extensions.getAddons.cache.enabled", json!(false)),
        ("extensions.blocklist.enabled", json!(false)),
        ("media.gmp-manager.updateEnabled", json!(false)),
        ("browser.search.update", json!(false)),
        // Telemetry, studies, experiments.
        ("datareporting.policy.dataSubmissionEnabled", json!(false)),
        ("datareporting.healthreport.uploadEnabled", json!(false)),
        ("toolkit.telemetry.enabled", json!(false)),
        ("toolkit.telemetry.unified", json!(false)),
        ("toolkit.telemetry.archive.enabled", json!(false)),
        ("toolkit.telemetry.server", json!("")),
        ("app.normandy.enabled", json!(false)),
        ("app.shield.optoutstudies.enabled", json!(false)),
        ("browser.discovery.enabled", json!(false)),
        // Captive portal and connectivity checks.
        ("network.captive-portal-service.enabled", json!(false)),
        ("network.connectivity-service.enabled", json!(false)),
        // Safe Browsing lists and lookups.
        ("browser.safebrowsing.malware.enabled", json!(false)),
        ("browser.safebrowsing.phishing.enabled", json!(false)),
        ("browser.safebrowsing.downloads.enabled", json!(false)),
        (
            "browser.safebrowsing.downloads.remote.enabled",
            json!(false),
        ),
        ("browser.safebrowsing.blockedURIs.enabled", json!(false)),
        ("browser.safebrowsing.update.enabled", json!(false)),
        // Remote settings, certificate revocation fetches, region and
        // location look-ups, sponsored tiles.
        (
            "services.settings.server",
            json!("data:,#remote-settings-off"),
        ),
        (
            "security.remote_settings.crlite_filters.enabled",
            json!(false),
        ),
        ("security.OCSP.enabled", json!(0)),
        ("browser.region.network.url", json!("")),
        ("browser.region.update.enabled", json!(false)),
        ("geo.provider.network.url", json!("")),
        ("browser.topsites.contile.enabled", json!(false)),
        // No DNS over HTTPS, prefetching or speculative connections.
        ("network.trr.mode", json!(5)),
        ("network.dns.disablePrefetch", json!(true)),
        ("network.prefetch-next", json!(false)),
        ("network.http.speculative-parallel-limit", json!(0)),
    ]
}

struct Marionette {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    next_id: u64,
}

impl Marionette {
    fn connect(port: u16) -> Marionette {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("Marionette connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut m = Marionette {
            stream,
            reader,
            next_id: 0,
        };
        let hello = m.read();
        assert_eq!(
            hello["marionetteProtocol"], 3,
            "not Marionette protocol 3: {hello}"
        );
        m
    }

    /// One `LEN:JSON` message.
    fn read(&mut self) -> Value {
        let mut len = Vec::new();
        loop {
            let mut b = [0u8; 1];
            self.reader
                .read_exact(&mut b)
                .expect("Marionette closed the connection");
            if b[0] == b':' {
                break;
            }
            assert!(b[0].is_ascii_digit(), "not a Marionette message: {len:?}");
            len.push(b[0]);
        }
        let len: usize = String::from_utf8_lossy(&len).parse().expect("length");
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body).expect("message");
        serde_json::from_slice(&body).expect("Marionette JSON")
    }

    /// Send a command without waiting for its answer; returns its id.
    fn send(&mut self, name: &str, params: Value) -> std::io::Result<u64> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!([0, id, name, params]).to_string();
        self.stream
            .write_all(format!("{}:{msg}", msg.len()).as_bytes())?;
        Ok(id)
    }

    /// Send a command; `Ok(result)` or `Err(error object)`.
    fn call(&mut self, name: &str, params: Value) -> Result<Value, Value> {
        let id = self.send(name, params).expect("Marionette write");
        loop {
            let reply = self.read();
            // [1, id, error, result]; skip answers to anything older.
            if reply[0] != 1 || reply[1] != id {
                continue;
            }
            return if reply[2].is_null() {
                Ok(reply[3].clone())
            } else {
                Err(reply[2].clone())
            };
        }
    }
}

pub struct Browser {
    firefox: Child,
    marionette: RefCell<Marionette>,
    profile: tempfile::TempDir,
}

/// Import every certificate in the PEM file `roots` into the NSS database
/// in `profile` as a CA trusted for TLS servers only (`C,,`).
fn trust_roots(profile: &Path, roots: &Path, n: usize) {
    let pem = std::fs::read_to_string(roots).unwrap_or_else(|e| panic!("{}: {e}", roots.display()));
    let db = format!("sql:{}", profile.display());
    let blocks: Vec<&str> = pem
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("-----BEGIN CERTIFICATE-----"))
        .collect();
    assert!(!blocks.is_empty(), "no certificate in {}", roots.display());
    for (i, block) in blocks.iter().enumerate() {
        let file = profile.join(format!("root-{n}-{i}.pem"));
        std::fs::write(&file, block.trim_start()).expect("root file");
        super::run(
            Command::new("certutil")
                .args(["-A", "-d", &db, "-t", "C,,", "-n"])
                .arg(format!("bank TLS root {n}.{i}"))
                .arg("-i")
                .arg(&file),
        );
        std::fs::remove_file(&file).expect("root file");
    }
}

impl Browser {
    /// Headless Firefox ESR with a fresh profile that trusts the TLS roots
    /// in the PEM files `roots` (and no other added CA), with `prefs` added
    /// to the profile's preferences.
    pub fn start(roots: &[&Path], prefs: &[(&str, Value)]) -> Browser {
        Browser::start_with(roots, prefs, &[])
    }

    /// As [`Browser::start`], with `env` for Firefox (and what it starts,
    /// such as a native messaging host).
    pub fn start_with(roots: &[&Path], prefs: &[(&str, Value)], env: &[(&str, &Path)]) -> Browser {
        assert!(
            Path::new(FIREFOX).exists(),
            "firefox-esr is missing; install it: {INSTALL}"
        );
        super::require_with("certutil", &format!("install it: {INSTALL}"));
        let profile = tempfile::tempdir().expect("profile");
        let db = format!("sql:{}", profile.path().display());
        super::run(Command::new("certutil").args(["-N", "-d", &db, "--empty-password"]));
        for (n, roots) in roots.iter().enumerate() {
            trust_roots(profile.path(), roots, n);
        }
        let mut user_js = String::from("user_pref(\"marionette.port\", 0);\n");
        for (name, value) in quiet_prefs()
            .iter()
            .map(|(n, v)| (*n, v))
            .chain(prefs.iter().map(|(n, v)| (*n, v)))
        {
            user_js.push_str(&format!("user_pref({}, {value});\n", json!(name)));
        }
        std::fs::write(profile.path().join("user.js"), user_js).expect("user.js");
        let log = std::fs::File::create(profile.path().join("firefox.log")).expect("log");
        let mut firefox = Command::new(FIREFOX)
            .args(["--headless", "--marionette", "--no-remote"])
            // Lets Marionette read the browser's own state (its prompts,
            // its preferences) in the chrome context.
            .arg("--remote-allow-system-access")
            .arg("--profile")
            .arg(profile.path())
            .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .env("MOZ_HEADLESS_WIDTH", "1000")
            .env("MOZ_HEADLESS_HEIGHT", "700")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("firefox-esr starts");
        let active = profile.path().join("MarionetteActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&active)
                .ok()
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                break port;
            }
            let log = || std::fs::read_to_string(profile.path().join("firefox.log"));
            if let Ok(Some(status)) = firefox.try_wait() {
                panic!("firefox-esr exited ({status}): {:?}", log());
            }
            if Instant::now() > deadline {
                let _ = firefox.kill();
                let _ = firefox.wait();
                panic!("firefox-esr did not start Marionette: {:?}", log());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut marionette = Marionette::connect(port);
        marionette
            .call(
                "WebDriver:NewSession",
                json!({"acceptInsecureCerts": false, "timeouts": {"pageLoad": 60000}}),
            )
            .unwrap_or_else(|e| panic!("no Marionette session: {e}"));
        Browser {
            firefox,
            marionette: RefCell::new(marionette),
            profile,
        }
    }

    fn cmd(&self, name: &str, params: Value) -> Value {
        self.marionette
            .borrow_mut()
            .call(name, params)
            .unwrap_or_else(|e| panic!("Marionette {name}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.cmd("WebDriver:Navigate", json!({"url": url}));
    }

    /// Install the add-on in the folder `dir` until Firefox ends, as
    /// about:debugging's "Load Temporary Add-on" does.
    pub fn install_temporary_addon(&self, dir: &Path) {
        self.cmd(
            "Addon:Install",
            json!({"path": dir.display().to_string(), "temporary": true}),
        );
    }

    /// Run `script` in the page as an async function body (its last
    /// argument is the callback); what it passes back.
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        let v = self.cmd(
            "WebDriver:ExecuteAsyncScript",
            json!({"script": script, "args": args}),
        );
        v.get("value").cloned().unwrap_or(v)
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd(
            "WebDriver:FindElement",
            json!({"using": "css selector", "value": css}),
        );
        v["value"][ELEMENT]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
    }

    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.cmd("WebDriver:ElementClick", json!({"id": e}));
    }

    pub fn text(&self, css: &str) -> String {
        let e = self.element(css);
        self.cmd("WebDriver:GetElementText", json!({"id": e}))["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// An attribute of the element (empty when it has none).
    pub fn attribute(&self, css: &str, name: &str) -> String {
        let e = self.element(css);
        self.cmd(
            "WebDriver:GetElementAttribute",
            json!({"id": e, "name": name}),
        )["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait until the element's text contains one of `any`; returns the text.
    pub fn wait_text(&self, css: &str, any: &[&str], timeout: Duration) -> String {
        poll_text(|| self.text(css), any, timeout)
    }

    pub fn screenshot(&self, path: &Path) {
        let v = self.cmd(
            "WebDriver:TakeScreenshot",
            json!({"full": false, "hash": false}),
        );
        save_png(v["value"].as_str().unwrap_or_default(), path);
    }

    /// Set a permission (by its Permissions API name) for the current
    /// page's origin to `state` ("granted", "denied", "prompt"), as the
    /// user's answer to Firefox's prompt is stored (WebDriver's Set
    /// Permission extension).
    pub fn set_permission(&self, permission: &str, state: &str) {
        self.cmd(
            "WebDriver:SetPermission",
            json!({"descriptor": {"name": permission}, "state": state}),
        );
    }

    /// `script` run in the browser's own (chrome) context, then back to
    /// the page's.
    fn chrome(&self, script: &str, args: Value) -> Value {
        self.cmd("Marionette:SetContext", json!({"value": "chrome"}));
        let r = self.marionette.borrow_mut().call(
            "WebDriver:ExecuteScript",
            json!({"script": script, "args": args}),
        );
        self.cmd("Marionette:SetContext", json!({"value": "content"}));
        r.unwrap_or_else(|e| panic!("chrome script: {e}"))["value"].clone()
    }

    /// The prompts (doorhangers) Firefox shows for the selected tab: their
    /// ids (e.g. `loopback-network`) and messages ("<> wants to ...",
    /// `<>` standing for the site's name).
    pub fn prompts(&self) -> Vec<(String, String)> {
        let v = self.chrome(
            "const w = Services.wm.getMostRecentWindow('navigator:browser');\n\
             return w.PopupNotifications._currentNotifications\n\
               .filter(n => n.browser === w.gBrowser.selectedBrowser)\n\
               .map(n => [n.id, String(n.message)]);",
            json!([]),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap_or_default().to_string(),
                            p[1].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A preference as the running browser has it (after its
    /// default-preference files, /etc/firefox-esr/*.js on Debian, and the
    /// profile's user.js); null when it has no such preference.
    pub fn pref(&self, name: &str) -> Value {
        self.chrome(
            "const [name] = arguments, p = Services.prefs;\n\
             switch (p.getPrefType(name)) {\n\
               case p.PREF_STRING: return p.getStringPref(name);\n\
               case p.PREF_INT: return p.getIntPref(name);\n\
               case p.PREF_BOOL: return p.getBoolPref(name);\n\
               default: return null;\n\
             }",
            json!([name]),
        )
    }

    /// Firefox's own log (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("firefox.log")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask Firefox to quit (not waiting for the answer: it may close the
        // connection first), then make sure it is gone.
        let _ = self
            .marionette
            .borrow_mut()
            .send("Marionette:Quit", json!({"flags": ["eForceQuit"]}));
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.firefox.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.firefox.kill();
        let _ = self.firefox.wait();
    }
}
