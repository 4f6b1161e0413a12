//! Push approval end to end over QUIC: a frontend's sign-in sends an approval, the
//! reference authenticator (on a connection without a certificate) sees it and answers,
//! and the frontends waiting on it get one `allow` between them. Then the same walk with
//! the `portvakt` binary alone, as the README shows it: a passwordless account, two
//! terminals.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{attempt, audited, free_port, pair_phone, server_binary, start};
use portvakt_client::device::{self, Authenticator, Enrolment, Outcome as Answer, Verdict};
use portvakt_client::{Client, ClientError};
use portvakt_core::admin::TotpSpec;
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{MemoryStore, config};
use portvakt_server::frontend::quic::endpoint::ConnectionLimits;
use portvakt_server::frontend::quic::service::Service;
use portvakt_server::pki::{
    PkiFiles, client_tls, ensure_dev_pki, fingerprint, load_certs, server_tls,
};
use portvakt_store::Engine;
use portvakt_wire::admin::Str;
use portvakt_wire::{Admin, AdminReply, ErrorCode, Frame, Outcome};

const HOME: &str = "203.0.113.9";

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

/// A server on the system clock, with kari (an authenticator app, and a push device
/// still to pair).
fn fixture(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("portvakt-push-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (files, _) = ensure_dev_pki(&dir).unwrap();
    let policy = config::load(include_str!("../../examples/kommune.toml")).unwrap();
    let engine = Engine::new(
        policy,
        MemoryStore::default().into(),
        Pepper::new([6; 32]),
        Box::new(SeededEntropy::new(21)),
    );
    engine.add_user("kommune", "kari", &[], false).unwrap();
    engine
        .import_totp(
            "kommune",
            "kari",
            b"kari-app-secret-0000",
            TotpSpec::default(),
            true,
        )
        .unwrap();
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).unwrap();
    let admins = HashSet::from([fingerprint(&load_certs(&files.admin.0).unwrap()[0])]);
    let service = Service::new(Arc::new(engine), None);
    let (endpoint, _task) = portvakt_server::frontend::quic::endpoint::start(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        admins,
        Arc::new(service),
        ConnectionLimits::default(),
    )
    .unwrap();
    Fixture {
        addr: endpoint.local_addr().unwrap(),
        files,
        dir,
        _endpoint: endpoint,
    }
}

impl Fixture {
    async fn client(&self, admin: bool) -> Client {
        let (cert, key) = if admin {
            &self.files.admin
        } else {
            &self.files.frontend
        };
        let tls = client_tls(&self.files.ca, cert, key).unwrap();
        Client::builder(self.addr, tls).connect().await.unwrap()
    }

