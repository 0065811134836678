//! New key pairs on the token: generated, named by the SHA-1 of their
//! public key, adopted again after an interruption; on a card, in a slot.

use super::*;

impl Token {
    /// Generate a key pair on the token: private key sensitive and never
    /// extractable, both halves on the token, CKA_ID the SHA-1 of the
    /// modulus or EC point (as NSS and OpenSC derive it).
    pub fn generate_key_pair(&self, kind: KeyKind, label: &str) -> Result<GeneratedKey> {
        // A random provisional id, replaced by the derived one once the
        // public key is known (the modulus does not exist before C_GenerateKeyPair).
        let mut provisional = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut provisional)
            .map_err(|_| TokenError::Unsupported {
                what: "randomness".into(),
            })?;
        let provisional = provisional.to_vec();
        let (mechanism, public, private) = key_templates(kind, &provisional, label);
        let (pub_h, priv_h) = self
            .session()
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(|e| match error::map(e) {
                TokenError::Full { .. } => TokenError::Full {
                    what: "a new key pair".into(),
                },
                other => other,
            })?;
        let spki_der = match self.spki_of(pub_h) {
            Ok(s) => s,
            Err(e) => {
                self.destroy_quietly(&[pub_h, priv_h]);
                return Err(e);
            }
        };
        let Some(id) = keys::key_id_for_spki(&spki_der) else {
            self.destroy_quietly(&[pub_h, priv_h]);
            return Err(TokenError::Malformed("generated public key".into()));
        };
        // Both halves get the derived id, or (on a token that will not
        // change CKA_ID) both keep the provisional one. Any other failure
        // is an error: the pair stays under its unique label, and resume
        // adopts it by that label whatever ids the halves carry by then.
        let read_only = |e: &CkError| {
            matches!(
                e,
                CkError::Pkcs11(RvError::AttributeReadOnly | RvError::ActionProhibited, _)
            )
        };
        let s = self.session();
        match s.update_attributes(pub_h, &[Attribute::Id(id.clone())]) {
            Ok(()) => {}
            Err(e) if read_only(&e) => {
                log::warn!(
                    "the token would not set CKA_ID to the SHA-1 of the public key ({e}); keeping id {}",
                    hex::encode(&provisional)
                );
                return Ok(GeneratedKey {
                    id: provisional,
                    spki_der,
                });
            }
            Err(e) => return Err(error::map(e)),
        }
        match s.update_attributes(priv_h, &[Attribute::Id(id.clone())]) {
            Ok(()) => {
                drop(s);
                self.cache(ObjectClass::PUBLIC_KEY, &id, pub_h);
                self.cache(ObjectClass::PRIVATE_KEY, &id, priv_h);
                Ok(GeneratedKey { id, spki_der })
            }
            Err(e) if read_only(&e) => {
                log::warn!(
                    "the token would not set the private key's CKA_ID ({e}); keeping id {}",
                    hex::encode(&provisional)
                );
                s.update_attributes(pub_h, &[Attribute::Id(provisional.clone())])
                    .map_err(error::map)?;
                Ok(GeneratedKey {
                    id: provisional,
                    spki_der,
                })
            }
            Err(e) => Err(error::map(e)),
        }
    }

    /// Generate a key pair into the card's key slot `id` (a card whose
    /// slots are fixed: the id names the slot). The caller is logged in as
    /// the card wants it (the admin for OpenPGP cards). What the module
    /// answers about the new pair is not trusted (OpenSC's values are
    /// bogus, and the pair signs only once the card is read again): the
    /// public key is read by id afterwards.
    /// `id: None` lets the module choose (OpenSC on an OpenPGP card: slot
    /// 03, replacing the key there).
    pub fn generate_key_pair_in_slot(
        &self,
        kind: KeyKind,
        id: Option<&[u8]>,
        label: &str,
    ) -> Result<()> {
        let (mechanism, mut public, mut private) =
            key_templates(kind, id.unwrap_or_default(), label);
        if id.is_none() {
            for t in [&mut public, &mut private] {
                t.retain(|a| !matches!(a, Attribute::Id(_)));
            }
        }
        self.session()
            .generate_key_pair(&mechanism, &public, &private)
            .map(|_| ())
            .map_err(error::map)
    }

    /// Find the key pair generated under `label` (unique per attempt) and
    /// give both halves the CKA_ID derived from the public key. This repairs
    /// a generation interrupted anywhere between C_GenerateKeyPair and the
    /// second CKA_ID update (the halves may carry different ids then).
    /// `None` when no complete pair carries the label.
    pub fn adopt_key_pair(&self, label: &str) -> Result<Option<GeneratedKey>> {
        let by_label = |class| {
            self.find(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
        };
        let publics = by_label(ObjectClass::PUBLIC_KEY)?;
        let privates = by_label(ObjectClass::PRIVATE_KEY)?;
        let (Some(&pub_h), Some(_)) = (publics.first(), privates.first()) else {
            return Ok(None);
        };
        let spki_der = self.spki_of(pub_h)?;
        let derived = keys::key_id_for_spki(&spki_der)
            .ok_or_else(|| TokenError::Malformed("public key".into()))?;
        let s = self.session();
        for h in publics.iter().chain(privates.iter()) {
            s.update_attributes(*h, &[Attribute::Id(derived.clone())])
                .map_err(error::map)?;
        }
        Ok(Some(GeneratedKey {
            id: derived,
            spki_der,
        }))
    }
}

/// The mechanism and templates for a new key pair of `kind` under `id`
/// and `label`: both halves on the token, the private key sensitive, never
/// extractable and for signing only.
pub(super) fn key_templates(
    kind: KeyKind,
    id: &[u8],
    label: &str,
) -> (Mechanism<'static>, Vec<Attribute>, Vec<Attribute>) {
    let common = |private: bool| {
        vec![
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    };
    let mut public = common(false);
    public.push(Attribute::Verify(true));
    let mut private = common(true);
    private.extend([
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ]);
    let mechanism = match kind {
        KeyKind::Rsa2048 | KeyKind::Rsa3072 => {
            // CK_ULONG: 8 bytes on Linux, 4 on Windows.
            let bits = cryptoki_sys::CK_ULONG::from(if kind == KeyKind::Rsa2048 {
                2048u16
            } else {
                3072
            });
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            public.push(Attribute::Encrypt(false));
            private.push(Attribute::Decrypt(false));
            Mechanism::RsaPkcsKeyPairGen
        }
        KeyKind::EcP256 => {
            public.push(Attribute::EcParams(keys::p256_params_der()));
            Mechanism::EccKeyPairGen
        }
    };
    (mechanism, public, private)
}
