//! A PKCS#11 module for certagent's reliability tests.
//!
//! It forwards every call to a real module and counts them; at call N
//! (counted over the whole process, 1-based) it injects a fault. Configured
//! by the environment of the process that loads it:
//!
//! | variable | meaning |
//! |---|---|
//! | `FAULT_PKCS11_MODULE` | the real module (default: SoftHSM's usual paths) |
//! | `FAULT_PKCS11_AT` | the call index N at which the fault happens (none: only count) |
//! | `FAULT_PKCS11_MODE` | `pulled` (N and every later call fail with CKR_DEVICE_REMOVED), `kill` (SIGKILL at N, before the call), `once:0xRV` (N returns RV, later calls go through), `sleep:MS` (N waits MS milliseconds, then goes through) |
//! | `FAULT_PKCS11_LOG` | a file that gets one line per call: `N C_Function` |
//! | `FAULT_PKCS11_FIRED` | a file that gets one line per injection, written and flushed before it acts: `N C_Function kill`, `N C_Function 0xRV` for each call answered with a made-up RV (every call from N on when pulled), `N C_Function sleep:MS` |
//! | `FAULT_PKCS11_DELAY_MS` | every call waits this long first (a USB token's round trip) |
//! | `FAULT_PKCS11_KEYGEN_MS` | C_GenerateKeyPair waits this long first (a card generating a key) |
//! | `FAULT_PKCS11_PRESENCE` | a file: the token is in its reader while it exists. Taken out, the slot list shows no token and token calls fail (CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_REMOVED); C_WaitForSlotEvent reports each change, as a reader does |
//!
//! The forwarding table is generated from cryptoki-sys's `CK_FUNCTION_LIST`
//! (see build.rs): each entry gets a trampoline whose argument types are
//! inferred from that entry's type, so no signature is written by hand.

#![allow(non_snake_case)]

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use cryptoki_sys::{
    CK_BBOOL, CK_FLAGS, CK_FUNCTION_LIST, CK_FUNCTION_LIST_PTR_PTR, CK_RV, CK_SLOT_ID, CK_ULONG,
    CK_VOID_PTR,
};

const CKR_OK: CK_RV = 0;
const CKR_GENERAL_ERROR: CK_RV = 0x05;
const CKR_DEVICE_REMOVED: CK_RV = 0x32;
const CKR_TOKEN_NOT_PRESENT: CK_RV = 0xE0;
const CKR_NO_EVENT: CK_RV = 0x08;
const CKF_DONT_BLOCK: CK_FLAGS = 1;

include!(concat!(env!("OUT_DIR"), "/functions.rs"));

/// The real module's entries, by index into [`NAMES`].
static REAL: [AtomicUsize; COUNT] = [const { AtomicUsize::new(0) }; COUNT];
static CALLS: AtomicU64 = AtomicU64::new(0);
static PULLED: AtomicBool = AtomicBool::new(false);
static TABLE: OnceLock<Result<Box<CK_FUNCTION_LIST>, CK_RV>> = OnceLock::new();
static SETTINGS: OnceLock<Settings> = OnceLock::new();

#[derive(Debug, Clone, Copy)]
enum Mode {
    Pulled,
    Kill,
    Once(CK_RV),
    Sleep(u64),
}

struct Settings {
    presence: Option<std::path::PathBuf>,
    at: Option<u64>,
    mode: Mode,
    log: Option<std::sync::Mutex<std::fs::File>>,
    fired: Option<std::sync::Mutex<std::fs::File>>,
    delay: Option<std::time::Duration>,
    keygen: Option<std::time::Duration>,
}

fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| {
        let at = std::env::var("FAULT_PKCS11_AT")
            .ok()
            .and_then(|v| v.trim().parse().ok());
        let mode = match std::env::var("FAULT_PKCS11_MODE").as_deref() {
            Ok("kill") => Mode::Kill,
            Ok(m) if m.starts_with("once:") => {
                let v = m.trim_start_matches("once:").trim_start_matches("0x");
                Mode::Once(CK_RV::from_str_radix(v, 16).unwrap_or(CKR_GENERAL_ERROR))
            }
            Ok(m) if m.starts_with("sleep:") => {
                Mode::Sleep(m.trim_start_matches("sleep:").parse().unwrap_or(1000))
            }
            _ => Mode::Pulled,
        };
        let append = |name: &str| {
            std::env::var_os(name).and_then(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .ok()
                    .map(std::sync::Mutex::new)
            })
        };
        let log = append("FAULT_PKCS11_LOG");
        let fired = append("FAULT_PKCS11_FIRED");
        let ms = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&v| v > 0)
                .map(std::time::Duration::from_millis)
        };
        Settings {
            presence: std::env::var_os("FAULT_PKCS11_PRESENCE").map(std::path::PathBuf::from),
            at,
            mode,
            log,
            fired,
            delay: ms("FAULT_PKCS11_DELAY_MS"),
            keygen: ms("FAULT_PKCS11_KEYGEN_MS"),
        }
    })
}

/// Record an injection in `FAULT_PKCS11_FIRED`, on disk before it acts
/// (a kill follows at once): the tests' proof that the fault was real.
fn report(n: u64, i: usize, what: &str) {
    if let Some(f) = &settings().fired
        && let Ok(mut f) = f.lock()
    {
        let _ = writeln!(f, "{n} {} {what}", NAMES.get(i).copied().unwrap_or("?"));
        let _ = f.sync_all();
    }
}

/// Answer call `i` (number `n`) with a made-up `rv`, and say so.
fn inject(n: u64, i: usize, rv: CK_RV) -> Option<CK_RV> {
    report(n, i, &format!("{rv:#x}"));
    Some(rv)
}

/// Before call `i` (an index into [`NAMES`]): count, log, and maybe fault.
/// `Some(rv)` answers the call without forwarding it.
fn before(i: usize) -> Option<CK_RV> {
    let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    let s = settings();
    if let Some(log) = &s.log
        && let Ok(mut f) = log.lock()
    {
        let _ = writeln!(f, "{n} {}", NAMES.get(i).copied().unwrap_or("?"));
    }
    if let Some(d) = s.delay {
        std::thread::sleep(d);
    }
    if let Some(d) = s.keygen
        && NAMES.get(i) == Some(&"C_GenerateKeyPair")
    {
        std::thread::sleep(d);
    }
    if s.at == Some(n) {
        match s.mode {
            Mode::Kill => {
                report(n, i, "kill");
                kill_self();
            }
            Mode::Pulled => PULLED.store(true, Ordering::SeqCst),
            Mode::Once(rv) => return inject(n, i, rv),
            Mode::Sleep(ms) => {
                report(n, i, &format!("sleep:{ms}"));
                std::thread::sleep(std::time::Duration::from_millis(ms))
            }
        }
    }
    if PULLED.load(Ordering::SeqCst) {
        return inject(n, i, CKR_DEVICE_REMOVED);
    }
    if !present() {
        return match NAMES.get(i).copied() {
            Some(
                "C_Initialize" | "C_Finalize" | "C_GetInfo" | "C_GetSlotList" | "C_GetSlotInfo"
                | "C_WaitForSlotEvent" | "C_CloseSession" | "C_CloseAllSessions",
            ) => None,
            Some("C_GetTokenInfo" | "C_OpenSession" | "C_GetMechanismList" | "C_InitToken") => {
                Some(CKR_TOKEN_NOT_PRESENT)
            }
            _ => Some(CKR_DEVICE_REMOVED),
        };
    }
    None
}

/// Whether the token is in its reader (always, without `FAULT_PKCS11_PRESENCE`).
fn present() -> bool {
    settings().presence.as_ref().is_none_or(|p| p.exists())
}

fn index_of(name: &str) -> usize {
    NAMES.iter().position(|n| *n == name).unwrap_or(0)
}

