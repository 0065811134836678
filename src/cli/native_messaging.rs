//! `certagent native-messaging [--install | --remove]`: prints, installs
//! or removes the native messaging host manifests (per user without root,
//! system-wide as root), and `certagent native-host`, which the browser
//! starts. The texts and the host are in [`crate::native_messaging`].

use std::path::PathBuf;

use serde::Serialize;

use crate::Error;
use crate::native_messaging::{self as nm, ManifestFile};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Print,
    Install,
    Remove,
}

#[derive(Serialize)]
struct Report {
    action: &'static str,
    scope: &'static str,
    files: Vec<ManifestFile>,
}

/// The host's path for the manifests: this program, as the system finds it.
fn exe() -> Result<String, Error> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::Usage(format!("cannot tell where certagent is: {e}")))?;
    exe.to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Usage(format!("{} is not UTF-8", exe.display())))
}

fn home() -> Result<PathBuf, Error> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
        .ok_or_else(|| Error::Usage("HOME is not set: no per-user manifests".into()))
}

pub(super) fn run(json: bool, action: Action) -> Result<(), Error> {
    let system = crate::platform::is_root();
    let home = if system { PathBuf::from("/") } else { home()? };
    let files = nm::manifest_files(&exe()?, system, &home);
    let scope = if system { "system" } else { "user" };
    match action {
        Action::Print => {}
        Action::Install => {
            for f in &files {
                if let Some(dir) = f.path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| Error::Usage(format!("{}: {e}", dir.display())))?;
                }
                crate::state_file::write(
                    &f.path,
                    f.text.as_bytes(),
                    crate::state_file::Mode::Public,
                )
                .map_err(|e| Error::Usage(format!("{}: {e}", f.path.display())))?;
            }
        }
        Action::Remove => {
            for f in &files {
                // Only a manifest of certagent's host: the file name is
                // ours, and so must its content be.
                let ours = std::fs::read_to_string(&f.path).is_ok_and(|t| {
                    serde_json::from_str::<serde_json::Value>(&t).is_ok_and(|v| {
                        v.get("name").and_then(|n| n.as_str()) == Some(nm::HOST_NAME)
                    })
                });
                if ours {
                    std::fs::remove_file(&f.path)
                        .map_err(|e| Error::Usage(format!("{}: {e}", f.path.display())))?;
                }
            }
        }
    }
    let action_name = match action {
        Action::Print => "print",
        Action::Install => "install",
        Action::Remove => "remove",
    };
    if json {
        let report = Report {
            action: action_name,
            scope,
            files,
        };
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    for f in &files {
        match action {
            Action::Print => {
                println!("# {} ({scope}): {}", f.browser, f.path.display());
                print!("{}", f.text);
            }
            Action::Install => println!("installed {}", f.path.display()),
            Action::Remove => println!("removed   {}", f.path.display()),
        }
    }
    Ok(())
}

/// The host, on stdin and stdout, as the browser starts it.
pub fn host() -> Result<(), Error> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    nm::host(&mut stdin.lock(), &mut stdout.lock()).map_err(Error::Usage)
}
