//! The Windows installer's logic: the browser policies as registry values
//! under `HKLM\SOFTWARE\Policies\`, written and removed through a small
//! [`Hive`] (the real registry in `install/windows.rs`; a map in the unit
//! tests, so this logic is checked on every platform).
//!
//! A list policy in the registry is a key whose values are named `1`,
//! `2`, … `n`; Chrome and Edge read them in that order and stop at the
//! first number missing, and Firefox does the same. IT may already have
//! listed URLs of its own there: install keeps them, appends the bank's
//! origins that are not listed yet, and numbers the whole list again
//! without holes. What it added (and which keys it created) it records
//! under [`RECORD_KEY`], so that remove takes away exactly those values
//! and keys and nothing of anybody else's.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{FileReport, FileStatus, InstallReport, RemoveReport};
use crate::browser_policy::{CHROMIUM_POLICY, Origins, PolicyError};

/// Where install records what it added, under `HKLM`.
pub const RECORD_KEY: &str = r"SOFTWARE\certagent\BrowserPolicy";
/// The record's value (a JSON text).
const RECORD_VALUE: &str = "Record";

/// One list policy: a browser, its key under `HKLM`, and whether it lists
/// origins (Chrome, Chromium, Edge) or host names (Firefox).
struct ListKey {
    browser: &'static str,
    key: String,
    hosts: bool,
}

fn list_keys() -> Vec<ListKey> {
    let chromium = |browser, vendor: &str| ListKey {
        browser,
        key: format!(r"SOFTWARE\Policies\{vendor}\{CHROMIUM_POLICY}"),
        hosts: false,
    };
    vec![
        chromium("chrome", r"Google\Chrome"),
        chromium("chromium", "Chromium"),
        chromium("edge", r"Microsoft\Edge"),
        ListKey {
            browser: "firefox",
            key: r"SOFTWARE\Policies\Mozilla\Firefox\LocalNetworkAccess\SkipDomains".into(),
            hosts: true,
        },
    ]
}

/// The registry keys under `HKLM`, as much of them as the installer uses.
/// Key paths are relative to `HKLM`, with backslashes.
pub trait Hive {
    /// `key`'s values, each with its text when it is a string (`REG_SZ`);
    /// `None` when the key does not exist.
    #[allow(clippy::type_complexity)]
    fn values(&self, key: &str) -> io::Result<Option<Vec<(String, Option<String>)>>>;
    /// Whether `key` has subkeys.
    fn has_subkeys(&self, key: &str) -> io::Result<bool>;
    /// Create `key`, whose parent exists; `true` when it was not there.
    fn create_key(&mut self, key: &str) -> io::Result<bool>;
    fn set(&mut self, key: &str, name: &str, text: &str) -> io::Result<()>;
    fn delete_value(&mut self, key: &str, name: &str) -> io::Result<()>;
    /// Delete `key`, which has no subkeys.
    fn delete_key(&mut self, key: &str) -> io::Result<()>;
}

/// What install did, kept for remove.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    written_by: String,
    /// Keys install created, in creation order (parents first).
    keys_created: Vec<String>,
    /// The texts install added, by key.
    added: Vec<Added>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Added {
    key: String,
    texts: Vec<String>,
}

/// `HKLM\key`, as people and `reg query` name it.
pub fn shown(key: &str) -> PathBuf {
    PathBuf::from(format!(r"HKLM\{key}"))
}

fn io_error(key: &str) -> impl FnOnce(io::Error) -> PolicyError + '_ {
    move |source| PolicyError::Io {
        path: shown(key),
        source,
    }
}

/// An access refusal is a missing elevation: say so, as the Linux
/// installer says "run it with sudo".
fn denied_is_admin(action: &'static str) -> impl FnOnce(PolicyError) -> PolicyError {
    move |e| match e {
        PolicyError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
            PolicyError::NeedsAdmin(action)
        }
        other => other,
    }
}

