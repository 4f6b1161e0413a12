//! A server with the HTTP frontend, in this process, and a plain HTTPS/1.1 client that
//! writes requests byte for byte (so tests can send what no well-behaved client would).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portvakt_client::Client;
use portvakt_core::config;
use portvakt_core::secret::Pepper;
use portvakt_server::entropy::OsEntropy;
use portvakt_server::frontend::quic::endpoint::ConnectionLimits;
use portvakt_server::frontend::quic::service::Service;
use portvakt_server::pki::{
    PkiFiles, client_tls, ensure_dev_pki, fingerprint, load_certs, server_tls,
};
use portvakt_server::signin::{LogConfig, SignInLog};
use portvakt_store::{Engine, MemoryStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// The API keys the fixture makes (in its data directory).
pub(crate) const FRONTEND_KEY: &str = "a-frontend-api-key-of-32-bytes-00";
pub(crate) const ADMIN_KEY: &str = "an-admin-api-key-of-32-bytes-0000";

/// Callers from here need nothing; from elsewhere on loopback they do.
pub(crate) const OPEN: &str = "127.0.0.1";
pub(crate) const CLOSED: &str = "127.0.0.3";

pub(crate) struct Fixture {
    pub(crate) http: SocketAddr,
    pub(crate) quic: SocketAddr,
    pub(crate) files: PkiFiles,
    dir: PathBuf,
    _endpoint: quinn::Endpoint,
    _task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self._task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a server with the HTTP frontend: callers from 127.0.0.1 need nothing and their
/// `client` parameter is believed; two API keys; the realm `kommune`; at most
/// `max_connections`, slow clients cut after a second.
pub(crate) async fn fixture(name: &str, max_connections: usize) -> Fixture {
    fixture_with(name, max_connections, "").await
}

/// [`fixture`] with more of the configuration's text (more realms) after the rest.
pub(crate) async fn fixture_with(name: &str, max_connections: usize, more: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("portvakt-http-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("http")).unwrap();
    std::fs::write(dir.join("http/frontend.key"), FRONTEND_KEY).unwrap();
    std::fs::write(dir.join("http/admin.key"), ADMIN_KEY).unwrap();
    std::fs::write(
        dir.join("http/upstream.secret"),
        super::radius::UPSTREAM_SECRET,
    )
    .unwrap();
    let (files, _) = ensure_dev_pki(&dir.join("certs")).unwrap();
    let text = format!(
        r#"
listen = "127.0.0.1:0"
unauthenticated_frontends = ["{OPEN}/32"]
trusted_proxies = ["{OPEN}/32"]
max_connections = {max_connections}
slow_client_s = 1

[[api_keys]]
name = "keycloak"
key_file = "http/frontend.key"
role = "frontend"

[[api_keys]]
name = "scripts"
key_file = "http/admin.key"
role = "admin"

[[realms]]
name = "kommune"
tenant = "kommune"
{more}
"#
    );
    let http_config = portvakt_server::frontend::http::Config::parse(&text, &dir).unwrap();
    let policy = config::load(include_str!("../../../examples/kommune.toml")).unwrap();
    let engine = Engine::new(
        policy,
        MemoryStore::default().into(),
        Pepper::new([11; 32]),
        Box::new(OsEntropy),
    );
    let log = SignInLog::open(LogConfig::in_dir(dir.join("sign-ins"))).unwrap();
    let service = Arc::new(Service::new(Arc::new(engine), None).with_sign_in_log(log));
    let admins = HashSet::from([fingerprint(&load_certs(&files.admin.0).unwrap()[0])]);
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).unwrap();
    let (endpoint, _) = portvakt_server::frontend::quic::endpoint::start(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        admins.clone(),
        service.clone(),
        ConnectionLimits::default(),
    )
    .unwrap();
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).unwrap();
    let (http, task) = portvakt_server::frontend::http::start(http_config, tls, admins, service)
        .await
        .unwrap();
    Fixture {
        http,
        quic: endpoint.local_addr().unwrap(),
        files,
        dir,
        _endpoint: endpoint,
        _task: task,
    }
}

/// Which certificate a connection presents.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cert {
    None,
    Frontend,
    Admin,
}

/// An answer: status, headers (lowercased names), body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Fixture {
    pub(crate) async fn admin(&self) -> Client {
        let tls = client_tls(&self.files.ca, &self.files.admin.0, &self.files.admin.1).unwrap();
        Client::builder(self.quic, tls).connect().await.unwrap()
    }

    /// A TLS connection to the HTTP frontend from `source`, presenting `cert`.
    pub(crate) async fn connect(
        &self,
        source: &str,
        cert: Cert,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        connect_to(self.http, &self.files, source, cert).await
    }

    /// Sends `raw` (a whole request, which should say `Connection: close`) from `source`
    /// and reads the answer to the end.
    pub(crate) async fn raw(&self, source: &str, cert: Cert, raw: &[u8]) -> Answer {
        let mut stream = self.connect(source, cert).await;
        stream.write_all(raw).await.unwrap();
        read_answer(&mut stream).await
    }

    /// A request with `headers` (each `Name: value`) and `body`, from 127.0.0.1 with no
    /// certificate.
    pub(crate) async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[&str],
        body: &[u8],
    ) -> Answer {
        self.send_as(OPEN, Cert::None, method, target, headers, body)
            .await
    }

    pub(crate) async fn send_as(
        &self,
        source: &str,
        cert: Cert,
        method: &str,
        target: &str,
        headers: &[&str],
        body: &[u8],
    ) -> Answer {
        let mut raw = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for h in headers {
            raw.push_str(h);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(source, cert, &bytes).await
    }

    /// A form POST to privacyIDEA's `/validate/check`.
    pub(crate) async fn validate(&self, form: &[(&str, &str)]) -> Answer {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(
            "POST",
            "/validate/check",
            &["Content-Type: application/x-www-form-urlencoded"],
            body.as_bytes(),
        )
        .await
    }

    /// A JSON POST to Portvakt's API.
    pub(crate) async fn post_json(
        &self,
        cert: Cert,
        target: &str,
        body: &serde_json::Value,
    ) -> Answer {
        self.send_as(
            OPEN,
            cert,
            "POST",
            target,
            &["Content-Type: application/json"],
            body.to_string().as_bytes(),
        )
        .await
    }
}

/// A TLS connection to an HTTP frontend at `http` whose certificates are `files`, from
/// `source`, presenting `cert`.
pub(crate) async fn connect_to(
    http: SocketAddr,
    files: &PkiFiles,
    source: &str,
    cert: Cert,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use portvakt_client::tls::{load_certs, load_key, provider, roots};
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&files.ca).unwrap());
    let mut config = match cert {
        Cert::None => builder.with_no_client_auth(),
        Cert::Frontend | Cert::Admin => {
            let (c, k) = match cert {
                Cert::Admin => &files.admin,
                _ => &files.frontend,
            };
            builder
                .with_client_auth_cert(load_certs(c).unwrap(), load_key(k).unwrap())
                .unwrap()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let tcp = socket.connect(http).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads one HTTP/1.1 answer to the end of the connection (or ten seconds).
pub(crate) async fn read_answer<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Answer {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut all)).await;
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&all)));
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: all[split + 4..].to_vec(),
    }
}
