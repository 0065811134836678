//! `certagent browser-policy [--install | --remove]`: the printed policies,
//! an install and removal under a test root (`CERTAGENT_POLICY_ROOT`), the
//! same in the real /etc (root, as CI runs it), and the refusals.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::text;
use serde_json::Value;

const A: &str = "https://ib.bank.example";
const B: &str = "https://ib2.bank.example:8443";
const NEEDS_ROOT: &str =
    "browser-policy --install writes under /etc and needs root: run it with sudo";

/// A configuration file with a `[bank]` section and these origins lines.
fn config(dir: &Path, origins_line: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[bank]\nest_url = \"https://127.0.0.1:8443/.well-known/est\"\nserver_roots = \"roots.pem\"\n{origins_line}\n"
        ),
    )
    .expect("config");
    path
}

/// `certagent --config config args…`; with a test `root`, as a user who is
/// not root (`nobody`, given the folder holding `root`, when the test runs
/// as root), since root ignores the test root and works on the real `/`.
fn certagent(config: &Path, args: &[&str], root: Option<&Path>) -> Output {
    let mut cmd = match root {
        Some(root) if is_root() => {
            common::require_with("setpriv", "apt-get install util-linux");
            give_to_nobody(root.parent().expect("the test root's folder"));
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_certagent"));
            c
        }
        _ => Command::new(env!("CARGO_BIN_EXE_certagent")),
    };
    cmd.env_remove("CERTAGENT_CONFIG")
        .env_remove(certagent::browser_policy::ROOT_ENV)
        .arg("--config")
        .arg(config)
        .args(args);
    if let Some(root) = root {
        cmd.env(certagent::browser_policy::ROOT_ENV, root);
    }
    cmd.output().expect("certagent runs")
}

