//! The renewal (and enrolment) workflow, journalled step by step.
//!
//! A new key is a *candidate* until its certificate is on the token and
//! proven: the old certificate and key are removed only after the new
//! certificate has been written, read back and test-signed. Every step is
//! written to the journal *before* it acts, so a crash, a kill, a pulled
//! token or a lost network at any point resumes on the next run:
//!
//! | journal step    | after a crash, the next run...                                   |
//! |-----------------|------------------------------------------------------------------|
//! | `generating-key`| adopts a key with the candidate label if one exists, else generates |
//! | `key-ready`     | builds the CSR with the journalled candidate key                  |
//! | `csr-ready`     | sends the journalled CSR again, byte for byte (same key)          |
//! | `issued`        | installs the journalled certificate without asking the bank       |
//! | `installing`    | writes the certificate unless it is already on the token          |
//! | `installed`     | test-signs with the new key                                       |
//! | `retiring-old`  | removes whatever is left of the old certificate and key           |
//!
//! A request the bank refuses, or an answer that fails verification, ends
//! the attempt: the candidate key is removed and the token is as before.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cert::{Cert, raw_issuer_subject, rfc3339};
use crate::config::BankConfig;
use crate::est::{EstAnswer, EstClient, EstError};
use crate::tls::{TokenCredential, client_config, load_roots};
use crate::token::{GeneratedKey, KeyKind, Token, TokenError, blocking};

/// The longest certagent keeps resending a request the bank answered with 202.
pub const MAX_PENDING_WAIT: Duration = Duration::from_secs(300);
/// Clock skew tolerated on a new certificate's notBefore.
const SKEW: time::Duration = time::Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Est(#[from] EstError),
    #[error("the bank's answer was rejected, and the token is unchanged: {0}")]
    BadAnswer(String),
    #[error("cannot build the certificate request: {0}")]
    Csr(String),
    #[error("the renewal journal {path}: {reason}")]
    Journal { path: PathBuf, reason: String },
    #[error(
        "the bank has not issued the certificate after {0:?}; run the same command later to collect it (the same request is sent again)"
    )]
    StillPending(Duration),
    #[error("{0}")]
    Other(String),
}

/// Where a renewal is. Serialised in the journal and reported to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Started,
    GeneratingKey,
    KeyReady,
    CsrReady,
    Issued,
    Installing,
    Installed,
    RetiringOld,
    Done,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Started => "started",
            Step::GeneratingKey => "generating-key",
            Step::KeyReady => "key-ready",
            Step::CsrReady => "csr-ready",
            Step::Issued => "issued",
            Step::Installing => "installing",
            Step::Installed => "installed",
            Step::RetiringOld => "retiring-old",
            Step::Done => "done",
        }
    }
}

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
}

fn b64(v: &[u8]) -> String {
    B64.encode(v)
}

fn unb64(s: &Option<String>, what: &str) -> Result<Vec<u8>, RenewalError> {
    let s = s
        .as_deref()
        .ok_or_else(|| RenewalError::Other(format!("the journal lacks the {what}")))?;
    B64.decode(s)
        .map_err(|_| RenewalError::Other(format!("the journal's {what} is corrupt")))
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

    /// The interrupted attempt for this token, if there is one.
    pub fn load(state_dir: &Path, token_serial: &str) -> Result<Option<Journal>, RenewalError> {
        let path = Journal::path_for(state_dir, token_serial);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(RenewalError::Journal {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let entry: Entry = serde_json::from_str(&text).map_err(|e| RenewalError::Journal {
            path: path.clone(),
            reason: format!("unreadable ({e}); move it away to start afresh"),
        })?;
        Ok(Some(Journal { path, entry }))
    }

    fn create(state_dir: &Path, entry: Entry) -> Result<Journal, RenewalError> {
        let j = Journal {
            path: Journal::path_for(state_dir, &entry.token_serial),
            entry,
        };
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
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let tmp = self.path.with_extension("json.tmp");
        let text =
            serde_json::to_vec_pretty(&self.entry).map_err(|e| err(std::io::Error::other(e)))?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(&text).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn advance(&mut self, step: Step) -> Result<(), RenewalError> {
        self.entry.step = step;
        self.entry.updated = rfc3339(OffsetDateTime::now_utc());
        self.save()?;
        crash_point(step.as_str());
        Ok(())
    }

    fn remove(self) -> Result<(), RenewalError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RenewalError::Journal {
                path: self.path,
                reason: e.to_string(),
            }),
        }
    }
}

