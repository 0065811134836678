//! A running agent for tests: `certagent run --no-tray` as its own process,
//! a SoftHSM (or kryoptic) token behind OpenSC's PKCS#11 spy (to count logins), a scripted
//! Assuan pinentry that logs every command it receives (to prove a refused
//! request never reached the prompt), and the reference bank.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use certagent_bank::{self as bank, RunningBank, ServeOptions};

use super::{Stack, TestToken};

pub const ORIGIN: &str = "https://ib.bank.example";
pub const ANA: &str = "CN=Ana Novak,O=Demo Company d.o.o.,C=SI";

pub struct Agent {
    pub hsm: TestToken,
    child: Child,
    pub port: u16,
    pub prompt_dir: PathBuf,
    spy_log: PathBuf,
    _rt: tokio::runtime::Runtime,
    pub bank: RunningBank,
    pub bank_dir: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// How [`Agent::launch`] starts the token, the bank and `certagent run`.
struct Launch<'a> {
    stack: Stack,
    /// Environment for `certagent run`.
    env: &'a [(&'a str, &'a str)],
    /// Arguments after `run --no-tray`.
    args: &'a [&'a str],
    /// The bank listens on `bank_opts.listen` as given.
    keep_listen: bool,
    /// The agent's stderr goes to `agent.stderr` in the token's folder
    /// (else it is the test's).
    stderr_to_file: bool,
}

impl Agent {
    /// An agent whose only allowed origin is [`ORIGIN`].
    pub fn start(days_left: i64) -> Agent {
        Agent::start_on(Stack::SoftHsm, days_left)
    }

    /// As [`Agent::start`], on a token of `stack`.
    pub fn start_on(stack: Stack, days_left: i64) -> Agent {
        Agent::launch(
            days_left,
            |_| vec![ORIGIN.to_string()],
            ServeOptions::default(),
            |_, _| {},
            Launch {
                stack,
                env: &[],
                args: &[],
                keep_listen: false,
                stderr_to_file: false,
            },
        )
    }

    /// `origins` gets the running bank and picks the allowed origins;
    /// `bank_opts` is how the bank serves (its listen address is replaced).
    pub fn start_with(
        days_left: i64,
        origins: impl FnOnce(&RunningBank) -> Vec<String>,
        bank_opts: ServeOptions,
    ) -> Agent {
        Agent::launch(
            days_left,
            origins,
            bank_opts,
            |_, _| {},
            Launch {
                stack: Stack::SoftHsm,
                env: &[],
                args: &[],
                keep_listen: false,
                stderr_to_file: false,
            },
        )
    }

    /// As [`Agent::start_with`], but the bank listens on `bank_opts.listen`
    /// as given (a port the test picked, so that it can name the bank's
    /// origin before the bank serves), and `prepare(token, bank_dir)` runs
    /// before the bank serves (to give it another TLS certificate, say).
    pub fn start_at(
        days_left: i64,
        origins: impl FnOnce(&RunningBank) -> Vec<String>,
        bank_opts: ServeOptions,
        prepare: impl FnOnce(&TestToken, &Path),
    ) -> Agent {
        Agent::launch(
            days_left,
            origins,
            bank_opts,
            prepare,
            Launch {
                stack: Stack::SoftHsm,
                env: &[],
                args: &[],
                keep_listen: true,
                stderr_to_file: false,
            },
        )
    }

    /// As [`Agent::start`], with `env` set for `certagent run` and `args`
    /// added after it.
    pub fn start_env(days_left: i64, env: &[(&str, &str)], args: &[&str]) -> Agent {
        Agent::launch(
            days_left,
            |_| vec![ORIGIN.to_string()],
            ServeOptions::default(),
            |_, _| {},
            Launch {
                stack: Stack::SoftHsm,
                env,
                args,
                keep_listen: false,
                stderr_to_file: false,
            },
        )
    }

    /// As [`Agent::start`], with `prepare(token, bank_dir)` run after the
    /// bank certificate is on the token and before the agent starts (to
    /// put more on the token the agent starts with).
    pub fn start_prepared(days_left: i64, prepare: impl FnOnce(&TestToken, &Path)) -> Agent {
        Agent::launch(
            days_left,
            |_| vec![ORIGIN.to_string()],
            ServeOptions::default(),
            prepare,
            Launch {
                stack: Stack::SoftHsm,
                env: &[],
                args: &[],
                keep_listen: false,
                stderr_to_file: false,
            },
        )
    }

