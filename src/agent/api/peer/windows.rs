//! The caller check on Windows: the TCP connection table with owner
//! process ids (`GetExtendedTcpTable`, IPv4 and IPv6, what `netstat -ano`
//! reads) names the process holding the client's end of the connection;
//! that process's user SID (its access token's `TokenUser`) must be the
//! agent's own. A connection with no Windows owner (under Wine, a Linux
//! program), a process that cannot be opened, or a SID that cannot be read
//! is refused: nothing unknown is let in.
//!
//! `Peer::Own` carries the process id (Windows names a socket by nothing
//! a program can look up), so the per-process cap counts processes as it
//! does on Linux; `Peer::Other` carries the other process's id.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID,
    TCP_TABLE_OWNER_PID_CONNECTIONS,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Security::{GetLengthSid, GetTokenInformation, TOKEN_QUERY, TokenUser};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::{Callers, Peer};

pub struct Windows;

impl Callers for Windows {
    fn identify(&self, peer: SocketAddr, local: SocketAddr) -> Peer {
        let Some(pid) = owner(peer, local).filter(|&p| p != 0) else {
            return Peer::Unknown("no Windows process holds the connecting socket");
        };
        // SAFETY: the pseudo-handle of this process, always valid.
        let ours = sid_of(unsafe { GetCurrentProcess() }, false);
        let theirs = open_process(pid).and_then(|h| sid_of(h, true));
        match (ours, theirs) {
            (Some(a), Some(b)) if a == b => Peer::Own {
                inode: u64::from(pid),
            },
            (Some(_), Some(_)) => Peer::Other(pid),
            _ => Peer::Unknown("the connecting process's user cannot be read"),
        }
    }

    fn listener(&self, _addr: SocketAddr) -> Option<u32> {
        None
    }

    fn processes_of(&self, inodes: &[u64]) -> HashMap<u64, u32> {
        // `Own` carries the process id already.
        inodes
            .iter()
            .filter_map(|&i| u32::try_from(i).ok().map(|p| (i, p)))
            .collect()
    }

    fn user_name(&self, other: u32) -> String {
        format!("the user of process {other}")
    }
}

/// The table of one address family, as Windows fills it (rows after a
/// 32-bit count, each `row` bytes). `None` when it cannot be read.
fn table(family: u16) -> Option<Vec<u8>> {
    let mut size = 0u32;
    let mut buf: Vec<u8> = Vec::new();
    // The table may grow between the size query and the read: a few tries.
    for _ in 0..4 {
        buf.resize(size as usize, 0);
        // SAFETY: `buf` holds `size` writable bytes (none at first: the
        // call only says the size it needs).
        let rv = unsafe {
            GetExtendedTcpTable(
                buf.as_mut_ptr().cast(),
                &mut size,
                0,
                u32::from(family),
                TCP_TABLE_OWNER_PID_CONNECTIONS,
                0,
            )
        };
        match rv {
            0 => {
                buf.truncate(size as usize);
                return Some(buf);
            }
            // ERROR_INSUFFICIENT_BUFFER: `size` says how much now.
            122 => continue,
            _ => return None,
        }
    }
    None
}

/// The rows of a table: the count, then whole rows only (a short buffer
/// gives fewer rows, never a read past its end).
fn rows<T: Copy>(buf: &[u8]) -> Vec<T> {
    let Some(count) = buf.get(..4).and_then(|b| b.try_into().ok()) else {
        return Vec::new();
    };
    let count = u32::from_ne_bytes(count) as usize;
    // The rows start at the row type's alignment after the count.
    let start = std::mem::align_of::<T>().max(4);
    let size = std::mem::size_of::<T>();
    (0..count)
        .map_while(|i| buf.get(start + i * size..start + (i + 1) * size))
        // SAFETY: `chunk` has exactly size_of::<T>() bytes and T is a plain
        // row of integers and byte arrays (any bit pattern is valid);
        // read_unaligned copes with any placement.
        .map(|chunk| unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast::<T>()) })
        .collect()
}

