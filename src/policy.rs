//! The bank's certificate lifecycle as a pure function of dates.
//!
//! Nothing here touches a token, a clock or a file: callers pass the
//! certificate's validity, the instant to judge it at and the [`Policy`].
//! The boundaries follow the contract exactly:
//!
//! | state           | when                                                  |
//! |-----------------|-------------------------------------------------------|
//! | `not-yet-valid` | `now < not_before`                                    |
//! | `valid`         | `now < not_after - renew_window`                      |
//! | `renewal-due`   | `not_after - renew_window <= now <= not_after`        |
//! | `expired`       | `not_after < now <= not_after + reissue_grace`        |
//! | `lapsed`        | `now > not_after + reissue_grace`                     |
//!
//! Days are fixed 86 400-second spans counted from the certificate's own
//! `not_after` instant, so calendar effects (leap days, month lengths, time
//! zones) cannot shift a boundary.
//!
//! Every date is hostile input (a certificate on a token, one a web client
//! sends the bank), so no arithmetic here can panic: an instant before the
//! first one `time` represents saturates to it (a window wider than all of
//! time is always open), one after the last is absent (a grace period
//! longer than all of time never ends, its notice never comes). A
//! certificate with RFC 5280's "no well-defined expiration date",
//! `99991231235959Z` ([`NO_EXPIRY`]), never expires: it stays `valid`, with
//! no renewal date, no grace end and no notice.

use serde::{Deserialize, Serialize};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// RFC 5280, 4.1.2.5: a notAfter of GeneralizedTime `99991231235959Z`
/// means the certificate has no well-defined expiration date.
pub const NO_EXPIRY: OffsetDateTime = datetime!(9999-12-31 23:59:59 UTC);

/// Whether a certificate valid until `not_after` expires at all (see
/// [`NO_EXPIRY`]; anything at or after it counts as no expiry).
pub fn expires(not_after: OffsetDateTime) -> bool {
    not_after < NO_EXPIRY
}

/// The bank's numbers; every one is configuration (see `[policy]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Days before expiry at which the user is notified, in any order.
    pub notice_days: Vec<u32>,
    /// Renewal (re-enrolment with the current certificate) opens this many
    /// days before expiry.
    pub renew_window_days: u32,
    /// After expiry, a new certificate can be obtained with the bank's ID and
    /// one-time password for this many days.
    pub reissue_grace_days: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            notice_days: vec![30, 10],
            renew_window_days: 30,
            reissue_grace_days: 90,
        }
    }
}

/// Where a certificate stands in the bank's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Before `not_before`.
    NotYetValid,
    /// Usable, and renewal is not open yet.
    Valid,
    /// Inside the renewal window: renew with the current certificate.
    RenewalDue,
    /// Past `not_after` but within the grace period: obtain anew with `enroll`.
    Expired,
    /// Past the grace period: only the bank can re-issue.
    Lapsed,
}

impl State {
    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            State::NotYetValid => "not-yet-valid",
            State::Valid => "valid",
            State::RenewalDue => "renewal-due",
            State::Expired => "expired",
            State::Lapsed => "lapsed",
        }
    }

    /// What the user can do in this state, in one sentence.
    pub fn advice(self) -> &'static str {
        match self {
            State::NotYetValid => "the certificate is not valid yet; check the computer's clock",
            State::Valid => "nothing to do",
            State::RenewalDue => "renew it now with `certagent renew`",
            State::Expired => {
                "obtain a new certificate with `certagent enroll --user ID` and the bank's one-time password"
            }
            State::Lapsed => "the grace period is over: ask the bank to re-issue your certificate",
        }
    }
}

impl State {
    /// The state's name as people of `lang` read it (English: the code).
    pub fn name_in(self, lang: crate::i18n::Lang) -> String {
        crate::i18n::tr_in(lang, &format!("state-{}", self.as_str()), &[])
    }

