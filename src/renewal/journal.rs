//! The renewal journal: one file per token in the per-user state directory,
//! written before every step acts, so any interruption resumes.
//!
//! The file is created only when no attempt is pending (a journal is never
//! overwritten by a new attempt), written atomically (temporary file,
//! fsync, rename, fsync of the directory), readable by its owner only
//! (0600), and never through a symbolic link.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::RenewalError;
use super::step::Step;
use crate::cert::rfc3339;
use crate::token::KeyKind;

/// Which EST operation the attempt uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Kind {
    /// `simplereenroll`, authenticated by the current certificate.
    Renew,
    /// `simpleenroll` with the bank's ID and one-time password.
    Enroll { user: String },
}

/// The journal entry: everything needed to resume, nothing secret (no PIN,
/// no one-time password; the CSR and certificate are public data).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub version: u32,
    pub kind: Kind,
    pub token_serial: String,
    /// CKA_ID (hex) of the certificate being replaced, if any.
    pub old_id: Option<String>,
    /// DER (base64) of the certificate being replaced, if any.
    pub old_cert: Option<String>,
    pub key: KeyKind,
    /// Label the candidate key is generated under (unique per attempt).
    pub candidate_label: String,
    pub candidate_id: Option<String>,
    /// The candidate goes into a key slot the card fixes (`candidate_id`
    /// is the slot, chosen free before the attempt started).
    #[serde(default)]
    pub fixed_slot: bool,
    /// On such a card: the old certificate's removal was tried once (the
    /// next fresh read tells whether it worked).
    #[serde(default)]
    pub old_removal_tried: bool,
    /// On such a card: the public key (base64 DER) of the key certagent
    /// retired earlier that the new key replaces in its slot.
    #[serde(default)]
    pub replaced_spki: Option<String>,
    pub candidate_spki: Option<String>,
    pub csr: Option<String>,
    pub issued: Option<String>,
    pub step: Step,
    pub started: String,
    pub updated: String,
}

/// The journal file of one token.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    pub entry: Entry,
    /// Loaded by the run that wrote it, going on after the card was read
    /// again: not an interrupted attempt (nothing to say "resuming" of).
    pub(super) continued: bool,
}

pub(super) fn b64(v: &[u8]) -> String {
    B64.encode(v)
}

pub(super) fn unb64(s: &Option<String>, what: &str) -> Result<Vec<u8>, RenewalError> {
    let s = s
        .as_deref()
        .ok_or_else(|| RenewalError::Other(format!("the journal lacks the {what}")))?;
    B64.decode(s)
        .map_err(|_| RenewalError::Other(format!("the journal's {what} is corrupt")))
}

fn open_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    crate::platform::no_follow(&mut o, 0o600);
    o
}

impl Journal {
    /// The journal path for a token (one renewal in flight per token).
    pub fn path_for(state_dir: &Path, token_serial: &str) -> PathBuf {
        let safe: String = token_serial
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        state_dir.join(format!("renewal-{safe}.json"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The interrupted attempt for this token, if there is one.
    pub fn load(state_dir: &Path, token_serial: &str) -> Result<Option<Journal>, RenewalError> {
        let path = Journal::path_for(state_dir, token_serial);
        let err = |reason: String| RenewalError::Journal {
            path: path.clone(),
            reason,
        };
        let mut file = match open_options().read(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(err(format!(
                    "{e} (a journal is never read through a symbolic link)"
                )));
            }
        };
        let mut text = String::new();
        use std::io::Read;
        // A journal is a few KiB; a huge file is not one of ours.
        (&mut file)
            .take(1 << 20)
            .read_to_string(&mut text)
            .map_err(|e| err(e.to_string()))?;
        let entry: Entry = serde_json::from_str(&text)
            .map_err(|e| err(format!("unreadable ({e}); move it away to start afresh")))?;
        if entry.token_serial != token_serial {
            return Err(err(format!(
                "it is for token serial {:?}, not {token_serial:?}; move it away to start afresh",
                entry.token_serial
            )));
        }
        Ok(Some(Journal {
            path,
            entry,
            continued: false,
        }))
    }

    /// Whether an attempt is pending for this token (the file exists).
    pub fn pending(state_dir: &Path, token_serial: &str) -> bool {
        Journal::path_for(state_dir, token_serial)
            .symlink_metadata()
            .is_ok()
    }

    /// Start the journal of a new attempt. Refused if one is pending: an
    /// interrupted attempt is resumed, never overwritten.
    pub(super) fn create(state_dir: &Path, entry: Entry) -> Result<Journal, RenewalError> {
        let j = Journal {
            path: Journal::path_for(state_dir, &entry.token_serial),
            entry,
            continued: false,
        };
        if j.path.symlink_metadata().is_ok() {
            return Err(RenewalError::Journal {
                path: j.path,
                reason:
                    "an interrupted attempt is pending on this token; it is resumed, not replaced"
                        .into(),
            });
        }
        crate::config::ensure_state_dir(state_dir).map_err(|e| RenewalError::Journal {
            path: j.path.clone(),
            reason: e.to_string(),
        })?;
        j.save()?;
        crash_point(j.entry.step.as_str());
        Ok(j)
    }

    /// Write atomically and durably: temp file, fsync, rename, fsync dir.
    fn save(&self) -> Result<(), RenewalError> {
        let err = |e: std::io::Error| RenewalError::Journal {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let text =
            serde_json::to_vec_pretty(&self.entry).map_err(|e| err(std::io::Error::other(e)))?;
        crate::state_file::write(&self.path, &text, crate::state_file::Mode::Private)
            .map_err(err)?;
        Ok(())
    }

    pub(super) fn advance(&mut self, step: Step) -> Result<(), RenewalError> {
        self.entry.step = step;
        self.entry.updated = rfc3339(OffsetDateTime::now_utc());
        self.save()?;
        crash_point(step.as_str());
        Ok(())
    }

    pub(super) fn remove(self) -> Result<(), RenewalError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RenewalError::Journal {
                path: self.path,
                reason: e.to_string(),
            }),
        }
    }

    /// CKA_ID of the certificate being replaced.
    pub fn old_id(&self) -> Option<Vec<u8>> {
        self.entry
            .old_id
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .filter(|id| !id.is_empty())
    }

    /// The certificate being replaced, as the journal recorded it.
    pub fn old_cert(&self) -> Result<Option<crate::cert::Cert>, RenewalError> {
        match &self.entry.old_cert {
            None => Ok(None),
            Some(_) => {
                crate::cert::Cert::from_der(&unb64(&self.entry.old_cert, "old certificate")?)
                    .map(Some)
                    .map_err(|e| RenewalError::Other(format!("the journal's old certificate: {e}")))
            }
        }
    }
}

/// For the crash-recovery tests only: with `CERTAGENT_TEST_CRASH_AT=<point>`
/// the process aborts at that point (no destructors, like a kill).
pub(super) fn crash_point(point: &str) {
    if std::env::var("CERTAGENT_TEST_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("certagent: test crash at {point}");
        std::process::abort();
    }
}
