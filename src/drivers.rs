//! PKCS#11 module profiles: what this project knows about each token family,
//! kept as data in `drivers/*.toml`.
//!
//! The profiles in the source tree are compiled in. A user profile folder
//! (`drivers/` beside the configuration file, then `certagent/drivers/` in
//! the XDG config directory) can add profiles or override one by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::alg::{KeyKind, SignScheme};

/// The profiles shipped with certagent, by file.
const BUILTIN: &[(&str, &str)] = &[
    ("softhsm2.toml", include_str!("../drivers/softhsm2.toml")),
    ("kryoptic.toml", include_str!("../drivers/kryoptic.toml")),
    ("opensc.toml", include_str!("../drivers/opensc.toml")),
    ("ykcs11.toml", include_str!("../drivers/ykcs11.toml")),
    ("etoken.toml", include_str!("../drivers/etoken.toml")),
    (
        "p11-kit-proxy.toml",
        include_str!("../drivers/p11-kit-proxy.toml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("driver profile {file}: {message}")]
    Invalid { file: String, message: String },
    #[error("cannot read driver profile folder {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// One module profile.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The name used in `[token] module`.
    pub name: String,
    pub description: String,
    /// How to install the module, shown when it cannot be found.
    pub install: String,
    #[serde(default)]
    pub paths: Paths,
    #[serde(default)]
    pub detect: Detect,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub quirks: Quirks,
    /// Card families whose fixed key slots certagent knows how to renew
    /// into (`[[cards]]`); any other fixed-slot token is read and used for
    /// logon, never renewed.
    #[serde(default)]
    pub cards: Vec<CardFamily>,
}

/// A family of cards with key slots the card fixes, as the module shows
/// it, and how a renewal works on it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CardFamily {
    /// The family's name, for messages.
    pub name: String,
    /// Token labels of the family begin with this.
    pub label_prefix: String,
    /// The CKA_IDs (hex) of the key slots that sign, in the order a
    /// renewal tries them; a renewal generates into a free one.
    pub signing_slots: Vec<String>,
    /// Key generation and certificate writes need the card's admin PIN
    /// (the PKCS#11 SO login) rather than the user PIN.
    #[serde(default)]
    pub admin_pin_for_keys: bool,
    /// Deleting a key reports success and leaves it on the card.
    #[serde(default)]
    pub keys_stay: bool,
    /// Which of the card's tokens (by label) holds each key slot, where
    /// the module shows one card as several tokens.
    #[serde(default)]
    pub key_tokens: BTreeMap<String, String>,
    /// Deleting another slot's certificate erases this slot's (OpenSC
    /// 0.23 on OpenPGP cards: deleting certificate 01 or 02 erases 03):
    /// a renewal into this slot leaves the old certificate in place.
    #[serde(default)]
    pub certificate_deletes_erase: Option<String>,
    /// A key generated without a CKA_ID lands in this slot, replacing the
    /// key there (OpenSC on OpenPGP cards: slot 03); an explicit id into
    /// an occupied slot is refused. A renewal uses it only over a key
    /// certagent itself retired.
    #[serde(default)]
    pub overwrite_without_id: Option<String>,
}

impl CardFamily {
    /// The signing slots' CKA_IDs (entries that are not hex are skipped;
    /// [`Profile::parse`] refuses them).
    pub fn slot_ids(&self) -> Vec<Vec<u8>> {
        self.signing_slots
            .iter()
            .filter_map(|s| hex::decode(s.trim()).ok())
            .filter(|id| !id.is_empty())
            .collect()
    }
}

/// Where the module library lives on each operating system, in search order.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    #[serde(default)]
    pub linux: Vec<String>,
    #[serde(default)]
    pub windows: Vec<String>,
    #[serde(default)]
    pub macos: Vec<String>,
}

/// How to recognise the module when it was given as a path.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    /// `manufacturerID` of `C_GetInfo`.
    #[serde(default)]
    pub library_manufacturer: Vec<String>,
    /// `manufacturerID` of `C_GetTokenInfo`.
    #[serde(default)]
    pub token_manufacturer: Vec<String>,
}

