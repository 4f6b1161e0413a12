//! Resident memory per loaded user, and the time to load them. `N` sets the number of
//! users (default 1,000,000). Each user has one active authenticator app.
#![allow(clippy::disallowed_methods, missing_docs)]

use portvakt_bench::Fixture;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let f = Fixture::load(n);
    println!(
        "users {n}  load {:.2?}  ({:.0} users/s)  resident {} MiB  per user {} B",
        f.load_time,
        n as f64 / f.load_time.as_secs_f64(),
        f.loaded_bytes >> 20,
        f.loaded_bytes / n as u64
    );
}
