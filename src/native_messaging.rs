//! Native messaging: the manifests that tell Chromium, Chrome, Edge and
//! Firefox where the `certagent` host is and which extension may start
//! it, and the host itself ([`host`]): the browser's framing (a 32-bit
//! length in the machine's byte order, then JSON) on stdin and stdout,
//! each request handed to the running agent over its local channel
//! (`agent::api::channel`).
//!
//! The browser starts the manifest's `path` with arguments of its own:
//! Chromium the calling extension's origin (`chrome-extension://ID/`),
//! Firefox the manifest's path and the add-on's id. `certagent` sees
//! those and runs as the host ([`invoked_as_host`]), so the manifest
//! names `certagent` itself, no wrapper.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::agent::api::channel::{self, AskError, ChannelReply, ChannelRequest, MAX_REQUEST};

/// The host's name, as extensions call it.
pub const HOST_NAME: &str = "certagent";
/// The extension's fixed id in Chromium, Chrome and Edge (from the public
/// key in `packaging/extension/manifest.json`).
pub const CHROMIUM_EXTENSION_ID: &str = "mdaemdpfcalaalgohgilpkokolaekbkh";
/// The add-on's fixed id in Firefox.
pub const FIREFOX_ADDON_ID: &str = "certagent@certagent";

/// Whether these arguments (without the program's own) are a browser
/// starting the host.
pub fn invoked_as_host(args: &[String]) -> bool {
    match args {
        [first, ..] if first.starts_with("chrome-extension://") => true,
        [_manifest, id, ..] => id == FIREFOX_ADDON_ID,
        _ => false,
    }
}

/// One browser's manifest file.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestFile {
    pub browser: &'static str,
    pub path: PathBuf,
    pub text: String,
}

#[derive(Serialize)]
struct ChromiumManifest<'a> {
    name: &'a str,
    description: &'a str,
    path: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    allowed_origins: Vec<String>,
}

#[derive(Serialize)]
struct FirefoxManifest<'a> {
    name: &'a str,
    description: &'a str,
    path: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    allowed_extensions: Vec<&'a str>,
}

const DESCRIPTION: &str = "certagent: logon and renewal with the bank certificate on your token";

/// The Chromium-family manifest for the host at `exe`.
pub fn chromium_manifest(exe: &str) -> String {
    let m = ChromiumManifest {
        name: HOST_NAME,
        description: DESCRIPTION,
        path: exe,
        kind: "stdio",
        allowed_origins: vec![format!("chrome-extension://{CHROMIUM_EXTENSION_ID}/")],
    };
    let mut s = serde_json::to_string_pretty(&m).unwrap_or_default();
    s.push('\n');
    s
}

/// Firefox's manifest for the host at `exe`.
pub fn firefox_manifest(exe: &str) -> String {
    let m = FirefoxManifest {
        name: HOST_NAME,
        description: DESCRIPTION,
        path: exe,
        kind: "stdio",
        allowed_extensions: vec![FIREFOX_ADDON_ID],
    };
    let mut s = serde_json::to_string_pretty(&m).unwrap_or_default();
    s.push('\n');
    s
}

/// Where each browser looks: system-wide (`system`) or in `home`.
pub fn manifest_files(exe: &str, system: bool, home: &Path) -> Vec<ManifestFile> {
    let file = format!("{HOST_NAME}.json");
    let chromium = chromium_manifest(exe);
    let firefox = firefox_manifest(exe);
    let places: [(&'static str, &str, &str, bool); 4] = [
        (
            "chromium",
            "/etc/chromium/native-messaging-hosts",
            ".config/chromium/NativeMessagingHosts",
            false,
        ),
        (
            "chrome",
            "/etc/opt/chrome/native-messaging-hosts",
            ".config/google-chrome/NativeMessagingHosts",
            false,
        ),
        (
            "edge",
            "/etc/opt/edge/native-messaging-hosts",
            ".config/microsoft-edge/NativeMessagingHosts",
            false,
        ),
        (
            "firefox",
            "/usr/lib/mozilla/native-messaging-hosts",
            ".mozilla/native-messaging-hosts",
            true,
        ),
    ];
    places
        .into_iter()
        .map(|(browser, sys, user, is_firefox)| ManifestFile {
            browser,
            path: if system {
                Path::new(sys).join(&file)
            } else {
                home.join(user).join(&file)
            },
            text: if is_firefox {
                firefox.clone()
            } else {
                chromium.clone()
            },
        })
        .collect()
}

/// The host: requests from the browser until it closes stdin. Returns
/// an error only when the browser's framing is broken (then the browser
/// sees the host end).
pub fn host(input: &mut impl Read, output: &mut impl Write) -> Result<(), String> {
    let path = channel::socket_path().map_err(|e| e.to_string());
    loop {
        let mut len = [0u8; 4];
        match input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(format!("reading from the browser: {e}")),
        }
        let len = u32::from_ne_bytes(len) as usize;
        if len > MAX_REQUEST {
            // The rest cannot be skipped safely: answer and end.
            send(
                output,
                &ChannelReply::error(
                    413,
                    "too-large",
                    &format!("the request is larger than {} KiB", MAX_REQUEST / 1024),
                ),
            )?;
            return Err(format!("a message of {len} bytes from the browser"));
        }
        let mut message = vec![0u8; len];
        input
            .read_exact(&mut message)
            .map_err(|e| format!("reading from the browser: {e}"))?;
        let reply = match serde_json::from_slice::<ChannelRequest>(&message) {
            Err(e) => ChannelReply::error(400, "json", &format!("malformed request: {e}")),
            Ok(req) => match &path {
                Err(e) => ChannelReply::error(503, "agent-not-running", e),
                Ok(path) => forward(path, &req),
            },
        };
        send(output, &reply)?;
    }
}

