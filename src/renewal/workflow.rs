//! The workflow of one attempt: each step of the table ([`super::step`])
//! has one handler here, and [`Workflow::drive`] runs them, journalling
//! each step before it acts. The steps only a card with fixed key slots
//! takes are in [`super::card`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::error::RenewalError;
use super::journal::{Journal, Kind};
use super::journal::{b64, crash_point, unb64};
use super::step::Progress;
use super::step::{Next, Seen, Step};
use super::verify::verify_issued;
use crate::cert::Cert;
use crate::est::{EstAnswer, EstClient, EstError};
use crate::holdings::{BankIssuers, TokenCert};
use crate::i18n::{Arg, tr};
use crate::token::{GeneratedKey, Token, block_in_place};
use cryptoki::types::AuthPin;

/// The longest certagent keeps resending a request the bank answered with 202.
pub const MAX_PENDING_WAIT: Duration = Duration::from_secs(300);

/// The PINs a renewal on a card with fixed key slots uses as it goes: the
/// user PIN for the card's other token, the admin PIN for key generation
/// and certificate writes. Asked once before the attempt, checked by the
/// card at each login, never retried on a refusal, and dropped (zeroized)
/// with the attempt. `None`: the reader's PIN pad.
pub struct CardLogin {
    pub user: Option<AuthPin>,
    pub admin: Option<AuthPin>,
}

/// Everything a run works with.
pub(super) struct Workflow<'a> {
    pub(super) token: Arc<Token>,
    /// The bank, for the mode of this attempt (with the client credential for renewals).
    pub(super) est: EstClient,
    /// The issuing CA certificates (DER): pinned, remembered, or from `/cacerts`.
    pub(super) ca_certs: Vec<Vec<u8>>,
    /// The one-time password for enrolments.
    pub(super) otp: Option<&'a SecretString>,
    /// The PINs for a card with fixed key slots.
    pub(super) card: Option<&'a CardLogin>,
    /// Where keys certagent leaves on a card are recorded ([`super::retired`]).
    pub(super) state_dir: PathBuf,
    pub(super) progress: &'a dyn Progress,
}

/// How a run ended, short of an error.
pub enum Pass {
    /// The new certificate, on the token.
    Done(Box<TokenCert>),
    /// The card must be read again; the journal says where to resume
    /// (at this step).
    ReadCardAgain(Step),
}

