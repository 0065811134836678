//! A real smart-card stack without hardware: an emulated OpenPGP card
//! (tests/opcard-emulator) in vsmartcard's virtual reader (vpcd), served by
//! a pcscd of the test's own, seen through OpenSC's `opensc-pkcs11.so`.
//!
//! Each [`OpenPgpCard`] is private to one test:
//!
//! - pcscd 1.9.9 (Debian 12) ignores `PCSCLITE_CSOCK_NAME` and always puts
//!   its socket and pid file in /run/pcscd (measured; only the client
//!   library libpcsclite honours the variable). So pcscd runs in a mount
//!   namespace of its own (`unshare --mount`) with the test's directory
//!   bind-mounted on /run/pcscd; clients outside reach it through
//!   `PCSCLITE_CSOCK_NAME=<dir>/run/pcscd.comm`. This needs root (CI runs
//!   the tests as root) and leaves the system's pcscd alone.
//! - Its reader.conf names only vpcd, on a free TCP port P; vpcd opens two
//!   readers, "Virtual PCD 00 00" on P and "Virtual PCD 00 01" on P+1 (the
//!   second stays empty).
//! - OpenSC reads `OPENSC_CONF`: vpcd reports no maximum APDU size, so
//!   OpenSC would fall back to short APDUs and RSA-2048 key generation
//!   silently produces no key; file caching is off so that every process
//!   reads the card.
//!
//! Nothing is skipped: a missing part fails the test with the command that
//! installs or builds it.
#![allow(dead_code)]

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The OpenPGP card's default user PIN (PW1), for PKCS#11 the user login.
pub const USER_PIN: &str = "123456";
/// The default admin PIN (PW3), for PKCS#11 the SO login
/// (`--login-type so`): key generation and certificate writes need it.
pub const ADMIN_PIN: &str = "12345678";

/// What the stack needs from Debian (scripts/setup.sh).
const INSTALL: &str =
    "apt-get install --no-install-recommends pcscd vsmartcard-vpcd opensc opensc-pkcs11";
const BUILD: &str =
    "build it with `cargo build --workspace` (or `cargo build -p certagent-opcard-emulator`)";
const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
const EMULATOR: &str = "certagent-opcard-emulator";

/// How long the stack may take to show a change.
const TIMEOUT: Duration = Duration::from_secs(20);

/// OpenSC's PKCS#11 module.
pub fn opensc_module() -> PathBuf {
    super::first_existing(
        &[
            "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
            "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
            "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so",
        ],
        "opensc-pkcs11.so",
    )
}

/// The emulator binary, built with the workspace into the target directory
/// the test binary runs from (target/<profile>/deps/.. ).
pub fn emulator_binary() -> PathBuf {
    super::workspace_library(EMULATOR, BUILD)
}

fn require_tool(tool: &str) {
    super::require_with(tool, &format!("install it: {INSTALL}"));
}

