//! What a library and a token say about themselves: library info, slots,
//! a token's identity and PIN state.

use super::*;

/// What the library says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryInfo {
    pub path: String,
    pub profile: Option<String>,
    pub manufacturer: String,
    pub description: String,
    pub version: String,
    pub cryptoki_version: String,
}

/// One slot and its token, as `certagent tokens` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct SlotReport {
    pub slot_description: String,
    pub slot_manufacturer: String,
    pub removable: bool,
    pub hardware: bool,
    pub token: Option<TokenInfo>,
}

/// A token's identity and PIN state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub label: String,
    pub serial: String,
    pub manufacturer: String,
    pub model: String,
    pub initialized: bool,
    pub login_required: bool,
    pub user_pin_initialized: bool,
    pub pin_count_low: bool,
    pub pin_final_try: bool,
    pub pin_locked: bool,
    pub pin_to_be_changed: bool,
    pub protected_auth_path: bool,
    pub write_protected: bool,
}

impl TokenInfo {
    pub(super) fn from_ck(t: &cryptoki::slot::TokenInfo) -> TokenInfo {
        TokenInfo {
            label: t.label().trim_end().to_string(),
            serial: t.serial_number().trim_end().to_string(),
            manufacturer: t.manufacturer_id().trim_end().to_string(),
            model: t.model().trim_end().to_string(),
            initialized: t.token_initialized(),
            login_required: t.login_required(),
            user_pin_initialized: t.user_pin_initialized(),
            pin_count_low: t.user_pin_count_low(),
            pin_final_try: t.user_pin_final_try(),
            pin_locked: t.user_pin_locked(),
            pin_to_be_changed: t.user_pin_to_be_changed(),
            protected_auth_path: t.protected_authentication_path(),
            write_protected: t.write_protected(),
        }
    }

    /// `pkcs11:` URI naming this token (RFC 7512), as p11tool prints it.
    pub fn uri(&self) -> String {
        format!(
            "pkcs11:model={};manufacturer={};serial={};token={}",
            pct(&self.model),
            pct(&self.manufacturer),
            pct(&self.serial),
            pct(&self.label)
        )
    }
}

pub(super) fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