    /// [`State::advice`] in `lang`.
    pub fn advice_in(self, lang: crate::i18n::Lang) -> String {
        crate::i18n::tr_in(lang, &format!("advice-{}", self.as_str()), &[])
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "days")]
pub enum NoticeKind {
    /// A configured notice, so many days before expiry.
    DaysBefore(u32),
    /// The certificate has expired.
    Expiry,
    /// The grace period is over.
    Lapse,
}

/// One scheduled notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub at: OffsetDateTime,
}

/// The verdict on one certificate at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub state: State,
    /// Whole days to `not_after`, rounded up: a certificate that expires in
    /// 19 days and 1 hour has 20 days left; one that expired 4 days and
    /// 1 hour ago has -4. Zero means it expires (or expired) within a day.
    pub days_left: i64,
    /// When renewal with the current certificate opens; `None` for a
    /// certificate that never expires (and so is never renewed). Saturates
    /// at the first representable instant for a window wider than all of time.
    pub renewal_opens: Option<OffsetDateTime>,
    /// The last instant a new certificate can be obtained with a one-time
    /// password; `None` when it never comes (no expiry, or past the last
    /// representable instant).
    pub grace_ends: Option<OffsetDateTime>,
    /// The first notice strictly after `now`, if any is left.
    pub next_notice: Option<Notice>,
}

fn days(n: u32) -> Duration {
    Duration::days(i64::from(n))
}

impl Policy {
    /// Every notice for a certificate expiring at `not_after`, in time order:
    /// the configured days before expiry, then expiry itself, then the lapse.
    /// None for a certificate that never expires; no lapse notice when the
    /// grace period ends past the last representable instant.
    pub fn notices(&self, not_after: OffsetDateTime) -> Vec<Notice> {
        if !expires(not_after) {
            return Vec::new();
        }
        let mut notices: Vec<Notice> = self
            .notice_days
            .iter()
            .map(|&d| Notice {
                kind: NoticeKind::DaysBefore(d),
                at: not_after.saturating_sub(days(d)),
            })
            .collect();
        notices.push(Notice {
            kind: NoticeKind::Expiry,
            at: not_after,
        });
        if let Some(at) = not_after.checked_add(days(self.reissue_grace_days)) {
            notices.push(Notice {
                kind: NoticeKind::Lapse,
                at,
            });
        }
        notices.sort_by_key(|n| n.at);
        notices.dedup_by_key(|n| n.kind);
        notices
    }

