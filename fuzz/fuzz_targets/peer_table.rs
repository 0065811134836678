//! The caller check's reading of the kernel's answer about a socket
//! (src/agent/api/peer.rs `diag::parse`: netlink messages carrying an
//! `inet_diag_msg`). Any bytes: no panic, and a message read as a socket
//! names fields that are in it. A well-formed answer, however the fields
//! are chosen, reads back exactly; one with another sequence number is
//! never taken for it.
#![no_main]

use certagent::agent::api::peer::diag::{Found, parse};
use libfuzzer_sys::fuzz_target;

const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// An answer as the kernel writes it: `nlmsghdr`, then `inet_diag_msg`.
fn answer(f: &Found, seq: u32) -> Vec<u8> {
    let mut body = vec![f.family, f.state, 0, 0];
    body.extend_from_slice(&f.sport.to_be_bytes());
    body.extend_from_slice(&f.dport.to_be_bytes());
    body.extend_from_slice(&f.src);
    body.extend_from_slice(&f.dst);
    body.extend_from_slice(&0u32.to_ne_bytes()); // interface
    body.extend_from_slice(&[0u8; 8]); // cookie
    body.extend_from_slice(&[0u8; 12]); // expires, rqueue, wqueue
    body.extend_from_slice(&f.uid.to_ne_bytes());
    body.extend_from_slice(&(f.inode as u32).to_ne_bytes());
    let len = 16 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&body);
    m
}

fuzz_target!(|input: (&[u8], u32, [u8; 16], [u8; 16], u16, u16, u32, u32, u8, u8)| {
    let (bytes, seq, src, dst, sport, dport, uid, inode, family, state) = input;
    let _ = parse(bytes, seq);
    let f = Found {
        family,
        state,
        sport,
        dport,
        src,
        dst,
        uid,
        inode: u64::from(inode),
    };
    let m = answer(&f, seq);
    // An answer to another question is never this one's.
    let other = answer(&f, seq.wrapping_add(1));
    assert!(!matches!(parse(&other, seq), Ok(Some(_))));
    assert_eq!(parse(&m, seq), Ok(Some(f)));
});