/// For the crash-recovery tests only: with `CERTAGENT_TEST_CRASH_AT=<point>`
/// the process aborts at that point (no destructors, like a kill).
fn crash_point(point: &str) {
    if std::env::var("CERTAGENT_TEST_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("certagent: test crash at {point}");
        std::process::abort();
    }
}

/// What the workflow tells its caller as it goes.
pub trait Progress: Sync {
    fn step(&self, step: Step, message: &str);
}

impl<F: Fn(Step, &str) + Sync> Progress for F {
    fn step(&self, step: Step, message: &str) {
        self(step, message)
    }
}

/// What a new attempt needs to know.
pub struct Request {
    pub kind: Kind,
    /// The certificate being replaced (CKA_ID and certificate).
    pub old: Option<(Vec<u8>, Cert)>,
    /// Label for the new certificate and key.
    pub label: String,
    pub key: KeyKind,
}

/// Everything a run works with.
pub struct Workflow<'a> {
    pub token: Arc<Token>,
    pub token_serial: String,
    pub state_dir: PathBuf,
    /// The bank, for the mode of this attempt (with the client credential for renewals).
    pub est: EstClient,
    /// The issuing CA certificates (DER): pinned, or from `/cacerts`.
    pub ca_certs: Vec<Vec<u8>>,
    /// The one-time password for enrolments.
    pub otp: Option<SecretString>,
    pub progress: &'a dyn Progress,
}

/// Start a new attempt (journalled) and run it to the end.
pub fn start(state_dir: &Path, token_serial: &str, req: &Request) -> Result<Journal, RenewalError> {
    let now = rfc3339(OffsetDateTime::now_utc());
    let mut nonce = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| RenewalError::Other("no system randomness".into()))?;
    Journal::create(
        state_dir,
        Entry {
            version: 1,
            kind: req.kind.clone(),
            token_serial: token_serial.to_string(),
            old_id: req.old.as_ref().map(|(id, _)| hex::encode(id)),
            old_cert: req.old.as_ref().map(|(_, c)| b64(&c.der)),
            key: req.key,
            candidate_label: format!("certagent candidate {}", hex::encode(nonce)),
            candidate_id: None,
            candidate_spki: None,
            csr: None,
            issued: None,
            step: Step::Started,
            started: now.clone(),
            updated: now,
        },
    )
}

