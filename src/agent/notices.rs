//! Which desktop notices are due, each sent exactly once per certificate,
//! remembered in the state directory across restarts.
//!
//! A notice is identified by the certificate's SHA-256 fingerprint and the
//! notice kind (so many days before expiry, expiry, lapse). When the agent
//! has been off for a while and several notices are past, only the latest
//! one is shown (at 9 days left: the 10-day notice, not also the 30-day one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cert::Cert;
use crate::policy::{Notice, NoticeKind, Policy};

/// The notices already shown, by certificate fingerprint.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(default)]
    sent: BTreeMap<String, Vec<NoticeKind>>,
    #[serde(skip)]
    path: PathBuf,
}

impl Ledger {
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("notices.json")
    }

    /// Load the ledger; a missing file is an empty ledger, a corrupt one is
    /// set aside (so notices may repeat, but never stop).
    pub fn load(state_dir: &Path) -> Ledger {
        let path = Ledger::path_in(state_dir);
        let mut ledger = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                log::warn!("{} is unreadable ({e}); starting afresh", path.display());
                Ledger::default()
            }),
            Err(_) => Ledger::default(),
        };
        ledger.path = path;
        ledger
    }

    /// Write atomically.
    pub fn save(&self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::state_file::write(
            &self.path,
            &serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
            crate::state_file::Mode::Private,
        )
    }

    fn was_sent(&self, fingerprint: &str, kind: NoticeKind) -> bool {
        self.sent
            .get(fingerprint)
            .is_some_and(|k| k.contains(&kind))
    }

    /// Record `kind` and every earlier notice of the same certificate as sent.
    pub fn mark(
        &mut self,
        fingerprint: &str,
        policy: &Policy,
        not_after: OffsetDateTime,
        kind: NoticeKind,
    ) {
        let notices = policy.notices(not_after);
        // Up to and including `kind`; all of them when it is not scheduled;
        // none for a certificate that never expires (no notices at all).
        let upto = notices
            .iter()
            .position(|n| n.kind == kind)
            .map_or(notices.len(), |i| i.saturating_add(1));
        let entry = self.sent.entry(fingerprint.to_string()).or_default();
        for n in notices.iter().take(upto) {
            if !entry.contains(&n.kind) {
                entry.push(n.kind);
            }
        }
    }

    /// Forget certificates no longer present, so the file does not grow forever.
    pub fn retain(&mut self, present: &[String]) {
        self.sent.retain(|fp, _| present.contains(fp));
    }
}

/// The notice to show now for `cert`, if any: the latest one whose time has
/// come and that was not shown before.
pub fn due(cert: &Cert, policy: &Policy, now: OffsetDateTime, ledger: &Ledger) -> Option<Notice> {
    policy
        .notices(cert.not_after)
        .into_iter()
        .rev()
        .find(|n| n.at <= now)
        .filter(|n| !ledger.was_sent(&cert.sha256_fingerprint, n.kind))
}

/// The notice text: (summary, body), in the user's language.
pub fn text(cert: &Cert, notice: &Notice, now: OffsetDateTime) -> (String, String) {
    text_in(crate::i18n::Lang::current(), cert, notice, now)
}

/// The notice text in `lang`.
pub fn text_in(
    lang: crate::i18n::Lang,
    cert: &Cert,
    notice: &Notice,
    now: OffsetDateTime,
) -> (String, String) {
    use crate::i18n::{Arg, tr_in};
    let days = crate::policy::days_left(cert.not_after, now);
    // The holder as people name them, not the whole subject.
    let holder = cert.holder();
    let who = Arg::Str(&holder);
    match notice.kind {
        NoticeKind::DaysBefore(_) => {
            let date = crate::i18n::date_in(lang, cert.not_after);
            (
                tr_in(lang, "notice-due-summary", &[("days", Arg::Num(days))]),
                tr_in(
                    lang,
                    "notice-due-body",
                    &[("who", who), ("date", Arg::Str(&date))],
                ),
            )
        }
        NoticeKind::Expiry => (
            tr_in(lang, "notice-expired-summary", &[]),
            tr_in(lang, "notice-expired-body", &[("who", who)]),
        ),
        NoticeKind::Lapse => (
            tr_in(lang, "notice-lapsed-summary", &[]),
            tr_in(lang, "notice-lapsed-body", &[("who", who)]),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn cert_expiring_in(days: i64, now: OffsetDateTime) -> Cert {
        // Only the fields `due` reads matter here.
        let mut c =
            Cert::from_der(include_bytes!("../../tests/data/any-cert.der")).expect("test cert");
        c.not_after = now + Duration::days(days);
        c.not_before = c.not_after - Duration::days(365);
        c.sha256_fingerprint = format!("fp{days}");
        c
    }

    #[test]
    fn at_20_days_the_30_day_notice_once() {
        let now = OffsetDateTime::now_utc();
        let p = Policy::default();
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::load(dir.path());
        let c = cert_expiring_in(20, now);
        let n = due(&c, &p, now, &ledger).expect("a notice");
        assert_eq!(n.kind, NoticeKind::DaysBefore(30));
        ledger.mark(&c.sha256_fingerprint, &p, c.not_after, n.kind);
        ledger.save().unwrap();
        let ledger = Ledger::load(dir.path());
        assert_eq!(due(&c, &p, now, &ledger), None, "not again after a restart");
        // Eleven days later the 10-day notice comes, once.
        let later = now + Duration::days(11);
        assert_eq!(
            due(&c, &p, later, &ledger).map(|n| n.kind),
            Some(NoticeKind::DaysBefore(10))
        );
    }

    /// Found by fuzzing (fuzz/ policy): a certificate without expiry has no
    /// notices at all, and marking one panicked on the empty list.
    #[test]
    fn marking_a_certificate_without_notices_records_nothing() {
        let p = Policy::default();
        let mut ledger = Ledger::default();
        let forever = crate::policy::NO_EXPIRY;
        assert!(p.notices(forever).is_empty());
        ledger.mark("fp", &p, forever, NoticeKind::Expiry);
        ledger.mark("fp", &p, forever, NoticeKind::DaysBefore(30));
        assert!(!ledger.was_sent("fp", NoticeKind::Expiry));
        let mut c = cert_expiring_in(0, OffsetDateTime::now_utc());
        c.not_after = forever;
        assert_eq!(due(&c, &p, forever, &ledger), None);
    }

    #[test]
    fn after_a_long_absence_only_the_latest_notice() {
        let now = OffsetDateTime::now_utc();
        let p = Policy::default();
        let mut ledger = Ledger::default();
        let c = cert_expiring_in(9, now);
        let n = due(&c, &p, now, &ledger).expect("a notice");
        assert_eq!(n.kind, NoticeKind::DaysBefore(10));
        ledger.mark(&c.sha256_fingerprint, &p, c.not_after, n.kind);
        assert!(ledger.was_sent(&c.sha256_fingerprint, NoticeKind::DaysBefore(30)));
        assert_eq!(due(&c, &p, now, &ledger), None);
        assert_eq!(
            due(&cert_expiring_in(200, now), &p, now, &ledger),
            None,
            "nothing due at 200 days"
        );
        let expired = cert_expiring_in(-1, now);
        assert_eq!(
            due(&expired, &p, now, &ledger).map(|n| n.kind),
            Some(NoticeKind::Expiry)
        );
        let lapsed = cert_expiring_in(-91, now);
        assert_eq!(
            due(&lapsed, &p, now, &ledger).map(|n| n.kind),
            Some(NoticeKind::Lapse)
        );
    }
}
