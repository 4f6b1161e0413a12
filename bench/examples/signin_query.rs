//! What a sign-in log query costs on a large log: `N` records (default 1,600,000, about two
//! full 64 MiB segments) of 50,000 users, one of whom (`kari`) has 2,400; then the
//! administrator's reads as `portvakt admin sign-ins` makes them: kari's 2,400 rows page by
//! page, the first 24,000 rows of the whole tenant page by page, and eight of kari's
//! queries at once on eight threads. Prints wall and CPU time and the process's peak
//! resident memory after each. `DIR` puts the log somewhere else than the system's
//! temporary directory.
//!
//! `cargo run --release -p portvakt-bench --example signin_query [N] [DIR]`
#![allow(clippy::disallowed_methods, missing_docs)]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use portvakt_server::signin::{self, LogConfig, Query, Record, SignInLog};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cpu() -> Duration {
    // utime + stime of this process, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

fn pages(log: &SignInLog, user: &str, max_rows: usize) -> usize {
    let mut q = Query {
        tenant: "kommune".into(),
        user: user.into(),
        from_ms: 0,
        to_ms: u64::MAX,
        cursor: 0,
        limit: 24,
    };
    let mut rows = 0;
    while rows < max_rows {
        let page = log.query(&q).expect("query");
        rows += page.rows.len();
        match page.next {
            Some(n) => q.cursor = n,
            None => break,
        }
    }
    rows
}

fn timed(what: &str, f: impl FnOnce() -> usize) {
    let (wall, cpu0) = (Instant::now(), cpu());
    let rows = f();
    println!(
        "{what}: {rows} rows, {:.3} s wall, {:.2} s CPU, peak RSS {} MiB",
        wall.elapsed().as_secs_f64(),
        (cpu() - cpu0).as_secs_f64(),
        peak_rss_mib()
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_600_000);
    let dir = args.next().map_or_else(std::env::temp_dir, Into::into);
    let dir = dir.join(format!("portvakt-signin-query-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log = SignInLog::open(LogConfig::in_dir(&dir)).expect("open");
    let every = (n / 2_400).max(1);
    let (started, cpu0) = (Instant::now(), cpu());
    let mut batch = BytesMut::new();
    let mut names = Vec::with_capacity(50_000);
    for u in 0..50_000 {
        names.push(format!("user{u}@kommune.no"));
    }
    for i in 0..n {
        let user = if i % every == 0 {
            "kari"
        } else {
            names[(i % 50_000) as usize].as_str()
        };
        let row = Record {
            at_ms: 1_700_000_000_000 + i,
            tenant: "kommune",
            user,
            ip: std::net::IpAddr::from([203, 0, 113, (i % 250) as u8]),
            purpose: 1,
            outcome: 1,
            reason: "ok",
            method: Some(1),
            location: "elsewhere",
            rule: "home-needs-code",
            frontend: 1,
        };
        assert!(signin::append(&mut batch, &row));
        if i % 64 == 63 {
            log.write(&batch).expect("write");
            batch.clear();
        }
    }
    log.write(&batch).expect("write");
    println!(
        "{n} records written in {:.2} s wall, {:.2} s CPU ({} MiB on disk), peak RSS {} MiB",
        started.elapsed().as_secs_f64(),
        (cpu() - cpu0).as_secs_f64(),
        std::fs::read_dir(&dir)
            .map(|d| d
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>())
            .unwrap_or(0)
            >> 20,
        peak_rss_mib()
    );
    // Let the sync thread seal the full segments.
    std::thread::sleep(Duration::from_millis(500));
    timed("kari, every page", || pages(&log, "kari", usize::MAX));
    timed("the tenant, first 24,000 rows", || pages(&log, "", 24_000));
    timed("kari, eight queries at once", || {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| pages(&log, "kari", usize::MAX)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        })
    });
    log.close();
    // Index files against the segments they index (the one still written has none).
    let (mut sealed, mut index) = (0u64, 0u64);
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "idx")
            && let (Ok(i), Ok(l)) = (
                std::fs::metadata(&path),
                std::fs::metadata(path.with_extension("log")),
            )
        {
            (index, sealed) = (index + i.len(), sealed + l.len());
        }
    }
    println!(
        "on disk: sealed segments {} MiB, their index files {} MiB ({:.0} % more)",
        sealed >> 20,
        index >> 20,
        index as f64 * 100.0 / sealed.max(1) as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
