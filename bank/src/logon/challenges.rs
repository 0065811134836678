//! The challenge store: single-use logon challenges, bounded per client
//! network ([`client_net`]) and in all, so a flood can neither exhaust
//! memory nor push out a logon in progress.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ring::rand::SecureRandom;

use super::LogonError;

/// How long a challenge may be used: long enough to find the token, read
/// the agent's consent window and type a PIN.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
/// Live challenges at once; beyond, new ones are refused (503) until some
/// expire or are used, so a flood of requests can neither exhaust memory
/// nor push out a logon in progress.
pub(super) const MAX_CHALLENGES: usize = 10_000;
/// Live challenges one client may hold: a browser needs one (asking again
/// replaces its own); beyond, 429. A client is its network ([`client_net`]:
/// an IPv4 /24, an IPv6 /64), not its address: one host of an IPv6 network
/// may take any of 2^64 addresses, so a cap per address is no cap.
pub(super) const MAX_CHALLENGES_PER_CLIENT: usize = 16;
/// Used and expired challenges are remembered this long after expiry, so
/// a replay is refused as a replay rather than as an unknown challenge.
const REMEMBER_AFTER_EXPIRY: Duration = Duration::from_secs(10 * 60);
const CHALLENGE_LEN: usize = 32;

/// The network a client is counted by: its IPv4 /24 or its IPv6 /64 (the
/// smallest network one customer's host is given; it may pick any address
/// in it). An IPv4 address seen as IPv4-mapped IPv6 (a dual-stack socket)
/// is IPv4, so it is not lumped with every other IPv4 client.
#[doc(hidden)]
pub fn client_net(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V4(a) => IpAddr::V4(std::net::Ipv4Addr::from(a.to_bits() & !0xff)),
        IpAddr::V6(a) => IpAddr::V6(std::net::Ipv6Addr::from(a.to_bits() & !((1u128 << 64) - 1))),
    }
}

/// A challenge that may still be used: whom it was issued to, and until when.
struct Live {
    expires: Instant,
    /// The address it was issued to (only it may replace it).
    client: IpAddr,
}

/// Why a challenge can no longer be used; remembered for a while so the
/// refusal says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spent {
    Used,
    /// Expired and not yet refused as such (the next attempt says "used").
    Expired,
    /// The same browser asked for a new challenge, which replaced it.
    Replaced,
}

/// Challenges issued, bounded so that no flood can push out a logon in
/// progress: live (unused, unexpired) challenges are never dropped before
/// they expire. Instead a client network ([`client_net`]) may hold only
/// `per_client` live challenges, and when `cap` are live altogether new ones are
/// refused until some expire or are used. A browser that asks again
/// replaces its own previous challenge (named by its cookie).
///
/// Spent challenges are remembered up to `cap` as well, only so that a
/// replay is refused as a replay; forgetting one early only changes the
/// refusal to "unknown challenge".
#[doc(hidden)] // public for the fuzz target only
pub struct Challenges {
    pub(super) ttl: Duration,
    cap: usize,
    per_client: usize,
    live: HashMap<[u8; CHALLENGE_LEN], Live>,
    /// Issue order, which with one TTL for all is expiry order. Keys of
    /// challenges already spent are skipped (and compacted away).
    live_order: VecDeque<[u8; CHALLENGE_LEN]>,
    /// Live challenges per client network.
    clients: HashMap<IpAddr, usize>,
    spent: HashMap<[u8; CHALLENGE_LEN], (Instant, Spent)>,
    spent_order: VecDeque<[u8; CHALLENGE_LEN]>,
}

impl Challenges {
    pub fn new(ttl: Duration, cap: usize, per_client: usize) -> Challenges {
        Challenges {
            ttl,
            cap: cap.max(1),
            per_client: per_client.max(1),
            live: HashMap::new(),
            live_order: VecDeque::new(),
            clients: HashMap::new(),
            spent: HashMap::new(),
            spent_order: VecDeque::new(),
        }
    }

    /// A fresh challenge for `client`, remembered until it can no longer
    /// matter. `replacing`: the challenge this client's browser holds (its
    /// cookie), which the new one replaces.
    pub fn issue(
        &mut self,
        rng: &dyn SecureRandom,
        now: Instant,
        client: IpAddr,
        replacing: Option<&[u8]>,
    ) -> Result<[u8; CHALLENGE_LEN], LogonError> {
        self.sweep(now);
        if let Some(old) = replacing.and_then(|c| <[u8; CHALLENGE_LEN]>::try_from(c).ok())
            && self.live.get(&old).is_some_and(|l| l.client == client)
        {
            self.retire(old, now, Spent::Replaced);
        }
        let net = client_net(client);
        if self.clients.get(&net).copied().unwrap_or(0) >= self.per_client {
            return Err(LogonError::TooManyChallenges {
                retry_after: self.ttl.as_secs().max(1),
            });
        }
        if self.live.len() >= self.cap {
            let first_expiry = self
                .live_order
                .iter()
                .find_map(|k| self.live.get(k))
                .map_or(self.ttl, |l| l.expires.saturating_duration_since(now));
            return Err(LogonError::Busy {
                retry_after: first_expiry.as_secs().max(1),
            });
        }
        let mut c = [0u8; CHALLENGE_LEN];
        rng.fill(&mut c)
            .map_err(|_| LogonError::Internal("the random generator failed".into()))?;
        self.live.insert(
            c,
            Live {
                expires: now + self.ttl,
                client,
            },
        );
        self.live_order.push_back(c);
        *self.clients.entry(net).or_insert(0) += 1;
        Ok(c)
    }

