//! `certagent-bank`: the reference bank's command line, for testers.
//! Every command is a thin wrapper over the `certagent_bank` library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;

use certagent::policy::Policy;
use certagent_bank::{self as bank, ServeOptions};

#[derive(Parser)]
#[command(
    name = "certagent-bank",
    version,
    about = "A small real CA, EST (RFC 7030) server and web logon to test certagent against"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a bank: an issuing CA, a TLS CA and a TLS certificate for 127.0.0.1/localhost.
    /// The TLS CA is name-constrained to those names and its key is not kept.
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Serve EST at https://LISTEN/.well-known/est/, the logon verifier under /logon/
    /// and the demo pages (/ and /notices) until interrupted.
    Serve {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Answer each new enroll request with 202 and Retry-After first (manual approval).
        #[arg(long = "first-202")]
        first_202: bool,
        /// Renewal opens this many days before expiry.
        #[arg(long, default_value_t = Policy::default().renew_window_days)]
        renew_window_days: u32,
        /// After expiry, simpleenroll with a one-time password works this many days.
        #[arg(long, default_value_t = Policy::default().reissue_grace_days)]
        reissue_grace_days: u32,
        /// The web origin browsers use for the bank's pages; logon tokens must be
        /// made for it [default: https://localhost:PORT].
        #[arg(long)]
        origin: Option<String>,
        /// The certagent agent's local API, as the pages call it.
        #[arg(long, default_value = bank::DEFAULT_AGENT_URL)]
        agent_url: String,
    },
    /// Register a user; prints their one-time password.
    AddUser {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        user: String,
        /// RFC 4514, e.g. "CN=Alice,O=Bank".
        #[arg(long)]
        subject: String,
    },
    /// Allow one more simpleenroll after the grace period; prints a new one-time password.
    Reissue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        user: String,
    },
    /// Issue a client certificate for a public key directly (test set-ups).
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        subject: String,
        /// DER (or PEM) SubjectPublicKeyInfo.
        #[arg(long)]
        pubkey: PathBuf,
        /// Days until expiry; negative for an expired certificate.
        #[arg(long, allow_negative_numbers = true)]
        days_left: i64,
        /// Write the certificate (PEM) here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("certagent-bank: {}", one_line_usage_error(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            let one_line = reason.replace('\n', " ");
            eprintln!("certagent-bank: {one_line}");
            ExitCode::FAILURE
        }
    }
}

/// clap's message up to its usage block, on one line: scripts and testers
/// read the first line of stderr.
fn one_line_usage_error(text: &str) -> String {
    let words: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim_start().starts_with("Usage:"))
        .flat_map(str::split_whitespace)
        .collect();
    let line = words.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    format!("{line} (see certagent-bank --help)")
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Init { dir } => {
            bank::init(&dir).map_err(|e| e.to_string())?;
            println!("bank created in {}", dir.display());
            println!("issuing CA:        {}", dir.join("ca.pem").display());
            println!("TLS trust anchor:  {}", dir.join("tls-roots.pem").display());
            println!(
                "                   (valid only for localhost and 127.0.0.1; its private key was not kept)"
            );
            Ok(())
        }
        Command::AddUser { dir, user, subject } => {
            let otp = bank::add_user(&dir, &user, &subject).map_err(|e| e.to_string())?;
            println!("{otp}");
            Ok(())
        }
        Command::Reissue { dir, user } => {
            let otp = bank::reissue(&dir, &user).map_err(|e| e.to_string())?;
            println!("{otp}");
            Ok(())
        }
        Command::Issue {
            dir,
            subject,
            pubkey,
            days_left,
            out,
        } => {
            let spki = read_pubkey(&pubkey)?;
            let der = bank::issue(&dir, &subject, &spki, days_left).map_err(|e| e.to_string())?;
            let pem = bank::ca::pem("CERTIFICATE", &der).map_err(|e| e.to_string())?;
            match out {
                Some(path) => std::fs::write(&path, pem)
                    .map_err(|e| format!("cannot write {}: {e}", path.display())),
                None => {
                    print!("{pem}");
                    Ok(())
                }
            }
        }
        Command::Serve {
            dir,
            listen,
            first_202,
            renew_window_days,
            reissue_grace_days,
            origin,
            agent_url,
        } => {
            let opts = ServeOptions {
                listen,
                first_answer_202: first_202,
                policy: Policy {
                    renew_window_days,
                    reissue_grace_days,
                    ..Policy::default()
                },
                origin,
                agent_url,
                ..ServeOptions::default()
            };
            serve(&dir, opts)
        }
    }
}

fn serve(dir: &Path, opts: ServeOptions) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let running = bank::serve(dir, opts).await.map_err(|e| e.to_string())?;
        // Scripts, and `certagent demo`, read the real address from this line
        // (useful with port 0): keep its form.
        println!("listening on https://{}/.well-known/est/", running.addr());
        println!("logon page at {}/", running.origin());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let signal = tokio::signal::ctrl_c().await;
        running.shutdown().await;
        signal.map_err(|e| format!("cannot wait for Ctrl-C: {e}"))
    })
}

/// DER SubjectPublicKeyInfo, or PEM "PUBLIC KEY" as openssl writes it.
fn read_pubkey(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(&bytes)
            .map_err(|e| format!("{}: not a PEM public key: {e}", path.display()))?;
        Ok(der.as_ref().to_vec())
    } else {
        Ok(bytes)
    }
}
