//! Test fixtures: a real soft token per test, on SoftHSM (most tests) or
//! kryoptic (tests/kryoptic.rs, the second, independent token stack), and
//! the outside tools (`softhsm2-util`, `pkcs11-tool`, `openssl`) used to
//! provision and check it.
//!
//! Both modules read their configuration (`SOFTHSM2_CONF`, `KRYOPTIC_CONF`)
//! once, when the library is initialised, and a process can initialise a
//! module only once. Each test therefore needs its own process for its own
//! token directory: run the suite with `cargo nextest run` (process per
//! test). Under plain `cargo test` a second token directory in one process
//! fails loudly instead of silently sharing a token.
#![allow(dead_code)]

pub mod agent;
pub mod faults;
pub mod firefox;
pub mod openpgp;
pub mod renewal;
pub mod webdriver;
pub mod xvfb;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The user PIN on every test token: 8 characters, the minimum kryoptic
/// reports (SoftHSM takes 4 and more).
pub const PIN: &str = "12345678";
/// The security officer's PIN.
pub const SO_PIN: &str = "so-12345678";
pub const LABEL: &str = "bank-token";

const INSTALL: &str = "apt-get install softhsm2 opensc opensc-pkcs11 openssl faketime";
/// What building the kryoptic module needs beyond Rust (scripts/setup.sh
/// installs it with the other test packages).
const KRYOPTIC_INSTALL: &str = "apt-get install libssl-dev libclang-dev libsqlite3-dev opensc, then cargo build --workspace (scripts/test.sh does both)";

/// Panic with the install command when a system part is missing.
pub fn require(tool: &str) {
    require_with(tool, &format!("install it: {INSTALL}"));
}

/// The certagent program with a clean environment of its own: no
/// configuration, PIN or one-time password from outside, English unless a
/// test asks for another language, XDG config and state under `dir`.
pub fn certagent_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certagent"));
    cmd.env_remove("CERTAGENT_CONFIG")
        .env_remove("CERTAGENT_PIN")
        .env_remove("CERTAGENT_ADMIN_PIN")
        .env_remove("CERTAGENT_OTP")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", "C.UTF-8")
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env("XDG_STATE_HOME", dir.join("state"));
    cmd
}

/// Panic with `install` (what to do) when `tool` is not on PATH.
pub fn require_with(tool: &str, install: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "{tool} is missing; {install}");
}

/// Fail loudly unless the test runs as root (CI does): `why` says what
/// needs it.
pub fn require_root(why: &str) {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { geteuid() } == 0;
    assert!(root, "{why} and needs root, as CI runs it");
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

fn first_existing(candidates: &[&str], what: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{what} not found; install it: {INSTALL}"))
}

pub fn softhsm_module() -> PathBuf {
    first_existing(
        &[
            "/usr/lib/softhsm/libsofthsm2.so",
            "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
            "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        ],
        "libsofthsm2.so",
    )
}

/// kryoptic built as a PKCS#11 module (tests/kryoptic-module), built with
/// the workspace.
pub fn kryoptic_module() -> PathBuf {
    workspace_library("libcertagent_kryoptic_pkcs11.so", KRYOPTIC_INSTALL)
}

/// OpenSC's PKCS#11 spy: logs every call to the module behind it.
pub fn spy_module() -> PathBuf {
    first_existing(
        &[
            "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so",
            "/usr/lib/aarch64-linux-gnu/pkcs11-spy.so",
            "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so",
        ],
        "pkcs11-spy.so (package opensc-pkcs11)",
    )
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A soft token implementation the tests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// SoftHSM v2 (C++, the Debian package), configured by `SOFTHSM2_CONF`.
    SoftHsm,
    /// kryoptic (Rust, built from crates.io by tests/kryoptic-module),
    /// configured by `KRYOPTIC_CONF`.
    Kryoptic,
}

impl Stack {
    /// The PKCS#11 library.
    pub fn module(self) -> PathBuf {
        match self {
            Stack::SoftHsm => softhsm_module(),
            Stack::Kryoptic => kryoptic_module(),
        }
    }

    /// The driver profile (drivers/) certagent should name for it.
    pub fn profile(self) -> &'static str {
        match self {
            Stack::SoftHsm => "softhsm2",
            Stack::Kryoptic => "kryoptic",
        }
    }

    /// The environment variable naming its configuration file.
    pub fn conf_var(self) -> &'static str {
        match self {
            Stack::SoftHsm => "SOFTHSM2_CONF",
            Stack::Kryoptic => "KRYOPTIC_CONF",
        }
    }

    /// `C_GetTokenInfo`'s manufacturerID.
    pub fn token_manufacturer(self) -> &'static str {
        match self {
            Stack::SoftHsm => "SoftHSM project",
            Stack::Kryoptic => "Kryoptic Project",
        }
    }
}

