//! A card shown as several PKCS#11 tokens (an OpenPGP card through OpenSC:
//! the signature key on a token of its own): its other tokens, and which
//! of them holds a key slot.

use super::*;

impl Token {
    /// The other tokens of this card: present, on the same reader, with the
    /// same serial, maker and model.
    pub(super) fn open_siblings(&self) -> Result<Vec<Token>> {
        let reader = self.module.reader_of(self.slot)?;
        let me = lock(&self.info).clone();
        let mut out = Vec::new();
        for slot in self.module.slot_list(true)? {
            if slot == self.slot || self.module.reader_of(slot).ok().as_ref() != Some(&reader) {
                continue;
            }
            let Ok(info) = self.module.token_info(slot) else {
                continue;
            };
            if info.serial == me.serial
                && info.manufacturer == me.manufacturer
                && info.model == me.model
                && info.initialized
            {
                out.push(Token::one(self.module.clone(), slot, info)?);
            }
        }
        Ok(out)
    }

    /// The card family of this token whose fixed key slots certagent can
    /// renew into (driver profile `[[cards]]`, by token label), if any.
    pub fn card_family(&self) -> Option<&CardFamily> {
        let label = lock(&self.info).label.clone();
        // No profile knows a card of this label: no need to ask the module
        // who it is (C_GetInfo) to find its profile.
        let known = self.module.drivers.iter().any(|p| {
            p.cards
                .iter()
                .any(|c| label.starts_with(c.label_prefix.trim()))
        });
        if !known || !self.fixed_key_slots() {
            return None;
        }
        self.module
            .profile()?
            .cards
            .iter()
            .find(|c| label.starts_with(c.label_prefix.trim()))
    }

    /// This token and the card's other tokens.
    pub fn members(&self) -> impl Iterator<Item = &Token> {
        std::iter::once(self).chain(self.siblings.iter())
    }

    /// The token of this card that holds key slot `id` (by the family's
    /// `key_tokens`); this token for any other id or token.
    pub fn member_for(&self, id: &[u8]) -> &Token {
        if self.siblings.is_empty() {
            return self;
        }
        let Some(label) = self
            .card_family()
            .and_then(|f| f.key_tokens.get(&hex::encode(id)))
        else {
            return self;
        };
        self.members()
            .find(|t| lock(&t.info).label == *label)
            .unwrap_or(self)
    }

    /// The member for `id` when it is another token than this one.
    pub(super) fn elsewhere(&self, id: &[u8]) -> Option<&Token> {
        let m = self.member_for(id);
        (!std::ptr::eq(m, self)).then_some(m)
    }

    /// Whether this token keeps keys in slots the card fixes (the CKA_ID
    /// is the card's, key generation wants a particular slot): the driver
    /// profile says so for the module or for this token's model.
    pub fn fixed_key_slots(&self) -> bool {
        let Some(p) = self.module.profile() else {
            return false;
        };
        let model = lock(&self.info).model.clone();
        p.quirks.fixed_key_ids
            || p.quirks
                .fixed_key_id_models
                .iter()
                .any(|m| m.trim() == model.trim())
    }
}
