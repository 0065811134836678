//! The user's language and local time zone on Windows. The language is the
//! user's display language (`GetUserDefaultUILanguage`: Japanese is primary
//! language 0x11), as Windows programs follow it. The zone: the offset
//! Windows applies at that
//! instant (the `time` crate asks `SystemTimeToTzSpecificLocalTime`, which
//! is thread-safe there), named as Windows names zones in its settings
//! ("UTC+09:00"), since Windows has no abbreviations such as "JST".

use time::{OffsetDateTime, UtcOffset};

/// The offset at `t` and its name; UTC when Windows does not say.
pub(super) fn local_zone(t: OffsetDateTime) -> (UtcOffset, String) {
    match UtcOffset::local_offset_at(t) {
        Ok(o) if o == UtcOffset::UTC => (o, "UTC".into()),
        Ok(o) => {
            let (h, m, _) = o.as_hms();
            let sign = if o.is_negative() { '-' } else { '+' };
            (
                o,
                format!("UTC{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs()),
            )
        }
        Err(_) => (UtcOffset::UTC, "UTC".into()),
    }
}

/// The user's display language as a locale name certagent reads ("ja",
/// else "en").
pub(super) fn user_language() -> Option<String> {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetUserDefaultUILanguage() -> u16;
    }
    /// LANG_JAPANESE, the primary language of every Japanese LANGID.
    const LANG_JAPANESE: u16 = 0x11;
    // SAFETY: no arguments, no failure; returns a LANGID.
    let id = unsafe { GetUserDefaultUILanguage() };
    Some(
        if id & 0x3ff == LANG_JAPANESE {
            "ja"
        } else {
            "en"
        }
        .into(),
    )
}
