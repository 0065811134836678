//! Managed browser policies that let the bank's web origins (`[bank] origins`)
//! call the agent on loopback without a Local Network Access prompt.
//!
//! Chromium-based browsers (Chromium, Google Chrome, Microsoft Edge, from
//! Chrome 142 on) ask the user before a public page may fetch a loopback
//! address; the managed policy `LocalNetworkAccessAllowedForUrls` lifts that
//! for the listed origins. Firefox (ESR 153 too) asks likewise ("wants to
//! access other apps and services on this device"); its preference
//! `network.lna.skip-domains` (set by the enterprise policy
//! `LocalNetworkAccess` → `SkipDomains`) lifts it for the listed hosts.
//!
//! This module makes the texts (JSON policy files for Linux, a `.reg` file
//! for Windows, a configuration profile for macOS, a preference file for
//! Debian's Firefox ESR) and installs or removes the Linux files. What it
//! installs it records in [`RECORD`], so that `remove` takes away exactly
//! those files and the directories it created, and nothing else.
//!
//! The files are written on every install for all the browsers, whether or
//! not that browser is installed yet: a browser installed later then finds
//! its policy, and a file under another browser's directory is inert.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Redirects the root of every path `install` and `remove` touch (and skips
/// the root check). For the project's tests only, which install into a
/// temporary directory; never set it on a real machine.
pub const ROOT_ENV: &str = "CERTAGENT_POLICY_ROOT";

/// The Chromium policy (Chromium, Chrome, Edge; all platforms).
pub const CHROMIUM_POLICY: &str = "LocalNetworkAccessAllowedForUrls";

/// Firefox's preference: comma-separated host names whose pages skip the
/// Local Network Access checks.
pub const FIREFOX_PREF: &str = "network.lna.skip-domains";

/// Where `install` records what it wrote and which directories it created.
pub const RECORD: &str = "/var/lib/certagent/browser-policy.json";

/// What kind of file a target takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `{"LocalNetworkAccessAllowedForUrls": [...]}`
    ChromiumJson,
    /// `pref("network.lna.skip-domains", "...");`
    FirefoxPrefs,
}

/// One file `install` writes.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Short name, as in `--json` output: chromium, chrome, edge, firefox-esr.
    pub browser: &'static str,
    /// The browser's name for people.
    pub name: &'static str,
    /// The file's absolute path on a Linux machine.
    pub path: &'static str,
    format: Format,
}