/// `dir` and everything under it owned by nobody (65534), as if nobody
/// had made it.
fn give_to_nobody(dir: &Path) {
    const NOBODY: u32 = 65534;
    std::os::unix::fs::lchown(dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            give_to_nobody(&p);
        } else {
            std::os::unix::fs::lchown(&p, Some(NOBODY), Some(NOBODY)).expect("chown");
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    stdout(&o)
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

/// Every path under `dir` with its mode, and each file's content.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("entry").path()).collect();
        paths.sort();
        for p in paths {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.push(format!("{rel}/ {mode:o}"));
                walk(base, &p, out);
            } else {
                let content = std::fs::read_to_string(&p).unwrap_or_default();
                out.push(format!("{rel} {mode:o} {content}"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

fn chromium_json(origins: &[&str]) -> Value {
    serde_json::json!({ "LocalNetworkAccessAllowedForUrls": origins })
}

#[test]
fn prints_the_policies_for_two_origins() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = config(tmp.path(), &format!("origins = [\"{A}\", \"{B}\"]"));
    let out = ok(certagent(&config, &["browser-policy"], None));
    println!("{out}");

    for path in [
        "/etc/chromium/policies/managed/certagent.json",
        "/etc/opt/chrome/policies/managed/certagent.json",
        "/etc/opt/edge/policies/managed/certagent.json",
    ] {
        // The file's content follows its path, as JSON.
        let after = out
            .split_once(&format!("### {path}\n"))
            .unwrap_or_else(|| panic!("{path} missing in\n{out}"))
            .1;
        let json_text = &after[..after.find("\n}\n").expect("end of JSON") + 2];
        let v: Value = serde_json::from_str(json_text).expect("policy JSON");
        assert_eq!(v, chromium_json(&[A, B]));
    }
    for want in [
        "pref(\"network.lna.skip-domains\", \"ib.bank.example,ib2.bank.example\");",
        "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Google\\Chrome\\LocalNetworkAccessAllowedForUrls]\n\"1\"=\"https://ib.bank.example\"\n\"2\"=\"https://ib2.bank.example:8443\"\n",
        "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Chromium\\LocalNetworkAccessAllowedForUrls]",
        "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Edge\\LocalNetworkAccessAllowedForUrls]",
        "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Mozilla\\Firefox\\LocalNetworkAccess\\SkipDomains]",
        "<string>com.google.Chrome</string>",
        "<string>com.microsoft.Edge</string>",
        "<string>https://ib2.bank.example:8443</string>",
        "\"SkipDomains\": [",
    ] {
        assert!(out.contains(want), "{want} missing in\n{out}");
    }

    // The same as data.
    let j: Value =
        serde_json::from_str(&ok(certagent(&config, &["browser-policy", "--json"], None)))
            .expect("JSON");
    assert_eq!(j["origins"], serde_json::json!([A, B]));
    assert_eq!(j["policy"], "LocalNetworkAccessAllowedForUrls");
    let linux = j["linux"].as_array().expect("linux");
    assert_eq!(linux.len(), 4, "{j}");
    for f in linux.iter().filter(|f| f["browser"] != "firefox-esr") {
        let content: Value =
            serde_json::from_str(f["content"].as_str().expect("content")).expect("policy");
        assert_eq!(content, chromium_json(&[A, B]), "{f}");
    }
    assert_eq!(
        j["firefox"]["hosts"],
        serde_json::json!(["ib.bank.example", "ib2.bank.example"])
    );
    assert!(
        j["windows_reg"]
            .as_str()
            .is_some_and(|r| r.starts_with("Windows Registry Editor Version 5.00"))
    );
    assert!(
        j["macos_mobileconfig"]
            .as_str()
            .is_some_and(|m| m.contains("<key>LocalNetworkAccessAllowedForUrls</key>"))
    );
}

#[test]
fn install_and_remove_under_a_test_root_leave_the_tree_as_before() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = config(tmp.path(), &format!("origins = [\"{A}\", \"{B}\"]"));
    let root = tmp.path().join("root");
    // A machine with Chromium and another policy of its own, and Firefox ESR.
    let managed = root.join("etc/chromium/policies/managed");
    std::fs::create_dir_all(&managed).expect("mkdir");
    std::fs::write(managed.join("site.json"), "{\"HomepageLocation\": \"x\"}\n").expect("theirs");
    std::fs::create_dir_all(root.join("etc/firefox-esr")).expect("mkdir");
    std::fs::write(root.join("etc/firefox-esr/firefox-esr.js"), "// debian\n").expect("theirs");
    std::fs::create_dir_all(root.join("var/lib")).expect("mkdir");
    let before = tree(&root);

    let out = ok(certagent(
        &config,
        &["browser-policy", "--install"],
        Some(&root),
    ));
    println!("{out}");
    for t in certagent::browser_policy::TARGETS {
        let path = root.join(t.path.trim_start_matches('/'));
        assert!(
            out.contains(&format!("created   {}", path.display())),
            "{t:?} in\n{out}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("installed")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{}", path.display());
    }
    let chrome: Value = serde_json::from_slice(
        &std::fs::read(root.join("etc/opt/chrome/policies/managed/certagent.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(chrome, chromium_json(&[A, B]));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/firefox-esr/firefox-esr.js")).expect("theirs"),
        "// debian\n"
    );
    assert!(out.contains(&format!("created   {}/", root.join("etc/opt").display())));

    // Again: nothing changes.
    let again: Value = serde_json::from_str(&ok(certagent(
        &config,
        &["browser-policy", "--install", "--json"],
        Some(&root),
    )))
    .expect("JSON");
    println!("{again:#}");
    assert_eq!(again["action"], "install");
    assert!(
        again["files"]
            .as_array()
            .expect("files")
            .iter()
            .all(|f| f["status"] == "unchanged"),
        "{again}"
    );
    assert_eq!(again["dirs_created"], serde_json::json!([]));

    let removed: Value = serde_json::from_str(&ok(certagent(
        &config,
        &["browser-policy", "--remove", "--json"],
        Some(&root),
    )))
    .expect("JSON");
    println!("{removed:#}");
    assert_eq!(removed["action"], "remove");
    assert_eq!(removed["kept_dirs"], serde_json::json!([]));
    assert_eq!(tree(&root), before, "the tree differs after --remove");

    let nothing = ok(certagent(
        &config,
        &["browser-policy", "--remove"],
        Some(&root),
    ));
    assert!(nothing.contains("nothing to remove"), "{nothing}");
}

#[test]
fn installs_into_the_real_etc_and_removes_it_again() {
    assert!(
        is_root(),
        "this test writes /etc/chromium/policies/managed/certagent.json and needs root, as CI runs it"
    );
    let ours = Path::new("/etc/chromium/policies/managed/certagent.json");
    assert!(
        !ours.exists(),
        "{} is there before the test (another install, or a test that did not clean up): remove it with `sudo certagent browser-policy --remove`",
        ours.display()
    );
    let watched = [
        "/etc/chromium",
        "/etc/opt",
        "/etc/firefox-esr",
        "/var/lib/certagent",
    ];
    let snapshot = || -> Vec<(String, bool, Vec<String>)> {
        watched
            .iter()
            .map(|d| (d.to_string(), Path::new(d).exists(), tree(Path::new(d))))
            .collect()
    };
    let before = snapshot();
    let tmp = tempfile::tempdir().expect("tmp");
    let config = config(tmp.path(), &format!("origins = [\"{A}\", \"{B}\"]"));
    // A test root named to root is ignored: root works on the real /.
    let decoy = tmp.path().join("decoy");
    std::fs::create_dir(&decoy).expect("mkdir");
    let as_root = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_certagent"))
            .env_remove("CERTAGENT_CONFIG")
            .env(certagent::browser_policy::ROOT_ENV, &decoy)
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("certagent runs")
    };

    let out = as_root(&["browser-policy", "--install"]);
    println!("{}", text(&out));
    let installed = std::fs::read(ours);
    let decoy_after_install = tree(&decoy);
    let removed = as_root(&["browser-policy", "--remove"]);
    println!("{}", text(&removed));
    assert!(out.status.success(), "{}", text(&out));
    assert!(removed.status.success(), "{}", text(&removed));
    let v: Value = serde_json::from_slice(&installed.expect("installed")).expect("json");
    assert_eq!(v, chromium_json(&[A, B]));
    assert!(stdout(&removed).contains(&format!("removed {}", ours.display())));
    assert_eq!(snapshot(), before, "/etc differs after --remove");
    assert_eq!(
        decoy_after_install,
        Vec::<String>::new(),
        "root wrote under {}",
        decoy.display()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CERTAGENT_POLICY_ROOT is ignored"),
        "{}",
        text(&out)
    );
}

#[test]
fn another_user_is_told_it_needs_root() {
    common::require_with("setpriv", "apt-get install util-linux");
    assert!(
        is_root(),
        "this test runs certagent as another OS user (nobody) and needs root, as CI runs it"
    );
    let tmp = tempfile::tempdir().expect("tmp");
    // nobody must be able to read the configuration.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = config(tmp.path(), &format!("origins = [\"{A}\"]"));
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    for (flag, want) in [
        ("--install", NEEDS_ROOT.to_string()),
        ("--remove", NEEDS_ROOT.replace("--install", "--remove")),
    ] {
        let out = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_certagent"))
            .env_remove("CERTAGENT_CONFIG")
            .env_remove(certagent::browser_policy::ROOT_ENV)
            .arg("--config")
            .arg(&config)
            .args(["browser-policy", flag])
            .output()
            .expect("setpriv runs");
        println!("{flag}: {}", text(&out));
        assert!(!out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim(), format!("certagent: {want}"), "{}", text(&out));
        assert!(out.stdout.is_empty(), "{}", text(&out));
    }
    // Printing needs no privilege.
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_certagent"))
        .arg("--config")
        .arg(&config)
        .arg("browser-policy")
        .output()
        .expect("setpriv runs");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_link_planted_at_the_temporary_name_is_not_followed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = config(tmp.path(), &format!("origins = [\"{A}\"]"));
    let root = tmp.path().join("root");
    let managed = root.join("etc/chromium/policies/managed");
    std::fs::create_dir_all(&managed).expect("mkdir");
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "untouched").expect("victim");
    std::os::unix::fs::symlink(&victim, managed.join(".certagent.json.certagent-tmp"))
        .expect("plant");
    let out = ok(certagent(
        &config,
        &["browser-policy", "--install"],
        Some(&root),
    ));
    println!("{out}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "untouched"
    );
    let ours = managed.join("certagent.json");
    assert!(
        std::fs::symlink_metadata(&ours)
            .expect("installed")
            .file_type()
            .is_file()
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&ours).expect("read")).expect("json");
    assert_eq!(v, chromium_json(&[A]));
    assert!(!managed.join(".certagent.json.certagent-tmp").exists());
}

