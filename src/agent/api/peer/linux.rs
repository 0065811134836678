//! The caller check on Linux: the kernel's socket diagnostics say who owns
//! the client's socket ([`super::diag`]), and `/proc/*/fd` which of this
//! user's processes holds it.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{Callers, Peer, diag, me};

pub struct Linux;

impl Callers for Linux {
    /// Who holds the client socket `peer` connected to `local`.
    fn identify(&self, peer: SocketAddr, local: SocketAddr) -> Peer {
        let mut why = "the kernel does not know the connecting socket";
        for family in diag::families(peer, local) {
            match diag::lookup(family, peer, local) {
                Ok(Some(s)) if s.uid == me() => return Peer::Own { inode: s.inode },
                Ok(Some(s)) => return Peer::Other(s.uid),
                Ok(None) => {}
                Err(w) => why = w,
            }
        }
        Peer::Unknown(why)
    }

    /// The OS user whose socket listens on `addr` (when binding it failed).
    fn listener(&self, addr: SocketAddr) -> Option<u32> {
        diag::families(addr, addr)
            .into_iter()
            .find_map(|family| diag::listener(family, addr).ok().flatten())
    }

    /// For each of `inodes`, the process of this user holding that socket,
    /// where one is found (it may have exited). One pass over this user's
    /// processes, however many inodes are asked for.
    fn processes_of(&self, inodes: &[u64]) -> HashMap<u64, u32> {
        let mut found = HashMap::new();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return found;
        };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            sockets_of(pid, inodes, &mut found);
            if found.len() == inodes.len() {
                break;
            }
        }
        found
    }

    /// The same, looking only at the descriptors of `pids`.
    fn processes_among(&self, inodes: &[u64], pids: &[u32]) -> HashMap<u64, u32> {
        let mut found = HashMap::new();
        for &pid in pids {
            sockets_of(pid, inodes, &mut found);
            if found.len() == inodes.len() {
                break;
            }
        }
        found
    }
}

/// Which of `inodes` process `pid` holds (`socket:[inode]` descriptors),
/// into `found`; nothing unless the process is this user's (others'
/// descriptors are not ours to read).
fn sockets_of(pid: u32, inodes: &[u64], found: &mut HashMap<u64, u32>) {
    use std::os::unix::fs::MetadataExt;
    let dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    if !std::fs::metadata(&dir).is_ok_and(|m| m.uid() == me()) {
        return;
    }
    let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
        return;
    };
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let inode = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok());
        if let Some(i) = inode.filter(|i| inodes.contains(i)) {
            found.entry(i).or_insert(pid);
        }
    }
}
