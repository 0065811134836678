//! What the tray shows for a look at the token: pure, from the bank's
//! certificates, the policy and the instant (no token, no desktop).

use time::OffsetDateTime;

use super::desktop::View;
use super::icons::Badge;
use crate::cert::Cert;
use crate::i18n::{Arg, Lang, tr};
use crate::policy::{Policy, State};
use crate::prompt::short;
use crate::token::TokenError;

/// The view when the token could not be looked at.
pub fn unreadable(e: TokenError) -> View {
    let tooltip = match e {
        TokenError::NotFound { .. } | TokenError::Removed { .. } => tr("tray-no-token-tip", &[]),
        other => {
            let e = crate::Error::Token(other).for_people(Lang::current());
            tr("tray-token-problem", &[("error", Arg::Str(&e))])
        }
    };
    View {
        badge: Badge::NoCertificate,
        certificate_line: tr("tray-no-token", &[]),
        tooltip,
        can_renew: false,
    }
}

/// The view of the bank's certificates on the token: the one that matters
/// most (the worst state, then the soonest expiry) at a glance.
pub fn of(certs: &[Cert], policy: &Policy, now: OffsetDateTime) -> View {
    let rank = |s: State| match s {
        State::Lapsed => 0,
        State::Expired => 1,
        State::RenewalDue => 2,
        State::NotYetValid => 3,
        State::Valid => 4,
    };
    let worst = certs
        .iter()
        .map(|c| (c, policy.assess(c.not_before, c.not_after, now)))
        .min_by_key(|(c, a)| (rank(a.state), c.not_after));
    match worst {
        None => View {
            badge: Badge::NoCertificate,
            certificate_line: "No bank certificate on the token".into(),
            tooltip: "No bank certificate: obtain one with certagent enroll".into(),
            can_renew: false,
        },
        Some((c, a)) => {
            // The holder and the expiry, once, for the menu line and the tooltip.
            let holder = short(&c.holder(), 64);
            let when =
                crate::i18n::expiry(crate::policy::expires(c.not_after).then_some(a.days_left));
            View {
                badge: match a.state {
                    State::Valid | State::NotYetValid => Badge::Valid,
                    State::RenewalDue => Badge::RenewalDue,
                    State::Expired => Badge::Expired,
                    State::Lapsed => Badge::Lapsed,
                },
                certificate_line: format!("{holder}: {when}"),
                tooltip: tr(
                    "tray-tooltip",
                    &[("holder", Arg::Str(&holder)), ("when", Arg::Str(&when))],
                ),
                can_renew: a.state == State::RenewalDue,
            }
        }
    }
}
