//! The Windows installer, `certagent.msi` (packaging/windows/certagent.wxs,
//! built with wixl by `scripts/windows.sh build`), installed and removed
//! again by Wine's msiexec in a fresh Wine prefix of the test's own.
//!
//! What the installer left is judged from Linux: the prefix's files, the
//! shortcut file, and `regedit /E` exports of `HKLM\SOFTWARE` taken before
//! the install, after it and after the uninstall. The MSI's tables are read
//! with msitools' `msiinfo`.
//!
//! Run by `scripts/windows.sh test` (the `windows` nextest profile); the
//! main run leaves this binary to it. Missing programs, msitools or Wine
//! fail the test, saying what to run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::text;

const WINE: &str = "/usr/lib/wine/wine64";
const WINESERVER: &str = "/usr/lib/wine/wineserver";
const BUILD: &str =
    "run scripts/windows.sh build (it installs Wine, wixl and msitools, and builds the MSI)";

/// What the MSI installs into `Program Files\certagent`, besides the
/// driver profiles (`drivers\*.toml`, from the repository's drivers/).
const PROGRAMS: [&str; 6] = [
    "certagent.exe",
    "certagent-bank.exe",
    "softhsm2-x64.dll",
    "config.example.toml",
    "certagent-chromium.json",
    "certagent-firefox.json",
];
/// What sits beside the programs in target/windows/ for Wine and the tests
/// only, and must never be in the MSI.
const NEVER_SHIPPED: [&str; 3] = [
    "bcryptprimitives.dll",
    "certagent_fault_pkcs11.dll",
    "certagent-win-client.exe",
];
const HKLM_SOFTWARE: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE";
const HKCU: &str = "HKEY_CURRENT_USER";
const RUN_KEY: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run";
const COMMAND_LINE: &str = r#""C:\Program Files\certagent\certagent.exe" run"#;

/// target/windows/ (or `CERTAGENT_WINDOWS_DIR`), with the MSI and the
/// stand-in DLL Wine 8.0 needs; Wine and msitools installed.
fn windows_dir() -> PathBuf {
    let dir = std::env::var_os("CERTAGENT_WINDOWS_DIR")
        .map_or_else(|| common::repo_root().join("target/windows"), PathBuf::from);
    for f in ["certagent.msi", "bcryptprimitives.dll"] {
        assert!(
            dir.join(f).is_file(),
            "{} is missing: {BUILD}",
            dir.join(f).display()
        );
    }
    assert!(
        Path::new(WINE).is_file() && Path::new(WINESERVER).is_file(),
        "Wine is missing: apt-get install wine wine64, or {BUILD}"
    );
    common::require_with("msiinfo", &format!("apt-get install msitools, or {BUILD}"));
    dir
}

