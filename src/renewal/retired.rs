//! The keys certagent retired on cards that cannot delete keys: which key
//! (by its public key) it left in which key slot of which card, and the
//! bank certificate that key was certified by. A renewal may generate over
//! such a key where the card's module allows it (an OpenPGP card's slot
//! 03), and never over any other key: a key certagent did not retire may be
//! the card owner's (e-mail signatures, SSH).
//!
//! The file is the user's to edit, so an entry is not taken as written:
//! it counts only with its proof, a certificate the bank's issuing CA
//! signed for exactly that public key ([`Retired::proven`]). Anyone can
//! write an entry; no one but the bank can make its proof for the owner's
//! own key. A candidate key a refused attempt leaves on a card has no such
//! proof and is never recorded: the user is told which slot it stays in.
//!
//! One small JSON file in the state directory, written atomically; nothing
//! secret in it (public keys, certificates, card serials).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::journal::{b64, unb64};
use crate::cert::Cert;
use crate::holdings::BankIssuers;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Retired {
    serial: String,
    slot: String,
    spki: String,
    /// The bank certificate (base64 DER) of the retired key.
    #[serde(default)]
    cert: Option<String>,
}

impl Retired {
    /// The entry's proof holds: its certificate is for its key and the
    /// bank's issuing CA signed it.
    fn proven(&self, bank: &BankIssuers) -> bool {
        let (Ok(spki), Ok(der)) = (
            unb64(&Some(self.spki.clone()), "retired key"),
            unb64(&self.cert, "retired key's certificate"),
        ) else {
            return false;
        };
        Cert::from_der(&der).is_ok_and(|c| c.spki_der == spki && !bank.any && bank.issued(&c))
    }
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

/// Whether certagent retired the key `spki` in `slot` of card `serial`,
/// as shown by the bank's certificate for that key (see the module).
pub fn is_retired(
    state_dir: &Path,
    serial: &str,
    slot: &[u8],
    spki: &[u8],
    bank: &BankIssuers,
) -> bool {
    let (slot, spki) = (hex::encode(slot), b64(spki));
    load(state_dir)
        .iter()
        .any(|r| r.serial == serial && r.slot == slot && r.spki == spki && r.proven(bank))
}

/// Remember that certagent retired the key in `slot` of card `serial`,
/// the key of the bank certificate `cert` (replacing what was remembered
/// of that slot).
pub fn remember(state_dir: &Path, serial: &str, slot: &[u8], cert: &Cert) -> std::io::Result<()> {
    let entry = Retired {
        serial: serial.to_string(),
        slot: hex::encode(slot),
        spki: b64(&cert.spki_der),
        cert: Some(b64(&cert.der)),
    };
    let mut all = load(state_dir);
    all.retain(|r| !(r.serial == entry.serial && r.slot == entry.slot));
    all.push(entry);
    crate::state_file::write(
        &file(state_dir),
        &serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?,
        crate::state_file::Mode::Private,
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
    crate::state_file::write(
        &replaced_file(state_dir),
        &serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?,
        crate::state_file::Mode::Private,
    )
}

/// The public key a journal says the new key replaces, if any.
pub(super) fn replaced(entry: &super::journal::Entry) -> Option<Vec<u8>> {
    entry
        .replaced_spki
        .as_ref()
        .and_then(|_| unb64(&entry.replaced_spki, "replaced key").ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh P-256 public key (DER SubjectPublicKeyInfo).
    fn p256_spki() -> Vec<u8> {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key");
        let mut spki =
            hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").expect("hex");
        spki.extend_from_slice(kp.public_key().as_ref());
        spki
    }

    /// A bank CA and a certificate from it for a fresh key, and one for
    /// another key: (issuers, certificate, another certificate).
    fn bank_and_certs() -> (BankIssuers, Cert, Cert) {
        let dir = tempfile::tempdir().expect("dir");
        certagent_bank::init(dir.path()).expect("bank");
        let pem = std::fs::read(dir.path().join("ca.pem")).expect("ca.pem");
        let (_, ca) = der::pem::decode_vec(&pem).expect("pem");
        let issue = || {
            certagent_bank::issue(dir.path(), "CN=Ana Novak,O=Demo", &p256_spki(), 30)
                .expect("issue")
        };
        let (a, b) = (issue(), issue());
        (
            BankIssuers {
                ca_certs: vec![ca],
                ..BankIssuers::default()
            },
            Cert::from_der(&a).expect("a"),
            Cert::from_der(&b).expect("b"),
        )
    }

    #[test]
    fn a_retired_key_counts_only_with_the_banks_certificate_for_it() {
        let dir = tempfile::tempdir().expect("dir");
        let (bank, cert, other) = bank_and_certs();
        let key = cert.spki_der.clone();
        assert!(!is_retired(dir.path(), "c0de", &[3], &key, &bank));
        remember(dir.path(), "c0de", &[3], &cert).expect("write");
        assert!(is_retired(dir.path(), "c0de", &[3], &key, &bank));
        assert!(!is_retired(dir.path(), "c0de", &[1], &key, &bank));
        assert!(!is_retired(dir.path(), "beef", &[3], &key, &bank));
        assert!(!is_retired(
            dir.path(),
            "c0de",
            &[3],
            &other.spki_der,
            &bank
        ));
        // Without the bank's CA known, nothing is proven.
        assert!(!is_retired(
            dir.path(),
            "c0de",
            &[3],
            &key,
            &BankIssuers::default()
        ));
        // An entry written by hand for another key, with a certificate
        // that is not for it, or with none: not retired.
        let forged = serde_json::json!([
            {"serial": "c0de", "slot": "03", "spki": b64(&other.spki_der), "cert": b64(&cert.der)},
            {"serial": "c0de", "slot": "01", "spki": b64(&other.spki_der)},
        ]);
        std::fs::write(file(dir.path()), forged.to_string()).expect("forge");
        assert!(!is_retired(
            dir.path(),
            "c0de",
            &[3],
            &other.spki_der,
            &bank
        ));
        assert!(!is_retired(
            dir.path(),
            "c0de",
            &[1],
            &other.spki_der,
            &bank
        ));
        // A certificate for that key by another CA proves nothing either.
        let (_, stranger, _) = bank_and_certs();
        remember(dir.path(), "c0de", &[3], &stranger).expect("write");
        assert!(!is_retired(
            dir.path(),
            "c0de",
            &[3],
            &stranger.spki_der,
            &bank
        ));
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