/// Every file `install` writes, and `remove` removes.
pub const TARGETS: [Target; 4] = [
    Target {
        browser: "chromium",
        name: "Chromium",
        path: "/etc/chromium/policies/managed/certagent.json",
        format: Format::ChromiumJson,
    },
    Target {
        browser: "chrome",
        name: "Google Chrome",
        path: "/etc/opt/chrome/policies/managed/certagent.json",
        format: Format::ChromiumJson,
    },
    Target {
        browser: "edge",
        name: "Microsoft Edge",
        path: "/etc/opt/edge/policies/managed/certagent.json",
        format: Format::ChromiumJson,
    },
    Target {
        browser: "firefox-esr",
        name: "Firefox ESR (Debian: every .js file in /etc/firefox-esr is a preference file)",
        path: "/etc/firefox-esr/certagent.js",
        format: Format::FirefoxPrefs,
    },
];

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "{0} has no [bank] origins: browser-policy has nothing to allow (add origins = [\"https://ib.bank.example\"] under [bank])"
    )]
    NoOrigins(String),
    #[error("bank.origins: {origin:?}: {reason}")]
    BadOrigin { origin: String, reason: String },
    #[error("browser-policy --{0} writes under /etc and needs root: run it with sudo")]
    NeedsRoot(&'static str),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Record { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PolicyError + '_ {
    move |source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A refusal by the file system is the same answer as the root check.
fn denied_is_root(action: &'static str) -> impl FnOnce(PolicyError) -> PolicyError {
    move |e| match e {
        PolicyError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            PolicyError::NeedsRoot(action)
        }
        other => other,
    }
}

/// Is `dir` (logical) one an install may have created: an ancestor of a
/// target or of the record? A record edited by hand names nothing else.
fn ours_to_create(dir: &str) -> bool {
    dir.starts_with('/')
        && !dir.split('/').any(|p| p == ".." || p == ".")
        && TARGETS.iter().map(|t| t.path).chain([RECORD]).any(|p| {
            p.strip_prefix(dir)
                .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// The bank's origins, checked: each `https://host[:port]` (or `http://`
/// for a loopback host), lower case, with nothing a policy file would have
/// to escape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins(Vec<String>);

impl Origins {
    /// `source` names where the list came from, for the error when it is empty.
    pub fn new(list: &[String], source: &str) -> Result<Origins, PolicyError> {
        if list.is_empty() {
            return Err(PolicyError::NoOrigins(source.to_string()));
        }
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for o in list {
            check_origin(o).map_err(|reason| PolicyError::BadOrigin {
                origin: o.clone(),
                reason,
            })?;
            if !out.contains(o) {
                out.push(o.clone());
            }
        }
        Ok(Origins(out))
    }

    /// From the configuration's `[bank] origins`.
    pub fn from_config(config: &crate::config::Config) -> Result<Origins, PolicyError> {
        let source = match &config.source {
            Some(p) => format!("the configuration file {}", p.display()),
            None => {
                "the built-in default configuration (no configuration file was found; under sudo, name it with --config FILE)".to_string()
            }
        };
        let list = config
            .bank
            .as_ref()
            .map(|b| b.origins.as_slice())
            .unwrap_or_default();
        Origins::new(list, &source)
    }

    pub fn list(&self) -> &[String] {
        &self.0
    }

    /// The host names Firefox's `network.lna.skip-domains` takes: the
    /// origins' hosts, without loopback ones. The preference matches host
    /// names only, and also the address a request goes to: `127.0.0.1` or
    /// `localhost` there would lift the prompt for every page that calls the
    /// agent. A page on a loopback origin needs no exception anyway.
    pub fn firefox_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for o in &self.0 {
            let host = origin_host(o);
            if !is_loopback_host(&host) && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }
}

/// The origin's host, without scheme, port or IPv6 brackets.
fn origin_host(origin: &str) -> String {
    let rest = origin.split_once("://").map(|(_, r)| r).unwrap_or(origin);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default().to_string();
    }
    rest.split(':').next().unwrap_or_default().to_string()
}

fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The configuration's rule (`scheme://host[:port]`, https or loopback
/// http, lower case), and only the characters a host and port are made of,
/// so that no output format needs escaping.
fn check_origin(origin: &str) -> Result<(), String> {
    crate::config::check_origin(origin).map_err(str::to_string)?;
    let rest = origin.split_once("://").map(|(_, r)| r).unwrap_or_default();
    if let Some(bad) = rest
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')))
    {
        return Err(format!(
            "{bad:?} is not allowed in a host name (use the punycode xn-- form for international names)"
        ));
    }
    let host = origin_host(origin);
    if host.is_empty() || host.starts_with('.') || host.ends_with('.') || host.contains("..") {
        return Err("has no valid host name".to_string());
    }
    Ok(())
}

/// The Linux policy file for Chromium, Chrome and Edge.
pub fn chromium_json(origins: &Origins) -> String {
    let value = serde_json::json!({ CHROMIUM_POLICY: origins.list() });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// Debian's Firefox ESR preference file, or `None` when no origin needs one
/// (all are loopback).
pub fn firefox_prefs(origins: &Origins) -> Option<String> {
    let hosts = origins.firefox_hosts();
    if hosts.is_empty() {
        return None;
    }
    Some(format!(
        "// Written by `certagent browser-policy --install`; `certagent browser-policy --remove`\n\
         // removes it. Lets the bank's pages call the certagent agent on this machine\n\
         // without Firefox's Local Network Access prompt.\n\
         pref(\"{FIREFOX_PREF}\", \"{}\");\n",
        hosts.join(",")
    ))
}

/// Firefox's `policies.json` (any platform; on Linux
/// `/etc/firefox/policies/policies.json`, one file for all policies), or
/// `None` when no origin needs one.
pub fn firefox_policies_json(origins: &Origins) -> Option<serde_json::Value> {
    let hosts = origins.firefox_hosts();
    if hosts.is_empty() {
        return None;
    }
    Some(serde_json::json!({
        "policies": { "LocalNetworkAccess": { "SkipDomains": hosts } }
    }))
}

/// The Windows registry keys, as a `.reg` file for `reg import`.
pub fn windows_reg(origins: &Origins) -> String {
    let mut out = String::from("Windows Registry Editor Version 5.00\n");
    for vendor in ["Google\\Chrome", "Chromium", "Microsoft\\Edge"] {
        out.push_str(&format!(
            "\n[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\{vendor}\\{CHROMIUM_POLICY}]\n"
        ));
        for (i, o) in origins.list().iter().enumerate() {
            out.push_str(&format!("\"{}\"=\"{o}\"\n", i + 1));
        }
    }
    let hosts = origins.firefox_hosts();
    if !hosts.is_empty() {
        out.push_str(
            "\n[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Mozilla\\Firefox\\LocalNetworkAccess\\SkipDomains]\n",
        );
        for (i, h) in hosts.iter().enumerate() {
            out.push_str(&format!("\"{}\"=\"{h}\"\n", i + 1));
        }
    }
    out
}

/// A UUID made from `parts`, so the same origins give the same profile.
fn stable_uuid(parts: &[&str]) -> String {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let mut b: Vec<u8> = h.finalize().iter().copied().take(16).collect();
    // RFC 4122 version 5 (name-based, SHA-1) and variant bits.
    if let Some(v) = b.get_mut(6) {
        *v = (*v & 0x0f) | 0x50;
    }
    if let Some(v) = b.get_mut(8) {
        *v = (*v & 0x3f) | 0x80;
    }
    let hex = hex::encode_upper(&b);
    let part = |from: usize, to: usize| hex.get(from..to).unwrap_or_default().to_string();
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

/// A macOS configuration profile (`.mobileconfig`) with the policy for
/// Chrome, Chromium and Edge, and Firefox's for its hosts. Deploy it with
/// the MDM; browsers on macOS take policies only from managed preferences.
pub fn macos_mobileconfig(origins: &Origins) -> String {
    let list = origins.list().join("\n");
    let array = |items: &[String], indent: &str| -> String {
        let mut s = format!("{indent}<array>\n");
        for i in items {
            s.push_str(&format!("{indent}  <string>{i}</string>\n"));
        }
        s.push_str(&format!("{indent}</array>\n"));
        s
    };
    let mut payloads = String::new();
    for (domain, name) in [
        ("com.google.Chrome", "Google Chrome"),
        ("org.chromium.Chromium", "Chromium"),
        ("com.microsoft.Edge", "Microsoft Edge"),
    ] {
        payloads.push_str(&format!(
            "    <dict>\n\
             \x20     <key>PayloadType</key>\n      <string>{domain}</string>\n\
             \x20     <key>PayloadIdentifier</key>\n      <string>certagent.browser-policy.{domain}</string>\n\
             \x20     <key>PayloadUUID</key>\n      <string>{uuid}</string>\n\
             \x20     <key>PayloadVersion</key>\n      <integer>1</integer>\n\
             \x20     <key>PayloadDisplayName</key>\n      <string>{name}: certagent Local Network Access</string>\n\
             \x20     <key>{CHROMIUM_POLICY}</key>\n{array}\
             \x20   </dict>\n",
            uuid = stable_uuid(&[domain, &list]),
            array = array(origins.list(), "      "),
        ));
    }
    let hosts = origins.firefox_hosts();
    if !hosts.is_empty() {
        let domain = "org.mozilla.firefox";
        payloads.push_str(&format!(
            "    <dict>\n\
             \x20     <key>PayloadType</key>\n      <string>{domain}</string>\n\
             \x20     <key>PayloadIdentifier</key>\n      <string>certagent.browser-policy.{domain}</string>\n\
             \x20     <key>PayloadUUID</key>\n      <string>{uuid}</string>\n\
             \x20     <key>PayloadVersion</key>\n      <integer>1</integer>\n\
             \x20     <key>PayloadDisplayName</key>\n      <string>Firefox: certagent Local Network Access</string>\n\
             \x20     <key>EnterprisePoliciesEnabled</key>\n      <true/>\n\
             \x20     <key>LocalNetworkAccess</key>\n      <dict>\n\
             \x20       <key>SkipDomains</key>\n{array}\
             \x20     </dict>\n\
             \x20   </dict>\n",
            uuid = stable_uuid(&[domain, &list]),
            array = array(&hosts, "        "),
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20 <key>PayloadType</key>\n  <string>Configuration</string>\n\
         \x20 <key>PayloadIdentifier</key>\n  <string>certagent.browser-policy</string>\n\
         \x20 <key>PayloadUUID</key>\n  <string>{uuid}</string>\n\
         \x20 <key>PayloadVersion</key>\n  <integer>1</integer>\n\
         \x20 <key>PayloadScope</key>\n  <string>System</string>\n\
         \x20 <key>PayloadDisplayName</key>\n  <string>certagent: bank pages may reach the local agent</string>\n\
         \x20 <key>PayloadContent</key>\n  <array>\n{payloads}  </array>\n\
         </dict>\n\
         </plist>\n",
        uuid = stable_uuid(&["certagent.browser-policy", &list]),
    )
}

/// The file a target takes for these origins; `None`: no file (Firefox when
/// every origin is loopback).
pub fn content(target: &Target, origins: &Origins) -> Option<String> {
    match target.format {
        Format::ChromiumJson => Some(chromium_json(origins)),
        Format::FirefoxPrefs => firefox_prefs(origins),
    }
}

/// Where `install` and `remove` work: `/`, or the test root from [`ROOT_ENV`].
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    redirected: bool,
}

impl Root {
    /// `/`, unless [`ROOT_ENV`] is set (by a test).
    pub fn from_env() -> Root {
        match std::env::var_os(ROOT_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => Root {
                dir: PathBuf::from(dir),
                redirected: true,
            },
            None => Root::system(),
        }
    }

    pub fn system() -> Root {
        Root {
            dir: PathBuf::from("/"),
            redirected: false,
        }
    }

    /// A test root: paths go under `dir` and no root check is made.
    pub fn at(dir: &Path) -> Root {
        Root {
            dir: dir.to_path_buf(),
            redirected: true,
        }
    }

    /// `abs` (an absolute Linux path such as `/etc/...`) under this root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.dir.join(abs.trim_start_matches('/'))
    }

    /// Writing under the real /etc needs root; a test root does not.
    fn check_root(&self, action: &'static str) -> Result<(), PolicyError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if !self.redirected && unsafe { libc::geteuid() } != 0 {
            return Err(PolicyError::NeedsRoot(action));
        }
        Ok(())
    }
}

/// What became of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Created,
    Updated,
    Unchanged,
    Removed,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub browser: &'static str,
    pub path: PathBuf,
    pub status: FileStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    pub action: &'static str,
    pub origins: Vec<String>,
    pub files: Vec<FileReport>,
    /// Directories this install created (a later `remove` takes them away
    /// again when they are empty).
    pub dirs_created: Vec<PathBuf>,
    /// The record of what was installed.
    pub record: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemoveReport {
    pub action: &'static str,
    pub removed_files: Vec<PathBuf>,
    pub removed_dirs: Vec<PathBuf>,
    /// Directories an install created that are not empty now (someone else
    /// put files there): left alone.
    pub kept_dirs: Vec<PathBuf>,
}

/// The record `install` keeps: logical paths (`/etc/...`), not root-joined.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    written_by: String,
    files: Vec<String>,
    /// In creation order (parents first).
    dirs: Vec<String>,
}

fn read_record(root: &Root) -> Result<Option<Record>, PolicyError> {
    let path = root.path(RECORD);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| PolicyError::Record {
                path,
                message: format!("not a record of certagent browser-policy ({e})"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Create `abs`'s missing directories (mode 0755) under `root`; returns the
/// logical paths of those it created, parents first.
fn create_dirs(root: &Root, abs: &str) -> Result<Vec<String>, PolicyError> {
    let mut created = Vec::new();
    let mut logical = String::new();
    for part in abs.split('/').filter(|p| !p.is_empty()) {
        logical.push('/');
        logical.push_str(part);
        let path = root.path(&logical);
        if path.is_dir() {
            continue;
        }
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o755);
        }
        match b.create(&path) {
            Ok(()) => {
                set_mode(&path, 0o755)?;
                created.push(logical.clone());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Ok(created)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PolicyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Write `text` to `path` (mode 0644) whole, so a browser never reads
/// half a file and no link planted beside it is followed.
fn write_file(path: &Path, text: &str) -> Result<(), PolicyError> {
    crate::state_file::write(path, text.as_bytes(), crate::state_file::Mode::Public)
        .map_err(io(path))
}

/// Write the Linux policy files for `origins` under `root`, and the record.
/// Idempotent: files already right are left as they are. A file of ours
/// that these origins no longer need (Firefox's when every origin is
/// loopback) is removed. Never touches other files.
pub fn install(root: &Root, origins: &Origins) -> Result<InstallReport, PolicyError> {
    root.check_root("install")?;
    install_as_root(root, origins).map_err(denied_is_root("install"))
}

fn install_as_root(root: &Root, origins: &Origins) -> Result<InstallReport, PolicyError> {
    let old = read_record(root)?.unwrap_or_default();
    let mut dirs: Vec<String> = old.dirs.clone();
    let mut dirs_created: Vec<PathBuf> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    let mut reports = Vec::new();

    // The record's directory first: should writing it fail, nothing has
    // been written under a browser's directory without a record.
    let record_dir = Path::new(RECORD)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    for d in create_dirs(root, &record_dir)? {
        dirs_created.push(root.path(&d));
        dirs.push(d);
    }
    let mut record = Record {
        written_by: "certagent browser-policy --install".to_string(),
        files: old.files.clone(),
        dirs: dirs.clone(),
    };

    for target in &TARGETS {
        let path = root.path(target.path);
        let Some(text) = content(target, origins) else {
            if path.exists() {
                std::fs::remove_file(&path).map_err(io(&path))?;
                reports.push(FileReport {
                    browser: target.browser,
                    path,
                    status: FileStatus::Removed,
                });
            }
            continue;
        };
        let parent = Path::new(target.path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let created = create_dirs(root, &parent)?;
        for d in created {
            dirs_created.push(root.path(&d));
            dirs.push(d);
        }
        files.push(target.path.to_string());
        // Record before writing, so an interrupted install can be removed.
        record.dirs = dirs.clone();
        if !record.files.iter().any(|f| f == target.path) {
            record.files.push(target.path.to_string());
        }
        write_record(root, &record)?;
        let status = match std::fs::read_to_string(&path) {
            Ok(existing) if existing == text => FileStatus::Unchanged,
            Ok(_) => FileStatus::Updated,
            Err(_) => FileStatus::Created,
        };
        if status != FileStatus::Unchanged {
            write_file(&path, &text)?;
        }
        set_mode(&path, 0o644)?;
        reports.push(FileReport {
            browser: target.browser,
            path,
            status,
        });
    }
    record.files = files;
    record.dirs = dirs;
    write_record(root, &record)?;
    Ok(InstallReport {
        action: "install",
        origins: origins.list().to_vec(),
        files: reports,
        dirs_created,
        record: root.path(RECORD),
    })
}

fn write_record(root: &Root, record: &Record) -> Result<(), PolicyError> {
    let mut text = serde_json::to_string_pretty(record).map_err(|e| PolicyError::Record {
        path: root.path(RECORD),
        message: e.to_string(),
    })?;
    text.push('\n');
    write_file(&root.path(RECORD), &text)
}

/// Remove what `install` wrote: the policy files (every [`TARGETS`] path,
/// recorded or not: the names are certagent's), the record, and the
/// directories the record says `install` created, when they are empty.
/// Idempotent: with nothing installed it removes nothing.
pub fn remove(root: &Root) -> Result<RemoveReport, PolicyError> {
    root.check_root("remove")?;
    remove_as_root(root).map_err(denied_is_root("remove"))
}

fn remove_as_root(root: &Root) -> Result<RemoveReport, PolicyError> {
    let record = read_record(root)?;
    let mut logical: Vec<String> = TARGETS.iter().map(|t| t.path.to_string()).collect();
    if let Some(r) = &record {
        for f in &r.files {
            if TARGETS.iter().any(|t| t.path == f) && !logical.contains(f) {
                logical.push(f.clone());
            }
        }
    }
    let mut report = RemoveReport {
        action: "remove",
        removed_files: Vec::new(),
        removed_dirs: Vec::new(),
        kept_dirs: Vec::new(),
    };
    for f in logical
        .iter()
        .map(String::as_str)
        .chain(record.as_ref().map(|_| RECORD))
    {
        let path = root.path(f);
        match std::fs::remove_file(&path) {
            Ok(()) => report.removed_files.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    if let Some(r) = record {
        // Children before parents; only directories of the record (made by
        // an install), and only when empty.
        let mut dirs = r.dirs;
        dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        dirs.dedup();
        for d in dirs.iter().filter(|d| ours_to_create(d)) {
            let path = root.path(d);
            match std::fs::remove_dir(&path) {
                Ok(()) => report.removed_dirs.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                    report.kept_dirs.push(path)
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Origins {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        Origins::new(&list, "test").expect("valid origins")
    }

    #[test]
    fn chromium_json_lists_the_origins() {
        let o = origins(&["https://ib.bank.example", "https://ib2.bank.example:8443"]);
        let v: serde_json::Value = serde_json::from_str(&chromium_json(&o)).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"LocalNetworkAccessAllowedForUrls": ["https://ib.bank.example", "https://ib2.bank.example:8443"]})
        );
    }

    #[test]
    fn origins_are_checked_and_deduplicated() {
        for bad in [
            "http://ib.bank.example",
            "https://ib.bank.example/",
            "https://IB.bank.example",
            "https://ib\"bank.example",
            "https://ib.bank.example\\x",
            "https://ib..bank.example",
            "https://<b>",
            "ftp://x",
        ] {
            assert!(
                Origins::new(&[bad.to_string()], "t").is_err(),
                "{bad} accepted"
            );
        }
        let o = origins(&[
            "https://a.example",
            "https://a.example",
            "http://127.0.0.1:8080",
        ]);
        assert_eq!(o.list(), ["https://a.example", "http://127.0.0.1:8080"]);
        let e = Origins::new(&[], "the configuration file /x.toml")
            .expect_err("empty")
            .to_string();
        assert!(e.contains("/x.toml has no [bank] origins"), "{e}");
    }

    #[test]
    fn firefox_takes_hosts_and_never_loopback() {
        let o = origins(&[
            "https://ib.bank.example:8443",
            "https://ib.bank.example",
            "https://127.0.0.1:9443",
            "http://localhost:8080",
            "https://[::1]:9443",
        ]);
        assert_eq!(o.firefox_hosts(), ["ib.bank.example"]);
        let prefs = firefox_prefs(&o).expect("prefs");
        assert!(
            prefs.contains("pref(\"network.lna.skip-domains\", \"ib.bank.example\");"),
            "{prefs}"
        );
        assert_eq!(firefox_prefs(&origins(&["https://127.0.0.1:9443"])), None);
    }

    #[test]
    fn windows_reg_numbers_each_origin_per_browser() {
        let reg = windows_reg(&origins(&["https://a.example", "https://b.example"]));
        assert!(reg.starts_with("Windows Registry Editor Version 5.00\n"));
        for key in [
            "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Google\\Chrome\\LocalNetworkAccessAllowedForUrls]\n\"1\"=\"https://a.example\"\n\"2\"=\"https://b.example\"\n",
            "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Chromium\\LocalNetworkAccessAllowedForUrls]\n",
            "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Edge\\LocalNetworkAccessAllowedForUrls]\n",
            "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Mozilla\\Firefox\\LocalNetworkAccess\\SkipDomains]\n\"1\"=\"a.example\"\n\"2\"=\"b.example\"\n",
        ] {
            assert!(reg.contains(key), "{key} missing in\n{reg}");
        }
    }

    #[test]
    fn mobileconfig_is_stable_and_names_each_browser() {
        let o = origins(&["https://a.example"]);
        let a = macos_mobileconfig(&o);
        assert_eq!(a, macos_mobileconfig(&o));
        assert_ne!(a, macos_mobileconfig(&origins(&["https://b.example"])));
        for want in [
            "<string>com.google.Chrome</string>",
            "<string>com.microsoft.Edge</string>",
            "<string>org.chromium.Chromium</string>",
            "<string>org.mozilla.firefox</string>",
            "<key>LocalNetworkAccessAllowedForUrls</key>",
            "<string>https://a.example</string>",
            "<key>SkipDomains</key>",
            "<string>a.example</string>",
        ] {
            assert!(a.contains(want), "{want} missing in\n{a}");
        }
        let uuid = stable_uuid(&["x"]);
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.chars().nth(14), Some('5'));
    }

    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .expect("read_dir")
                .map(|e| e.expect("entry").path())
                .collect();
            entries.sort();
            for p in entries {
                let rel = p
                    .strip_prefix(base)
                    .expect("under base")
                    .display()
                    .to_string();
                if p.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(base, &p, out);
                } else {
                    out.push(format!(
                        "{rel} {}",
                        std::fs::read_to_string(&p).unwrap_or_default()
                    ));
                }
            }
        }
        walk(dir, dir, &mut out);
        out
    }

    #[test]
    fn install_then_remove_leaves_the_tree_as_it_was() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = Root::at(tmp.path());
        // Someone else's policy and an existing browser directory.
        std::fs::create_dir_all(tmp.path().join("etc/chromium/policies/managed")).expect("mkdir");
        std::fs::write(
            tmp.path().join("etc/chromium/policies/managed/other.json"),
            "{}",
        )
        .expect("other");
        std::fs::create_dir_all(tmp.path().join("etc/firefox-esr")).expect("mkdir");
        let before = tree(tmp.path());

        let o = origins(&["https://ib.bank.example"]);
        let r = install(&root, &o).expect("install");
        assert_eq!(r.files.len(), 4);
        assert!(
            r.files.iter().all(|f| f.status == FileStatus::Created),
            "{r:?}"
        );
        assert!(r.dirs_created.contains(&tmp.path().join("etc/opt")));
        assert!(!r.dirs_created.contains(&tmp.path().join("etc/chromium")));
        let again = install(&root, &o).expect("install again");
        assert!(
            again
                .files
                .iter()
                .all(|f| f.status == FileStatus::Unchanged),
            "{again:?}"
        );
        assert!(again.dirs_created.is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(
                tmp.path()
                    .join("etc/opt/edge/policies/managed/certagent.json"),
            )
            .expect("meta")
            .permissions()
            .mode();
            assert_eq!(m & 0o777, 0o644);
        }
        // Origins that need no Firefox file take ours away on the next install.
        let loopback = install(&root, &origins(&["https://127.0.0.1:9443"])).expect("install");
        assert!(
            loopback
                .files
                .iter()
                .any(|f| f.browser == "firefox-esr" && f.status == FileStatus::Removed)
        );

        let removed = remove(&root).expect("remove");
        assert!(removed.kept_dirs.is_empty(), "{removed:?}");
        assert_eq!(tree(tmp.path()), before);
        let nothing = remove(&root).expect("remove again");
        assert!(nothing.removed_files.is_empty() && nothing.removed_dirs.is_empty());
    }

    #[test]
    fn remove_keeps_a_created_directory_someone_else_filled() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = Root::at(tmp.path());
        install(&root, &origins(&["https://ib.bank.example"])).expect("install");
        let theirs = tmp
            .path()
            .join("etc/opt/chrome/policies/managed/theirs.json");
        std::fs::write(&theirs, "{}").expect("theirs");
        let r = remove(&root).expect("remove");
        assert!(theirs.exists());
        assert!(
            r.kept_dirs
                .contains(&tmp.path().join("etc/opt/chrome/policies/managed"))
        );
        assert!(
            !tmp.path()
                .join("etc/opt/chrome/policies/managed/certagent.json")
                .exists()
        );
        assert!(!tmp.path().join("etc/opt/edge").exists());
    }
}
