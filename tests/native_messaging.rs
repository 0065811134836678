//! The browser extension's door, below the browser: `certagent
//! native-host` as a browser starts it (the browser's framing on stdin and
//! stdout), the running agent behind it (`certagent run`, its channel in
//! the private state directory), consent and PIN in the agent's own
//! (scripted) pinentry. The browser end (the extension in Chromium and
//! Firefox) is in tests/extension.rs.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::agent::{Agent, ORIGIN};
use sha2::{Digest, Sha256};

fn frame(json: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::to_vec(json).expect("JSON");
    let mut v = (body.len() as u32).to_ne_bytes().to_vec();
    v.extend_from_slice(&body);
    v
}

fn unframe(mut out: &[u8]) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    while out.len() >= 4 {
        let len = u32::from_ne_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert!(out.len() >= 4 + len, "a cut reply: {out:?}");
        all.push(serde_json::from_slice(&out[4..4 + len]).expect("reply JSON"));
        out = &out[4 + len..];
    }
    assert!(out.is_empty(), "bytes after the last reply: {out:?}");
    all
}

/// The agent's channel exists (the agent prints its API line first).
fn wait_channel(agent: &Agent) {
    let sock = agent.hsm.path().join("state/certagent/agent.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The host with `args` (as Chromium, Firefox or by name), fed `input`;
/// its replies and its exit status.
fn host(
    agent: &Agent,
    args: &[&str],
    input: &[u8],
    wrap: &[&str],
) -> (Vec<serde_json::Value>, std::process::ExitStatus) {
    let exe = env!("CARGO_BIN_EXE_certagent");
    let mut cmd = match wrap {
        [] => Command::new(exe),
        [first, rest @ ..] => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
    };
    let mut child = cmd
        .args(args)
        .env("XDG_STATE_HOME", agent.hsm.path().join("state"))
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("certagent native-host");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to the host");
    let out = child.wait_with_output().expect("host output");
    (unframe(&out.stdout), out.status)
}

fn logon_request(origin: &str, challenge: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "origin": origin,
        "method": "POST",
        "path": "/v1/logon",
        "body": { "challenge": URL_SAFE_NO_PAD.encode(challenge) },
    })
}

#[test]
fn a_logon_through_the_host_as_chromium_and_firefox_start_it() {
    let agent = Agent::start(200);
    wait_channel(&agent);
    let challenge: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(29)).collect();
    let chromium = format!(
        "chrome-extension://{}/",
        certagent::native_messaging::CHROMIUM_EXTENSION_ID
    );
    let firefox = [
        "/usr/lib/mozilla/native-messaging-hosts/certagent.json",
        certagent::native_messaging::FIREFOX_ADDON_ID,
    ];
    for (args, logins) in [(vec![chromium.as_str()], 1), (firefox.to_vec(), 2)] {
        let mut input = frame(&serde_json::json!({
            "origin": ORIGIN, "method": "GET", "path": "/v1/status"
        }));
        input.extend(frame(&logon_request(ORIGIN, &challenge)));
        let (replies, status) = host(&agent, &args, &input, &[]);
        assert!(status.success(), "{args:?}");
        assert_eq!(replies.len(), 2, "{replies:?}");
        assert_eq!(replies[0]["status"], 200, "{replies:?}");
        assert_eq!(replies[0]["body"]["token_present"], true);
        assert_eq!(replies[1]["status"], 200, "{replies:?}");
        let token = &replies[1]["body"];
        assert_eq!(token["format"], "certagent-auth:1");
        assert_eq!(token["origin"], ORIGIN);
        assert!(common::logon_token_verifies(
            agent.hsm.path(),
            token,
            ORIGIN,
            &challenge
        ));
        assert!(
            !common::logon_token_verifies(
                agent.hsm.path(),
                token,
                "https://evil.example",
                &challenge
            ),
            "worthless at another origin"
        );
        assert_eq!(agent.logins(), logins);
    }
    assert_eq!(agent.prompts(), ["CONFIRM", "GETPIN", "CONFIRM", "GETPIN"]);
}

