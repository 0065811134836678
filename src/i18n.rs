//! The customer's language: English, and Japanese for the bank's Japanese
//! customers, from Fluent catalogues (`src/i18n/*.ftl`).
//!
//! Fluent (Mozilla's localisation system, through `fluent-bundle`) rather
//! than gettext: its catalogues are plain text compiled into the program
//! (nothing to install beside it), it handles plurals per language, and
//! its messages name their variables, which a test checks are the same in
//! every language. The language comes from `LC_ALL`, `LC_MESSAGES` and
//! `LANG`, in that order, as people expect; anything but Japanese is
//! English. Machine-readable output (`--json` fields and codes) never
//! goes through here.

use std::borrow::Cow;
use std::sync::OnceLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use time::{OffsetDateTime, UtcOffset};

const EN: &str = include_str!("i18n/en.ftl");
const JA: &str = include_str!("i18n/ja.ftl");

/// A language certagent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    /// The language a locale name asks for (`ja_JP.UTF-8` → Japanese).
    pub fn from_locale(locale: &str) -> Lang {
        let l = locale.trim().to_ascii_lowercase();
        if l == "ja" || l.starts_with("ja_") || l.starts_with("ja-") || l.starts_with("ja.") {
            Lang::Ja
        } else {
            Lang::En
        }
    }

    /// The user's language: on Unix the first of `LC_ALL`, `LC_MESSAGES`,
    /// `LANG` that is set and not empty; on Windows the user's display
    /// language (Settings, Time & language).
    pub fn from_env() -> Lang {
        platform::user_language().map_or(Lang::En, |v| Lang::from_locale(&v))
    }

    /// This process's language (read once).
    pub fn current() -> Lang {
        static CURRENT: OnceLock<Lang> = OnceLock::new();
        *CURRENT.get_or_init(Lang::from_env)
    }

    fn source(self) -> &'static str {
        match self {
            Lang::En => EN,
            Lang::Ja => JA,
        }
    }

    fn tag(self) -> unic_langid::LanguageIdentifier {
        let tag = match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        };
        // Both tags are valid: the default (undetermined) is never used.
        tag.parse().unwrap_or_default()
    }
}

/// A value for a message's variable.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Str(&'a str),
    Num(i64),
}

fn bundle(lang: Lang) -> &'static FluentBundle<FluentResource> {
    static BUNDLES: OnceLock<[FluentBundle<FluentResource>; 2]> = OnceLock::new();
    let bundles = BUNDLES.get_or_init(|| [build(Lang::En), build(Lang::Ja)]);
    match lang {
        Lang::En => &bundles[0],
        Lang::Ja => &bundles[1],
    }
}

fn build(lang: Lang) -> FluentBundle<FluentResource> {
    // The catalogues are part of the program and checked by tests: a
    // syntax error would be a build defect. Whatever parses is used.
    let resource = FluentResource::try_new(lang.source().to_string()).unwrap_or_else(|(r, _)| r);
    let mut bundle = FluentBundle::new_concurrent(vec![lang.tag()]);
    // No Unicode isolation marks around values: dialogs and notices strip
    // bidirectional controls anyway, and terminals show them as junk.
    bundle.set_use_isolating(false);
    let _ = bundle.add_resource(resource);
    bundle
}

/// Whether the catalogues have a message `id` (English has every one).
pub fn has(id: &str) -> bool {
    bundle(Lang::En).has_message(id)
}

