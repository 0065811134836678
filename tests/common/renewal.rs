//! A renewal's world: a test token (SoftHSM or kryoptic), the reference
//! bank serving on loopback TLS with one user, a configuration naming both,
//! and `certagent` run as a separate process (so it can be killed mid-way).
//! The first key and certificate go on the token with pkcs11-tool, as the
//! bank's old procedure would have put them there.

use std::path::PathBuf;
use std::process::Output;

use certagent::policy::Policy;
use certagent_bank::{self as bank, RunningBank, ServeOptions};

pub use super::agent::ANA;
use super::{PIN, Stack, TestToken, text};

pub struct Env {
    pub hsm: TestToken,
    pub bank_dir: PathBuf,
    pub rt: tokio::runtime::Runtime,
    pub bank: Option<RunningBank>,
    pub config: PathBuf,
    pub otp: String,
}

impl Env {
    /// On SoftHSM; with `first_202`, the bank answers each new request
    /// with 202 first.
    pub fn new(first_202: bool) -> Env {
        Env::on(Stack::SoftHsm, first_202)
    }

    /// On a token of `stack`.
    pub fn on(stack: Stack, first_202: bool) -> Env {
        let hsm = TestToken::on(stack);
        let bank_dir = hsm.path().join("bank");
        bank::init(&bank_dir).expect("bank init");
        let otp = bank::add_user(&bank_dir, "ana", ANA).expect("add user");
        let (rt, bank) = super::serve_bank(
            &bank_dir,
            ServeOptions {
                first_answer_202: first_202,
                policy: Policy::default(),
                ..ServeOptions::default()
            },
        );
        let mut env = Env {
            config: PathBuf::new(),
            hsm,
            bank_dir,
            rt,
            bank: Some(bank),
            otp,
        };
        env.write_config("", "");
        env
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.bank.as_ref().expect("bank running").addr()
    }

    /// Config for this token and bank, with extra `[bank]` and `[policy]`
    /// lines.
    pub fn write_config(&mut self, bank_extra: &str, policy: &str) {
        let roots = self.bank_dir.join("tls-roots.pem");
        self.config = self.hsm.config(
            &self.hsm.module_setting(),
            &format!(
                "[bank]\nest_url = \"https://{}/.well-known/est\"\nserver_roots = \"{}\"\n{bank_extra}\n[policy]\n{policy}\n",
                self.addr(),
                roots.display()
            ),
        );
    }

    /// A key pair made by pkcs11-tool and a bank certificate for it that
    /// expires in `days_left` days, written with pkcs11-tool.
    pub fn provision(&self, id: &str, key_type: &str, subject: &str, days_left: i64) -> Vec<u8> {
        super::bank_cert_on_token(&self.hsm, &self.bank_dir, id, key_type, subject, days_left)
    }

    /// `certagent ARGS` with the PIN given (CERTAGENT_PIN) and `extra_env`.
    pub fn certagent(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut cmd = self.hsm.command();
        cmd.env("XDG_STATE_HOME", self.state_dir())
            .env("CERTAGENT_PIN", PIN)
            .env_remove("CERTAGENT_TEST_CRASH_AT")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(std::process::Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().expect("certagent runs")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.hsm.path().join("state")
    }

    pub fn journal_exists(&self) -> bool {
        std::fs::read_dir(self.state_dir().join("certagent"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("renewal-"))
            })
            .unwrap_or(false)
    }

    /// (object kind, CKA_ID hex) for every object, as pkcs11-tool lists them.
    pub fn objects(&self) -> Vec<(String, String)> {
        let out = self.hsm.pkcs11_tool(&["--login", "--pin", PIN, "-O"]);
        assert!(out.status.success(), "{}", text(&out));
        let mut objs = Vec::new();
        let mut kind = String::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // kryoptic also lists its mechanisms ("Object 3, type 7"), which
            // have no ";" and no ID line.
            if let Some((k, _)) = line.split_once(" Object;") {
                kind = k.trim().to_string();
            } else if let Some(id) = line.trim().strip_prefix("ID:") {
                objs.push((kind.clone(), id.trim().to_string()));
            }
        }
        objs.sort();
        objs
    }

    /// The private keys as pkcs11-tool describes them.
    pub fn private_keys(&self) -> String {
        let out = self
            .hsm
            .pkcs11_tool(&["--login", "--pin", PIN, "-O", "--type", "privkey"]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The bank's request log, one JSON object a request.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.bank_dir.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The bank's log of `simplereenroll` requests.
    pub fn reenrolls(&self) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("simplereenroll"))
            })
            .collect()
    }

    pub fn status_json(&self) -> serde_json::Value {
        let out = self.certagent(&["status", "--json"], &[]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).expect("json")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(b) = self.bank.take() {
            self.rt.block_on(b.shutdown());
        }
    }
}

/// Exactly one certificate with its key pair, all under one id.
pub fn single_pair(objs: &[(String, String)]) -> String {
    assert_eq!(objs.len(), 3, "{objs:?}");
    let id = objs[0].1.clone();
    assert!(objs.iter().all(|(_, i)| *i == id), "{objs:?}");
    let kinds: Vec<&str> = objs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["Certificate", "Private Key", "Public Key"],
        "{objs:?}"
    );
    id
}

/// The one bank certificate on the token, as `certagent show` gives it.
pub fn new_cert_of(env: &Env) -> certagent::cert::Cert {
    let s = env.status_json();
    let certs = s["certificates"].as_array().expect("certificates");
    assert_eq!(certs.len(), 1, "{s}");
    let out = env.certagent(&["show", "--json"], &[]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let pem = j["pem"].as_str().expect("pem");
    let (_, der) = der::pem::decode_vec(pem.as_bytes()).expect("pem");
    certagent::cert::Cert::from_der(&der).expect("cert")
}
