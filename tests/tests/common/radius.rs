//! A server with the RADIUS frontend, in this process: its NAS clients, an upstream
//! server that checks passwords, and a NAS to send requests with.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use portvakt_client::Client;
use portvakt_core::config;
use portvakt_core::secret::Pepper;
use portvakt_radius::{Attribute, Packet, attr, code, hide_password};
use portvakt_server::entropy::OsEntropy;
use portvakt_server::frontend::quic::endpoint::ConnectionLimits;
use portvakt_server::frontend::quic::service::Service;
use portvakt_server::pki::{
    PkiFiles, client_tls, ensure_dev_pki, fingerprint, load_certs, server_tls,
};
use portvakt_server::signin::{LogConfig, SignInLog};
use portvakt_store::{Engine, MemoryStore};
use tokio::net::UdpSocket;

/// The secret every test client shares with the server.
pub(crate) const SECRET: &[u8] = b"a-shared-secret-of-some-length";
/// The secret Portvakt shares with the upstream server.
pub(crate) const UPSTREAM_SECRET: &[u8] = b"the-upstreams-own-long-secret";
/// The password the upstream server takes (for any user).
pub(crate) const PASSWORD: &[u8] = b"correct horse";
/// A user name the upstream server answers slowly (a second), for the duplicates tests.
pub(crate) const SLOW: &str = "slow@kommune.no";

/// The clients, by the loopback address each sends from.
pub(crate) const NAS: &str = "127.0.0.1"; // first_factor = "nas", reports Calling-Station-Id
pub(crate) const CHALLENGE: &str = "127.0.0.2"; // upstream-then-challenge
pub(crate) const APPENDED: &str = "127.0.0.3"; // upstream-with-code
pub(crate) const LEGACY: &str = "127.0.0.4"; // nas, without Message-Authenticator
pub(crate) const DOWN: &str = "127.0.0.5"; // upstream-then-challenge, upstream not answering
pub(crate) const OLD_PAM: &str = "127.0.0.6"; // upstream-then-challenge, without Message-Authenticator
pub(crate) const PROXY: &str = "127.0.0.8"; // nas, reports Calling-Station-Id: a FreeRADIUS proxy
pub(crate) const STRANGER: &str = "127.0.0.9"; // no client