/// The message `id` in `lang` with `args`; English where `lang` lacks it,
/// the id itself where English does too.
pub fn tr_in(lang: Lang, id: &str, args: &[(&str, Arg<'_>)]) -> String {
    let mut fargs = FluentArgs::new();
    for (k, v) in args {
        match v {
            Arg::Str(s) => fargs.set(*k, FluentValue::from(*s)),
            Arg::Num(n) => fargs.set(*k, FluentValue::from(*n)),
        }
    }
    for l in [lang, Lang::En] {
        let b = bundle(l);
        if let Some(pattern) = b.get_message(id).and_then(|m| m.value()) {
            let mut errors = Vec::new();
            let text: Cow<'_, str> = b.format_pattern(pattern, Some(&fargs), &mut errors);
            return text.into_owned();
        }
    }
    id.to_string()
}

/// The message `id` in this process's language.
pub fn tr(id: &str, args: &[(&str, Arg<'_>)]) -> String {
    tr_in(Lang::current(), id, args)
}

/// When a certificate expires, as people say it: "expires in 20 days",
/// "expired 5 days ago" (`days_left` as [`crate::policy::days_left`]
/// counts, rounded up), or "never expires" (`None`).
pub fn expiry_in(lang: Lang, days_left: Option<i64>) -> String {
    match days_left {
        None => tr_in(lang, "never-expires", &[]),
        Some(d) if d > 0 => tr_in(lang, "expires-in", &[("days", Arg::Num(d))]),
        Some(d) => tr_in(
            lang,
            "expired-ago",
            &[("days", Arg::Num(d.saturating_neg()))],
        ),
    }
}

/// [`expiry_in`] in this process's language.
pub fn expiry(days_left: Option<i64>) -> String {
    expiry_in(Lang::current(), days_left)
}

// The computer's local time zone and the user's language, one file per
// platform.
#[cfg(unix)]
#[path = "i18n/unix.rs"]
mod platform;
#[cfg(not(unix))]
#[path = "i18n/windows.rs"]
mod platform;
use platform::local_zone;

fn date_of(lang: Lang, t: OffsetDateTime) -> String {
    match lang {
        Lang::Ja => format!("{}年{}月{}日", t.year(), u8::from(t.month()), t.day()),
        // time's Month displays its English name.
        Lang::En => format!("{} {} {}", t.day(), t.month(), t.year()),
    }
}

/// The years a date for people may have: X.509's 0000..=9999.
const YEARS: std::ops::RangeInclusive<i32> = 0..=9999;

/// `t` as the clock reads at `offset`, and whether that is UTC standing in
/// for it: where the date there would leave the years 0000..=9999 (the end
/// of year 9999 east of UTC, as for RFC 5280's "no expiry" date
/// 99991231235959Z; the start of year 0000 west of it), UTC is shown. A
/// `t` whose UTC date leaves them too is shown as it is.
fn on_clock(t: OffsetDateTime, offset: UtcOffset) -> (OffsetDateTime, bool) {
    let within = |l: &OffsetDateTime| YEARS.contains(&l.year());
    if let Some(l) = t.checked_to_offset(offset).filter(within) {
        return (l, false);
    }
    match t.checked_to_offset(UtcOffset::UTC) {
        Some(u) => (u, offset != UtcOffset::UTC || t.offset() != UtcOffset::UTC),
        None => (t, t.offset() != offset),
    }
}

/// [`date_in`] at a given offset from UTC: the date there, or the UTC date
/// marked "(UTC)" where the local one cannot be shown. Never panics.
pub fn date_at(lang: Lang, t: OffsetDateTime, offset: UtcOffset) -> String {
    match on_clock(t, offset) {
        (l, false) => date_of(lang, l),
        (u, true) => format!("{} ({})", date_of(lang, u), zone_of(u.offset(), "")),
    }
}

/// The zone's name for people: the C library's abbreviation (cleaned, it
/// comes from the TZ variable), else `UTC+09:00`, `UTC` for UTC itself.
fn zone_of(offset: UtcOffset, name: &str) -> String {
    let name = crate::text::clean(name, 32);
    if !name.is_empty() {
        name
    } else if offset == UtcOffset::UTC {
        "UTC".into()
    } else {
        let (h, m, sec) = offset.as_hms();
        let sign = if offset.is_negative() { '-' } else { '+' };
        let (h, m, sec) = (h.unsigned_abs(), m.unsigned_abs(), sec.unsigned_abs());
        if sec == 0 {
            format!("UTC{sign}{h:02}:{m:02}")
        } else {
            format!("UTC{sign}{h:02}:{m:02}:{sec:02}")
        }
    }
}

/// [`datetime_in`] at a given offset from UTC whose zone is called `zone`
/// (empty: named by its offset): where the local date cannot be shown, the
/// time in UTC, so named. Never panics.
pub fn datetime_at(lang: Lang, t: OffsetDateTime, offset: UtcOffset, zone: &str) -> String {
    let (l, stand_in) = on_clock(t, offset);
    let zone = if stand_in {
        zone_of(l.offset(), "")
    } else {
        zone_of(offset, zone)
    };
    match lang {
        Lang::Ja => format!(
            "{} {:02}:{:02} ({zone})",
            date_of(lang, l),
            l.hour(),
            l.minute()
        ),
        Lang::En => format!(
            "{}, {:02}:{:02} {zone}",
            date_of(lang, l),
            l.hour(),
            l.minute()
        ),
    }
}

/// A date as people of `lang` write it, in local time: `2026年12月14日`,
/// `14 December 2026`; in UTC, so marked, where the local date would leave
/// the years 0000..=9999.
pub fn date_in(lang: Lang, t: OffsetDateTime) -> String {
    let (offset, _) = local_zone(t);
    date_at(lang, t, offset)
}

/// A date and time as people of `lang` write it, in local time with the
/// zone: `2026年12月14日 18:57 (JST)`, `14 December 2026, 10:57 CET`; in
/// UTC where the local date would leave the years 0000..=9999.
pub fn datetime_in(lang: Lang, t: OffsetDateTime) -> String {
    let (offset, zone) = local_zone(t);
    datetime_at(lang, t, offset, &zone)
}

/// [`date_in`] in this process's language.
pub fn date(t: OffsetDateTime) -> String {
    date_in(Lang::current(), t)
}

/// [`datetime_in`] in this process's language.
pub fn datetime(t: OffsetDateTime) -> String {
    datetime_in(Lang::current(), t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluent_bundle::FluentResource;
    use fluent_syntax::ast;

    /// Message ids and, for each, its variables (sorted).
    fn messages(source: &str) -> Vec<(String, Vec<String>)> {
        fn vars_of(p: &ast::Pattern<&str>, out: &mut Vec<String>) {
            for e in &p.elements {
                if let ast::PatternElement::Placeable { expression } = e {
                    expr(expression, out);
                }
            }
        }
        fn expr(e: &ast::Expression<&str>, out: &mut Vec<String>) {
            match e {
                ast::Expression::Inline(i) => inline(i, out),
                ast::Expression::Select { selector, variants } => {
                    inline(selector, out);
                    for v in variants {
                        vars_of(&v.value, out);
                    }
                }
            }
        }
        fn inline(i: &ast::InlineExpression<&str>, out: &mut Vec<String>) {
            match i {
                ast::InlineExpression::VariableReference { id } => out.push(id.name.to_string()),
                ast::InlineExpression::Placeable { expression } => expr(expression, out),
                _ => {}
            }
        }
        let res = FluentResource::try_new(source.to_string()).expect("the catalogue parses");
        let mut out: Vec<(String, Vec<String>)> = res
            .entries()
            .filter_map(|e| match e {
                ast::Entry::Message(m) => {
                    let mut vars = Vec::new();
                    if let Some(v) = &m.value {
                        vars_of(v, &mut vars);
                    }
                    vars.sort();
                    vars.dedup();
                    Some((m.id.name.to_string(), vars))
                }
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_message_is_in_both_languages_with_the_same_variables() {
        let (en, ja) = (messages(EN), messages(JA));
        assert!(!en.is_empty());
        assert_eq!(en, ja);
    }

    #[test]
    fn the_locale_picks_the_language_and_anything_else_is_english() {
        for l in ["ja_JP.UTF-8", "ja", "ja_JP", "JA_jp.utf8"] {
            assert_eq!(Lang::from_locale(l), Lang::Ja, "{l}");
        }
        for l in ["en_US.UTF-8", "C", "POSIX", "", "de_DE", "jam", "C.UTF-8"] {
            assert_eq!(Lang::from_locale(l), Lang::En, "{l}");
        }
    }

    #[test]
    fn messages_format_with_plurals_and_without_isolation_marks() {
        let s = |lang, days| tr_in(lang, "notice-due-summary", &[("days", Arg::Num(days))]);
        assert_eq!(s(Lang::En, 20), "Your bank certificate expires in 20 days");
        assert_eq!(s(Lang::En, 1), "Your bank certificate expires in 1 day");
        assert_eq!(s(Lang::Ja, 20), "電子証明書の有効期限まであと20日です");
        let body = tr_in(
            Lang::Ja,
            "notice-due-body",
            &[
                ("who", Arg::Str("Ana Novak")),
                ("date", Arg::Str("2026年12月14日")),
            ],
        );
        assert!(
            body.starts_with("Ana Novakの電子証明書は2026年12月14日に"),
            "{body}"
        );
        assert!(!body.contains('\u{2068}') && !body.contains('\u{2069}'));
        assert_eq!(tr_in(Lang::Ja, "no-such-message", &[]), "no-such-message");
    }

    /// The English dialogs read as before the catalogues.
    #[test]
    fn english_consent_reads_as_it_did() {
        let q = tr_in(
            Lang::En,
            "consent-logon",
            &[
                ("origin", Arg::Str("https://ib.bank.example")),
                ("holder", Arg::Str("CN=Ana")),
                ("until", Arg::Str("2027-01-01T00:00:00Z")),
            ],
        );
        assert_eq!(
            q,
            "A page of https://ib.bank.example in your browser asks to log you on with your certificate\n\nCN=Ana\n(valid until 2027-01-01T00:00:00Z).\n\nAllow only if you are logging on to your bank at that address now."
        );
        let r = tr_in(
            Lang::En,
            "consent-renew-start",
            &[
                ("who", Arg::Str("Renew your bank certificate")),
                ("plan", Arg::Str("renew 01")),
            ],
        );
        assert_eq!(
            r,
            "Renew your bank certificate:\n\nrenew 01.\n\nA new key will be generated on your token. Allow?"
        );
    }

    #[test]
    fn expiry_as_people_say_it() {
        let e = |d| expiry_in(Lang::En, d);
        assert_eq!(e(Some(20)), "expires in 20 days");
        assert_eq!(e(Some(1)), "expires in 1 day");
        assert_eq!(e(Some(0)), "expired today");
        assert_eq!(e(Some(-1)), "expired 1 day ago");
        assert_eq!(e(Some(-5)), "expired 5 days ago");
        assert_eq!(e(None), "never expires");
        assert_eq!(expiry_in(Lang::Ja, Some(20)), "有効期限まであと20日");
        assert_eq!(expiry_in(Lang::Ja, Some(-5)), "有効期限から5日経過");
    }

    /// The English names and advice are what `--json` and the API say;
    /// every state and every error code has its words in both languages.
    #[test]
    fn states_and_errors_have_words_in_both_languages() {
        use crate::policy::State;
        for st in [
            State::NotYetValid,
            State::Valid,
            State::RenewalDue,
            State::Expired,
            State::Lapsed,
        ] {
            assert_eq!(st.name_in(Lang::En), st.as_str());
            assert_eq!(st.advice_in(Lang::En), st.advice());
            assert_ne!(st.advice_in(Lang::Ja), st.advice());
        }
        let codes = [
            "config",
            "driver",
            "module-unknown",
            "module-missing",
            "module-load",
            "no-token",
            "token-ambiguous",
            "pin-incorrect",
            "busy",
            "pin-locked",
            "pin-format",
            "not-logged-in",
            "token-full",
            "token-write-protected",
            "key-not-found",
            "unsupported",
            "token-malformed",
            "admin-pin-incorrect",
            "pkcs11",
            "certificate",
            "csr",
            "cancelled",
            "prompt",
            "renewal",
            "browser-policy",
            "usage",
            "checks-failed",
            "io",
        ];
        for code in codes {
            let id = format!("error-{code}");
            for lang in [Lang::En, Lang::Ja] {
                assert_ne!(tr_in(lang, &id, &[]), id, "{id} in {lang:?}");
            }
            assert!(bundle(Lang::Ja).get_message(&id).is_some(), "{id}");
        }
        let e = crate::Error::Token(crate::token::TokenError::PinLocked);
        assert_eq!(e.for_people(Lang::En), e.to_string());
        let ja = e.for_people(Lang::Ja);
        assert!(ja.starts_with("PINがロックされています。"), "{ja}");
        assert!(ja.ends_with(&e.to_string()), "{ja}");
    }

    #[test]
    fn dates_as_people_write_them() {
        let t = time::macros::datetime!(2026-12-14 09:57:12 UTC);
        // In local time: the tests run with the zone the process has, so
        // compare with what the C library says for that instant.
        let (offset, zone) = local_zone(t);
        let l = t.to_offset(offset);
        assert_eq!(
            date_in(Lang::Ja, t),
            format!("{}年{}月{}日", l.year(), u8::from(l.month()), l.day())
        );
        assert_eq!(date_of(Lang::Ja, t), "2026年12月14日");
        assert_eq!(date_of(Lang::En, t), "14 December 2026");
        assert_eq!(
            date_of(Lang::En, time::macros::datetime!(2027-01-01 00:00 UTC)),
            "1 January 2027"
        );
        let hm = format!("{:02}:{:02}", l.hour(), l.minute());
        assert!(datetime_in(Lang::En, t).ends_with(&format!(", {hm} {zone}")));
        assert!(datetime_in(Lang::Ja, t).ends_with(&format!(" {hm} ({zone})")));
    }
    /// Every offset from -23:59 to +23:59, minute by minute.
    fn every_offset() -> impl Iterator<Item = UtcOffset> {
        (-(23 * 60 + 59)..=(23 * 60 + 59))
            .map(|m: i32| UtcOffset::from_whole_seconds(m * 60).expect("within ±24 h"))
    }

    /// The edges of X.509's years, RFC 5280's "no expiry" date among them.
    fn edges() -> [OffsetDateTime; 6] {
        use time::macros::datetime;
        [
            crate::policy::NO_EXPIRY,
            datetime!(9999-12-31 00:00:00 UTC),
            datetime!(9999-12-31 23:59:59.999_999_999 UTC),
            datetime!(0000-01-01 00:00:00 UTC),
            datetime!(0000-01-01 23:59:59 UTC),
            datetime!(2026-12-14 09:57:12 UTC),
        ]
    }

    #[test]
    fn dates_at_the_ends_of_time_never_panic_at_any_offset() {
        for t in edges() {
            for offset in every_offset() {
                for lang in [Lang::En, Lang::Ja] {
                    let d = date_at(lang, t, offset);
                    let dt = datetime_at(lang, t, offset, "");
                    for s in [&d, &dt] {
                        assert!(!s.contains('-') || s.contains("UTC-"), "{s}");
                        assert!(!s.chars().any(crate::text::hidden), "{s:?}");
                        assert!(s.chars().count() < 64, "{s}");
                    }
                    // A local date inside 0000..=9999 is shown; else UTC.
                    match t.checked_to_offset(offset).map(|l| l.year()) {
                        Some(0..=9999) => assert!(!d.contains("(UTC)"), "{offset} {d}"),
                        _ => assert!(d.ends_with(" (UTC)"), "{offset} {d}"),
                    }
                }
            }
        }
    }

    #[test]
    fn a_date_past_year_9999_in_local_time_is_shown_in_utc() {
        let tokyo = UtcOffset::from_hms(9, 0, 0).expect("offset");
        let new_york = UtcOffset::from_hms(-5, 0, 0).expect("offset");
        let no_expiry = crate::policy::NO_EXPIRY;
        assert_eq!(
            date_at(Lang::En, no_expiry, tokyo),
            "31 December 9999 (UTC)"
        );
        assert_eq!(date_at(Lang::Ja, no_expiry, tokyo), "9999年12月31日 (UTC)");
        assert_eq!(
            datetime_at(Lang::En, no_expiry, tokyo, "JST"),
            "31 December 9999, 23:59 UTC"
        );
        assert_eq!(
            datetime_at(Lang::Ja, no_expiry, tokyo, "JST"),
            "9999年12月31日 23:59 (UTC)"
        );
        // West of UTC the local date is there.
        assert_eq!(
            datetime_at(Lang::En, no_expiry, new_york, "EST"),
            "31 December 9999, 18:59 EST"
        );
        // The first day of year 0000 west of UTC would be year -1.
        let first = time::macros::datetime!(0000-01-01 00:00 UTC);
        assert_eq!(date_at(Lang::En, first, new_york), "1 January 0 (UTC)");
        assert_eq!(
            datetime_at(Lang::Ja, first, new_york, "EST"),
            "0年1月1日 00:00 (UTC)"
        );
        assert_eq!(date_at(Lang::En, first, tokyo), "1 January 0");
        // A zone name is cleaned; none: the offset names it.
        assert_eq!(
            datetime_at(Lang::En, first, tokyo, "J\u{202E}ST"),
            "1 January 0, 09:00 JST"
        );
        assert_eq!(
            datetime_at(Lang::En, first, tokyo, ""),
            "1 January 0, 09:00 UTC+09:00"
        );
    }

    /// Through the C library, with this process's zone: never a panic.
    #[test]
    fn local_dates_of_the_edges_never_panic() {
        for t in edges() {
            for lang in [Lang::En, Lang::Ja] {
                assert!(!date_in(lang, t).is_empty());
                assert!(!datetime_in(lang, t).is_empty());
            }
        }
    }
}
