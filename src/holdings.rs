//! What a token holds, told apart: the bank's certificates (signed by the
//! bank's issuing CA, [`BankIssuers`]) and the others, each with its
//! CKA_ID and label. Out of [`crate::cert`], which parses hostile bytes and
//! touches no token.

use sha2::Digest;

use crate::cert::{Cert, signed_by};
use crate::token::{Token, TokenError};

/// A certificate on the token, with its CKA_ID and label.
#[derive(Debug, Clone)]
pub struct TokenCert {
    pub id: Vec<u8>,
    pub label: String,
    pub cert: Cert,
}

/// What makes a certificate the bank's: it was signed by the bank's issuing
/// CA (the `ca_certs` pin, or `/cacerts` remembered from the last contact),
/// or, where no CA is known yet, its issuer is the configured name.
#[derive(Debug, Clone, Default)]
pub struct BankIssuers {
    /// The issuing CA certificates (DER).
    pub ca_certs: Vec<Vec<u8>>,
    /// `[bank] issuer`, as certagent prints names (RFC 4514).
    pub issuer_name: Option<String>,
    /// No bank is configured at all (the CLI's `status` on a bare token):
    /// every end-entity certificate is listed as the bank's. Never set
    /// where a page, a logon or a renewal could use the answer.
    pub any: bool,
    /// SHA-256 (hex) of bank certificates certagent replaced on a card
    /// that could not remove them (see `renewal::retired`).
    pub replaced: Vec<String>,
}

impl BankIssuers {
    /// Whether anything is known to tell the bank's certificates apart.
    pub fn known(&self) -> bool {
        self.any || !self.ca_certs.is_empty() || self.issuer_name.is_some()
    }

    /// Whether the bank issued `cert`. The signature is checked, not only
    /// the name, so a certificate that copies the bank CA's name is not the
    /// bank's; validity dates are not, since an expired bank certificate is
    /// still the bank's (it is what `enroll` replaces).
    pub fn issued(&self, cert: &Cert) -> bool {
        if self.any {
            return true;
        }
        if !self.ca_certs.is_empty() {
            return self.ca_certs.iter().any(|ca| signed_by(&cert.der, ca));
        }
        self.issuer_name
            .as_deref()
            .is_some_and(|n| names_equal(n, &cert.issuer))
    }
}

fn names_equal(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect()
    };
    norm(a) == norm(b)
}

/// The certificates on a token, told apart.
#[derive(Debug, Clone, Default)]
pub struct TokenCerts {
    /// The bank's end-entity certificates, soonest expiry first.
    pub bank: Vec<TokenCert>,
    /// Other end-entity certificates (another issuer, or an empty CKA_ID):
    /// listed apart, never offered to a page, used for logon or renewed.
    pub others: Vec<TokenCert>,
    /// Whether the bank's issuer was known; if not, `bank` is empty.
    pub issuer_known: bool,
    /// CKA_IDs of the bank's certificates certagent replaced with a newer
    /// one but could not remove (a card that cannot delete them): listed
    /// with `others`, never offered, used or renewed.
    pub superseded: Vec<Vec<u8>>,
}

/// The end-entity certificates on the token (CA certificates some tokens
/// carry are left out), split into the bank's and the others. Unparseable
/// objects are logged and skipped, never fatal. With `issuers` unknown,
/// nothing counts as the bank's.
pub fn token_certificates(token: &Token, issuers: &BankIssuers) -> Result<TokenCerts, TokenError> {
    let mut out = TokenCerts {
        issuer_known: issuers.known(),
        ..TokenCerts::default()
    };
    for obj in token.certificates()? {
        match Cert::from_der(&obj.der) {
            Ok(cert) if cert.is_ca => {}
            Ok(cert) => {
                let bank = !obj.id.is_empty() && issuers.issued(&cert);
                let c = TokenCert {
                    id: obj.id,
                    label: obj.label,
                    cert,
                };
                if bank {
                    out.bank.push(c)
                } else {
                    out.others.push(c)
                }
            }
            Err(e) => log::warn!(
                "skipping certificate object {:?} (id {}): {e}",
                obj.label,
                hex::encode(&obj.id)
            ),
        }
    }
    // What certagent replaced but the card could not remove.
    let (current, replaced): (Vec<TokenCert>, Vec<TokenCert>) =
        std::mem::take(&mut out.bank).into_iter().partition(|c| {
            let digest = hex::encode(sha2::Sha256::digest(&c.cert.der));
            !issuers.replaced.contains(&digest)
        });
    out.bank = current;
    out.superseded = replaced.iter().map(|c| c.id.clone()).collect();
    out.others.extend(replaced);
    out.bank.sort_by_key(|c| (c.cert.not_after, c.id.clone()));
    out.others.sort_by_key(|c| (c.cert.not_after, c.id.clone()));
    Ok(out)
}
