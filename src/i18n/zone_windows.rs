//! The local time zone on Windows: the offset Windows applies at that
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
            (o, format!("UTC{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs()))
        }
        Err(_) => (UtcOffset::UTC, "UTC".into()),
    }
}