/// A soft token's store of the test's own (a SoftHSM token directory or a
/// kryoptic database), with the configuration file that points there.
pub struct TestToken {
    pub dir: tempfile::TempDir,
    pub stack: Stack,
}

/// The name the SoftHSM tests know the fixture by: `SoftHsm::new()` is a
/// SoftHSM token, `TestToken::on(stack)` one on either stack.
pub type SoftHsm = TestToken;

static ACTIVE_CONF: OnceLock<PathBuf> = OnceLock::new();

impl TestToken {
    /// A SoftHSM token store with one initialised token, `LABEL`/`PIN`.
    pub fn new() -> TestToken {
        TestToken::on(Stack::SoftHsm)
    }

    /// A SoftHSM token store with no token; `provision` fills it.
    pub fn empty() -> TestToken {
        TestToken::empty_on(Stack::SoftHsm)
    }

    /// A store on `stack` with one initialised token, `LABEL`/`PIN`.
    pub fn on(stack: Stack) -> TestToken {
        let token = TestToken::empty_on(stack);
        token.init_token(LABEL);
        token
    }

    /// A store on `stack` with no initialised token.
    pub fn empty_on(stack: Stack) -> TestToken {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = match stack {
            Stack::SoftHsm => {
                require("softhsm2-util");
                std::fs::create_dir(dir.path().join("tokens")).expect("tokens dir");
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    dir.path().join("tokens").display()
                )
            }
            Stack::Kryoptic => {
                // Fail now, with what to install, rather than in a tool.
                kryoptic_module();
                require_with("pkcs11-tool", KRYOPTIC_INSTALL);
                format!(
                    "[[slots]]\nslot = 1\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
                    dir.path().join("token.sql").display()
                )
            }
        };
        let token = TestToken { dir, stack };
        std::fs::write(token.conf(), conf).expect("token configuration");
        token
    }

    /// The module's configuration file (for `conf_var`).
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join(match self.stack {
            Stack::SoftHsm => "softhsm2.conf",
            Stack::Kryoptic => "kryoptic.conf",
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The module's library.
    pub fn module(&self) -> PathBuf {
        self.stack.module()
    }

    /// `[token] module` for this token: SoftHSM by its profile name, the
    /// kryoptic build (in target/, where no profile looks) by its path, so
    /// certagent has to recognise it by what C_GetInfo says.
    pub fn module_setting(&self) -> String {
        match self.stack {
            Stack::SoftHsm => self.stack.profile().to_string(),
            Stack::Kryoptic => self.module().display().to_string(),
        }
    }

    /// Initialise a token labelled `label` with `SO_PIN` and `PIN`, with the
    /// stack's own tool (softhsm2-util) or OpenSC's pkcs11-tool.
    pub fn init_token(&self, label: &str) {
        let out = match self.stack {
            Stack::SoftHsm => Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", self.conf())
                .args(["--init-token", "--free", "--label", label])
                .args(["--so-pin", SO_PIN, "--pin", PIN])
                .output()
                .expect("softhsm2-util runs"),
            Stack::Kryoptic => {
                let out = self
                    .pkcs11_tool_on(None)
                    .args(["--init-token", "--label", label, "--so-pin", SO_PIN])
                    .output()
                    .expect("pkcs11-tool runs");
                assert!(out.status.success(), "init-token: {}", text(&out));
                self.pkcs11_tool_on(Some(label))
                    .args(["--login", "--login-type", "so", "--so-pin", SO_PIN])
                    .args(["--init-pin", "--pin", PIN])
                    .output()
                    .expect("pkcs11-tool runs")
            }
        };
        assert!(out.status.success(), "init-token: {}", text(&out));
    }

    /// Point this process's module at this token store (once per process).
    pub fn activate(&self) {
        let conf = self.conf();
        let var = self.stack.conf_var();
        let active = ACTIVE_CONF.get_or_init(|| {
            // SAFETY: set before any thread of this test loads the module, and
            // only once per process.
            unsafe { std::env::set_var(var, &conf) };
            conf.clone()
        });
        assert_eq!(
            active, &conf,
            "a token module was already initialised in this process with another token store: run the tests with `cargo nextest run` (one process per test)"
        );
    }

    /// Provision a SoftHSM store with `scripts/provision-token.sh`
    /// (softhsm2-util, pkcs11-tool and openssl only). On any stack,
    /// [`bank_cert_on_token`] puts a bank certificate on the token.
    pub fn provision(&self, label: &str, days_left: &[i64]) -> String {
        assert_eq!(
            self.stack,
            Stack::SoftHsm,
            "provision-token.sh makes SoftHSM tokens"
        );
        for t in ["pkcs11-tool", "openssl", "faketime"] {
            require(t);
        }
        let out = Command::new(repo_root().join("scripts/provision-token.sh"))
            .arg(self.path())
            .arg(label)
            .arg(PIN)
            .args(days_left.iter().map(|d| d.to_string()))
            .output()
            .expect("provision-token.sh runs");
        assert!(out.status.success(), "provision: {}", text(&out));
        text(&out)
    }

    /// A config file for this token, with optional extra TOML.
    pub fn config(&self, module: &str, extra: &str) -> PathBuf {
        let path = self.path().join("config.toml");
        std::fs::write(
            &path,
            format!("[token]\nmodule = \"{module}\"\nlabel = \"{LABEL}\"\n{extra}"),
        )
        .expect("config");
        path
    }

    /// `pkcs11-tool` on this token's module, on the token labelled `label`.
    fn pkcs11_tool_on(&self, label: Option<&str>) -> Command {
        require("pkcs11-tool");
        let mut cmd = Command::new("pkcs11-tool");
        cmd.env(self.stack.conf_var(), self.conf())
            .arg("--module")
            .arg(self.module());
        if let Some(label) = label {
            cmd.args(["--token-label", label]);
        }
        cmd
    }

    /// Run `pkcs11-tool` on this token.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Output {
        self.pkcs11_tool_on(Some(LABEL))
            .args(args)
            .output()
            .expect("pkcs11-tool runs")
    }

    /// A `certagent` command for this token: the module's configuration and
    /// the test's own XDG folders, no configuration or secrets inherited.
    pub fn command(&self) -> Command {
        let mut cmd = certagent_in(self.path());
        cmd.env(self.stack.conf_var(), self.conf());
        cmd
    }

    /// Run the certagent binary against this token.
    pub fn certagent(&self, config: &Path, args: &[&str], pin: Option<&str>) -> Output {
        let mut cmd = self.command();
        cmd.arg("--config").arg(config).args(args);
        if let Some(pin) = pin {
            cmd.env("CERTAGENT_PIN", pin);
        }
        cmd.output().expect("certagent runs")
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON a successful command printed.
pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// (id, days_left, state) of each certificate in `status --json`, sorted.
pub fn states(status: &serde_json::Value) -> Vec<(String, i64, String)> {
    let mut seen: Vec<(String, i64, String)> = status["certificates"]
        .as_array()
        .unwrap_or_else(|| panic!("no certificates in {status}"))
        .iter()
        .map(|c| {
            (
                c["id"].as_str().expect("id").to_string(),
                c["days_left"].as_i64().expect("days_left"),
                c["state"].as_str().expect("state").to_string(),
            )
        })
        .collect();
    seen.sort();
    seen
}

/// Run a command that must succeed; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_bytes(cmd)).into_owned()
}

/// Run a command that must succeed; returns stdout as bytes.
pub fn run_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    out.stdout
}

