//! Configuration: where it is found, what it may contain, and its defaults.
//!
//! Search order (first match wins):
//! 1. `--config FILE` on the command line;
//! 2. the `CERTAGENT_CONFIG` environment variable;
//! 3. `certagent/config.toml` in the XDG config directory
//!    (`$XDG_CONFIG_HOME`, else `~/.config`; on Windows `%APPDATA%`).
//!
//! A file named by 1 or 2 must exist. When 3 does not exist the defaults are
//! used, so `certagent tokens` works before anything is configured.
//! Unknown keys and bad values are errors naming the key and the file.
//! Relative paths inside the file are relative to the file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::Policy;
use crate::token::{KeyKind, TokenSelector};

/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "CERTAGENT_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, or `None` for the built-in defaults.
    pub source: Option<PathBuf>,
    pub token: TokenConfig,
    pub bank: Option<BankConfig>,
    pub policy: Policy,
    pub key: KeyKind,
    pub agent: AgentConfig,
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// A profile name from `drivers/` or a path to a PKCS#11 library.
    pub module: String,
    pub selector: TokenSelector,
}

#[derive(Debug, Clone)]
pub struct BankConfig {
    pub est_url: String,
    pub server_roots: PathBuf,
    pub origins: Vec<String>,
    pub ca_certs: Option<PathBuf>,
    /// The issuing CA's name, used to tell the bank's certificates apart
    /// only while no CA certificate is known (no `ca_certs`, no `/cacerts` yet).
    pub issuer: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    pub pinentry: Option<PathBuf>,
}

/// The module used when none is configured: on Linux p11-kit's proxy,
/// which loads every module registered with p11-kit (how Linux desktops
/// share tokens); on Windows, where there is no p11-kit, OpenSC, the
/// smart-card middleware most tokens' makers point to there.
pub const DEFAULT_MODULE: &str = if cfg!(windows) {
    "opensc"
} else {
    "p11-kit-proxy"
};
pub const DEFAULT_LISTEN: &str = "127.0.0.1:31270";

// The file as written. `deny_unknown_fields` makes a typo an error that
// names the key; the raw values are checked and converted in `validate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    token: RawToken,
    bank: Option<RawBank>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    agent: RawAgent,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    module: Option<String>,
    label: Option<String>,
    serial: Option<String>,
    uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBank {
    est_url: String,
    server_roots: PathBuf,
    #[serde(default)]
    origins: Vec<String>,
    ca_certs: Option<PathBuf>,
    issuer: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    notice_days: Option<Vec<i64>>,
    renew_window_days: Option<i64>,
    reissue_grace_days: Option<i64>,
    key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    listen: Option<String>,
    pinentry: Option<PathBuf>,
}

impl Config {
    /// Find and load the configuration following the documented search order.
    pub fn discover(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(path) = explicit {
            return Config::load(path);
        }
        if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
            return Config::load(Path::new(&path));
        }
        match default_path() {
            Some(path) if path.exists() => Config::load(&path),
            _ => Ok(Config::defaults()),
        }
    }

    /// Load one file; it must exist.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parse `text` as if read from `path` (used to resolve relative paths
    /// and to name the file in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| invalid(toml_message(&e, text)))?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate(raw, base, Some(path.to_path_buf())).map_err(invalid)
    }

    /// The built-in defaults (no file).
    pub fn defaults() -> Config {
        // The defaults are valid by construction; a failure here is a bug.
        validate(RawConfig::default(), Path::new("."), None)
            .unwrap_or_else(|e| unreachable!("built-in defaults are invalid: {e}"))
    }

    /// The directory the configuration lives in (for user driver profiles).
    pub fn dir(&self) -> Option<&Path> {
        self.source.as_deref().and_then(Path::parent)
    }
}

/// The XDG location of `config.toml`; on Windows
/// `%APPDATA%\certagent\config.toml`.
pub fn default_path() -> Option<PathBuf> {
    if cfg!(windows) {
        return directories::BaseDirs::new()
            .map(|d| d.config_dir().join("certagent").join("config.toml"));
    }
    directories::ProjectDirs::from("", "", "certagent").map(|d| d.config_dir().join("config.toml"))
}

/// Where certagent keeps state (the renewal journal, notices sent, the
/// bank's CA from the last contact): `$XDG_STATE_HOME/certagent`, else the
/// platform's per-user local data directory; on Windows
/// `%LOCALAPPDATA%\certagent` (not roaming, readable by the user alone by
/// Windows' own ACL on the profile). Never a shared temporary directory:
/// without a home there is no state directory, and the error says so.
pub fn state_dir() -> std::io::Result<PathBuf> {
    let dir = if cfg!(windows) {
        directories::BaseDirs::new().map(|d| d.data_local_dir().join("certagent"))
    } else {
        directories::ProjectDirs::from("", "", "certagent")
            .map(|d| d.state_dir().unwrap_or(d.data_local_dir()).to_path_buf())
    };
    dir.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no per-user state directory (neither XDG_STATE_HOME nor HOME is set)",
        )
    })
}

