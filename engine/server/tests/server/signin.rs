//! The sign-in log on disk: written, queried, paged, kept across restarts, cut back after
//! a torn write, read past damage, bounded by retention, and nothing lost or interleaved
//! when many connections write at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use portvakt_server::signin::{self, LogConfig, Page, Query, Record, SignInLog};
use portvakt_wire::admin::SignInRow;

/// A fresh directory under the system's temporary one, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "portvakt-signin-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn row(user: &str, at_ms: u64) -> Record<'_> {
    Record {
        at_ms,
        tenant: "kommune",
        user,
        ip: "203.0.113.9".parse().unwrap(),
        purpose: 1,
        outcome: 3,
        reason: "second_factor_required",
        method: None,
        location: "elsewhere",
        rule: "home-needs-code",
        frontend: 1,
    }
}

fn batch(rows: &[Record<'_>]) -> bytes::Bytes {
    let mut b = BytesMut::new();
    for r in rows {
        assert!(signin::append(&mut b, r));
    }
    b.freeze()
}

fn query(user: &str, from_ms: u64, to_ms: u64) -> Query {
    Query {
        tenant: "kommune".into(),
        user: user.into(),
        from_ms,
        to_ms,
        cursor: 0,
        limit: 24,
    }
}

/// Every matching record, following cursors page by page: (user, time) pairs.
fn all(log: &SignInLog, mut q: Query) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    loop {
        let Page { rows, next, .. } = log.query(&q).unwrap();
        assert!(rows.len() <= q.limit);
        for body in &rows {
            let r = signin::decode(body).unwrap();
            out.push((r.user.to_owned(), r.at_ms));
        }
        match next {
            Some(n) => {
                assert!(!rows.is_empty(), "a cursor comes only with a full page");
                q.cursor = n;
            }
            None => return out,
        }
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn records_are_queried_by_user_and_time_and_paged_exactly_once() {
    let dir = TempDir::new("query");
    let log = SignInLog::open(LogConfig::in_dir(&dir.0)).unwrap();
    for i in 0..100u64 {
        let user = if i % 2 == 0 { "kari" } else { "ola" };
        log.submit(&batch(&[row(user, 1_000 + i)])).await.unwrap();
    }
    // One user, every time: 50 records over three pages, in order, none twice.
    let kari = all(&log, query("kari", 0, u64::MAX));
    let expected: Vec<(String, u64)> = (0..100)
        .step_by(2)
        .map(|i| ("kari".to_owned(), 1_000 + i))
        .collect();
    assert_eq!(kari, expected);
    // A time window is half-open.
    let window = all(&log, query("ola", 1_011, 1_021));
    let times: Vec<u64> = window.iter().map(|r| r.1).collect();
    assert_eq!(times, [1_011, 1_013, 1_015, 1_017, 1_019]);
    // Empty user: the whole tenant; another tenant: nothing.
    assert_eq!(all(&log, query("", 0, u64::MAX)).len(), 100);
    let mut other = query("kari", 0, u64::MAX);
    other.tenant = "annen".into();
    assert!(all(&log, other).is_empty());
    // A short page with no more matches has no cursor.
    let mut q = query("kari", 1_000, 1_004);
    q.limit = 2;
    let page = log.query(&q).unwrap();
    assert_eq!((page.rows.len(), page.next), (2, None));
    log.close();
}

#[tokio::test]
async fn a_restart_forgets_nothing_and_a_torn_write_is_cut_off() {
    let dir = TempDir::new("restart");
    let log = SignInLog::open(LogConfig::in_dir(&dir.0)).unwrap();
    log.submit(&batch(&[row("kari", 1), row("kari", 2)]))
        .await
        .unwrap();
    log.close();
    assert!(log.submit(&batch(&[row("kari", 3)])).await.is_err());

    // The process died in the middle of its next write: half a record at the end.
    let last = segments(&dir.0).pop().unwrap();
    let mut torn = std::fs::read(&last).unwrap();
    let whole = torn.len();
    torn.extend_from_slice(&batch(&[row("kari", 4)])[..20]);
    std::fs::write(&last, &torn).unwrap();

    let log = SignInLog::open(LogConfig::in_dir(&dir.0)).unwrap();
    assert_eq!(std::fs::metadata(&last).unwrap().len() as usize, whole);
    log.submit(&batch(&[row("kari", 5)])).await.unwrap();
    let times: Vec<u64> = all(&log, query("kari", 0, u64::MAX))
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(times, [1, 2, 5]);
    log.close();
}

#[tokio::test]
async fn a_damaged_record_is_stepped_over_and_the_rest_still_read() {
    let dir = TempDir::new("damage");
    let log = SignInLog::open(LogConfig::in_dir(&dir.0)).unwrap();
    let one = batch(&[row("kari", 1)]);
    log.submit(&one).await.unwrap();
    log.submit(&batch(&[row("kari", 2), row("kari", 3)]))
        .await
        .unwrap();
    log.close();
    let first = segments(&dir.0).pop().unwrap();
    let log = SignInLog::open(LogConfig::in_dir(&dir.0)).unwrap();
    log.submit(&batch(&[row("kari", 4)])).await.unwrap();
    log.close();
    // Flip a byte in the second record's body: its checksum no longer matches.
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[8 + one.len() + 10] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();
    let log = SignInLog::open(LogConfig::in_dir(&dir.0)).unwrap();
    let times: Vec<u64> = all(&log, query("kari", 0, u64::MAX))
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(times, [1, 3, 4]);
    assert_eq!(std::fs::read(&first).unwrap(), bytes, "left for inspection");
    log.close();
}

#[tokio::test]
async fn retention_removes_the_oldest_segments_and_cursors_skip_past_them() {
    let dir = TempDir::new("retention");
    let config = LogConfig {
        segment_bytes: 4096,
        retain_bytes: 16 << 10,
        ..LogConfig::in_dir(&dir.0)
    };
    let log = SignInLog::open(config).unwrap();
    // About 80 bytes a record: 2,000 records are ten times the retention.
    for i in 0..2_000u64 {
        log.submit(&batch(&[row("kari", i)])).await.unwrap();
    }
    let kept: u64 = segments(&dir.0)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(kept <= (16 << 10) + 4096, "{kept} bytes kept");
    let times: Vec<u64> = all(&log, query("kari", 0, u64::MAX))
        .into_iter()
        .map(|r| r.1)
        .collect();
    // What is left is the newest records, contiguous, ending at the last.
    assert_eq!(times.last(), Some(&1_999));
    assert!(times.len() > 100 && times.len() < 2_000, "{}", times.len());
    assert!(times.windows(2).all(|w| w[1] == w[0] + 1));
    // A cursor into a removed segment resumes at the oldest kept record.
    let mut q = query("kari", 0, u64::MAX);
    q.cursor = 1 << 32 | 8;
    let page = log.query(&q).unwrap();
    assert_eq!(signin::decode(&page.rows[0]).unwrap().at_ms, times[0]);
    log.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_lose_nothing_and_never_interleave() {
    let dir = TempDir::new("writers");
    let config = LogConfig {
        sync_every: Duration::from_millis(5),
        // Small segments: writers race over which of them begins the next one.
        segment_bytes: 8192,
        ..LogConfig::in_dir(&dir.0)
    };
    let log = SignInLog::open(config).unwrap();
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let user = format!("user{w}");
            for i in 0..250u64 {
                let t = w * 1_000 + i;
                log.submit(&batch(&[row(&user, t), row(&user, t + 500)]))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = all(&log, query("", 0, u64::MAX));
    assert_eq!(got.len(), 8 * 250 * 2);
    let unique: HashSet<&(String, u64)> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "no record twice");
    for w in 0..8u64 {
        let mine: Vec<u64> = got
            .iter()
            .filter(|r| r.0 == format!("user{w}"))
            .map(|r| r.1)
            .collect();
        // One writer's batches stay in its order.
        let expected: Vec<u64> = (0..250)
            .flat_map(|i| [w * 1_000 + i, w * 1_000 + i + 500])
            .collect();
        assert_eq!(mine, expected);
    }
    log.close();
}

#[test]
fn bad_settings_and_foreign_files_are_refused_with_a_reason() {
    let dir = TempDir::new("settings");
    let tiny = LogConfig {
        segment_bytes: 100,
        ..LogConfig::in_dir(&dir.0)
    };
    let e = SignInLog::open(tiny).err().unwrap();
    assert!(e.to_string().contains("segment size"), "{e}");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("0000000001.log"), b"not a log at all").unwrap();
    let e = SignInLog::open(LogConfig::in_dir(&dir.0)).err().unwrap();
    assert!(e.to_string().contains("not a sign-in log segment"), "{e}");
}

#[test]
fn times_print_as_rfc3339_utc() {
    assert_eq!(signin::rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        signin::rfc3339(1_700_000_000_123),
        "2023-11-14T22:13:20.123Z"
    );
    assert_eq!(signin::rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    let line = signin::to_line(&SignInRow::from(row("kari \"x\"\nola", 0)));
    assert!(!line.contains('\n'), "{line}");
}

/// Record format 1, byte for byte: the files on disk do not follow the wire protocol, so
/// they are pinned here on their own. (These are also the bytes the wire's sign-in row
/// has, and had when the log wrote it, so segments written before the log had its own
/// type read.) Records written before the frontend was named end after the rule.
#[test]
fn the_record_format_is_fixed() {
    let r = Record {
        at_ms: 0x0102_0304_0506_0708,
        tenant: "k",
        user: "ø",
        ip: "192.0.2.1".parse().unwrap(),
        purpose: 1,
        outcome: 2,
        reason: "r",
        method: Some(3),
        location: "l",
        rule: "x",
        frontend: 2,
    };
    let mut b = BytesMut::new();
    assert!(signin::append(&mut b, &r));
    let body: &[u8] = &[
        1, 2, 3, 4, 5, 6, 7, 8, // time, ms
        1, b'k', // tenant
        2, 0xc3, 0xb8, // user "ø"
        4, 192, 0, 2, 1, // ip
        1, 2, // purpose, outcome
        1, b'r', // reason
        1, 3, // method: present, 3
        1, b'l', // location
        1, b'x', // rule
        2,    // frontend: RADIUS
    ];
    assert_eq!(&b[..2], &(body.len() as u16).to_be_bytes());
    assert_eq!(&b[2..6], &crc32fast::hash(body).to_be_bytes());
    assert_eq!(&b[6..], body);
    assert_eq!(signin::decode(body), Some(r));
    // What the log wrote before it had its own type: the wire row, encoded.
    let mut wire = BytesMut::new();
    portvakt_wire::admin::Field::write(
        &SignInRow::from(r),
        &mut portvakt_wire::codec::Writer::new(&mut wire),
    );
    assert_eq!(&wire[..], body);
    // IPv6, no method.
    let v6 = Record {
        ip: "2001:db8::1".parse().unwrap(),
        method: None,
        ..r
    };
    let mut b = BytesMut::new();
    assert!(signin::append(&mut b, &v6));
    assert_eq!(signin::decode(&b[6..]), Some(v6));
    // Without the frontend byte: a record from before, asked over QUIC.
    let older = &body[..body.len() - 1];
    assert_eq!(
        signin::decode(older),
        Some(Record {
            frontend: portvakt_wire::admin::Frontend::Quic as u8,
            ..r
        })
    );
    // Anything else is no record: a trailing byte, a bad family, an over-long reason.
    let mut longer = body.to_vec();
    longer.push(0);
    assert_eq!(signin::decode(&longer), None);
    let mut family = body.to_vec();
    family[13] = 5;
    assert_eq!(signin::decode(&family), None);
    let long = "r".repeat(65);
    let mut b = BytesMut::new();
    assert!(!signin::append(&mut b, &Record { reason: &long, ..r }));
    assert!(b.is_empty(), "nothing appended");
}

#[tokio::test]
async fn a_query_reads_only_the_records_it_returns() {
    let dir = TempDir::new("reads");
    let config = LogConfig {
        // Several segments, sealed with their index files as they fill.
        segment_bytes: 256 << 10,
        sync_every: Duration::from_millis(5),
        ..LogConfig::in_dir(&dir.0)
    };
    let log = SignInLog::open(config.clone()).unwrap();
    for t in 0..10_000u64 {
        let mut rows = vec![row("busy", t)];
        if t % 3_000 == 1_500 {
            rows.push(row("rare", t));
        }
        log.submit(&batch(&rows)).await.unwrap();
    }
    // Let the sync thread seal the full segments.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let idx = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "idx")
        })
        .count();
    assert!(idx >= 2, "{idx} index files");
    let check = |log: &SignInLog| {
        // A rare user among ten thousand records: only its own three are read.
        let page = log.query(&query("rare", 0, u64::MAX)).unwrap();
        assert_eq!((page.rows.len(), page.read), (3, 3));
        // A full page of the tenant: its rows and the one that says there are more.
        let page = log.query(&query("", 0, u64::MAX)).unwrap();
        assert_eq!((page.rows.len(), page.read), (24, 25));
        // From a time in the middle: a checkpoint before it, not the start.
        let page = log.query(&query("busy", 7_000, 7_010)).unwrap();
        let times: Vec<u64> = page
            .rows
            .iter()
            .map(|b| signin::decode(b).unwrap().at_ms)
            .collect();
        assert_eq!(times, (7_000..7_010).collect::<Vec<_>>());
        assert!(page.read <= 10 + 2 * 256, "{} records read", page.read);
    };
    check(&log);
    assert_eq!(all(&log, query("busy", 0, u64::MAX)).len(), 10_000);
    log.close();
    // After a restart the sealed segments are known from their index files, and the
    // last one's index is rebuilt from the records.
    let log = SignInLog::open(config.clone()).unwrap();
    check(&log);
    log.close();
    // A damaged index file is not trusted: the segment is read and indexed again.
    let first_idx = dir.0.join("0000000001.idx");
    let mut bytes = std::fs::read(&first_idx).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&first_idx, &bytes).unwrap();
    let log = SignInLog::open(config).unwrap();
    check(&log);
    assert_eq!(all(&log, query("busy", 0, u64::MAX)).len(), 10_000);
    log.close();
}

/// Writers published a segment's length with `fetch_add` after their `write`, so a
/// writer whose batch landed after another's could publish first, and a query right
/// after its answer could stop short of its record. Batches are now written, indexed and
/// published one at a time: every writer finds its own record the moment its write
/// returns, however many write at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_is_found_as_soon_as_its_write_returns() {
    let dir = TempDir::new("publish");
    let config = LogConfig {
        segment_bytes: 64 << 10,
        ..LogConfig::in_dir(&dir.0)
    };
    let log = SignInLog::open(config).unwrap();
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let log = log.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            for i in 0..300u64 {
                let user = format!("w{w}-{i}");
                // Batches of different sizes, so offsets and lengths interleave.
                let rows: Vec<Record<'_>> = (0..=(i % 4)).map(|k| row(&user, k)).collect();
                log.write(&batch(&rows)).unwrap();
                let page = log.query(&query(&user, 0, u64::MAX)).unwrap();
                assert_eq!(page.rows.len(), rows.len(), "{user} wrote and did not find");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    log.close();
}
