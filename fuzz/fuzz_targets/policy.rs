//! The lifecycle policy on arbitrary dates and numbers (src/policy.rs):
//! any notBefore/notAfter/now `time` can hold (years -9999..=9999, so
//! X.509's 0000..=9999 and RFC 5280's no-expiry date), reversed validity,
//! any configured day counts; and the agent's notice ledger on top.
#![no_main]

use certagent::policy::{self, NO_EXPIRY, NoticeKind, Policy, State};
use libfuzzer_sys::fuzz_target;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

/// (notBefore, notAfter, now) as (seconds, nanoseconds); the shape (0: as
/// given; 1: notAfter is RFC 5280's no-expiry date; 2: notAfter is `now`,
/// every boundary at once); notice days, renewal window and grace days.
type Input = ((i64, u32), (i64, u32), (i64, u32), u8, Vec<u32>, u32, u32);

/// Any instant `time` holds: seconds folded into its range, with nanoseconds.
fn instant((secs, nanos): (i64, u32)) -> OffsetDateTime {
    let min = PrimitiveDateTime::MIN.assume_utc().unix_timestamp();
    let max = PrimitiveDateTime::MAX.assume_utc().unix_timestamp();
    let t = OffsetDateTime::from_unix_timestamp(secs.clamp(min, max))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.replace_nanosecond(nanos % 1_000_000_000).unwrap_or(t)
}

fuzz_target!(|input: Input| {
    let (not_before, not_after, now, shape, notice_days, renew_window_days, reissue_grace_days) =
        input;
    let nb = instant(not_before);
    let now = instant(now);
    let na = match shape % 3 {
        1 => NO_EXPIRY,
        2 => now,
        _ => instant(not_after),
    };
    let p = Policy {
        notice_days: notice_days.into_iter().take(8).collect(),
        renew_window_days,
        reissue_grace_days,
    };
    let a = p.assess(nb, na, now);
    let notices = p.notices(na);

    // The notices: in time order; none for a certificate that never expires,
    // else the expiry itself at notAfter; the next one strictly after now.
    assert!(notices.windows(2).all(|w| w[0].at <= w[1].at));
    if policy::expires(na) {
        assert!(
            notices
                .iter()
                .any(|n| n.kind == NoticeKind::Expiry && n.at == na)
        );
        assert!(a.renewal_opens.is_some_and(|o| o <= na));
        assert!(a.grace_ends.is_none_or(|g| g >= na));
    } else {
        assert!(notices.is_empty());
        assert_eq!(
            (a.renewal_opens, a.grace_ends, a.next_notice),
            (None, None, None)
        );
    }
    if let Some(n) = a.next_notice {
        assert!(n.at > now);
    }

    // The state agrees with the contract's table.
    match a.state {
        State::NotYetValid => assert!(now < nb),
        State::Valid => {
            assert!(now >= nb);
            assert!(a.renewal_opens.is_none_or(|o| now < o));
        }
        State::RenewalDue => {
            assert!(now >= nb && now <= na);
            assert!(a.renewal_opens.is_some_and(|o| now >= o));
        }
        State::Expired => assert!(now >= nb && now > na && a.grace_ends.is_none_or(|g| now <= g)),
        State::Lapsed => assert!(now >= nb && a.grace_ends.is_some_and(|g| now > g)),
    }

    // Days left: rounded up, so positive exactly while notAfter is a whole
    // second or more ahead; bounded by the span of representable time.
    let left = policy::days_left(na, now);
    assert_eq!(left > 0, (na - now) >= Duration::SECOND);
    assert!(left.abs() <= 7_400_000);

    // The agent's ledger of notices sent, on the same dates.
    let mut ledger = certagent::agent::notices::Ledger::default();
    for n in &notices {
        ledger.mark("fp", &p, na, n.kind);
    }
    ledger.mark("fp", &p, na, NoticeKind::Lapse);
});
