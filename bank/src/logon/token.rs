//! The token's format (certagent-auth:1) as the agent returns it: its
//! JSON, the message it signs, and the decoding of its fields into a
//! [`Presented`] token, not yet checked.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use certagent::cert::{Cert, rfc3339};
use certagent::token::SignScheme;

use super::LogonError;

/// The only token format this bank reads.
pub const TOKEN_FORMAT: &str = "certagent-auth:1";
/// A token is a certificate and a signature: a few KiB.
pub const MAX_TOKEN: usize = 16 * 1024;

/// The agent's token as it arrives. Unknown fields are ignored, so a later
/// agent may add some.
#[derive(Debug, Deserialize)]
pub(super) struct TokenJson {
    format: String,
    certificate: String,
    algorithm: String,
    signature: String,
    origin: String,
    /// The page adds the challenge it passed to the agent; it must be the
    /// one in the challenge cookie, which is used when it is absent.
    #[serde(default)]
    challenge: Option<String>,
}

/// The message the agent signs: `SHA-256(origin) || SHA-256(challenge)`.
pub fn signed_message(origin: &str, challenge: &[u8]) -> [u8; 64] {
    let mut msg = [0u8; 64];
    msg[..32].copy_from_slice(&Sha256::digest(origin.as_bytes()));
    msg[32..].copy_from_slice(&Sha256::digest(challenge));
    msg
}

/// A JWS algorithm name as a signature scheme.
fn scheme(name: &str) -> Result<SignScheme, LogonError> {
    SignScheme::ALL
        .into_iter()
        .find(|s| s.jws_name() == name)
        .ok_or_else(|| LogonError::UnsupportedAlgorithm(name.chars().take(32).collect()))
}

/// A token whose fields decode, not yet checked.
pub(super) struct Presented {
    pub(super) cert: Cert,
    pub(super) scheme: SignScheme,
    pub(super) signature: Vec<u8>,
}

fn decode_token(token: &TokenJson) -> Result<Presented, LogonError> {
    let der = STANDARD
        .decode(token.certificate.trim())
        .map_err(|_| LogonError::BadBase64("certificate"))?;
    let cert = Cert::from_der(&der).map_err(|e| LogonError::BadCertificate(e.0))?;
    if cert.not_before > cert.not_after {
        return Err(LogonError::BadCertificate(format!(
            "its validity ends before it begins (not before {}, not after {})",
            rfc3339(cert.not_before),
            rfc3339(cert.not_after)
        )));
    }
    let signature = STANDARD
        .decode(token.signature.trim())
        .map_err(|_| LogonError::BadBase64("signature"))?;
    let scheme = scheme(&token.algorithm)?;
    if !scheme.fits(cert.key) {
        return Err(LogonError::AlgorithmMismatch {
            alg: scheme.jws_name(),
            key: cert.key.to_string(),
        });
    }
    Ok(Presented {
        cert,
        scheme,
        signature,
    })
}

/// The body as a token of the right format, and the challenge it answers,
/// decoded: the one issued to this browser (the challenge cookie). A
/// `challenge` field in the token, if any, must be that same challenge: a
/// challenge is only good in the browser it was issued to.
pub(super) fn parse_token(
    body: &[u8],
    cookie_challenge: Option<&str>,
) -> Result<(TokenJson, Vec<u8>), LogonError> {
    let token: TokenJson = serde_json::from_slice(body)
        .map_err(|e| LogonError::Malformed(e.to_string().chars().take(200).collect::<String>()))?;
    if token.format != TOKEN_FORMAT {
        return Err(LogonError::Format(token.format.chars().take(64).collect()));
    }
    let decode = |text: &str| {
        URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| LogonError::BadChallenge)
    };
    let challenge = match (token.challenge.as_deref(), cookie_challenge) {
        (None, None) => return Err(LogonError::NoChallenge),
        (Some(_), None) => return Err(LogonError::NoChallengeCookie),
        (None, Some(cookie)) => decode(cookie)?,
        (Some(field), Some(cookie)) => {
            let cookie = decode(cookie)?;
            if decode(field)? != cookie {
                return Err(LogonError::ChallengeMismatch);
            }
            cookie
        }
    };
    Ok((token, challenge))
}

/// A token made for this bank's `origin`, its fields decoded.
pub(super) fn present(token: &TokenJson, origin: &str) -> Result<Presented, LogonError> {
    if token.origin != origin {
        return Err(LogonError::WrongOrigin {
            got: token.origin.chars().take(200).collect(),
            want: origin.to_string(),
        });
    }
    decode_token(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_two_hashes() {
        let m = signed_message("https://a", b"c");
        assert_eq!(&m[..32], Sha256::digest(b"https://a").as_slice());
        assert_eq!(&m[32..], Sha256::digest(b"c").as_slice());
    }
}
