//! The reference bank: a small real CA and EST (RFC 7030) server for testers
//! and the project's own tests. It enforces the bank's rules on its side too,
//! so the client is tested against refusals, not only against successes.
//!
//! It is a package of its own (`certagent-bank`: this library and the
//! program of that name), apart from the agent. It uses the agent's library
//! for what client and bank must agree on: PKCS#7 certs-only
//! ([`certagent::pkcs7`]), certificate facts and signature checks
//! ([`certagent::cert`]), the lifecycle rules ([`certagent::policy`]) and the
//! key and signature types ([`certagent::token`]); the agent never links
//! the bank (`certagent demo` runs the program).
//!
//! A bank is a directory (see [`store::Paths`]):
//! `ca.pem` is the issuing CA, `tls-roots.pem` the TLS trust anchor an EST
//! client pins, `users.json` and `issued.json` the state, `requests.log`
//! one JSON line per request. The operator's side is [`init`], [`add_user`],
//! [`reissue`] and [`issue`]; the client's side is [`serve`].
//!
//! The same server offers web logon with the token ([`logon`]) and the
//! demo pages that drive it through the certagent agent.
//!
//! The rules ([`rules`]): `simplereenroll` with the current certificate
//! inside the renewal window; `simpleenroll` with a one-time password for a
//! first certificate, after expiry within the grace period, or after the
//! operator's [`reissue`]; never the same key twice.

#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod ca;
pub mod csr;
mod error;
pub mod est;
mod http;
pub mod logon;
mod pages;
pub mod rules;
pub mod store;

use std::path::Path;

