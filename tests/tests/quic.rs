//! Real QUIC on loopback: a server with the development PKI and the municipality's
//! policy (`examples/kommune.toml`), frontends and an administrator connecting with their
//! certificates through `portvakt-client`. The server reads a manual clock, so codes are
//! computed for a known step and locks expire without waiting.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{all_at_once, attempt, wrong_codes_at_once};
use portvakt_client::{Client, ClientError, Decision};
use portvakt_core::admin::TotpSpec;
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::{ManualClock, SeededEntropy};
use portvakt_core::{MemoryStore, Timestamp, config};
use portvakt_server::frontend::quic::endpoint::ConnectionLimits;
use portvakt_server::frontend::quic::service::Service;
use portvakt_server::pki::{
    PkiFiles, client_tls, ensure_dev_pki, fingerprint, load_certs, server_tls,
};
use portvakt_server::signin::{LogConfig, SignInLog};
use portvakt_store::Engine;
use portvakt_wire::admin::{Str, StrList};
use portvakt_wire::*;

const SECRET: &[u8] = b"12345678901234567890";
const DOCTOR_SECRET: &[u8] = b"doctor-secret-bytes!";
/// An address outside every trusted network.
const HOME: &str = "203.0.113.5";
/// An address on the municipal network.
const OFFICE: &str = "10.20.1.1";

/// The process's metrics, rendered as Prometheus text. Every test here records into the
/// one recorder, so tests compare a series before and after and use series no other test
/// touches.
fn metrics() -> String {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .unwrap()
        })
        .render()
}

