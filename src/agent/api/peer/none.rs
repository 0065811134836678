//! No caller check on this platform yet: every caller is refused (fail
//! closed), never let in. SECURITY.md says how Windows and macOS would
//! tell which user's program is connecting.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{Callers, Peer};

pub struct Refuse;

impl Callers for Refuse {
    fn identify(&self, _peer: SocketAddr, _local: SocketAddr) -> Peer {
        Peer::Unknown(
            "this system gives certagent no way to tell which user's program is connecting",
        )
    }

    fn listener(&self, _addr: SocketAddr) -> Option<u32> {
        None
    }

    fn processes_of(&self, _inodes: &[u64]) -> HashMap<u64, u32> {
        HashMap::new()
    }
}