/// The numbered values of `key` in their order (`None`: no such key).
fn numbered(hive: &dyn Hive, key: &str) -> Result<Option<Vec<(u32, String)>>, PolicyError> {
    let Some(values) = hive.values(key).map_err(io_error(key))? else {
        return Ok(None);
    };
    let mut list: Vec<(u32, String)> = values
        .into_iter()
        .filter_map(|(name, text)| {
            let n = name.parse::<u32>().ok().filter(|n| *n > 0)?;
            Some((n, text?))
        })
        .collect();
    list.sort_by_key(|(n, _)| *n);
    Ok(Some(list))
}

/// Replace `key`'s numbered values with `texts`, numbered 1..n.
fn write_list(
    hive: &mut dyn Hive,
    key: &str,
    old: &[(u32, String)],
    texts: &[String],
) -> Result<(), PolicyError> {
    for (i, t) in texts.iter().enumerate() {
        hive.set(key, &(i + 1).to_string(), t)
            .map_err(io_error(key))?;
    }
    for (n, _) in old {
        if *n as usize > texts.len() {
            hive.delete_value(key, &n.to_string())
                .map_err(io_error(key))?;
        }
    }
    Ok(())
}

/// Create `key` and its missing parents; returns those created, parents
/// first.
fn create_path(hive: &mut dyn Hive, key: &str) -> Result<Vec<String>, PolicyError> {
    let mut created = Vec::new();
    let mut k = String::new();
    for part in key.split('\\') {
        if !k.is_empty() {
            k.push('\\');
        }
        k.push_str(part);
        if hive.values(&k).map_err(io_error(&k))?.is_none()
            && hive.create_key(&k).map_err(io_error(&k))?
        {
            created.push(k.clone());
        }
    }
    Ok(created)
}