/// What is known to work with this module family.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Key types that generate on the token (`rsa-2048`, `rsa-3072`, `ec-p256`).
    #[serde(default)]
    pub key_types: Vec<String>,
    /// Signature schemes known to work (`rsa-pkcs1-sha256`, `rsa-pss-sha256`,
    /// `ecdsa-p256-sha256`). A scheme also needs the token's mechanism.
    #[serde(default)]
    pub signing: Vec<String>,
    /// Whether C_WaitForSlotEvent reports insertion and removal: `true`, the
    /// agent waits on it; `false`, it polls the slot list instead; absent,
    /// it tries and falls back to polling.
    #[serde(default)]
    pub slot_events: Option<bool>,
    /// Whether the module's tokens come and go (hardware in a reader).
    /// `false` for software tokens (files): the agent does not watch the
    /// slot list at all, and an idle agent makes no PKCS#11 call; a token
    /// deleted or re-created by a tool is met when it is next used.
    /// Absent: `true`.
    #[serde(default)]
    pub removable: Option<bool>,
}

/// Known deviations of the module from what PKCS#11 promises.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Quirks {
    /// ECDSA is done as CKM_ECDSA over a hash computed on the host.
    #[serde(default)]
    pub ecdsa_hash_on_host: bool,
    /// Slot ids are not stable; tokens are always found by label or serial.
    #[serde(default)]
    pub unstable_slot_ids: bool,
    /// Signature keys need a context-specific login before each signature.
    #[serde(default)]
    pub context_specific_login: bool,
    /// Public key objects may be missing; take the key from the certificate.
    #[serde(default)]
    pub public_key_from_certificate: bool,
    /// CKA_ID of keys is fixed by the module and cannot be changed.
    #[serde(default)]
    pub fixed_key_ids: bool,
    /// Token models (`C_GetTokenInfo` model) of this module whose keys live
    /// in slots the card fixes (OpenSC's emulated OpenPGP and PIV cards:
    /// "PKCS#15 emulated"), where `fixed_key_ids` is not true of every token.
    #[serde(default)]
    pub fixed_key_id_models: Vec<String>,
}

impl Profile {
    /// Parse and check one profile file's `text` (`file` names it in errors).
    #[doc(hidden)]
    pub fn parse(file: &str, text: &str) -> Result<Profile, DriverError> {
        let invalid = |message: String| DriverError::Invalid {
            file: file.to_string(),
            message,
        };
        let p: Profile = toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        if p.name.is_empty() || p.name.contains(['/', '\\']) {
            return Err(invalid(format!("name {:?} is not a profile name", p.name)));
        }
        for k in &p.capabilities.key_types {
            k.parse::<KeyKind>()
                .map_err(|e| invalid(format!("capabilities.key_types: {e}")))?;
        }
        for s in &p.capabilities.signing {
            s.parse::<SignScheme>()
                .map_err(|e| invalid(format!("capabilities.signing: {e}")))?;
        }
        for c in &p.cards {
            if c.label_prefix.trim().is_empty() {
                return Err(invalid(format!(
                    "cards {:?}: label_prefix is empty",
                    c.name
                )));
            }
            if c.signing_slots.is_empty()
                || c.signing_slots
                    .iter()
                    .any(|s| hex::decode(s.trim()).map_or(true, |id| id.is_empty()))
            {
                return Err(invalid(format!(
                    "cards {:?}: signing_slots must be CKA_IDs in hex, like \"03\"",
                    c.name
                )));
            }
        }
        Ok(p)
    }

    /// The library paths for the operating system this runs on.
    pub fn paths_for_this_os(&self) -> &[String] {
        if cfg!(target_os = "windows") {
            &self.paths.windows
        } else if cfg!(target_os = "macos") {
            &self.paths.macos
        } else {
            &self.paths.linux
        }
    }

    /// Whether this profile lists `scheme` as working.
    pub fn signs_with(&self, scheme: SignScheme) -> bool {
        self.capabilities
            .signing
            .iter()
            .any(|s| s.parse::<SignScheme>().ok() == Some(scheme))
    }
}

/// All known profiles, by name.
#[derive(Debug, Clone, Default)]
pub struct Drivers {
    profiles: BTreeMap<String, Profile>,
}

impl Drivers {
    /// The compiled-in profiles only.
    pub fn builtin() -> Drivers {
        let mut d = Drivers::default();
        for (file, text) in BUILTIN {
            // The built-in files are checked by the tests below; a failure is a build defect.
            match Profile::parse(file, text) {
                Ok(p) => {
                    d.profiles.insert(p.name.clone(), p);
                }
                Err(e) => unreachable!("built-in {e}"),
            }
        }
        d
    }

