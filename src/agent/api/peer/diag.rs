//! The kernel's socket diagnostics (`NETLINK_SOCK_DIAG`, linux/inet_diag.h),
//! one exact lookup at a time.
//!
//! The request and the answer are encoded here by hand: each is a fixed
//! layout of the kernel's stable user-space ABI (a `nlmsghdr` and an
//! `inet_diag_req_v2`, a `nlmsghdr` and an `inet_diag_msg`), about a
//! hundred bytes. The `libc` crate has the netlink socket but not these
//! structures; the netlink crates that have them (rust-netlink's
//! `netlink-packet-sock-diag` with `-core`, `-utils` and `netlink-sys`)
//! would bring four crates for one request and one reply.
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// linux/sock_diag.h
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// linux/netlink.h
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_sockid`: sport, dport (big-endian), src[4], dst[4]
/// (big-endian words, an IPv4 address in the first), if, cookie[2].
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, id.
const REQ_LEN: usize = 8 + SOCKID_LEN;
/// `struct inet_diag_msg`: family, state, timer, retrans, id, expires,
/// rqueue, wqueue, uid, inode.
const MSG_LEN: usize = 4 + SOCKID_LEN + 20;
/// linux/inet_diag.h: no cookie to match.
const NO_COOKIE: u32 = !0;
/// TCP states (net/tcp_states.h) whose socket has no owner to report
/// (a time-wait or request socket answers uid 0) or is not a
/// connection (a listener).
const TCP_TIME_WAIT: u8 = 6;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;
const TCP_NEW_SYN_RECV: u8 = 12;

/// The answer for one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    pub uid: u32,
    pub inode: u64,
}

/// The address families to ask, in order, for a connection between
/// `a` and `b` as the agent sees it: the family of the addresses, and
/// for IPv4 (plain or mapped) the other one too, since an IPv6 socket
/// connected to `::ffff:127.0.0.1` speaks IPv4 on the wire.
pub fn families(a: SocketAddr, b: SocketAddr) -> Vec<i32> {
    let v4 = |s: SocketAddr| s.ip().to_canonical().is_ipv4();
    match (a.ip(), v4(a) && v4(b)) {
        (IpAddr::V4(_), _) => vec![libc::AF_INET, libc::AF_INET6],
        (IpAddr::V6(_), true) => vec![libc::AF_INET6, libc::AF_INET],
        (IpAddr::V6(_), false) => vec![libc::AF_INET6],
    }
}

/// An address as `family` writes it in an `inet_diag_sockid`, or
/// `None` where that family cannot carry it.
fn encode_ip(family: i32, ip: IpAddr) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    match (family, ip.to_canonical()) {
        (libc::AF_INET, IpAddr::V4(v4)) => out[..4].copy_from_slice(&v4.octets()),
        (libc::AF_INET6, IpAddr::V4(v4)) => out = v4.to_ipv6_mapped().octets(),
        (libc::AF_INET6, IpAddr::V6(v6)) => out = v6.octets(),
        _ => return None,
    }
    Some(out)
}

/// The request for the TCP socket of `family` whose local end is `src`
/// and remote end `dst` (an unspecified `dst` with port 0: the
/// listener on `src`).
fn request(family: i32, src: SocketAddr, dst: SocketAddr, seq: u32) -> Option<Vec<u8>> {
    let (s, d) = (encode_ip(family, src.ip())?, encode_ip(family, dst.ip())?);
    let total = NLMSG_HDRLEN + REQ_LEN;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    // An exact lookup: a request without NLM_F_DUMP.
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.push(family as u8);
    m.push(libc::IPPROTO_TCP as u8);
    m.push(0); // no extensions
    m.push(0);
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    m.extend_from_slice(&src.port().to_be_bytes());
    m.extend_from_slice(&dst.port().to_be_bytes());
    m.extend_from_slice(&s);
    m.extend_from_slice(&d);
    m.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    Some(m)
}

/// What the kernel said about one socket.
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    pub family: u8,
    pub state: u8,
    pub sport: u16,
    pub dport: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub uid: u32,
    pub inode: u64,
}

/// The reply to request `seq`: `Ok(None)` where no such socket exists.
/// (Public for the fuzz target: the reply is the kernel's, but read
/// with the care of hostile bytes.)
pub fn parse(reply: &[u8], seq: u32) -> Result<Option<Found>, &'static str> {
    const BAD: &str = "the kernel's socket diagnostics answered something unreadable";
    fn bytes<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
        b.get(at..at + N)?.try_into().ok()
    }
    let u16_at = |b: &[u8], i: usize| bytes::<2>(b, i).map(u16::from_ne_bytes);
    let u32_at = |b: &[u8], i: usize| bytes::<4>(b, i).map(u32::from_ne_bytes);
    let mut rest = reply;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32_at(rest, 0).ok_or(BAD)? as usize;
        let kind = u16_at(rest, 4).ok_or(BAD)?;
        let got_seq = u32_at(rest, 8).ok_or(BAD)?;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(BAD);
        }
        let body = rest.get(NLMSG_HDRLEN..len).ok_or(BAD)?;
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        if got_seq != seq {
            continue;
        }
        match kind {
            NLMSG_ERROR => {
                // A negative errno; compared as such (negating
                // i32::MIN, which no kernel sends, would overflow).
                let code = u32_at(body, 0).ok_or(BAD)? as i32;
                return match code {
                    0 => Ok(None),
                    c if c == -libc::ENOENT => Ok(None),
                    _ => Err("the kernel's socket diagnostics refused the question"),
                };
            }
            NLMSG_DONE => return Ok(None),
            SOCK_DIAG_BY_FAMILY if body.len() >= MSG_LEN => {
                // The socket id starts at 4; the owner and inode follow
                // it after three 32-bit counters.
                let tail = 4 + SOCKID_LEN;
                let [family, state] = bytes::<2>(body, 0).ok_or(BAD)?;
                return Ok(Some(Found {
                    family,
                    state,
                    sport: bytes::<2>(body, 4).map(u16::from_be_bytes).ok_or(BAD)?,
                    dport: bytes::<2>(body, 6).map(u16::from_be_bytes).ok_or(BAD)?,
                    src: bytes::<16>(body, 8).ok_or(BAD)?,
                    dst: bytes::<16>(body, 24).ok_or(BAD)?,
                    uid: u32_at(body, tail + 12).ok_or(BAD)?,
                    inode: u64::from(u32_at(body, tail + 16).ok_or(BAD)?),
                }));
            }
            _ => return Err(BAD),
        }
    }
    Err(BAD)
}

/// Send `req` on a fresh `NETLINK_SOCK_DIAG` socket and read the reply.
fn ask(req: &[u8], buf: &mut [u8]) -> Result<usize, &'static str> {
    const NO: &str = "the kernel's socket diagnostics cannot be asked";
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(NO);
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A kernel that does not answer within a second: refused, never waited on.
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: a valid descriptor and a timeval of the size given.
    let set = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(NO);
    }
    // SAFETY: sockaddr_nl is plain data; all zero is the kernel (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: the buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 || sent as usize != req.len() {
        return Err(NO);
    }
    // SAFETY: `buf` is valid for writes of its length.
    let got = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if got < 0 {
        return Err("the kernel's socket diagnostics did not answer");
    }
    Ok(got as usize)
}

fn next_seq() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

fn query(family: i32, src: SocketAddr, dst: SocketAddr) -> Result<Option<Found>, &'static str> {
    let seq = next_seq();
    let Some(req) = request(family, src, dst, seq) else {
        return Ok(None);
    };
    let mut buf = [0u8; 8192];
    let n = ask(&req, &mut buf)?;
    parse(buf.get(..n).unwrap_or(&[]), seq)
}

/// The client socket of `family` whose local end is `peer` and whose
/// remote end is `local`: its owner, if the kernel names exactly that
/// socket, connected.
pub fn lookup(
    family: i32,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<Option<Socket>, &'static str> {
    let Some(f) = query(family, peer, local)? else {
        return Ok(None);
    };
    // The kernel's exact lookup may fall back to a listener on the
    // peer's port; only the very socket asked for counts.
    let exact = i32::from(f.family) == family
        && f.sport == peer.port()
        && f.dport == local.port()
        && Some(f.src) == encode_ip(family, peer.ip())
        && Some(f.dst) == encode_ip(family, local.ip());
    if !exact {
        return Ok(None);
    }
    if matches!(
        f.state,
        TCP_TIME_WAIT | TCP_CLOSE | TCP_LISTEN | TCP_NEW_SYN_RECV
    ) {
        return Err("the connecting socket has no owner any more");
    }
    Ok(Some(Socket {
        uid: f.uid,
        inode: f.inode,
    }))
}

/// The owner of the socket of `family` listening on `addr`.
pub fn listener(family: i32, addr: SocketAddr) -> Result<Option<u32>, &'static str> {
    let any = SocketAddr::new(
        match addr.ip() {
            IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        },
        0,
    );
    Ok(query(family, addr, any)?
        .filter(|f| f.state == TCP_LISTEN && f.sport == addr.port())
        .map(|f| f.uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_kernels_layout() {
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:31334".parse().unwrap();
        let r = request(libc::AF_INET, peer, local, 7).unwrap();
        assert_eq!(r.len(), 72);
        assert_eq!(&r[0..4], &72u32.to_ne_bytes());
        assert_eq!(&r[4..6], &20u16.to_ne_bytes());
        assert_eq!(r[16], libc::AF_INET as u8);
        assert_eq!(r[17], libc::IPPROTO_TCP as u8);
        assert_eq!(&r[24..26], &40000u16.to_be_bytes());
        assert_eq!(&r[26..28], &31334u16.to_be_bytes());
        assert_eq!(&r[28..32], &[127, 0, 0, 1]);
        assert_eq!(&r[44..48], &[127, 0, 0, 1]);
        let mapped = request(libc::AF_INET6, peer, local, 7).unwrap();
        assert_eq!(
            &mapped[28..44],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]
        );
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert!(request(libc::AF_INET, v6, v6, 1).is_none());
    }

    #[test]
    fn hostile_replies_are_refused_not_trusted() {
        assert!(parse(&[], 1).is_err());
        assert!(parse(&[0xff; 15], 1).is_err());
        // A length beyond the reply, a length under a header.
        let mut m = vec![0u8; 16];
        m[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse(&m, 1).is_err());
        m[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(parse(&m, 1).is_err());
        // A short diagnostics message: refused.
        let mut m = vec![0u8; 20];
        m[0..4].copy_from_slice(&20u32.to_ne_bytes());
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m[8..12].copy_from_slice(&1u32.to_ne_bytes());
        assert!(parse(&m, 1).is_err());
        // ENOENT: no such socket.
        let mut m = vec![0u8; 20];
        m[0..4].copy_from_slice(&20u32.to_ne_bytes());
        m[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m[8..12].copy_from_slice(&1u32.to_ne_bytes());
        m[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse(&m, 1), Ok(None));
        m[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert!(parse(&m, 1).is_err());
        // An error code of i32::MIN (found by the peer_table fuzz
        // target: negating it overflowed): refused, no panic.
        m[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        assert!(parse(&m, 1).is_err());
    }
}
