//! What every fault sweep checks, judged with tools certagent did not
//! write: the forwarding module's own report that the fault fired, the way
//! the process ended, and the token as pkcs11-tool and openssl see it.
//!
//! A sweep whose fault never fired, or whose process crashed, fails: with
//! the module's injection switched off, every sweep must fail.

use std::path::Path;
use std::process::{Command, ExitStatus, Output};

use super::{PIN, TestToken, openssl, text};

/// How the fault ends the run: the token is pulled at call N (every call
/// from N on fails with CKR_DEVICE_REMOVED), or the process is killed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pulled,
    Killed,
}

impl Mode {
    /// `FAULT_PKCS11_MODE`'s value.
    pub fn env(self) -> &'static str {
        match self {
            Mode::Pulled => "pulled",
            Mode::Killed => "kill",
        }
    }
}

/// Point `cmd` at a fault at call `n`, reported into `fired` (removed first).
pub fn arm(cmd: &mut Command, n: u64, mode: Mode, fired: &Path) {
    let _ = std::fs::remove_file(fired);
    cmd.env("FAULT_PKCS11_AT", n.to_string())
        .env("FAULT_PKCS11_MODE", mode.env())
        .env("FAULT_PKCS11_FIRED", fired);
}

/// How many PKCS#11 calls a run made: the forwarding module's log
/// (`FAULT_PKCS11_LOG`) has a line a call.
pub fn calls(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .count() as u64
}

/// The injections the forwarding module reported: (call number, function,
/// what it did).
pub fn injections(fired: &Path) -> Vec<(u64, String, String)> {
    std::fs::read_to_string(fired)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.parse().ok()?,
                f.next()?.to_string(),
                f.next()?.to_string(),
            ))
        })
        .collect()
}

/// The fault at call `n` fired: killed there, or call `n` was answered
/// CKR_DEVICE_REMOVED. Returns the function it hit.
pub fn assert_fired(fired: &Path, n: u64, mode: Mode, what: &str) -> String {
    let seen = injections(fired);
    let want = match mode {
        Mode::Pulled => "0x32",
        Mode::Killed => "kill",
    };
    let hit = seen.iter().find(|(at, _, did)| *at == n && did == want);
    match hit {
        Some((_, function, _)) => function.clone(),
        None => panic!(
            "{what}: the fault ({mode:?} at call {n}) never fired; the module reported {seen:?}"
        ),
    }
}

/// A process under a fault ended as the fault says: killed by SIGKILL, or
/// (pulled) on its own, with an exit status of 0 or 1, never by a signal or
/// a panic (101), and with no panic message.
pub fn assert_ended_cleanly(status: ExitStatus, stderr: &str, mode: Mode, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert!(!stderr.contains("panicked"), "{what}: a panic\n{stderr}");
    match mode {
        Mode::Killed => assert_eq!(
            status.signal(),
            Some(libc_sigkill()),
            "{what}: expected the kill, the process ended with {status:?}\n{stderr}"
        ),
        Mode::Pulled => assert!(
            matches!(status.code(), Some(0 | 1)),
            "{what}: ended with {status:?} (a crash, an abort or a panic)\n{stderr}"
        ),
    }
}

fn libc_sigkill() -> i32 {
    9
}

/// One object as pkcs11-tool lists it: its kind and CKA_ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub kind: String,
    pub id: String,
    pub key_type: String,
}