/// Create the state directory, readable by its owner only.
pub fn ensure_state_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    crate::platform::private_dir(&mut b).create(dir)
}

/// toml's message on one line, with the line number and the offending line
/// (which names the key) instead of toml's multi-line excerpt.
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else { return msg };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    format!("line {line_no} `{line}`: {msg}")
}

fn validate(raw: RawConfig, base: &Path, source: Option<PathBuf>) -> Result<Config, String> {
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

    let t = raw.token;
    let module = match t.module {
        Some(m) if m.trim().is_empty() => return Err("token.module: must not be empty".into()),
        Some(m) => m,
        None => DEFAULT_MODULE.to_string(),
    };
    // A module given as a relative path is relative to the file, like every path.
    let module = if module.contains(std::path::MAIN_SEPARATOR) || module.contains('/') {
        resolve(PathBuf::from(module))
            .to_string_lossy()
            .into_owned()
    } else {
        module
    };
    let selector = match (t.uri, t.label, t.serial) {
        (Some(uri), None, None) => {
            TokenSelector::from_uri(&uri).map_err(|e| format!("token.uri: {e}"))?
        }
        (Some(_), _, _) => {
            return Err("token.uri: give either uri or label/serial, not both".into());
        }
        (None, label, serial) => {
            for (key, v) in [("label", &label), ("serial", &serial)] {
                if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                    return Err(format!("token.{key}: must not be empty"));
                }
                if v.as_deref().is_some_and(|s| s.len() > 32) {
                    return Err(format!(
                        "token.{key}: longer than the 32 characters PKCS#11 allows"
                    ));
                }
            }
            TokenSelector {
                label,
                serial,
                ..TokenSelector::default()
            }
        }
    };

    let bank = match raw.bank {
        None => None,
        Some(b) => {
            if !b.est_url.starts_with("https://") || b.est_url.len() <= "https://".len() {
                return Err(format!(
                    "bank.est_url: {:?} is not an https:// URL (there is no insecure mode)",
                    b.est_url
                ));
            }
            for o in &b.origins {
                check_origin(o).map_err(|e| format!("bank.origins: {o:?}: {e}"))?;
            }
            Some(BankConfig {
                est_url: b.est_url.trim_end_matches('/').to_string(),
                server_roots: resolve(b.server_roots),
                origins: b.origins,
                ca_certs: b.ca_certs.map(resolve),
                issuer: b.issuer.filter(|i| !i.trim().is_empty()),
            })
        }
    };

    let p = raw.policy;
    let defaults = Policy::default();
    let day_count = |key: &str, v: i64, min: i64| -> Result<u32, String> {
        if v < min || v > 3650 {
            return Err(format!("policy.{key}: {v} is out of range {min}..=3650"));
        }
        u32::try_from(v).map_err(|_| format!("policy.{key}: {v} is out of range"))
    };
    let notice_days = match p.notice_days {
        None => defaults.notice_days,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for v in list {
                let d = day_count("notice_days", v, 1)?;
                if out.contains(&d) {
                    return Err(format!("policy.notice_days: {d} is listed twice"));
                }
                out.push(d);
            }
            out
        }
    };
    let policy = Policy {
        notice_days,
        renew_window_days: match p.renew_window_days {
            Some(v) => day_count("renew_window_days", v, 1)?,
            None => defaults.renew_window_days,
        },
        reissue_grace_days: match p.reissue_grace_days {
            Some(v) => day_count("reissue_grace_days", v, 0)?,
            None => defaults.reissue_grace_days,
        },
    };
    let key = match p.key {
        None => KeyKind::Rsa2048,
        Some(k) => k.parse().map_err(|e| format!("policy.key: {e}"))?,
    };

    let a = raw.agent;
    let listen_text = a.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|_| format!("agent.listen: {listen_text:?} is not an address:port"))?;
    if !listen.ip().is_loopback() {
        return Err(format!(
            "agent.listen: {listen} is not a loopback address; the local API never listens on the network"
        ));
    }

    Ok(Config {
        source,
        token: TokenConfig { module, selector },
        bank,
        policy,
        key,
        agent: AgentConfig {
            listen,
            pinentry: a.pinentry.map(resolve),
        },
    })
}

