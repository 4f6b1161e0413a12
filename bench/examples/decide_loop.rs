//! Decides in a loop and prints the time per decision: a steady workload for `perf` and
//! flamegraphs. `N` sets the number of users (default 100,000); `MODE` is `allow` (a fresh
//! right code each time), `wrong` (a wrong code; passes an hour apart so no one locks) or
//! `locked` (users locked beforehand, asked again inside the lock). `THREADS` (default 1)
//! splits the users between that many threads and reports the pair's throughput.
#![allow(clippy::disallowed_methods, missing_docs)]

use std::time::Instant;

use portvakt_bench::{Fixture, T0, at};
use portvakt_core::{Outcome, Proof};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mode = std::env::var("MODE").unwrap_or_else(|_| "allow".into());
    let total: usize = std::env::var("DECISIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let f = Fixture::load(n);
    let codes: Vec<String> = (0..=(total / n) as u64)
        .map(|p| f.code(T0 + p * 30))
        .collect();
    let t_lock = T0 + 9_000_000 * 30;
    if mode == "locked" {
        for u in 0..n {
            for k in 0..10 {
                f.engine.decide(
                    &f.request(u, Some(Proof::Totp(&format!("{:06}", 100_000 + k)))),
                    at(t_lock),
                );
            }
        }
    }
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let f = std::sync::Arc::new(f);
    let codes = std::sync::Arc::new(codes);
    let start = Instant::now();
    let cpu_before = portvakt_bench::process_cpu();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (f, codes, mode) = (f.clone(), codes.clone(), mode.clone());
            std::thread::spawn(move || {
                let (lo, hi) = (n * t / threads, n * (t + 1) / threads);
                let users = hi - lo;
                let mut expected = 0usize;
                for i in 0..total / threads {
                    let (u, p) = (lo + i % users, (i / users) as u64);
                    let d = match mode.as_str() {
                        "wrong" => f.engine.decide(
                            &f.request(u, Some(Proof::Totp("000000"))),
                            at(T0 + (4_000_000 + p) * 3_601),
                        ),
                        "locked" => f
                            .engine
                            .decide(&f.request(u, Some(Proof::Totp("999999"))), at(t_lock + 1)),
                        _ => f.engine.decide(
                            &f.request(u, Some(Proof::Totp(&codes[p as usize]))),
                            at(T0 + p * 30),
                        ),
                    };
                    let want = match mode.as_str() {
                        "wrong" => Outcome::Deny,
                        "locked" => Outcome::Locked,
                        _ => Outcome::Allow,
                    };
                    expected += usize::from(d.outcome == want);
                }
                (expected, portvakt_bench::thread_cpu())
            })
        })
        .collect();
    let results: Vec<(usize, f64)> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    let wall = start.elapsed();
    let expected: usize = results.iter().map(|r| r.0).sum();
    let cpu: f64 = results.iter().map(|r| r.1).sum();
    let done = total / threads * threads;
    let _ = cpu_before;
    println!(
        "{mode} on {threads} thread(s): {:.0} ns wall and {:.0} ns cpu per decision, {:.2} M decisions/s, {expected} of {done} as expected",
        wall.as_nanos() as f64 / done as f64 * threads as f64,
        cpu * 1e9 / done as f64,
        done as f64 / wall.as_secs_f64() / 1e6
    );
}