/// openssl, which must be installed.
pub fn openssl() -> Command {
    require("openssl");
    Command::new("openssl")
}

/// Write DER SubjectPublicKeyInfo as a PEM file openssl reads.
pub fn spki_pem(dir: &Path, name: &str, spki_der: &[u8]) -> PathBuf {
    let der = dir.join(format!("{name}.der"));
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&der, spki_der).expect("write spki");
    run(openssl()
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(&pem));
    pem
}

/// A test CA made by openssl, issuing for public keys given as PEM.
pub struct OpensslCa {
    pub dir: PathBuf,
}

impl OpensslCa {
    pub fn new(dir: &Path) -> OpensslCa {
        let dir = dir.join("openssl-ca");
        std::fs::create_dir_all(&dir).expect("ca dir");
        run(openssl()
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(dir.join("ca.pem"))
            .args(["-subj", "/O=Test Bank/CN=Test Bank CA", "-days", "3650"]));
        OpensslCa { dir }
    }

    /// A certificate for `pubkey_pem` with `subject` and extension lines; DER.
    pub fn issue(&self, name: &str, pubkey_pem: &Path, subject: &str, ext: &str) -> Vec<u8> {
        let extfile = self.dir.join(format!("{name}.ext"));
        std::fs::write(&extfile, ext).expect("ext");
        let out = self.dir.join(format!("{name}.der"));
        run(openssl()
            .args(["x509", "-new", "-subj", subject, "-force_pubkey"])
            .arg(pubkey_pem)
            .arg("-CA")
            .arg(self.dir.join("ca.pem"))
            .arg("-CAkey")
            .arg(self.dir.join("ca.key"))
            .args(["-days", "365", "-outform", "DER", "-extfile"])
            .arg(&extfile)
            .arg("-out")
            .arg(&out));
        std::fs::read(out).expect("read cert")
    }
}