/// A Linux path as Windows programs under Wine name it (drive Z: is /).
fn z(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// A Wine prefix of the test's own, and Wine run in it.
struct Prefix {
    dir: tempfile::TempDir,
    /// For the registry exports, outside the prefix they describe.
    work: tempfile::TempDir,
}

impl Prefix {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A Windows program (or one of Wine's own, by name) in this prefix.
    fn wine(&self, program: &str) -> Command {
        let mut cmd = Command::new(common::repo_root().join("scripts/windows/wine-run.sh"));
        cmd.arg(program)
            .env("WINEPREFIX", self.path())
            // winemenubuilder would copy each shortcut into the Linux
            // desktop's menus under $HOME, outside the prefix.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml,winemenubuilder.exe=")
            .env("LANG", "en_US.UTF-8")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .env_remove("CERTAGENT_CONFIG");
        cmd
    }

    /// Wait until every Wine process of the prefix has ended and its
    /// server has written the registry out: nothing changes the prefix
    /// behind a listing.
    fn settle(&self) {
        let out = Command::new(WINESERVER)
            .arg("-w")
            .env("WINEPREFIX", self.path())
            .output()
            .expect("wineserver runs");
        assert!(out.status.success(), "wineserver -w: {}", text(&out));
    }

    fn msiexec(&self, action: &str, msi: &Path) -> Output {
        let out = self
            .wine("msiexec")
            .args([action, &z(msi), "/qn"])
            .output()
            .expect("wine runs");
        self.settle();
        out
    }

    /// Every file and folder of the prefix, relative to it; folders end
    /// in `/`.
    fn files(&self) -> BTreeSet<String> {
        fn walk(root: &Path, dir: &Path, into: &mut BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            {
                let entry = entry.expect("directory entry");
                let path = entry.path();
                let rel = path
                    .strip_prefix(root)
                    .expect("under the prefix")
                    .to_string_lossy()
                    .into_owned();
                // Not followed: Wine's dosdevices (z: is /) and the
                // profile folders it links to the Linux home.
                let kind = entry.file_type().expect("file type");
                if kind.is_dir() {
                    into.insert(format!("{rel}/"));
                    walk(root, &path, into);
                } else {
                    into.insert(rel);
                }
            }
        }
        let mut all = BTreeSet::new();
        walk(self.path(), self.path(), &mut all);
        all
    }

    /// The registry under `key` as `regedit /E` exports it: each key with
    /// its values (one entry per value, continuation lines joined).
    fn registry(&self, key: &str, name: &str) -> Registry {
        let file = self.work.path().join(format!("{name}.reg"));
        let out = self
            .wine("regedit")
            .args(["/E", &z(&file), key])
            .output()
            .expect("wine runs");
        assert!(out.status.success(), "regedit /E: {}", text(&out));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        Registry::parse(&bytes)
    }

    /// `reg query KEY /v VALUE` in the prefix.
    fn reg_query(&self, key: &str, value: &str) -> Output {
        self.wine("reg")
            .args(["query", key, "/v", value])
            .output()
            .expect("wine runs")
    }
}

impl Drop for Prefix {
    /// The prefix's wineserver lingers a few seconds after its last
    /// program; it should not outlive the prefix, even after a panic.
    fn drop(&mut self) {
        let _ = Command::new(WINESERVER)
            .arg("-k")
            .env("WINEPREFIX", self.path())
            .output();
    }
}

/// A fresh prefix, made by wineboot, with the stand-in
/// bcryptprimitives.dll in its system32: Wine 8.0 lacks ProcessPrng, which
/// the installed programs import; Windows 10 and later have it, so the MSI
/// does not ship it.
fn fresh_prefix(dir: &Path) -> Prefix {
    let prefix = Prefix {
        dir: tempfile::Builder::new()
            .prefix("certagent-msi-prefix")
            .tempdir()
            .expect("temp dir"),
        work: tempfile::tempdir().expect("temp dir"),
    };
    let out = prefix
        .wine("wineboot")
        .arg("-i")
        .output()
        .expect("wine runs");
    assert!(out.status.success(), "wineboot -i: {}", text(&out));
    prefix.settle();
    let system32 = prefix.path().join("drive_c/windows/system32");
    std::fs::copy(
        dir.join("bcryptprimitives.dll"),
        system32.join("bcryptprimitives.dll"),
    )
    .expect("copy bcryptprimitives.dll into system32");
    prefix
}

/// A `regedit /E` export: key → its value lines.
#[derive(Debug, PartialEq)]
struct Registry(BTreeMap<String, BTreeSet<String>>);

impl Registry {
    /// regedit writes UTF-16LE with a byte order mark, CRLF line ends, and
    /// long values over several lines, each but the last ending in `\`.
    fn parse(bytes: &[u8]) -> Registry {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let text = String::from_utf16_lossy(&units);
        let text = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
        assert!(
            text.starts_with("Windows Registry Editor Version 5.00"),
            "not a regedit export: {}",
            &text[..text.len().min(200)]
        );
        let mut keys = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut pending = String::new();
        for line in text.lines().skip(1) {
            if !pending.is_empty() {
                pending.push_str(line.trim_start());
            } else if let Some(key) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                keys.entry(key.to_string()).or_insert_with(BTreeSet::new);
                current = Some(key.to_string());
                continue;
            } else if line.is_empty() {
                continue;
            } else {
                pending.push_str(line);
            }
            if pending.ends_with('\\') {
                pending.pop();
                continue;
            }
            let key = current.as_ref().expect("a value before any key");
            keys.get_mut(key)
                .expect("key")
                .insert(std::mem::take(&mut pending));
        }
        Registry(keys)
    }

    /// Keys, and values of keys both have, that are in `self` but not in
    /// `before`: `KEY` for a new key, `KEY: VALUE` for a new value.
    fn added_since(&self, before: &Registry) -> Vec<String> {
        let mut added = Vec::new();
        for (key, values) in &self.0 {
            match before.0.get(key) {
                None => {
                    added.push(key.clone());
                    added.extend(values.iter().map(|v| format!("{key}: {v}")));
                }
                Some(old) => {
                    added.extend(values.difference(old).map(|v| format!("{key}: {v}")));
                }
            }
        }
        added
    }

    fn has_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

/// `msiinfo export certagent.msi TABLE`: the rows after the three header
/// lines (column names, types, key), split at tabs.
fn msi_table(msi: &Path, table: &str) -> Vec<Vec<String>> {
    let out = Command::new("msiinfo")
        .arg("export")
        .arg(msi)
        .arg(table)
        .output()
        .expect("msiinfo runs");
    assert!(
        out.status.success(),
        "msiinfo export {table}: {}",
        text(&out)
    );
    common::stdout(&out)
        .lines()
        .skip(3)
        .map(|l| {
            l.trim_end_matches('\r')
                .split('\t')
                .map(String::from)
                .collect()
        })
        .collect()
}

/// The driver profiles of the repository, by file name.
fn driver_profiles() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(common::repo_root().join("drivers"))
        .expect("drivers/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    names
}

/// Folders and files, relative to the prefix, the install is to add under
/// `Program Files`: the programs, `config.example.toml` and `drivers\`.
fn expected_program_files() -> BTreeSet<String> {
    let base = "drive_c/Program Files/certagent";
    let mut all: BTreeSet<String> = PROGRAMS.iter().map(|f| format!("{base}/{f}")).collect();
    all.insert(format!("{base}/"));
    all.insert(format!("{base}/drivers/"));
    all.extend(
        driver_profiles()
            .iter()
            .map(|f| format!("{base}/drivers/{f}")),
    );
    all
}

/// The tables say what the MSI is before Wine says what it does: per
/// machine, 64-bit, this version, exactly the files it should ship.
#[test]
fn the_msi_is_per_machine_64_bit_and_ships_only_what_it_should() {
    let msi = windows_dir().join("certagent.msi");
    let property: BTreeMap<String, String> = msi_table(&msi, "Property")
        .into_iter()
        .map(|r| (r[0].clone(), r.get(1).cloned().unwrap_or_default()))
        .collect();
    assert_eq!(
        property.get("ALLUSERS").map(String::as_str),
        Some("1"),
        "{property:?}"
    );
    // Cargo's version without a pre-release suffix (msi.sh drops it).
    let version = env!("CARGO_PKG_VERSION")
        .split(['-', '+'])
        .next()
        .unwrap_or_default();
    assert_eq!(
        property.get("ProductVersion").map(String::as_str),
        Some(version)
    );
    assert_eq!(
        property.get("UpgradeCode").map(String::as_str),
        Some("{8987E640-B6BA-4F55-9050-DA1538B3D1A8}"),
        "the UpgradeCode ties all versions together and must not change"
    );

    let mut shipped: Vec<String> = msi_table(&msi, "File")
        .into_iter()
        .map(|r| r[2].clone())
        .collect();
    shipped.sort();
    let mut expected: Vec<String> = PROGRAMS.iter().map(|s| s.to_string()).collect();
    expected.extend(driver_profiles());
    expected.sort();
    assert_eq!(shipped, expected, "the MSI's File table");
    for f in NEVER_SHIPPED {
        assert!(!shipped.iter().any(|s| s == f), "{f} is in the MSI");
    }

    // msidbComponentAttributes64bit: 64-bit Program Files and registry.
    for row in msi_table(&msi, "Component") {
        let attributes: u32 = row[3].parse().expect("Attributes");
        assert_ne!(attributes & 256, 0, "component {} is not 64-bit", row[0]);
    }
    let info = Command::new("msiinfo")
        .arg("suminfo")
        .arg(&msi)
        .output()
        .expect("msiinfo runs");
    assert!(
        common::stdout(&info).contains("Template: x64;1033"),
        "{}",
        text(&info)
    );
}

#[test]
fn msiexec_installs_for_the_machine_and_uninstall_leaves_nothing() {
    let dir = windows_dir();
    let msi = dir.join("certagent.msi");
    let prefix = fresh_prefix(&dir);
    let files_before = prefix.files();
    let reg_before = prefix.registry(HKLM_SOFTWARE, "before");
    let user_before = prefix.registry(HKCU, "user-before");

    // --- install ---
    let out = prefix.msiexec("/i", &msi);
    assert!(
        out.status.success(),
        "msiexec /i certagent.msi /qn: {}",
        text(&out)
    );
    let files_installed = prefix.files();
    let reg_installed = prefix.registry(HKLM_SOFTWARE, "installed");
    let added: BTreeSet<String> = files_installed.difference(&files_before).cloned().collect();

    // The positive control of the comparison after the uninstall: the
    // same listing sees every file the install added.
    let program_files: BTreeSet<String> = added
        .iter()
        .filter(|f| f.starts_with("drive_c/Program Files/"))
        .cloned()
        .collect();
    assert_eq!(
        program_files,
        expected_program_files(),
        "what the install added under Program Files"
    );
    assert!(
        !program_files.contains("drive_c/Program Files/certagent/bcryptprimitives.dll"),
        "the MSI installed Wine's stand-in bcryptprimitives.dll"
    );

    // Windows puts a per-machine Start menu entry under %ProgramData%;
    // Wine 8.0's msi always resolves ProgramMenuFolder to the user's
    // Start menu (it has a FIXME for ALLUSERS there). Either will do.
    let shortcuts: Vec<&String> = added
        .iter()
        .filter(|f| f.ends_with("/Start Menu/Programs/certagent/certagent.lnk"))
        .collect();
    assert_eq!(
        shortcuts.len(),
        1,
        "one Start menu shortcut among {added:#?}"
    );
    let shortcut = prefix.path().join(shortcuts[0]);
    let lnk = std::fs::read(&shortcut).expect("read the shortcut");
    let target = br"C:\Program Files\certagent\certagent.exe";
    assert!(
        lnk.windows(target.len()).any(|w| w == target),
        "the shortcut does not point at certagent.exe"
    );
    // Its arguments: a 16-bit count, then "run" in UTF-16LE. Windows
    // counts 3 characters; Wine 8.0 counts the terminating NUL too (4).
    let run_arg = |count: u8| {
        let mut s = vec![count, 0, b'r', 0, b'u', 0, b'n', 0];
        if count == 4 {
            s.extend([0, 0]);
        }
        s
    };
    assert!(
        [run_arg(3), run_arg(4)]
            .iter()
            .any(|a| lnk.windows(a.len()).any(|w| w == a.as_slice())),
        "the shortcut's arguments are not `run`"
    );

    // The autostart: in the export and as `reg query` shows it.
    let run_value = r#""certagent"="\"C:\\Program Files\\certagent\\certagent.exe\" run""#;
    let reg_added = reg_installed.added_since(&reg_before);
    assert!(
        reg_added.contains(&format!("{RUN_KEY}: {run_value}")),
        "no Run value in what the install added to the registry:\n{reg_added:#?}"
    );
    assert!(reg_installed.has_key(r"HKEY_LOCAL_MACHINE\SOFTWARE\certagent"));
    // The browser extension's native messaging host: each browser's key
    // names the manifest beside certagent.exe, which names certagent.exe.
    for (key, manifest) in [
        (r"Google\Chrome", "certagent-chromium.json"),
        ("Chromium", "certagent-chromium.json"),
        (r"Microsoft\Edge", "certagent-chromium.json"),
        ("Mozilla", "certagent-firefox.json"),
    ] {
        let key = format!(r"HKEY_LOCAL_MACHINE\SOFTWARE\{key}\NativeMessagingHosts\certagent");
        let value = format!(r#"@="C:\\Program Files\\certagent\\{manifest}""#);
        assert!(
            reg_added.contains(&format!("{key}: {value}")),
            "no {key} in what the install added:\n{reg_added:#?}"
        );
    }
    let chromium: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            prefix
                .path()
                .join("drive_c/Program Files/certagent/certagent-chromium.json"),
        )
        .expect("the Chromium host manifest"),
    )
    .expect("JSON");
    assert_eq!(chromium["path"], "certagent.exe");
    assert_eq!(
        chromium["allowed_origins"][0],
        format!(
            "chrome-extension://{}/",
            certagent::native_messaging::CHROMIUM_EXTENSION_ID
        )
    );
    let query = prefix.reg_query(RUN_KEY, "certagent");
    assert!(
        query.status.success(),
        "reg query Run /v certagent: {}",
        text(&query)
    );
    assert!(
        common::stdout(&query).contains(COMMAND_LINE),
        "reg query Run /v certagent: {}",
        text(&query)
    );

    // The installed programs run: certagent.exe, and the soft token DLL
    // it finds beside itself (drivers/softhsm2.toml), on an empty token
    // store.
    let installed = r"C:\Program Files\certagent\certagent.exe";
    let out = prefix
        .wine(installed)
        .arg("--version")
        .output()
        .expect("wine runs");
    assert!(
        out.status.success(),
        "certagent.exe --version: {}",
        text(&out)
    );
    assert_eq!(
        common::stdout(&out).trim(),
        format!("certagent {}", env!("CARGO_PKG_VERSION"))
    );
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(work.path().join("tokens")).expect("token folder");
    let softhsm_conf = work.path().join("softhsm2.conf");
    std::fs::write(
        &softhsm_conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            z(&work.path().join("tokens"))
        ),
    )
    .expect("SoftHSM configuration");
    let config = work.path().join("config.toml");
    std::fs::write(&config, "[token]\nmodule = \"softhsm2\"\n").expect("configuration");
    let out = prefix
        .wine(installed)
        .arg("--config")
        .arg(z(&config))
        .args(["tokens", "--json"])
        .env("SOFTHSM2_CONF", z(&softhsm_conf))
        .output()
        .expect("wine runs");
    assert!(
        out.status.success(),
        "certagent.exe tokens --json: {}",
        text(&out)
    );
    let tokens: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(
        tokens["module"]["path"], r"C:\Program Files\certagent\softhsm2-x64.dll",
        "{tokens:#}"
    );
    prefix.settle();

    // The agent as the Run key starts it (no --config: the user's
    // %APPDATA%\certagent\config.toml): a Windows program of the user gets
    // 200 from /v1/status with the bank's origin, a Linux program 403.
    agent_serves_its_users_windows_programs(&prefix, installed, &work, &softhsm_conf);
    prefix.settle();

    // --- uninstall ---
    let out = prefix.msiexec("/x", &msi);
    assert!(
        out.status.success(),
        "msiexec /x certagent.msi /qn: {}",
        text(&out)
    );
    assert!(
        !prefix
            .path()
            .join("drive_c/Program Files/certagent")
            .exists(),
        "Program Files\\certagent is still there"
    );
    assert!(!shortcut.exists(), "the shortcut is still there");
    assert!(
        !shortcut.parent().expect("its folder").exists(),
        "the Start menu folder certagent is still there"
    );
    let query = prefix.reg_query(RUN_KEY, "certagent");
    assert!(
        !query.status.success(),
        "the Run value is still there: {}",
        text(&query)
    );

    // Nothing the install added is left, in the files or HKLM\SOFTWARE,
    // except Windows Installer's own empty containers, which Windows
    // always has and Wine makes at the first install: the package cache
    // folder (C:\windows\Installer, which must be empty: the cached
    // certagent.msi is gone) and the empty keys its bookkeeping lives
    // under. Keys named by a product, component or upgrade code (packed
    // GUIDs) are none of these.
    let files_after = prefix.files();
    let left: Vec<&String> = files_after
        .difference(&files_before)
        .filter(|f| f.as_str() != "drive_c/windows/Installer/")
        .collect();
    assert!(left.is_empty(), "the uninstall left files: {left:#?}");
    let gone: Vec<&String> = files_before.difference(&files_after).collect();
    assert!(
        gone.is_empty(),
        "the install or uninstall removed files it did not add: {gone:#?}"
    );

    let reg_after = prefix.registry(HKLM_SOFTWARE, "after");
    assert!(
        !reg_after.has_key(r"HKEY_LOCAL_MACHINE\SOFTWARE\certagent"),
        "the bookkeeping key HKLM\\SOFTWARE\\certagent is still there"
    );
    let installer_roots = [
        r"HKEY_LOCAL_MACHINE\SOFTWARE\Classes\Installer",
        r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Installer",
    ];
    let containers = [
        "Features",
        "Products",
        "UpgradeCodes",
        "UserData",
        "S-1-5-18",
        "Components",
    ];
    let wine_churn = |entry: &str| {
        installer_roots.iter().any(|root| {
            entry.strip_prefix(root).is_some_and(|rest| {
                rest.is_empty()
                    || rest
                        .strip_prefix('\\')
                        .is_some_and(|r| r.split('\\').all(|part| containers.contains(&part)))
            })
        })
    };
    let left: Vec<String> = reg_after
        .added_since(&reg_before)
        .into_iter()
        .filter(|e| !wine_churn(e))
        .collect();
    assert!(
        left.is_empty(),
        "the uninstall left in HKLM\\SOFTWARE: {left:#?}"
    );
    // The other way round, one difference is Wine's: when msi deletes a
    // registry value and the key is left with no values and no subkeys,
    // it deletes the key too; a fresh prefix has an empty Run key. (On
    // Windows the Run key has the system's own values.)
    let removed: Vec<String> = reg_before
        .added_since(&reg_after)
        .into_iter()
        .filter(|e| !(e == RUN_KEY && reg_before.0.get(RUN_KEY).is_some_and(BTreeSet::is_empty)))
        .collect();
    assert!(
        removed.is_empty(),
        "the install or uninstall removed from HKLM\\SOFTWARE what it did not add: {removed:#?}"
    );

    // Nor does a per-machine install leave anything for the user. Wine's
    // user32 keeps a volatile copy of the system parameters for each
    // process that starts it (msiexec does); that is all that is new.
    let user_after = prefix.registry(HKCU, "user-after");
    let wine_params = r"HKEY_CURRENT_USER\Software\Wine\Temporary System Parameters";
    let left: Vec<String> = user_after
        .added_since(&user_before)
        .into_iter()
        .filter(|e| !e.starts_with(wine_params))
        .collect();
    assert!(
        left.is_empty(),
        "the uninstall left in HKEY_CURRENT_USER: {left:#?}"
    );
    let removed = user_before.added_since(&user_after);
    assert!(
        removed.is_empty(),
        "the install or uninstall removed from HKEY_CURRENT_USER: {removed:#?}"
    );
}

