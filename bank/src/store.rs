//! The bank directory: keys, certificates and the JSON state, written
//! atomically so a crash or a concurrent reader never sees half a file.
//!
//! The state is read afresh for every operation and written back before
//! the operation answers. That is what lets `certagent-bank add-user` (or
//! a test calling [`super::add_user`]) change a bank that is serving: the
//! server holds no copy that could go stale. Within one process every
//! read-modify-write runs under [`lock`]; the bank assumes one operator,
//! so there is no lock across processes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use der::Encode;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::BankError;

/// The files of a bank directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
        }
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    /// The issuing CA certificate (PEM): what clients trust for their certificates.
    pub fn ca_cert(&self) -> PathBuf {
        self.file("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.file("ca-key.pem")
    }
    /// The TLS trust anchor (PEM) that EST clients pin.
    pub fn tls_roots(&self) -> PathBuf {
        self.file("tls-roots.pem")
    }
    /// The TLS CA's key, which `init` no longer writes (nothing needs it
    /// after the server certificate is signed). A bank made by an earlier
    /// version may still hold one; `serve` warns about it.
    pub fn tls_ca_key(&self) -> PathBuf {
        self.file("tls-ca-key.pem")
    }
    pub fn tls_cert(&self) -> PathBuf {
        self.file("tls-server.pem")
    }
    pub fn tls_key(&self) -> PathBuf {
        self.file("tls-server-key.pem")
    }
    pub fn users(&self) -> PathBuf {
        self.file("users.json")
    }
    pub fn issued(&self) -> PathBuf {
        self.file("issued.json")
    }
    pub fn log(&self) -> PathBuf {
        self.file("requests.log")
    }

    /// Fails unless `init` made this directory a bank.
    pub fn require_bank(&self) -> Result<(), BankError> {
        if self.ca_cert().exists() && self.ca_key().exists() && self.users().exists() {
            Ok(())
        } else {
            Err(BankError::NotABank(self.dir.clone()))
        }
    }
}

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// As registered, RFC 4514.
    pub subject: String,
    /// The same name DER-encoded, hex: what requests are compared with.
    pub subject_der: String,
    /// SHA-256 (hex) of the current one-time password; the password itself
    /// is shown once, to the operator, and never stored.
    pub otp_sha256: String,
    pub otp_used: bool,
    /// The operator re-issued: one more `simpleenroll` is allowed whatever
    /// the state of the current certificate.
    pub reissued: bool,
    /// Serial (upper-case hex) of the user's current certificate.
    pub current_serial: Option<String>,
}

/// One certificate the bank issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Upper-case hex, as `openssl x509 -serial` and [`certagent::cert::Cert`] print it.
    pub serial: String,
    pub subject: String,
    pub subject_der: String,
    /// SHA-256 (hex) of the certified SubjectPublicKeyInfo: no key is certified twice.
    pub spki_sha256: String,
    /// SHA-256 (hex) of the certificate: a presented certificate must be this one.
    pub cert_sha256: String,
    pub not_before: String,
    pub not_after: String,
    pub issued_at: String,
    /// `issue`, `simpleenroll` or `simplereenroll`.
    pub how: String,
    pub user: Option<String>,
    /// The serial of the certificate that replaced this one, if any.
    pub replaced_by: Option<String>,
}

impl Record {
    pub fn not_before(&self) -> Result<OffsetDateTime, BankError> {
        parse_time(&self.not_before, &self.serial)
    }
    pub fn not_after(&self) -> Result<OffsetDateTime, BankError> {
        parse_time(&self.not_after, &self.serial)
    }
}

