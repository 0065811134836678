//! Test-only: one HTTP/1.1 request to the agent's local API, as a Windows
//! program of the user sends it (tests/windows.rs runs it under Wine, so
//! the agent's caller check sees a Windows process). Prints the status
//! line and the body. With BODY, a POST of that JSON; else a GET.
//!
//!     certagent-win-client 127.0.0.1:PORT ORIGIN PATH [BODY]

use std::io::{Read, Write};
use std::net::TcpStream;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(origin), Some(path)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: certagent-win-client ADDR ORIGIN PATH [BODY]");
        std::process::exit(2);
    };
    let result = (|| -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr)?;
        match args.get(4) {
            Some(body) => write!(
                s,
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?,
            None => write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
            )?,
        }
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    })();
    match result {
        Ok(answer) => {
            let status = answer.lines().next().unwrap_or_default();
            let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            println!("{status}\n{body}");
        }
        Err(e) => {
            eprintln!("certagent-win-client: {e}");
            std::process::exit(1);
        }
    }
}