pub(crate) struct Fixture {
    /// The RADIUS frontend.
    pub(crate) radius: SocketAddr,
    /// The QUIC endpoint (administrators, push devices).
    pub(crate) quic: SocketAddr,
    pub(crate) files: PkiFiles,
    /// Requests the upstream server received.
    pub(crate) upstream_requests: Arc<AtomicUsize>,
    dir: PathBuf,
    _endpoint: quinn::Endpoint,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for t in &self._tasks {
            t.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the server (memory store, system clock, a sign-in log) with the RADIUS
/// clients above. Needs a multi-threaded runtime.
pub(crate) async fn fixture(name: &str) -> Fixture {
    fixture_with(name, "").await
}

/// [`fixture`] with more of the RADIUS configuration's text (more clients) after the
/// clients above.
pub(crate) async fn fixture_with(name: &str, more: &str) -> Fixture {
    fixture_of(name, more, [9; 32]).await
}

/// [`fixture_with`] on a deployment of its own `pepper` (nodes of one deployment share
/// theirs).
pub(crate) async fn fixture_of(name: &str, more: &str, pepper: [u8; 32]) -> Fixture {
    let dir = std::env::temp_dir().join(format!("portvakt-radius-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("radius")).unwrap();
    let (files, _) = ensure_dev_pki(&dir.join("certs")).unwrap();
    std::fs::write(dir.join("radius/clients.secret"), SECRET).unwrap();
    std::fs::write(dir.join("radius/upstream.secret"), UPSTREAM_SECRET).unwrap();
    let (upstream, upstream_requests, upstream_task) = upstream().await;
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let port = super::free_port();
    let text = format!(
        r#"
listen = "127.0.0.1:{port}"
reply_cache_s = 3

[[clients]]
name = "nas"
ranges = ["{NAS}/32"]
secret_file = "radius/clients.secret"
tenant = "kommune"
first_factor = "nas"
user_address = "calling-station-id"
push_wait_s = 10

[[clients]]
name = "challenge"
ranges = ["{CHALLENGE}/32"]
secret_file = "radius/clients.secret"
tenant = "kommune"
first_factor = "upstream-then-challenge"
upstream = {{ address = "{upstream}", secret_file = "radius/upstream.secret" }}

[[clients]]
name = "appended"
ranges = ["{APPENDED}/32"]
secret_file = "radius/clients.secret"
tenant = "kommune"
first_factor = "upstream-with-code"
upstream = {{ address = "{upstream}", secret_file = "radius/upstream.secret" }}

[[clients]]
name = "legacy"
ranges = ["{LEGACY}/32"]
secret_file = "radius/clients.secret"
tenant = "kommune"
first_factor = "nas"
dangerous_accept_requests_without_message_authenticator = true

[[clients]]
name = "down"
ranges = ["{DOWN}/32"]
secret_file = "radius/clients.secret"
tenant = "kommune"
first_factor = "upstream-then-challenge"
upstream = {{ address = "{silent_addr}", secret_file = "radius/upstream.secret", timeout_ms = 200, attempts = 2 }}

# Debian 12's pam_radius_auth 2.0 sends no Message-Authenticator.
[[clients]]
name = "old-pam"
ranges = ["{OLD_PAM}/32"]
secret_file = "radius/clients.secret"
tenant = "kommune"
first_factor = "upstream-then-challenge"
upstream = {{ address = "{upstream}", secret_file = "radius/upstream.secret" }}
dangerous_accept_requests_without_message_authenticator = true

[[clients]]
name = "proxy"
ranges = ["{PROXY}/32"]
secret_file = "radius/clients.secret"
tenant = "kommune"
first_factor = "nas"
user_address = "calling-station-id"
{more}
"#
    );
    let radius_config = portvakt_server::frontend::radius::Config::parse(&text, &dir).unwrap();
    let policy = config::load(include_str!("../../../examples/kommune.toml")).unwrap();
    let engine = Engine::new(
        policy,
        MemoryStore::default().into(),
        Pepper::new(pepper),
        Box::new(OsEntropy),
    );
    let log = SignInLog::open(LogConfig::in_dir(dir.join("sign-ins"))).unwrap();
    let service = Arc::new(Service::new(Arc::new(engine), None).with_sign_in_log(log));
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).unwrap();
    let admins = HashSet::from([fingerprint(&load_certs(&files.admin.0).unwrap()[0])]);
    let (endpoint, _quic_task) = portvakt_server::frontend::quic::endpoint::start(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        admins,
        service.clone(),
        ConnectionLimits::default(),
    )
    .unwrap();
    let (radius, radius_task) = portvakt_server::frontend::radius::start(radius_config, service)
        .await
        .unwrap();
    // Held so that the silent upstream's port stays taken (and unanswered).
    let silent_task = tokio::spawn(async move {
        let _held = silent;
        std::future::pending::<()>().await
    });
    Fixture {
        radius,
        quic: endpoint.local_addr().unwrap(),
        files,
        upstream_requests,
        dir,
        _endpoint: endpoint,
        _tasks: vec![upstream_task, radius_task, silent_task],
    }
}

impl Fixture {
    pub(crate) async fn client(&self, admin: bool) -> Client {
        let (cert, key) = if admin {
            &self.files.admin
        } else {
            &self.files.frontend
        };
        let tls = client_tls(&self.files.ca, cert, key).unwrap();
        Client::builder(self.quic, tls).connect().await.unwrap()
    }

    /// A NAS sending from `ip` with the clients' secret.
    pub(crate) async fn nas(&self, ip: &str) -> Nas {
        Nas::new(ip, self.radius, SECRET).await
    }
}

/// An upstream RADIUS server: Accept for [`PASSWORD`], Reject otherwise, signed with a
/// Message-Authenticator first; [`SLOW`] is answered after a second.
pub(crate) async fn upstream() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let bytes = buf[..n].to_vec();
            let socket = socket.clone();
            tokio::spawn(async move {
                let request = Packet::decode(&bytes).unwrap();
                assert_eq!(
                    Packet::verify_request(&bytes, UPSTREAM_SECRET),
                    Ok(true),
                    "Portvakt signs what it forwards"
                );
                let password = portvakt_radius::reveal_password(
                    request.get(attr::USER_PASSWORD).unwrap(),
                    UPSTREAM_SECRET,
                    &request.authenticator,
                )
                .unwrap();
                if request.get(attr::USER_NAME) == Some(SLOW.as_bytes()) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let reply = Packet {
                    code: match password == PASSWORD {
                        true => code::ACCESS_ACCEPT,
                        false => code::ACCESS_REJECT,
                    },
                    identifier: request.identifier,
                    authenticator: [0; 16],
                    attributes: vec![],
                };
                let signed = reply
                    .sign_reply(&request.authenticator, UPSTREAM_SECRET)
                    .unwrap();
                let _ = socket.send_to(&signed, from).await;
            });
        }
    });
    (addr, count, task)
}