/// An origin is `scheme://host[:port]` with nothing after it (RFC 6454).
/// A bank's pages are https; plain http is accepted for loopback hosts
/// only (a tester's page on this machine), since anyone on the network path
/// could inject script into an http page and have the user sign for it.
pub(crate) fn check_origin(origin: &str) -> Result<(), &'static str> {
    let (rest, https) = match origin.strip_prefix("https://") {
        Some(r) => (r, true),
        None => (
            origin
                .strip_prefix("http://")
                .ok_or("must start with https://")?,
            false,
        ),
    };
    if rest.is_empty() {
        return Err("has no host");
    }
    if !https {
        let host = match rest.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => rest.split(':').next().unwrap_or(""),
        };
        if !matches!(host, "localhost" | "127.0.0.1" | "::1") {
            return Err("must be https:// (http:// only for localhost, 127.0.0.1 and [::1])");
        }
    }
    if rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("must be scheme://host[:port] with no path, query or user");
    }
    if rest.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("must be lower case, as browsers send it");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/certagent/config.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_contract_example_parses_with_defaults() {
        let c = parse(
            r#"
[token]
module = "softhsm2"
label = "bank-token"

[bank]
est_url = "https://127.0.0.1:8443/.well-known/est"
server_roots = "bank-tls-roots.pem"
origins = ["https://ib.bank.example"]

[policy]
notice_days = [30, 10]

[agent]
listen = "127.0.0.1:31270"
"#,
        )
        .unwrap();
        assert_eq!(c.token.module, "softhsm2");
        assert_eq!(c.token.selector.label.as_deref(), Some("bank-token"));
        let bank = c.bank.unwrap();
        assert_eq!(
            bank.server_roots,
            Path::new("/etc/certagent/bank-tls-roots.pem")
        );
        assert_eq!(c.policy, Policy::default());
        assert_eq!(c.key, KeyKind::Rsa2048);
        assert_eq!(c.agent.listen.port(), 31270);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.token.module, DEFAULT_MODULE);
        assert!(c.bank.is_none());
        assert_eq!(c.policy, Policy::default());
    }

    #[test]
    fn unknown_keys_name_the_key_and_file() {
        let e = parse("[token]\nlabell = \"x\"\n").unwrap_err();
        assert!(e.contains("labell"), "{e}");
        assert!(e.contains("/etc/certagent/config.toml"), "{e}");
        let e = parse("[tokens]\n").unwrap_err();
        assert!(e.contains("tokens"), "{e}");
    }

    #[test]
    fn bad_values_are_rejected_with_the_key() {
        for (text, key) in [
            ("[policy]\nkey = \"rsa-1024\"", "policy.key"),
            (
                "[policy]\nrenew_window_days = 0",
                "policy.renew_window_days",
            ),
            (
                "[policy]\nreissue_grace_days = -1",
                "policy.reissue_grace_days",
            ),
            ("[policy]\nnotice_days = [30, 30]", "policy.notice_days"),
            ("[policy]\nnotice_days = [0]", "policy.notice_days"),
            ("[agent]\nlisten = \"0.0.0.0:31270\"", "agent.listen"),
            ("[agent]\nlisten = \"nonsense\"", "agent.listen"),
            ("[token]\nlabel = \"\"", "token.label"),
            (
                "[token]\nuri = \"pkcs11:token=a\"\nlabel = \"b\"",
                "token.uri",
            ),
            ("[token]\nuri = \"http://x\"", "token.uri"),
            (
                "[bank]\nest_url = \"http://bank/.well-known/est\"\nserver_roots = \"r.pem\"",
                "bank.est_url",
            ),
            (
                "[bank]\nest_url = \"https://bank\"\nserver_roots = \"r.pem\"\norigins = [\"https://bank/\"]",
                "bank.origins",
            ),
            (
                "[bank]\nest_url = \"https://bank\"\nserver_roots = \"r.pem\"\norigins = [\"http://ib.bank.example\"]",
                "bank.origins",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text:?} gave {e}");
        }
        let e = parse("[policy]\nrenew_window_days = \"thirty\"").unwrap_err();
        assert!(
            e.contains("renew_window_days") || e.contains("integer"),
            "{e}"
        );
    }

    #[test]
    fn uri_selects_the_token() {
        let c = parse("[token]\nuri = \"pkcs11:token=bank%20token;serial=42\"").unwrap();
        assert_eq!(c.token.selector.label.as_deref(), Some("bank token"));
        assert_eq!(c.token.selector.serial.as_deref(), Some("42"));
    }

    #[test]
    fn relative_module_path_is_relative_to_the_file() {
        let c = parse("[token]\nmodule = \"lib/mod.so\"").unwrap();
        assert_eq!(c.token.module, "/etc/certagent/lib/mod.so");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let text = include_str!("../packaging/config.example.toml");
        let c = parse(text).unwrap();
        assert_eq!(c.token.module, "softhsm2");
        assert!(c.bank.is_some());
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = Config::discover(Some(Path::new("/nonexistent/certagent.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/certagent.toml"));
    }

    #[test]
    fn origins_are_https_or_loopback_http() {
        for ok in [
            "https://ib.bank.example",
            "https://ib.bank.example:8443",
            "http://localhost:8080",
            "http://127.0.0.1:9000",
            "http://[::1]:80",
        ] {
            assert_eq!(check_origin(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://ib.bank.example",
            "http://localhost.evil.example",
            "http://127.0.0.2",
            "ftp://bank",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }
}