    /// The compiled-in profiles, then each existing folder's `*.toml` in order,
    /// a later profile replacing an earlier one of the same name.
    pub fn load(user_dirs: &[PathBuf]) -> Result<Drivers, DriverError> {
        let mut d = Drivers::builtin();
        for dir in user_dirs {
            if !dir.is_dir() {
                continue;
            }
            let read_dir = |source| DriverError::ReadDir {
                dir: dir.clone(),
                source,
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(read_dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            for file in files {
                let name = file.display().to_string();
                let text = std::fs::read_to_string(&file).map_err(|e| DriverError::Invalid {
                    file: name.clone(),
                    message: e.to_string(),
                })?;
                let p = Profile::parse(&name, &text)?;
                d.profiles.insert(p.name.clone(), p);
            }
        }
        Ok(d)
    }

    /// The user profile folders for a configuration living in `config_dir`.
    pub fn user_dirs(config_dir: Option<&Path>) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(d) = directories::ProjectDirs::from("", "", "certagent") {
            dirs.push(d.config_dir().join("drivers"));
        }
        if let Some(c) = config_dir {
            let d = c.join("drivers");
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        dirs
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    /// The profile listing `path` for this OS, compared by the file itself
    /// where it exists (so symlinks and multiarch copies match).
    pub fn by_path(&self, path: &Path) -> Option<&Profile> {
        let wanted = std::fs::canonicalize(path).ok();
        self.iter().find(|p| {
            p.paths_for_this_os().iter().any(|cand| {
                Path::new(cand) == path
                    || (wanted.is_some() && std::fs::canonicalize(cand).ok() == wanted)
            })
        })
    }

    /// The profile whose detection strings match the library's manufacturer.
    pub fn by_library_manufacturer(&self, manufacturer: &str) -> Option<&Profile> {
        let m = manufacturer.trim();
        self.iter()
            .find(|p| p.detect.library_manufacturer.iter().any(|x| x == m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse_and_are_named_after_their_file() {
        for (file, text) in BUILTIN {
            let p = Profile::parse(file, text).unwrap();
            assert_eq!(format!("{}.toml", p.name), *file);
            assert!(!p.paths.linux.is_empty() || !p.paths.macos.is_empty());
            assert!(!p.install.is_empty());
        }
        let d = Drivers::builtin();
        for name in [
            "softhsm2",
            "kryoptic",
            "opensc",
            "ykcs11",
            "etoken",
            "p11-kit-proxy",
        ] {
            assert!(d.get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn user_folder_adds_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("softhsm2.toml"),
            "name = \"softhsm2\"\ndescription = \"mine\"\ninstall = \"x\"\n[paths]\nlinux = [\"/opt/x.so\"]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("acme.toml"),
            "name = \"acme\"\ndescription = \"Acme\"\ninstall = \"y\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("README.txt"), "ignored").unwrap();
        let d = Drivers::load(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(d.get("softhsm2").unwrap().description, "mine");
        assert!(d.get("acme").is_some());
        assert!(d.get("opensc").is_some());
    }

    #[test]
    fn a_bad_user_profile_names_its_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            "name = \"bad\"\ndescription = \"d\"\ninstall = \"i\"\n[quirks]\nfrobnicate = true\n",
        )
        .unwrap();
        let e = Drivers::load(&[dir.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.toml") && e.contains("frobnicate"), "{e}");
        std::fs::write(
            dir.path().join("bad.toml"),
            "name = \"bad\"\ndescription = \"d\"\ninstall = \"i\"\n[capabilities]\nkey_types = [\"rsa-512\"]\n",
        )
        .unwrap();
        let e = Drivers::load(&[dir.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("rsa-512"), "{e}");
    }

    #[test]
    fn detection_by_library_manufacturer() {
        let d = Drivers::builtin();
        assert_eq!(
            d.by_library_manufacturer("SoftHSM").unwrap().name,
            "softhsm2"
        );
        assert_eq!(
            d.by_library_manufacturer("PKCS#11 Kit").unwrap().name,
            "p11-kit-proxy"
        );
        assert_eq!(
            d.by_library_manufacturer("Kryoptic").unwrap().name,
            "kryoptic"
        );
        assert!(d.by_library_manufacturer("Nobody").is_none());
    }
}
