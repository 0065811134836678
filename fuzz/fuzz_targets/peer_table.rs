//! The caller check's reading of the kernel's TCP table
//! (src/agent/api/peer.rs `parse_addr`: `0100007F:1F90`, or 32 hex digits
//! and a port for IPv6, each 32-bit word in the machine's byte order). Any
//! text: no panic. Any address written as the kernel writes it: read back
//! exactly.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use certagent::agent::api::peer::parse_addr;
use libfuzzer_sys::fuzz_target;

/// `addr` as /proc/net/tcp and tcp6 print it.
fn kernel(addr: SocketAddr) -> String {
    let words: Vec<u32> = match addr.ip() {
        IpAddr::V4(a) => vec![u32::from_ne_bytes(a.octets())],
        IpAddr::V6(a) => a
            .octets()
            .chunks(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    };
    let hex: String = words.iter().map(|w| format!("{w:08X}")).collect();
    format!("{hex}:{:04X}", addr.port())
}

fuzz_target!(|input: (&str, [u8; 16], u16, bool)| {
    let (text, bytes, port, v4) = input;
    let _ = parse_addr(text);
    for line in text.lines() {
        for col in line.split_whitespace() {
            let _ = parse_addr(col);
        }
    }
    let ip: IpAddr = if v4 {
        Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()
    } else {
        Ipv6Addr::from(bytes).into()
    };
    let addr = SocketAddr::new(ip, port);
    let written = kernel(addr);
    assert_eq!(parse_addr(&written), Some(addr), "{written}");
    assert_eq!(parse_addr(&written.to_lowercase()), Some(addr), "{written}");
});
