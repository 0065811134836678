//! Which connections the local API serves, decided when they are accepted
//! and before a byte of them is read.
//!
//! - Another OS user's connection (or one whose owner the kernel does not
//!   name) is refused at once: one fixed 403 is written, the socket is shut
//!   for writing, one read takes in what the client sent (so closing does
//!   not reset the answer away), and it is closed. It never holds one of the
//!   agent's connection slots, and only [`MAX_REFUSING`] such goodbyes run
//!   at a time (beyond, the socket is closed without one).
//! - The agent's own user's connections share [`MAX_CONNECTIONS`] slots, so
//!   other users can never take the agent from its user; within them one
//!   process may hold [`PER_PROCESS`]. Which process holds a socket is asked
//!   only once this user holds that many connections ([`Own::enter`]). A
//!   connection over the cap is held unread for [`HOLD_TIME`] before it is
//!   closed, so a client that reconnects at once does so about once a
//!   second, not as fast as it can.
//! - Refusals are logged at most once a second, with the count of those
//!   not logged ([`Quiet`]): a flood cannot fill the journal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::peer::{self, Peer};

/// Connections of the agent's own user served at once; beyond, new ones
/// are closed at once (not left in the kernel's backlog, where they would
/// wait behind slow ones).
pub const MAX_CONNECTIONS: usize = 256;
/// Connections one process of the agent's user may hold at once: more than
/// a browser opens to one host (6), few enough that one local program
/// cannot take them all. Sockets whose process is not found (it exited, or
/// passed the socket on) share one such allowance.
pub const PER_PROCESS: usize = 8;
/// Refused connections being answered at once.
pub const MAX_REFUSING: usize = 32;
/// Connections over a process's [`PER_PROCESS`] held unread at once before
/// they are closed (beyond, closed at once).
pub const MAX_HELD: usize = 64;
/// How long such a connection is held.
pub const HOLD_TIME: Duration = Duration::from_secs(1);
/// How long a refused connection may take to receive its answer.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// The answer to a refused caller: 403, no CORS, `Connection: close`, the
/// same JSON shape as every error of the API.
pub fn refusal(who: Peer) -> Vec<u8> {
    let message = match who {
        Peer::Unknown(why) => format!(
            "certagent serves only its own user's programs and cannot tell whose program this is ({why})"
        ),
        _ => "this agent serves only its own user's programs".to_string(),
    };
    let body = serde_json::json!({"error": "user", "message": message}).to_string();
    format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answer a refused connection and close it: one write, one read.
pub async fn refuse(mut tcp: TcpStream, answer: Vec<u8>) {
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        tcp.write_all(&answer).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        tcp.read(&mut sink).await
    })
    .await;
}

/// A log line at most once a second; the lines held back are counted and
/// the count goes with the next line.
#[derive(Default)]
pub struct Quiet {
    last: Option<Instant>,
    held_back: u64,
}

impl Quiet {
    pub fn warn(&mut self, line: impl FnOnce() -> String) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.held_back += 1;
            return;
        }
        self.last = Some(now);
        match std::mem::take(&mut self.held_back) {
            0 => log::warn!("local API: {}", line()),
            n => log::warn!(
                "local API: {} ({n} more refused in the last second, not logged)",
                line()
            ),
        }
    }
}

/// Whose an open connection of this user is, as far as it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Holder {
    NotAsked,
    Process(u32),
    /// Asked, and no process of this user holds it.
    NotFound,
}

/// The agent's own user's open connections, by socket inode.
#[derive(Clone, Default)]
pub struct Own(Arc<Mutex<OwnState>>);

#[derive(Default)]
struct OwnState {
    next: u64,
    open: HashMap<u64, (u64, Holder)>,
}

/// An admitted connection, counted until dropped.
pub struct OwnSlot {
    own: Own,
    key: u64,
}

impl Own {
    fn state(&self) -> MutexGuard<'_, OwnState> {
        // A panic elsewhere while counting leaves counts that are still right.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections of this user open now.
    pub fn count(&self) -> usize {
        self.state().open.len()
    }

