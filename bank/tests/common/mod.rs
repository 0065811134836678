//! Test fixtures for the reference bank's own tests: the outside tools they
//! run (`openssl`, strongSwan's `pki`) and, in [`https`], a reference bank
//! on loopback with a small HTTPS client. The agent's tests have fixtures of
//! their own in the top-level tests/common.
#![allow(dead_code)]

pub mod https;

use std::process::{Command, Output};

/// Panic with `install` (what to do) when `tool` is not on PATH.
pub fn require_with(tool: &str, install: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "{tool} is missing; {install}");
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run a command that must succeed; returns stdout as bytes.
pub fn run_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    out.stdout
}

/// openssl, which must be installed.
pub fn openssl() -> Command {
    require_with("openssl", "install it: apt-get install openssl");
    Command::new("openssl")
}
