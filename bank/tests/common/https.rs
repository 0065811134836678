//! A small HTTPS client for the bank tests: one request per fresh TLS
//! connection to a loopback server, trusting only the given roots,
//! optionally with a client certificate; and software keys made by openssl.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{openssl, run_bytes};

/// A software key made by openssl: PKCS#8 PEM and its DER SubjectPublicKeyInfo.
pub struct Key {
    pub pem: PathBuf,
    pub spki: Vec<u8>,
}

/// A new key written to `pem`; `kind` is "rsa" (2048 bits) or "ec" (P-256).
pub fn openssl_key(pem: PathBuf, kind: &str) -> Key {
    let opts: &[&str] = match kind {
        "rsa" => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        _ => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    run_bytes(openssl().arg("genpkey").args(opts).arg("-out").arg(&pem));
    let spki = run_bytes(
        openssl()
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&pem),
    );
    Key { pem, spki }
}

/// An answer.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Where and how to connect.
pub struct Target<'a> {
    pub addr: SocketAddr,
    /// PEM trust anchors for the server's certificate (valid for 127.0.0.1).
    pub roots: &'a Path,
    /// The Host header.
    pub host: String,
    /// Client certificate and key (PEM files).
    pub identity: Option<(&'a Path, &'a Path)>,
}

/// One request; `headers` are sent as given, except that empty values are
/// left out.
pub async fn send(
    to: &Target<'_>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(to.roots).expect("roots") {
        roots.add(cert.expect("root")).expect("add root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match to.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .expect("client cert")
                    .map(|c| c.expect("client cert"))
                    .collect(),
                PrivateKeyDer::from_pem_file(key).expect("client key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(to.addr)
        .await
        .expect("connect");
    // The server certificate must be valid for the IP address itself.
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", to.host.as_str());
    for (name, value) in headers.iter().filter(|(_, v)| !v.is_empty()) {
        req = req.header(*name, *value);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body: body.to_vec(),
    }
}

/// A reference bank in a temporary directory, serving on a loopback port of
/// its own. Each test file adds the requests it needs in an `impl` of its own.
pub struct TestBank {
    dir: tempfile::TempDir,
    running: Option<certagent_bank::RunningBank>,
    /// The logon challenge cookie (`name=value`) as the tests' one browser
    /// holds it; see bank_logon.rs.
    pub challenge_cookie: std::sync::Mutex<Option<String>>,
}

impl TestBank {
    /// A new bank (`certagent_bank::init`) serving with `opts` on 127.0.0.1, port 0.
    pub async fn serve(opts: certagent_bank::ServeOptions) -> TestBank {
        let dir = tempfile::tempdir().expect("temp dir");
        certagent_bank::init(dir.path()).expect("init");
        let running = certagent_bank::serve(
            dir.path(),
            certagent_bank::ServeOptions {
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                ..opts
            },
        )
        .await
        .expect("serve");
        assert_ne!(running.addr().port(), 0);
        TestBank {
            dir,
            running: Some(running),
            challenge_cookie: std::sync::Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn running(&self) -> &certagent_bank::RunningBank {
        self.running.as_ref().expect("running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.running().addr()
    }

    /// `kind`: "ec" (P-256) or "rsa" (2048 bits).
    pub fn key(&self, name: &str, kind: &str) -> Key {
        openssl_key(self.file(&format!("{name}.key.pem")), kind)
    }

    /// The request log, a JSON value per line.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.file("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}
