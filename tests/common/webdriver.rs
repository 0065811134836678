//! A small WebDriver client for Debian's `chromium` through `chromedriver`,
//! enough to open pages, click, read text and take screenshots.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const INSTALL: &str = "apt-get install chromium chromium-driver";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("chromedriver connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    // chromedriver keeps the connection open: read the head, then exactly
    // Content-Length bytes (or chunks up to the terminating zero chunk).
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "chromedriver closed the connection");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    loop {
        let body = &raw[head_end..];
        let done = match length {
            Some(n) => body.len() >= n,
            None => body.ends_with(b"0\r\n\r\n"),
        };
        if done {
            break;
        }
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw);
    let rest = &text[head_end.min(text.len())..];
    // A chunked body: take the JSON object out of it.
    let json_text = if length.is_none() {
        let start = rest.find('{').unwrap_or(0);
        let end = rest.rfind('}').map_or(rest.len(), |e| e + 1);
        &rest[start..end]
    } else {
        rest
    };
    serde_json::from_str(json_text).unwrap_or_else(|e| panic!("chromedriver answer ({e}): {text}"))
}

impl Browser {
    /// Headless Chromium. `args` are added to the usual flags for this
    /// closed network.
    pub fn start(args: &[String]) -> Browser {
        Browser::start_with(args, &[], |_| {})
    }

    /// Headless Chromium with `env` for chromedriver (and so for what
    /// Chromium starts, such as a native messaging host), and `prepare`
    /// run on the fresh profile directory before Chromium opens it.
    pub fn start_with(
        args: &[String],
        env: &[(&str, &Path)],
        prepare: impl FnOnce(&Path),
    ) -> Browser {
        for (tool, path) in [
            ("chromium", "/usr/bin/chromium"),
            ("chromedriver", "/usr/bin/chromedriver"),
        ] {
            assert!(
                Path::new(path).exists(),
                "{tool} is missing; install it: {INSTALL}"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile");
        prepare(profile.path());
        let mut flags = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-quic".into(),
            "--window-size=1000,700".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        flags.extend(args.iter().cloned());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": false,
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": flags}
        }}});
        let r = http(port, "POST", "/session", Some(&caps));
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        Browser {
            driver,
            port,
            session,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        if r["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", r["value"]);
        }
        r["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|e| e.as_str())
            .map(String::from)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
    }

    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    pub fn text(&self, css: &str) -> String {
        let e = self.element(css);
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// An attribute of the element (empty when it has none).
    pub fn attribute(&self, css: &str, name: &str) -> String {
        let e = self.element(css);
        self.cmd("GET", &format!("/element/{e}/attribute/{name}"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Grant a permission (by its Permissions API name) to the current
    /// page's origin, as the user would in the site's settings
    /// (WebDriver's Set Permission extension).
    pub fn grant(&self, permission: &str) {
        self.cmd(
            "POST",
            "/permissions",
            Some(json!({"descriptor": {"name": permission}, "state": "granted"})),
        );
    }

    /// Wait until the element's text contains one of `any`; returns the text.
    pub fn wait_text(&self, css: &str, any: &[&str], timeout: Duration) -> String {
        poll_text(|| self.text(css), any, timeout)
    }

    /// Run `script` in the page as an async function body (its last
    /// argument is the callback); what it passes back.
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    pub fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        save_png(b64.as_str().unwrap_or_default(), path);
    }
}

/// Read `text` until it contains one of `any` or `timeout` has passed;
/// returns the last text read. (Shared with the Firefox client.)
pub fn poll_text(text: impl Fn() -> String, any: &[&str], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let t = text();
        if any.iter().any(|w| t.contains(w)) || Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// Write a screenshot a driver sent as base64 PNG to `path`, creating its
/// directory. (Shared with the Firefox client.)
pub fn save_png(b64: &str, path: &Path) {
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("png");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("screenshot dir");
    }
    std::fs::write(path, png).expect("screenshot");
}

/// Trust exactly these banks' TLS server keys in this browser profile (the
/// banks' CAs are not in the system store), not "any certificate".
pub fn trust_banks(dirs: &[&Path]) -> Vec<String> {
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

/// Chromium's flag that treats the bank's address as a public one: the
/// bank is then "a public HTTPS site" for Local Network Access, as a real
/// bank's site is, while it still runs on this machine.
pub fn public_bank(agent: &super::agent::Agent) -> String {
    let port: u16 = agent
        .bank
        .origin()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the bank's origin has a port");
    format!("--ip-address-space-overrides=127.0.0.1:{port}=public")
}
