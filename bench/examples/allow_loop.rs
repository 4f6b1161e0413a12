//! Signs users in on the allow path in a loop and prints the time per decision: a steady
//! workload for `perf` and flamegraphs. `N` sets the number of users (default 100,000).
#![allow(clippy::disallowed_methods)]
use portvakt_bench::{Fixture, T0, at};
use portvakt_core::{Outcome, Proof};
use std::time::Instant;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let f = Fixture::load(n);
    let codes: Vec<String> = (0..2000u64).map(|p| f.code(T0 + p * 30)).collect();
    let start = Instant::now();
    let mut allowed = 0;
    let total = 10_000_000usize;
    for i in 0..total {
        let p = i / n;
        let d = f.engine.decide(
            &f.request(i % n, Some(Proof::Totp(&codes[p]))),
            at(T0 + p as u64 * 30),
        );
        allowed += (d.outcome == Outcome::Allow) as usize;
    }
    println!(
        "allow: {:?} per decision, {allowed} allowed",
        start.elapsed() / total as u32
    );
}
