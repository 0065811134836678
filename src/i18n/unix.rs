//! The user's language and local time zone on Unix: the locale variables
//! and the C library's time zone database.

use time::{OffsetDateTime, UtcOffset};

/// The computer's local time offset at `t`, and its zone's abbreviation
/// ("CET", "JST"), from the C library's time zone database (the TZ
/// variable, /etc/localtime). The `time` crate refuses to read it in a
/// program with threads; `localtime_r` is thread-safe. UTC when it fails.
pub(super) fn local_zone(t: OffsetDateTime) -> (UtcOffset, String) {
    let secs = t.unix_timestamp() as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r fills; both pointers are
    // valid for the call. tm_zone points into the C library's static zone
    // names, read at once.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return (UtcOffset::UTC, "UTC".into());
        }
        let offset = i32::try_from(tm.tm_gmtoff)
            .ok()
            .and_then(|s| UtcOffset::from_whole_seconds(s).ok())
            .unwrap_or(UtcOffset::UTC);
        let zone = if tm.tm_zone.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(tm.tm_zone)
                .to_string_lossy()
                .into_owned()
        };
        (offset, zone)
    }
}

/// The locale the user asked for: the first of `LC_ALL`, `LC_MESSAGES`,
/// `LANG` that is set and not empty.
pub(super) fn user_language() -> Option<String> {
    ["LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
}
