//! `certagent demo`: the whole story in a few seconds, on a fresh SoftHSM
//! token in a temporary directory and the reference bank in-process.

use std::net::SocketAddr;
use std::path::Path;

use cryptoki::types::AuthPin;
use time::OffsetDateTime;

use super::{App, renew, status};
use crate::Error;
use crate::bank::{self, ServeOptions};
use crate::cert::rfc3339;
use crate::config::{AgentConfig, BankConfig, Config, DEFAULT_LISTEN, TokenConfig};
use crate::drivers::Drivers;
use crate::policy::{NoticeKind, Policy};
use crate::prompt::ScriptedPrompt;
use crate::token::{KeyKind, Module, Token, TokenSelector};

const LABEL: &str = "demo-token";
const PIN: &str = "482916";
const SO_PIN: &str = "so-482916";
const ANA: &str = "CN=Ana Novak,O=Demo Company d.o.o.,C=SI";
const BOR: &str = "CN=Bor Kos,O=Demo Company d.o.o.,C=SI";

fn heading(text: &str) {
    println!();
    println!("== {text}");
}

fn bank_error(e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("reference bank: {e}"))
}

pub(super) fn run(json: bool) -> Result<(), Error> {
    let work = tempfile::Builder::new()
        .prefix("certagent-demo-")
        .tempdir()
        .map_err(Error::Io)?;
    let dir = work.path();

    // A SoftHSM store of our own. SoftHSM reads SOFTHSM2_CONF when the module
    // is first loaded, which has not happened yet in this process; the
    // journal goes to a state directory of our own too.
    std::fs::create_dir(dir.join("tokens")).map_err(Error::Io)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .map_err(Error::Io)?;
    // SAFETY: no other thread exists yet in this process.
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &conf);
        std::env::set_var("XDG_STATE_HOME", dir.join("state"));
    }

    heading("A fresh SoftHSM token and the reference bank");
    let drivers = Drivers::builtin();
    let module = Module::load("softhsm2", &drivers)?;
    let token = module.init_token(
        LABEL,
        &AuthPin::from(SO_PIN.to_string()),
        &AuthPin::from(PIN.to_string()),
    )?;
    println!(
        "token {LABEL:?} in {} ({})",
        dir.display(),
        module.info().path
    );

    let bank_dir = dir.join("bank");
    bank::init(&bank_dir).map_err(bank_error)?;
    let ana_otp = bank::add_user(&bank_dir, "ana", ANA).map_err(bank_error)?;
    let bor_otp = bank::add_user(&bank_dir, "bor", BOR).map_err(bank_error)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Io)?;
    let policy = Policy::default();
    let running = rt
        .block_on(bank::serve(
            &bank_dir,
            ServeOptions {
                listen: "127.0.0.1:0"
                    .parse()
                    .map_err(|_| bank_error("listen address"))?,
                // Show the "come back later" path of EST too.
                first_answer_202: true,
                policy: policy.clone(),
                ..ServeOptions::default()
            },
        ))
        .map_err(bank_error)?;
    let addr: SocketAddr = running.addr();
    println!(
        "bank: EST at https://{addr}/.well-known/est, CA {}",
        bank_dir.join("ca.pem").display()
    );

    let app = App {
        config: demo_config(addr, &bank_dir, policy.clone()),
        drivers,
        json,
        prompt: Box::new(ScriptedPrompt {
            pin: PIN.into(),
            otp: None,
            confirm: true,
        }),
    };

    heading("Ana's certificate expires in 20 days");
    token.login(Some(&AuthPin::from(PIN.to_string())))?;
    let ana_id = issue_onto_token(&token, &bank_dir, ANA, 20, "Ana's bank certificate")?;
    let _ = ana_otp; // Ana renews with her certificate; her first OTP stays unused.
    status::status(&app)?;
    notice(&token, &ana_id, &policy)?;

    heading("Renewal: new key on the token, CSR, EST simplereenroll over mutual TLS");
    renew::renew(&app, Some(&hex::encode(&ana_id)), true)?;

    heading("Bor's certificate expired 5 days ago: a new one with the bank's one-time password");
    let bor_id = issue_onto_token(&token, &bank_dir, BOR, -5, "Bor's bank certificate")?;
    status::status(&app)?;
    let app = App {
        prompt: Box::new(ScriptedPrompt {
            pin: PIN.into(),
            otp: Some(bor_otp),
            confirm: true,
        }),
        ..app
    };
    println!("(the bank gave Bor the ID \"bor\" and a one-time password)");
    renew::enroll(&app, "bor", Some(&hex::encode(&bor_id)), true)?;

    heading("The token now");
    status::status(&app)?;
    rt.block_on(running.shutdown());
    drop(token);
    println!();
    println!("Done; {} is removed.", dir.display());
    Ok(())
}

/// A key pair on the token and a certificate from the bank expiring in
/// `days_left` days, as if the bank had issued it a year ago.
fn issue_onto_token(
    token: &Token,
    bank_dir: &Path,
    subject: &str,
    days_left: i64,
    label: &str,
) -> Result<Vec<u8>, Error> {
    let key = token.generate_key_pair(KeyKind::Rsa2048, label)?;
    let der = bank::issue(bank_dir, subject, &key.spki_der, days_left).map_err(bank_error)?;
    token.write_certificate(&key.id, label, &der)?;
    Ok(key.id)
}

/// What the agent would have shown on the desktop by now.
fn notice(token: &Token, id: &[u8], policy: &Policy) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    for c in token.certificates()? {
        if c.id != id {
            continue;
        }
        let cert = crate::cert::Cert::from_der(&c.der)?;
        let passed = policy
            .notices(cert.not_after)
            .into_iter()
            .rev()
            .find(|n| n.at <= now);
        if let Some(n) = passed
            && let NoticeKind::DaysBefore(d) = n.kind
        {
            println!(
                "desktop notice ({d}-day, due {}): \"Your bank certificate {} expires in {} days. Renew it now.\"",
                rfc3339(n.at),
                cert.subject,
                crate::policy::days_left(cert.not_after, now)
            );
        }
    }
    Ok(())
}

fn demo_config(addr: SocketAddr, bank_dir: &Path, policy: Policy) -> Config {
    Config {
        source: None,
        token: TokenConfig {
            module: "softhsm2".into(),
            selector: TokenSelector {
                label: Some(LABEL.into()),
                ..TokenSelector::default()
            },
        },
        bank: Some(BankConfig {
            est_url: format!("https://{addr}/.well-known/est"),
            server_roots: bank_dir.join("tls-roots.pem"),
            origins: Vec::new(),
            ca_certs: None,
            issuer: None,
        }),
        policy,
        key: KeyKind::Rsa2048,
        agent: AgentConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 31270))),
            pinentry: None,
        },
    }
}
