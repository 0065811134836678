//! Dates and names for people, in both languages, at every offset from
//! UTC (src/i18n.rs `date_at`, `datetime_at`, `expiry_in`; src/text.rs
//! `clean`; a certificate's holder, src/cert.rs): any instant `time` holds
//! (years -9999..=9999, so X.509's 0000..=9999, RFC 5280's no-expiry date
//! and the ends of both years), any offset -23:59:59..=+23:59:59, any zone
//! name, any text. Never a panic; never a control, bidirectional or
//! invisible character in what is shown; bounded length; a date inside
//! 0000..=9999 locally is shown in local time.
#![no_main]

use certagent::cert::Cert;
use certagent::i18n::{Lang, date_at, datetime_at, expiry_in};
use certagent::text::{NAME_MAX, clean};
use libfuzzer_sys::fuzz_target;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

const BANK_CLIENT: &[u8] = include_bytes!("../data/bank-client-es.der");

/// What no text for people may hold, written out from Unicode's categories
/// again here: Cc, the bidirectional controls and the invisible ones.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
}

fn instant(secs: i64, nanos: u32) -> OffsetDateTime {
    let min = PrimitiveDateTime::MIN.assume_utc().unix_timestamp();
    let max = PrimitiveDateTime::MAX.assume_utc().unix_timestamp();
    let t = OffsetDateTime::from_unix_timestamp(secs.clamp(min, max))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.replace_nanosecond(nanos % 1_000_000_000).unwrap_or(t)
}

fuzz_target!(|input: (i64, u32, i32, u8, i64, &str, &str, u16)| {
    let (secs, nanos, offset_secs, shape, days, zone, name, max) = input;
    let t = match shape % 6 {
        0 => certagent::policy::NO_EXPIRY,
        // The first and last seconds of X.509's years.
        1 => time::macros::datetime!(0000-01-01 00:00:00 UTC),
        2 => time::macros::datetime!(9999-12-31 23:59:59 UTC),
        // Near them, by the seconds given.
        3 => instant(
            253_402_300_799_i64.saturating_sub(secs.rem_euclid(200_000)),
            nanos,
        ),
        4 => instant(
            (-62_167_219_200_i64).saturating_add(secs.rem_euclid(200_000)),
            nanos,
        ),
        _ => instant(secs, nanos),
    };
    let offset = UtcOffset::from_whole_seconds(offset_secs % 86_400).unwrap_or(UtcOffset::UTC);
    for lang in [Lang::En, Lang::Ja] {
        let d = date_at(lang, t, offset);
        let dt = datetime_at(lang, t, offset, zone);
        for s in [
            &d,
            &dt,
            &expiry_in(lang, Some(days)),
            &expiry_in(lang, None),
        ] {
            assert!(!s.chars().any(hidden), "{s:?}");
            assert!(s.chars().count() <= 80, "{s:?}");
        }
        let local = t.checked_to_offset(offset).map(|l| l.year());
        if local.is_some_and(|y| (0..=9999).contains(&y)) {
            assert!(!d.contains("(UTC)") || offset == UtcOffset::UTC, "{d}");
        }
    }

    // Names: cleaned, on one line, bounded.
    let max = usize::from(max % 512);
    let c = clean(name, max);
    assert!(!c.chars().any(hidden), "{c:?}");
    assert!(c.chars().count() <= max, "{max} {c:?}");
    assert_eq!(c.trim(), c);
    assert_eq!(clean(&c, max), c, "cleaning twice changes nothing");

    // A holder: the bank's certificate with the value of its subject's
    // last attribute overwritten by the input's bytes, as far as they fit
    // (the signature breaks, which does not matter for names).
    let mut der = BANK_CLIENT.to_vec();
    if let Some(p) = der.windows(4).rposition(|w| w == [0x06, 0x03, 0x55, 0x04]) {
        let len = usize::from(der.get(p + 6).copied().unwrap_or(0) & 0x7f);
        for (i, b) in name.bytes().take(len).enumerate() {
            if let Some(slot) = der.get_mut(p + 7 + i) {
                *slot = b;
            }
        }
    }
    if let Ok(cert) = Cert::from_der(&der) {
        let h = cert.holder();
        assert!(!h.chars().any(hidden), "{h:?}");
        assert!(h.chars().count() <= NAME_MAX, "{h:?}");
    }
});