    /// Admit the connection on this user's socket `inode`, unless its
    /// process holds [`PER_PROCESS`] already (then `Err` with the process,
    /// if found). While this user holds fewer connections than that, no
    /// process is looked up. Beyond, the new socket is looked for among the
    /// processes at their cap (their descriptors only: what a flood's
    /// reconnects cost), and once as many sockets are unnamed as one
    /// process may hold, one pass over this user's processes names them
    /// all. Blocking then, so call it off the async workers.
    pub fn enter(&self, inode: u64) -> Result<OwnSlot, Option<u32>> {
        let mut state = self.state();
        let mut holder = Holder::NotAsked;
        if state.open.len() >= PER_PROCESS {
            // Each holder's connections, counted in one pass.
            let mut held: HashMap<Holder, usize> = HashMap::new();
            for (_, h) in state.open.values() {
                *held.entry(*h).or_default() += 1;
            }
            let full: Vec<u32> = held
                .iter()
                .filter_map(|(h, n)| match h {
                    Holder::Process(p) if *n >= PER_PROCESS => Some(*p),
                    _ => None,
                })
                .collect();
            if !full.is_empty()
                && let Some(p) = peer::this_platform()
                    .processes_among(&[inode], &full)
                    .get(&inode)
            {
                return Err(Some(*p));
            }
            if held.get(&Holder::NotAsked).copied().unwrap_or(0) + 1 >= PER_PROCESS {
                let ask: Vec<u64> = state
                    .open
                    .values()
                    .filter(|(_, h)| *h == Holder::NotAsked)
                    .map(|(i, _)| *i)
                    .chain([inode])
                    .collect();
                let found = peer::this_platform().processes_of(&ask);
                let named = |i: &u64| {
                    found
                        .get(i)
                        .map_or(Holder::NotFound, |p| Holder::Process(*p))
                };
                for (i, h) in state.open.values_mut() {
                    if *h == Holder::NotAsked {
                        *h = named(i);
                    }
                }
                holder = named(&inode);
                let same = state.open.values().filter(|(_, h)| *h == holder).count();
                if same >= PER_PROCESS {
                    return Err(match holder {
                        Holder::Process(p) => Some(p),
                        _ => None,
                    });
                }
            }
        }
        state.next += 1;
        let key = state.next;
        state.open.insert(key, (inode, holder));
        Ok(OwnSlot {
            own: self.clone(),
            key,
        })
    }
}

impl Drop for OwnSlot {
    fn drop(&mut self) {
        self.own.state().open.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_http_answer() {
        let text = String::from_utf8(refusal(Peer::Other(65534))).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 403 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(!head.to_ascii_lowercase().contains("access-control"));
        let j: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(j["error"], "user");
        let unknown = String::from_utf8(refusal(Peer::Unknown("why"))).unwrap();
        assert!(unknown.contains("(why)"), "{unknown}");
    }

    #[test]
    fn one_process_gets_its_share_and_a_slot_is_returned_when_dropped() {
        // Sockets no process holds (inodes that do not exist) share one
        // allowance of PER_PROCESS.
        let own = Own::default();
        let mut slots: Vec<OwnSlot> = (0..PER_PROCESS as u64)
            .map(|i| own.enter(u64::MAX - i).unwrap())
            .collect();
        assert!(own.enter(u64::MAX - 100).is_err());
        slots.pop();
        assert!(own.enter(u64::MAX - 100).is_ok());
    }

    /// Real sockets of this process: over its cap it is found (first by a
    /// pass over the processes, then among the processes at their cap
    /// only), and a slot given back lets the next one in.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_at_its_cap_is_found_by_its_own_descriptors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let mut keep = Vec::new();
        let mut inode = || {
            let client = std::net::TcpStream::connect(local).unwrap();
            let (server, peer) = listener.accept().unwrap();
            keep.push((client, server));
            match peer::this_platform().identify(peer, local) {
                Peer::Own { inode } => inode,
                other => panic!("{other:?}"),
            }
        };
        let own = Own::default();
        let mut slots: Vec<OwnSlot> = (0..PER_PROCESS)
            .map(|_| own.enter(inode()).unwrap())
            .collect();
        let me = std::process::id();
        assert_eq!(own.enter(inode()).err(), Some(Some(me)), "named by a pass");
        assert_eq!(
            own.state()
                .open
                .values()
                .filter(|(_, h)| *h == Holder::Process(me))
                .count(),
            PER_PROCESS
        );
        assert_eq!(own.enter(inode()).err(), Some(Some(me)), "found at its cap");
        slots.pop();
        assert!(own.enter(inode()).is_ok());
    }

    #[test]
    fn quiet_holds_back_lines_within_a_second() {
        let mut q = Quiet::default();
        for _ in 0..1000 {
            q.warn(|| "refused".into());
        }
        assert!(q.last.is_some());
        assert_eq!(q.held_back, 999);
        // A second later the next line goes out, and the count with it.
        q.last = q.last.and_then(|t| t.checked_sub(Duration::from_secs(1)));
        q.warn(|| "refused".into());
        assert_eq!(q.held_back, 0);
    }
}