fn read_record(hive: &dyn Hive) -> Result<Option<Record>, PolicyError> {
    let Some(values) = hive.values(RECORD_KEY).map_err(io_error(RECORD_KEY))? else {
        return Ok(None);
    };
    let Some((_, text)) = values.into_iter().find(|(n, _)| n == RECORD_VALUE) else {
        return Ok(None);
    };
    let bad = |message: String| PolicyError::Record {
        path: shown(RECORD_KEY),
        message,
    };
    let text = text.ok_or_else(|| bad("the record is not a string value".into()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| bad(format!("not a record of certagent browser-policy ({e})")))
}

fn write_record(hive: &mut dyn Hive, record: &Record) -> Result<(), PolicyError> {
    let text = serde_json::to_string(record).map_err(|e| PolicyError::Record {
        path: shown(RECORD_KEY),
        message: e.to_string(),
    })?;
    hive.set(RECORD_KEY, RECORD_VALUE, &text)
        .map_err(io_error(RECORD_KEY))
}

/// Take one occurrence of each of `ours` out of `list`.
fn without(list: &[String], ours: &[String]) -> Vec<String> {
    let mut left: Vec<String> = list.to_vec();
    for t in ours {
        if let Some(i) = left.iter().position(|x| x == t) {
            left.remove(i);
        }
    }
    left
}

/// Write the policies for `origins`, keeping every value already listed.
/// Idempotent; a second install with other origins replaces what the
/// first one added.
pub fn install(hive: &mut dyn Hive, origins: &Origins) -> Result<InstallReport, PolicyError> {
    install_elevated(hive, origins).map_err(denied_is_admin("install"))
}

fn install_elevated(hive: &mut dyn Hive, origins: &Origins) -> Result<InstallReport, PolicyError> {
    let mut record = read_record(hive)?.unwrap_or_default();
    record.written_by = "certagent browser-policy --install".into();
    let mut dirs_created = Vec::new();
    // The record's key first: nothing is written under a browser's key
    // without a record to remove it by.
    for k in create_path(hive, RECORD_KEY)? {
        dirs_created.push(shown(&k));
        record.keys_created.push(k);
    }
    write_record(hive, &record)?;

    let mut files = Vec::new();
    for target in list_keys() {
        let ours: Vec<String> = if target.hosts {
            origins.firefox_hosts()
        } else {
            origins.list().to_vec()
        };
        let before = numbered(hive, &target.key)?;
        let before_texts: Vec<String> = before.iter().flatten().map(|(_, t)| t.clone()).collect();
        let previously: Vec<String> = record
            .added
            .iter()
            .filter(|a| a.key == target.key)
            .flat_map(|a| a.texts.clone())
            .collect();
        let others = without(&before_texts, &previously);
        let add: Vec<String> = ours.into_iter().filter(|t| !others.contains(t)).collect();
        let mut list = others.clone();
        list.extend(add.iter().cloned());

        record.added.retain(|a| a.key != target.key);
        if !add.is_empty() {
            record.added.push(Added {
                key: target.key.clone(),
                texts: add,
            });
        }
        if list.is_empty() {
            // Nothing to list here (Firefox when every origin is
            // loopback): take out what an earlier install listed.
            if let Some(old) = before.filter(|_| !before_texts.is_empty()) {
                write_record(hive, &record)?;
                write_list(hive, &target.key, &old, &list)?;
                files.push(FileReport {
                    browser: target.browser,
                    path: shown(&target.key),
                    status: FileStatus::Removed,
                });
            }
            continue;
        }
        for k in create_path(hive, &target.key)? {
            dirs_created.push(shown(&k));
            record.keys_created.push(k);
        }
        // Recorded before the values are written, so an interrupted
        // install can still be removed.
        write_record(hive, &record)?;
        let status = match &before {
            None => FileStatus::Created,
            Some(_) if before_texts == list => FileStatus::Unchanged,
            Some(_) => FileStatus::Updated,
        };
        if status != FileStatus::Unchanged {
            write_list(hive, &target.key, before.as_deref().unwrap_or(&[]), &list)?;
        }
        files.push(FileReport {
            browser: target.browser,
            path: shown(&target.key),
            status,
        });
    }
    Ok(InstallReport {
        action: "install",
        origins: origins.list().to_vec(),
        files,
        dirs_created,
        record: shown(RECORD_KEY),
    })
}

/// Remove what [`install`] added: its values (the others' are numbered
/// again), the record, and the keys it created once they are empty.
/// Idempotent: with no record it removes nothing.
pub fn remove(hive: &mut dyn Hive) -> Result<RemoveReport, PolicyError> {
    remove_elevated(hive).map_err(denied_is_admin("remove"))
}

fn remove_elevated(hive: &mut dyn Hive) -> Result<RemoveReport, PolicyError> {
    let mut report = RemoveReport {
        action: "remove",
        removed_files: Vec::new(),
        removed_dirs: Vec::new(),
        kept_dirs: Vec::new(),
    };
    let Some(record) = read_record(hive)? else {
        return Ok(report);
    };
    for added in &record.added {
        let Some(old) = numbered(hive, &added.key)? else {
            continue;
        };
        let texts: Vec<String> = old.iter().map(|(_, t)| t.clone()).collect();
        let left = without(&texts, &added.texts);
        if left.len() != texts.len() {
            write_list(hive, &added.key, &old, &left)?;
            report.removed_files.push(shown(&added.key));
        }
    }
    hive.delete_value(RECORD_KEY, RECORD_VALUE)
        .map_err(io_error(RECORD_KEY))?;
    for key in record.keys_created.iter().rev() {
        let Some(values) = hive.values(key).map_err(io_error(key))? else {
            continue;
        };
        if values.is_empty() && !hive.has_subkeys(key).map_err(io_error(key))? {
            hive.delete_key(key).map_err(io_error(key))?;
            report.removed_dirs.push(shown(key));
        } else {
            report.kept_dirs.push(shown(key));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::browser_policy::test_origins as origins;

    /// The registry as a map of keys to their values.
    #[derive(Default, Clone, PartialEq, Debug)]
    struct Map(BTreeMap<String, BTreeMap<String, String>>);

    impl Map {
        fn with(keys: &[&str]) -> Map {
            let mut m = Map::default();
            for k in keys {
                m.0.insert(k.to_string(), BTreeMap::new());
            }
            m
        }
        fn list(&self, key: &str) -> Vec<(String, String)> {
            self.0[key]
                .iter()
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect()
        }
    }

    impl Hive for Map {
        fn values(&self, key: &str) -> io::Result<Option<Vec<(String, Option<String>)>>> {
            Ok(self.0.get(key).map(|v| {
                v.iter()
                    .map(|(n, t)| (n.clone(), Some(t.clone())))
                    .collect()
            }))
        }
        fn has_subkeys(&self, key: &str) -> io::Result<bool> {
            let prefix = format!("{key}\\");
            Ok(self.0.keys().any(|k| k.starts_with(&prefix)))
        }
        fn create_key(&mut self, key: &str) -> io::Result<bool> {
            if self.0.contains_key(key) {
                return Ok(false);
            }
            self.0.insert(key.into(), BTreeMap::new());
            Ok(true)
        }
        fn set(&mut self, key: &str, name: &str, text: &str) -> io::Result<()> {
            let Some(v) = self.0.get_mut(key) else {
                return Err(io::ErrorKind::NotFound.into());
            };
            v.insert(name.into(), text.into());
            Ok(())
        }
        fn delete_value(&mut self, key: &str, name: &str) -> io::Result<()> {
            let v = self.0.get_mut(key).ok_or(io::ErrorKind::NotFound)?;
            v.remove(name)
                .map(|_| ())
                .ok_or(io::ErrorKind::NotFound.into())
        }
        fn delete_key(&mut self, key: &str) -> io::Result<()> {
            self.0
                .remove(key)
                .map(|_| ())
                .ok_or(io::ErrorKind::NotFound.into())
        }
    }

    /// What a fresh Windows has.
    fn windows() -> Map {
        Map::with(&[
            "SOFTWARE",
            r"SOFTWARE\Policies",
            r"SOFTWARE\Policies\Microsoft",
        ])
    }

    const EDGE: &str = r"SOFTWARE\Policies\Microsoft\Edge\LocalNetworkAccessAllowedForUrls";

    #[test]
    fn install_then_remove_leaves_the_registry_as_it_was() {
        let mut hive = windows();
        let before = hive.clone();
        let o = origins(&["https://ib.bank.example", "https://b.example:8443"]);
        let r = install(&mut hive, &o).expect("install");
        assert_eq!(r.files.len(), 4);
        assert!(r.files.iter().all(|f| f.status == FileStatus::Created));
        assert_eq!(
            hive.list(EDGE),
            vec![
                ("1".into(), "https://ib.bank.example".into()),
                ("2".into(), "https://b.example:8443".into())
            ]
        );
        assert_eq!(
            hive.list(r"SOFTWARE\Policies\Mozilla\Firefox\LocalNetworkAccess\SkipDomains"),
            vec![
                ("1".into(), "ib.bank.example".into()),
                ("2".into(), "b.example".into())
            ]
        );
        assert_ne!(hive, before, "the control: install changed the registry");
        let again = install(&mut hive, &o).expect("install again");
        assert!(
            again
                .files
                .iter()
                .all(|f| f.status == FileStatus::Unchanged)
        );
        let r = remove(&mut hive).expect("remove");
        assert_eq!(r.removed_files.len(), 4);
        assert!(r.kept_dirs.is_empty(), "{:?}", r.kept_dirs);
        assert_eq!(hive, before);
        let r = remove(&mut hive).expect("remove again");
        assert!(r.removed_files.is_empty() && r.removed_dirs.is_empty());
    }

    #[test]
    fn values_it_did_not_add_are_kept_and_numbered_without_holes() {
        let mut hive = windows();
        hive.0
            .insert(r"SOFTWARE\Policies\Microsoft\Edge".into(), BTreeMap::new());
        hive.0.insert(
            EDGE.into(),
            BTreeMap::from([
                ("1".to_string(), "https://intranet.example".to_string()),
                ("2".to_string(), "https://ib.bank.example".to_string()),
            ]),
        );
        let before = hive.clone();
        let o = origins(&["https://ib.bank.example", "https://new.example"]);
        let r = install(&mut hive, &o).expect("install");
        let edge = r.files.iter().find(|f| f.browser == "edge").expect("edge");
        assert_eq!(edge.status, FileStatus::Updated);
        assert_eq!(
            hive.list(EDGE),
            vec![
                ("1".into(), "https://intranet.example".into()),
                ("2".into(), "https://ib.bank.example".into()),
                ("3".into(), "https://new.example".into())
            ]
        );
        // IT adds one more between install and remove; it stays.
        hive.0
            .get_mut(EDGE)
            .expect("edge key")
            .insert("4".into(), "https://later.example".into());
        remove(&mut hive).expect("remove");
        let mut expected = before.clone();
        expected
            .0
            .get_mut(EDGE)
            .expect("edge key")
            .insert("3".into(), "https://later.example".into());
        assert_eq!(
            hive, expected,
            "the bank's origin IT listed stays; ours went"
        );
    }

    #[test]
    fn a_second_install_replaces_what_the_first_added() {
        let mut hive = windows();
        let before = hive.clone();
        install(&mut hive, &origins(&["https://a.example"])).expect("first");
        install(&mut hive, &origins(&["https://b.example"])).expect("second");
        assert_eq!(
            hive.list(EDGE),
            vec![("1".into(), "https://b.example".into())]
        );
        remove(&mut hive).expect("remove");
        assert_eq!(hive, before);
    }

    #[test]
    fn loopback_origins_need_no_firefox_key() {
        let mut hive = windows();
        let r = install(&mut hive, &origins(&["http://127.0.0.1:8080"])).expect("install");
        assert_eq!(r.files.len(), 3);
        assert!(!hive.0.keys().any(|k| k.contains("Mozilla")));
    }

    #[test]
    fn a_key_someone_filled_is_kept() {
        let mut hive = windows();
        install(&mut hive, &origins(&["https://a.example"])).expect("install");
        hive.0
            .get_mut(r"SOFTWARE\Policies\Google\Chrome")
            .expect("chrome key")
            .insert("HomepageLocation".into(), "https://x.example".into());
        let r = remove(&mut hive).expect("remove");
        assert_eq!(
            r.kept_dirs,
            vec![
                shown(r"SOFTWARE\Policies\Google\Chrome"),
                shown(r"SOFTWARE\Policies\Google")
            ]
        );
        assert!(hive.0.contains_key(r"SOFTWARE\Policies\Google\Chrome"));
        assert!(
            !hive
                .0
                .contains_key(r"SOFTWARE\Policies\Google\Chrome\LocalNetworkAccessAllowedForUrls")
        );
    }

    #[test]
    fn a_refusal_asks_for_an_elevated_prompt() {
        struct Denied;
        impl Hive for Denied {
            fn values(&self, _: &str) -> io::Result<Option<Vec<(String, Option<String>)>>> {
                Ok(None)
            }
            fn has_subkeys(&self, _: &str) -> io::Result<bool> {
                Ok(false)
            }
            fn create_key(&mut self, _: &str) -> io::Result<bool> {
                Err(io::ErrorKind::PermissionDenied.into())
            }
            fn set(&mut self, _: &str, _: &str, _: &str) -> io::Result<()> {
                Err(io::ErrorKind::PermissionDenied.into())
            }
            fn delete_value(&mut self, _: &str, _: &str) -> io::Result<()> {
                Err(io::ErrorKind::PermissionDenied.into())
            }
            fn delete_key(&mut self, _: &str) -> io::Result<()> {
                Err(io::ErrorKind::PermissionDenied.into())
            }
        }
        let e = install(&mut Denied, &origins(&["https://a.example"]))
            .expect_err("refused")
            .to_string();
        assert!(e.contains("administrator"), "{e}");
    }
}
