//! The seam every platform's browser-policy installer fits: [`Installer`]
//! installs the policies for the bank's origins and removes them again,
//! and [`installer`] picks this platform's. On Unix that is the `/etc`
//! files of `install/linux.rs` (`Root`); on Windows the `HKLM` policy keys
//! of `install/registry.rs`, written by `install/windows.rs` (`Machine`);
//! elsewhere [`Unavailable`] refuses with an error, never a silent success.

use std::path::PathBuf;

use serde::Serialize;

use super::{Origins, PolicyError};

#[cfg(unix)]
mod linux;
// Windows's installer logic; elsewhere only its unit tests use it.
#[cfg_attr(not(windows), allow(dead_code))]
mod registry;
mod unavailable;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
pub use linux::{Root, install, remove};
pub use unavailable::Unavailable;

/// Installs and removes the managed browser policies on one platform.
pub trait Installer {
    /// Install the policies that let `origins` reach the agent.
    fn install(&self, origins: &Origins) -> Result<InstallReport, PolicyError>;
    /// Remove what [`Installer::install`] installed.
    fn remove(&self) -> Result<RemoveReport, PolicyError>;
}

/// This platform's installer: on Unix the `/etc` files under
/// `Root::from_env`; on Windows the machine's registry; on other
/// platforms [`Unavailable`].
pub fn installer() -> Box<dyn Installer> {
    #[cfg(unix)]
    {
        Box::new(Root::from_env())
    }
    #[cfg(windows)]
    {
        Box::new(windows::Machine)
    }
    #[cfg(not(any(unix, windows)))]
    {
        Box::new(Unavailable)
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