/// A key pair made by pkcs11-tool (CKA_ID `id`, e.g. `rsa:2048` or
/// `EC:prime256v1`) and a certificate for it from the reference bank in
/// `bank_dir`, expiring in `days_left` days, written back with pkcs11-tool:
/// a token as the bank's old procedure would leave it. Returns the DER.
pub fn bank_cert_on_token(
    hsm: &TestToken,
    bank_dir: &Path,
    id: &str,
    key_type: &str,
    subject: &str,
    days_left: i64,
) -> Vec<u8> {
    let ok = |o: Output| assert!(o.status.success(), "{}", text(&o));
    let login = ["--login", "--pin", PIN];
    ok(hsm.pkcs11_tool(
        &[
            &login[..],
            &[
                "--keypairgen",
                "--key-type",
                key_type,
                "--id",
                id,
                "--label",
                "bank key",
            ],
        ]
        .concat(),
    ));
    let pubfile = hsm.path().join(format!("pub-{id}.der"));
    let pubname = pubfile.display().to_string();
    let read = hsm.pkcs11_tool(&[
        "--read-object",
        "--type",
        "pubkey",
        "--id",
        id,
        "-o",
        &pubname,
    ]);
    let spki = if read.status.success() {
        std::fs::read(&pubfile).expect("public key")
    } else if hsm.stack == Stack::Kryoptic && key_type.starts_with("EC:") {
        // OpenSC 0.23's pkcs11-tool cannot turn kryoptic's P-256 public key
        // into an EVP_PKEY ("cannot create EVP_PKEY", same attributes as
        // SoftHSM's): build the SubjectPublicKeyInfo from the CKA_EC_POINT
        // it lists.
        p256_spki_from_listing(hsm, id)
    } else {
        panic!("{}", text(&read))
    };
    let der = certagent_bank::issue(bank_dir, subject, &spki, days_left).expect("bank issues");
    let certfile = hsm.path().join(format!("cert-{id}.der"));
    std::fs::write(&certfile, &der).expect("write cert");
    let certname = certfile.display().to_string();
    ok(hsm.pkcs11_tool(
        &[
            &login[..],
            &[
                "--write-object",
                &certname,
                "--type",
                "cert",
                "--id",
                id,
                "--label",
                "bank certificate",
            ],
        ]
        .concat(),
    ));
    der
}

