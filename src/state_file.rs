//! The one way certagent writes a file it keeps: the renewal journal, the
//! bank's remembered CA certificates, retired keys, the notices ledger and
//! the browser policies.
//!
//! A temporary file beside the target is created exclusively without
//! following links (a link planted at its name is an error, never a way to
//! write elsewhere), written, flushed to disk, given its mode, and renamed
//! over the target; then the directory is flushed too. A reader sees the
//! old file or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Who may read the file: its owner only (state) or everyone (policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0600: the journal, the ledger, what certagent remembers.
    Private,
    /// 0644: files other programs read (browser policies, host manifests).
    Public,
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Private => 0o600,
            Mode::Public => 0o644,
        }
    }
}

/// The temporary file's name for `path`: hidden, beside it.
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    dir.join(format!(".{name}.certagent-tmp"))
}

fn open_exclusive(tmp: &Path, mode: Mode) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    crate::platform::no_follow(&mut o, mode.bits()).open(tmp)
}

/// Write `bytes` to `path` whole (see the module's documentation).
pub fn write(path: &Path, bytes: &[u8], mode: Mode) -> std::io::Result<()> {
    let tmp = temporary(path);
    // A leftover (or planted) temporary file is removed, never followed:
    // remove_file unlinks a link itself, not its target.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = (|| {
        let mut f = open_exclusive(&tmp, mode)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        // The mode given at creation is narrowed by the umask; set it exactly.
        crate::platform::set_mode(&f, mode.bits())?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_with_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write(&p, b"one", Mode::Private).unwrap();
        write(&p, b"two", Mode::Private).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, 0o600);
            write(&p, b"three", Mode::Public).unwrap();
            let m = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, 0o644);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_planted_at_the_temporary_name_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let p = dir.path().join("policy.json");
        std::os::unix::fs::symlink(&victim, temporary(&p)).unwrap();
        write(&p, b"{}", Mode::Public).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_file());
    }
}