/// The value of one counter series (`name{labels}`), 0 if it has not appeared.
fn counter(series: &str) -> u64 {
    metrics()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

struct Fixture {
    addr: SocketAddr,
    files: PkiFiles,
    dir: PathBuf,
    clock: Arc<ManualClock>,
    _endpoint: quinn::Endpoint,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(name: &str) -> Fixture {
    fixture_with(name, ConnectionLimits::default())
}

fn fixture_with(name: &str, limits: ConnectionLimits) -> Fixture {
    let dir = std::env::temp_dir().join(format!("portvakt-quic-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (files, _) = ensure_dev_pki(&dir).unwrap();
    let policy = config::load(include_str!("../../examples/kommune.toml")).unwrap();
    let engine = Engine::new(
        policy,
        MemoryStore::default().into(),
        Pepper::new([5; 32]),
        Box::new(SeededEntropy::new(11)),
    );
    // Two methods each, as the municipality asks: an authenticator app and a security key.
    for (user, groups, secret) in [
        ("kari", &[][..], SECRET),
        ("lege", &["legekontor"][..], DOCTOR_SECRET),
    ] {
        engine.add_user("kommune", user, groups, false).unwrap();
        engine
            .import_totp("kommune", user, secret, TotpSpec::default(), true)
            .unwrap();
        engine.add_security_key("kommune", user).unwrap();
    }
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).unwrap();
    let admins = HashSet::from([fingerprint(&load_certs(&files.admin.0).unwrap()[0])]);
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
    let reader = clock.clone();
    let log = SignInLog::open(LogConfig::in_dir(dir.join("sign-ins"))).unwrap();
    let service = Service::new(Arc::new(engine), None)
        .with_clock(Box::new(move || reader.now()))
        .with_sign_in_log(log);
    let (endpoint, _task) = portvakt_server::frontend::quic::endpoint::start(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        admins,
        Arc::new(service),
        limits,
    )
    .unwrap();
    Fixture {
        addr: endpoint.local_addr().unwrap(),
        files,
        dir,
        clock,
        _endpoint: endpoint,
    }
}

impl Fixture {
    async fn frontend(&self) -> Client {
        let tls = client_tls(
            &self.files.ca,
            &self.files.frontend.0,
            &self.files.frontend.1,
        )
        .unwrap();
        Client::builder(self.addr, tls).connect().await.unwrap()
    }

    /// A frontend connection where one was just closed: the server gives the place back
    /// when it has seen the close, so a refusal is tried again (for at most ten seconds,
    /// which only keeps a broken server from hanging the test).
    async fn reconnect_frontend(&self) -> Client {
        let mut last = None;
        for _ in 0..500 {
            let tls = client_tls(
                &self.files.ca,
                &self.files.frontend.0,
                &self.files.frontend.1,
            )
            .unwrap();
            match Client::builder(self.addr, tls).connect().await {
                Ok(c) => return c,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the place was never given back: {last:?}")
    }

    async fn admin(&self) -> Client {
        let tls = client_tls(&self.files.ca, &self.files.admin.0, &self.files.admin.1).unwrap();
        Client::builder(self.addr, tls).connect().await.unwrap()
    }

    /// The code an app with `secret` shows `steps` steps from now.
    fn code(&self, secret: &[u8], steps: i64) -> String {
        let step = (self.clock.now().as_secs() / 30).saturating_add_signed(steps);
        format!(
            "{:06}",
            OtpKey::new(Algorithm::Sha1, secret).hotp(step, Digits::SIX)
        )
    }
}

async fn decide(c: &Client, user: &str, ip: &str, code: Option<&str>) -> Decision {
    c.decide(attempt(user, ip, code)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_municipality_over_quic() {
    let f = fixture("kommune");
    let c = f.frontend().await;

    // On the municipal network the password is enough.
    let d = decide(&c, "kari", OFFICE, None).await;
    assert_eq!(
        (
            d.outcome,
            d.reason.as_str(),
            d.rule.as_str(),
            d.location.as_str()
        ),
        (
            Outcome::Allow,
            "single_factor_allowed",
            "municipal-network-single-factor",
            "municipal-network"
        )
    );

    // From home a second factor is asked, and the methods are listed.
    let d = decide(&c, "kari", HOME, None).await;
    assert_eq!(
        (d.outcome, d.rule.as_str(), d.location.as_str()),
        (Outcome::Challenge, "elsewhere-second-factor", "elsewhere")
    );
    let kinds: Vec<MethodKind> = d.methods.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [MethodKind::AuthenticatorApp, MethodKind::SecurityKey]
    );

    // The right code lets her in, once.
    let code = f.code(SECRET, 0);
    let d = decide(&c, "kari", HOME, Some(&code)).await;
    assert_eq!(
        (d.outcome, d.reason.as_str(), d.method),
        (
            Outcome::Allow,
            "second_factor_verified",
            Some(MethodKind::AuthenticatorApp)
        )
    );
    let d = decide(&c, "kari", HOME, Some(&code)).await;
    assert_eq!(
        (d.outcome, d.reason.as_str()),
        (Outcome::Deny, "replayed_code")
    );

    // The doctor's office needs the second factor even on the municipal network.
    let d = decide(&c, "lege", OFFICE, None).await;
    assert_eq!(
        (d.outcome, d.rule.as_str(), d.location.as_str()),
        (
            Outcome::Challenge,
            "doctors-office-always-second-factor",
            "municipal-network"
        )
    );
    let code = f.code(DOCTOR_SECRET, 0);
    assert_eq!(
        decide(&c, "lege", OFFICE, Some(&code)).await.outcome,
        Outcome::Allow
    );
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_and_its_expiry_over_quic() {
    let f = fixture("lockout");
    let c = f.frontend().await;
    let right = f.code(SECRET, 0);
    // Ten different wrong codes (a repeated wrong code counts once) lock the account.
    let mut outcomes = Vec::new();
    for i in 0..10 {
        let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1 + i) % 1_000_000);
        outcomes.push(decide(&c, "kari", HOME, Some(&wrong)).await.outcome);
    }
    assert!(
        outcomes[..9].iter().all(|o| *o == Outcome::Deny),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[9], Outcome::Locked);
    let d = decide(&c, "kari", HOME, Some(&right)).await;
    assert_eq!(
        d.outcome,
        Outcome::Locked,
        "a right code does not open a lock"
    );
    assert_eq!(d.retry_after, Some(Duration::from_secs(60)));

    // A minute later the lock is gone and a fresh code works.
    f.clock.advance(portvakt_core::Duration::from_secs(61));
    let fresh = f.code(SECRET, 0);
    let d = decide(&c, "kari", HOME, Some(&fresh)).await;
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_looks_like_a_wrong_code() {
    let f = fixture("unknown");
    let c = f.frontend().await;
    let known = decide(&c, "kari", HOME, Some("000000")).await;
    let unknown = decide(&c, "nobody", HOME, Some("000000")).await;
    assert_eq!(known, unknown);
    assert_eq!(known.reason, "invalid_code");
    // A wrong password gets the same bytes for both: nothing on the wire tells them apart.
    // (Once the frontend vouches for a password, an unknown name is told to register: the
    // password already proved the account exists.)
    let raw = |user| {
        let mut b = bytes::BytesMut::new();
        let request = Decide {
            first_factor: FirstFactor::Failed,
            ..attempt(user, HOME, None)
        };
        Frame::Decide(7, request).encode(&mut b).unwrap();
        b
    };
    let a = c.call_raw(&raw("kari")).await.unwrap();
    let b = c.call_raw(&raw("nobody")).await.unwrap();
    assert_eq!(a.bytes(), b.bytes());
    assert!(matches!(
        a.frame().unwrap(),
        Frame::Decision(
            7,
            portvakt_wire::Decision {
                reason: "first_factor_failed",
                ..
            }
        )
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_come_from_the_client_certificate() {
    let f = fixture("roles");
    let add = || Admin::AddUser {
        tenant: Str("kommune"),
        user: Str("ola"),
        groups: StrList(vec![]),
        passwordless: false,
    };
    let c = f.frontend().await;
    match c.admin(add()).await {
        Err(ClientError::Refused {
            code: ErrorCode::Forbidden,
            ..
        }) => {}
        other => panic!("a frontend ran an administrator operation: {other:?}"),
    }
    let admin = f.admin().await;
    let answer = admin.admin(add()).await.unwrap();
    assert!(matches!(
        answer.frame().unwrap(),
        Frame::AdminReply(_, AdminReply::UserAdded { .. })
    ));

    // A client without a certificate is a push device's: it connects, and may send device
    // frames only; a decision is forbidden.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(load_certs(&f.files.ca).unwrap().remove(0))
        .unwrap();
    let mut anon = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    anon.alpn_protocols = vec![portvakt_wire::ALPN.to_vec()];
    let device = Client::builder(f.addr, anon).connect().await.unwrap();
    match device.decide(attempt("kari", OFFICE, None)).await {
        Err(ClientError::Refused {
            code: ErrorCode::Forbidden,
            ..
        }) => {}
        other => panic!("a connection without a certificate was decided for: {other:?}"),
    }
    match device.admin(add()).await {
        Err(ClientError::Refused {
            code: ErrorCode::Forbidden,
            ..
        }) => {}
        other => {
            panic!("a connection without a certificate ran an administrator operation: {other:?}")
        }
    }
    // The refusal of a certificate is told as one, naming what was presented.
    let refused = |e: ClientError| match e {
        ClientError::CertificateRefused { presented, why } => (presented, why),
        other => panic!("a refused certificate told as {other:?}"),
    };
    // Nor is the server's own certificate, though the CA signed it.
    let own = client_tls(&f.files.ca, &f.files.server.0, &f.files.server.1).unwrap();
    let error = match Client::builder(f.addr, own).connect().await {
        Err(e) => e,
        Ok(c) => c.decide(attempt("kari", OFFICE, None)).await.unwrap_err(),
    };
    let text = error.to_string();
    let (presented, _) = refused(error);
    let own = fingerprint(&load_certs(&f.files.server.0).unwrap()[0]);
    assert!(
        presented.to_lowercase().replace(':', "").ends_with(&own),
        "{presented}"
    );
    assert!(
        text.starts_with("the server refused the certificate with SHA-256 fingerprint"),
        "{text}"
    );
    // A client that refuses the server's certificate is not told that the server refused
    // its own: here it trusts only its own certificate, so the server's issuer is unknown
    // to it (the same alert, `unknown_ca`, a server sends for a client from another CA).
    let wrong_ca = client_tls(
        &f.files.frontend.0,
        &f.files.frontend.0,
        &f.files.frontend.1,
    )
    .unwrap();
    match Client::builder(f.addr, wrong_ca).connect().await {
        Err(ClientError::Connect { message, .. }) => {
            assert!(message.contains("UnknownIssuer"), "{message}")
        }
        other => panic!("a server certificate from an unknown CA: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_the_client_reconnects() {
    let f = fixture("bad");
    let c = f.frontend().await;
    // A well-delimited frame of an unknown kind, then a good one on the same connection.
    let answer = c.call_raw(&[0, 0, 0, 5, 0x42, 0, 0, 0, 9]).await.unwrap();
    let Frame::Error { id, code, message } = answer.frame().unwrap() else {
        panic!()
    };
    assert_eq!(
        (id, code, message),
        (9, ErrorCode::UnknownKind, "unknown frame kind 0x42")
    );
    // Garbage inside a well-delimited frame: an error naming the field.
    let answer = c
        .call_raw(&[0, 0, 0, 6, 0x01, 0, 0, 0, 4, 200])
        .await
        .unwrap();
    let Frame::Error { id, code, .. } = answer.frame().unwrap() else {
        panic!()
    };
    assert_eq!((id, code), (4, ErrorCode::Malformed));
    assert_eq!(
        decide(&c, "kari", OFFICE, None).await.outcome,
        Outcome::Allow
    );

    // A length prefix too short for a kind and an id still delimits a frame: an error
    // with id 0, and the stream goes on.
    for short in [&[0, 0, 0, 0][..], &[0, 0, 0, 3, 1, 0, 0]] {
        let answer = c.call_raw(short).await.unwrap();
        let Frame::Error { id, code, .. } = answer.frame().unwrap() else {
            panic!()
        };
        assert_eq!((id, code), (0, ErrorCode::Malformed));
    }
    assert_eq!(
        decide(&c, "kari", OFFICE, None).await.outcome,
        Outcome::Allow
    );

    // An oversized length prefix cannot be skipped: the server says so, counts it, and
    // closes.
    let too_large = r#"portvakt_frames_refused_total{code="too_large"}"#;
    let before = counter(too_large);
    let answer = c.call_raw(&[0, 0, 0x40, 0x01, 1]).await.unwrap();
    let Frame::Error { code, .. } = answer.frame().unwrap() else {
        panic!()
    };
    assert_eq!(code, ErrorCode::TooLarge);
    // The client sees the connection go (the bound only keeps a broken server from
    // hanging the test; the server closes within its two-second grace)...
    for _ in 0..1000 {
        if !c.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!c.is_connected(), "the server kept the connection");
    assert_eq!(counter(too_large), before + 1);
    // ... and its next request connects again.
    assert_eq!(
        decide(&c, "kari", OFFICE, None).await.outcome,
        Outcome::Allow
    );
    assert!(c.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_each_get_their_own_answer() {
    let f = fixture("pipeline");
    let c = f.frontend().await;
    let admin = f.admin().await;
    // Users whose names say where they may sign in from.
    for i in 0..20 {
        let user = format!("user{i}");
        admin
            .admin(Admin::AddUser {
                tenant: Str("kommune"),
                user: Str(&user),
                groups: StrList(if i % 2 == 0 {
                    vec!["legekontor"]
                } else {
                    vec![]
                }),
                passwordless: false,
            })
            .await
            .unwrap();
        admin
            .admin(Admin::AddSecurityKey {
                tenant: Str("kommune"),
                user: Str(&user),
            })
            .await
            .unwrap();
    }
    // Thousands of requests in flight at once over the client's streams: every answer
    // must be the one for its own request.
    let mut tasks = Vec::new();
    for n in 0..2000usize {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let i = n % 20;
            let user = format!("user{i}");
            let d = c.decide(attempt(&user, OFFICE, None)).await.unwrap();
            (i, d.rule)
        }));
    }
    for t in tasks {
        let (i, rule) = t.await.unwrap();
        let want = if i % 2 == 0 {
            "doctors-office-always-second-factor"
        } else {
            "municipal-network-single-factor"
        };
        assert_eq!(rule, want, "user{i}");
    }
}

/// The sign-in log's rows for a user: (user, reason, location, address).
async fn sign_ins(admin: &Client, user: &str) -> Vec<(String, String, String, String)> {
    let text = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
    common::sign_ins(admin, user)
        .await
        .iter()
        .map(|r| {
            (
                text(&r["user"]),
                text(&r["reason"]),
                text(&r["location"]),
                text(&r["ip"]),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_decision_is_in_the_sign_in_log_even_before_a_framing_violation() {
    let f = fixture("log");
    let (c, admin) = (f.frontend().await, f.admin().await);
    decide(&c, "kari", OFFICE, None).await;
    decide(&c, "nobody", HOME, None).await;
    assert_eq!(
        sign_ins(&admin, "").await,
        [
            (
                "kari".into(),
                "single_factor_allowed".into(),
                "municipal-network".into(),
                OFFICE.into()
            ),
            (
                "nobody".into(),
                // Vouched for by the frontend but unknown: told to register.
                "no_methods".into(),
                "elsewhere".into(),
                HOME.into()
            ),
        ]
    );
    // A decision and an oversized prefix in one write: the decision is answered, the
    // connection closed, and the answer's record is in the log all the same.
    let mut b = bytes::BytesMut::new();
    Frame::Decide(9, attempt("ola", HOME, None))
        .encode(&mut b)
        .unwrap();
    b.extend_from_slice(&[0, 0, 0x40, 0x01, 1]);
    let answer = c.call_raw(&b).await.unwrap();
    assert!(matches!(answer.frame().unwrap(), Frame::Decision(9, _)));
    let ola = sign_ins(&admin, "ola").await;
    assert_eq!(ola.len(), 1, "{ola:?}");
    // Frontends may not read the log.
    let refused = c
        .admin(Admin::SignIns {
            tenant: Str("kommune"),
            user: Str(""),
            from_ms: 0,
            to_ms: u64::MAX,
            cursor: 0,
            limit: 1,
        })
        .await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Refused {
                code: ErrorCode::Forbidden,
                ..
            })
        ),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_bounded_per_certificate_per_address_and_in_all() {
    let refused = |limit: &str| {
        counter(&format!(
            r#"portvakt_connections_refused_total{{limit="{limit}"}}"#
        ))
    };
    let f = fixture_with(
        "limits",
        ConnectionLimits {
            total: 100,
            per_address: 3,
            per_certificate: 2,
        },
    );
    // Two frontends may share a certificate; a third with it is closed after its
    // handshake, saying why.
    let (a, b) = (f.frontend().await, f.frontend().await);
    // A client is connected when it has sent its last handshake message, which the server
    // may not have read yet: an answer on each says both hold their places.
    for c in [&a, &b] {
        decide(c, "kari", OFFICE, None).await;
    }
    let before = refused("certificate");
    let tls = client_tls(&f.files.ca, &f.files.frontend.0, &f.files.frontend.1).unwrap();
    // The close may reach the client while it connects or at its first request.
    let why = match Client::builder(f.addr, tls).connect().await {
        Err(e) => e,
        Ok(third) => third
            .decide(attempt("kari", OFFICE, None))
            .await
            .unwrap_err(),
    };
    match &why {
        ClientError::Closed(why) | ClientError::Connect { message: why, .. } => assert!(
            why.contains("too many connections with this certificate"),
            "{why}"
        ),
        other => panic!("a third connection with one certificate: {other:?}"),
    }
    assert_eq!(refused("certificate"), before + 1);
    // Its place is given back: the address holds a, b and now the administrator.
    let admin = f.admin().await;
    let info = Admin::UserInfo {
        tenant: Str("kommune"),
        user: Str("kari"),
    };
    assert!(admin.admin(info).await.is_ok());
    // A fourth connection from the address is refused before its handshake.
    let before = refused("address");
    let tls = client_tls(&f.files.ca, &f.files.admin.0, &f.files.admin.1).unwrap();
    match Client::builder(f.addr, tls).connect().await {
        Err(ClientError::Connect { message, .. }) => {
            assert!(message.contains("refused"), "{message}")
        }
        other => panic!("a fourth connection from one address: {other:?}"),
    }
    assert_eq!(refused("address"), before + 1);
    // Closing one makes room again (once the server has seen the close).
    a.close().await;
    let again = f.reconnect_frontend().await;
    for c in [&b, &again] {
        assert_eq!(
            decide(c, "kari", OFFICE, None).await.outcome,
            Outcome::Allow
        );
    }

    // The total bound, with room left for the address and the certificate.
    let g = fixture_with(
        "limits-total",
        ConnectionLimits {
            total: 2,
            per_address: 10,
            per_certificate: 10,
        },
    );
    let (_c1, c2) = (g.frontend().await, g.frontend().await);
    let before = refused("total");
    let tls = client_tls(&g.files.ca, &g.files.frontend.0, &g.files.frontend.1).unwrap();
    assert!(matches!(
        Client::builder(g.addr, tls).connect().await,
        Err(ClientError::Connect { .. })
    ));
    assert_eq!(refused("total"), before + 1);
    c2.close().await;
    assert_eq!(
        decide(&g.reconnect_frontend().await, "kari", OFFICE, None)
            .await
            .outcome,
        Outcome::Allow
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_and_parallel_guessing_through_the_server() {
    let f = fixture("races");
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(f.frontend().await);
    }
    let count = |ds: &[Decision], reason: &str| ds.iter().filter(|d| d.reason == reason).count();
    // The same right code 64 times at once, in ten rounds (a fresh step and a fresh
    // address each): exactly one is let in, every other is a replay.
    for round in 0..10 {
        f.clock.advance(portvakt_core::Duration::from_secs(30));
        let code = f.code(SECRET, 0);
        let ip = format!("203.0.113.{}", 100 + round);
        let requests = (0..64)
            .map(|_| ("kari".to_owned(), ip.clone(), code.clone()))
            .collect();
        let answers = all_at_once(&clients, requests).await;
        let allowed = answers
            .iter()
            .filter(|d| d.outcome == Outcome::Allow)
            .count();
        assert_eq!(allowed, 1, "round {round}: {answers:?}");
        assert_eq!(count(&answers, "replayed_code"), 63, "round {round}");
    }
    // 64 different wrong codes at once, against a user and against a name nobody has:
    // nine are evaluated, the tenth locks, and the rest are refused unevaluated, alike.
    let right = f.code(DOCTOR_SECRET, 0).parse::<u32>().unwrap();
    for (user, ip) in [("lege", "203.0.113.200"), ("nobody", "203.0.113.201")] {
        let answers = wrong_codes_at_once(&clients, user, ip, right).await;
        assert_eq!(count(&answers, "invalid_code"), 9, "{user}: {answers:?}");
        let locked = answers
            .iter()
            .filter(|d| d.outcome == Outcome::Locked)
            .count();
        assert_eq!(locked, 55, "{user}");
    }
}