impl Workflow<'_> {
    /// Run (or resume) the attempt in `journal` to the end. Returns the new
    /// certificate. On a refusal or a bad answer the candidate is removed.
    pub async fn run(&self, mut journal: Journal, label: &str) -> Result<Cert, RenewalError> {
        let result = self.drive(&mut journal, label).await;
        match result {
            Ok(cert) => {
                journal.remove()?;
                Ok(cert)
            }
            Err(e) if abandons(&e) && journal.entry.step <= Step::CsrReady => {
                self.abandon(journal);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Remove the candidate key of an attempt and its journal.
    pub fn abandon(&self, journal: Journal) {
        let e = &journal.entry;
        let mut ids: Vec<Vec<u8>> = e
            .candidate_id
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .into_iter()
            .collect();
        if let Ok(more) = blocking(|| self.token.private_key_ids_with_label(&e.candidate_label)) {
            ids.extend(more);
        }
        for id in ids {
            match blocking(|| self.token.delete_all(&id)) {
                Ok(n) if n > 0 => self.progress.step(
                    e.step,
                    &format!("removed the unused candidate key {}", hex::encode(&id)),
                ),
                Ok(_) => {}
                Err(err) => {
                    log::warn!("could not remove candidate key {}: {err}", hex::encode(&id))
                }
            }
        }
        if let Err(err) = journal.remove() {
            log::warn!("{err}");
        }
    }

    async fn drive(&self, j: &mut Journal, label: &str) -> Result<Cert, RenewalError> {
        let old_cert = match &j.entry.old_cert {
            Some(_) => Some(
                Cert::from_der(&unb64(&j.entry.old_cert, "old certificate")?)
                    .map_err(|e| RenewalError::Other(e.to_string()))?,
            ),
            None => None,
        };
        loop {
            match j.entry.step {
                Step::Started => j.advance(Step::GeneratingKey)?,
                Step::GeneratingKey => {
                    let label_c = j.entry.candidate_label.clone();
                    let existing = blocking(|| self.token.private_key_ids_with_label(&label_c))?;
                    let key: GeneratedKey = match existing.first() {
                        Some(id) => {
                            self.progress.step(
                                Step::GeneratingKey,
                                "found the candidate key of the interrupted attempt",
                            );
                            blocking(|| self.token.adopt_key_pair(id))?
                        }
                        None => {
                            self.progress.step(
                                Step::GeneratingKey,
                                &format!("generating a new {} key on the token", j.entry.key),
                            );
                            let key =
                                blocking(|| self.token.generate_key_pair(j.entry.key, &label_c))?;
                            crash_point("after-keygen");
                            key
                        }
                    };
                    j.entry.candidate_id = Some(hex::encode(&key.id));
                    j.entry.candidate_spki = Some(b64(&key.spki_der));
                    j.advance(Step::KeyReady)?;
                }
                Step::KeyReady => {
                    let id = self.candidate_id(j)?;
                    let spki = unb64(&j.entry.candidate_spki, "candidate key")?;
                    self.progress.step(
                        Step::KeyReady,
                        "signing the certificate request on the token",
                    );
                    let csr = blocking(|| {
                        crate::csr::build_for(&self.token, &id, &spki, old_cert.as_ref())
                    })
                    .map_err(|e| match e {
                        crate::csr::CsrError::Token(t) => RenewalError::Token(t),
                        other => RenewalError::Csr(other.to_string()),
                    })?;
                    j.entry.csr = Some(b64(&csr));
                    j.advance(Step::CsrReady)?;
                }
                Step::CsrReady => {
                    let csr = unb64(&j.entry.csr, "certificate request")?;
                    let certs = self.submit(&j.entry.kind, &csr).await?;
                    crash_point("after-submit");
                    let spki = unb64(&j.entry.candidate_spki, "candidate key")?;
                    self.progress
                        .step(Step::CsrReady, "checking the certificate the bank issued");
                    let new = verify_issued(
                        &certs,
                        &spki,
                        old_cert.as_ref(),
                        &self.ca_certs,
                        OffsetDateTime::now_utc(),
                    )?;
                    j.entry.issued = Some(b64(&new.der));
                    j.advance(Step::Issued)?;
                }
                Step::Issued => j.advance(Step::Installing)?,
                Step::Installing => {
                    let id = self.candidate_id(j)?;
                    let der = unb64(&j.entry.issued, "issued certificate")?;
                    let present = blocking(|| self.token.certificates())?
                        .into_iter()
                        .any(|c| c.der == der && c.id == id);
                    if !present {
                        self.progress
                            .step(Step::Installing, "writing the new certificate to the token");
                        blocking(|| self.token.write_certificate(&id, label, &der))?;
                        crash_point("after-install");
                    }
                    blocking(|| self.token.set_label(&id, label))?;
                    j.advance(Step::Installed)?;
                }
                Step::Installed => {
                    let id = self.candidate_id(j)?;
                    let der = unb64(&j.entry.issued, "issued certificate")?;
                    self.progress.step(
                        Step::Installed,
                        "reading the certificate back and test-signing with the new key",
                    );
                    let back = blocking(|| self.token.certificates())?;
                    if !back.iter().any(|c| c.der == der && c.id == id) {
                        // Not there after all (token swapped?): write it again.
                        j.advance(Step::Installing)?;
                        continue;
                    }
                    let cert =
                        Cert::from_der(&der).map_err(|e| RenewalError::Other(e.to_string()))?;
                    let scheme = *cert
                        .schemes()
                        .first()
                        .ok_or_else(|| RenewalError::Other("unsupported key type".into()))?;
                    let mut challenge = [0u8; 32];
                    ring::rand::SecureRandom::fill(
                        &ring::rand::SystemRandom::new(),
                        &mut challenge,
                    )
                    .map_err(|_| RenewalError::Other("no system randomness".into()))?;
                    let sig = blocking(|| self.token.sign(&id, scheme, &challenge))?;
                    if !crate::cert::verify(&cert.spki_der, scheme, &challenge, &sig) {
                        return Err(RenewalError::Other(
                            "the new key's test signature does not verify against the new certificate; the old certificate is kept".into(),
                        ));
                    }
                    j.advance(Step::RetiringOld)?;
                }
                Step::RetiringOld => {
                    let candidate = self.candidate_id(j)?;
                    if let Some(old) = j.entry.old_id.as_deref().and_then(|h| hex::decode(h).ok())
                        && old != candidate
                    {
                        let n = blocking(|| self.token.delete_all(&old))?;
                        crash_point("after-retire");
                        if n > 0 {
                            self.progress.step(
                                Step::RetiringOld,
                                &format!(
                                    "removed the old certificate and key (id {})",
                                    hex::encode(&old)
                                ),
                            );
                        }
                    }
                    j.advance(Step::Done)?;
                }
                Step::Done => {
                    let der = unb64(&j.entry.issued, "issued certificate")?;
                    return Cert::from_der(&der).map_err(|e| RenewalError::Other(e.to_string()));
                }
            }
        }
    }

    fn candidate_id(&self, j: &Journal) -> Result<Vec<u8>, RenewalError> {
        j.entry
            .candidate_id
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| RenewalError::Other("the journal lacks the candidate key id".into()))
    }

    /// Send the request; on 202 send the identical bytes again after the
    /// server's Retry-After, within a bounded total wait.
    async fn submit(&self, kind: &Kind, csr: &[u8]) -> Result<Vec<Vec<u8>>, RenewalError> {
        let started = std::time::Instant::now();
        let mut attempt = 1u32;
        loop {
            self.progress.step(
                Step::CsrReady,
                &if attempt == 1 {
                    "sending the certificate request to the bank".to_string()
                } else {
                    format!("sending the same request again (attempt {attempt})")
                },
            );
            let answer = match kind {
                Kind::Renew => self.est.simplereenroll(csr).await?,
                Kind::Enroll { user } => {
                    let otp = self
                        .otp
                        .as_ref()
                        .ok_or_else(|| RenewalError::Other("no one-time password".into()))?;
                    self.est
                        .simpleenroll(csr, user, otp.expose_secret())
                        .await?
                }
            };
            match answer {
                EstAnswer::Issued(certs) => return Ok(certs),
                EstAnswer::Pending(after) => {
                    let waited = started.elapsed();
                    if waited + after > MAX_PENDING_WAIT {
                        return Err(RenewalError::StillPending(waited));
                    }
                    self.progress.step(
                        Step::CsrReady,
                        &format!(
                            "the bank is processing the request; asking again in {}s",
                            after.as_secs()
                        ),
                    );
                    tokio::time::sleep(after).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Errors after which the attempt is given up (and its candidate removed):
/// the bank said no, or said something unusable. Network trouble and a
/// pending request keep the journal for a later resume.
fn abandons(e: &RenewalError) -> bool {
    matches!(
        e,
        RenewalError::BadAnswer(_)
            | RenewalError::Est(EstError::Refused { .. })
            | RenewalError::Est(EstError::Answer(_))
    )
}

/// An EST client for the configured bank, authenticating with `credential`
/// (renewal) or with TLS server authentication only (enrolment, /cacerts).
pub fn est_client(
    bank: &BankConfig,
    credential: Option<TokenCredential>,
) -> Result<EstClient, RenewalError> {
    let roots = load_roots(&bank.server_roots).map_err(|e| RenewalError::Other(e.to_string()))?;
    let tls = client_config(roots, credential).map_err(|e| RenewalError::Other(e.to_string()))?;
    Ok(EstClient::new(&bank.est_url, tls)?)
}

/// The issuing CA: the `ca_certs` pin, else `/cacerts` over
/// server-authenticated TLS.
pub async fn bank_ca_certs(
    bank: &BankConfig,
    progress: &dyn Progress,
) -> Result<Vec<Vec<u8>>, RenewalError> {
    if let Some(path) = &bank.ca_certs {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad =
            |e: String| RenewalError::Other(format!("[bank] ca_certs {}: {e}", path.display()));
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("holds no certificate".into()));
        }
        return Ok(certs);
    }
    progress.step(
        Step::Started,
        "fetching the bank's CA certificates (/cacerts)",
    );
    Ok(est_client(bank, None)?.cacerts().await?)
}

/// A whole renewal of `old` (CKA_ID `old_id`) with a fresh journal: the
/// caller has done the pre-check, the consent and the login.
#[allow(clippy::too_many_arguments)]
pub async fn renew_now(
    token: Arc<Token>,
    token_serial: &str,
    bank: &BankConfig,
    key: KeyKind,
    old_id: &[u8],
    old: &Cert,
    label: &str,
    state_dir: &Path,
    progress: &dyn Progress,
) -> Result<Cert, RenewalError> {
    let credential = TokenCredential::new(token.clone(), old_id, old)
        .map_err(|e| RenewalError::Other(e.to_string()))?;
    let ca_certs = bank_ca_certs(bank, progress).await?;
    let est = est_client(bank, Some(credential))?;
    let req = Request {
        kind: Kind::Renew,
        old: Some((old_id.to_vec(), old.clone())),
        label: label.to_string(),
        key,
    };
    let journal = start(state_dir, token_serial, &req)?;
    let wf = Workflow {
        token,
        token_serial: token_serial.to_string(),
        state_dir: state_dir.to_path_buf(),
        est,
        ca_certs,
        otp: None,
        progress,
    };
    wf.run(journal, label).await
}

/// Check what the bank returned before anything touches the token: the
/// certificate is for the candidate key, has the old subject, chains to
/// the bank's CA for client authentication, and has sane dates.
pub fn verify_issued(
    certs: &[Vec<u8>],
    candidate_spki: &[u8],
    old: Option<&Cert>,
    ca_certs: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<Cert, RenewalError> {
    let bad = |m: String| RenewalError::BadAnswer(m);
    let parsed: Vec<Cert> = certs
        .iter()
        .filter_map(|d| Cert::from_der(d).ok())
        .collect();
    if parsed.is_empty() {
        return Err(bad("it holds no readable certificate".into()));
    }
    let new = parsed
        .iter()
        .find(|c| c.spki_der == candidate_spki)
        .ok_or_else(|| {
            bad("the certificate is for another key than the one generated on the token".into())
        })?
        .clone();
    if let Some(old) = old {
        let (_, want) =
            raw_issuer_subject(&old.der).ok_or_else(|| bad("old subject unreadable".into()))?;
        let (_, got) =
            raw_issuer_subject(&new.der).ok_or_else(|| bad("new subject unreadable".into()))?;
        if want != got {
            return Err(bad(format!(
                "the certificate's subject {:?} is not the current one {:?}",
                new.subject, old.subject
            )));
        }
    }
    if new.not_before > now + SKEW {
        return Err(bad(format!(
            "the certificate is not valid before {}",
            rfc3339(new.not_before)
        )));
    }
    if new.not_after <= now + time::Duration::days(1) {
        return Err(bad(format!(
            "the certificate expires already on {}",
            rfc3339(new.not_after)
        )));
    }
    if new.not_after - new.not_before > time::Duration::days(5 * 366) {
        return Err(bad(
            "the certificate claims a validity of more than five years".into(),
        ));
    }
    if new.is_ca {
        return Err(bad("the certificate is a CA certificate".into()));
    }
    chain_to_ca(&new, &parsed, ca_certs, now).map_err(bad)?;
    Ok(new)
}

/// Path validation with webpki (the verifier rustls itself uses) for the
/// client-authentication usage, with the bank's CA as the only anchor.
fn chain_to_ca(
    new: &Cert,
    returned: &[Cert],
    ca_certs: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<(), String> {
    use rustls::pki_types::{CertificateDer, UnixTime};
    if ca_certs.is_empty() {
        return Err("no bank CA certificate to check it against".into());
    }
    let ca_ders: Vec<CertificateDer<'_>> = ca_certs
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let anchors = ca_ders
        .iter()
        .map(|c| webpki::anchor_from_trusted_cert(c).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the bank's CA certificate is unusable: {e:?}"))?;
    let intermediates: Vec<CertificateDer<'_>> = returned
        .iter()
        .filter(|c| c.der != new.der)
        .map(|c| CertificateDer::from(c.der.as_slice()))
        .collect();
    let der = CertificateDer::from(new.der.as_slice());
    let ee = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| format!("unparseable certificate: {e:?}"))?;
    let secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        UnixTime::since_unix_epoch(Duration::from_secs(secs)),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| {
        format!("the certificate does not chain to the bank's CA for client logon ({e:?})")
    })
}
