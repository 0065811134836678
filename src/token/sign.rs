//! Signing on the token: its mechanisms, and one signature per call.

use super::*;

impl Token {
    /// The mechanisms the token lists.
    pub fn mechanisms(&self) -> &[MechanismType] {
        self.mechanisms.get_or_init(|| {
            let key = (self.slot.id(), lock(&self.info).serial.clone());
            if let Some(known) = lock(&self.module.mechanisms).get(&key) {
                return known.clone();
            }
            let listed = match self.module.raw.as_ref().and_then(|r| {
                r.mechanisms(cryptoki_sys::CK_SLOT_ID::try_from(self.slot.id()).ok()?)
            }) {
                Some(r) => r.map(|l| {
                    l.into_iter()
                        .filter_map(|m| MechanismType::try_from(m).ok())
                        .collect()
                }),
                None => self.module.ctx.get_mechanism_list(self.slot),
            };
            match listed {
                Ok(list) => {
                    lock(&self.module.mechanisms).insert(key, list.clone());
                    list
                }
                Err(e) => {
                    log::warn!("cannot read the token's mechanism list: {e}");
                    Vec::new()
                }
            }
        })
    }

    pub(super) fn has(&self, m: MechanismType) -> bool {
        self.mechanisms().contains(&m)
    }

    /// Whether the token can make signatures of this scheme: its mechanism
    /// list offers a way, and the module profile does not rule it out.
    pub fn supports(&self, scheme: SignScheme) -> bool {
        let by_profile = self.module.profile().is_none_or(|p| p.signs_with(scheme));
        let by_token = match scheme {
            SignScheme::RsaPkcs1Sha256 => {
                self.has(MechanismType::SHA256_RSA_PKCS) || self.has(MechanismType::RSA_PKCS)
            }
            SignScheme::RsaPssSha256 => {
                self.has(MechanismType::SHA256_RSA_PKCS_PSS)
                    || self.has(MechanismType::RSA_PKCS_PSS)
            }
            SignScheme::EcdsaP256Sha256 => self.has(MechanismType::ECDSA),
        };
        by_profile && by_token
    }

    /// Sign `message` with the private key `id`. RSA signatures are the
    /// usual big-endian integer; ECDSA gives r||s (64 bytes), as JWS wants
    /// it; use [`ecdsa_raw_to_der`] for X.509.
    pub fn sign(&self, id: &[u8], scheme: SignScheme, message: &[u8]) -> Result<Vec<u8>> {
        if let Some(m) = self.elsewhere(id) {
            return m.sign(id, scheme, message);
        }
        let key = self
            .key_handle(ObjectClass::PRIVATE_KEY, id)?
            .ok_or_else(|| TokenError::KeyNotFound {
                id: hex::encode(id),
            })?;
        let digest = Sha256::digest(message);
        let pss = PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: cryptoki_sys::CK_ULONG::from(32u8).into(),
        };
        // Prefer the token hashing the message itself; fall back to hashing
        // on the host where the token only has the raw mechanism.
        let (mechanism, data): (Mechanism, Vec<u8>) = match scheme {
            SignScheme::RsaPkcs1Sha256 if self.has(MechanismType::SHA256_RSA_PKCS) => {
                (Mechanism::Sha256RsaPkcs, message.to_vec())
            }
            SignScheme::RsaPkcs1Sha256 if self.has(MechanismType::RSA_PKCS) => {
                // DigestInfo for SHA-256 (RFC 8017 section 9.2, note 1).
                let mut di = vec![
                    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
                    0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
                ];
                di.extend_from_slice(&digest);
                (Mechanism::RsaPkcs, di)
            }
            SignScheme::RsaPssSha256 if self.has(MechanismType::SHA256_RSA_PKCS_PSS) => {
                (Mechanism::Sha256RsaPkcsPss(pss), message.to_vec())
            }
            SignScheme::RsaPssSha256 if self.has(MechanismType::RSA_PKCS_PSS) => {
                (Mechanism::RsaPkcsPss(pss), digest.to_vec())
            }
            // Few tokens have CKM_ECDSA_SHA256 (SoftHSM has not): hash here.
            SignScheme::EcdsaP256Sha256 if self.has(MechanismType::ECDSA) => {
                (Mechanism::Ecdsa, digest.to_vec())
            }
            _ => {
                return Err(TokenError::Unsupported {
                    what: format!("{scheme} signatures"),
                });
            }
        };
        let session = self.session();
        let sig = match self.module.raw.as_ref().filter(|r| r.active()) {
            // C_SignInit, then one C_Sign into a buffer large enough for any key.
            Some(raw) => {
                session.sign_init(&mechanism, key).map_err(error::map)?;
                match raw.sign(session.handle(), &data) {
                    Some(sig) => sig.map_err(error::map)?,
                    None => {
                        // End the operation cryptoki began (C_SignFinal
                        // always ends it), so the session stays usable.
                        let _ = session.sign_final();
                        return Err(TokenError::Unsupported {
                            what: "signing in one call with this module; try again".into(),
                        });
                    }
                }
            }
            None => session.sign(&mechanism, key, &data).map_err(error::map)?,
        };
        drop(session);
        if scheme == SignScheme::EcdsaP256Sha256 && sig.len() != 64 {
            return Err(TokenError::Malformed(format!(
                "an ECDSA P-256 signature of {} bytes",
                sig.len()
            )));
        }
        Ok(sig)
    }
}