/// The SubjectPublicKeyInfo (DER) of the P-256 public key object `id`,
/// from the CKA_EC_PARAMS and CKA_EC_POINT that `pkcs11-tool -O` prints.
fn p256_spki_from_listing(hsm: &TestToken, id: &str) -> Vec<u8> {
    let out = hsm.pkcs11_tool(&["-O", "--type", "pubkey", "--id", id]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> Vec<u8> {
        let value = listing
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in\n{listing}"));
        hex::decode(value.trim()).unwrap_or_else(|e| panic!("{name} {e}: {listing}"))
    };
    // The named curve prime256v1 (1.2.840.10045.3.1.7).
    let p256 = hex::decode("06082a8648ce3d030107").expect("hex");
    assert_eq!(field("EC_PARAMS:"), p256, "{listing}");
    // CKA_EC_POINT is a DER OCTET STRING around 04||X||Y.
    let point = field("EC_POINT:");
    let point = point.strip_prefix(&[0x04, 0x41][..]).unwrap_or(&point);
    assert!(point.len() == 65 && point.first() == Some(&4), "{listing}");
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }.
    let mut spki =
        hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").expect("hex");
    spki.extend_from_slice(point);
    spki
}

/// An Assuan pinentry for tests: the PIN comes from `pin` and consent from
/// `confirm` ("yes", the default, or anything else to decline) in
/// $PINENTRY_TEST_DIR; with a file `slow` there, CONFIRM takes three
/// seconds. Every command's verb is appended to `log`, and every line as
/// received (Assuan-escaped) to `lines`. The names of any CERTAGENT_PIN
/// or CERTAGENT_OTP it inherited go to `inherited`; every start of the
/// program adds a line to `starts`.
const PINENTRY: &str = r#"#!/bin/sh
# Shell builtins only (no process but the shell itself): the benchmark
# times logons through this script, and its cost should be the agent's.
d="$PINENTRY_TEST_DIR"
echo start >> "$d/starts"
[ -n "${CERTAGENT_PIN+set}" ] && echo CERTAGENT_PIN >> "$d/inherited"
[ -n "${CERTAGENT_OTP+set}" ] && echo CERTAGENT_OTP >> "$d/inherited"
echo "OK Pleased to meet you"
while IFS= read -r line; do
  verb=${line%% *}
  echo "$verb" >> "$d/log"
  printf '%s\n' "$line" >> "$d/lines"
  case "$verb" in
    SETDESC) desc=$line; echo OK ;;
    GETPIN)
      case "$desc" in
        *ADMIN*) if [ -e "$d/admin-pin" ]; then IFS= read -r pin < "$d/admin-pin"; printf 'D %s\nOK\n' "$pin"; else echo "ERR 83886179 Operation cancelled <Pinentry>"; fi ;;
        *) IFS= read -r pin < "$d/pin"; printf 'D %s\nOK\n' "$pin" ;;
      esac ;;
    CONFIRM)
      [ -e "$d/slow" ] && sleep 3
      answer=yes
      [ -e "$d/confirm" ] && IFS= read -r answer < "$d/confirm"
      if [ "$answer" = yes ]; then echo OK; else echo "ERR 83886179 Operation cancelled <Pinentry>"; fi ;;
    BYE) echo OK; exit 0 ;;
    *) echo OK ;;
  esac
done
"#;

/// Write the scripted pinentry into `dir`; returns (program, its data
/// directory for $PINENTRY_TEST_DIR). The PIN is set to [`PIN`].
pub fn scripted_pinentry(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let data = dir.join("prompt");
    std::fs::create_dir_all(&data).expect("prompt dir");
    std::fs::write(data.join("pin"), PIN).expect("pin");
    let program = dir.join("pinentry-test");
    std::fs::write(&program, PINENTRY).expect("pinentry");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (program, data)
}

/// The secrets' names the scripted pinentry found in its environment.
pub fn pinentry_inherited(data: &Path) -> String {
    std::fs::read_to_string(data.join("inherited")).unwrap_or_default()
}

/// How many times the scripted pinentry was started.
pub fn pinentry_starts(data: &Path) -> usize {
    std::fs::read_to_string(data.join("starts"))
        .unwrap_or_default()
        .lines()
        .count()
}

