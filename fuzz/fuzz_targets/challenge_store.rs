//! The reference bank's store of logon challenges
//! (bank/src/logon.rs `Challenges`), driven by any sequence of issues,
//! uses and clock steps from any client addresses, checked against a model:
//! a challenge is used at most once, only if issued and neither replaced
//! nor expired; a client network (IPv4 /24, IPv6 /64) never holds more live
//! challenges than its share, nor the store more than its cap; only the
//! client a challenge was issued to can replace it.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use certagent_bank::logon::{Challenges, client_net};
use libfuzzer_sys::fuzz_target;

const TTL: Duration = Duration::from_secs(10);
const CAP: usize = 8;
const PER_CLIENT: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Live,
    Gone,
}

struct Issued {
    client: IpAddr,
    at: Instant,
    state: State,
}

fn client(b: u8) -> IpAddr {
    // A few networks and several hosts in each, both families, and
    // IPv4-mapped IPv6 (counted as IPv4).
    let host = b & 0x0f;
    match b >> 4 & 0x3 {
        0 => IpAddr::V4(Ipv4Addr::new(10, 0, b >> 6, host)),
        1 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, u16::from(b >> 6), 0, 0, 0, u16::from(host))),
        2 => IpAddr::V6(Ipv4Addr::new(10, 0, b >> 6, host).to_ipv6_mapped()),
        _ => IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
    }
}

fuzz_target!(|ops: Vec<(u8, u8, u8)>| {
    let rng = ring::rand::SystemRandom::new();
    let mut store = Challenges::new(TTL, CAP, PER_CLIENT);
    let mut now = Instant::now();
    let mut issued: Vec<([u8; 32], Issued)> = Vec::new();
    for (op, a, b) in ops.into_iter().take(512) {
        // Expired in the model: the store forgets them as they pass.
        for (_, i) in issued.iter_mut() {
            if i.state == State::Live && now >= i.at + TTL {
                i.state = State::Gone;
            }
        }
        match op % 4 {
            // A new challenge, maybe replacing one (any one: a client may
            // name another's).
            0 | 1 => {
                let who = client(a);
                let replacing = (op % 4 == 1)
                    .then(|| issued.get(usize::from(b) % issued.len().max(1)).map(|(c, _)| *c))
                    .flatten();
                let result = store.issue(&rng, now, who, replacing.as_ref().map(|c| &c[..]));
                if let Some(old) = replacing
                    && let Some((_, i)) = issued.iter_mut().find(|(c, _)| *c == old)
                    && i.client == who
                    && i.state == State::Live
                {
                    // Its own: replaced whatever the new one's fate.
                    i.state = State::Gone;
                }
                if let Ok(c) = result {
                    issued.push((c, Issued { client: who, at: now, state: State::Live }));
                }
                let live = |net: Option<IpAddr>| {
                    issued
                        .iter()
                        .filter(|(_, i)| {
                            i.state == State::Live && net.is_none_or(|n| client_net(i.client) == n)
                        })
                        .count()
                };
                assert!(live(Some(client_net(who))) <= PER_CLIENT);
                assert!(live(None) <= CAP);
            }
            // Use a challenge: a known one, or bytes.
            2 => {
                let pick = issued.get(usize::from(a) % issued.len().max(1)).map(|(c, _)| *c);
                let challenge = pick.unwrap_or([b; 32]);
                let ok = store.take(&challenge, now).is_ok();
                match issued.iter_mut().find(|(c, _)| *c == challenge) {
                    Some((_, i)) => {
                        assert_eq!(ok, i.state == State::Live, "used: {ok}");
                        i.state = State::Gone;
                    }
                    None => assert!(!ok, "an unknown challenge was accepted"),
                }
            }
            // Time passes (never backwards).
            _ => now += Duration::from_millis(u64::from(a) * 100),
        }
    }
});
