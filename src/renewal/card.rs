//! The steps only a card with fixed key slots takes (an OpenPGP card
//! through OpenSC): the key into the slot chosen before the attempt, the
//! admin login for key generation and certificate writes, the user login
//! per token of the card, and the old certificate's removal on a fresh
//! read. The card cannot delete keys: what stays is recorded
//! ([`super::retired`]).

use super::error::RenewalError;
use super::journal::Journal;
use super::journal::{b64, crash_point, unb64};
use super::retired;
use super::step::{Next, Seen, Step};
use super::workflow::Workflow;
use crate::cert::Cert;
use crate::i18n::{Arg, tr};
use crate::token::{TokenError, block_in_place};

impl Workflow<'_> {
    /// `generating-key` on a card: the new key goes into the slot chosen
    /// before the attempt; the card shows it only once read again.
    pub(super) fn generate_in_slot(
        &self,
        j: &mut Journal,
        seen: &Seen,
    ) -> Result<Next, RenewalError> {
        let id = self.candidate_id(j)?;
        // The slot was free when the attempt began (or held the key
        // certagent retired there): any other key there now is the one
        // this attempt generated.
        let replaced = retired::replaced(&j.entry);
        let found = if seen.started {
            None
        } else {
            block_in_place(|| self.token.public_key(&id))?.filter(|k| replaced.as_ref() != Some(k))
        };
        if let Some(spki) = found {
            self.progress
                .step(Step::GeneratingKey, &tr("step-found-candidate", &[]));
            j.entry.candidate_spki = Some(b64(&spki));
            return Ok(Next::Go(Step::KeyReady));
        }
        // Over a key only where certagent can show it retired that key
        // (the journal is a file).
        if let Some(key) = &replaced {
            let serial = &j.entry.token_serial;
            let bank = self.bank();
            if !retired::is_retired(&self.state_dir, serial, &id, key, &bank) {
                return Err(RenewalError::Other(format!(
                    "slot {} holds a key certagent cannot show it retired; it never generates over such a key. Nothing was changed",
                    hex::encode(&id)
                )));
            }
        }
        self.progress.step(
            Step::GeneratingKey,
            &tr(
                if replaced.is_some() {
                    "step-generating-over-retired"
                } else {
                    "step-generating-slot"
                },
                &[
                    ("key", Arg::Str(&j.entry.key.to_string())),
                    ("id", Arg::Str(&hex::encode(&id))),
                ],
            ),
        );
        let (kind, label_c) = (j.entry.key, j.entry.candidate_label.clone());
        // Over a retired key the module wants no id (it refuses one for an
        // occupied slot).
        let named = replaced.is_none().then_some(&id[..]);
        self.as_admin(|| self.token.generate_key_pair_in_slot(kind, named, &label_c))?;
        crash_point("after-keygen");
        // The card shows the new key only once read again.
        Ok(Next::ReadCardAgain)
    }

    /// On a card with fixed key slots: log in as the admin (the SO login)
    /// for `f`, and out again, whatever `f` did. A rejected admin PIN is
    /// reported, never retried.
    pub(super) fn as_admin<T>(
        &self,
        f: impl FnOnce() -> Result<T, TokenError>,
    ) -> Result<T, RenewalError> {
        let card = self.card.ok_or_else(|| {
            RenewalError::Other("this card needs its admin PIN, and none was given".into())
        })?;
        block_in_place(|| {
            self.token.login_admin(card.admin.as_ref())?;
            let result = f();
            if let Err(e) = self.token.logout() {
                log::debug!("logging the admin out: {e}");
            }
            result
        })
        .map_err(RenewalError::from)
    }

    /// On a card with fixed key slots: make sure the token holding key
    /// slot `id` is logged in as the user (a card's tokens log in apart).
    pub(super) fn user_login_for(&self, j: &Journal, id: &[u8]) -> Result<(), RenewalError> {
        if !j.entry.fixed_slot {
            return Ok(());
        }
        let card = self.card.ok_or_else(|| {
            RenewalError::Other("this card needs the user PIN, and none was given".into())
        })?;
        block_in_place(|| self.token.login_for(id, card.user.as_ref())).map_err(RenewalError::from)
    }

    /// Retire the old certificate on a card, on a fresh read of it (this
    /// run changed nothing on it). The new certificate is checked first: if
    /// the card lost it, it is written again. The old certificate is
    /// removed (admin login) unless the family's module would erase the new
    /// one with it; the removal is checked on the next fresh read, and tried
    /// once. The old key stays, since the card cannot delete keys. What
    /// could not be done is reported; the new certificate is proven by now,
    /// so it does not fail the renewal.
    pub(super) fn retire_on_card(
        &self,
        j: &mut Journal,
        old_cert: Option<&Cert>,
    ) -> Result<Next, RenewalError> {
        let family = self.token.card_family().cloned().ok_or_else(|| {
            RenewalError::Other("the token is no longer the card this attempt began on".into())
        })?;
        let new = self.candidate_id(j)?;
        let der = unb64(&j.entry.issued, "issued certificate")?;
        let certs = block_in_place(|| self.token.certificates())?;
        if !certs.iter().any(|c| c.id == new && c.der == der) {
            // Not on the card after all: install it again.
            return Ok(Next::Go(Step::Installing));
        }
        if let (Some(old), Some(old_cert)) = (j.old_id(), old_cert)
            && old != new
        {
            let old_hex = hex::encode(&old);
            let there = certs.iter().any(|c| c.id == old && c.der == old_cert.der);
            let erases_new = family
                .certificate_deletes_erase
                .as_deref()
                .is_some_and(|e| e == hex::encode(&new));
            if there && !erases_new && !j.entry.old_removal_tried {
                match self.as_admin(|| self.token.delete_certificate_if(&old, &old_cert.der)) {
                    Ok(_) => {}
                    // The card was not reached (pulled, another PIN): the
                    // journal is unchanged and the next run tries again.
                    Err(RenewalError::Token(e)) if e.is_user_actionable() => return Err(e.into()),
                    // OpenSC 0.23 erases an OpenPGP card's certificate and
                    // still answers CKR_GENERAL_ERROR: the next read tells.
                    Err(e) => log::info!("removing the old certificate {old_hex}: {e}"),
                }
                crash_point("after-retire");
                // Tried once, the card answered: the next fresh read says
                // whether it worked, and it is not tried again.
                j.entry.old_removal_tried = true;
                j.advance(Step::RetiringOld)?;
                return Ok(Next::ReadCardAgain);
            }
            if there {
                // Listed apart from now on, never used or renewed.
                if let Err(e) = retired::remember_replaced(&self.state_dir, &old_cert.der) {
                    log::warn!("cannot record the replaced certificate {old_hex}: {e}");
                }
            }
            let message = match (there, erases_new) {
                (false, _) => "step-removed-old-cert",
                (true, true) => "step-old-cert-stays",
                (true, false) => "step-old-cert-error",
            };
            self.progress.step(
                Step::RetiringOld,
                &tr(message, &[("id", Arg::Str(&old_hex))]),
            );
            if family.keys_stay {
                self.progress.step(
                    Step::RetiringOld,
                    &tr("step-old-key-stays", &[("id", Arg::Str(&old_hex))]),
                );
                if !there {
                    let serial = j.entry.token_serial.clone();
                    self.remember_retired(&serial, &old, old_cert);
                }
            }
        }
        Ok(Next::Go(Step::Done))
    }

    /// Record a key certagent leaves unused on a card (see [`retired`]).
    fn remember_retired(&self, serial: &str, slot: &[u8], cert: &Cert) {
        if let Err(e) = retired::remember(&self.state_dir, serial, slot, cert) {
            log::warn!(
                "cannot record the retired key in slot {}: {e}",
                hex::encode(slot)
            );
        }
    }
}
