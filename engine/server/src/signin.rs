//! The sign-in log: every decision, on disk, in the order it was made, readable by tenant,
//! user and time.
//!
//! Connection tasks encode a record per decision into a batch (one per chunk of frames
//! read), hand the batch to one writer thread, and wait until it is written *before* they
//! write the answers: a frontend never holds an answer whose record could still be lost
//! with the process. The writer gathers the batches waiting for it into one write, syncs
//! the file to disk at a fixed interval (so a power loss costs at most that interval),
//! and removes the oldest segments past a retention size. The queue to the writer is
//! bounded: when the disk falls behind, connections wait rather than drop records.
//!
//! On disk: `<seq>.log` files of an 8-byte header (`PVSIGN` and the version `01`), then
//! records: a `u16` body length, the body's CRC-32, and the body, which is a
//! [`SignInRow`] in its wire encoding. A torn last record (the process died mid-write) is
//! cut off when the log is opened again.
#![allow(clippy::disallowed_methods)] // the writer thread times its syncs

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use portvakt_wire::admin::{Field, MAX_SIGN_IN_ROWS, SignInRow};
use portvakt_wire::codec::{Reader, Writer};

const MAGIC: &[u8; 8] = b"PVSIGN01";
const HEADER: u64 = MAGIC.len() as u64;
/// Record header: body length (`u16`) and CRC-32 (`u32`).
const RECORD_HEADER: usize = 6;

/// Where and how the log is kept.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The directory of segment files (created if missing).
    pub dir: PathBuf,
    /// A segment is closed and a new one begun past this size.
    pub segment_bytes: u64,
    /// The oldest segments are removed while the log is larger than this.
    pub retain_bytes: u64,
    /// How often written records are synced to disk.
    pub sync_every: Duration,
    /// Batches that may wait for the writer before connections are made to wait.
    pub queue: usize,
}

impl LogConfig {
    /// The defaults in `dir`: 64 MiB segments, 1 GiB kept, synced every 200 ms.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            retain_bytes: 1 << 30,
            sync_every: Duration::from_millis(200),
            queue: 1024,
        }
    }
}

/// Why the log could not be opened, written or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("sign-in log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A setting is out of range.
    #[error("sign-in log: {0}")]
    Config(&'static str),
    /// The log was closed (the server is stopping).
    #[error("the sign-in log is closed")]
    Closed,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Appends one record for `row` to `batch`. Returns false, appending nothing, if a field
/// is over its limit (impossible for rows built from decoded frames and the engine's
/// names, whose limits are the same).
pub fn append(batch: &mut BytesMut, row: &SignInRow<'_>) -> bool {
    if row.check("sign-in row").is_err() {
        return false;
    }
    let start = batch.len();
    batch.put_bytes(0, RECORD_HEADER);
    row.write(&mut Writer::new(batch));
    let body_len = batch.len() - start - RECORD_HEADER;
    let Ok(len) = u16::try_from(body_len) else {
        batch.truncate(start);
        return false;
    };
    let crc = crc32fast::hash(batch.get(start + RECORD_HEADER..).unwrap_or_default());
    if let Some(header) = batch.get_mut(start..start + RECORD_HEADER) {
        header[..2].copy_from_slice(&len.to_be_bytes());
        header[2..].copy_from_slice(&crc.to_be_bytes());
    }
    true
}

/// Decodes a record body.
pub fn decode(body: &[u8]) -> Option<SignInRow<'_>> {
    let mut r = Reader::new(body);
    let row = SignInRow::read(&mut r, "sign-in row").ok()?;
    r.finish().ok()?;
    Some(row)
}

/// One record's place: its body, and where the next record starts.
struct Scanned<'a> {
    body: &'a [u8],
    end: usize,
}

/// The record at the start of `buf`: `Ok(None)` if `buf` ends before the record does,
/// `Err` if the bytes are not a record.
fn scan(buf: &[u8]) -> Result<Option<Scanned<'_>>, ()> {
    let Some(header) = buf.get(..RECORD_HEADER) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
    let crc = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    let end = RECORD_HEADER + len;
    let Some(body) = buf.get(RECORD_HEADER..end) else {
        return Ok(None);
    };
    if crc32fast::hash(body) != crc || decode(body).is_none() {
        return Err(());
    }
    Ok(Some(Scanned { body, end }))
}