/// One request to the agent, its answer as the page will read it.
fn forward(path: &Path, req: &ChannelRequest) -> ChannelReply {
    let line = serde_json::to_vec(req).unwrap_or_default();
    match channel::ask(path, &line) {
        Ok(answer) => serde_json::from_slice(&answer).unwrap_or_else(|e| {
            ChannelReply::error(
                502,
                "agent",
                &format!("the agent's answer is malformed: {e}"),
            )
        }),
        Err(AskError::NotRunning) => ChannelReply::error(
            503,
            "agent-not-running",
            &crate::i18n::tr("native-agent-not-running", &[]),
        ),
        Err(e) => ChannelReply::error(503, "agent", &e.to_string()),
    }
}

fn send(output: &mut impl Write, reply: &ChannelReply) -> Result<(), String> {
    let body = serde_json::to_vec(reply).unwrap_or_default();
    let len = u32::try_from(body.len()).map_err(|_| "an answer too large".to_string())?;
    output
        .write_all(&len.to_ne_bytes())
        .and_then(|()| output.write_all(&body))
        .and_then(|()| output.flush())
        .map_err(|e| format!("writing to the browser: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(json: &str) -> Vec<u8> {
        let mut v = (json.len() as u32).to_ne_bytes().to_vec();
        v.extend_from_slice(json.as_bytes());
        v
    }

    fn replies(mut out: &[u8]) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        while out.len() >= 4 {
            let len = u32::from_ne_bytes([out[0], out[1], out[2], out[3]]) as usize;
            all.push(serde_json::from_slice(&out[4..4 + len]).expect("reply JSON"));
            out = &out[4 + len..];
        }
        all
    }

    #[test]
    fn the_browser_starts_the_host_with_its_own_arguments() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert!(invoked_as_host(&s(&["chrome-extension://abc/"])));
        assert!(invoked_as_host(&s(&[
            "/usr/lib/mozilla/native-messaging-hosts/certagent.json",
            FIREFOX_ADDON_ID
        ])));
        assert!(!invoked_as_host(&s(&["status"])));
        assert!(!invoked_as_host(&s(&["status", "--json"])));
        assert!(!invoked_as_host(&s(&[])));
    }

    #[test]
    fn malformed_and_oversized_messages_get_an_answer_never_a_panic() {
        let mut input = frame("{\"origin\": 1}");
        input.extend(frame("not json"));
        let mut out = Vec::new();
        host(&mut input.as_slice(), &mut out).expect("clean end");
        let r = replies(&out);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["status"], 400);
        assert_eq!(r[1]["body"]["error"], "json");

        let mut big = ((MAX_REQUEST + 1) as u32).to_ne_bytes().to_vec();
        big.extend(vec![b' '; MAX_REQUEST + 1]);
        let mut out = Vec::new();
        assert!(host(&mut big.as_slice(), &mut out).is_err());
        assert_eq!(replies(&out)[0]["status"], 413);

        // A length with no message: the browser went away.
        let mut out = Vec::new();
        assert!(host(&mut [9u8, 0, 0, 0, b'{'].as_slice(), &mut out).is_err());
        // Nothing at all: a clean end.
        assert!(host(&mut [].as_slice(), &mut Vec::new()).is_ok());
    }

    #[test]
    fn manifests_name_the_host_and_only_our_extension() {
        let files = manifest_files("/usr/bin/certagent", true, Path::new("/home/ana"));
        assert_eq!(files.len(), 4);
        for f in &files {
            let v: serde_json::Value = serde_json::from_str(&f.text).expect("JSON");
            assert_eq!(v["name"], HOST_NAME);
            assert_eq!(v["path"], "/usr/bin/certagent");
            assert_eq!(v["type"], "stdio");
            assert!(f.path.ends_with("certagent.json"));
        }
        let chromium: serde_json::Value = serde_json::from_str(&files[0].text).expect("JSON");
        assert_eq!(
            chromium["allowed_origins"],
            serde_json::json!([format!("chrome-extension://{CHROMIUM_EXTENSION_ID}/")])
        );
        let firefox: serde_json::Value = serde_json::from_str(&files[3].text).expect("JSON");
        assert_eq!(
            firefox["allowed_extensions"],
            serde_json::json!([FIREFOX_ADDON_ID])
        );
        let user = manifest_files("/x/certagent", false, Path::new("/home/ana"));
        assert_eq!(
            user[3].path,
            Path::new("/home/ana/.mozilla/native-messaging-hosts/certagent.json")
        );
    }
}