fn port(p: u32) -> u16 {
    u16::from_be((p & 0xffff) as u16)
}

/// The process whose socket has `peer` as its own end and `local` as the
/// far one: the client's end of this connection.
fn owner(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let v6 = |ip: IpAddr| match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    if let (IpAddr::V4(p), IpAddr::V4(l)) = (peer.ip(), local.ip()) {
        let found = rows::<MIB_TCPROW_OWNER_PID>(&table(AF_INET)?)
            .into_iter()
            .find(|r| {
                Ipv4Addr::from(r.dwLocalAddr.to_ne_bytes()) == p
                    && port(r.dwLocalPort) == peer.port()
                    && Ipv4Addr::from(r.dwRemoteAddr.to_ne_bytes()) == l
                    && port(r.dwRemotePort) == local.port()
            });
        if let Some(r) = found {
            return Some(r.dwOwningPid);
        }
    }
    // An IPv6 socket, or one connected to an IPv4 address through
    // `::ffff:a.b.c.d` (the agent then sees an IPv4 peer).
    rows::<MIB_TCP6ROW_OWNER_PID>(&table(AF_INET6)?)
        .into_iter()
        .find(|r| {
            Ipv6Addr::from(r.ucLocalAddr) == v6(peer.ip())
                && port(r.dwLocalPort) == peer.port()
                && Ipv6Addr::from(r.ucRemoteAddr) == v6(local.ip())
                && port(r.dwRemotePort) == local.port()
        })
        .map(|r| r.dwOwningPid)
}

/// This process's user SID.
pub(crate) fn own_sid() -> Option<Vec<u8>> {
    // SAFETY: the pseudo-handle of this process, always valid.
    sid_of(unsafe { GetCurrentProcess() }, false)
}

/// The user SID of process `pid`, where it can be read.
pub(crate) fn sid_of_process(pid: u32) -> Option<Vec<u8>> {
    open_process(pid).and_then(|h| sid_of(h, true))
}

fn open_process(pid: u32) -> Option<HANDLE> {
    // SAFETY: plain call; a null handle means it failed.
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    (!h.is_null()).then_some(h)
}

/// The user SID of `process`'s access token, as bytes; `close` closes the
/// process handle afterwards.
fn sid_of(process: HANDLE, close: bool) -> Option<Vec<u8>> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `process` is a valid handle; `token` receives a new one.
    let opened = unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } != 0;
    if close {
        // SAFETY: our own handle from OpenProcess, closed once.
        unsafe { CloseHandle(process) };
    }
    if !opened {
        return None;
    }
    let mut size = 0u32;
    // SAFETY: a size query (no buffer).
    unsafe { GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut size) };
    // A TOKEN_USER (pointer-aligned) followed by the SID it points to.
    let mut buf = vec![0u64; (size as usize).div_ceil(8).max(1)];
    let len = u32::try_from(buf.len() * 8).unwrap_or(0);
    // SAFETY: `buf` holds `len` writable, 8-byte-aligned bytes.
    let ok =
        unsafe { GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut size) }
            != 0;
    // SAFETY: our own handle from OpenProcessToken, closed once.
    unsafe { CloseHandle(token) };
    if !ok {
        return None;
    }
    // SAFETY: Windows filled a TOKEN_USER at the start of `buf`; its SID
    // pointer points into `buf`, which lives until the copy below.
    unsafe {
        let user = std::ptr::read_unaligned(
            buf.as_ptr()
                .cast::<windows_sys::Win32::Security::TOKEN_USER>(),
        );
        let sid = user.User.Sid;
        if sid.is_null() {
            return None;
        }
        let n = GetLengthSid(sid) as usize;
        Some(std::slice::from_raw_parts(sid.cast::<u8>(), n).to_vec())
    }
}