#[test]
fn an_origin_not_allowed_and_bad_messages_reach_no_dialog() {
    let agent = Agent::start(200);
    wait_channel(&agent);
    let challenge = [7u8; 32];
    let mut input = frame(&logon_request("https://evil.example", &challenge));
    // http is for loopback testers only; this is the bank's host over http.
    input.extend(frame(&logon_request("http://ib.bank.example", &challenge)));
    input.extend(frame(&serde_json::json!({
        "origin": ORIGIN, "method": "DELETE", "path": "/v1/logon"
    })));
    input.extend(frame(&serde_json::json!({
        "origin": ORIGIN, "method": "POST", "path": "/v1/logon", "body": {"challenge": "AA"}
    })));
    input.extend(frame(&serde_json::json!({"origin": ORIGIN})));
    let (replies, status) = host(&agent, &["native-host"], &input, &[]);
    assert!(status.success());
    let codes: Vec<(u64, String)> = replies
        .iter()
        .map(|r| {
            (
                r["status"].as_u64().unwrap_or(0),
                r["body"]["error"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            (403, "origin".to_string()),
            (403, "origin".to_string()),
            (405, "method".to_string()),
            (400, "challenge".to_string()),
            (400, "json".to_string()),
        ]
    );
    // Larger than 8 KiB: answered 413, and the host ends.
    let mut big = ((9 * 1024) as u32).to_ne_bytes().to_vec();
    big.extend(vec![b' '; 9 * 1024]);
    let (replies, status) = host(&agent, &["native-host"], &big, &[]);
    assert!(!status.success());
    assert_eq!(replies[0]["status"], 413);
    assert!(agent.prompts().is_empty(), "{:?}", agent.prompts());
    assert_eq!(agent.logins(), 0);
}

#[test]
fn without_the_agent_the_page_is_told_to_start_it() {
    let agent = Agent::start(200);
    wait_channel(&agent);
    let input = frame(&serde_json::json!({
        "origin": ORIGIN, "method": "GET", "path": "/v1/status"
    }));
    // The control: with the agent running, an answer.
    let (replies, _) = host(&agent, &["native-host"], &input, &[]);
    assert_eq!(replies[0]["status"], 200);
    let sock = agent.hsm.path().join("state/certagent/agent.sock");
    drop(agent_process_only(agent, &sock, |agent| {
        let (replies, status) = host(agent, &["native-host"], &input, &[]);
        assert!(status.success());
        assert_eq!(replies[0]["status"], 503, "{replies:?}");
        assert_eq!(replies[0]["body"]["error"], "agent-not-running");
        assert!(
            replies[0]["body"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("certagent run")),
            "{replies:?}"
        );
    }));
}

/// Stop the agent's process (its socket goes with it), then run `check`
/// with the rest of the test agent (token, state) still there.
fn agent_process_only(mut agent: Agent, sock: &Path, check: impl FnOnce(&Agent)) -> Agent {
    agent.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    check(&agent);
    agent
}

#[test]
fn another_user_gets_nothing_from_the_agent() {
    let agent = Agent::start(200);
    wait_channel(&agent);
    let input = frame(&logon_request(ORIGIN, &[9u8; 32]));
    // The control: the same request as the agent's user is served.
    let (replies, _) = host(
        &agent,
        &["native-host"],
        &frame(&serde_json::json!({"origin": ORIGIN, "method": "GET", "path": "/v1/status"})),
        &[],
    );
    assert_eq!(replies[0]["status"], 200);
    // As nobody (the state directory is the agent user's alone).
    assert!(
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n")),
        "this test runs a program as another user and needs root (CI runs as root)"
    );
    assert!(
        Path::new("/usr/bin/setpriv").is_file(),
        "setpriv is missing: apt-get install util-linux"
    );
    let (replies, _) = host(
        &agent,
        &["native-host"],
        &input,
        &[
            "/usr/bin/setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
    );
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_ne!(replies[0]["status"], 200, "{replies:?}");
    assert!(agent.prompts().is_empty(), "{:?}", agent.prompts());
    assert_eq!(agent.logins(), 0);
}

/// The ids the host manifests allow are the extension's: Chromium's is
/// made from the public key in the extension's manifest (the first 32 hex
/// digits of its SHA-256, 0-f written a-p), Firefox's is in the manifest;
/// `packaging/extension/ids.json` says the same. And the manifests the
/// .deb installs are what `certagent native-messaging` makes for
/// /usr/bin/certagent.
#[test]
fn the_manifests_name_the_extensions_own_ids() {
    let root = common::repo_root();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("packaging/extension/manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    let key = STANDARD
        .decode(manifest["key"].as_str().expect("key"))
        .expect("base64 key");
    let id: String = Sha256::digest(&key)
        .iter()
        .take(16)
        .flat_map(|b| [b >> 4, b & 0xf])
        .map(|n| (b'a' + n) as char)
        .collect();
    assert_eq!(id, certagent::native_messaging::CHROMIUM_EXTENSION_ID);
    assert_eq!(
        manifest["browser_specific_settings"]["gecko"]["id"],
        certagent::native_messaging::FIREFOX_ADDON_ID
    );
    let ids: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("packaging/extension/ids.json")).expect("ids.json"),
    )
    .expect("ids JSON");
    assert_eq!(ids["chromium"], id);
    assert_eq!(
        ids["firefox"],
        certagent::native_messaging::FIREFOX_ADDON_ID
    );

    let write = std::env::var_os("CERTAGENT_WRITE_MANIFESTS").is_some();
    // On Windows the MSI puts them beside certagent.exe, which they name
    // relative to themselves (as Chrome and Firefox allow there).
    for (file, text) in [
        (
            "chromium.json",
            certagent::native_messaging::chromium_manifest("/usr/bin/certagent"),
        ),
        (
            "firefox.json",
            certagent::native_messaging::firefox_manifest("/usr/bin/certagent"),
        ),
        (
            "windows-chromium.json",
            certagent::native_messaging::chromium_manifest("certagent.exe"),
        ),
        (
            "windows-firefox.json",
            certagent::native_messaging::firefox_manifest("certagent.exe"),
        ),
    ] {
        let path = root.join("packaging/native-messaging").join(file);
        if write {
            std::fs::write(&path, &text).expect("write");
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_default(),
            text,
            "{}: write it again with CERTAGENT_WRITE_MANIFESTS=1",
            path.display()
        );
    }
    assert!(
        !write,
        "written, not checked: run again without CERTAGENT_WRITE_MANIFESTS"
    );
}

/// `certagent native-messaging --install` as a user (not root) writes the
/// four manifests under that user's home, naming this certagent and the
/// extension's ids; `--remove` takes them away again.
#[test]
fn native_messaging_installs_per_user_and_removes_again() {
    use std::os::unix::fs::chown;
    assert!(
        Path::new("/usr/bin/setpriv").is_file(),
        "setpriv is missing: apt-get install util-linux"
    );
    // A tempdir is 0700 root's: nobody's home goes inside one opened to
    // all, as /home is.
    let parent = tempfile::tempdir().expect("parent");
    let home_dir = parent.path().join("home");
    std::fs::create_dir(&home_dir).expect("home dir");
    chown(&home_dir, Some(65534), Some(65534)).expect("chown (this test needs root)");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_certagent")).expect("exe");
    let run = |args: &[&str]| {
        let out = Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe)
            .args(args)
            .env("HOME", &home_dir)
            .env("LANG", "C.UTF-8")
            .output()
            .expect("certagent runs");
        assert!(out.status.success(), "{args:?}: {}", common::text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let files = [
        (
            ".config/chromium/NativeMessagingHosts/certagent.json",
            false,
        ),
        (
            ".config/google-chrome/NativeMessagingHosts/certagent.json",
            false,
        ),
        (
            ".config/microsoft-edge/NativeMessagingHosts/certagent.json",
            false,
        ),
        (".mozilla/native-messaging-hosts/certagent.json", true),
    ];
    // The control: nothing there before.
    for (f, _) in files {
        assert!(!home_dir.join(f).exists(), "{f} before the install");
    }
    let printed = run(&["native-messaging"]);
    assert!(printed.contains("allowed_origins"), "{printed}");
    for (f, _) in files {
        assert!(!home_dir.join(f).exists(), "printing wrote {f}");
    }
    let said = run(&["native-messaging", "--install"]);
    let exe = exe.to_str().expect("UTF-8 path");
    for (f, firefox) in files {
        let path = home_dir.join(f);
        assert!(said.contains(&path.display().to_string()), "{said}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        let want = if firefox {
            certagent::native_messaging::firefox_manifest(exe)
        } else {
            certagent::native_messaging::chromium_manifest(exe)
        };
        assert_eq!(text, want, "{f}");
    }
    run(&["native-messaging", "--remove"]);
    for (f, _) in files {
        assert!(!home_dir.join(f).exists(), "{f} after --remove");
    }
}

/// `scripts/extension.sh` makes the .zip and the .xpi from
/// `packaging/extension/` (the extension's files, not its README or ids),
/// byte for byte the same on a second run; read back by Python's zipfile.
#[test]
fn the_extension_archives_hold_the_extension_and_are_reproducible() {
    let root = common::repo_root();
    let out = tempfile::tempdir().expect("out");
    let build = || {
        let o = Command::new(root.join("scripts/extension.sh"))
            .env("CARGO_TARGET_DIR", out.path())
            .output()
            .expect("scripts/extension.sh runs");
        assert!(o.status.success(), "{}", common::text(&o));
        let dir = out.path().join("extension");
        (
            std::fs::read(dir.join("certagent-extension.zip")).expect("zip"),
            std::fs::read(dir.join("certagent-extension.xpi")).expect("xpi"),
        )
    };
    let (zip, xpi) = build();
    let (zip2, xpi2) = build();
    assert!(
        zip == zip2 && xpi == xpi2,
        "the archives differ between runs"
    );
    let listed = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; print('\\n'.join(sorted(zipfile.ZipFile(sys.argv[1]).namelist())))",
        ])
        .arg(out.path().join("extension/certagent-extension.xpi"))
        .output()
        .expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "background.js\ncontent.js\nicons/icon-16.png\nicons/icon-32.png\nicons/icon-48.png\nicons/icon-64.png\nmanifest.json"
    );
}

/// Looking for a browser's arguments never trips over an argument that is
/// not UTF-8: clap says what is wrong, nothing panics.
#[test]
fn an_argument_that_is_not_utf8_is_an_error_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"st\xffatus");
    for args in [vec![bad], vec![std::ffi::OsStr::new("status"), bad]] {
        let out = Command::new(env!("CARGO_BIN_EXE_certagent"))
            .args(&args)
            .env("LANG", "C.UTF-8")
            .output()
            .expect("certagent runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
