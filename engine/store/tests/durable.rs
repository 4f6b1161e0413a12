//! The durable store: it passes the contract, and what it made durable comes back after a
//! crash (the process simply gone, nothing closed): users, methods, app passwords, spent
//! codes, locks. A torn tail is cut, damage elsewhere stops the start with the file and
//! offset, and a log that cannot be written fails decisions closed until it can again.

mod contract;

use contract::{T0, code, req, secret_for};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use portvakt_core::admin::TotpSpec;
use portvakt_core::directory::change::Change;
use portvakt_core::otp::{Algorithm, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::state::{MemoryStore, StoreLimits};
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{Outcome, Proof, Reason, Timestamp, config};
use portvakt_store::Engine;
use portvakt_store::durable::{self, DurableError, Sink, SinkMaker, Wal};
use portvakt_store::sealed::MasterKey;

const KOMMUNE: &str = include_str!("../../../examples/kommune.toml");

/// A fresh directory under the system's temporary directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "portvakt-durable-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        Self(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The master key every test store is sealed with.
fn key() -> Arc<MasterKey> {
    Arc::new(MasterKey::new(&[3; 32]))
}

fn now() -> Timestamp {
    Timestamp::from_secs(T0)
}

/// A journaled memory store over a fresh directory, for the contract. The directory is
/// left behind in the system's temporary directory only if the test process dies.
fn journaled() -> MemoryStore {
    let dir = Dir::new();
    let opened = durable::open(&dir.0, StoreLimits::default(), now(), key()).unwrap();
    let store = opened.store;
    assert!(
        store
            .set_journal(Box::new(durable::WalJournal(opened.wal)))
            .is_ok()
    );
    // The files go when the test's process ends; the store needs none of them to run.
    std::mem::forget(dir);
    store
}

contract_tests!(journaled());

/// Opens (or reopens) an engine on `dir`.
fn engine(dir: &Path) -> (Engine, Arc<Wal>, durable::Recovery) {
    durable::open(dir, StoreLimits::default(), now(), key())
        .unwrap()
        .into_engine(
            config::load(KOMMUNE).unwrap(),
            Pepper::new([42; 32]),
            Box::new(SeededEntropy::new(9)),
        )
        .unwrap()
}

/// Users with apps; kari's code at T0 spent, ola locked out by wrong codes.
fn history(e: &Engine, wal: &Wal) -> OtpKey {
    for name in ["kari", "ola", "per"] {
        e.add_user("kommune", name, &[], false).unwrap();
        e.import_totp(
            "kommune",
            name,
            &secret_for(name),
            TotpSpec::default(),
            true,
        )
        .unwrap();
        e.add_security_key("kommune", name).unwrap();
        e.add_phone(
            "kommune",
            name,
            portvakt_core::directory::MethodKind::Sms,
            "+4790000001",
        )
        .unwrap();
    }
    e.remove_user("kommune", "per").unwrap();
    e.create_app_password("kommune", "kari", "mail", now())
        .unwrap();
    let kari = OtpKey::new(Algorithm::Sha1, &secret_for("kari"));
    let c = code(&kari, T0);
    assert_eq!(
        e.decide(&req("kari", Some(Proof::Totp(&c))), now()).outcome,
        Outcome::Allow
    );
    for i in 0..12 {
        let wrong = format!("{:06}", (i * 7919 + 13) % 1_000_000);
        e.decide(&req("ola", Some(Proof::Totp(&wrong))), now());
    }
    assert_eq!(e.decide(&req("ola", None), now()).outcome, Outcome::Locked);
    // What every answer above waited for.
    wal.wait_durable(wal.end()).unwrap();
    kari
}

fn snapshot_bytes(e: &Engine) -> Vec<u8> {
    let mut b = Vec::new();
    Change::encode_batch(&e.snapshot(), &mut b);
    b
}

fn records(e: &Engine) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    e.store().memory().unwrap().for_each_record(|k, r| {
        let mut key = Vec::new();
        k.encode(&mut key);
        out.push((key, r.to_vec()));
    });
    out.sort();
    out
}

/// After a restart: the same directory and records, the spent code spent, the lock on.
fn same_after_restart(before: &Engine, after: &Engine, kari: &OtpKey) {
    assert_eq!(snapshot_bytes(after), snapshot_bytes(before));
    assert_eq!(records(after), records(before));
    let c = code(kari, T0);
    let d = after.decide(&req("kari", Some(Proof::Totp(&c))), now());
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::ReplayedCode));
    assert_eq!(
        after.decide(&req("ola", None), now()).outcome,
        Outcome::Locked
    );
    assert!(after.user_info("kommune", "per").is_err());
}

