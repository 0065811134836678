//! An emulated OpenPGP card behind a virtual smart-card reader, for
//! certagent's tests: a real PC/SC + OpenSC stack without hardware.
//!
//! pcscd loads vsmartcard's `vpcd` reader driver, which listens on a TCP
//! port for a "virtual ICC". This program is that ICC: it connects to vpcd
//! (the `vpicc` crate speaks the protocol) and hands every APDU to `opcard`,
//! Nitrokey's OpenPGP card application, running on trussed's software
//! platform (`trussed::virt`). OpenSC's `opensc-pkcs11.so` then sees an
//! OpenPGP card in the "Virtual PCD" reader.
//!
//! Why a program of our own: opcard's own vpicc example and tests use a glue
//! crate (`dev-vpicc`: the trussed backend dispatch opcard needs, plus APDU
//! chaining and GET RESPONSE) that lives only in opcard's repository and is
//! not published on crates.io. This is our small equivalent.
//!
//! Stopping the program (SIGTERM, SIGINT) closes the connection: vpcd and
//! so PC/SC see the card removed. Started again with the same `--state`
//! directory it is the same card again (keys, PINs, counters, data objects).
//! If vpcd goes away (pcscd stopped), the program exits with status 1; it
//! does not reconnect.
//!
//! Not secure, by design: trussed's virtual platform seeds its random
//! generator with a constant, and the state files are plain.

mod card;
mod dispatch;

use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use trussed::virt::{StorageConfig, StoreConfig};

const USAGE: &str = "\
usage: certagent-opcard-emulator [--port N] [--state DIR] [--serial HEX8] [--connect-timeout SECS]

  --port N              vpcd's TCP port on 127.0.0.1 (default 35963, vpcd's own default)
  --state DIR           keep the card's storage in DIR (created if missing); without it the
                        card lives in RAM and is blank on every start
  --serial HEX8         the card's serial number, 8 hex digits (default 00000000)
  --connect-timeout S   how long to retry connecting to vpcd (default 10)";

struct Args {
    port: u16,
    state: Option<PathBuf>,
    serial: [u8; 4],
    connect_timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: vpicc::DEFAULT_PORT,
        state: None,
        serial: [0; 4],
        connect_timeout: Duration::from_secs(10),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => {
                let v = value()?;
                args.port = v.parse().map_err(|_| format!("bad port {v:?}"))?;
            }
            "--state" => args.state = Some(PathBuf::from(value()?)),
            "--serial" => {
                let v = value()?;
                let n = u32::from_str_radix(&v, 16)
                    .ok()
                    .filter(|_| v.len() == 8)
                    .ok_or_else(|| format!("bad serial {v:?}: 8 hex digits"))?;
                args.serial = n.to_be_bytes();
            }
            "--connect-timeout" => {
                let v = value()?;
                let secs: u64 = v.parse().map_err(|_| format!("bad timeout {v:?}"))?;
                args.connect_timeout = Duration::from_secs(secs);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// Set by the signal handler; the poll loop ends when it is.
static STOP: AtomicBool = AtomicBool::new(false);
/// The socket to vpcd, shut down by the signal handler to end a blocked read.
static SOCKET: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    let fd = SOCKET.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: shutdown(2) is async-signal-safe; a stale fd at worst
        // gives an error, which is ignored.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}

fn install_signal_handlers() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a plain handler is valid; the
        // handler only touches atomics and calls shutdown(2).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// vpcd writes the two-byte length and the message as two writes; with
/// Nagle on its side the second waits for our (delayed, ~40 ms) ACK of the
/// first. Asking for immediate ACKs avoids that on every APDU. Linux clears
/// the flag again on its own, so it is set before each read.
fn quick_ack(fd: i32) {
    let one: libc::c_int = 1;
    // SAFETY: fd is our open socket; the option value is a c_int.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn connect(port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= deadline || STOP.load(Ordering::SeqCst) => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn store_config(state: Option<&PathBuf>) -> std::io::Result<StoreConfig<'static>> {
    Ok(match state {
        None => StoreConfig::ram(),
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            // opcard keeps its data objects and keys in the storage its
            // options name (External by default) and trussed-auth keeps the
            // PINs in Internal: both must persist for a re-inserted card to
            // be the same card.
            StoreConfig {
                internal: StorageConfig::filesystem(dir.join("internal.littlefs")),
                external: StorageConfig::filesystem(dir.join("external.littlefs")),
                volatile: StorageConfig::ram(),
            }
        }
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("certagent-opcard-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    install_signal_handlers();

    let store = match store_config(args.state.as_ref()) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("certagent-opcard-emulator: state directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stream = match connect(args.port, args.connect_timeout) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!(
                "certagent-opcard-emulator: cannot connect to vpcd on 127.0.0.1:{}: {e}",
                args.port
            );
            return ExitCode::FAILURE;
        }
    };
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    SOCKET.store(fd, Ordering::SeqCst);
    if STOP.load(Ordering::SeqCst) {
        return ExitCode::SUCCESS;
    }
    let mut connection = vpicc::Connection::from(stream);

    let mut options = opcard::Options::default();
    options.serial = args.serial;
    // There is no button to press.
    options.button_available = false;

    let result: std::io::Result<()> = dispatch::with_client(store, |client| {
        let mut card = card::VirtualCard::new(opcard::Card::new(client, options));
        println!(
            "certagent-opcard-emulator: connected to vpcd on port {}",
            args.port
        );
        loop {
            quick_ack(fd);
            let polled = connection.poll(&mut card);
            if STOP.load(Ordering::SeqCst) {
                return Ok(());
            }
            polled?;
        }
    });
    SOCKET.store(-1, Ordering::SeqCst);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certagent-opcard-emulator: connection to vpcd ended: {e}");
            ExitCode::FAILURE
        }
    }
}
