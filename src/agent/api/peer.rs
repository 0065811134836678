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
//!
//! The same line gives the socket's inode; the process holding it is the
//! one of this user's processes with a descriptor `socket:[inode]` (what
//! `ss -p` and `lsof` do). Connections are capped per process, so one local
//! program cannot take every connection the agent serves.

use std::net::{IpAddr, SocketAddr};

/// A client socket as the kernel's table shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Socket {
    uid: u32,
    inode: u64,
}

/// Who is connecting, as far as this platform can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A process of the agent's own user.
    Process(u32),
    /// A socket of this OS user whose process was not found (it exited, or
    /// this user may not look at it).
    User(u32),
    /// The platform does not say (not Linux).
    Unknown,
}

impl Peer {
    /// Whether the connection may be served: it belongs to this user. Where
    /// the platform gives no answer, the Host and Origin checks remain the
    /// only gate.
    pub fn is_own(self) -> bool {
        match self {
            Peer::Process(_) => true,
            Peer::User(uid) => uid == me(),
            Peer::Unknown => !cfg!(target_os = "linux"),
        }
    }
}

/// Who holds the client socket `peer` connected to `local`.
#[cfg(target_os = "linux")]
pub fn identify(peer: SocketAddr, local: SocketAddr) -> Peer {
    match table_find(peer, |l, r, _| l == peer && r == local) {
        Some(s) if s.uid == me() => process_of(s.inode).map_or(Peer::User(s.uid), Peer::Process),
        Some(s) => Peer::User(s.uid),
        None => Peer::Unknown,
    }
}

#[cfg(not(target_os = "linux"))]
pub fn identify(_peer: SocketAddr, _local: SocketAddr) -> Peer {
    Peer::Unknown
}

/// The process of this user with a descriptor on socket `inode`.
#[cfg(target_os = "linux")]
fn process_of(inode: u64) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let want = format!("socket:[{inode}]");
    let me = me();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let pid: u32 = p.file_name().to_str()?.parse().ok()?;
        // Only this user's processes: others' descriptors are not ours to read.
        if p.metadata().ok()?.uid() != me {
            return None;
        }
        let fds = std::fs::read_dir(p.path().join("fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()))
            .then_some(pid)
    })
}

/// The first socket in the kernel's TCP table for `family`'s address
/// family whose (local, remote, state) `wanted` accepts.
#[cfg(target_os = "linux")]
fn table_find(
    family: SocketAddr,
    wanted: impl Fn(SocketAddr, SocketAddr, &str) -> bool,
) -> Option<Socket> {
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
        if !wanted(l, r, state) {
            return None;
        }
        // tx:rx queue, timer, retransmits, then uid, timeout and inode.
        let uid = cols.nth(3)?.parse().ok()?;
        let inode = cols.nth(1)?.parse().ok()?;
        Some(Socket { uid, inode })
    })
}

/// The OS user whose socket listens on `addr` (when binding it failed).
#[cfg(target_os = "linux")]
pub fn listener(addr: SocketAddr) -> Option<u32> {
    // State 0A is TCP_LISTEN.
    table_find(addr, |l, _, state| state == "0A" && l == addr).map(|s| s.uid)
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

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6), as the kernel
/// prints them: each 32-bit word in the machine's byte order.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn parse_addr(s: &str) -> Option<SocketAddr> {
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
        let who = identify(peer, local);
        assert_eq!(who, Peer::Process(std::process::id()));
        assert!(who.is_own());
    }
}
