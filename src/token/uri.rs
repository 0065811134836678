//! Choosing a token: by label, serial, or an RFC 7512 `pkcs11:` URI.
//!
//! Never by slot id: modules such as SoftHSM renumber slots between runs.

use std::fmt;

/// Which token to use. Empty fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSelector {
    pub label: Option<String>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    /// `id=` of a URI: the certificate/key CKA_ID to use.
    pub object_id: Option<Vec<u8>>,
}

/// Why a `pkcs11:` URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("not a pkcs11: URI")]
    Scheme,
    #[error("bad percent-encoding in {0:?}")]
    Encoding(String),
    #[error("attribute {0:?} has no value")]
    Empty(String),
    #[error("attribute {0:?} is given twice")]
    Repeated(String),
    #[error(
        "slot-id is not a stable way to find a token (modules renumber slots); use token= or serial="
    )]
    SlotId,
    #[error("a PIN must never be written in the configuration; remove {0}")]
    Pin(&'static str),
    #[error("unknown attribute {0:?}")]
    Unknown(String),
}

impl TokenSelector {
    /// Parse an RFC 7512 URI. Token attributes select the token; `id`
    /// selects the object; library and slot descriptions are accepted and
    /// ignored (the module comes from `[token] module`).
    pub fn from_uri(uri: &str) -> Result<TokenSelector, UriError> {
        let rest = uri.strip_prefix("pkcs11:").ok_or(UriError::Scheme)?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut sel = TokenSelector::default();
        let mut seen: Vec<String> = Vec::new();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, raw) = attr.split_once('=').unwrap_or((attr, ""));
            if seen.iter().any(|s| s == name) {
                return Err(UriError::Repeated(name.to_string()));
            }
            seen.push(name.to_string());
            let value = percent_decode(raw).ok_or_else(|| UriError::Encoding(attr.to_string()))?;
            if value.is_empty() {
                return Err(UriError::Empty(name.to_string()));
            }
            let text = || {
                String::from_utf8(value.clone()).map_err(|_| UriError::Encoding(attr.to_string()))
            };
            match name {
                "token" => sel.label = Some(text()?),
                "serial" => sel.serial = Some(text()?),
                "manufacturer" => sel.manufacturer = Some(text()?),
                "model" => sel.model = Some(text()?),
                "id" => sel.object_id = Some(value),
                "slot-id" => return Err(UriError::SlotId),
                "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer"
                | "object"
                | "type" => {}
                n if n.starts_with("x-") => {}
                n => return Err(UriError::Unknown(n.to_string())),
            }
        }
        for attr in query.unwrap_or("").split('&').filter(|a| !a.is_empty()) {
            let name = attr.split_once('=').map_or(attr, |(n, _)| n);
            match name {
                "pin-value" => return Err(UriError::Pin("pin-value")),
                "pin-source" | "module-name" | "module-path" => {}
                n if n.starts_with("x-") => {}
                n => return Err(UriError::Unknown(n.to_string())),
            }
        }
        Ok(sel)
    }

    /// Whether a token with these properties is the one wanted.
    pub fn matches(&self, label: &str, serial: &str, manufacturer: &str, model: &str) -> bool {
        let eq = |want: &Option<String>, have: &str| {
            want.as_deref()
                .is_none_or(|w| w.trim_end() == have.trim_end())
        };
        eq(&self.label, label)
            && eq(&self.serial, serial)
            && eq(&self.manufacturer, manufacturer)
            && eq(&self.model, model)
    }

    /// Whether nothing is specified (any single token will do).
    pub fn is_empty(&self) -> bool {
        self.label.is_none()
            && self.serial.is_none()
            && self.manufacturer.is_none()
            && self.model.is_none()
    }
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (k, v) in [
            ("label", &self.label),
            ("serial", &self.serial),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k} {v:?}"));
            }
        }
        if parts.is_empty() {
            f.write_str("any token")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = s.get(i.saturating_add(1)..i.saturating_add(3))?;
            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i = i.saturating_add(3);
        } else {
            out.push(c);
            i = i.saturating_add(1);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_attributes_and_id() {
        let s = TokenSelector::from_uri(
            "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=a1b2;token=bank-token;id=%01%ff;object=x;type=cert",
        )
        .unwrap();
        assert_eq!(s.label.as_deref(), Some("bank-token"));
        assert_eq!(s.serial.as_deref(), Some("a1b2"));
        assert_eq!(s.manufacturer.as_deref(), Some("SoftHSM project"));
        assert_eq!(s.model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(s.object_id, Some(vec![1, 0xff]));
        assert!(s.matches("bank-token", "a1b2", "SoftHSM project", "SoftHSM v2"));
        assert!(!s.matches("other", "a1b2", "SoftHSM project", "SoftHSM v2"));
    }

    #[test]
    fn refuses_what_it_must() {
        assert_eq!(
            TokenSelector::from_uri("pkcs12:token=a"),
            Err(UriError::Scheme)
        );
        assert_eq!(
            TokenSelector::from_uri("pkcs11:slot-id=1"),
            Err(UriError::SlotId)
        );
        assert_eq!(
            TokenSelector::from_uri("pkcs11:token=a?pin-value=1234"),
            Err(UriError::Pin("pin-value"))
        );
        assert!(matches!(
            TokenSelector::from_uri("pkcs11:token=%zz"),
            Err(UriError::Encoding(_))
        ));
        // Two hex digits, nothing else: `u8::from_str_radix` alone took a
        // sign ("%+f" as 0x0f).
        for bad in ["pkcs11:token=%+f", "pkcs11:id=%+1", "pkcs11:token=%-1"] {
            assert!(
                matches!(TokenSelector::from_uri(bad), Err(UriError::Encoding(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            TokenSelector::from_uri("pkcs11:token=%4"),
            Err(UriError::Encoding(_))
        ));
        assert!(matches!(
            TokenSelector::from_uri("pkcs11:token="),
            Err(UriError::Empty(_))
        ));
        assert!(matches!(
            TokenSelector::from_uri("pkcs11:token=a;token=b"),
            Err(UriError::Repeated(_))
        ));
        assert!(matches!(
            TokenSelector::from_uri("pkcs11:colour=red"),
            Err(UriError::Unknown(_))
        ));
        assert!(TokenSelector::from_uri("pkcs11:x-vendor=1;token=a?module-name=softhsm2").is_ok());
    }

    #[test]
    fn empty_selector_matches_anything() {
        let s = TokenSelector::from_uri("pkcs11:").unwrap();
        assert!(s.is_empty());
        assert!(s.matches("a", "b", "c", "d"));
        assert_eq!(s.to_string(), "any token");
    }

    #[test]
    fn trailing_blanks_of_fixed_width_fields_do_not_matter() {
        let s = TokenSelector {
            label: Some("bank".into()),
            ..Default::default()
        };
        assert!(s.matches("bank      ", "", "", ""));
    }
}
