//! What the integration tests share: a sign-in attempt, and the `portvakt` binary run as
//! a server process.
#![allow(dead_code)] // each test binary uses its own part

pub(crate) mod http;
pub(crate) mod radius;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portvakt_client::{Client, ClientError};
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_server::pki::{PkiFiles, client_tls};
use portvakt_wire::admin::{Bytes, Str, StrList};
use portvakt_wire::{Admin, AdminReply, Decide, FirstFactor, Frame, Proof, Purpose};

/// A sign-in to the municipality from `ip`, the password checked, with `code` from an
/// authenticator app if given.
pub(crate) fn attempt<'a>(user: &'a str, ip: &str, code: Option<&'a str>) -> Decide<'a> {
    Decide {
        tenant: "kommune",
        user,
        ip: ip.parse().unwrap(),
        purpose: Purpose::SignIn,
        first_factor: FirstFactor::Ok,
        proof: code.map(Proof::Totp),
        device_token: None,
        remember_device: false,
    }
}

pub(crate) fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<this test> → target/<profile>/portvakt
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("portvakt"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: run the workspace's tests (cargo test --workspace), which build it, or cargo build -p portvakt first",
        bin.display()
    );
    bin
}

/// The server process, killed when dropped (so a failing test leaves none behind).
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the server on `data` and waits until it serves; its first line (the state it
/// found) is returned with it.
pub(crate) fn start(data: &Path, addr: SocketAddr) -> (Running, String) {
    start_with(data, addr, &[])
}

/// [`start`] with more arguments to `serve`.
pub(crate) fn start_with(data: &Path, addr: SocketAddr, extra: &[&str]) -> (Running, String) {
    let mut child = Command::new(server_binary())
        .args(["serve", "--metrics", "off", "--listen"])
        .arg(addr.to_string())
        .arg("--data")
        .arg(data)
        // The embedded RADIUS and HTTP examples' fixed ports would be taken by the first
        // of the tests' servers only: they are off unless a test names its own.
        .args(match extra.contains(&"--radius") {
            true => &[][..],
            false => &["--radius", "off"][..],
        })
        .args(match extra.contains(&"--http") {
            true => &[][..],
            false => &["--http", "off"][..],
        })
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = None;
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if first.is_none() {
                first = Some(line.clone());
            }
            if line.contains("serving") {
                let _ = tx.send(first.clone().unwrap_or_default());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(first) => (Running(child), first),
        Err(_) => {
            let _ = child.kill();
            panic!("the server did not start on {}", data.display())
        }
    }
}

pub(crate) async fn connect(addr: SocketAddr, files: &PkiFiles, admin: bool) -> Client {
    let (cert, key) = if admin { &files.admin } else { &files.frontend };
    let tls = client_tls(&files.ca, cert, key).unwrap();
    Client::builder(addr, tls).connect().await.unwrap()
}

pub(crate) fn secret(user: &str) -> Vec<u8> {
    let mut s = user.as_bytes().to_vec();
    s.resize(20, b'#');
    s
}

pub(crate) fn code_now(user: &str) -> String {
    let secs = portvakt_server::clock::now().as_secs();
    format!(
        "{:06}",
        OtpKey::new(Algorithm::Sha1, &secret(user)).hotp(secs / 30, Digits::SIX)
    )
}

/// A user with an authenticator app (its secret from its name) and a security key, so
/// the municipality's two methods are met.
pub(crate) async fn enrol(admin: &Client, user: &str) -> Result<(), ClientError> {
    admin
        .admin(Admin::AddUser {
            tenant: Str("kommune"),
            user: Str(user),
            groups: StrList(vec![]),
            passwordless: false,
        })
        .await?;
    let s = secret(user);
    admin
        .admin(Admin::ImportTotp {
            tenant: Str("kommune"),
            user: Str(user),
            secret: Bytes(&s),
            algorithm: 1,
            digits: 6,
            period: 30,
            active: true,
        })
        .await?;
    admin
        .admin(Admin::AddSecurityKey {
            tenant: Str("kommune"),
            user: Str(user),
        })
        .await?;
    Ok(())
}

/// The sign-in log's rows for `user` (every user for ""), oldest first, as
/// `portvakt admin sign-ins --json` prints them; read by an administrator over QUIC.
pub(crate) async fn sign_ins(admin: &Client, user: &str) -> Vec<serde_json::Value> {
    let answer = admin
        .admin(Admin::SignIns {
            tenant: Str("kommune"),
            user: Str(user),
            from_ms: 0,
            to_ms: u64::MAX,
            cursor: 0,
            limit: 24,
        })
        .await
        .unwrap();
    let Frame::AdminReply(_, AdminReply::SignInsFound { rows, next }) = answer.frame().unwrap()
    else {
        panic!("{answer:?}")
    };
    assert_eq!(next, None, "one page holds them");
    rows.0
        .iter()
        .map(portvakt_server::signin::to_json)
        .collect()
}

/// The operations the audit trail holds as done: (operation, user).
pub(crate) async fn audited(admin: &Client) -> std::collections::HashSet<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    loop {
        let answer = admin
            .admin(Admin::Audit {
                tenant: Str("kommune"),
                user: Str(""),
                from_ms: 0,
                to_ms: u64::MAX,
                cursor,
                limit: 24,
            })
            .await
            .unwrap();
        let Frame::AdminReply(_, AdminReply::AuditFound { events, next }) = answer.frame().unwrap()
        else {
            panic!("{answer:?}")
        };
        for bytes in &events.0 {
            let e = portvakt_server::audit::Event::decode(bytes).unwrap();
            if e.outcome == portvakt_server::audit::Outcome::Done {
                seen.insert((e.op, e.user));
            }
        }
        match next {
            Some(n) => cursor = n,
            None => return seen,
        }
    }
}