#[test]
fn what_was_durable_is_back_after_a_crash() {
    let dir = Dir::new();
    let (e, wal, _) = engine(&dir.0);
    let kari = history(&e, &wal);
    // A crash: nothing closed, nothing flushed beyond what the answers waited for.
    let (again, _, recovery) = engine(&dir.0);
    assert!(recovery.log_frames > 10, "{recovery:?}");
    same_after_restart(&e, &again, &kari);
}

#[test]
fn a_snapshot_and_the_log_after_it_bring_everything_back() {
    let dir = Dir::new();
    let (e, wal, _) = engine(&dir.0);
    let kari = history(&e, &wal);
    let frames = durable::snapshot(&e, &wal).unwrap();
    assert!(frames > 5);
    // Only the segment after the cut is left.
    let logs = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("wal-")
        })
        .count();
    assert_eq!(logs, 1);
    // More after the snapshot: a code, an administrator's change.
    let c = code(&kari, T0 + 30);
    assert_eq!(
        e.decide(&req("kari", Some(Proof::Totp(&c))), now()).outcome,
        Outcome::Allow
    );
    e.set_groups("kommune", "kari", &["it"]).unwrap();
    wal.wait_durable(wal.end()).unwrap();
    let (again, _, recovery) = engine(&dir.0);
    assert!(
        recovery.snapshot_records > 0 && recovery.snapshot_batches > 0,
        "{recovery:?}"
    );
    same_after_restart(&e, &again, &kari);
    let d = again.decide(&req("kari", Some(Proof::Totp(&c))), now());
    assert_eq!(d.reason, Reason::ReplayedCode);
}

fn the_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("wal-"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

#[test]
fn a_torn_tail_is_cut_and_the_rest_is_kept() {
    let dir = Dir::new();
    let (e, wal, _) = engine(&dir.0);
    let kari = history(&e, &wal);
    let seg = the_segment(&dir.0);
    let len = std::fs::metadata(&seg).unwrap().len();
    // Half a frame more, as a crash in the middle of a write leaves it.
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(b"PV\x01\x00\x00\x00\x30\x12\x34");
    std::fs::write(&seg, &bytes).unwrap();
    let (again, _, recovery) = engine(&dir.0);
    assert_eq!(recovery.cut, Some((seg.clone(), len)));
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
    same_after_restart(&e, &again, &kari);
}

#[test]
fn damage_before_good_frames_stops_the_start_and_names_the_place() {
    let dir = Dir::new();
    let (e, wal, _) = engine(&dir.0);
    history(&e, &wal);
    let seg = the_segment(&dir.0);
    let mut bytes = std::fs::read(&seg).unwrap();
    // A byte in the first frame's body.
    bytes[16 + 11 + 2] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    match durable::open(&dir.0, StoreLimits::default(), now(), key()) {
        Err(DurableError::Damaged { path, offset, .. }) => {
            assert_eq!((path, offset), (seg.clone(), 16));
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a damaged log"),
    }
    let e = durable::open(&dir.0, StoreLimits::default(), now(), key())
        .err()
        .unwrap();
    assert!(e.to_string().contains("offset 16"), "{e}");
}

#[test]
fn a_damaged_snapshot_stops_the_start() {
    let dir = Dir::new();
    let (e, wal, _) = engine(&dir.0);
    history(&e, &wal);
    durable::snapshot(&e, &wal).unwrap();
    let snap = dir.0.join("snapshot");
    let mut bytes = std::fs::read(&snap).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&snap, &bytes).unwrap();
    assert!(matches!(
        durable::open(&dir.0, StoreLimits::default(), now(), key()),
        Err(DurableError::Damaged { .. })
    ));
    // Cut short: no end frame.
    bytes[at] ^= 1;
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&snap, &bytes).unwrap();
    let e = durable::open(&dir.0, StoreLimits::default(), now(), key())
        .err()
        .unwrap();
    assert!(e.to_string().contains("snapshot"), "{e}");
}

/// A sink that fails while `failing` is set; what it was given is kept in a real file.
struct Flaky {
    file: std::fs::File,
    failing: Arc<AtomicBool>,
    written: Arc<Mutex<u64>>,
}