#[test]
fn a_config_without_origins_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    for origins_line in ["", "origins = []"] {
        let config = config(tmp.path(), origins_line);
        for args in [
            &["browser-policy"][..],
            &["browser-policy", "--install"][..],
        ] {
            let out = certagent(&config, args, Some(&root));
            println!("{args:?} {origins_line:?}: {}", text(&out));
            assert!(!out.status.success(), "{}", text(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!(
                    "the configuration file {} has no [bank] origins",
                    config.display()
                )) && err.contains("origins = [\"https://ib.bank.example\"] under [bank]"),
                "{}",
                text(&out)
            );
        }
    }
    // Nothing was written.
    assert_eq!(tree(&root), Vec::<String>::new());
    // Without a [bank] section at all, the same.
    let bare = tmp.path().join("bare.toml");
    std::fs::write(&bare, "[agent]\nlisten = \"127.0.0.1:31270\"\n").expect("bare");
    let out = certagent(&bare, &["browser-policy"], None);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("has no [bank] origins"),
        "{}",
        text(&out)
    );
    // A bad origin is named.
    let config = config(tmp.path(), "origins = [\"http://ib.bank.example\"]");
    let out = certagent(&config, &["browser-policy"], None);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("\"http://ib.bank.example\""),
        "{}",
        text(&out)
    );
}