/// C_GetSlotList: with the token out, no slot has a token.
unsafe extern "C" fn get_slot_list(
    token_present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    let i = index_of("C_GetSlotList");
    if let Some(rv) = before(i) {
        return rv;
    }
    if token_present != 0 && !present() {
        if count.is_null() {
            return 0x07; // CKR_ARGUMENTS_BAD
        }
        // SAFETY: checked non-null; the caller owns it.
        unsafe { *count = 0 };
        return CKR_OK;
    }
    let p = REAL[i].load(Ordering::SeqCst);
    if p == 0 {
        return CKR_GENERAL_ERROR;
    }
    // SAFETY: the real module's C_GetSlotList has exactly this type.
    let f: unsafe extern "C" fn(CK_BBOOL, *mut CK_SLOT_ID, *mut CK_ULONG) -> CK_RV =
        unsafe { std::mem::transmute_copy(&p) };
    // SAFETY: forwarding the caller's arguments.
    unsafe { f(token_present, list, count) }
}

/// The presence last reported by C_WaitForSlotEvent.
static REPORTED: AtomicBool = AtomicBool::new(true);

/// C_WaitForSlotEvent: reports each change of `FAULT_PKCS11_PRESENCE`.
unsafe extern "C" fn wait_for_slot_event(
    flags: CK_FLAGS,
    slot: *mut CK_SLOT_ID,
    _reserved: CK_VOID_PTR,
) -> CK_RV {
    if let Some(rv) = before(index_of("C_WaitForSlotEvent")) {
        return rv;
    }
    loop {
        let now = present();
        if REPORTED.swap(now, Ordering::SeqCst) != now {
            if !slot.is_null() {
                // SAFETY: checked non-null; the caller owns it. The first
                // slot of the real module is the one that changed.
                unsafe { *slot = first_slot() };
            }
            return CKR_OK;
        }
        if flags & CKF_DONT_BLOCK != 0 {
            return CKR_NO_EVENT;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn first_slot() -> CK_SLOT_ID {
    let p = REAL[index_of("C_GetSlotList")].load(Ordering::SeqCst);
    if p == 0 {
        return 0;
    }
    // SAFETY: the real module's C_GetSlotList has exactly this type.
    let f: unsafe extern "C" fn(CK_BBOOL, *mut CK_SLOT_ID, *mut CK_ULONG) -> CK_RV =
        unsafe { std::mem::transmute_copy(&p) };
    let mut buf: [CK_SLOT_ID; 8] = [0; 8];
    let mut n: CK_ULONG = 8;
    // SAFETY: the buffer holds `n` slots.
    let rv = unsafe { f(0, buf.as_mut_ptr(), &mut n) };
    if rv == CKR_OK && n > 0 { buf[0] } else { 0 }
}

/// Puts a trampoline for entry `I` in place of a real function pointer.
trait Wrap<const I: usize>: Sized {
    fn wrap(real: Self) -> Self;
}

macro_rules! trampolines {
    ($($name:ident($($arg:ident: $ty:ident),*);)*) => {$(
        unsafe extern "C" fn $name<const I: usize, $($ty),*>($($arg: $ty),*) -> CK_RV {
            if let Some(rv) = before(I) {
                return rv;
            }
            let p = REAL[I].load(Ordering::SeqCst);
            if p == 0 {
                return CKR_GENERAL_ERROR;
            }
            // SAFETY: `p` was stored from the real module's entry I, whose
            // type is exactly this function pointer type (see `Wrap`).
            let f: unsafe extern "C" fn($($ty),*) -> CK_RV = unsafe { std::mem::transmute_copy(&p) };
            // SAFETY: forwarding the caller's arguments unchanged.
            unsafe { f($($arg),*) }
        }

        impl<const I: usize, $($ty),*> Wrap<I> for Option<unsafe extern "C" fn($($ty),*) -> CK_RV> {
            fn wrap(_real: Self) -> Self {
                Some($name::<I, $($ty),*>)
            }
        }
    )*};
}

trampolines! {
    t0();
    t1(a: A);
    t2(a: A, b: B);
    t3(a: A, b: B, c: C);
    t4(a: A, b: B, c: C, d: D);
    t5(a: A, b: B, c: C, d: D, e: E);
    t6(a: A, b: B, c: C, d: D, e: E, f: F);
    t7(a: A, b: B, c: C, d: D, e: E, f: F, g: G);
    t8(a: A, b: B, c: C, d: D, e: E, f: F, g: G, h: H);
    t9(a: A, b: B, c: C, d: D, e: E, f: F, g: G, h: H, i: I2);
    t10(a: A, b: B, c: C, d: D, e: E, f: F, g: G, h: H, i: I2, j: J);
}

fn real_module() -> String {
    if let Ok(m) = std::env::var("FAULT_PKCS11_MODULE") {
        return m;
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or("libsofthsm2.so")
    .to_string()
}

fn build_table() -> Result<Box<CK_FUNCTION_LIST>, CK_RV> {
    let path = real_module();
    // SAFETY: loading a PKCS#11 module; it stays loaded for the process's life.
    let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| {
        eprintln!("fault module: cannot load {path}: {e}");
        CKR_GENERAL_ERROR
    })?;
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    // SAFETY: the symbol has the PKCS#11 C_GetFunctionList type.
    let get: libloading::Symbol<'static, unsafe extern "C" fn(CK_FUNCTION_LIST_PTR_PTR) -> CK_RV> =
        unsafe { lib.get(b"C_GetFunctionList\0") }.map_err(|_| CKR_GENERAL_ERROR)?;
    let mut real: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    // SAFETY: PKCS#11 contract: fills `real` with a static list.
    let rv = unsafe { get(&mut real) };
    if rv != CKR_OK || real.is_null() {
        return Err(if rv == CKR_OK { CKR_GENERAL_ERROR } else { rv });
    }
    // SAFETY: checked non-null; the real module keeps it valid.
    let real = unsafe { &*real };
    let mut ours = Box::new(*real);
    hook(real, &mut ours);
    ours.C_GetFunctionList = Some(C_GetFunctionList);
    if settings().presence.is_some() {
        ours.C_GetSlotList = Some(get_slot_list);
        ours.C_WaitForSlotEvent = Some(wait_for_slot_event);
        REPORTED.store(present(), Ordering::SeqCst);
    }
    Ok(ours)
}

/// The module's one entry point.
///
/// # Safety
/// `list` must be a valid pointer to write the list pointer to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    if list.is_null() {
        return 0x07; // CKR_ARGUMENTS_BAD
    }
    match TABLE.get_or_init(build_table) {
        Ok(t) => {
            // SAFETY: checked non-null; the table lives as long as the process.
            unsafe { *list = (&**t as *const CK_FUNCTION_LIST).cast_mut() };
            CKR_OK
        }
        Err(rv) => *rv,
    }
}

/// End the process at once, as a kill would: no destructor, no flush.
#[cfg(unix)]
fn kill_self() -> ! {
    // SAFETY: plain libc calls; the process ends here, as a kill would end it.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort();
}

/// End the process at once, as Task Manager's "End task" would
/// (`TerminateProcess`: no destructor, no flush), with an exit code a test
/// tells from any exit of the program's own: 137, as a shell reports a
/// SIGKILL.
#[cfg(windows)]
fn kill_self() -> ! {
    const KILLED: u32 = 137;
    unsafe extern "system" {
        fn GetCurrentProcess() -> *mut std::ffi::c_void;
        fn TerminateProcess(process: *mut std::ffi::c_void, code: u32) -> i32;
    }
    // SAFETY: the pseudo-handle of this process, always valid.
    unsafe {
        TerminateProcess(GetCurrentProcess(), KILLED);
    }
    std::process::abort();
}
