//! The Linux installer: the policy files of [`TARGETS`] under `/etc`,
//! written as root, and the record ([`RECORD`]) of what was written and
//! which directories were created, so that `remove` takes away exactly
//! those and nothing else. Files are written with [`crate::state_file`]
//! (whole, no link followed). Built on every Unix, as before the split.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{FileReport, FileStatus, InstallReport, Installer, RemoveReport};
use crate::browser_policy::{Origins, PolicyError, RECORD, ROOT_ENV, TARGETS, content};

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

/// Where `install` and `remove` work: `/`, or the test root from [`ROOT_ENV`].
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    redirected: bool,
}

impl Root {
    /// `/`, unless [`ROOT_ENV`] is set (by a test) and certagent does not
    /// run as root (euid 0), which always works on the real `/`.
    pub fn from_env() -> Root {
        match std::env::var_os(ROOT_ENV).filter(|v| !v.is_empty()) {
            Some(_) if is_root() => {
                log::warn!("{ROOT_ENV} is ignored when certagent runs as root");
                Root::system()
            }
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
        if !self.redirected && !is_root() {
            return Err(PolicyError::NeedsRoot(action));
        }
        Ok(())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The Linux installer works under its root: [`install`] and [`remove`].
impl Installer for Root {
    fn install(&self, origins: &Origins) -> Result<InstallReport, PolicyError> {
        install(self, origins)
    }

    fn remove(&self) -> Result<RemoveReport, PolicyError> {
        remove(self)
    }
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
    use crate::browser_policy::test_origins as origins;

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