use der::{Decode, Encode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use spki::SubjectPublicKeyInfoOwned;
use time::{Duration, OffsetDateTime};

use certagent::token::PublicKeyAlg;

pub use error::BankError;
pub use est::{DEFAULT_AGENT_URL, RunningBank, ServeOptions, serve};

use ca::{Ca, ClientCert};
use store::{Paths, State, User};

/// Create a bank in `dir` (created if missing): a new issuing CA, and a
/// separate TLS CA with a server certificate for 127.0.0.1 and localhost.
/// Refuses to touch a directory that already holds a bank.
///
/// The TLS CA (`tls-roots.pem`, which testers trust in a browser) is
/// name-constrained to localhost and 127.0.0.1, and its private key is
/// never written: it signs the server certificate here and is dropped, so
/// nothing on disk can make another certificate that browser trusts. A new
/// server certificate means a new bank directory (`init` again).
pub fn init(dir: &Path) -> Result<(), BankError> {
    let paths = Paths::new(dir);
    for existing in [
        paths.ca_cert(),
        paths.ca_key(),
        paths.users(),
        paths.tls_roots(),
    ] {
        if existing.exists() {
            return Err(BankError::Exists(dir.to_path_buf()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| BankError::io("create", dir, e))?;
    let _guard = store::lock();
    let (issuing, issuing_key) = Ca::create(ca::ISSUING_CA_NAME)?;
    // The TLS CA's key is used once, here, and goes with `tls_ca`.
    let (tls_ca, _never_stored) = Ca::create_tls(ca::TLS_CA_NAME)?;
    let (server_cert, server_key) = tls_ca.issue_tls_server()?;
    let files: [(std::path::PathBuf, &str, &[u8], u32); 5] = [
        (paths.ca_key(), "PRIVATE KEY", &issuing_key, 0o600),
        (paths.ca_cert(), "CERTIFICATE", &issuing.cert_der, 0o644),
        (paths.tls_roots(), "CERTIFICATE", &tls_ca.cert_der, 0o644),
        (paths.tls_key(), "PRIVATE KEY", &server_key, 0o600),
        (paths.tls_cert(), "CERTIFICATE", &server_cert, 0o644),
    ];
    for (path, label, der, mode) in files {
        store::write_new(&path, ca::pem(label, der)?.as_bytes(), mode)?;
    }
    // users.json last: its presence is what makes the directory a bank.
    State::default().save(&paths)
}

/// Register `user` with `subject` (RFC 4514, e.g. "CN=Alice,O=Bank") and
/// return their first one-time password. If the bank already issued a
/// certificate for that subject (with [`issue`]), it becomes theirs.
pub fn add_user(dir: &Path, user: &str, subject: &str) -> Result<String, BankError> {
    check_user_id(user)?;
    let name = ca::parse_name(subject)?;
    let subject_der = name.to_der().map_err(|e| BankError::BadSubject {
        subject: subject.to_string(),
        reason: e.to_string(),
    })?;
    let paths = Paths::new(dir);
    let _guard = store::lock();
    let mut state = State::load(&paths)?;
    if state.users.contains_key(user) {
        return Err(BankError::UserExists(user.to_string()));
    }
    if let Some(owner) = state.user_with_subject(&subject_der) {
        return Err(BankError::SubjectTaken {
            subject: subject.to_string(),
            user: owner.to_string(),
        });
    }
    let otp = store::new_otp()?;
    state.users.insert(
        user.to_string(),
        User {
            subject: name.to_string(),
            subject_der: hex::encode(&subject_der),
            otp_sha256: store::sha256_hex(otp.as_bytes()),
            otp_used: false,
            reissued: false,
            current_serial: None,
        },
    );
    state.adopt_certificate(user);
    state.save(&paths)?;
    Ok(otp)
}

/// The operator's re-issue after the grace period: one more `simpleenroll`
/// is allowed whatever the user's certificate state is. Returns the new
/// one-time password (the old one stops working).
pub fn reissue(dir: &Path, user: &str) -> Result<String, BankError> {
    let paths = Paths::new(dir);
    let _guard = store::lock();
    let mut state = State::load(&paths)?;
    let entry = state
        .users
        .get_mut(user)
        .ok_or_else(|| BankError::UnknownUser(user.to_string()))?;
    let otp = store::new_otp()?;
    entry.otp_sha256 = store::sha256_hex(otp.as_bytes());
    entry.otp_used = false;
    entry.reissued = true;
    state.save(&paths)?;
    Ok(otp)
}

/// For test set-ups: a client certificate (DER) for a bare public key
/// (DER SubjectPublicKeyInfo) that expires in `days_left` days (negative:
/// expired that long ago), valid for 365 days before that. It is recorded
/// as issued; if a registered user has this subject it becomes their
/// current certificate. Unlike enrolment, a key may be certified again here,
/// so a test can move one key through several states.
pub fn issue(
    dir: &Path,
    subject: &str,
    spki_der: &[u8],
    days_left: i64,
) -> Result<Vec<u8>, BankError> {
    let name = ca::parse_name(subject)?;
    let spki = checked_spki(spki_der)?;
    if days_left.abs() > 36_500 {
        return Err(BankError::Build(format!(
            "{days_left} days is out of range"
        )));
    }
    let paths = Paths::new(dir);
    let _guard = store::lock();
    let mut state = State::load(&paths)?;
    let issuing = load_issuing_ca(&paths)?;
    let subject_der = name.to_der().map_err(|e| BankError::Build(e.to_string()))?;
    let user = state.user_with_subject(&subject_der).map(str::to_string);
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    let not_after = now + Duration::days(days_left);
    let der = issuing.issue_client(&ClientCert {
        subject: name,
        spki,
        serial: ca::random_serial(|s| state.serial_taken(s))?,
        not_before: not_after - Duration::days(ca::CLIENT_DAYS),
        not_after,
        san: None,
    })?;
    state.add_certificate(store::record_for(&der, "issue", user.as_deref())?);
    state.save(&paths)?;
    Ok(der)
}

/// Parse a public key, accepting only what the bank certifies.
fn checked_spki(der: &[u8]) -> Result<SubjectPublicKeyInfoOwned, BankError> {
    let spki = SubjectPublicKeyInfoOwned::from_der(der)
        .map_err(|e| BankError::BadKey(format!("not a DER SubjectPublicKeyInfo: {e}")))?;
    match certagent::token::spki_alg(&spki) {
        PublicKeyAlg::Rsa { bits } if bits >= 2048 => Ok(spki),
        PublicKeyAlg::EcP256 => Ok(spki),
        other => Err(BankError::BadKey(format!(
            "{other} keys are not certified: use RSA (2048 bits or more) or EC P-256"
        ))),
    }
}

/// The issuing CA from `ca-key.pem` and `ca.pem`.
fn load_issuing_ca(paths: &Paths) -> Result<Ca, BankError> {
    let key =
        PrivatePkcs8KeyDer::from_pem_file(paths.ca_key()).map_err(|e| BankError::Corrupt {
            path: paths.ca_key(),
            reason: e.to_string(),
        })?;
    let cert = CertificateDer::from_pem_file(paths.ca_cert()).map_err(|e| BankError::Corrupt {
        path: paths.ca_cert(),
        reason: e.to_string(),
    })?;
    Ca::load(key.secret_pkcs8_der(), cert.as_ref())
}

/// User IDs travel in HTTP Basic credentials (no ':') and in file names
/// and logs of testers: keep them plain.
fn check_user_id(user: &str) -> Result<(), BankError> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BankError::BadUser(user.to_string()))
    }
}