fn parse_time(s: &str, serial: &str) -> Result<OffsetDateTime, BankError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| BankError::Corrupt {
        path: PathBuf::from("issued.json"),
        reason: format!("certificate {serial}: bad time {s:?}: {e}"),
    })
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct UsersFile {
    users: BTreeMap<String, User>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IssuedFile {
    certificates: Vec<Record>,
}

/// Users and issued certificates, as loaded from and saved to the bank directory.
#[derive(Debug, Default)]
pub struct State {
    pub users: BTreeMap<String, User>,
    pub issued: Vec<Record>,
}

impl State {
    pub fn load(paths: &Paths) -> Result<State, BankError> {
        paths.require_bank()?;
        let users: UsersFile = read_json(&paths.users())?;
        let issued: IssuedFile = if paths.issued().exists() {
            read_json(&paths.issued())?
        } else {
            IssuedFile::default()
        };
        Ok(State {
            users: users.users,
            issued: issued.certificates,
        })
    }

    pub fn save(&self, paths: &Paths) -> Result<(), BankError> {
        let users = UsersFile {
            users: self.users.clone(),
        };
        let issued = IssuedFile {
            certificates: self.issued.clone(),
        };
        write_json(&paths.issued(), &issued)?;
        write_json(&paths.users(), &users)
    }

    pub fn record(&self, serial: &str) -> Option<&Record> {
        self.issued.iter().find(|r| r.serial == serial)
    }

    pub fn serial_taken(&self, serial: &str) -> bool {
        self.record(serial).is_some()
    }

    /// Whether any certificate of this bank certified this key.
    pub fn key_certified(&self, spki_sha256: &str) -> bool {
        self.issued.iter().any(|r| r.spki_sha256 == spki_sha256)
    }

    /// The user registered with a name equal to `subject_der`, if any.
    pub fn user_with_subject(&self, subject_der: &[u8]) -> Option<&str> {
        self.users
            .iter()
            .find(|(_, u)| {
                hex::decode(&u.subject_der).is_ok_and(|d| super::csr::same_name(&d, subject_der))
            })
            .map(|(id, _)| id.as_str())
    }

    /// Add a newly issued certificate. It replaces its holder's current one:
    /// the user's, or for a certificate of no user, any unreplaced
    /// certificate with the same subject. Only the newest can renew.
    pub fn add_certificate(&mut self, new: Record) {
        for old in self.issued.iter_mut().filter(|r| r.replaced_by.is_none()) {
            let same_holder = match (&new.user, &old.user) {
                (Some(a), Some(b)) => a == b,
                (None, None) => old.subject_der == new.subject_der,
                _ => false,
            };
            if same_holder {
                old.replaced_by = Some(new.serial.clone());
            }
        }
        if let Some(user) = new.user.as_ref().and_then(|u| self.users.get_mut(u)) {
            user.current_serial = Some(new.serial.clone());
        }
        self.issued.push(new);
    }

    /// A new user takes over the newest unreplaced certificate of no user
    /// with their subject, so `issue` before `add_user` works as after.
    pub fn adopt_certificate(&mut self, user_id: &str) {
        let Some(user) = self.users.get(user_id) else {
            return;
        };
        let Ok(subject) = hex::decode(&user.subject_der) else {
            return;
        };
        let found = self.issued.iter_mut().rev().find(|r| {
            r.user.is_none()
                && r.replaced_by.is_none()
                && hex::decode(&r.subject_der).is_ok_and(|d| super::csr::same_name(&d, &subject))
        });
        if let Some(record) = found {
            record.user = Some(user_id.to_string());
            let serial = record.serial.clone();
            if let Some(user) = self.users.get_mut(user_id) {
                user.current_serial = Some(serial);
            }
        }
    }
}

/// A record for a certificate just built.
pub fn record_for(cert_der: &[u8], how: &str, user: Option<&str>) -> Result<Record, BankError> {
    let cert =
        certagent::cert::Cert::from_der(cert_der).map_err(|e| BankError::Build(e.to_string()))?;
    let subject_der = cert
        .cert
        .tbs_certificate()
        .subject()
        .to_der()
        .map_err(|e| BankError::Build(e.to_string()))?;
    Ok(Record {
        serial: cert.serial.clone(),
        subject: cert.subject.clone(),
        subject_der: hex::encode(subject_der),
        spki_sha256: sha256_hex(&cert.spki_der),
        cert_sha256: sha256_hex(cert_der),
        not_before: certagent::cert::rfc3339(cert.not_before),
        not_after: certagent::cert::rfc3339(cert.not_after),
        issued_at: certagent::cert::rfc3339(OffsetDateTime::now_utc()),
        how: how.to_string(),
        user: user.map(str::to_string),
        replaced_by: None,
    })
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Serialises every read-modify-write of a bank's state in this process.
static STATE_LOCK: Mutex<()> = Mutex::new(());

pub fn lock() -> MutexGuard<'static, ()> {
    // A panic while holding the lock leaves the files as they were (writes
    // are atomic), so the state is still consistent: carry on.
    STATE_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The one-time password alphabet: no 0/O, 1/I/L, so it can be read aloud
/// or typed from a letter.
const OTP_ALPHABET: &[u8; 32] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789#";
pub const OTP_LEN: usize = 12;

/// A fresh one-time password: 12 characters, 60 bits.
pub fn new_otp() -> Result<String, BankError> {
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(OTP_LEN);
    while out.len() < OTP_LEN {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes)
            .map_err(|_| BankError::Crypto("the random generator failed".into()))?;
        // 31 usable symbols: drop the last (the '#' filler) to stay unbiased.
        for b in bytes {
            let c = OTP_ALPHABET
                .get(usize::from(b & 31))
                .copied()
                .unwrap_or(b'#');
            if c != b'#' && out.len() < OTP_LEN {
                out.push(char::from(c));
            }
        }
    }
    Ok(out)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, BankError> {
    let text = fs::read_to_string(path).map_err(|e| BankError::io("read", path, e))?;
    serde_json::from_str(&text).map_err(|e| BankError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), BankError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| BankError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes(), 0o600)
}

/// Write via a temporary file in the same directory and rename it over
/// `path`: readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), BankError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = with_mode(
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
            mode,
        )
        .open(&tmp)?;
        // `mode` only applies to a new file; a leftover temp file keeps its own.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        BankError::io("write", path, e)
    })
}

/// The Unix mode a new file gets; on Windows the directory's ACL (the
/// bank's `--dir` under the user's profile) decides who reads it.
fn with_mode(o: &mut fs::OpenOptions, mode: u32) -> &mut fs::OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        o
    }
}

/// Write a file that must not exist yet (keys, certificates at `init`).
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), BankError> {
    let mut f = with_mode(fs::OpenOptions::new().write(true).create_new(true), mode)
        .open(path)
        .map_err(|e| BankError::io("create", path, e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| BankError::io("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otps_are_twelve_unambiguous_characters() {
        let a = new_otp().unwrap();
        let b = new_otp().unwrap();
        assert_ne!(a, b);
        for otp in [a, b] {
            assert_eq!(otp.len(), OTP_LEN);
            assert!(
                otp.bytes().all(|c| OTP_ALPHABET[..31].contains(&c)),
                "{otp}"
            );
            assert!(!otp.contains(['0', 'O', '1', 'I', 'L']));
        }
    }

    #[test]
    fn atomic_write_replaces_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_new(&p, b"three", 0o600).is_err());
    }
}