/// GETPIN and CONFIRM, in order, as the scripted pinentry saw them.
pub fn prompts_seen(data: &Path) -> Vec<String> {
    std::fs::read_to_string(data.join("log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| matches!(*l, "GETPIN" | "CONFIRM"))
        .map(String::from)
        .collect()
}

/// The reference bank serving on loopback (port 0) from its own runtime.
pub fn serve_bank(
    bank_dir: &Path,
    opts: certagent_bank::ServeOptions,
) -> (tokio::runtime::Runtime, certagent_bank::RunningBank) {
    serve_bank_at(
        bank_dir,
        certagent_bank::ServeOptions {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..opts
        },
    )
}

/// The reference bank serving on `opts.listen` as given, from its own runtime.
pub fn serve_bank_at(
    bank_dir: &Path,
    opts: certagent_bank::ServeOptions,
) -> (tokio::runtime::Runtime, certagent_bank::RunningBank) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let bank = rt
        .block_on(certagent_bank::serve(bank_dir, opts))
        .expect("bank serves");
    (rt, bank)
}

/// The project's forwarding PKCS#11 module (tests/fault-module), built with
/// the workspace.
pub fn fault_module() -> PathBuf {
    workspace_library(
        "libcertagent_fault_pkcs11.so",
        "build the workspace first (cargo build --workspace)",
    )
}

/// A file the workspace builds (a cdylib, a test program) beside the test
/// binary's `deps/` folder; missing, the test fails saying `what_to_do`.
pub fn workspace_library(file: &str, what_to_do: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let lib = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join(file);
    assert!(lib.exists(), "{} is missing: {what_to_do}", lib.display());
    lib
}

/// Start `certagent ... run --no-tray` from `cmd`, wait until it says it is
/// ready, and keep reading its output so it never writes into a closed pipe.
pub fn start_agent_process(cmd: Command) -> std::process::Child {
    start_agent_process_to(cmd, Stdio::null())
}

/// As [`start_agent_process`], its standard error going to `stderr` (a
/// file the test reads afterwards, for a panic or an abort).
pub fn start_agent_process_to(mut cmd: Command, stderr: Stdio) -> std::process::Child {
    use std::io::BufRead;
    let mut child = cmd
        .args(["run", "--no-tray"])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("certagent run");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout);
    let mut line = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !line.contains("certagent: ready") {
        line.clear();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not start"
        );
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        while lines.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    child
}

/// openssl verifies a logon token (`certagent-auth:1`): its signature over
/// SHA-256(origin) || SHA-256(challenge), with the key of the certificate
/// it carries, in the scheme it names. Files go to `dir`.
pub fn logon_token_verifies(
    dir: &Path,
    token: &serde_json::Value,
    origin: &str,
    challenge: &[u8],
) -> bool {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use sha2::{Digest, Sha256};
    let Ok(cert) = STANDARD.decode(token["certificate"].as_str().unwrap_or_default()) else {
        return false;
    };
    std::fs::write(dir.join("token-cert.der"), cert).expect("write");
    let pubkey = openssl()
        .args(["x509", "-inform", "DER", "-in"])
        .arg(dir.join("token-cert.der"))
        .args(["-pubkey", "-noout", "-out"])
        .arg(dir.join("token-pub.pem"))
        .status()
        .expect("openssl");
    if !pubkey.success() {
        return false;
    }
    let mut msg = Sha256::digest(origin.as_bytes()).to_vec();
    msg.extend_from_slice(&Sha256::digest(challenge));
    std::fs::write(dir.join("token-msg"), msg).expect("msg");
    let Ok(sig) = STANDARD.decode(token["signature"].as_str().unwrap_or_default()) else {
        return false;
    };
    std::fs::write(dir.join("token-sig"), sig).expect("sig");
    let mut cmd = openssl();
    cmd.args(["dgst", "-sha256"]);
    if token["algorithm"] == "PS256" {
        cmd.args([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
        ]);
    }
    cmd.arg("-verify")
        .arg(dir.join("token-pub.pem"))
        .arg("-signature")
        .arg(dir.join("token-sig"))
        .arg(dir.join("token-msg"))
        .output()
        .expect("openssl")
        .status
        .success()
}