/// Every certificate and key on the token, as pkcs11-tool lists them after
/// a login (kryoptic's mechanism objects left out).
pub fn listed(token: &TestToken) -> Vec<Listed> {
    let out = token.pkcs11_tool(&["--login", "--pin", PIN, "--list-objects"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut all = Vec::new();
    let mut current: Option<Listed> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((kind, rest)) = line.split_once(" Object;") {
            if let Some(c) = current.take() {
                all.push(c);
            }
            current = Some(Listed {
                kind: kind.trim().to_string(),
                id: String::new(),
                key_type: rest.trim().to_string(),
            });
        } else if let Some(id) = line.trim().strip_prefix("ID:")
            && let Some(c) = current.as_mut()
        {
            c.id = id.trim().to_string();
        }
    }
    all.extend(current);
    all.sort();
    all
}

fn read_object(token: &TestToken, kind: &str, id: &str, out: &Path) -> Result<Vec<u8>, String> {
    let o = token.pkcs11_tool(&[
        "--read-object",
        "--type",
        kind,
        "--id",
        id,
        "-o",
        &out.display().to_string(),
    ]);
    if !o.status.success() {
        return Err(format!(
            "pkcs11-tool cannot read the {kind} {id}: {}",
            text(&o)
        ));
    }
    std::fs::read(out).map_err(|e| format!("{}: {e}", out.display()))
}

fn openssl_out(args: &[&str]) -> Result<Vec<u8>, String> {
    let o: Output = openssl()
        .args(args)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if o.status.success() {
        Ok(o.stdout)
    } else {
        Err(format!("openssl {args:?}: {}", text(&o)))
    }
}

/// The certificate `id` on the token is usable: pkcs11-tool reads it and
/// its public key, openssl finds the certificate's key equal to the token's
/// public key, the private key `id` signs on the token, and openssl verifies
/// that signature with the certificate's key. With `ca`, openssl also
/// verifies that the certificate chains to the bank's issuing CA.
pub fn pair_works(
    token: &TestToken,
    id: &str,
    ca: Option<&Path>,
    check_time: bool,
) -> Result<(), String> {
    let dir = tempfile::tempdir_in(token.path()).map_err(|e| e.to_string())?;
    let p = |n: &str| dir.path().join(n).display().to_string();
    read_object(token, "cert", id, Path::new(&p("cert.der")))?;
    read_object(token, "pubkey", id, Path::new(&p("pub.der")))?;
    let cert_key = openssl_out(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        &p("cert.der"),
        "-pubkey",
        "-noout",
    ])?;
    let token_key = openssl_out(&["pkey", "-pubin", "-inform", "DER", "-in", &p("pub.der")])?;
    if cert_key != token_key {
        return Err(format!(
            "the certificate {id}'s key is not the token's public key {id}:\n{}\n{}",
            String::from_utf8_lossy(&cert_key),
            String::from_utf8_lossy(&token_key)
        ));
    }
    std::fs::write(p("cert-key.pem"), &cert_key).map_err(|e| e.to_string())?;
    std::fs::write(p("data"), b"certagent fault sweep: does the key sign?")
        .map_err(|e| e.to_string())?;
    let rsa = String::from_utf8_lossy(&openssl_out(&[
        "pkey",
        "-pubin",
        "-in",
        &p("cert-key.pem"),
        "-noout",
        "-text",
    ])?)
    .contains("Modulus");
    let (mechanism, format): (&str, &[&str]) = if rsa {
        ("SHA256-RSA-PKCS", &[])
    } else {
        ("ECDSA-SHA256", &["--signature-format", "openssl"])
    };
    let signed = token.pkcs11_tool(
        &[
            &[
                "--login",
                "--pin",
                PIN,
                "--sign",
                "--id",
                id,
                "--mechanism",
                mechanism,
            ][..],
            format,
            &["-i", &p("data"), "-o", &p("sig")],
        ]
        .concat(),
    );
    if !signed.status.success() {
        return Err(format!(
            "the private key {id} does not sign: {}",
            text(&signed)
        ));
    }
    openssl_out(&[
        "dgst",
        "-sha256",
        "-verify",
        &p("cert-key.pem"),
        "-signature",
        &p("sig"),
        &p("data"),
    ])
    .map_err(|e| format!("the key {id} signed, but not for its certificate: {e}"))?;
    if let Some(ca) = ca {
        let c = ca.display().to_string();
        openssl_out(&[
            "x509",
            "-inform",
            "DER",
            "-in",
            &p("cert.der"),
            "-out",
            &p("cert.pem"),
        ])?;
        let mut verify = vec!["verify", "-CAfile", &c, "-partial_chain"];
        if !check_time {
            verify.push("-no_check_time");
        }
        let cert_pem = p("cert.pem");
        verify.push(&cert_pem);
        openssl_out(&verify).map_err(|e| format!("the certificate {id} is not the bank's: {e}"))?;
    }
    Ok(())
}

/// At least one certificate on the token is usable (see [`pair_works`]);
/// its dates are not judged (an expired certificate awaiting its
/// enrolment is the usable one until the new one is in).
pub fn assert_usable(token: &TestToken, ca: Option<&Path>, what: &str) {
    let objects = listed(token);
    let mut why = Vec::new();
    for cert in objects.iter().filter(|o| o.kind == "Certificate") {
        match pair_works(token, &cert.id, ca, false) {
            Ok(()) => return,
            Err(e) => why.push(e),
        }
    }
    panic!(
        "{what}: no usable certificate left: {objects:?}\n{}",
        why.join("\n")
    );
}

/// Exactly one certificate, its private key and its public key, under one
/// id, nothing else; the pair works and the certificate is valid now (see
/// [`pair_works`]). Returns the id.
pub fn assert_one_pair(token: &TestToken, ca: Option<&Path>, what: &str) -> String {
    let objects = listed(token);
    let kinds: Vec<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["Certificate", "Private Key", "Public Key"],
        "{what}: not exactly one certificate and its key pair: {objects:?}"
    );
    let id = objects[0].id.clone();
    assert!(
        !id.is_empty() && objects.iter().all(|o| o.id == id),
        "{what}: the objects' ids differ: {objects:?}"
    );
    if let Err(e) = pair_works(token, &id, ca, true) {
        panic!("{what}: {e}");
    }
    id
}