impl Sink for Flaky {
    fn append_durably(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        if self.failing.load(Ordering::SeqCst) {
            // Half of it reaches the file, as on a disk that fills up.
            self.file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(std::io::Error::other("no space left on device (injected)"));
        }
        self.file.write_all(bytes)?;
        *self.written.lock().unwrap() += bytes.len() as u64;
        self.file.sync_data()
    }
    fn cut(&mut self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)
    }
}

#[test]
fn a_log_that_cannot_be_written_fails_closed_and_recovers_by_itself() {
    let dir = Dir::new();
    std::fs::create_dir_all(&dir.0).unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(0));
    let (f, w) = (failing.clone(), written.clone());
    let sinks: SinkMaker = Box::new(move |path| {
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(Flaky {
            file,
            failing: f.clone(),
            written: w.clone(),
        }) as Box<dyn Sink>)
    });
    let wal = Wal::start_with(&dir.0, 0, key(), sinks).unwrap();
    let store = MemoryStore::default();
    assert!(
        store
            .set_journal(Box::new(durable::WalJournal(wal.clone())))
            .is_ok()
    );
    let e = Engine::new(
        config::load(KOMMUNE).unwrap(),
        store.into(),
        Pepper::new([42; 32]),
        Box::new(SeededEntropy::new(9)),
    )
    .with_change_log(Box::new(durable::WalChangeLog(wal.clone())));
    e.add_user("kommune", "kari", &[], false).unwrap();
    e.import_totp(
        "kommune",
        "kari",
        &secret_for("kari"),
        TotpSpec::default(),
        true,
    )
    .unwrap();
    e.add_security_key("kommune", "kari").unwrap();
    wal.wait_durable(wal.end()).unwrap();

    // The disk fills. A change made now (an administrator's) cannot be made durable, and
    // whoever waits for it (its answer) hears why.
    failing.store(true, Ordering::SeqCst);
    e.add_user("kommune", "ola", &[], false).unwrap();
    let err = wal.wait_durable(wal.end()).unwrap_err();
    assert!(err.contains("no space left"), "{err}");
    assert!(wal.failure().is_some());
    // From now on decisions that change state fail closed, and administrators are
    // refused, until the log can be written again.
    let kari = OtpKey::new(Algorithm::Sha1, &secret_for("kari"));
    let c = code(&kari, T0);
    let d = e.decide(&req("kari", Some(Proof::Totp(&c))), now());
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::InternalError)
    );
    assert!(e.add_user("kommune", "per", &[], false).is_err());
    assert!(e.store_errors() >= 2);
    // Space again: the pending change goes out by itself, and decisions are served.
    failing.store(false, Ordering::SeqCst);
    let until = wal.end();
    let mut waited = 0;
    while wal.failure().is_some() || wal.synced().position < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
        waited += 1;
        assert!(waited < 500, "the log did not recover");
    }
    let d = e.decide(&req("kari", Some(Proof::Totp(&c))), now());
    assert_eq!(d.outcome, Outcome::Allow);
    wal.wait_durable(wal.end()).unwrap();
    // Nothing half written stayed in the file: it reads back whole. The change whose
    // answer was an error went out when the disk came back (as an answer lost on its
    // way); the refused one never happened; the code is spent.
    drop(e);
    let (again, _, recovery) = engine(&dir.0);
    assert_eq!(recovery.cut, None);
    let d = again.decide(&req("kari", Some(Proof::Totp(&c))), now());
    assert_eq!(d.reason, Reason::ReplayedCode);
    assert!(again.user_info("kommune", "ola").is_ok());
    assert!(again.user_info("kommune", "per").is_err());
    assert!(*written.lock().unwrap() > 0);
}

#[test]
fn secrets_are_sealed_on_disk_and_a_wrong_key_stops_the_start() {
    let dir = Dir::new();
    let (e, wal, _) = engine(&dir.0);
    history(&e, &wal);
    e.add_phone(
        "kommune",
        "kari",
        portvakt_core::directory::MethodKind::Voice,
        "+4798765432",
    )
    .unwrap();
    wal.wait_durable(wal.end()).unwrap();
    durable::snapshot(&e, &wal).unwrap();
    e.create_app_password("kommune", "ola", "Calendar on the old laptop", now())
        .unwrap();
    wal.wait_durable(wal.end()).unwrap();
    // Neither in the snapshot nor in the log: a phone number, a label, a user's name.
    for f in std::fs::read_dir(&dir.0).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        for secret in [&b"98765432"[..], b"Calendar on the old", b"kari"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{:?} in the clear",
                String::from_utf8_lossy(secret)
            );
        }
    }
    // Another key opens nothing: a clear error naming the file, not an empty directory.
    let wrong = durable::open(
        &dir.0,
        StoreLimits::default(),
        now(),
        Arc::new(MasterKey::new(&[4; 32])),
    )
    .err()
    .unwrap();
    let text = wrong.to_string();
    assert!(
        text.contains("snapshot") && text.contains("master key"),
        "{text}"
    );
}

