//! Resident memory per loaded user and load time.
#![allow(clippy::disallowed_methods, missing_docs)]
use portvakt_bench::{Fixture, rss_bytes};
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let names: Vec<String> = (0..n).map(portvakt_bench::name).collect();
    let before = rss_bytes();
    drop(names);
    let f = Fixture::load(n);
    let after = rss_bytes();
    println!(
        "users {n} load {:?} rss_delta {} MiB per_user {} B",
        f.load_time,
        (after - before) >> 20,
        (after - before) / n as u64
    );
}
