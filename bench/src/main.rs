//! `certagent-bench`: the measuring parts of `scripts/bench.sh` that a shell
//! does badly. Each subcommand prints one line of `key=value` fields (times
//! in milliseconds) for the script to read; nothing here asserts a figure.
//!
//! | subcommand | measures |
//! |---|---|
//! | `sign` | a raw in-process C_Sign: log in once, sign 32 bytes many times |
//! | `logon` | `POST /v1/logon` on the agent's local API, one after another |
//! | `flood` | `GET /v1/status` from a hostile origin on keep-alive connections, with real logons beside it |
//! | `ready` | from spawning `certagent run` until `/v1/status` answers 200 |
//! | `idle` | a running process over a window: RSS, CPU, context switches, PKCS#11 calls logged |
//! | `stats` | percentiles of numbers read from stdin (one a line) |
//! | `free-port` | a free TCP port on loopback |

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Parser, Subcommand};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

#[derive(Parser)]
#[command(
    name = "certagent-bench",
    about = "Measuring helpers for scripts/bench.sh"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Log in once, then C_Sign 32 bytes with CKM_SHA256_RSA_PKCS_PSS `--count` times.
    Sign {
        #[arg(long)]
        module: PathBuf,
        #[arg(long)]
        token: String,
        #[arg(long)]
        pin: String,
        /// CKA_ID of the private key, hex.
        #[arg(long)]
        id: String,
        #[arg(long, default_value_t = 200)]
        count: usize,
    },
    /// Sequential logons through the local API (each on its own connection).
    Logon {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        origin: String,
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// Logons before the timed ones.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
    },
    /// Hostile-origin `GET /v1/status` on `--conns` keep-alive connections for
    /// `--secs`, while real logons run one after another beside it.
    Flood {
        #[arg(long)]
        addr: SocketAddr,
        /// The allowed origin the real logons use.
        #[arg(long)]
        origin: String,
        #[arg(long, default_value = "https://evil.example")]
        evil: String,
        #[arg(long, default_value_t = 4)]
        conns: usize,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Requests per second over all connections (0: as fast as they go).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Spawn the command after `--`, time until `/v1/status` answers 200, kill it; `--count` times.
    Ready {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        origin: String,
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Watch process `--pid` for `--secs`: RSS at the end, CPU and context
    /// switches (all threads) and lines added to `--log` during the window.
    Idle {
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 60)]
        secs: u64,
        #[arg(long)]
        log: Option<PathBuf>,
    },
    /// n, p50, p99, min, max and mean of the numbers on stdin.
    Stats,
    /// A free TCP port on 127.0.0.1.
    FreePort,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Sign {
            module,
            token,
            pin,
            id,
            count,
        } => sign(&module, &token, &pin, &id, count),
        Cmd::Logon {
            addr,
            origin,
            count,
            warmup,
        } => logon_loop(addr, &origin, count, warmup),
        Cmd::Flood {
            addr,
            origin,
            evil,
            conns,
            secs,
            rate,
        } => flood(addr, &origin, &evil, conns, Duration::from_secs(secs), rate),
        Cmd::Ready {
            addr,
            origin,
            count,
            command,
        } => ready(addr, &origin, count, &command),
        Cmd::Idle { pid, secs, log } => idle(pid, Duration::from_secs(secs), log.as_deref()),
        Cmd::Stats => stats_stdin(),
        Cmd::FreePort => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port().to_string())
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("certagent-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .copied()
        .unwrap_or(f64::NAN)
}

fn summary(values: &[f64]) -> String {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    format!(
        "n={} p50={:.3} p99={:.3} min={:.3} max={:.3} mean={:.3}",
        v.len(),
        percentile(&v, 50.0),
        percentile(&v, 99.0),
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
        mean
    )
}

fn stats_stdin() -> Result<String> {
    let mut values = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        values.push(t.parse::<f64>().map_err(|e| format!("{t:?}: {e}"))?);
    }
    if values.is_empty() {
        return Err("no numbers on stdin".into());
    }
    Ok(summary(&values))
}

// ---------------------------------------------------------------- C_Sign

fn sign(
    module: &std::path::Path,
    token: &str,
    pin: &str,
    id: &str,
    count: usize,
) -> Result<String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: cryptoki::error::Error| format!("{what}: {err}")
    };
    let id = decode_hex(id)?;
    let ctx = Pkcs11::new(module).map_err(e("load module"))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(e("C_Initialize"))?;
    let mut found = None;
    for slot in ctx.get_slots_with_token().map_err(e("C_GetSlotList"))? {
        let info = ctx.get_token_info(slot).map_err(e("C_GetTokenInfo"))?;
        if info.label().trim_end() == token {
            found = Some(slot);
            break;
        }
    }
    let slot = found.ok_or_else(|| format!("no token labelled {token:?}"))?;
    let session = ctx.open_ro_session(slot).map_err(e("C_OpenSession"))?;
    session
        .login(UserType::User, Some(&AuthPin::new(pin.into())))
        .map_err(e("C_Login"))?;
    let keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(id.clone()),
        ])
        .map_err(e("C_FindObjects"))?;
    let key = *keys
        .first()
        .ok_or_else(|| format!("no private key with id {}", encode_hex(&id)))?;
    let mechanism = Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32u64.into(),
    });
    let data = [7u8; 32];
    for _ in 0..3 {
        session.sign(&mechanism, key, &data).map_err(e("C_Sign"))?;
    }
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        let sig = session.sign(&mechanism, key, &data).map_err(e("C_Sign"))?;
        times.push(ms(t.elapsed()));
        if sig.len() < 64 {
            return Err(format!("a {}-byte signature", sig.len()));
        }
    }
    let _ = session.logout();
    Ok(summary(&times))
}