#[test]
fn a_missing_snapshot_or_segment_stops_the_start() {
    let dir = Dir::new();
    let (e, wal, _) = engine(&dir.0);
    history(&e, &wal);
    durable::snapshot(&e, &wal).unwrap();
    drop((e, wal));
    // Without its snapshot, the log after it would start a store that forgot everything.
    let snap = dir.0.join("snapshot");
    let kept = std::fs::read(&snap).unwrap();
    std::fs::remove_file(&snap).unwrap();
    let e = durable::open(&dir.0, StoreLimits::default(), now(), key())
        .err()
        .unwrap();
    assert!(e.to_string().contains("missing"), "{e}");
    std::fs::write(&snap, kept).unwrap();
    assert!(durable::open(&dir.0, StoreLimits::default(), now(), key()).is_ok());
}

/// Every audit event the store gives back, in order.
fn audit_events(wal: &Wal) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    wal.read_audit(|e| {
        out.push(e.to_vec());
        true
    })
    .unwrap();
    out
}

#[test]
fn what_is_appended_under_a_hold_reaches_the_disk_only_when_it_is_released() {
    let dir = Dir::new();
    let (e, wal, _) = engine(&dir.0);
    let hold = wal.hold();
    e.add_user("kommune", "kari", &[], false).unwrap();
    let end = wal.append_audit(b"added kari").unwrap();
    // The committer had every chance to write; it must not have.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(wal.synced().position < end, "{:?}", wal.synced());
    drop(hold);
    wal.wait_durable(end).unwrap();
    // Appends before a hold are not held back by it.
    e.add_user("kommune", "ola", &[], false).unwrap();
    let before = wal.end();
    let hold = wal.hold();
    wal.wait_durable(before).unwrap();
    // Nor are other threads' appends before this thread's first: a hold taken by an
    // operation that then waits holds nothing back while it waits.
    std::thread::scope(|s| {
        s.spawn(|| {
            e.add_user("kommune", "per", &[], false).unwrap();
            wal.wait_durable(wal.end()).unwrap();
        });
    });
    let end = wal.append_audit(b"after per").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(wal.synced().position < end, "{:?}", wal.synced());
    drop(hold);
    wal.wait_durable(end).unwrap();
}

#[test]
fn audit_events_come_back_in_order_across_snapshots_and_restarts() {
    let dir = Dir::new();
    let (e, wal, _) = engine(&dir.0);
    let mut expected = Vec::new();
    for round in 0..3 {
        for i in 0..4 {
            let event = format!("round {round} event {i}").into_bytes();
            wal.append_audit(&event).unwrap();
            expected.push(event);
            // Other frames between them.
            e.add_user("kommune", &format!("u{round}-{i}"), &[], false)
                .unwrap();
        }
        durable::snapshot(&e, &wal).unwrap();
    }
    wal.append_audit(b"after the last snapshot").unwrap();
    expected.push(b"after the last snapshot".to_vec());
    wal.wait_durable(wal.end()).unwrap();
    assert_eq!(audit_events(&wal), expected);
    // Stopping early.
    let mut first = Vec::new();
    wal.read_audit(|e| {
        first.push(e.to_vec());
        first.len() < 5
    })
    .unwrap();
    assert_eq!(first, expected[..5]);
    // The archives and the log are what a restart reads too.
    let (_again, wal2, _) = engine(&dir.0);
    assert_eq!(audit_events(&wal2), expected);
}

#[test]
fn a_second_holder_of_the_directory_is_refused() {
    let dir = Dir::new();
    let held = durable::lock_dir(&dir.0).unwrap();
    assert!(matches!(
        durable::lock_dir(&dir.0),
        Err(DurableError::InUse(_))
    ));
    let file = dir.0.with_extension("backup");
    std::fs::write(&file, b"whatever").unwrap();
    let restored = durable::restore(&file, &dir.0, StoreLimits::default(), now(), key());
    assert!(
        matches!(restored, Err(DurableError::InUse(_))),
        "{restored:?}"
    );
    drop(held);
    let _ = std::fs::remove_file(&file);
    durable::lock_dir(&dir.0).unwrap();
}

