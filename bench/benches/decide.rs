//! Full decisions with many users loaded: the allow path, the wrong-code path and the
//! locked path on one thread, and the allow path on two threads.
//!
//! `PORTVAKT_BENCH_USERS` sets how many users are loaded (default 1,000,000; CI's test
//! mode uses a small number). Each iteration signs in the next user, so every decision
//! touches a different user, as in production; time moves forward one TOTP step per pass
//! over all users, so every allow is a fresh, never-used code.
#![allow(clippy::disallowed_methods)] // a bench measures with the clock

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use portvakt_bench::{Fixture, T0, at};
use portvakt_core::{Outcome, Proof};

fn users() -> usize {
    std::env::var("PORTVAKT_BENCH_USERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// Runs `iters` allow decisions over users `range`, starting at pass `*pass`.
fn allow_run(f: &Fixture, iters: u64, users: std::ops::Range<usize>, pass: &mut u64) -> Duration {
    let n = users.len() as u64;
    let mut codes = Vec::new();
    let passes = iters.div_ceil(n) + 1;
    for p in 0..passes {
        codes.push(f.code(T0 + (*pass + p) * 30));
    }
    let start = Instant::now();
    for i in 0..iters {
        let p = i / n;
        let u = users.start + (i % n) as usize;
        let code = &codes[p as usize];
        let d = f.engine.decide(
            &f.request(u, Some(Proof::Totp(code))),
            at(T0 + (*pass + p) * 30),
        );
        debug_assert_eq!(d.outcome, Outcome::Allow);
        black_box(d);
    }
    let elapsed = start.elapsed();
    *pass += iters.div_ceil(n);
    elapsed
}

fn bench(c: &mut Criterion) {
    let n = users();
    let f = Arc::new(Fixture::load(n));
    eprintln!("loaded {n} users in {:.2?}", f.load_time);
    // Make sure the allow path is really the allow path.
    let probe = f.code(T0 + 1_000_000 * 30);
    let d = f.engine.decide(
        &f.request(0, Some(Proof::Totp(&probe))),
        at(T0 + 1_000_000 * 30),
    );
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");

    let mut g = c.benchmark_group("decide");
    g.sample_size(30);
    // Passes start far from the probe so no code is spent twice.
    let mut pass = 0u64;
    g.bench_function("allow/1_thread", |b| {
        b.iter_custom(|iters| allow_run(&f, iters, 0..n, &mut pass))
    });

    // Two threads, each over its own half of the users; the time is the slower thread's,
    // divided over all decisions, so the figure is per decision of the pair.
    let mut pass2 = 2_000_000u64;
    g.bench_function("allow/2_threads", |b| {
        b.iter_custom(|iters| {
            let half = iters / 2;
            let start_pass = pass2;
            let handles: Vec<_> = [0..n / 2, n / 2..n]
                .into_iter()
                .map(|range| {
                    let f = f.clone();
                    std::thread::spawn(move || {
                        let mut p = start_pass;
                        let start = Instant::now();
                        allow_run(&f, half, range, &mut p);
                        start.elapsed()
                    })
                })
                .collect();
            let slowest = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .max()
                .unwrap_or_default();
            pass2 += half.div_ceil((n / 2) as u64) + 1;
            slowest
        })
    });

    // Wrong codes: each pass is an hour apart, so a user's one failure per pass is always
    // the first after a quiet period and no one locks.
    let mut wrong_pass = 4_000_000u64;
    g.bench_function("wrong_code/1_thread", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                let u = (i % n as u64) as usize;
                let t = T0 + (wrong_pass + i / n as u64) * 3_601;
                let d = f
                    .engine
                    .decide(&f.request(u, Some(Proof::Totp("000000"))), at(t));
                black_box(d);
            }
            let e = start.elapsed();
            wrong_pass += iters / n as u64 + 1;
            e
        })
    });

    // Locked: the first 10,000 users are locked (ten wrong codes each), then asked again
    // within the lock.
    let locked_users = n.min(10_000);
    let t_lock = T0 + 9_000_000 * 30;
    for u in 0..locked_users {
        for k in 0..10 {
            f.engine.decide(
                &f.request(u, Some(Proof::Totp(&format!("{:06}", 100_000 + k)))),
                at(t_lock),
            );
        }
    }
    let d = f
        .engine
        .decide(&f.request(0, Some(Proof::Totp("999999"))), at(t_lock + 1));
    assert_eq!(d.outcome, Outcome::Locked, "{d:?}");
    g.bench_function("locked/1_thread", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                let u = (i % locked_users as u64) as usize;
                black_box(
                    f.engine
                        .decide(&f.request(u, Some(Proof::Totp("999999"))), at(t_lock + 1)),
                );
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
