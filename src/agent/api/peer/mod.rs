//! Who is on the other end of a loopback connection: the OS user that owns
//! the client's socket. Only the agent's own user is served (the contract:
//! "the connecting process must belong to the agent's own OS user"); on a
//! shared host another user's browser or program reaches the same port.
//!
//! On Linux one exact question to the kernel says it: a `sock_diag`
//! netlink request (`SOCK_DIAG_BY_FAMILY`, what `ss` uses) for the TCP
//! socket whose local end is the peer's address and whose remote end is
//! ours answers with that socket's owner (`idiag_uid`) and inode. No table
//! is read and nothing is matched by hand. A client may hold an IPv6 socket
//! connected to `::ffff:127.0.0.1` (Java does by default) while the agent
//! sees an IPv4 peer: both families are asked.
//!
//! Anything the kernel does not answer exactly is refused (fail closed):
//! no answer, an answer for another socket, a socket in TIME_WAIT (its
//! owner is no longer known). Elsewhere than Linux there is no check yet,
//! so every caller is refused (SECURITY.md says how Windows and macOS
//! would do it).
//!
//! The process behind a socket of the agent's own user is looked up only
//! when a per-process cap needs it ([`processes_of`]: the descriptors
//! `socket:[inode]` of this user's processes, as `ss -p` and `lsof` do).

use std::collections::HashMap;
use std::net::SocketAddr;

#[cfg(target_os = "linux")]
#[doc(hidden)]
pub mod diag;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(any(target_os = "linux", windows)))]
mod none;
#[cfg(windows)]
pub(crate) mod windows;

/// Who is connecting, as far as this platform can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A socket of the agent's own OS user, by its inode.
    Own { inode: u64 },
    /// A socket of another OS user: its user id (Unix), the process id
    /// (Windows; see [`Callers::user_name`]).
    Other(u32),
    /// Not known, so refused: why.
    Unknown(&'static str),
}

/// Who is calling: one implementation per platform; a platform without
/// one refuses every caller ([`none`]).
pub trait Callers: Sync {
    /// Who holds the client socket `peer` connected to `local`.
    fn identify(&self, peer: SocketAddr, local: SocketAddr) -> Peer;
    /// The OS user whose socket listens on `addr` (when binding it failed).
    fn listener(&self, addr: SocketAddr) -> Option<u32>;
    /// For each of `inodes`, the process of this user holding that socket,
    /// where one is found (it may have exited). One pass over this user's
    /// processes, however many inodes are asked for.
    fn processes_of(&self, inodes: &[u64]) -> HashMap<u64, u32>;
    /// The same, among the processes `pids` only: as cheap as their
    /// descriptors (a flood's process is asked about each of its new
    /// connections this way, not with a pass over every process).
    fn processes_among(&self, inodes: &[u64], pids: &[u32]) -> HashMap<u64, u32> {
        let mut found = self.processes_of(inodes);
        found.retain(|_, p| pids.contains(p));
        found
    }
    /// How a refusal names the other user of [`Peer::Other`].
    fn user_name(&self, other: u32) -> String {
        user_name(other)
    }
}

/// This platform's caller check.
pub fn this_platform() -> &'static dyn Callers {
    #[cfg(target_os = "linux")]
    return &linux::Linux;
    #[cfg(windows)]
    return &windows::Windows;
    #[cfg(not(any(target_os = "linux", windows)))]
    return &none::Refuse;
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
pub fn me() -> u32 {
    crate::platform::user_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    /// Who the client is, and the client (kept open while it is looked at).
    fn connect_from(listen: &str, to: &str) -> (Peer, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind(listen).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let to: SocketAddr = format!("{to}:{port}").parse().expect("addr");
        let client = std::net::TcpStream::connect(to).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        let local = server.local_addr().expect("addr");
        assert_eq!(client.peer_addr().expect("addr").port(), local.port());
        (this_platform().identify(peer, local), client)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_connection_of_this_process_is_its_own_user() {
        for (listen, to) in [
            ("127.0.0.1:0", "127.0.0.1"),
            // An IPv6 socket connected to an IPv4 listener (Java's default).
            ("127.0.0.1:0", "[::ffff:127.0.0.1]"),
            ("[::1]:0", "[::1]"),
        ] {
            let (who, _client) = connect_from(listen, to);
            println!("{listen} <- {to}: {who:?}");
            let Peer::Own { inode } = who else {
                panic!("{listen} <- {to}: {who:?}")
            };
            assert_eq!(
                this_platform().processes_of(&[inode]).get(&inode),
                Some(&std::process::id())
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_socket_the_kernel_does_not_know_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr");
        // No such client socket: nothing to trust.
        let ghost: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        assert!(matches!(
            this_platform().identify(ghost, local),
            Peer::Unknown(_)
        ));
        // The listener is found by its address (its owner is this user).
        assert_eq!(listener_of(local), Some(me()));
    }

    #[cfg(target_os = "linux")]
    fn listener_of(addr: SocketAddr) -> Option<u32> {
        this_platform().listener(addr)
    }

    #[cfg(not(target_os = "linux"))]
    #[test]
    fn without_a_check_every_caller_is_refused() {
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        assert!(matches!(this_platform().identify(a, a), Peer::Unknown(_)));
    }
}