/// Two consecutive TCP ports, P and P+1, free on all addresses (vpcd binds
/// 0.0.0.0). Released before pcscd binds them: another process could take
/// them in between, in which case the card never shows up and
/// [`OpenPgpCard::start`] fails with pcscd's log.
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind(("0.0.0.0", 0)).expect("bind a TCP port");
        let port = first.local_addr().expect("local address").port();
        if port < u16::MAX && TcpListener::bind(("0.0.0.0", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free TCP ports found");
}

/// An emulated OpenPGP card in a virtual reader of a private pcscd.
pub struct OpenPgpCard {
    dir: tempfile::TempDir,
    port: u16,
    serial: String,
    pcscd: Child,
    emulator: Option<Child>,
}

impl OpenPgpCard {
    /// Start pcscd and a blank card (default PINs, no keys), and wait until
    /// OpenSC sees the card.
    pub fn start() -> Self {
        Self::start_with_serial("00000000")
    }

    /// As [`start`](Self::start), with the card's serial number (8 hex
    /// digits, as OpenSC shows it in the token's serial).
    pub fn start_with_serial(serial: &str) -> Self {
        super::require_root("the OpenPGP card stack runs pcscd in its own mount namespace");
        require_tool("pcscd");
        require_tool("pkcs11-tool");
        require_tool("unshare");
        assert!(
            Path::new(VPCD_DRIVER).exists(),
            "{VPCD_DRIVER} (vpcd) is missing; install it: {INSTALL}"
        );
        opensc_module();
        let emulator = emulator_binary();

        let dir = tempfile::Builder::new()
            .prefix("certagent-openpgp-")
            .tempdir()
            .expect("temporary directory");
        let run = dir.path().join("run");
        std::fs::create_dir(&run).expect("run directory");
        let port = free_port_pair();
        let reader_conf = dir.path().join("reader.conf");
        std::fs::write(
            &reader_conf,
            format!(
                "FRIENDLYNAME \"Virtual PCD\"\n\
                 DEVICENAME   /dev/null:0x{port:X}\n\
                 LIBPATH      {VPCD_DRIVER}\n\
                 CHANNELID    0x{port:X}\n"
            ),
        )
        .expect("reader.conf");
        std::fs::write(
            dir.path().join("opensc.conf"),
            "app default {\n\
             \x20   reader_driver pcsc {\n\
             \x20       max_send_size = 65535;\n\
             \x20       max_recv_size = 65536;\n\
             \x20   }\n\
             \x20   framework pkcs15 {\n\
             \x20       use_file_caching = false;\n\
             \x20   }\n\
             }\n",
        )
        .expect("opensc.conf");

        // unshare execs sh, sh execs pcscd: the child is pcscd itself.
        let log = std::fs::File::create(dir.path().join("pcscd.log")).expect("pcscd.log");
        let pcscd = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "mkdir -p /run/pcscd && mount --bind \"$1\" /run/pcscd && exec pcscd --foreground --config \"$2\"",
            )
            .arg("sh")
            .arg(&run)
            .arg(&reader_conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start pcscd under unshare");

        let mut card = OpenPgpCard {
            dir,
            port,
            serial: serial.to_owned(),
            pcscd,
            emulator: None,
        };
        card.wait_for(|| card.socket().exists(), "pcscd's socket");
        card.emulator = Some(card.spawn_emulator(&emulator));
        card.wait_for(
            || card.present() == Some(true),
            "the card in the virtual reader",
        );
        card
    }

    fn spawn_emulator(&self, binary: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("emulator.log"))
            .expect("emulator.log");
        Command::new(binary)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--state")
            .arg(self.state_dir())
            .args(["--serial", &self.serial])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the card emulator")
    }

    /// The test's directory (pcscd's socket, configuration files, logs,
    /// the card's state).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the card keeps its storage between [`remove`](Self::remove)
    /// and [`insert`](Self::insert).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("card-state")
    }

    /// pcscd's socket, for `PCSCLITE_CSOCK_NAME`.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run").join("pcscd.comm")
    }

    /// OpenSC's configuration file, for `OPENSC_CONF`.
    pub fn opensc_conf(&self) -> PathBuf {
        self.dir.path().join("opensc.conf")
    }

    /// OpenSC's PKCS#11 module, the one to load.
    pub fn module(&self) -> PathBuf {
        opensc_module()
    }

    /// The environment a process needs to see this card through OpenSC:
    /// `PCSCLITE_CSOCK_NAME` and `OPENSC_CONF`.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("PCSCLITE_CSOCK_NAME", self.socket().into_os_string()),
            ("OPENSC_CONF", self.opensc_conf().into_os_string()),
        ]
    }

    /// `cmd` with [`env`](Self::env) set.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env());
        cmd
    }

    /// `pkcs11-tool --module <opensc-pkcs11.so>` with [`env`](Self::env).
    pub fn pkcs11_tool(&self) -> Command {
        let mut cmd = self.command("pkcs11-tool");
        cmd.arg("--module").arg(self.module());
        cmd
    }

    /// Run `pkcs11-tool` with `args`; the output whatever the status.
    pub fn pkcs11_tool_output(&self, args: &[&str]) -> Output {
        self.pkcs11_tool()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pkcs11-tool")
    }

    /// `pkcs11-tool -L` (slots and tokens), asserted to succeed.
    pub fn list_slots(&self) -> String {
        let out = self.pkcs11_tool_output(&["-L"]);
        assert!(out.status.success(), "pkcs11-tool -L: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether OpenSC sees a token in the virtual reader: `None` while the
    /// readers settle (OpenSC's C_GetSlotList answers CKR_BUFFER_TOO_SMALL
    /// when a reader appears between its two calls, seen when vpcd adds its
    /// second reader), so a wait asks again.
    pub fn present(&self) -> Option<bool> {
        let out = self.pkcs11_tool_output(&["-L"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).contains("token label"))
    }

    /// Whether the emulator runs (the card is in the reader).
    pub fn inserted(&self) -> bool {
        self.emulator.is_some()
    }

    /// Take the card out: stop the emulator (its state stays), wait until
    /// OpenSC sees the reader empty.
    pub fn remove(&mut self) {
        let mut child = self.emulator.take().expect("the card is not inserted");
        stop(&mut child);
        self.wait_for(|| self.present() == Some(false), "the reader to be empty");
    }

    /// Put the same card back: start the emulator on the same state, wait
    /// until OpenSC sees it.
    pub fn insert(&mut self) {
        assert!(self.emulator.is_none(), "the card is already inserted");
        self.emulator = Some(self.spawn_emulator(&emulator_binary()));
        self.wait_for(
            || self.present() == Some(true),
            "the card in the virtual reader",
        );
    }

    fn wait_for(&self, mut ready: impl FnMut() -> bool, what: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (port {}); pcscd.log:\n{}\nemulator.log:\n{}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("pcscd.log")).unwrap_or_default(),
                std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default(),
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGTERM, then wait; SIGKILL if it does not end in time.
fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for OpenPgpCard {
    fn drop(&mut self) {
        if let Some(mut emulator) = self.emulator.take() {
            stop(&mut emulator);
        }
        stop(&mut self.pcscd);
    }
}