    /// Pairs a new push device for kari (made the default) and signs it in on a
    /// connection of its own.
    async fn phone(&self) -> (Authenticator, Client) {
        let admin = self.client(true).await;
        let (phone, conn, method) = pair_phone(&admin, self.addr, &self.files.ca, "kari").await;
        admin
            .admin(Admin::SetDefaultMethod {
                tenant: Str("kommune"),
                user: Str("kari"),
                method,
            })
            .await
            .unwrap();
        (phone, conn)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_frontends_waiting_on_one_approval_get_one_allow() {
    let f = fixture("once");
    let (phone, conn) = f.phone().await;
    let frontend = f.client(false).await;
    let d = frontend.decide(attempt("kari", HOME, None)).await.unwrap();
    assert_eq!(
        (d.outcome, d.reason.as_str()),
        (Outcome::Challenge, "approval_sent")
    );
    let approval = d.approval.expect("an approval");
    // 64 waits at once, each on a stream of its own.
    let mut waits = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let c = frontend.clone();
        waits.spawn(async move {
            c.await_approval(
                attempt("kari", HOME, None),
                approval.id,
                Duration::from_secs(20),
            )
            .await
            .unwrap()
        });
    }
    // The device waits for its list, sees the approval (where and when, never the
    // number), and approves with the number the sign-in screen shows.
    let listed = phone.pending(&conn, Duration::from_secs(5)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id, listed[0].location.as_str()),
        (approval.id, "elsewhere")
    );
    assert_eq!(
        phone
            .answer(&conn, approval.id, Verdict::Approve(approval.number))
            .await
            .unwrap(),
        Answer::Approved
    );
    let mut outcomes = Vec::new();
    while let Some(d) = waits.join_next().await {
        let d = d.unwrap();
        outcomes.push((d.outcome, d.reason));
    }
    let allowed: Vec<_> = outcomes
        .iter()
        .filter(|(o, _)| *o == Outcome::Allow)
        .collect();
    assert_eq!(allowed.len(), 1, "{outcomes:?}");
    assert_eq!(allowed[0].1, "second_factor_verified");
    assert!(
        outcomes
            .iter()
            .all(|(o, r)| *o == Outcome::Allow || (*o == Outcome::Deny && r == "challenge_invalid")),
        "{outcomes:?}"
    );
    // Answered once: a second answer is refused.
    match phone.answer(&conn, approval.id, Verdict::Deny).await {
        Err(ClientError::Refused {
            code: ErrorCode::Refused,
            ..
        }) => {}
        other => panic!("a second answer: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_ends_with_the_device_s_refusal_or_the_wait_s_end() {
    let f = fixture("refuse");
    let (phone, conn) = f.phone().await;
    let frontend = f.client(false).await;
    // Nobody answers: the wait ends, still pending.
    let d = frontend.decide(attempt("kari", HOME, None)).await.unwrap();
    let a = d.approval.unwrap();
    let d = frontend
        .await_approval(
            attempt("kari", HOME, None),
            a.id,
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    assert_eq!(
        (d.outcome, d.reason.as_str()),
        (Outcome::Challenge, "approval_pending")
    );
    // A wrong number: refused at once, and counted.
    let wait = {
        let c = frontend.clone();
        tokio::spawn(async move {
            c.await_approval(attempt("kari", HOME, None), a.id, Duration::from_secs(20))
                .await
                .unwrap()
        })
    };
    let wrong = if a.number == 99 { 10 } else { a.number + 1 };
    assert_eq!(
        phone
            .answer(&conn, a.id, Verdict::Approve(wrong))
            .await
            .unwrap(),
        Answer::WrongNumber
    );
    let d = wait.await.unwrap();
    assert_eq!(
        (d.outcome, d.reason.as_str()),
        (Outcome::Deny, "number_mismatch")
    );
    // A report: refused, the account locked away from trusted networks, and audited.
    let d = frontend.decide(attempt("kari", HOME, None)).await.unwrap();
    let b = d.approval.unwrap();
    assert_eq!(
        phone.answer(&conn, b.id, Verdict::Report).await.unwrap(),
        Answer::Reported
    );
    let d = frontend
        .await_approval(attempt("kari", HOME, None), b.id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(d.outcome, Outcome::Locked, "{d:?}");
    // (The fixture keeps no audit trail, being in memory: the binary's walk below checks
    // that the report is audited.)
    // A frontend cannot use device frames, and a device cannot decide.
    match frontend
        .call(&Frame::Device(0, portvakt_wire::Device::DeviceNonce {}))
        .await
    {
        Err(ClientError::Refused {
            code: ErrorCode::Forbidden,
            ..
        }) => {}
        other => panic!("a frontend asked for a device nonce: {other:?}"),
    }
    match conn.decide(attempt("kari", HOME, None)).await {
        Err(ClientError::Refused {
            code: ErrorCode::Forbidden,
            ..
        }) => {}
        other => panic!("a device decided: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_must_prove_its_key_on_its_connection() {
    let f = fixture("prove");
    let (phone, _conn) = f.phone().await;
    // A new connection that has not signed in is told to.
    let fresh = device::connect(f.addr, &f.files.ca).await.unwrap();
    match phone.pending(&fresh, Duration::ZERO).await {
        Err(ClientError::Refused {
            code: ErrorCode::Refused,
            message,
        }) => assert!(message.contains("sign the device in first"), "{message}"),
        other => panic!("an unproved connection listed approvals: {other:?}"),
    }
    // Someone else's key cannot sign in as kari's device.
    let conn = device::connect(f.addr, &f.files.ca).await.unwrap();
    let enrolment_less =
        Authenticator::from_parts(f.addr, "kommune", "kari", phone.method, &ring_pkcs8()).unwrap();
    match enrolment_less.sign_in(&conn).await {
        Err(ClientError::Refused {
            code: ErrorCode::Refused,
            ..
        }) => {}
        other => panic!("another key signed in: {other:?}"),
    }
}

fn ring_pkcs8() -> Vec<u8> {
    use ring::signature::Ed25519KeyPair;
    Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

/// `portvakt` with `args`; its standard output, and whether it succeeded.
fn run(args: &[&str]) -> (String, bool) {
    let out = Command::new(server_binary()).args(args).output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

/// `portvakt admin ... --json` against `server`, which must succeed; its answer.
fn cli_admin(server: &str, data: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["admin", "--server", server, "--data", data, "--json"];
    all.extend_from_slice(args);
    let (out, ok) = run(&all);
    assert!(ok, "admin {args:?}: {out}");
    serde_json::from_str(out.trim()).unwrap()
}

/// `portvakt check --json` for `user` from home without a password, with `extra`; its
/// answer, and whether it exited 0 (allow).
fn cli_check(server: &str, data: &str, user: &str, extra: &[&str]) -> (serde_json::Value, bool) {
    let mut all = vec![
        "check",
        "--server",
        server,
        "--data",
        data,
        "--json",
        "--tenant",
        "kommune",
        "--user",
        user,
        "--ip",
        HOME,
        "--first-factor",
        "none",
    ];
    all.extend_from_slice(extra);
    let (out, ok) = run(&all);
    (serde_json::from_str(out.trim()).unwrap(), ok)
}

#[test]
fn the_readme_s_walk_a_passwordless_sign_in_approved_in_a_second_terminal() {
    let data = std::env::temp_dir().join(format!("portvakt-push-walk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (_server, _) = start(&data, addr);
    let (server, data_arg) = (addr.to_string(), data.display().to_string());
    let admin = |args: &[&str]| cli_admin(&server, &data_arg, args);
    let who = ["--tenant", "kommune", "--user", "pia"];
    admin(&[&["add-user"][..], &who, &["--passwordless"]].concat());
    // The municipality asks for two methods: an app, and the app's notification.
    admin(&[&["add-security-key"][..], &who].concat());
    let started = admin(&[&["enroll-push"][..], &who].concat());
    let method = started["method"].as_u64().unwrap().to_string();
    let uri = Enrolment {
        server: addr,
        tenant: "kommune".into(),
        user: "pia".into(),
        method: method.parse().unwrap(),
        token: started["token"].as_str().unwrap().into(),
    }
    .to_uri();
    // Terminal two: the phone pairs.
    let key = data.join("pia.key");
    let key_arg = key.display().to_string();
    let phone = |args: &[&str]| {
        let mut all = vec!["authenticator", "--key", &key_arg, "--data", &data_arg];
        all.extend_from_slice(args);
        run(&all)
    };
    let (out, ok) = phone(&["enrol", &uri]);
    assert!(ok, "{out}");
    admin(&[&["set-default-method"][..], &who, &["--method", &method]].concat());
    // Terminal one: pia signs in without a password; the screen shows a number.
    let check = |extra: &[&str]| cli_check(&server, &data_arg, "pia", extra).0;
    let d = check(&[]);
    assert_eq!(d["reason"], "approval_sent", "{d}");
    let id = d["approval"]["id"].as_str().unwrap().to_owned();
    let number = d["approval"]["number"].as_u64().unwrap().to_string();
    // The frontend waits; the phone lists the approval and approves with the number.
    let waiting = {
        let (server, data_arg, id) = (server.clone(), data_arg.clone(), id.clone());
        std::thread::spawn(move || {
            cli_check(
                &server,
                &data_arg,
                "pia",
                &["--approval", &id, "--wait-s", "20"],
            )
        })
    };
    let (out, ok) = phone(&["list", "--wait-s", "10"]);
    assert!(ok && out.contains(&id), "{out}");
    assert!(
        !out.contains(&format!(" {number} ")),
        "the number reached the device: {out}"
    );
    let (out, ok) = phone(&["approve", &id, &number]);
    assert!(ok && out.contains("approved"), "{out}");
    let (d, ok) = waiting.join().unwrap();
    assert!(ok, "{d}");
    assert_eq!(
        (d["outcome"].as_str(), d["method"].as_str()),
        (Some("allow"), Some("push"))
    );
    // Spent.
    let d = check(&["--approval", &id, "--wait-s", "0"]);
    assert_eq!(d["outcome"], "deny", "{d}");
    // A report locks pia away from trusted networks, and is in the audit trail.
    let d = check(&[]);
    let id = d["approval"]["id"].as_str().unwrap().to_owned();
    let (out, ok) = phone(&["report", &id]);
    assert!(ok && out.contains("reported"), "{out}");
    let d = check(&[]);
    assert_eq!(d["outcome"], "locked", "{d}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = rt.block_on(async {
        let files = PkiFiles::in_dir(&data.join("certs"));
        let admin = common::connect(addr, &files, true).await;
        audited(&admin).await
    });
    assert!(
        seen.contains(&("report-suspicious".to_owned(), "pia".to_owned())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("pair-push".to_owned(), "pia".to_owned())),
        "{seen:?}"
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// An approval outlives a `kill -9` of the server on its durable store: approved before,
/// it lets one sign-in through after, and once spent it stays spent across another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_survives_a_crash_and_is_spent_once() {
    let data = std::env::temp_dir().join(format!("portvakt-push-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (server, _) = start(&data, addr);
    let files = PkiFiles::in_dir(&data.join("certs"));
    let admin = common::connect(addr, &files, true).await;
    common::enrol(&admin, "kari").await.unwrap();
    let (phone, conn, method) = pair_phone(&admin, addr, &files.ca, "kari").await;
    admin
        .admin(Admin::SetDefaultMethod {
            tenant: Str("kommune"),
            user: Str("kari"),
            method,
        })
        .await
        .unwrap();
    let frontend = common::connect(addr, &files, false).await;
    let approved = frontend.decide(attempt("kari", HOME, None)).await.unwrap();
    let approved = approved.approval.unwrap();
    let pending = frontend.decide(attempt("kari", HOME, None)).await.unwrap();
    let pending = pending.approval.unwrap();
    assert_eq!(
        phone
            .answer(&conn, approved.id, Verdict::Approve(approved.number))
            .await
            .unwrap(),
        Answer::Approved
    );
    // The answer was acknowledged, so it is durable: kill -9 now.
    drop(server);
    let (server, _) = start(&data, addr);
    let frontend = common::connect(addr, &files, false).await;
    let redeem = |id| {
        let c = frontend.clone();
        async move {
            c.await_approval(attempt("kari", HOME, None), id, Duration::ZERO)
                .await
                .unwrap()
        }
    };
    assert_eq!(redeem(approved.id).await.outcome, Outcome::Allow);
    assert_eq!(redeem(approved.id).await.outcome, Outcome::Deny);
    // The approval still waiting is still listed for the device, and can be answered.
    let conn = device::connect(addr, &files.ca).await.unwrap();
    phone.sign_in(&conn).await.unwrap();
    let listed = phone.pending(&conn, Duration::ZERO).await.unwrap();
    assert_eq!(
        listed.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![pending.id]
    );
    phone
        .answer(&conn, pending.id, Verdict::Deny)
        .await
        .unwrap();
    drop(server);
    let (_server, _) = start(&data, addr);
    let frontend = common::connect(addr, &files, false).await;
    let d = frontend
        .await_approval(attempt("kari", HOME, None), approved.id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        (d.outcome, d.reason.as_str()),
        (Outcome::Deny, "challenge_invalid")
    );
    let d = frontend
        .await_approval(attempt("kari", HOME, None), pending.id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        (d.outcome, d.reason.as_str()),
        (Outcome::Deny, "approval_denied")
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// A passwordless account signs in with a security key over QUIC: registered through
/// the administrator's frames, asked for by the sign-in, answered with the browser's JSON
/// from a software key, once per challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passwordless_account_signs_in_with_a_security_key() {
    use portvakt_core::testing::SoftKey;
    use portvakt_wire::admin::{LongStr, StrList};
    use portvakt_wire::{Decide, Proof, Purpose};
    let f = fixture("key");
    let admin = f.client(true).await;
    admin
        .admin(Admin::AddUser {
            tenant: Str("kommune"),
            user: Str("pia"),
            groups: StrList(vec![]),
            passwordless: true,
        })
        .await
        .unwrap();
    admin
        .admin(Admin::ImportTotp {
            tenant: Str("kommune"),
            user: Str("pia"),
            secret: portvakt_wire::admin::Bytes(b"pia-app-secret-00000"),
            algorithm: 1,
            digits: 6,
            period: 30,
            active: true,
        })
        .await
        .unwrap();
    let answer = admin
        .admin(Admin::SecurityKeyStart {
            tenant: Str("kommune"),
            user: Str("pia"),
        })
        .await
        .unwrap();
    let Frame::AdminReply(_, AdminReply::SecurityKeyOptions { options, .. }) =
        answer.frame().unwrap()
    else {
        panic!("{answer:?}")
    };
    let key = SoftKey::new(b"pia's yubikey", "https://login.kommune.no");
    let registration = key.register(options.0);
    let answer = admin
        .admin(Admin::SecurityKeyFinish {
            tenant: Str("kommune"),
            user: Str("pia"),
            response: LongStr(&registration),
        })
        .await
        .unwrap();
    let Frame::AdminReply(_, AdminReply::MethodAdded { method }) = answer.frame().unwrap() else {
        panic!("{answer:?}")
    };
    admin
        .admin(Admin::SetDefaultMethod {
            tenant: Str("kommune"),
            user: Str("pia"),
            method,
        })
        .await
        .unwrap();
    let frontend = f.client(false).await;
    let sign_in = |proof| Decide {
        tenant: "kommune",
        user: "pia",
        ip: HOME.parse().unwrap(),
        purpose: Purpose::SignIn,
        first_factor: portvakt_wire::FirstFactor::None,
        proof,
        device_token: None,
        remember_device: false,
    };
    let d = frontend.decide(sign_in(None)).await.unwrap();
    assert_eq!(
        (d.outcome, d.reason.as_str()),
        (Outcome::Challenge, "security_key_requested")
    );
    let options = d.security_key.expect("options for the browser");
    let signed = key.sign(&options);
    let d = frontend
        .decide(sign_in(Some(Proof::SecurityKey(&signed))))
        .await
        .unwrap();
    assert_eq!(
        (d.outcome, d.reason.as_str(), d.method),
        (
            Outcome::Allow,
            "second_factor_verified",
            Some(portvakt_wire::MethodKind::SecurityKey)
        )
    );
    // The same answer again: refused, its challenge spent.
    let d = frontend
        .decide(sign_in(Some(Proof::SecurityKey(&signed))))
        .await
        .unwrap();
    assert_eq!(
        (d.outcome, d.reason.as_str()),
        (Outcome::Deny, "challenge_invalid")
    );
    // Malformed JSON, at the frame's limit and past it.
    let junk = "{".repeat(portvakt_wire::MAX_KEY_RESPONSE);
    let d = frontend
        .decide(sign_in(Some(Proof::SecurityKey(&junk))))
        .await
        .unwrap();
    assert_eq!(
        (d.outcome, d.reason.as_str()),
        (Outcome::Deny, "malformed_proof")
    );
    let over = "{".repeat(portvakt_wire::MAX_KEY_RESPONSE + 1);
    assert!(
        frontend
            .decide(sign_in(Some(Proof::SecurityKey(&over))))
            .await
            .is_err()
    );
}

/// The same with the `portvakt` binary: the options out of `admin security-key-start` and
/// `check`, the browser's answers (a software key's) into `admin security-key-finish` and
/// `check --security-key`.
#[test]
fn the_binary_registers_a_security_key_and_signs_in_with_it() {
    use portvakt_core::testing::SoftKey;
    let data = std::env::temp_dir().join(format!("portvakt-key-walk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (_server, _) = start(&data, addr);
    let (server, data_arg) = (addr.to_string(), data.display().to_string());
    let admin = |args: &[&str]| cli_admin(&server, &data_arg, args);
    let who = ["--tenant", "kommune", "--user", "pia"];
    admin(&[&["add-user"][..], &who, &["--passwordless"]].concat());
    admin(&[&["add-security-key"][..], &who].concat());
    let options = admin(&[&["security-key-start"][..], &who].concat());
    let key = SoftKey::new(b"pia-cli-key", "https://login.kommune.no");
    let answer = data.join("registration.json");
    std::fs::write(&answer, key.register(&options["options"].to_string())).unwrap();
    let added = admin(
        &[
            &["security-key-finish"][..],
            &who,
            &["--response", &answer.display().to_string()],
        ]
        .concat(),
    );
    let method = added["method"].as_u64().unwrap().to_string();
    admin(&[&["set-default-method"][..], &who, &["--method", &method]].concat());
    let check = |extra: &[&str]| cli_check(&server, &data_arg, "pia", extra);
    let (d, _) = check(&[]);
    assert_eq!(d["reason"], "security_key_requested", "{d}");
    let signed = data.join("assertion.json");
    std::fs::write(&signed, key.sign(&d["security_key"].to_string())).unwrap();
    let (d, ok) = check(&["--security-key", &signed.display().to_string()]);
    assert!(ok, "{d}");
    assert_eq!(
        (d["outcome"].as_str(), d["method"].as_str()),
        (Some("allow"), Some("security_key")),
        "{d}"
    );
    let _ = std::fs::remove_dir_all(&data);
}