    /// Use a challenge: it is spent whatever happens next.
    pub fn take(&mut self, challenge: &[u8], now: Instant) -> Result<(), LogonError> {
        self.sweep(now);
        let Ok(key) = <[u8; CHALLENGE_LEN]>::try_from(challenge) else {
            return Err(LogonError::UnknownChallenge);
        };
        if self.live.contains_key(&key) {
            self.retire(key, now, Spent::Used);
            return Ok(());
        }
        let (_, why) = self
            .spent
            .get_mut(&key)
            .ok_or(LogonError::UnknownChallenge)?;
        match *why {
            Spent::Used => Err(LogonError::ChallengeUsed),
            Spent::Replaced => Err(LogonError::ChallengeReplaced),
            Spent::Expired => {
                *why = Spent::Used;
                Err(LogonError::ChallengeExpired {
                    minutes: self.ttl.as_secs().div_ceil(60),
                })
            }
        }
    }

    /// A live challenge becomes spent.
    fn retire(&mut self, key: [u8; CHALLENGE_LEN], now: Instant, why: Spent) {
        let Some(live) = self.live.remove(&key) else {
            return;
        };
        let net = client_net(live.client);
        if let Some(n) = self.clients.get_mut(&net) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.clients.remove(&net);
            }
        }
        while self.spent.len() >= self.cap {
            match self.spent_order.pop_front() {
                Some(oldest) => {
                    self.spent.remove(&oldest);
                }
                None => {
                    self.spent.clear();
                    break;
                }
            }
        }
        let forget_at = live.expires.max(now) + REMEMBER_AFTER_EXPIRY;
        if self.spent.insert(key, (forget_at, why)).is_none() {
            self.spent_order.push_back(key);
        }
    }

    /// Expire what is due, forget what no longer matters.
    fn sweep(&mut self, now: Instant) {
        while let Some(oldest) = self.live_order.front().copied() {
            match self.live.get(&oldest) {
                Some(l) if now < l.expires => break,
                Some(_) => self.retire(oldest, now, Spent::Expired),
                None => {}
            }
            self.live_order.pop_front();
        }
        // Keys of used challenges stay in `live_order` until they reach
        // its front; do not let a stream of quick logons pile them up.
        if self.live_order.len() > 2 * self.live.len() + 64 {
            let live = &self.live;
            self.live_order.retain(|k| live.contains_key(k));
        }
        while let Some(oldest) = self.spent_order.front() {
            if self.spent.get(oldest).is_some_and(|(at, _)| now < *at) {
                break;
            }
            self.spent.remove(oldest);
            self.spent_order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;
    use crate::logon::test_clients::{HOME, ip};

    #[test]
    fn challenges_are_single_use_and_expire() {
        let rng = SystemRandom::new();
        let t0 = Instant::now();
        let mut c = Challenges::new(Duration::from_secs(300), 100, 10);
        let a = c.issue(&rng, t0, HOME, None).unwrap();
        let b = c.issue(&rng, t0, HOME, None).unwrap();
        assert_ne!(a, b);
        assert_eq!(c.take(&a, t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(c.take(&a, t0), Err(LogonError::ChallengeUsed));
        assert_eq!(
            c.take(&b, t0 + Duration::from_secs(300)),
            Err(LogonError::ChallengeExpired { minutes: 5 })
        );
        // Refused once as expired; after that it is spent.
        assert_eq!(
            c.take(&b, t0 + Duration::from_secs(301)),
            Err(LogonError::ChallengeUsed)
        );
        assert_eq!(c.take(&[0u8; 32], t0), Err(LogonError::UnknownChallenge));
        assert_eq!(c.take(&[0u8; 5], t0), Err(LogonError::UnknownChallenge));
        // Long after expiry they are forgotten.
        let later = t0 + Duration::from_secs(300) + REMEMBER_AFTER_EXPIRY;
        assert_eq!(c.take(&a, later), Err(LogonError::UnknownChallenge));
        assert!(c.live.is_empty() && c.live_order.is_empty() && c.clients.is_empty());
        assert!(c.spent.is_empty() && c.spent_order.is_empty());
    }

    #[test]
    fn client_networks_are_a_v4_slash_24_and_a_v6_slash_64() {
        let net = |s: &str| client_net(s.parse().unwrap()).to_string();
        assert_eq!(net("192.0.2.77"), "192.0.2.0");
        assert_eq!(net("::ffff:192.0.2.77"), "192.0.2.0");
        assert_eq!(net("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(net("::1"), "::");
    }

    #[test]
    fn one_network_cannot_take_every_challenge() {
        let rng = SystemRandom::new();
        let now = Instant::now();
        let mut c = Challenges::new(CHALLENGE_TTL, MAX_CHALLENGES, MAX_CHALLENGES_PER_CLIENT);
        // 625 addresses of one IPv6 /64 used to hold 16 each: every live
        // challenge. Now the /64 holds 16 in all.
        let mut issued = 0;
        for n in 0..625u128 {
            let a = std::net::Ipv6Addr::from((0x2001_0db8_0000_0001u128 << 64) | (n + 1));
            for _ in 0..16 {
                match c.issue(&rng, now, IpAddr::V6(a), None) {
                    Ok(_) => issued += 1,
                    Err(e) => assert_eq!(e.code(), "too_many_challenges"),
                }
            }
        }
        println!("one /64, 625 addresses x 16: {issued} issued");
        assert_eq!(issued, MAX_CHALLENGES_PER_CLIENT);
        // The same for an IPv4 /24, also when seen as IPv4-mapped IPv6.
        let mut issued = 0;
        for n in 0..=255u8 {
            let a = std::net::Ipv4Addr::new(203, 0, 113, n);
            let seen = if n % 2 == 0 {
                IpAddr::V4(a)
            } else {
                IpAddr::V6(a.to_ipv6_mapped())
            };
            for _ in 0..16 {
                issued += usize::from(c.issue(&rng, now, seen, None).is_ok());
            }
        }
        println!("one /24, 256 addresses x 16: {issued} issued");
        assert_eq!(issued, MAX_CHALLENGES_PER_CLIENT);
        // Everyone else is served.
        assert!(c.issue(&rng, now, HOME, None).is_ok());
        let other = "2001:db8:0:2::1".parse().unwrap();
        assert!(c.issue(&rng, now, other, None).is_ok());
    }

    #[test]
    fn a_flood_of_challenges_does_not_evict_one_in_progress() {
        let rng = SystemRandom::new();
        let now = Instant::now();
        let mut c = Challenges::new(CHALLENGE_TTL, 4, 2);
        let in_progress = c.issue(&rng, now, HOME, None).unwrap();
        // One client floods: beyond its share, 429.
        let mut refused = Vec::new();
        for _ in 0..20 {
            if let Err(e) = c.issue(&rng, now, ip(1), None) {
                refused.push(e.code());
            }
        }
        println!(
            "one client, 20 challenges, 2 each: {} refused",
            refused.len()
        );
        assert_eq!(refused.len(), 18);
        assert!(refused.iter().all(|code| *code == "too_many_challenges"));
        // Many clients flood: beyond the table, 503, and nothing is evicted.
        let mut busy = 0;
        for n in 2..=21 {
            match c.issue(&rng, now, ip(n), None) {
                Err(e @ LogonError::Busy { .. }) => {
                    assert_eq!(e.status(), 503);
                    busy += 1;
                }
                Err(e) => panic!("{e}"),
                Ok(_) => {}
            }
        }
        println!("20 clients, 1 challenge each, room for 1 more: {busy} refused");
        assert_eq!(busy, 19);
        assert_eq!(c.take(&in_progress, now), Ok(()));
        // Room again once one is used; all room once they expired.
        assert!(c.issue(&rng, now, ip(30), None).is_ok());
        assert!(c.issue(&rng, now, ip(31), None).is_err());
        let later = now + CHALLENGE_TTL;
        for n in 40..44 {
            assert!(c.issue(&rng, later, ip(n), None).is_ok());
        }
    }

    #[test]
    fn asking_again_replaces_the_browsers_own_challenge_only() {
        let rng = SystemRandom::new();
        let now = Instant::now();
        let mut c = Challenges::new(CHALLENGE_TTL, 100, 2);
        let first = c.issue(&rng, now, HOME, None).unwrap();
        // The same browser asks again (its cookie names `first`) many times:
        // it never runs out, and only its latest challenge is live.
        let mut latest = first;
        for _ in 0..10 {
            latest = c.issue(&rng, now, HOME, Some(&latest)).unwrap();
        }
        assert_eq!(c.take(&first, now), Err(LogonError::ChallengeReplaced));
        // Another client cannot retire a challenge it was not issued.
        let theirs = c.issue(&rng, now, ip(1), Some(&latest)).unwrap();
        assert_ne!(theirs, latest);
        assert_eq!(c.take(&latest, now), Ok(()));
        assert_eq!(c.take(&theirs, now), Ok(()));
    }

    #[test]
    fn spent_challenges_are_remembered_within_bounds() {
        let rng = SystemRandom::new();
        let now = Instant::now();
        let mut c = Challenges::new(CHALLENGE_TTL, 8, 8);
        for _ in 0..1000 {
            let x = c.issue(&rng, now, HOME, None).unwrap();
            c.take(&x, now).unwrap();
        }
        assert!(c.spent.len() <= 8 && c.spent_order.len() <= 8);
        assert!(c.live.is_empty() && c.live_order.len() <= 64 + 1);
    }
}
