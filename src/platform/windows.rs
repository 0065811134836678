//! Windows: a file's readers are decided by the ACL it inherits (the
//! user's profile, where `%LOCALAPPDATA%` and `%APPDATA%` are: the user,
//! SYSTEM and administrators), not by a mode; a reparse point (a symbolic
//! link or junction) at a file's name is opened as itself, never followed.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::windows::fs::OpenOptionsExt;

/// `FILE_FLAG_OPEN_REPARSE_POINT` (winbase.h).
const OPEN_REPARSE_POINT: u32 = 0x0020_0000;

/// Whether this process runs as the administrator. Nothing certagent does
/// on Windows depends on it yet; the browser-policy installer asks Windows
/// itself.
pub fn is_root() -> bool {
    false
}

/// No Unix user number on Windows (the caller check, when Windows has one,
/// compares SIDs).
pub fn user_id() -> u32 {
    0
}

/// The profile's ACL already keeps `%LOCALAPPDATA%` to its user.
pub fn private_dir(b: &mut DirBuilder) -> &mut DirBuilder {
    b
}

/// Open options that never follow a reparse point at the name.
pub fn no_follow(o: &mut OpenOptions, _mode: u32) -> &mut OpenOptions {
    o.custom_flags(OPEN_REPARSE_POINT)
}

/// The inherited ACL decides; nothing to narrow.
pub fn set_mode(_f: &File, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Until Ctrl-C (or the console closing).
pub async fn terminated() {
    let _ = tokio::signal::ctrl_c().await;
}