fn time_of(body: &[u8]) -> u64 {
    body.get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// One segment file as the log knows it.
#[derive(Clone, Copy, Debug)]
struct Segment {
    seq: u32,
    /// Bytes of whole, valid records (with the header): readers stop here.
    len: u64,
    /// Earliest and latest record time (`u64::MAX`, 0 while empty).
    min_ms: u64,
    max_ms: u64,
}

impl Segment {
    fn new(seq: u32) -> Self {
        Self {
            seq,
            len: HEADER,
            min_ms: u64::MAX,
            max_ms: 0,
        }
    }

    fn note(&mut self, at_ms: u64) {
        self.min_ms = self.min_ms.min(at_ms);
        self.max_ms = self.max_ms.max(at_ms);
    }
}

fn segment_path(dir: &Path, seq: u32) -> PathBuf {
    dir.join(format!("{seq:010}.log"))
}

/// What a query asks for.
#[derive(Clone, Debug)]
pub struct Query {
    /// Organisation.
    pub tenant: String,
    /// User name; empty for every user of the tenant.
    pub user: String,
    /// From this time (inclusive), ms since the epoch.
    pub from_ms: u64,
    /// To this time (exclusive).
    pub to_ms: u64,
    /// Where to resume (0: the oldest record kept).
    pub cursor: u64,
    /// At most this many rows (capped at the protocol's page size).
    pub limit: usize,
}

impl Query {
    fn matches(&self, row: &SignInRow<'_>) -> bool {
        row.at_ms >= self.from_ms
            && row.at_ms < self.to_ms
            && row.tenant == self.tenant
            && (self.user.is_empty() || row.user == self.user)
    }
}

/// A page of records: their bodies (decode them with [`decode`]) and the cursor to ask
/// with for the next page, if more records match.
#[derive(Debug, Default)]
pub struct Page {
    /// Record bodies, oldest first.
    pub rows: Vec<Vec<u8>>,
    /// Where the next match is.
    pub next: Option<u64>,
}

enum Msg {
    Batch(Bytes, tokio::sync::oneshot::Sender<()>),
    Flush(tokio::sync::oneshot::Sender<()>),
    Close(tokio::sync::oneshot::Sender<()>),
}

struct Shared {
    dir: PathBuf,
    segments: Mutex<Vec<Segment>>,
}

impl Shared {
    fn segments(&self) -> MutexGuard<'_, Vec<Segment>> {
        // A writer that panicked mid-update leaves lengths that only ever grow: still safe
        // to read.
        self.segments.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handle connections and administrators use; clones share one writer.
#[derive(Clone)]
pub struct SignInLog {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl SignInLog {
    /// Opens the log in `config.dir`, recovering what earlier runs wrote (a torn last
    /// record is cut off), and starts the writer thread.
    pub fn open(config: LogConfig) -> Result<Self, LogError> {
        if config.segment_bytes < 4096 || config.segment_bytes > u64::from(u32::MAX) {
            return Err(LogError::Config(
                "the segment size must be between 4 KiB and 4 GiB",
            ));
        }
        if config.queue == 0 {
            return Err(LogError::Config("the queue must hold at least one batch"));
        }
        fs::create_dir_all(&config.dir).map_err(io_error(&config.dir))?;
        let mut segments = recover(&config.dir)?;
        let seq = segments.last().map_or(Ok(1), |s| {
            s.seq.checked_add(1).ok_or(LogError::Config(
                "segment numbers are exhausted; move the old log away",
            ))
        })?;
        let file = create_segment(&config.dir, seq)?;
        segments.push(Segment::new(seq));
        let shared = Arc::new(Shared {
            dir: config.dir.clone(),
            segments: Mutex::new(segments),
        });
        let (tx, rx) = crossbeam_channel::bounded(config.queue);
        let mut writer = Appender {
            config,
            shared: shared.clone(),
            file,
            last_sync: Instant::now(),
            dirty: false,
        };
        writer.enforce_retention();
        let handle = std::thread::Builder::new()
            .name("portvakt-signin".into())
            .spawn(move || writer.run(&rx))
            .map_err(io_error(&shared.dir))?;
        Ok(Self {
            tx,
            shared,
            writer: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// Hands a batch of records (made with [`append`]) to the writer and waits until it
    /// is written to the file (in the operating system's hands: it survives the process,
    /// and is synced to disk within the sync interval). When the queue is full this also
    /// waits, off the async runtime's threads, until there is room.
    pub async fn submit(&self, batch: Bytes) -> Result<(), LogError> {
        let (done, written) = tokio::sync::oneshot::channel();
        match self.tx.try_send(Msg::Batch(batch, done)) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return Err(LogError::Closed),
            Err(TrySendError::Full(msg)) => {
                metrics::counter!(crate::metrics::SIGNIN_WAITS).increment(1);
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(msg))
                    .await
                    .map_err(|_| LogError::Closed)?
                    .map_err(|_| LogError::Closed)?;
            }
        }
        written.await.map_err(|_| LogError::Closed)
    }

    /// Waits until every batch submitted before this call is written, so a query sees it
    /// (submitters wait for their own batches anyway; this covers other connections').
    pub async fn flush(&self) -> Result<(), LogError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || tx.send(Msg::Flush(done)))
            .await
            .map_err(|_| LogError::Closed)?
            .map_err(|_| LogError::Closed)?;
        wait.await.map_err(|_| LogError::Closed)
    }

    /// Reads a page of matching records (blocking: file reads).
    pub fn query(&self, q: &Query) -> Result<Page, LogError> {
        let segments = self.shared.segments().clone();
        let limit = q.limit.clamp(1, MAX_SIGN_IN_ROWS);
        let (from_seq, from_offset) = (
            u32::try_from(q.cursor >> 32).unwrap_or(u32::MAX),
            q.cursor & u64::from(u32::MAX),
        );
        let mut page = Page::default();
        for seg in segments.iter().filter(|s| s.seq >= from_seq) {
            if seg.len <= HEADER || seg.max_ms < q.from_ms || seg.min_ms >= q.to_ms {
                continue;
            }
            let start = if seg.seq == from_seq {
                from_offset.max(HEADER)
            } else {
                HEADER
            };
            if start >= seg.len {
                continue;
            }
            let path = segment_path(&self.shared.dir, seg.seq);
            let file = match File::open(&path) {
                Ok(f) => f,
                // Removed by retention since the list was read: its records are gone.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&path)(e)),
            };
            let mut file = file;
            file.seek(SeekFrom::Start(start)).map_err(io_error(&path))?;
            let mut reader = BufReader::with_capacity(256 << 10, file).take(seg.len - start);
            let mut offset = start;
            let mut body = vec![0u8; usize::from(u16::MAX)];
            loop {
                let mut header = [0u8; RECORD_HEADER];
                if read_all(&mut reader, &mut header).map_err(io_error(&path))? {
                    break;
                }
                let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
                let buf = body.get_mut(..len).unwrap_or_default();
                if read_all(&mut reader, buf).map_err(io_error(&path))? {
                    break;
                }
                let here = offset;
                offset += (RECORD_HEADER + len) as u64;
                // Records inside `len` were checked when written or recovered.
                let Some(row) = decode(buf) else { continue };
                if !q.matches(&row) {
                    continue;
                }
                if page.rows.len() == limit {
                    page.next = Some(u64::from(seg.seq) << 32 | here);
                    return Ok(page);
                }
                page.rows.push(buf.to_vec());
            }
        }
        Ok(page)
    }

    /// Writes everything submitted, syncs it to disk, and stops the writer (blocking).
    /// Later submissions fail with [`LogError::Closed`]; call it once connections are
    /// closed.
    pub fn close(&self) {
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let (done, _wait) = tokio::sync::oneshot::channel();
            if self.tx.send(Msg::Close(done)).is_ok() {
                let _ = handle.join();
            }
        }
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(true)` if the input ended first.
fn read_all(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(true),
        Err(e) => Err(e),
    }
}

/// Lists the segments in `dir` and checks every record; a segment whose tail is not
/// whole records is cut back to its last whole one.
fn recover(dir: &Path) -> Result<Vec<Segment>, LogError> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let seq = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|n| n.len() == 10)
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(seq) = seq {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    let mut segments = Vec::with_capacity(seqs.len());
    let last = seqs.last().copied();
    for seq in seqs {
        let path = segment_path(dir, seq);
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        if bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) {
            // Created, but the process died before the header was whole: no records.
            fs::remove_file(&path).map_err(io_error(&path))?;
            continue;
        }
        if bytes.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
            return Err(LogError::Io {
                path,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a sign-in log segment of this version",
                ),
            });
        }
        let mut seg = Segment::new(seq);
        let mut at = MAGIC.len();
        let whole = loop {
            match scan(bytes.get(at..).unwrap_or_default()) {
                Ok(Some(record)) => {
                    seg.note(time_of(record.body));
                    at += record.end;
                }
                Ok(None) => break at == bytes.len(),
                Err(()) => break false,
            }
        };
        seg.len = at as u64;
        if !whole && Some(seq) != last {
            // Damage inside an older segment: read up to it, and leave the file as it is
            // for whoever investigates.
            crate::warn(format_args!(
                "sign-in log {}: damaged at byte {at}; the {} bytes after it are not read",
                path.display(),
                bytes.len() - at
            ));
        } else if !whole {
            // A write the process did not finish: the records before it are whole.
            crate::warn(format_args!(
                "sign-in log {}: {} bytes after the last whole record cut off",
                path.display(),
                bytes.len() - at
            ));
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_error(&path))?;
            file.set_len(seg.len).map_err(io_error(&path))?;
            file.sync_all().map_err(io_error(&path))?;
        }
        segments.push(seg);
    }
    Ok(segments)
}

fn create_segment(dir: &Path, seq: u32) -> Result<File, LogError> {
    let path = segment_path(dir, seq);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io_error(&path))?;
    file.write_all(MAGIC).map_err(io_error(&path))?;
    file.sync_all().map_err(io_error(&path))?;
    // The new name must survive a crash too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(file)
}

/// The writer thread's state.
struct Appender {
    config: LogConfig,
    shared: Arc<Shared>,
    file: File,
    last_sync: Instant,
    dirty: bool,
}

/// Batches gathered into one write, at most.
const GATHER: usize = 1 << 20;

impl Appender {
    fn run(&mut self, rx: &Receiver<Msg>) {
        let mut pending = Vec::with_capacity(GATHER);
        let mut waiters = Vec::new();
        loop {
            let first = match rx.recv_timeout(self.config.sync_every) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut closing = None;
            let mut next = first;
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Batch(b, done) => {
                        pending.extend_from_slice(&b);
                        waiters.push(done);
                    }
                    Msg::Flush(done) => waiters.push(done),
                    Msg::Close(done) => closing = Some(done),
                }
                if pending.len() < GATHER {
                    next = rx.try_recv().ok();
                }
            }
            if !pending.is_empty() {
                self.write(&pending);
                pending.clear();
            }
            for done in waiters.drain(..) {
                let _ = done.send(());
            }
            if let Some(done) = closing {
                self.sync();
                let _ = done.send(());
                return;
            }
            if self.dirty && self.last_sync.elapsed() >= self.config.sync_every {
                self.sync();
            }
        }
        self.sync();
    }

    /// Appends whole records, retrying until the disk takes them: records are never
    /// dropped, so a disk that refuses writes makes connections wait (and says so).
    fn write(&mut self, records: &[u8]) {
        let (mut min, mut max, mut count) = (u64::MAX, 0, 0u64);
        let mut at = 0;
        while let Ok(Some(r)) = scan(records.get(at..).unwrap_or_default()) {
            let t = time_of(r.body);
            (min, max, count) = (min.min(t), max.max(t), count + 1);
            at += r.end;
        }
        let mut failures = 0u32;
        loop {
            match self.try_write(records, min, max) {
                Ok(()) => break,
                Err(e) => {
                    metrics::counter!(crate::metrics::SIGNIN_WRITE_ERRORS).increment(1);
                    if failures.is_power_of_two() || failures == 0 {
                        crate::warn(format_args!(
                            "{e}; {} records wait, and decisions wait with them",
                            count
                        ));
                    }
                    failures = failures.saturating_add(1);
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        metrics::counter!(crate::metrics::SIGNIN_RECORDS).increment(count);
    }

    fn try_write(&mut self, records: &[u8], min: u64, max: u64) -> Result<(), LogError> {
        let current = self.current();
        if current.len > HEADER && current.len + records.len() as u64 > self.config.segment_bytes {
            self.sync();
            let seq = current.seq.checked_add(1).ok_or(LogError::Config(
                "segment numbers are exhausted; move the old log away",
            ))?;
            self.file = create_segment(&self.shared.dir, seq)?;
            self.shared.segments().push(Segment::new(seq));
            self.enforce_retention();
        }
        let current = self.current();
        let path = segment_path(&self.shared.dir, current.seq);
        if let Err(e) = self.file.write_all(records) {
            // Take back a partial write, so the retry does not leave half a batch behind.
            let _ = self.file.set_len(current.len);
            return Err(io_error(&path)(e));
        }
        self.dirty = true;
        let mut segments = self.shared.segments();
        if let Some(last) = segments.last_mut() {
            last.len += records.len() as u64;
            if min <= max {
                last.note(min);
                last.note(max);
            }
        }
        drop(segments);
        metrics::gauge!(crate::metrics::SIGNIN_BYTES).set(self.total() as f64);
        Ok(())
    }

    fn current(&self) -> Segment {
        self.shared
            .segments()
            .last()
            .copied()
            .unwrap_or(Segment::new(1))
    }

    fn total(&self) -> u64 {
        self.shared.segments().iter().map(|s| s.len).sum()
    }

    fn sync(&mut self) {
        if self.dirty {
            if let Err(e) = self.file.sync_data() {
                metrics::counter!(crate::metrics::SIGNIN_WRITE_ERRORS).increment(1);
                crate::warn(format_args!("sign-in log: syncing to disk: {e}"));
            }
            self.dirty = false;
        }
        self.last_sync = Instant::now();
    }

    /// Removes the oldest segments (never the one being written) while the log is over
    /// its retention size.
    fn enforce_retention(&mut self) {
        loop {
            let mut segments = self.shared.segments();
            let total: u64 = segments.iter().map(|s| s.len).sum();
            if total <= self.config.retain_bytes || segments.len() < 2 {
                return;
            }
            let oldest = segments.remove(0);
            drop(segments);
            let path = segment_path(&self.shared.dir, oldest.seq);
            match fs::remove_file(&path) {
                Ok(()) => {
                    metrics::counter!(crate::metrics::SIGNIN_SEGMENTS_REMOVED).increment(1);
                    crate::warn(format_args!(
                        "sign-in log: retention removed {} ({} bytes, records up to {} ms)",
                        path.display(),
                        oldest.len,
                        oldest.max_ms
                    ));
                }
                Err(e) => crate::warn(format_args!(
                    "sign-in log: removing {}: {e}",
                    path.display()
                )),
            }
        }
    }
}

fn names(row: &SignInRow<'_>) -> (&'static str, &'static str, Option<&'static str>) {
    use portvakt_wire::{MethodKind, Outcome, Purpose};
    (
        Purpose::from_code(row.purpose).map_or("unknown", Purpose::as_str),
        Outcome::from_code(row.outcome).map_or("unknown", Outcome::as_str),
        row.method
            .map(|m| MethodKind::from_code(m).map_or("unknown", MethodKind::as_str)),
    )
}

/// A record as one JSON object (for `portvakt admin sign-ins --json`).
pub fn to_json(row: &SignInRow<'_>) -> serde_json::Value {
    let (purpose, outcome, method) = names(row);
    serde_json::json!({
        "time": rfc3339(row.at_ms),
        "at_ms": row.at_ms,
        "tenant": row.tenant,
        "user": row.user,
        "ip": row.ip.to_string(),
        "purpose": purpose,
        "outcome": outcome,
        "reason": row.reason,
        "method": method,
        "location": row.location,
        "rule": row.rule,
    })
}

/// A record as one line for people. The user name is quoted with escapes, so a name
/// with spaces or control characters cannot forge a second record or column.
pub fn to_line(row: &SignInRow<'_>) -> String {
    let (purpose, outcome, method) = names(row);
    format!(
        "{} {:?} {} {purpose} {outcome} {} location={} rule={} method={}",
        rfc3339(row.at_ms),
        row.user,
        row.ip,
        row.reason,
        row.location,
        row.rule,
        method.unwrap_or("-"),
    )
}

/// Milliseconds since the epoch as an RFC 3339 time in UTC (proleptic Gregorian).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}
