//! The bank's web origins (`[bank] origins`), checked once so that every
//! policy text can list them without escaping, and the host names
//! Firefox's preference takes from them (never a loopback one).

use super::PolicyError;

/// The bank's origins, checked: each `https://host[:port]` (or `http://`
/// for a loopback host), lower case, with nothing a policy file would have
/// to escape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins(Vec<String>);

impl Origins {
    /// `source` names where the list came from, for the error when it is empty.
    pub fn new(list: &[String], source: &str) -> Result<Origins, PolicyError> {
        if list.is_empty() {
            return Err(PolicyError::NoOrigins(source.to_string()));
        }
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for o in list {
            check_origin(o).map_err(|reason| PolicyError::BadOrigin {
                origin: o.clone(),
                reason,
            })?;
            if !out.contains(o) {
                out.push(o.clone());
            }
        }
        Ok(Origins(out))
    }

    /// From the configuration's `[bank] origins`.
    pub fn from_config(config: &crate::config::Config) -> Result<Origins, PolicyError> {
        let source = match &config.source {
            Some(p) => format!("the configuration file {}", p.display()),
            None => {
                "the built-in default configuration (no configuration file was found; under sudo, name it with --config FILE)".to_string()
            }
        };
        let list = config
            .bank
            .as_ref()
            .map(|b| b.origins.as_slice())
            .unwrap_or_default();
        Origins::new(list, &source)
    }

    pub fn list(&self) -> &[String] {
        &self.0
    }

    /// The host names Firefox's `network.lna.skip-domains` takes: the
    /// origins' hosts, without loopback ones. The preference matches host
    /// names only, and also the address a request goes to: `127.0.0.1` or
    /// `localhost` there would lift the prompt for every page that calls the
    /// agent. A page on a loopback origin needs no exception anyway.
    pub fn firefox_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for o in &self.0 {
            let host = origin_host(o);
            if !is_loopback_host(&host) && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }
}

/// The origin's host, without scheme, port or IPv6 brackets.
fn origin_host(origin: &str) -> String {
    let rest = origin.split_once("://").map(|(_, r)| r).unwrap_or(origin);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default().to_string();
    }
    rest.split(':').next().unwrap_or_default().to_string()
}

fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The configuration's rule (`scheme://host[:port]`, https or loopback
/// http, lower case), and only the characters a host and port are made of,
/// so that no output format needs escaping.
fn check_origin(origin: &str) -> Result<(), String> {
    crate::config::check_origin(origin).map_err(str::to_string)?;
    let rest = origin.split_once("://").map(|(_, r)| r).unwrap_or_default();
    if let Some(bad) = rest
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')))
    {
        return Err(format!(
            "{bad:?} is not allowed in a host name (use the punycode xn-- form for international names)"
        ));
    }
    let host = origin_host(origin);
    if host.is_empty() || host.starts_with('.') || host.ends_with('.') || host.contains("..") {
        return Err("has no valid host name".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser_policy::firefox_prefs;
    use crate::browser_policy::test_origins as origins;

    #[test]
    fn origins_are_checked_and_deduplicated() {
        for bad in [
            "http://ib.bank.example",
            "https://ib.bank.example/",
            "https://IB.bank.example",
            "https://ib\"bank.example",
            "https://ib.bank.example\\x",
            "https://ib..bank.example",
            "https://<b>",
            "ftp://x",
        ] {
            assert!(
                Origins::new(&[bad.to_string()], "t").is_err(),
                "{bad} accepted"
            );
        }
        let o = origins(&[
            "https://a.example",
            "https://a.example",
            "http://127.0.0.1:8080",
        ]);
        assert_eq!(o.list(), ["https://a.example", "http://127.0.0.1:8080"]);
        let e = Origins::new(&[], "the configuration file /x.toml")
            .expect_err("empty")
            .to_string();
        assert!(e.contains("/x.toml has no [bank] origins"), "{e}");
    }

    #[test]
    fn firefox_takes_hosts_and_never_loopback() {
        let o = origins(&[
            "https://ib.bank.example:8443",
            "https://ib.bank.example",
            "https://127.0.0.1:9443",
            "http://localhost:8080",
            "https://[::1]:9443",
        ]);
        assert_eq!(o.firefox_hosts(), ["ib.bank.example"]);
        let prefs = firefox_prefs(&o).expect("prefs");
        assert!(
            prefs.contains("pref(\"network.lna.skip-domains\", \"ib.bank.example\");"),
            "{prefs}"
        );
        assert_eq!(firefox_prefs(&origins(&["https://127.0.0.1:9443"])), None);
    }
}
