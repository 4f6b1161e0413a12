//! What a push approval costs in the core, beside a TOTP decision in the same run.
//!
//! `PORTVAKT_BENCH_USERS` users (default 100,000) each have an authenticator app and a
//! paired push device. `totp_allow` signs the next user in with a right code (the
//! baseline); `push_challenge` signs the next user in without a proof, which issues an
//! approval (the user's budget drawn, the approval stored, the number made);
//! `push_approved` is a whole approval in the core: issued, answered by the device
//! (an Ed25519 signature checked; the device's own signing is left out of the time) and
//! redeemed for the one `allow`; `ed25519_verify` is the one signature check alone. Each pass over the
//! users moves time 125 s on, so earlier approvals have expired and no user's fatigue
//! budget (3 waiting, 10 per 15 minutes) is what is measured.
#![allow(clippy::disallowed_methods, missing_docs)] // a bench measures with the clock

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use portvakt_bench::{Fixture, T0, at};
use portvakt_core::push::{self, DeviceRef, Pairing, Verdict};
use portvakt_core::{Outcome, Proof, Reason};
use ring::signature::{Ed25519KeyPair, KeyPair};

fn users() -> usize {
    std::env::var("PORTVAKT_BENCH_USERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// Pairs one push device (one key for all: the per-user state is still separate) with
/// every user and makes it the default.
fn pair_all(f: &Fixture, phone: &Ed25519KeyPair) -> Vec<DeviceRef> {
    let public = phone.public_key().as_ref().to_vec();
    f.names
        .iter()
        .map(|name| {
            let started = f.engine.enroll_push("kommune", name, at(T0)).unwrap();
            let token = started.token.expose().to_owned();
            let m = push::enrol_message("kommune", name, started.method, &token, &public);
            let signature = phone.sign(&m);
            f.engine
                .pair_push(
                    &Pairing {
                        tenant: "kommune",
                        user: name,
                        method: started.method,
                        token: &token,
                        key: &public,
                        signature: signature.as_ref(),
                    },
                    at(T0),
                )
                .unwrap();
            f.engine
                .set_default_method("kommune", name, started.method)
                .unwrap();
            let nonce = [1u8; push::NONCE_LEN];
            let s = phone.sign(&push::sign_in_message(
                &nonce,
                "kommune",
                name,
                started.method,
            ));
            f.engine
                .device_sign_in("kommune", name, started.method, &nonce, s.as_ref())
                .unwrap()
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Path {
    Totp,
    Challenge,
    Approved,
}

fn run(
    f: &Fixture,
    phone: &Ed25519KeyPair,
    devices: &[DeviceRef],
    path: Path,
    iters: u64,
    pass: &mut u64,
) -> Duration {
    let n = f.names.len() as u64;
    let first = *pass;
    let codes: Vec<String> = match path {
        Path::Totp => (0..=iters / n)
            .map(|p| f.code(T0 + (first + p) * 30))
            .collect(),
        _ => Vec::new(),
    };
    // The device's signing is the phone's work, not the server's: left out of the time.
    let mut signing = Duration::ZERO;
    let start = Instant::now();
    for i in 0..iters {
        let (u, p) = ((i % n) as usize, i / n);
        match path {
            Path::Totp => {
                let req = f.request(u, Some(Proof::Totp(&codes[p as usize])));
                black_box(f.engine.decide(&req, at(T0 + (first + p) * 30)));
            }
            Path::Challenge => {
                let now = at(T0 + (first + p) * 125);
                black_box(f.engine.decide(&f.request(u, None), now));
            }
            Path::Approved => {
                let now = at(T0 + (first + p) * 125);
                let d = f.engine.decide(&f.request(u, None), now);
                let a = d.approval.expect("an approval");
                let signed = Instant::now();
                let m = push::answer_message(&a.id, Verdict::Approve, a.number);
                let s = phone.sign(&m);
                signing += signed.elapsed();
                f.engine
                    .answer_approval(
                        &devices[u],
                        a.id,
                        Verdict::Approve,
                        a.number,
                        s.as_ref(),
                        now,
                    )
                    .expect("approved");
                let hex = a.id.to_hex();
                black_box(f.engine.decide(&f.request(u, Some(Proof::Push(&hex))), now));
            }
        }
    }
    let elapsed = start.elapsed().saturating_sub(signing);
    *pass += iters / n + 1;
    elapsed
}

fn bench(c: &mut Criterion) {
    let n = users();
    let f = Fixture::load(n);
    let phone = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
    let devices = pair_all(&f, &phone);
    // Each path is what it is named after.
    let probe = f.engine.decide(&f.request(0, None), at(T0 + 10));
    assert_eq!(probe.reason, Reason::ApprovalSent, "{probe:?}");
    let mut pass = 1_000u64;
    let mut g = c.benchmark_group("push");
    g.sample_size(20);
    for (name, path) in [
        ("totp_allow", Path::Totp),
        ("push_challenge", Path::Challenge),
        ("push_approved", Path::Approved),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| run(&f, &phone, &devices, path, iters, &mut pass))
        });
    }
    // What one answer's signature check costs alone, for the share of `push_approved`.
    let m = push::answer_message(&portvakt_core::ChallengeId([1; 16]), Verdict::Approve, 42);
    let sig = phone.sign(&m);
    let public: [u8; push::KEY_LEN] = phone.public_key().as_ref().try_into().unwrap();
    g.bench_function("ed25519_verify", |b| {
        b.iter(|| push::verify(black_box(&public), black_box(&m), black_box(sig.as_ref())))
    });
    g.finish();
    // The last approval of the run was let through: a whole approval is one allow.
    let d = f
        .engine
        .decide(&f.request(1, None), at(T0 + (pass + 1) * 125));
    let a = d.approval.unwrap();
    let m = push::answer_message(&a.id, Verdict::Approve, a.number);
    let s = phone.sign(&m);
    let now = at(T0 + (pass + 1) * 125);
    f.engine
        .answer_approval(
            &devices[1],
            a.id,
            Verdict::Approve,
            a.number,
            s.as_ref(),
            now,
        )
        .unwrap();
    let hex = a.id.to_hex();
    let d = f.engine.decide(&f.request(1, Some(Proof::Push(&hex))), now);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
}

criterion_group!(benches, bench);
criterion_main!(benches);