/// A reply, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: u8,
    /// The Reply-Messages, joined.
    pub(crate) message: String,
    pub(crate) state: Option<Vec<u8>>,
    /// The Proxy-States, in order.
    pub(crate) proxy_states: Vec<Vec<u8>>,
    /// The reply's bytes.
    pub(crate) bytes: Vec<u8>,
}

/// What a request carries besides the user name.
#[derive(Default, Clone)]
pub(crate) struct Extra<'a> {
    pub(crate) password: Option<&'a [u8]>,
    pub(crate) state: Option<&'a [u8]>,
    pub(crate) calling_station: Option<&'a str>,
    pub(crate) proxy_states: &'a [&'a [u8]],
    /// Send without a Message-Authenticator.
    pub(crate) unsigned: bool,
    /// Any other attributes, as (type, value).
    pub(crate) more: &'a [(u8, &'a [u8])],
}

/// A NAS: a socket on one loopback address.
pub(crate) struct Nas {
    socket: UdpSocket,
    server: SocketAddr,
    secret: &'static [u8],
}

static SEQUENCE: AtomicU64 = AtomicU64::new(1);

impl Nas {
    pub(crate) async fn new(ip: &str, server: SocketAddr, secret: &'static [u8]) -> Self {
        let socket = UdpSocket::bind((ip.parse::<std::net::IpAddr>().unwrap(), 0))
            .await
            .unwrap();
        Self {
            socket,
            server,
            secret,
        }
    }

    /// An Access-Request's bytes and its authenticator (a fresh one each time).
    pub(crate) fn request(&self, user: &str, extra: &Extra<'_>) -> (Vec<u8>, [u8; 16]) {
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let mut authenticator = [0u8; 16];
        authenticator[..8].copy_from_slice(&n.to_be_bytes());
        authenticator[8..12].copy_from_slice(&std::process::id().to_be_bytes());
        let hidden = extra
            .password
            .map(|p| hide_password(p, self.secret, &authenticator).unwrap());
        let mut attributes = vec![Attribute {
            kind: attr::USER_NAME,
            value: user.as_bytes(),
        }];
        if let Some(h) = &hidden {
            attributes.push(Attribute {
                kind: attr::USER_PASSWORD,
                value: h,
            });
        }
        if let Some(s) = extra.state {
            attributes.push(Attribute {
                kind: attr::STATE,
                value: s,
            });
        }
        if let Some(c) = extra.calling_station {
            attributes.push(Attribute {
                kind: attr::CALLING_STATION_ID,
                value: c.as_bytes(),
            });
        }
        for p in extra.proxy_states {
            attributes.push(Attribute {
                kind: attr::PROXY_STATE,
                value: p,
            });
        }
        for (kind, value) in extra.more {
            attributes.push(Attribute { kind: *kind, value });
        }
        let packet = Packet {
            code: code::ACCESS_REQUEST,
            identifier: (n % 256) as u8,
            authenticator,
            attributes,
        };
        let bytes = match extra.unsigned {
            true => {
                let mut b = Vec::new();
                packet.encode(&mut b).unwrap();
                b
            }
            false => packet.sign_request(self.secret).unwrap(),
        };
        (bytes, authenticator)
    }

    pub(crate) async fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).await.unwrap();
    }

    /// The next datagram within `wait`, checked as a reply to `authenticator`.
    pub(crate) async fn receive(&self, authenticator: &[u8; 16], wait: Duration) -> Option<Reply> {
        let mut buf = [0u8; 4096];
        let (n, _) = tokio::time::timeout(wait, self.socket.recv_from(&mut buf))
            .await
            .ok()?
            .unwrap();
        let bytes = buf[..n].to_vec();
        assert_eq!(
            Packet::verify_reply(&bytes, authenticator, self.secret),
            Ok(true),
            "every reply is signed for the client's secret"
        );
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(
            p.attributes.first().map(|a| a.kind),
            Some(attr::MESSAGE_AUTHENTICATOR),
            "Message-Authenticator first (BlastRADIUS)"
        );
        let message: Vec<u8> = p
            .all(attr::REPLY_MESSAGE)
            .flat_map(|m| m.iter().copied())
            .collect();
        Some(Reply {
            code: p.code,
            message: String::from_utf8(message).unwrap(),
            state: p.get(attr::STATE).map(<[u8]>::to_vec),
            proxy_states: p.all(attr::PROXY_STATE).map(<[u8]>::to_vec).collect(),
            bytes,
        })
    }

    /// Sends a request and waits for its reply (at most `wait`).
    pub(crate) async fn ask_within(
        &self,
        user: &str,
        extra: &Extra<'_>,
        wait: Duration,
    ) -> Option<Reply> {
        let (bytes, authenticator) = self.request(user, extra);
        self.send(&bytes).await;
        self.receive(&authenticator, wait).await
    }

    /// Sends a request and waits for its reply (five seconds at most, then panics).
    pub(crate) async fn ask(&self, user: &str, extra: &Extra<'_>) -> Reply {
        self.ask_within(user, extra, Duration::from_secs(5))
            .await
            .expect("a reply")
    }
}

