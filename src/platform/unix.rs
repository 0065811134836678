//! Unix: modes, `O_NOFOLLOW`, the effective user, SIGTERM.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Whether this process runs as the administrator (root).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The effective user's number.
pub fn user_id() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A directory for its owner alone (0700).
pub fn private_dir(b: &mut DirBuilder) -> &mut DirBuilder {
    b.mode(0o700)
}

/// Open options that never follow a symbolic link at the last component,
/// a new file created with `mode`.
pub fn no_follow(o: &mut OpenOptions, mode: u32) -> &mut OpenOptions {
    o.mode(mode).custom_flags(libc::O_NOFOLLOW)
}

/// Give `f` exactly `mode` (creation narrows it by the umask).
pub fn set_mode(f: &File, mode: u32) -> std::io::Result<()> {
    f.set_permissions(Permissions::from_mode(mode))
}

/// Until SIGTERM or Ctrl-C.
pub async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
