//! `certagent browser-policy [--install | --remove]`: prints, installs or
//! removes the managed browser policies that let `[bank] origins` reach the
//! agent without a Local Network Access prompt. The texts and the file
//! work are in [`crate::browser_policy`].

use std::path::Path;

use serde::Serialize;

use crate::Error;
use crate::browser_policy::{
    self as bp, CHROMIUM_POLICY, FIREFOX_PREF, FileStatus, Origins, Root, TARGETS,
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
    println!("# Managed browser policies that let the bank's pages reach the certagent agent");
    println!("# on this machine without a Local Network Access prompt, for these origins:");
    for o in origins.list() {
        println!("#   {o}");
    }
    println!();
    println!("## Linux: `sudo certagent --config FILE browser-policy --install` writes these");
    println!("## files (mode 0644), for every browser whether installed yet or not, and");
    println!("## `sudo certagent browser-policy --remove` removes them again.");
    for f in &linux {
        println!();
        println!("### {}", f.path);
        print!("{}", f.content);
    }
    if origins.firefox_hosts().is_empty() {
        println!();
        println!("# Firefox: no file; every origin is on this machine (loopback), and a page on");
        println!("# this machine may call the agent without a prompt.");
    }
    println!();
    println!("## Windows: save as certagent.reg and import it as an administrator");
    println!("## (`reg import certagent.reg`), or set the same values by Group Policy;");
    println!("## `certagent browser-policy --json | jq -r .windows_reg` gives the file alone.");
    println!();
    print!("{}", bp::windows_reg(origins));
    println!();
    println!("## macOS: deploy this configuration profile (certagent.mobileconfig) with your MDM;");
    println!("## Chrome and Edge on macOS take policies only from managed preferences;");
    println!("## `certagent browser-policy --json | jq -r .macos_mobileconfig` gives it alone.");
    println!();
    print!("{}", bp::macos_mobileconfig(origins));
    if let Some(p) = bp::firefox_policies_json(origins) {
        let text = serde_json::to_string_pretty(&p)
            .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
        println!();
        println!("## Firefox elsewhere (Mozilla's own builds, Windows, macOS): the enterprise");
        println!("## policy LocalNetworkAccess in policies.json (Linux:");
        println!("## /etc/firefox/policies/policies.json, one file for all policies: merge this");
        println!("## into it). Firefox, ESR 153 too, asks before a public page may reach this");
        println!("## machine; the policy sets network.lna.skip-domains, which takes host names,");
        println!("## not origins. Loopback hosts are left out: the preference also matches the");
        println!("## address a request goes to, so they would lift the prompt for every page.");
        println!();
        println!("{text}");
    }
    Ok(())
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
    let report = bp::install(&Root::from_env(), origins)?;
    if json {
        return print_json(&report);
    }
    let list = origins.list().join(", ");
    println!("{}", tr("policy-for", &[("origins", Arg::Str(&list))]));
    for f in &report.files {
        println!("  {}{}", status_word(f.status), f.path.display());
    }
    for d in &report.dirs_created {
        println!("  {}{}/", status_word(FileStatus::Created), d.display());
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
    let report = bp::remove(&Root::from_env())?;
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
        println!("{removed} {}/", d.display());
    }
    for d in &report.kept_dirs {
        let dir = format!("{}/", d.display());
        println!("{}", tr("policy-kept", &[("dir", Arg::Str(&dir))]));
    }
    Ok(())
}