impl Workflow<'_> {
    /// Run (or resume) the attempt in `journal` to the end. On a refusal or
    /// a bad answer the candidate is removed.
    pub(super) async fn run(
        &self,
        mut journal: Journal,
        label: &str,
        seen: Seen,
    ) -> Result<Pass, RenewalError> {
        let result = self.drive(&mut journal, label, seen).await;
        match result {
            Ok(Pass::Done(cert)) => {
                journal.remove()?;
                Ok(Pass::Done(cert))
            }
            Ok(Pass::ReadCardAgain(step)) => Ok(Pass::ReadCardAgain(step)),
            Err(e) if abandons(&e) && journal.entry.step <= Step::CsrReady => {
                self.abandon(journal);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Remove the candidate key of an attempt and its journal. A key is
    /// removed only if its public key is the journalled candidate's (or,
    /// before that was journalled, if it carries the attempt's unique label).
    fn abandon(&self, journal: Journal) {
        let e = &journal.entry;
        if e.fixed_slot {
            // The card cannot delete keys: the candidate stays in its slot,
            // unused, and the user is told which.
            // It is not recorded as retired: no certificate of the bank's
            // shows it was certagent's (see `retired`), so no later attempt
            // generates over it.
            if let Some(id) = &e.candidate_id {
                self.progress
                    .step(e.step, &tr("step-candidate-stays", &[("id", Arg::Str(id))]));
            }
            if let Err(err) = journal.remove() {
                log::warn!("{err}");
            }
            return;
        }
        let spki = unb64(&e.candidate_spki, "candidate key").ok();
        let mut ids: Vec<Vec<u8>> = e
            .candidate_id
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .into_iter()
            .collect();
        if let Ok(more) =
            block_in_place(|| self.token.private_key_ids_with_label(&e.candidate_label))
        {
            ids.extend(more);
        }
        ids.sort();
        ids.dedup();
        for id in ids.into_iter().filter(|id| !id.is_empty()) {
            let theirs = block_in_place(|| self.token.public_key(&id));
            let ours = match (&spki, theirs) {
                (Some(want), Ok(Some(have))) => *want == have,
                // No public key to compare: only the attempt's own label vouches.
                (_, Ok(None)) => {
                    block_in_place(|| self.token.private_key_ids_with_label(&e.candidate_label))
                        .is_ok_and(|l| l.contains(&id))
                }
                (None, Ok(Some(_))) => true,
                (_, Err(_)) => false,
            };
            if !ours {
                log::warn!(
                    "not removing key {}: it is not this attempt's candidate",
                    hex::encode(&id)
                );
                continue;
            }
            match block_in_place(|| self.token.delete_all(&id)) {
                Ok(n) if n > 0 => self.progress.step(
                    e.step,
                    &tr(
                        "step-removed-candidate",
                        &[("id", Arg::Str(&hex::encode(&id)))],
                    ),
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

    /// The one loop: the handler of the journal's step says what comes
    /// next; the next step is journalled before it acts.
    async fn drive(
        &self,
        j: &mut Journal,
        label: &str,
        mut seen: Seen,
    ) -> Result<Pass, RenewalError> {
        let old_cert = j.old_cert()?;
        if !seen.started {
            self.check_journal(j, old_cert.as_ref())?;
        }
        loop {
            let next = self.step(j, &mut seen, label, old_cert.as_ref()).await?;
            match next {
                Next::Go(step) => j.advance(step)?,
                Next::ReadCardAgain => return Ok(Pass::ReadCardAgain(j.entry.step)),
                Next::Done(cert) => return Ok(Pass::Done(cert)),
            }
        }
    }

    /// The handler of each row of the table.
    async fn step(
        &self,
        j: &mut Journal,
        seen: &mut Seen,
        label: &str,
        old_cert: Option<&Cert>,
    ) -> Result<Next, RenewalError> {
        let card = j.entry.fixed_slot;
        match j.entry.step {
            Step::Started => Ok(Next::Go(Step::GeneratingKey)),
            Step::GeneratingKey if card => self.generate_in_slot(j, seen),
            Step::GeneratingKey => self.generate(j, seen),
            Step::KeyReady => self.sign_csr(j, old_cert),
            Step::CsrReady => self.submit_and_check(j, old_cert).await,
            Step::Issued => Ok(Next::Go(Step::Installing)),
            Step::Installing => self.install(j, seen, label, old_cert),
            Step::Installed => self.prove(j, seen),
            Step::RetiringOld if card => self.retire_on_card(j, old_cert),
            Step::RetiringOld => self.retire_old(j, old_cert),
            Step::Done => {
                let der = unb64(&j.entry.issued, "issued certificate")?;
                let cert = Cert::from_der(&der).map_err(|e| RenewalError::Other(e.to_string()))?;
                Ok(Next::Done(Box::new(TokenCert {
                    id: self.candidate_id(j)?,
                    label: label.to_string(),
                    cert,
                })))
            }
        }
    }

    /// `generating-key`: adopt the key pair carrying the attempt's label
    /// (left by an interrupted run), else generate one.
    fn generate(&self, j: &mut Journal, seen: &mut Seen) -> Result<Next, RenewalError> {
        let label_c = j.entry.candidate_label.clone();
        // A fresh attempt's label is new: nothing to adopt.
        let adopted = if seen.started {
            None
        } else {
            block_in_place(|| self.token.adopt_key_pair(&label_c))?
        };
        let key: GeneratedKey = match adopted {
            Some(key) => {
                self.progress
                    .step(Step::GeneratingKey, &tr("step-found-candidate", &[]));
                key
            }
            None => {
                self.progress.step(
                    Step::GeneratingKey,
                    &tr(
                        "step-generating",
                        &[("key", Arg::Str(&j.entry.key.to_string()))],
                    ),
                );
                let key = block_in_place(|| self.token.generate_key_pair(j.entry.key, &label_c))?;
                crash_point("after-keygen");
                seen.generated = true;
                key
            }
        };
        j.entry.candidate_id = Some(hex::encode(&key.id));
        j.entry.candidate_spki = Some(b64(&key.spki_der));
        Ok(Next::Go(Step::KeyReady))
    }

    /// `key-ready`: the CSR, signed on the token with the candidate key.
    fn sign_csr(&self, j: &mut Journal, old_cert: Option<&Cert>) -> Result<Next, RenewalError> {
        let id = self.candidate_id(j)?;
        let spki = unb64(&j.entry.candidate_spki, "candidate key")?;
        self.user_login_for(j, &id)?;
        self.progress
            .step(Step::KeyReady, &tr("step-signing-csr", &[]));
        let csr = block_in_place(|| crate::csr::build_for(&self.token, &id, &spki, old_cert))
            .map_err(|e| match e {
                crate::csr::CsrError::Token(t) => RenewalError::Token(t),
                other => RenewalError::Csr(other.to_string()),
            })?;
        j.entry.csr = Some(b64(&csr));
        Ok(Next::Go(Step::CsrReady))
    }

    /// `csr-ready`: send the journalled CSR, verify what comes back.
    async fn submit_and_check(
        &self,
        j: &mut Journal,
        old_cert: Option<&Cert>,
    ) -> Result<Next, RenewalError> {
        let csr = unb64(&j.entry.csr, "certificate request")?;
        if let Some(old) = j.old_id().filter(|_| j.entry.kind == Kind::Renew) {
            // The current key authenticates the TLS connection.
            self.user_login_for(j, &old)?;
        }
        let certs = self.submit(&j.entry.kind, &csr).await?;
        crash_point("after-submit");
        let spki = unb64(&j.entry.candidate_spki, "candidate key")?;
        self.progress
            .step(Step::CsrReady, &tr("step-checking", &[]));
        let new = verify_issued(
            &certs,
            &spki,
            old_cert,
            &self.ca_certs,
            OffsetDateTime::now_utc(),
        )?;
        j.entry.issued = Some(b64(&new.der));
        Ok(Next::Go(Step::Issued))
    }

    /// `installing`: the journalled certificate, verified again, written
    /// beside the candidate key unless it is there already.
    fn install(
        &self,
        j: &mut Journal,
        seen: &mut Seen,
        label: &str,
        old_cert: Option<&Cert>,
    ) -> Result<Next, RenewalError> {
        let id = self.candidate_id(j)?;
        // The journal is a file: check its certificate again (key,
        // subject, chain, dates) before it goes on the token.
        let (der, spki) = self.journalled_certificate(j, old_cert)?;
        if !seen.generated
            && block_in_place(|| self.token.public_key(&id))?.as_deref() != Some(&spki[..])
        {
            return Err(RenewalError::Other(format!(
                "the key {} on the token is not the candidate this attempt generated; nothing was installed and the old certificate is kept",
                hex::encode(&id)
            )));
        }
        // A key generated by this run has no certificate yet.
        let present = !seen.generated
            && block_in_place(|| self.token.certificates())?
                .into_iter()
                .any(|c| c.der == der && c.id == id);
        if !present {
            self.progress
                .step(Step::Installing, &tr("step-installing", &[]));
            if j.entry.fixed_slot {
                self.as_admin(|| self.token.write_certificate(&id, label, &der))?;
            } else {
                block_in_place(|| self.token.write_certificate(&id, label, &der))?;
            }
            crash_point("after-install");
            seen.written = true;
        }
        // A card names its keys itself.
        if !j.entry.fixed_slot {
            block_in_place(|| self.token.set_key_label(&id, label))?;
        }
        Ok(Next::Go(Step::Installed))
    }

    /// `installed`: read the certificate back and test-sign with the new
    /// key. A card is then read afresh before anything is removed from it
    /// (its module keeps what it read).
    fn prove(&self, j: &mut Journal, seen: &mut Seen) -> Result<Next, RenewalError> {
        let id = self.candidate_id(j)?;
        let der = unb64(&j.entry.issued, "issued certificate")?;
        self.progress
            .step(Step::Installed, &tr("step-reading-back", &[]));
        // Read back: the object this run wrote through its handle, else
        // every certificate under the id.
        let back: Vec<Vec<u8>> = if seen.written {
            block_in_place(|| self.token.certificate_value(&id))?
                .into_iter()
                .collect()
        } else {
            block_in_place(|| self.token.certificates())?
                .into_iter()
                .filter(|c| c.id == id)
                .map(|c| c.der)
                .collect()
        };
        if !back.contains(&der) {
            // Not there after all (token swapped?): write it again.
            return Ok(Next::Go(Step::Installing));
        }
        let cert = Cert::from_der(&der).map_err(|e| RenewalError::Other(e.to_string()))?;
        let scheme = *cert
            .schemes()
            .first()
            .ok_or_else(|| RenewalError::Other("unsupported key type".into()))?;
        let mut challenge = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut challenge)
            .map_err(|_| RenewalError::Other("no system randomness".into()))?;
        self.user_login_for(j, &id)?;
        let sig = block_in_place(|| self.token.sign(&id, scheme, &challenge))?;
        if !crate::cert::verify(&cert.spki_der, scheme, &challenge, &sig) {
            return Err(RenewalError::Other(
                "the new key's test signature does not verify against the new certificate; the old certificate is kept".into(),
            ));
        }
        if j.entry.fixed_slot {
            j.advance(Step::RetiringOld)?;
            return Ok(Next::ReadCardAgain);
        }
        Ok(Next::Go(Step::RetiringOld))
    }

    /// `retiring-old`: the old pair goes, if it is still the journal's.
    fn retire_old(&self, j: &mut Journal, old_cert: Option<&Cert>) -> Result<Next, RenewalError> {
        let candidate = self.candidate_id(j)?;
        if let (Some(old), Some(old_cert)) = (j.old_id(), old_cert)
            && old != candidate
        {
            self.retire(&old, old_cert)?;
        }
        Ok(Next::Go(Step::Done))
    }

    /// The bank's issuers as this attempt knows them: its CA certificates.
    pub(super) fn bank(&self) -> BankIssuers {
        BankIssuers {
            ca_certs: self.ca_certs.clone(),
            ..BankIssuers::default()
        }
    }

    /// A journal from an earlier run is a file that anything running as
    /// the user could have edited: before it acts on the token again, the
    /// certificate it replaces must be the bank's (signed by the bank's
    /// issuing CA; its dates do not matter), and a certificate it says the
    /// bank issued must still verify (key, subject, chain, dates). Either
    /// failing stops the run before any token call.
    fn check_journal(&self, j: &Journal, old_cert: Option<&Cert>) -> Result<(), RenewalError> {
        let stop = |why: String| {
            RenewalError::Other(format!(
                "the journal of the interrupted attempt ({}) {why}; nothing was changed on the token. If you did not start that attempt, remove the journal",
                j.path().display()
            ))
        };
        match (old_cert, &j.entry.kind) {
            (Some(old), _) => {
                if !self.bank().issued(old) {
                    return Err(stop(format!(
                        "names a certificate the bank did not issue ({})",
                        crate::text::clean(&old.subject, crate::text::NAME_MAX)
                    )));
                }
            }
            (None, Kind::Renew) => return Err(stop("lacks the certificate being renewed".into())),
            (None, Kind::Enroll { .. }) => {}
        }
        if j.entry.issued.is_some() {
            self.journalled_certificate(j, old_cert)
                .map_err(|e| match e {
                    e @ RenewalError::BadAnswer(_) => {
                        stop(format!("holds a certificate that does not verify: {e}"))
                    }
                    other => other,
                })?;
        }
        Ok(())
    }

    /// The certificate the journal says the bank issued, verified again
    /// against the candidate key, the old certificate and the bank's CA
    /// (the journal is a file), with the candidate's public key.
    fn journalled_certificate(
        &self,
        j: &Journal,
        old_cert: Option<&Cert>,
    ) -> Result<(Vec<u8>, Vec<u8>), RenewalError> {
        let der = unb64(&j.entry.issued, "issued certificate")?;
        let spki = unb64(&j.entry.candidate_spki, "candidate key")?;
        verify_issued(
            std::slice::from_ref(&der),
            &spki,
            old_cert,
            &self.ca_certs,
            OffsetDateTime::now_utc(),
        )?;
        Ok((der, spki))
    }

    /// Remove the old certificate and key, but only while the old id still
    /// holds the journal's old certificate and its key: an id that now holds
    /// something else is left alone, and the user is told. Every object
    /// removed is shown to be the old one: the certificate byte for byte,
    /// a key by its public key; a key whose public key cannot be read goes
    /// only beside the old certificate or public key. Private keys go
    /// first, so an interruption leaves what proves the rest.
    fn retire(&self, old: &[u8], old_cert: &Cert) -> Result<(), RenewalError> {
        use crate::token::Class;
        let mut objects = block_in_place(|| self.token.objects_with_id(old))?;
        let proven = |o: &crate::token::IdObject| {
            if o.class == Class::CERTIFICATE {
                o.value.as_deref() == Some(&old_cert.der[..])
            } else {
                o.spki.as_deref() == Some(&old_cert.spki_der[..])
            }
        };
        let vouched = objects
            .iter()
            .any(|o| o.class != Class::PRIVATE_KEY && proven(o));
        let foreign = objects.iter().any(|o| {
            !(proven(o) || (o.class == Class::PRIVATE_KEY && o.spki.is_none() && vouched))
        });
        objects.sort_by_key(|o| o.class != Class::PRIVATE_KEY);
        if foreign {
            self.progress.step(
                Step::RetiringOld,
                &tr("step-left-alone", &[("id", Arg::Str(&hex::encode(old)))]),
            );
            return Ok(());
        }
        let n = block_in_place(|| self.token.destroy(&objects))?;
        crash_point("after-retire");
        if n > 0 {
            self.progress.step(
                Step::RetiringOld,
                &tr("step-removed-old", &[("id", Arg::Str(&hex::encode(old)))]),
            );
        }
        Ok(())
    }

    pub(super) fn candidate_id(&self, j: &Journal) -> Result<Vec<u8>, RenewalError> {
        j.entry
            .candidate_id
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .filter(|id| !id.is_empty())
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
                    tr("step-sending", &[])
                } else {
                    tr(
                        "step-sending-again",
                        &[("attempt", Arg::Num(i64::from(attempt)))],
                    )
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
                    if waited.saturating_add(after) > MAX_PENDING_WAIT {
                        return Err(RenewalError::StillPending(waited));
                    }
                    self.progress.step(
                        Step::CsrReady,
                        &tr(
                            "step-bank-busy",
                            &[(
                                "seconds",
                                Arg::Num(i64::try_from(after.as_secs()).unwrap_or(i64::MAX)),
                            )],
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
