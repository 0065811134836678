//! The keys certagent retired on cards that cannot delete keys: which key
//! (by its public key) it left in which key slot of which card. A renewal
//! may generate over such a key where the card's module allows it (an
//! OpenPGP card's slot 03), and never over any other key: a key certagent
//! did not retire may be the card owner's (e-mail signatures, SSH).
//!
//! One small JSON file in the state directory, written atomically; nothing
//! secret in it (public keys, card serials).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::journal::{b64, unb64};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Retired {
    serial: String,
    slot: String,
    spki: String,
}

fn file(state_dir: &Path) -> PathBuf {
    state_dir.join("retired-card-keys.json")
}

fn load(state_dir: &Path) -> Vec<Retired> {
    std::fs::read(file(state_dir))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

/// Whether certagent retired the key `spki` in `slot` of card `serial`.
pub fn is_retired(state_dir: &Path, serial: &str, slot: &[u8], spki: &[u8]) -> bool {
    let (slot, spki) = (hex::encode(slot), b64(spki));
    load(state_dir)
        .iter()
        .any(|r| r.serial == serial && r.slot == slot && r.spki == spki)
}

/// Remember that certagent retired the key `spki` in `slot` of card
/// `serial` (replacing what was remembered of that slot).
pub fn remember(state_dir: &Path, serial: &str, slot: &[u8], spki: &[u8]) -> std::io::Result<()> {
    let entry = Retired {
        serial: serial.to_string(),
        slot: hex::encode(slot),
        spki: b64(spki),
    };
    let mut all = load(state_dir);
    all.retain(|r| !(r.serial == entry.serial && r.slot == entry.slot));
    all.push(entry);
    super::write_private(
        &file(state_dir),
        &serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?,
    )
}

fn replaced_file(state_dir: &Path) -> PathBuf {
    state_dir.join("replaced-certificates.json")
}

/// SHA-256 (hex) of the bank certificates certagent replaced on a card
/// that could not remove them.
pub fn replaced_certificates(state_dir: &Path) -> Vec<String> {
    std::fs::read(replaced_file(state_dir))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

/// Record that certagent replaced the certificate `der` but the card kept
/// it: from now on it is listed apart, never used or renewed.
pub fn remember_replaced(state_dir: &Path, der: &[u8]) -> std::io::Result<()> {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(der));
    let mut all = replaced_certificates(state_dir);
    if !all.contains(&digest) {
        all.push(digest);
    }
    super::write_private(
        &replaced_file(state_dir),
        &serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?,
    )
}

/// The public key a journal says the new key replaces, if any.
pub(super) fn replaced(entry: &super::Entry) -> Option<Vec<u8>> {
    entry
        .replaced_spki
        .as_ref()
        .and_then(|_| unb64(&entry.replaced_spki, "replaced key").ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_key_is_known_by_card_slot_and_key() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(!is_retired(dir.path(), "c0de", &[3], b"key"));
        remember(dir.path(), "c0de", &[3], b"key").expect("write");
        assert!(is_retired(dir.path(), "c0de", &[3], b"key"));
        assert!(!is_retired(dir.path(), "c0de", &[1], b"key"));
        assert!(!is_retired(dir.path(), "beef", &[3], b"key"));
        assert!(!is_retired(dir.path(), "c0de", &[3], b"other"));
        remember(dir.path(), "c0de", &[3], b"newer").expect("write");
        assert!(!is_retired(dir.path(), "c0de", &[3], b"key"));
        assert!(is_retired(dir.path(), "c0de", &[3], b"newer"));
    }

    #[test]
    fn a_replaced_certificate_is_known_by_its_digest() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(replaced_certificates(dir.path()).is_empty());
        remember_replaced(dir.path(), b"old").expect("write");
        remember_replaced(dir.path(), b"old").expect("write");
        assert_eq!(replaced_certificates(dir.path()).len(), 1);
    }
}