    /// Judge a certificate valid over `[not_before, not_after]` at `now`.
    pub fn assess(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Assessment {
        let (renewal_opens, grace_ends) = if expires(not_after) {
            (
                Some(not_after.saturating_sub(days(self.renew_window_days))),
                not_after.checked_add(days(self.reissue_grace_days)),
            )
        } else {
            (None, None)
        };
        let state = if now < not_before {
            State::NotYetValid
        } else if renewal_opens.is_none_or(|opens| now < opens) {
            State::Valid
        } else if now <= not_after {
            State::RenewalDue
        } else if grace_ends.is_none_or(|ends| now <= ends) {
            State::Expired
        } else {
            State::Lapsed
        };
        let next_notice = self.notices(not_after).into_iter().find(|n| n.at > now);
        Assessment {
            state,
            days_left: days_left(not_after, now),
            renewal_opens,
            grace_ends,
            next_notice,
        }
    }
}

/// Whole days from `now` to `not_after`, rounded towards positive infinity.
/// (The difference of two `OffsetDateTime`s is at most some 20 000 years,
/// far inside `Duration`'s range, so this cannot overflow.)
pub fn days_left(not_after: OffsetDateTime, now: OffsetDateTime) -> i64 {
    let secs = (not_after - now).whole_seconds();
    secs.div_euclid(86_400) + i64::from(secs.rem_euclid(86_400) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::SECOND;

    fn state_at(p: &Policy, nb: OffsetDateTime, na: OffsetDateTime, now: OffsetDateTime) -> State {
        p.assess(nb, na, now).state
    }

    #[test]
    fn every_transition_at_its_exact_instant() {
        let p = Policy::default();
        let nb = datetime!(2026-01-01 12:00:00 UTC);
        let na = datetime!(2027-01-01 12:00:00 UTC);
        let opens = datetime!(2026-12-02 12:00:00 UTC); // na - 30 days
        let grace = datetime!(2027-04-01 12:00:00 UTC); // na + 90 days
        let table = [
            (nb - SEC, State::NotYetValid),
            (nb, State::Valid),
            (opens - SEC, State::Valid),
            (opens, State::RenewalDue),
            (na - SEC, State::RenewalDue),
            (na, State::RenewalDue),
            (na + SEC, State::Expired),
            (grace, State::Expired),
            (grace + SEC, State::Lapsed),
            (grace + Duration::days(3650), State::Lapsed),
        ];
        for (now, want) in table {
            assert_eq!(state_at(&p, nb, na, now), want, "at {now}");
        }
    }

    #[test]
    fn configured_numbers_move_the_boundaries() {
        let p = Policy {
            notice_days: vec![40],
            renew_window_days: 40,
            reissue_grace_days: 180,
        };
        let nb = datetime!(2026-01-01 00:00:00 UTC);
        let na = datetime!(2027-01-01 00:00:00 UTC);
        assert_eq!(
            state_at(&p, nb, na, na - Duration::days(40) - SEC),
            State::Valid
        );
        assert_eq!(
            state_at(&p, nb, na, na - Duration::days(40)),
            State::RenewalDue
        );
        assert_eq!(
            state_at(&p, nb, na, na + Duration::days(180)),
            State::Expired
        );
        assert_eq!(
            state_at(&p, nb, na, na + Duration::days(180) + SEC),
            State::Lapsed
        );
        let notices = p.notices(na);
        assert_eq!(notices[0].kind, NoticeKind::DaysBefore(40));
        assert_eq!(notices[0].at, na - Duration::days(40));
    }

    #[test]
    fn zero_grace_goes_straight_from_renewal_due_to_lapsed() {
        let p = Policy {
            reissue_grace_days: 0,
            ..Policy::default()
        };
        let nb = datetime!(2026-01-01 00:00:00 UTC);
        let na = datetime!(2027-01-01 00:00:00 UTC);
        assert_eq!(state_at(&p, nb, na, na), State::RenewalDue);
        assert_eq!(state_at(&p, nb, na, na + SEC), State::Lapsed);
    }

    #[test]
    fn not_yet_valid_wins_even_inside_the_window() {
        // A short-lived certificate whose whole life is inside the window.
        let p = Policy::default();
        let nb = datetime!(2026-06-10 00:00:00 UTC);
        let na = datetime!(2026-06-20 00:00:00 UTC);
        assert_eq!(state_at(&p, nb, na, nb - SEC), State::NotYetValid);
        assert_eq!(state_at(&p, nb, na, nb), State::RenewalDue);
    }

    #[test]
    fn leap_days_count_as_days() {
        let p = Policy::default();
        let nb = datetime!(2027-03-01 00:00:00 UTC);
        let na = datetime!(2028-03-01 00:00:00 UTC);
        // 2028 is a leap year: 30 days before 1 March is 31 January.
        let a = p.assess(nb, na, datetime!(2028-01-31 00:00:00 UTC));
        assert_eq!(a.state, State::RenewalDue);
        assert_eq!(a.renewal_opens, Some(datetime!(2028-01-31 00:00:00 UTC)));
        assert_eq!(a.days_left, 30);
        assert_eq!(
            state_at(&p, nb, na, datetime!(2028-01-30 23:59:59 UTC)),
            State::Valid
        );
        // A certificate expiring on the leap day itself.
        let na = datetime!(2028-02-29 10:00:00 UTC);
        let a = p.assess(nb, na, datetime!(2028-02-28 10:00:00 UTC));
        assert_eq!((a.state, a.days_left), (State::RenewalDue, 1));
        assert_eq!(a.grace_ends, Some(datetime!(2028-05-29 10:00:00 UTC)));
    }

    #[test]
    fn days_left_rounds_up() {
        let na = datetime!(2027-01-21 00:00:00 UTC);
        let table = [
            (na - Duration::days(20), 20),
            (na - Duration::days(20) + Duration::minutes(1), 20),
            (na - Duration::days(19) - SEC, 20),
            (na - Duration::days(19), 19),
            (na - SEC, 1),
            (na, 0),
            (na + SEC, 0),
            (na + Duration::days(1), -1),
            (na + Duration::days(5) + Duration::minutes(1), -5),
            (na + Duration::days(100) + Duration::hours(2), -100),
        ];
        for (now, want) in table {
            assert_eq!(days_left(na, now), want, "at {now}");
        }
    }

    #[test]
    fn next_notice_walks_through_the_schedule() {
        let p = Policy::default();
        let nb = datetime!(2026-01-01 00:00:00 UTC);
        let na = datetime!(2027-01-01 00:00:00 UTC);
        let next = |now| p.assess(nb, na, now).next_notice;
        let n30 = na - Duration::days(30);
        let n10 = na - Duration::days(10);
        let lapse = na + Duration::days(90);
        assert_eq!(next(nb).map(|n| n.kind), Some(NoticeKind::DaysBefore(30)));
        assert_eq!(next(n30 - SEC).map(|n| n.at), Some(n30));
        // Strictly after now: at the 30-day instant that notice is due, the next is the 10-day one.
        assert_eq!(next(n30).map(|n| n.at), Some(n10));
        assert_eq!(next(n10).map(|n| n.kind), Some(NoticeKind::Expiry));
        assert_eq!(next(na).map(|n| n.kind), Some(NoticeKind::Lapse));
        assert_eq!(next(na).map(|n| n.at), Some(lapse));
        assert_eq!(next(lapse), None);
    }

    /// RFC 5280, 4.1.2.5: GeneralizedTime 99991231235959Z means "no
    /// well-defined expiration date".
    const NO_EXPIRY_AT: OffsetDateTime = datetime!(9999-12-31 23:59:59 UTC);

    #[test]
    fn a_certificate_without_expiry_is_valid_with_no_notice_and_no_renewal() {
        let p = Policy::default();
        let nb = datetime!(2026-01-01 00:00:00 UTC);
        let now = datetime!(2026-06-01 00:00:00 UTC);
        let a = p.assess(nb, NO_EXPIRY_AT, now);
        assert_eq!(a.state, State::Valid);
        assert_eq!(a.renewal_opens, None);
        assert_eq!(a.grace_ends, None);
        assert_eq!(a.next_notice, None);
        assert!(p.notices(NO_EXPIRY_AT).is_empty());
        assert!(a.days_left > 2_900_000, "{}", a.days_left);
        // Before its notBefore it is still not yet valid; at the very end of
        // time it is still valid, never due.
        assert_eq!(
            p.assess(nb, NO_EXPIRY_AT, nb - SEC).state,
            State::NotYetValid
        );
        assert_eq!(p.assess(nb, NO_EXPIRY_AT, NO_EXPIRY_AT).state, State::Valid);
        assert!(!expires(NO_EXPIRY_AT));
        assert!(expires(NO_EXPIRY_AT - SEC));
    }

    #[test]
    fn year_9999_just_before_no_expiry_saturates() {
        // Expires one second before the no-expiry marker: a real expiry, but
        // its grace period and lapse notice lie past the last representable
        // instant; renewal opens as usual.
        let p = Policy::default();
        let nb = datetime!(2026-01-01 00:00:00 UTC);
        let na = NO_EXPIRY_AT - SEC;
        let a = p.assess(nb, na, datetime!(2026-06-01 00:00:00 UTC));
        assert_eq!(a.state, State::Valid);
        assert_eq!(a.renewal_opens, Some(na - Duration::days(30)));
        assert_eq!(a.grace_ends, None, "the grace period never ends");
        let kinds: Vec<_> = p.notices(na).into_iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            [
                NoticeKind::DaysBefore(30),
                NoticeKind::DaysBefore(10),
                NoticeKind::Expiry
            ]
        );
        assert_eq!(p.assess(nb, na, na).state, State::RenewalDue);
        assert_eq!(p.assess(nb, na, na + SEC).state, State::Expired);
        assert_eq!(
            p.assess(nb, na, na + SEC).next_notice,
            None,
            "no lapse notice past the end of time"
        );
    }

    #[test]
    fn year_0000_dates_do_not_underflow() {
        // GeneralizedTime's first instant, and `time`'s own first and last.
        let p = Policy::default();
        let y0 = datetime!(0000-01-01 00:00:00 UTC);
        let a = p.assess(y0, y0, y0);
        assert_eq!((a.state, a.days_left), (State::RenewalDue, 0));
        assert_eq!(a.renewal_opens, Some(y0 - Duration::days(30)));
        let min = time::PrimitiveDateTime::MIN.assume_utc();
        let max = time::PrimitiveDateTime::MAX.assume_utc();
        for (nb, na, now) in [
            (min, min, min),
            (min, min, max),
            (max, max, max),
            (max, max, min),
            (min, max, min),
            (max, min, max),
            (y0, min, max),
        ] {
            let a = p.assess(nb, na, now);
            let _ = p.notices(na);
            let _ = days_left(na, now);
            assert!(a.days_left.abs() <= 7_400_000, "{nb} {na} {now}");
        }
        let a = p.assess(min, min, min);
        assert_eq!(a.state, State::RenewalDue);
        assert_eq!(a.renewal_opens, Some(min), "saturates at the first instant");
        let a = p.assess(min, min, max);
        assert_eq!(a.state, State::Lapsed);
    }

    #[test]
    fn huge_configured_numbers_saturate() {
        let p = Policy {
            notice_days: vec![u32::MAX, 0],
            renew_window_days: u32::MAX,
            reissue_grace_days: u32::MAX,
        };
        let nb = datetime!(2026-01-01 00:00:00 UTC);
        let na = datetime!(2027-01-01 00:00:00 UTC);
        let a = p.assess(nb, na, nb);
        // A window wider than all of time is always open; a grace period
        // longer than all of time never ends.
        assert_eq!(a.state, State::RenewalDue);
        assert_eq!(
            p.assess(nb, na, na + Duration::days(365)).state,
            State::Expired
        );
        assert_eq!(a.grace_ends, None);
        let notices = p.notices(na);
        assert_eq!(
            notices.first().map(|n| n.kind),
            Some(NoticeKind::DaysBefore(u32::MAX))
        );
        assert!(!notices.iter().any(|n| n.kind == NoticeKind::Lapse));
    }

    #[test]
    fn not_before_after_not_after_is_judged_without_panic() {
        // A reversed validity (any web client can send one): not yet valid
        // before its notBefore, and past its notAfter from then on.
        let p = Policy::default();
        let nb = datetime!(2027-01-01 00:00:00 UTC);
        let na = datetime!(2026-01-01 00:00:00 UTC);
        assert_eq!(state_at(&p, nb, na, nb - SEC), State::NotYetValid);
        assert_eq!(state_at(&p, nb, na, na - SEC), State::NotYetValid);
        assert_eq!(state_at(&p, nb, na, nb), State::Lapsed);
        let p = Policy {
            reissue_grace_days: 3650,
            ..Policy::default()
        };
        assert_eq!(state_at(&p, nb, na, nb), State::Expired);
    }

    #[test]
    fn notices_are_sorted_whatever_the_configured_order() {
        let p = Policy {
            notice_days: vec![10, 30, 1],
            ..Policy::default()
        };
        let na = datetime!(2027-01-01 00:00:00 UTC);
        let kinds: Vec<_> = p.notices(na).into_iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            [
                NoticeKind::DaysBefore(30),
                NoticeKind::DaysBefore(10),
                NoticeKind::DaysBefore(1),
                NoticeKind::Expiry,
                NoticeKind::Lapse
            ]
        );
    }
}
