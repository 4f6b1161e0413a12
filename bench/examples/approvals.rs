//! Push approvals resolved per second end to end over QUIC, beside TOTP sign-ins in the
//! same run: a server in this process (memory store, loopback), `WORKERS` frontends (32 by
//! default), each with its own user and that user's push device on a connection of its own.
//! One approval is: the frontend's sign-in (an approval issued), a wait for its outcome on
//! a stream of its own, the device's list and signed answer, and the one `allow`. The
//! baseline is a sign-in with a right authenticator code from the same frontends for the
//! same time. Prints rates, median latencies and the process's CPU time per operation
//! (client and server share the machine's two cores, so CPU per operation is the figure
//! to compare). `SECS` sets each phase's length (default 10).
#![allow(clippy::disallowed_methods, missing_docs)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portvakt_bench::process_cpu;
use portvakt_client::Client;
use portvakt_client::device::{self, Authenticator, Enrolment, Verdict};
use portvakt_core::admin::TotpSpec;
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{MemoryStore, config};
use portvakt_server::frontend::quic::endpoint::ConnectionLimits;
use portvakt_server::frontend::quic::service::Service;
use portvakt_server::pki::{client_tls, ensure_dev_pki, fingerprint, load_certs, server_tls};
use portvakt_store::Engine;
use portvakt_wire::admin::Str;
use portvakt_wire::{Admin, AdminReply, Decide, FirstFactor, Frame, Outcome, Proof, Purpose};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &[u8] = b"12345678901234567890";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sign_in<'a>(user: &'a str, proof: Option<Proof<'a>>) -> Decide<'a> {
    Decide {
        tenant: "kommune",
        user,
        ip: "203.0.113.9".parse().unwrap(),
        purpose: Purpose::SignIn,
        first_factor: FirstFactor::Ok,
        proof,
        device_token: None,
        remember_device: false,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let workers = env("WORKERS", 32) as usize;
    let secs = env("SECS", 10);
    let dir = std::env::temp_dir().join(format!("portvakt-approvals-{}", std::process::id()));
    let (files, _) = ensure_dev_pki(&dir).unwrap();
    // The fatigue budget is per user; here each user is asked thousands of times a minute
    // on purpose, so the tenant's budget is raised (three may still wait at once).
    let text = format!(
        "{}\n[tenants.push]\nper_user = {{ max = 4000000000, per_s = 900 }}\n",
        include_str!("../../examples/kommune.toml")
    );
    let engine = Engine::new(
        config::load(&text).unwrap(),
        MemoryStore::default().into(),
        Pepper::new([1; 32]),
        Box::new(SeededEntropy::new(1)),
    );
    let names: Vec<String> = (0..workers)
        .map(|i| format!("user{i}@kommune.no"))
        .collect();
    // The baseline's users: a right code can be used once per step, so each sign-in of the
    // baseline is a different user's.
    let base_users = env("BASE_USERS", 300_000) as usize;
    let base: Vec<String> = (0..base_users)
        .map(|i| format!("base{i}@kommune.no"))
        .collect();
    for n in &base {
        engine.add_user("kommune", n, &[], false).unwrap();
        engine
            .import_totp("kommune", n, SECRET, TotpSpec::default(), true)
            .unwrap();
        engine.add_security_key("kommune", n).unwrap();
    }
    for n in &names {
        engine.add_user("kommune", n, &[], false).unwrap();
        engine
            .import_totp("kommune", n, SECRET, TotpSpec::default(), true)
            .unwrap();
    }
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).unwrap();
    let admins = HashSet::from([fingerprint(&load_certs(&files.admin.0).unwrap()[0])]);
    let limits = ConnectionLimits {
        per_address: 4 * workers + 16,
        ..ConnectionLimits::default()
    };
    let (endpoint, _task) = portvakt_server::frontend::quic::endpoint::start(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        admins,
        Arc::new(Service::new(Arc::new(engine), None)),
        limits,
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let admin = Client::builder(
        addr,
        client_tls(&files.ca, &files.admin.0, &files.admin.1).unwrap(),
    )
    .connect()
    .await
    .unwrap();
    let frontend = Client::builder(
        addr,
        client_tls(&files.ca, &files.frontend.0, &files.frontend.1).unwrap(),
    )
    .connect()
    .await
    .unwrap();
    // Every user pairs a device, over the network as a phone would.
    let mut phones = Vec::new();
    for n in &names {
        let answer = admin
            .admin(Admin::EnrollPush {
                tenant: Str("kommune"),
                user: Str(n),
            })
            .await
            .unwrap();
        let Frame::AdminReply(_, AdminReply::PushEnrolled { method, token, .. }) =
            answer.frame().unwrap()
        else {
            panic!("{answer:?}")
        };
        let e = Enrolment {
            server: addr,
            tenant: "kommune".into(),
            user: n.clone(),
            method,
            token: token.0.to_owned(),
        };
        let conn = device::connect(addr, &files.ca).await.unwrap();
        let phone = Authenticator::enrol(&conn, &e).await.unwrap();
        phone.sign_in(&conn).await.unwrap();
        admin
            .admin(Admin::SetDefaultMethod {
                tenant: Str("kommune"),
                user: Str(n),
                method,
            })
            .await
            .unwrap();
        phones.push((phone, conn));
    }
    let phones = Arc::new(phones);
    let names = Arc::new(names);
    let key = OtpKey::new(Algorithm::Sha1, SECRET);

    // Baseline: sign-ins with a right authenticator code, each a different user's.
    let base = Arc::new(base);
    let cpu = process_cpu();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (c, base, key) = (frontend.clone(), base.clone(), key.clone());
        tasks.spawn(async move {
            let (mut done, mut lat) = (0u64, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut u = w;
            while Instant::now() < deadline {
                // Out of users: the phase ends early, and its rate is over its own time.
                let Some(user) = base.get(u) else {
                    break;
                };
                let step = portvakt_server::clock::now().as_secs() / 30;
                let code = format!("{:06}", key.hotp(step, Digits::SIX));
                let t = Instant::now();
                let d = c
                    .decide(sign_in(user, Some(Proof::Totp(&code))))
                    .await
                    .unwrap();
                assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
                lat.push(t.elapsed());
                done += 1;
                u += workers;
            }
            (done, lat)
        });
    }
    let (mut totp, mut totp_lat) = (0u64, Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (n, l) = r.unwrap();
        totp += n;
        totp_lat.extend(l);
    }
    let (totp_wall, totp_cpu) = (start.elapsed(), process_cpu() - cpu);

    // Approvals.
    let cpu = process_cpu();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (c, names, phones) = (frontend.clone(), names.clone(), phones.clone());
        tasks.spawn(async move {
            let (mut done, mut lat) = (0u64, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(secs);
            let (phone, conn) = &phones[w];
            while Instant::now() < deadline {
                let t = Instant::now();
                let d = c.decide(sign_in(&names[w], None)).await.unwrap();
                let a = d.approval.unwrap_or_else(|| panic!("{d:?}"));
                let waiting = {
                    let (c, names) = (c.clone(), names.clone());
                    tokio::spawn(async move {
                        c.await_approval(sign_in(&names[w], None), a.id, Duration::from_secs(10))
                            .await
                            .unwrap()
                    })
                };
                let listed = phone.pending(conn, Duration::from_secs(5)).await.unwrap();
                assert!(listed.iter().any(|p| p.id == a.id));
                phone
                    .answer(conn, a.id, Verdict::Approve(a.number))
                    .await
                    .unwrap();
                let d = waiting.await.unwrap();
                assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
                lat.push(t.elapsed());
                done += 1;
            }
            (done, lat)
        });
    }
    let (mut approvals, mut push_lat) = (0u64, Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (n, l) = r.unwrap();
        approvals += n;
        push_lat.extend(l);
    }
    let (push_wall, push_cpu) = (start.elapsed(), process_cpu() - cpu);

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!("workers {workers}, {secs} s each");
    println!(
        "totp decisions: {totp} in {totp_wall:.2?}: {:.0}/s, median {:.2?}, {:.1} µs CPU each (client and server)",
        rate(totp, totp_wall),
        median(totp_lat),
        totp_cpu * 1e6 / totp as f64
    );
    println!(
        "push approvals: {approvals} in {push_wall:.2?}: {:.0}/s, median {:.2?}, {:.1} µs CPU each (client and server)",
        rate(approvals, push_wall),
        median(push_lat),
        push_cpu * 1e6 / approvals as f64
    );
    println!(
        "an approval costs {:.1} TOTP decisions of CPU",
        (push_cpu / approvals as f64) / (totp_cpu / totp as f64)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