/// The installed `certagent.exe run --no-tray` with the user's own
/// configuration file, asked by the test client under Wine (200) and by
/// a Linux socket (403). The configuration and the agent's state are the
/// user's, which an uninstall leaves alone: they are removed here, as the
/// user would, before the uninstall is judged.
fn agent_serves_its_users_windows_programs(
    prefix: &Prefix,
    installed: &str,
    work: &tempfile::TempDir,
    softhsm_conf: &Path,
) {
    use std::io::{BufRead, Read, Write};
    const ORIGIN: &str = "https://ib.bank.example";
    let users = prefix.path().join("drive_c/users");
    let user = std::fs::read_dir(&users)
        .expect("users folder")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n != "Public"))
        .expect("the Wine user's folder");
    let roaming = user.join("AppData/Roaming/certagent");
    let local = user.join("AppData/Local/certagent");
    std::fs::create_dir_all(&roaming).expect("%APPDATA%\\certagent");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    std::fs::write(
        roaming.join("config.toml"),
        format!(
            "[token]\nmodule = \"softhsm2\"\nlabel = \"bank-token\"\n[bank]\n\
             est_url = \"https://127.0.0.1:8443/.well-known/est\"\n\
             server_roots = \"bank-tls-roots.pem\"\norigins = [\"{ORIGIN}\"]\n\
             [agent]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .expect("the user's configuration");
    let mut agent = prefix
        .wine(installed)
        .args(["run", "--no-tray"])
        .env("SOFTHSM2_CONF", z(softhsm_conf))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wine runs");
    let stdout = agent.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l == "certagent: ready");
    std::thread::spawn(move || lines.for_each(drop));
    let outcome = std::panic::catch_unwind(|| {
        assert!(
            ready,
            "the installed certagent.exe run never said it was ready"
        );
        // The test client, from outside the prefix (not part of the MSI).
        let client = work.path().join("certagent-win-client.exe");
        std::fs::copy(windows_dir().join("certagent-win-client.exe"), &client)
            .expect("copy the test client");
        let out = prefix
            .wine(&z(&client))
            .args([&format!("127.0.0.1:{port}"), ORIGIN, "/v1/status"])
            .output()
            .expect("wine runs");
        assert!(out.status.success(), "the Windows client: {}", text(&out));
        let said = common::stdout(&out);
        assert!(said.starts_with("HTTP/1.1 200"), "{said}");
        assert!(said.contains("\"token_present\""), "{said}");
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            s,
            "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {ORIGIN}\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("answer");
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    });
    let _ = agent.kill();
    let _ = agent.wait();
    prefix.settle();
    for d in [&roaming, &local] {
        let _ = std::fs::remove_dir_all(d);
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}