#[test]
fn a_backup_taken_while_serving_restores_everything_acknowledged_before_it() {
    let dir = Dir::new();
    let state = dir.0.join("state");
    let (e, wal, _) = engine(&state);
    let kari = history(&e, &wal);
    let e = Arc::new(e);
    // A writer keeps adding users, and failing to sign in as one of them, while the
    // backup is made.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                e.add_user("kommune", &format!("w{n}"), &[], false).unwrap();
                e.decide(&req("nobody", Some(Proof::Totp("000000"))), now());
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    e.set_groups("kommune", "kari", &["backed-up"]).unwrap();
    wal.wait_durable(wal.end()).unwrap();
    let file = dir.0.join("copy.pvbackup");
    let made = durable::backup(&e, &wal, &file).unwrap();
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(made.bytes > 100 && made.files >= 2, "{made:?}");
    // Never over an existing file.
    assert!(durable::backup(&e, &wal, &file).is_err());

    // Restored elsewhere: what was acknowledged before the backup is there.
    let other = dir.0.join("elsewhere");
    let restored = durable::restore(&file, &other, StoreLimits::default(), now(), key()).unwrap();
    assert!(restored.replaced.is_none());
    let (back, _, _) = engine(&other);
    let info = back.user_info("kommune", "kari").unwrap();
    assert_eq!(info.groups, ["backed-up"]);
    let c = code(&kari, T0);
    let d = back.decide(&req("kari", Some(Proof::Totp(&c))), now());
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::ReplayedCode));
    assert_eq!(
        back.decide(&req("ola", None), now()).outcome,
        Outcome::Locked
    );
    // The writer's users are a prefix of its run, as a crash would leave them.
    let present: Vec<bool> = (0..written)
        .map(|n| back.user_info("kommune", &format!("w{n}")).is_ok())
        .collect();
    let kept = present.iter().take_while(|p| **p).count();
    assert!(
        present[kept..].iter().all(|p| !p),
        "not a prefix: {kept} of {written}"
    );
    assert!(kept > 0, "users acknowledged before the backup are missing");
    drop(back);

    // Over the live directory's own place: the old store is kept aside.
    drop((e, wal));
    let restored = durable::restore(&file, &state, StoreLimits::default(), now(), key()).unwrap();
    let aside = restored.replaced.expect("the replaced store is kept");
    assert!(aside.join("snapshot").exists(), "{}", aside.display());
    let (back, _, _) = engine(&state);
    assert_eq!(
        back.user_info("kommune", "kari").unwrap().groups,
        ["backed-up"]
    );
}

#[test]
fn a_damaged_or_foreign_backup_is_refused_and_changes_nothing() {
    let dir = Dir::new();
    let state = dir.0.join("state");
    let (e, wal, _) = engine(&state);
    history(&e, &wal);
    let file = dir.0.join("copy.pvbackup");
    durable::backup(&e, &wal, &file).unwrap();
    drop((e, wal));
    let good = std::fs::read(&file).unwrap();
    let target = dir.0.join("target");
    let try_restore = |bytes: &[u8], key: Arc<MasterKey>| {
        let f = dir.0.join("try.pvbackup");
        std::fs::write(&f, bytes).unwrap();
        durable::restore(&f, &target, StoreLimits::default(), now(), key)
    };
    // A flipped byte in a file's contents.
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let e = try_restore(&flipped, key()).unwrap_err().to_string();
    assert!(e.contains("checksum") || e.contains("name"), "{e}");
    // Cut short.
    let e = try_restore(&good[..good.len() - 20], key())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut short") || e.contains("checksum"), "{e}");
    // Not a backup.
    let e = try_restore(b"PVSNAP\0\x01 something else", key())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a Portvakt backup"), "{e}");
    // The wrong master key.
    let e = try_restore(&good, Arc::new(MasterKey::new(&[4; 32])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("master key") || e.contains("sealed"), "{e}");
    // None of it left anything behind.
    assert!(!target.exists());
    assert!(!dir.0.join("target.restoring").exists());
    // And the good one restores.
    let restored = try_restore(&good, key()).unwrap();
    assert!(restored.recovery.snapshot_batches > 0);
}
