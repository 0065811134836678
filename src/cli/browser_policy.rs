//! `certagent browser-policy [--install | --remove]`: prints, installs or
//! removes the managed browser policies that let `[bank] origins` reach the
//! agent without a Local Network Access prompt. The texts and the file
//! work are in [`crate::browser_policy`].

use std::path::Path;

use serde::Serialize;

use crate::Error;
use crate::browser_policy::{
    self as bp, CHROMIUM_POLICY, FIREFOX_PREF, FileStatus, Origins, TARGETS,
};
use crate::config::Config;
use crate::i18n::{Arg, tr};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Print,
    Install,
    Remove,
}

pub(super) fn run(config: Option<&Path>, json: bool, action: Action) -> Result<(), Error> {
    match action {
        // Removing needs no configuration: it takes away what was installed,
        // whatever the origins are now.
        Action::Remove => remove(json),
        Action::Install => {
            let origins = origins(config)?;
            install(&origins, json)
        }
        Action::Print => {
            let origins = origins(config)?;
            print(&origins, json)
        }
    }
}

fn origins(config: Option<&Path>) -> Result<Origins, Error> {
    let config = Config::discover(config)?;
    Ok(Origins::from_config(&config)?)
}

fn print_json<T: Serialize>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

#[derive(Serialize)]
struct LinuxFile {
    browser: &'static str,
    path: &'static str,
    content: String,
}

#[derive(Serialize)]
struct Firefox {
    pref: &'static str,
    hosts: Vec<String>,
    policies_json: Option<serde_json::Value>,
    note: &'static str,
}

#[derive(Serialize)]
struct Printed {
    origins: Vec<String>,
    policy: &'static str,
    linux: Vec<LinuxFile>,
    windows_reg: String,
    macos_mobileconfig: String,
    firefox: Firefox,
}

const FIREFOX_NOTE: &str = "Firefox (ESR 153 too) asks before a public page may reach this machine; network.lna.skip-domains lifts that for the bank's host names (it matches hosts, not origins; loopback hosts are left out, since the preference also matches the address called)";

fn print(origins: &Origins, json: bool) -> Result<(), Error> {
    let linux: Vec<LinuxFile> = TARGETS
        .iter()
        .filter_map(|t| {
            bp::content(t, origins).map(|content| LinuxFile {
                browser: t.browser,
                path: t.path,
                content,
            })
        })
        .collect();
    if json {
        return print_json(&Printed {
            origins: origins.list().to_vec(),
            policy: CHROMIUM_POLICY,
            linux,
            windows_reg: bp::windows_reg(origins),
            macos_mobileconfig: bp::macos_mobileconfig(origins),
            firefox: Firefox {
                pref: FIREFOX_PREF,
                hosts: origins.firefox_hosts(),
                policies_json: bp::firefox_policies_json(origins),
                note: FIREFOX_NOTE,
            },
        });
    }
    comment("#", "policy-print-head");
    for o in origins.list() {
        println!("#   {o}");
    }
    println!();
    comment("##", "policy-print-linux");
    for f in &linux {
        println!();
        println!("### {}", f.path);
        print!("{}", f.content);
    }
    if origins.firefox_hosts().is_empty() {
        println!();
        comment("#", "policy-print-no-firefox");
    }
    println!();
    comment("##", "policy-print-windows");
    println!();
    print!("{}", bp::windows_reg(origins));
    println!();
    comment("##", "policy-print-macos");
    println!();
    print!("{}", bp::macos_mobileconfig(origins));
    if let Some(p) = bp::firefox_policies_json(origins) {
        let text = serde_json::to_string_pretty(&p)
            .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
        println!();
        comment("##", "policy-print-firefox");
        println!();
        println!("{text}");
    }
    Ok(())
}

/// The message `id`, each of its lines a comment after `mark`.
fn comment(mark: &str, id: &str) {
    for line in tr(id, &[]).lines() {
        println!("{mark} {line}");
    }
}

fn status_word(s: FileStatus) -> String {
    let id = match s {
        FileStatus::Created => "policy-created",
        FileStatus::Updated => "policy-updated",
        FileStatus::Unchanged => "policy-unchanged",
        FileStatus::Removed => "policy-removed",
    };
    super::pad(&tr(id, &[]), 10)
}

fn install(origins: &Origins, json: bool) -> Result<(), Error> {
    let report = bp::installer().install(origins)?;
    if json {
        return print_json(&report);
    }
    let list = origins.list().join(", ");
    println!("{}", tr("policy-for", &[("origins", Arg::Str(&list))]));
    for f in &report.files {
        println!("  {}{}", status_word(f.status), f.path.display());
    }
    for d in &report.dirs_created {
        println!(
            "  {}{}{}",
            status_word(FileStatus::Created),
            d.display(),
            std::path::MAIN_SEPARATOR
        );
    }
    let record = report.record.display().to_string();
    println!(
        "  {}",
        tr("policy-recorded", &[("record", Arg::Str(&record))])
    );
    println!("{}", tr("policy-applies", &[]));
    Ok(())
}

fn remove(json: bool) -> Result<(), Error> {
    let report = bp::installer().remove()?;
    if json {
        return print_json(&report);
    }
    if report.removed_files.is_empty() && report.removed_dirs.is_empty() {
        println!("{}", tr("policy-nothing", &[]));
    }
    let removed = tr("policy-removed", &[]);
    for f in &report.removed_files {
        println!("{removed} {}", f.display());
    }
    for d in &report.removed_dirs {
        println!("{removed} {}{}", d.display(), std::path::MAIN_SEPARATOR);
    }
    for d in &report.kept_dirs {
        let dir = format!("{}{}", d.display(), std::path::MAIN_SEPARATOR);
        println!("{}", tr("policy-kept", &[("dir", Arg::Str(&dir))]));
    }
    Ok(())
}
