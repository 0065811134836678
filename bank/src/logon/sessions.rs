//! Open logon sessions: [`Session`] (who is logged on) and the bounded
//! table of them, [`Sessions`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::LogonError;
use super::challenges::client_net;

/// A logon session lasts this long, whatever happens in it.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(30 * 60);
/// Open sessions at once; beyond, a new logon is refused (503) until some
/// expire: an open session is never ended for another client's logon.
pub(super) const MAX_SESSIONS: usize = 10_000;
/// Open sessions one client network ([`client_net`]) may hold; beyond,
/// 429. An office behind one address has room; one customer logging on in
/// a loop does not fill the table for everyone else.
pub(super) const MAX_SESSIONS_PER_CLIENT: usize = 256;

/// Who is logged on in a session.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub subject: String,
    pub user: Option<String>,
    pub expires: Instant,
    pub expires_at: OffsetDateTime,
}

/// Open sessions by id, oldest first (and so first to expire); bounded
/// like the challenges: an open session is never ended early to make room
/// for another logon. When `cap` are open a new logon is refused (503),
/// and one client network may hold only `per_client` of them (429).
pub(super) struct Sessions {
    cap: usize,
    per_client: usize,
    entries: HashMap<[u8; 32], (Session, IpAddr)>,
    order: VecDeque<[u8; 32]>,
    /// Open sessions per client network ([`client_net`]).
    clients: HashMap<IpAddr, usize>,
}

impl Sessions {
    pub(super) fn new(cap: usize, per_client: usize) -> Sessions {
        Sessions {
            cap: cap.max(1),
            per_client: per_client.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            clients: HashMap::new(),
        }
    }

    /// Open session `id` for `client`, unless its network holds its share
    /// or the table is full of sessions still open.
    pub(super) fn open(
        &mut self,
        id: [u8; 32],
        session: Session,
        client: IpAddr,
        now: Instant,
    ) -> Result<(), LogonError> {
        while let Some(oldest) = self.order.front().copied() {
            if self
                .entries
                .get(&oldest)
                .is_some_and(|(s, _)| s.expires > now)
            {
                break;
            }
            self.remove(&oldest);
            self.order.pop_front();
        }
        let retry_after = || {
            self.order
                .front()
                .and_then(|k| self.entries.get(k))
                .map_or(SESSION_TTL, |(s, _)| {
                    s.expires.saturating_duration_since(now)
                })
                .as_secs()
                .max(1)
        };
        let net = client_net(client);
        if self.clients.get(&net).copied().unwrap_or(0) >= self.per_client {
            return Err(LogonError::TooManySessions {
                retry_after: retry_after(),
            });
        }
        if self.entries.len() >= self.cap {
            return Err(LogonError::SessionsFull {
                retry_after: retry_after(),
            });
        }
        self.entries.insert(id, (session, net));
        self.order.push_back(id);
        *self.clients.entry(net).or_insert(0) += 1;
        Ok(())
    }

    /// Forget session `id` (its place in `order` is the caller's).
    fn remove(&mut self, id: &[u8; 32]) {
        let Some((_, net)) = self.entries.remove(id) else {
            return;
        };
        if let Some(n) = self.clients.get_mut(&net) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.clients.remove(&net);
            }
        }
    }

    pub(super) fn get(&mut self, id: &[u8], now: Instant) -> Result<Session, LogonError> {
        let key = <[u8; 32]>::try_from(id).map_err(|_| LogonError::NoSession)?;
        let (session, _) = self.entries.get(&key).ok_or(LogonError::NoSession)?;
        if now >= session.expires {
            self.remove(&key);
            self.order.retain(|k| *k != key);
            return Err(LogonError::SessionExpired);
        }
        Ok(session.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logon::test_clients::{HOME, ip};

    fn session(now: Instant) -> Session {
        Session {
            subject: "CN=Ana".into(),
            user: None,
            expires: now + SESSION_TTL,
            expires_at: OffsetDateTime::now_utc() + SESSION_TTL,
        }
    }

    #[test]
    fn a_logon_never_ends_another_clients_session() {
        let now = Instant::now();
        let mut s = Sessions::new(4, 2);
        let theirs = [1u8; 32];
        s.open(theirs, session(now), HOME, now).unwrap();
        // One customer logs on again and again from one network: beyond its
        // share, 429; the other client's session stays.
        let flood = "2001:db8:5:6::1".parse::<IpAddr>().unwrap();
        let mut refused = Vec::new();
        for n in 0..20u8 {
            let from = match flood {
                IpAddr::V6(a) => IpAddr::V6((a.to_bits() + u128::from(n)).into()),
                v4 => v4,
            };
            if let Err(e) = s.open([10 + n; 32], session(now), from, now) {
                refused.push((e.status(), e.code()));
            }
        }
        assert_eq!(refused.len(), 18);
        assert!(
            refused.iter().all(|r| *r == (429, "too_many_sessions")),
            "{refused:?}"
        );
        // Many networks: when the table is full, 503 and nothing is ended.
        assert!(s.open([40; 32], session(now), ip(1), now).is_ok());
        let full = s.open([41; 32], session(now), ip(2), now).unwrap_err();
        assert_eq!((full.status(), full.code()), (503, "sessions_full"));
        assert!(full.answer().status == 503);
        assert_eq!(s.get(&theirs, now).unwrap().subject, "CN=Ana");
        assert_eq!(s.entries.len(), 4);
        // Room again once sessions expire.
        let later = now + SESSION_TTL;
        assert!(s.open([42; 32], session(later), ip(2), later).is_ok());
        assert_eq!(s.get(&theirs, later).unwrap_err(), LogonError::NoSession);
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.clients.len(), 1);
    }
}