/// `requests` (user, ip, code) sent at once, spread over `clients`; the decisions.
pub(crate) async fn all_at_once(
    clients: &[Client],
    requests: Vec<(String, String, String)>,
) -> Vec<portvakt_client::Decision> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (user, ip, code)) in requests.into_iter().enumerate() {
        let c = clients[i % clients.len()].clone();
        tasks.spawn(async move { c.decide(attempt(&user, &ip, Some(&code))).await.unwrap() });
    }
    let mut out = Vec::new();
    while let Some(d) = tasks.join_next().await {
        out.push(d.unwrap());
    }
    out
}

/// 64 different wrong codes for `user` from `ip` at once (none of them `right`), spread
/// over `clients`; the decisions.
pub(crate) async fn wrong_codes_at_once(
    clients: &[Client],
    user: &str,
    ip: &str,
    right: u32,
) -> Vec<portvakt_client::Decision> {
    let requests = (0..64)
        .map(|i| {
            let wrong = format!("{:06}", (right + 1 + i) % 1_000_000);
            (user.to_owned(), ip.to_owned(), wrong)
        })
        .collect();
    all_at_once(clients, requests).await
}

/// Starts a push enrolment for `user` through `admin` and pairs a new device with it, as
/// its QR code carries it, on a connection of its own to `server` (no certificate,
/// trusting `ca`), where it is then signed in: the device, its connection, its method.
pub(crate) async fn pair_phone(
    admin: &Client,
    server: SocketAddr,
    ca: &Path,
    user: &str,
) -> (portvakt_client::device::Authenticator, Client, u32) {
    use portvakt_client::device::{self, Authenticator, Enrolment};
    let answer = admin
        .admin(Admin::EnrollPush {
            tenant: Str("kommune"),
            user: Str(user),
        })
        .await
        .unwrap();
    let Frame::AdminReply(_, AdminReply::PushEnrolled { method, token, .. }) =
        answer.frame().unwrap()
    else {
        panic!("{answer:?}")
    };
    let uri = Enrolment {
        server,
        tenant: "kommune".into(),
        user: user.into(),
        method,
        token: token.0.to_owned(),
    }
    .to_uri();
    let enrolment = Enrolment::from_uri(&uri).unwrap();
    let conn = device::connect(server, ca).await.unwrap();
    let phone = Authenticator::enrol(&conn, &enrolment).await.unwrap();
    phone.sign_in(&conn).await.unwrap();
    (phone, conn, method)
}