/// A FreeRADIUS server of Debian's (`freeradius -f`) with a configuration of its own in
/// a directory of its own, killed when dropped.
pub(crate) struct FreeRadius {
    child: std::process::Child,
    dir: PathBuf,
    /// Where it listens for Access-Requests.
    pub(crate) addr: SocketAddr,
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a FreeRADIUS test server does with the requests it gets.
pub(crate) enum Role<'a> {
    /// Answers from a users file (`USER Cleartext-Password := "..."` lines), PAP.
    Users(&'a str),
    /// Proxies everything to `home` with `secret`, sending from `source` and requiring a
    /// Message-Authenticator in its replies.
    Proxy {
        home: SocketAddr,
        secret: &'a str,
        source: &'a str,
    },
}

impl FreeRadius {
    /// Starts one on a free loopback port, answering clients on 127.0.0.1 that share
    /// `secret`; waits until it serves (panics after 30 s).
    pub(crate) fn start(name: &str, secret: &str, role: Role<'_>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("portvakt-freeradius-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let port = super::free_port();
        std::fs::write(
            dir.join("dictionary"),
            "$INCLUDE /usr/share/freeradius/dictionary\n",
        )
        .unwrap();
        let (modules, authorize, proxy) = match role {
            Role::Users(users) => {
                std::fs::write(dir.join("users"), users).unwrap();
                (
                    "files {\n filename = ${confdir}/users\n }\n pap {\n }",
                    "files\n pap",
                    String::new(),
                )
            }
            Role::Proxy {
                home,
                secret,
                source,
            } => (
                "pap {\n }",
                "update control {\n &Proxy-To-Realm := \"portvakt\"\n }",
                format!(
                    "proxy_requests = yes\nproxy server {{\n default_fallback = no\n}}\nhome_server portvakt {{\n type = auth\n ipaddr = {}\n port = {}\n secret = {secret}\n src_ipaddr = {source}\n require_message_authenticator = yes\n response_window = 20\n zombie_period = 40\n revive_interval = 60\n status_check = none\n}}\nhome_server_pool portvakt {{\n type = fail-over\n home_server = portvakt\n}}\nrealm portvakt {{\n auth_pool = portvakt\n nostrip\n}}\n",
                    home.ip(),
                    home.port()
                ),
            ),
        };
        let conf = format!(
            r#"
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
raddbdir = {dir}
confdir = ${{raddbdir}}
modconfdir = ${{confdir}}
run_dir = ${{confdir}}/run
logdir = ${{confdir}}
libdir = /usr/lib/freeradius
pidfile = ${{run_dir}}/radiusd.pid
name = freeradius
max_request_time = 30
cleanup_delay = 5
max_requests = 16384
hostname_lookups = no
log {{
    destination = stderr
}}
security {{
    max_attributes = 200
    reject_delay = 0
    status_server = yes
    allow_vulnerable_openssl = yes
}}
thread pool {{
    start_servers = 2
    max_servers = 2
    min_spare_servers = 1
    max_spare_servers = 2
    max_requests_per_server = 0
}}
client loopback {{
    ipaddr = 127.0.0.1
    secret = {secret}
}}
{proxy}
modules {{
    {modules}
}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {port}
    }}
    authorize {{
        {authorize}
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
    }}
}}
"#,
            dir = dir.display()
        );
        std::fs::write(dir.join("radiusd.conf"), conf).unwrap();
        let mut child = std::process::Command::new("freeradius")
            .arg("-f")
            .arg("-d")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("Ready to process requests") {
                    let _ = tx.send(Ok(()));
                } else if line.contains("Error") || line.contains("Failed") {
                    let _ = tx.send(Err(line.clone()));
                }
                eprintln!("freeradius: {line}");
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            other => {
                let _ = child.kill();
                panic!(
                    "FreeRADIUS did not start ({other:?}); `freeradius -X -d {}` says why",
                    dir.display()
                )
            }
        }
        Self {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}