    /// As [`Agent::start_prepared`], with `env` for `certagent run` (a time
    /// zone, a language) and its stderr kept in a file.
    pub fn start_prepared_in(
        days_left: i64,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&TestToken, &Path),
    ) -> Agent {
        Agent::launch(
            days_left,
            |_| vec![ORIGIN.to_string()],
            ServeOptions::default(),
            prepare,
            Launch {
                stack: Stack::SoftHsm,
                env,
                args: &[],
                keep_listen: false,
                stderr_to_file: true,
            },
        )
    }

    /// As [`Agent::start`], with the agent's stderr kept in a file
    /// ([`Agent::stderr`]).
    pub fn start_logged(days_left: i64) -> Agent {
        Agent::launch(
            days_left,
            |_| vec![ORIGIN.to_string()],
            ServeOptions::default(),
            |_, _| {},
            Launch {
                stack: Stack::SoftHsm,
                env: &[],
                args: &[],
                keep_listen: false,
                stderr_to_file: true,
            },
        )
    }

    /// What the agent wrote to stderr, when started by [`Agent::start_logged`].
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.hsm.path().join("agent.stderr")).unwrap_or_default()
    }

    fn launch(
        days_left: i64,
        origins: impl FnOnce(&RunningBank) -> Vec<String>,
        bank_opts: ServeOptions,
        prepare: impl FnOnce(&TestToken, &Path),
        how: Launch,
    ) -> Agent {
        let Launch {
            stack,
            env,
            args,
            keep_listen,
            stderr_to_file,
        } = how;
        let hsm = TestToken::on(stack);
        let port = free_port();
        let bank_dir = hsm.path().join("bank");
        bank::init(&bank_dir).expect("bank");
        bank::add_user(&bank_dir, "ana", ANA).expect("user");
        super::bank_cert_on_token(&hsm, &bank_dir, "01", "rsa:2048", ANA, days_left);
        prepare(&hsm, &bank_dir);
        let bank_opts = ServeOptions {
            agent_url: format!("http://127.0.0.1:{port}"),
            ..bank_opts
        };
        let (rt, bank) = if keep_listen {
            super::serve_bank_at(&bank_dir, bank_opts)
        } else {
            super::serve_bank(&bank_dir, bank_opts)
        };
        let (pinentry, prompt_dir) = super::scripted_pinentry(hsm.path());
        let origins: Vec<String> = origins(&bank).iter().map(|o| format!("\"{o}\"")).collect();
        let config = hsm.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[token]\nmodule = \"{}\"\nlabel = \"{}\"\n[bank]\nest_url = \"https://{}/.well-known/est\"\nserver_roots = \"{}\"\norigins = [{}]\n[agent]\nlisten = \"127.0.0.1:{port}\"\npinentry = \"{}\"\n",
                super::spy_module().display(),
                super::LABEL,
                bank.addr(),
                bank_dir.join("tls-roots.pem").display(),
                origins.join(", "),
                pinentry.display()
            ),
        )
        .expect("config");
        let spy_log = hsm.path().join("spy.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_certagent"))
            .env(stack.conf_var(), hsm.conf())
            .env("PKCS11SPY", hsm.module())
            .env("PKCS11SPY_OUTPUT", &spy_log)
            .env("PINENTRY_TEST_DIR", &prompt_dir)
            .env("XDG_STATE_HOME", hsm.path().join("state"))
            .env_remove("CERTAGENT_PIN")
            .env_remove("CERTAGENT_OTP")
            // English whatever the test's locale, unless `env` says.
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .env("LANG", "C.UTF-8")
            .envs(env.iter().copied())
            .args([
                "--config",
                &config.display().to_string(),
                "run",
                "--no-tray",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if stderr_to_file {
                Stdio::from(
                    std::fs::File::create(hsm.path().join("agent.stderr")).expect("stderr file"),
                )
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("certagent run");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        lines.read_line(&mut line).expect("first line");
        assert!(line.contains("local API on"), "agent did not start: {line}");
        // Keep reading, so the agent never writes into a closed pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while lines.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Agent {
            hsm,
            child,
            port,
            prompt_dir,
            spy_log,
            _rt: rt,
            bank,
            bank_dir,
        }
    }

    /// End `certagent run` as a logout does (SIGTERM), and wait for it.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `certagent` on the command line, with the agent's configuration,
    /// token store and state directory (as the same user would run it).
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_certagent"));
        cmd.env(self.hsm.stack.conf_var(), self.hsm.conf())
            .env("PKCS11SPY", self.hsm.module())
            .env("PKCS11SPY_OUTPUT", self.hsm.path().join("spy-cli.log"))
            .env("XDG_STATE_HOME", self.hsm.path().join("state"))
            .env_remove("CERTAGENT_PIN")
            .arg("--config")
            .arg(self.hsm.path().join("agent.toml"))
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("certagent runs")
    }

    /// The lines the scripted pinentry received, Assuan-escaped as sent.
    pub fn prompt_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.prompt_dir.join("lines"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Raw HTTP/1.1, so every header is exactly what the test says.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        send_to(self.port, method, path, headers, body)
    }

    /// A request as the allowed page would send it.
    pub fn page(&self, method: &str, path: &str, body: &str) -> Reply {
        page_to(self.port, method, path, body)
    }

    pub fn prompts(&self) -> Vec<String> {
        super::prompts_seen(&self.prompt_dir)
    }

    /// How many pinentry processes the agent started.
    pub fn pinentry_starts(&self) -> usize {
        super::pinentry_starts(&self.prompt_dir)
    }

    pub fn logins(&self) -> usize {
        std::fs::read_to_string(&self.spy_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("C_Login"))
            .count()
    }
}

/// Raw HTTP/1.1 to the agent listening on `port`, every header exactly as
/// given.
pub fn send_to(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(req.as_bytes()).expect("write");
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    Reply::parse(&raw)
}

/// A request to the agent on `port` as the allowed page ([`ORIGIN`]) sends it.
pub fn page_to(port: u16, method: &str, path: &str, body: &str) -> Reply {
    let host = format!("127.0.0.1:{port}");
    let mut h = vec![("Host", host.as_str()), ("Origin", ORIGIN)];
    if method == "POST" {
        h.push(("Content-Type", "application/json"));
    }
    send_to(port, method, path, &h, body.as_bytes())
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn parse(raw: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}
