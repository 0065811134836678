//! What certagent knows of the bank's issuing CA, shared by the CLI, the
//! agent's token owner and the renewal: the `[bank] ca_certs` pin, else
//! `GET /cacerts` over server-authenticated TLS, remembered in the state
//! directory for the next start, when the bank may not be reachable.
//! Also the one way to reach the bank's EST server ([`est_client`]).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::cert::Cert;
use crate::config::BankConfig;
use crate::est::{EstClient, EstError};
use crate::tls::{TokenCredential, client_config, load_roots};

/// Why the bank's CA (or a connection to the bank) is not at hand.
#[derive(Debug, thiserror::Error)]
pub enum BankCaError {
    #[error(transparent)]
    Est(#[from] EstError),
    /// The pin, the TLS roots or the client configuration.
    #[error("{0}")]
    Config(String),
}

/// An EST client for the configured bank, authenticating with `credential`
/// (renewal) or with TLS server authentication only (enrolment, /cacerts).
pub fn est_client(
    bank: &BankConfig,
    credential: Option<TokenCredential>,
) -> Result<EstClient, BankCaError> {
    let roots = load_roots(&bank.server_roots).map_err(|e| BankCaError::Config(e.to_string()))?;
    let tls = client_config(roots, credential).map_err(|e| BankCaError::Config(e.to_string()))?;
    Ok(EstClient::new(&bank.est_url, tls)?)
}

/// The file where `/cacerts` of this bank is remembered.
fn cacerts_file(bank: &BankConfig, state_dir: &Path) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bank.est_url.as_bytes());
    let tag = hex::encode(digest.get(..8).unwrap_or_default());
    state_dir.join(format!("bank-cacerts-{tag}.json"))
}

/// The certificates of the `[bank] ca_certs` pin (PEM).
pub fn read_pinned(path: &Path) -> Result<Vec<Vec<u8>>, BankCaError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: String| BankCaError::Config(format!("[bank] ca_certs {}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    Ok(certs)
}

/// The bank's issuing CA as known without the network: the `ca_certs` pin,
/// else `/cacerts` remembered from the last contact.
pub fn known_ca_certs(bank: &BankConfig, state_dir: &Path) -> Option<Vec<Vec<u8>>> {
    if let Some(path) = &bank.ca_certs {
        return read_pinned(path).ok();
    }
    let text = std::fs::read(cacerts_file(bank, state_dir)).ok()?;
    let list: Vec<String> = serde_json::from_slice(&text).ok()?;
    let certs: Vec<Vec<u8>> = list
        .iter()
        .filter_map(|b| STANDARD.decode(b).ok())
        .filter(|d| Cert::from_der(d).is_ok())
        .collect();
    (!certs.is_empty()).then_some(certs)
}

/// Remember `/cacerts` (fetched over server-authenticated TLS) for the next
/// start, when the bank may not be reachable.
fn remember_cacerts(bank: &BankConfig, state_dir: &Path, certs: &[Vec<u8>]) {
    let list: Vec<String> = certs.iter().map(|c| STANDARD.encode(c)).collect();
    let path = cacerts_file(bank, state_dir);
    let write = || -> std::io::Result<()> {
        crate::config::ensure_state_dir(state_dir)?;
        crate::state_file::write(
            &path,
            &serde_json::to_vec(&list).map_err(std::io::Error::other)?,
            crate::state_file::Mode::Private,
        )
    };
    if let Err(e) = write() {
        log::warn!("cannot remember the bank's CA in {}: {e}", path.display());
    }
}

/// The issuing CA: the `ca_certs` pin, else `/cacerts` over
/// server-authenticated TLS (remembered for later). `fetching` is called
/// before the bank is asked.
pub async fn bank_ca_certs(
    bank: &BankConfig,
    state_dir: &Path,
    fetching: &(dyn Fn() + Sync),
) -> Result<Vec<Vec<u8>>, BankCaError> {
    if let Some(path) = &bank.ca_certs {
        return read_pinned(path);
    }
    fetching();
    let certs = est_client(bank, None)?.cacerts().await?;
    remember_cacerts(bank, state_dir, &certs);
    Ok(certs)
}