fn decode_hex(s: &str) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("{s:?} is not hex"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| format!("{s:?} is not hex"))
        })
        .collect()
}

fn encode_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------- HTTP

/// One HTTP/1.1 connection that reconnects when the server closes it.
struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn { addr, stream: None }
    }

    /// Send `request` and read the whole answer; its status.
    fn send(&mut self, request: &[u8]) -> std::io::Result<u16> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            self.stream = Some(BufReader::new(s));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        let answer = stream
            .get_mut()
            .write_all(request)
            .and_then(|()| read_answer(stream));
        match answer {
            Ok((status, keep)) => {
                if !keep {
                    self.stream = None;
                }
                Ok(status)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

/// (status, whether the connection stays open).
fn read_answer(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, bool)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let (mut length, mut chunked, mut keep) = (0usize, false, true);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => length = v.parse().map_err(|_| bad("content-length"))?,
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => keep = !v.contains("close"),
                _ => {}
            }
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("chunk size"))?;
            let mut skip = vec![0u8; size + 2];
            r.read_exact(&mut skip)?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0u8; length];
        r.read_exact(&mut body)?;
    }
    Ok((status, keep))
}

fn status_request(addr: SocketAddr, origin: &str, close: bool) -> Vec<u8> {
    format!(
        "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: {origin}\r\n{}\r\n",
        addr.port(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

fn logon_request(addr: SocketAddr, origin: &str) -> Vec<u8> {
    let body = format!(
        "{{\"challenge\":\"{}\"}}",
        URL_SAFE_NO_PAD.encode([3u8; 32])
    );
    format!(
        "POST /v1/logon HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: {origin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        addr.port(),
        body.len()
    )
    .into_bytes()
}

/// One logon on a fresh connection, as a page's fetch makes it; its time.
fn one_logon(addr: SocketAddr, request: &[u8]) -> Result<f64> {
    let t = Instant::now();
    let status = Conn::new(addr)
        .send(request)
        .map_err(|e| format!("logon: {e}"))?;
    let took = ms(t.elapsed());
    if status != 200 {
        return Err(format!("logon answered {status}"));
    }
    Ok(took)
}

fn logon_loop(addr: SocketAddr, origin: &str, count: usize, warmup: usize) -> Result<String> {
    let request = logon_request(addr, origin);
    for _ in 0..warmup {
        one_logon(addr, &request)?;
    }
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        times.push(one_logon(addr, &request)?);
    }
    Ok(summary(&times))
}

// ---------------------------------------------------------------- flood

fn flood(
    addr: SocketAddr,
    origin: &str,
    evil: &str,
    conns: usize,
    secs: Duration,
    rate: u64,
) -> Result<String> {
    // Each connection's share of the rate, as the time between its requests.
    let interval = (rate > 0).then(|| Duration::from_secs_f64(conns as f64 / rate as f64));
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let request = Arc::new(status_request(addr, evil, false));
    let mut workers = Vec::new();
    for _ in 0..conns {
        let (stop, refused, other, errors, request) = (
            stop.clone(),
            refused.clone(),
            other.clone(),
            errors.clone(),
            request.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let mut conn = Conn::new(addr);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Some(interval) = interval {
                    next += interval;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                }
                match conn.send(&request) {
                    Ok(403) => refused.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => other.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let start = Instant::now();
    let logon = logon_request(addr, origin);
    let mut times = Vec::new();
    let mut failed = 0u64;
    // Logons one after another for the whole window, after a moment for
    // the flood to get going.
    std::thread::sleep(Duration::from_millis(200));
    while start.elapsed() < secs {
        match one_logon(addr, &logon) {
            Ok(t) => times.push(t),
            Err(_) => failed += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for w in workers {
        let _ = w.join();
    }
    let refused = refused.load(Ordering::Relaxed);
    let logons = if times.is_empty() {
        "n=0".to_string()
    } else {
        summary(&times)
    };
    Ok(format!(
        "conns={conns} rate={rate} secs={elapsed:.1} refused={refused} refused_per_s={:.0} other={} errors={} logon_failed={failed} logon_{}",
        refused as f64 / elapsed,
        other.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        logons.replace(' ', " logon_")
    ))
}

// ---------------------------------------------------------------- start-up

fn ready(addr: SocketAddr, origin: &str, count: usize, command: &[String]) -> Result<String> {
    let (program, args) = command.split_first().ok_or("no command")?;
    let request = status_request(addr, origin, true);
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{program}: {e}"))?;
        let deadline = start + Duration::from_secs(20);
        let answered = loop {
            if let Ok(200) = Conn::new(addr).send(&request) {
                break Some(ms(start.elapsed()));
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let _ = child.kill();
        let _ = child.wait();
        times.push(answered.ok_or("the agent never answered /v1/status with 200")?);
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(summary(&times))
}

// ---------------------------------------------------------------- idle

/// One thread's counters (all monotonic while it lives).
#[derive(Default, Clone, Copy)]
struct ThreadSample {
    /// The thread's name (comm, at most 15 bytes).
    name: [u8; 16],
    /// Run time from schedstat, nanoseconds.
    run_ns: u64,
    voluntary: u64,
    nonvoluntary: u64,
}

/// Every thread of `pid` now, by thread id.
fn threads(pid: u32) -> Result<HashMap<u32, ThreadSample>> {
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| format!("pid {pid}: {e}"))?;
    let mut all = HashMap::new();
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let p = task.path();
        let mut s = ThreadSample::default();
        if let Ok(t) = std::fs::read(p.join("comm")) {
            for (d, c) in s.name.iter_mut().zip(t.iter().filter(|c| **c != b'\n')) {
                *d = *c;
            }
        }
        if let Ok(t) = std::fs::read_to_string(p.join("schedstat")) {
            s.run_ns = t
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_default();
        }
        let Ok(t) = std::fs::read_to_string(p.join("status")) else {
            continue; // it ended between the listing and now
        };
        for line in t.lines() {
            let value = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_default()
            };
            if line.starts_with("voluntary_ctxt_switches:") {
                s.voluntary = value(line);
            } else if line.starts_with("nonvoluntary_ctxt_switches:") {
                s.nonvoluntary = value(line);
            }
        }
        all.insert(tid, s);
    }
    Ok(all)
}

/// utime + stime of the whole process, dead threads included, clock ticks.
fn process_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("pid {pid}: {e}"))?;
    // Fields after the command name "(...)": state is field 3; utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> u64 {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    Ok(field(14) + field(15))
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

fn lines_in(path: Option<&std::path::Path>) -> u64 {
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.lines().count() as u64)
        .unwrap_or_default()
}

/// Per-thread counters are lost when a thread ends (a tokio blocking thread
/// ends 10 s after its last task), so the threads are sampled every 20 ms
/// and each one's last reading counts.
fn idle(pid: u32, window: Duration, log: Option<&std::path::Path>) -> Result<String> {
    // USER_HZ: /proc reports utime and stime in 1/100 s on Linux.
    let hz = 100u64;
    let ticks_before = process_ticks(pid)?;
    let first = threads(pid)?;
    let mut last = first.clone();
    let calls_before = lines_in(log);
    let start = Instant::now();
    while start.elapsed() < window {
        std::thread::sleep(Duration::from_millis(20));
        last.extend(threads(pid)?);
    }
    let secs = start.elapsed().as_secs_f64();
    let ticks = process_ticks(pid)?.saturating_sub(ticks_before);
    let calls = lines_in(log).saturating_sub(calls_before);
    let (mut run_ns, mut voluntary, mut nonvoluntary) = (0u64, 0u64, 0u64);
    let mut by_thread: std::collections::BTreeMap<String, u64> = Default::default();
    for (tid, now) in &last {
        let was = first.get(tid).copied().unwrap_or_default();
        run_ns += now.run_ns.saturating_sub(was.run_ns);
        let v = now.voluntary.saturating_sub(was.voluntary);
        let n = now.nonvoluntary.saturating_sub(was.nonvoluntary);
        voluntary += v;
        nonvoluntary += n;
        if v + n > 0 {
            let name = String::from_utf8_lossy(&now.name)
                .trim_end_matches('\0')
                .replace([' ', '=', ','], "_");
            *by_thread.entry(name).or_default() += v + n;
        }
    }
    let by_thread = by_thread
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",");
    let born = last.keys().filter(|t| !first.contains_key(t)).count();
    let alive = threads(pid)?.len();
    let per_min = |v: u64| v as f64 * 60.0 / secs;
    let run_ms = run_ns as f64 / 1e6;
    Ok(format!(
        "secs={secs:.1} rss_kb={} hwm_kb={} threads={alive} threads_started={born} cpu_ms={run_ms:.3} cpu_s_per_hour={:.3} tick_cpu_ms={} voluntary={voluntary} nonvoluntary={nonvoluntary} wakeups_per_min={:.1} switches_by_thread={} pkcs11_calls={calls} pkcs11_per_min={:.1}",
        status_kb(pid, "VmRSS:"),
        status_kb(pid, "VmHWM:"),
        run_ms / 1000.0 * 3600.0 / secs,
        ticks * 1000 / hz,
        per_min(voluntary + nonvoluntary),
        if by_thread.is_empty() {
            "none"
        } else {
            &by_thread
        },
        per_min(calls),
    ))
}
