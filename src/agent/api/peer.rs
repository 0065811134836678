//! Who is on the other end of a loopback connection: the OS user that owns
//! the client's socket. Only the agent's own user is served (the contract:
//! "the connecting process must belong to the agent's own OS user"); on a
//! shared host another user's browser or program reaches the same port.
//!
//! On Linux the kernel's socket table says it: the client socket is the
//! line of `/proc/net/tcp` (or `tcp6`) whose local address is the peer's
//! address and whose remote address is ours, and its `uid` column is the
//! owner. Reading the table is what `ss -tnpe` does; no crate offers it for
//! one socket. Elsewhere the check is not made here (SECURITY.md says how
//! Windows and macOS would do it).

use std::net::{IpAddr, SocketAddr};

/// The owner (uid) of the first socket in the kernel's TCP table for
/// `family`'s address family whose (local, remote, state) `wanted` accepts.
#[cfg(target_os = "linux")]
fn table_owner(
    family: SocketAddr,
    wanted: impl Fn(SocketAddr, SocketAddr, &str) -> bool,
) -> Option<u32> {
    let table = match family.ip() {
        IpAddr::V4(_) => "/proc/net/tcp",
        IpAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    text.lines().skip(1).find_map(|line| {
        let mut cols = line.split_whitespace();
        let _slot = cols.next()?;
        let l = parse_addr(cols.next()?)?;
        let r = parse_addr(cols.next()?)?;
        let state = cols.next()?;
        // tx:rx queue, timer, retransmits, then uid.
        let uid = cols.nth(3)?.parse().ok()?;
        wanted(l, r, state).then_some(uid)
    })
}

/// The OS user owning the client socket `peer` connected to `local`, if the
/// kernel's table shows it.
#[cfg(target_os = "linux")]
pub fn owner(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    table_owner(peer, |l, r, _| l == peer && r == local)
}

#[cfg(not(target_os = "linux"))]
pub fn owner(_peer: SocketAddr, _local: SocketAddr) -> Option<u32> {
    None
}

/// The OS user whose socket listens on `addr` (when binding it failed).
#[cfg(target_os = "linux")]
pub fn listener(addr: SocketAddr) -> Option<u32> {
    // State 0A is TCP_LISTEN.
    table_owner(addr, |l, _, state| state == "0A" && l == addr)
}

#[cfg(not(target_os = "linux"))]
pub fn listener(_addr: SocketAddr) -> Option<u32> {
    None
}

/// A user's name from the password database, else the number.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id: u32 = f.nth(1)?.parse().ok()?;
                (id == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The agent's own user.
#[cfg(unix)]
pub fn me() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
pub fn me() -> u32 {
    0
}

/// Whether the connection from `peer` may be served: it belongs to this
/// user. Where the platform gives no answer, the Host and Origin checks
/// remain the only gate.
pub fn allowed(peer: SocketAddr, local: SocketAddr) -> bool {
    if cfg!(target_os = "linux") {
        owner(peer, local) == Some(me())
    } else {
        true
    }
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6), as the kernel
/// prints them: each 32-bit word in the machine's byte order.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip: IpAddr = match addr.len() {
        8 => std::net::Ipv4Addr::from(word(0)?).into(),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(i)?);
            }
            std::net::Ipv6Addr::from(b).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_addresses_parse() {
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_addr("0100007F:7A66"),
                Some("127.0.0.1:31334".parse().expect("addr"))
            );
            assert_eq!(
                parse_addr("00000000000000000000000001000000:0050"),
                Some("[::1]:80".parse().expect("addr"))
            );
        }
        assert_eq!(parse_addr("zz:1"), None);
        assert_eq!(parse_addr("0100007F"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_connection_of_this_process_is_its_own_user() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(local).expect("connect");
        let (_server, peer) = listener.accept().expect("accept");
        assert_eq!(client.local_addr().expect("addr"), peer);
        assert_eq!(owner(peer, local), Some(me()));
        assert!(allowed(peer, local));
    }
}
