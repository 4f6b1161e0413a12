//! Real QUIC on loopback: a server with the development PKI, frontends and an
//! administrator connecting with their certificates.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use portvakt::client::Client;
use portvakt::pki::{PkiFiles, client_tls, ensure_dev_pki, fingerprint, load_certs, server_tls};
use portvakt::service::Service;
use portvakt_core::admin::TotpSpec;
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{Engine, MemoryStore, config};
use portvakt_wire::admin::{Str, StrList};
use portvakt_wire::*;

const SECRET: &[u8] = b"12345678901234567890";

struct Fixture {
    addr: SocketAddr,
    files: PkiFiles,
    dir: PathBuf,
    _endpoint: quinn::Endpoint,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("portvakt-quic-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (files, _) = ensure_dev_pki(&dir).unwrap();
    let policy = config::load(include_str!("../../examples/kommune.toml")).unwrap();
    let engine = Engine::new(
        policy,
        MemoryStore::default(),
        Pepper::new([5; 32]),
        Box::new(SeededEntropy::new(11)),
    );
    engine.add_user("kommune", "kari", &[], false).unwrap();
    engine
        .import_totp("kommune", "kari", SECRET, TotpSpec::default(), true)
        .unwrap();
    engine.add_security_key("kommune", "kari").unwrap(); // a second method: the municipality asks for two
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).unwrap();
    let admins = HashSet::from([fingerprint(&load_certs(&files.admin.0).unwrap()[0])]);
    let service = Arc::new(Service::new(Arc::new(engine), None));
    let (endpoint, _task) =
        portvakt::server::start("127.0.0.1:0".parse().unwrap(), tls, admins, service).unwrap();
    Fixture {
        addr: endpoint.local_addr().unwrap(),
        files,
        dir,
        _endpoint: endpoint,
    }
}

async fn frontend(f: &Fixture) -> Client {
    let tls = client_tls(&f.files.ca, &f.files.frontend.0, &f.files.frontend.1).unwrap();
    Client::connect(f.addr, "localhost", tls).await.unwrap()
}

fn decide<'a>(user: &'a str, ip: &str, code: Option<&'a str>) -> Frame<'a> {
    Frame::Decide(
        1,
        Decide {
            tenant: "kommune",
            user,
            ip: ip.parse().unwrap(),
            purpose: Purpose::SignIn,
            first_factor: FirstFactor::Ok,
            proof: code.map(Proof::Totp),
            device_token: None,
            remember_device: false,
        },
    )
}

fn now_code() -> String {
    let step = portvakt::server::now().as_secs() / 30;
    format!(
        "{:06}",
        OtpKey::new(Algorithm::Sha1, SECRET).hotp(step, Digits::SIX)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_over_quic_with_mutual_tls() {
    let f = fixture("decide");
    let c = frontend(&f).await;
    let answer = c.call(&decide("kari", "10.20.1.1", None)).await.unwrap();
    let Frame::Decision(_, d) = Frame::decode(&answer).unwrap() else {
        panic!()
    };
    assert_eq!(
        (d.outcome, d.rule, d.location),
        (
            Outcome::Allow,
            "municipal-network-single-factor",
            "municipal-network"
        )
    );

    let answer = c.call(&decide("kari", "203.0.113.5", None)).await.unwrap();
    let Frame::Decision(_, d) = Frame::decode(&answer).unwrap() else {
        panic!()
    };
    assert_eq!(d.outcome, Outcome::Challenge);

    let code = now_code();
    let answer = c
        .call(&decide("kari", "203.0.113.5", Some(&code)))
        .await
        .unwrap();
    let Frame::Decision(_, d) = Frame::decode(&answer).unwrap() else {
        panic!()
    };
    // The code's step may have ended between computing it and deciding; both answers are
    // right then, but a replay below must never be allowed.
    assert!(
        d.outcome == Outcome::Allow || d.reason == "invalid_code",
        "{d:?}"
    );
    let answer = c
        .call(&decide("kari", "203.0.113.5", Some(&code)))
        .await
        .unwrap();
    let Frame::Decision(_, d) = Frame::decode(&answer).unwrap() else {
        panic!()
    };
    assert_ne!(d.outcome, Outcome::Allow, "a code is accepted once");

    // Unknown user and wrong code look alike over the wire too.
    let a = c
        .call(&decide("kari", "203.0.113.6", Some("000000")))
        .await
        .unwrap();
    let b = c
        .call(&decide("nobody", "203.0.113.6", Some("000000")))
        .await
        .unwrap();
    assert_eq!(a, b);
    c.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_come_from_the_client_certificate() {
    let f = fixture("roles");
    let add = Frame::Admin(
        3,
        Admin::AddUser {
            tenant: Str("kommune"),
            user: Str("ola"),
            groups: StrList(vec![]),
            passwordless: false,
        },
    );
    let c = frontend(&f).await;
    let answer = c.call(&add).await.unwrap();
    assert!(matches!(
        Frame::decode(&answer).unwrap(),
        Frame::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    ));
    let tls = client_tls(&f.files.ca, &f.files.admin.0, &f.files.admin.1).unwrap();
    let admin = Client::connect(f.addr, "localhost", tls).await.unwrap();
    let answer = admin.call(&add).await.unwrap();
    assert!(matches!(
        Frame::decode(&answer).unwrap(),
        Frame::AdminReply(3, AdminReply::UserAdded { .. })
    ));

    // A client without a certificate is refused: the handshake or the first request fails.
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
    anon.alpn_protocols = vec![ALPN.to_vec()];
    match Client::connect(f.addr, "localhost", anon).await {
        Err(_) => {}
        Ok(c) => assert!(
            c.call(&decide("kari", "10.20.1.1", None)).await.is_err(),
            "served without a certificate"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_the_stream_goes_on() {
    let f = fixture("bad");
    let c = frontend(&f).await;
    // A well-delimited frame of an unknown kind, then a good one on the same stream.
    let answer = c.call_raw(&[0, 0, 0, 5, 0x42, 0, 0, 0, 9]).await.unwrap();
    let Frame::Error { id, code, message } = Frame::decode(&answer).unwrap() else {
        panic!()
    };
    assert_eq!(
        (id, code, message),
        (9, ErrorCode::UnknownKind, "unknown frame kind 0x42")
    );
    let answer = c.call(&decide("kari", "10.20.1.1", None)).await.unwrap();
    assert!(matches!(
        Frame::decode(&answer).unwrap(),
        Frame::Decision(_, _)
    ));
    // An oversized length prefix cannot be skipped: the server says so and closes.
    let answer = c.call_raw(&[0, 0, 0x40, 0x01, 1]).await.unwrap();
    let Frame::Error { code, .. } = Frame::decode(&answer).unwrap() else {
        panic!()
    };
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(
        c.call(&decide("kari", "10.20.1.1", None)).await.is_err(),
        "the connection is closed"
    );
    // Other connections are unaffected.
    let fresh = frontend(&f).await;
    assert!(fresh.call(&decide("kari", "10.20.1.1", None)).await.is_ok());
}
