//! How long the durable store takes to start, and how much disk it takes: `N` users
//! (default 1,000,000), each with an authenticator app and a spent code, written through
//! the store as administrators and sign-ins would; then a start after a crash (everything
//! from the log), a snapshot, and a start from the snapshot. Prints the times, the bytes on
//! disk and the bytes per user. `DIR` puts the store somewhere else than the system's
//! temporary directory (the disk measured is the one it is on).
#![allow(clippy::disallowed_methods, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use portvakt_core::admin::TotpSpec;
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::state::StoreLimits;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{FirstFactor, Outcome, Proof, Purpose, Request, Timestamp, config};
use portvakt_store::durable;
use portvakt_store::sealed::MasterKey;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const T0: u64 = 1_700_000_010;

fn secret(i: usize) -> [u8; 20] {
    let mut s = [b'#'; 20];
    s[..8].copy_from_slice(&(i as u64).to_be_bytes());
    s
}

fn bytes_in(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|f| f.unwrap().metadata().unwrap().len())
        .sum()
}

fn open(
    dir: &std::path::Path,
    key: &Arc<MasterKey>,
) -> (portvakt_store::Engine, Arc<durable::Wal>, durable::Recovery) {
    durable::open(
        dir,
        StoreLimits::default(),
        Timestamp::from_secs(T0),
        key.clone(),
    )
    .unwrap()
    .into_engine(
        config::load(include_str!("../../examples/kommune.toml")).unwrap(),
        Pepper::new([42; 32]),
        Box::new(SeededEntropy::new(1)),
    )
    .unwrap()
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let base = std::env::var("DIR").map_or_else(|_| std::env::temp_dir(), Into::into);
    let dir = base.join(format!("portvakt-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = Arc::new(MasterKey::new(&[5; 32]));
    let names: Vec<String> = (0..n).map(|i| format!("user{i}@kommune.no")).collect();
    {
        let (e, wal, _) = open(&dir, &key);
        let started = Instant::now();
        for (i, name) in names.iter().enumerate() {
            e.add_user("kommune", name, &[], false).unwrap();
            e.import_totp("kommune", name, &secret(i), TotpSpec::default(), true)
                .unwrap();
        }
        let now = Timestamp::from_secs(T0);
        let mut allowed = 0;
        for (i, name) in names.iter().enumerate() {
            let code = format!(
                "{:06}",
                OtpKey::new(Algorithm::Sha1, &secret(i)).hotp(T0 / 30, Digits::SIX)
            );
            let d = e.decide(
                &Request {
                    tenant: "kommune",
                    user: name,
                    ip: "10.20.1.1".parse().unwrap(),
                    purpose: Purpose::PasswordReset,
                    first_factor: FirstFactor::None,
                    proof: Some(Proof::Totp(&code)),
                    device_token: None,
                    remember_device: false,
                },
                now,
            );
            allowed += usize::from(d.outcome == Outcome::Allow);
        }
        wal.wait_durable(wal.end()).unwrap();
        println!(
            "wrote {n} users and {allowed} spent codes through the store in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(allowed, n, "every user's code was spent");
        // A crash: nothing closed.
    }
    let log_bytes = bytes_in(&dir);
    let started = Instant::now();
    let (e, wal, found) = open(&dir, &key);
    let from_log = started.elapsed();
    assert_eq!(e.directory().len(), n);
    println!(
        "start after a crash (all from the log): {:.2} s, {} log entries; {log_bytes} bytes on disk, {:.0} per user",
        from_log.as_secs_f64(),
        found.log_frames,
        log_bytes as f64 / n as f64
    );
    let started = Instant::now();
    durable::snapshot(&e, &wal).unwrap();
    println!("snapshot: {:.2} s", started.elapsed().as_secs_f64());
    drop((e, wal));
    let snap_bytes = bytes_in(&dir);
    let started = Instant::now();
    let (e, _, found) = open(&dir, &key);
    let from_snapshot = started.elapsed();
    assert_eq!(e.directory().len(), n);
    println!(
        "start from the snapshot: {:.2} s ({} records, {} batches); {snap_bytes} bytes on disk, {:.0} per user",
        from_snapshot.as_secs_f64(),
        found.snapshot_records,
        found.snapshot_batches,
        snap_bytes as f64 / n as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
