//! The sign-in log: every decision, on disk, in the order it was made, readable by tenant,
//! user and time.
//!
//! A connection encodes one record per decision into a batch (one batch per read of
//! requests) and appends the batch to the current segment file with one `write`
//! *before* it sends the answers: a frontend never holds an answer whose record could
//! still be lost with the process. Batches are written one at a time per segment, and
//! each one's records are listed in the segment's index ([`index`]) and its length
//! published before the next is written: a query made after an answer therefore finds
//! that answer's record, and reads only the records it returns. A background thread
//! syncs the file to disk at a fixed interval (a power loss costs at most that interval),
//! writes the index of each segment nobody writes any more beside it, and removes the
//! oldest segments past a retention size. A write that fails is retried until it
//! succeeds: connections wait rather than answer without a record.
//!
//! On disk: `<seq>.log` files of an 8-byte header (`PVSIGN` and the version `01`), then
//! records: a `u16` body length, the body's CRC-32, and the body, which is a [`Record`]
//! in the log's own encoding. Readers skip bytes that are not a whole record with
//! a matching checksum (a torn or failed write) and find the next record after them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{BufMut, BytesMut};
use crossbeam_channel::{RecvTimeoutError, Sender};
use portvakt_wire::admin::{MAX_SIGN_IN_ROWS, SignInRow};

pub mod index;

use crate::bytes_in::Reader;

const MAGIC: &[u8; 8] = b"PVSIGN01";
const HEADER: u64 = MAGIC.len() as u64;
/// Record header: body length (`u16`) and CRC-32 (`u32`).
const RECORD_HEADER: usize = 6;
/// How long a connection waits before it writes a batch again after a failed write.
const RETRY: Duration = Duration::from_millis(500);

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
}

impl LogConfig {
    /// The defaults in `dir`: 64 MiB segments, 1 GiB kept, synced every 200 ms.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            retain_bytes: 1 << 30,
            sync_every: Duration::from_millis(200),
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

/// One decision as the log keeps it. The log's own type with its own encoding (record
/// format 1, `docs/operations.md`), so the files on disk stay readable whatever becomes of
/// the wire protocol; [`From`] makes the protocol's row of it for administrators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Organisation, as the frontend named it.
    pub tenant: &'a str,
    /// User name, as the frontend named it (known or not).
    pub user: &'a str,
    /// The client's address.
    pub ip: std::net::IpAddr,
    /// Purpose: 1 sign-in, 2 password reset, 3 legacy protocol.
    pub purpose: u8,
    /// Outcome: 1 allow, 2 deny, 3 challenge, 4 locked, 5 register, 6 throttled.
    pub outcome: u8,
    /// The decision's reason code.
    pub reason: &'a str,
    /// The kind of method that proved the user: 1 app, 2 token, 3 SMS, 4 voice, 5 security
    /// key, 6 email, 7 security questions.
    pub method: Option<u8>,
    /// Named location of the address.
    pub location: &'a str,
    /// The rule that decided.
    pub rule: &'a str,
    /// The frontend that asked ([`portvakt_wire::admin::Frontend`] code).
    pub frontend: u8,
}

/// The longest names, reason, location and rule a record holds (one length byte each).
const MAX_NAME: usize = 128;
const MAX_REASON: usize = 64;

impl<'a> Record<'a> {
    /// Writes the record's body; false, writing nothing, if a field is over its limit.
    fn encode(&self, out: &mut BytesMut) -> bool {
        let fits = [
            (self.tenant, MAX_NAME),
            (self.user, MAX_NAME),
            (self.reason, MAX_REASON),
            (self.location, MAX_NAME),
            (self.rule, MAX_NAME),
        ]
        .iter()
        .all(|(s, max)| s.len() <= *max);
        if !fits {
            return false;
        }
        let str8 = |out: &mut BytesMut, s: &str| {
            out.put_u8(u8::try_from(s.len()).unwrap_or(u8::MAX));
            out.put_slice(s.as_bytes());
        };
        out.put_u64(self.at_ms);
        str8(out, self.tenant);
        str8(out, self.user);
        match self.ip {
            std::net::IpAddr::V4(v4) => {
                out.put_u8(4);
                out.put_slice(&v4.octets());
            }
            std::net::IpAddr::V6(v6) => {
                out.put_u8(6);
                out.put_slice(&v6.octets());
            }
        }
        out.put_u8(self.purpose);
        out.put_u8(self.outcome);
        str8(out, self.reason);
        match self.method {
            Some(m) => {
                out.put_u8(1);
                out.put_u8(m);
            }
            None => out.put_u8(0),
        }
        str8(out, self.location);
        str8(out, self.rule);
        out.put_u8(self.frontend);
        true
    }

    /// Reads a record body; `None` unless it is exactly one well-formed record.
    fn decode(body: &'a [u8]) -> Option<Self> {
        let mut b = Reader(body);
        let record = Self {
            at_ms: u64::from_be_bytes(b.array()?),
            tenant: b.str8(MAX_NAME)?,
            user: b.str8(MAX_NAME)?,
            ip: match b.u8()? {
                4 => std::net::IpAddr::from(b.array::<4>()?),
                6 => std::net::IpAddr::from(b.array::<16>()?),
                _ => return None,
            },
            purpose: b.u8()?,
            outcome: b.u8()?,
            reason: b.str8(MAX_REASON)?,
            method: match b.u8()? {
                0 => None,
                1 => Some(b.u8()?),
                _ => return None,
            },
            location: b.str8(MAX_NAME)?,
            rule: b.str8(MAX_NAME)?,
            // Records written before the log named frontends end here: they were all
            // asked over QUIC.
            frontend: match b.is_empty() {
                true => portvakt_wire::admin::Frontend::Quic as u8,
                false => b.u8()?,
            },
        };
        b.is_empty().then_some(record)
    }
}

impl<'a> From<Record<'a>> for SignInRow<'a> {
    fn from(r: Record<'a>) -> Self {
        SignInRow {
            at_ms: r.at_ms,
            tenant: r.tenant,
            user: r.user,
            ip: r.ip,
            purpose: r.purpose,
            outcome: r.outcome,
            reason: r.reason,
            method: r.method,
            location: r.location,
            rule: r.rule,
            frontend: r.frontend,
        }
    }
}

/// Appends one record to `batch`. Returns false, appending nothing, if a field is over
/// its limit (impossible for records built from decoded frames and the engine's names,
/// whose limits are the same).
pub fn append(batch: &mut BytesMut, record: &Record<'_>) -> bool {
    let start = batch.len();
    batch.put_bytes(0, RECORD_HEADER);
    if !record.encode(batch) {
        batch.truncate(start);
        return false;
    }
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
pub fn decode(body: &[u8]) -> Option<Record<'_>> {
    Record::decode(body)
}

/// The record at the start of `buf`, if a whole one with a matching checksum is there:
/// its body, its row, and its length with the header.
fn record_at(buf: &[u8]) -> Option<(&[u8], Record<'_>, usize)> {
    let header = buf.get(..RECORD_HEADER)?;
    let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
    let crc = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    let body = buf.get(RECORD_HEADER..RECORD_HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    Some((body, decode(body)?, RECORD_HEADER + len))
}

/// Visits the records in `buf` with their offsets, stepping over bytes that are not
/// records, until `visit` says stop. Returns the bytes stepped over before the last whole
/// record (damage), and where the last whole record ends (bytes after it are a torn
/// tail).
fn walk<'a>(
    buf: &'a [u8],
    mut visit: impl FnMut(usize, &'a [u8], Record<'a>) -> bool,
) -> (usize, usize) {
    let (mut at, mut skipped, mut end) = (0, 0, 0);
    while at < buf.len() {
        match record_at(buf.get(at..).unwrap_or_default()) {
            Some((body, row, n)) => {
                if !visit(at, body, row) {
                    return (skipped, at);
                }
                at += n;
                end = at;
            }
            None => {
                at += 1;
                skipped += 1;
            }
        }
    }
    (skipped - (buf.len() - end).min(skipped), end)
}

/// Fuzzing hooks: the reader's walk and the record framing, which are private.
#[cfg(fuzzing)]
pub mod fuzzing {
    use super::{RECORD_HEADER, Record, walk};

    /// A record's header: its body's length and checksum.
    pub const HEADER_LEN: usize = RECORD_HEADER;

    /// A record a walk found: where it starts, its length with the header, its row.
    pub type Found<'a> = (usize, usize, Record<'a>);

    /// Walks `buf` as readers and recovery do: the records found, the bytes stepped over
    /// as damage, and where the last whole record ends.
    pub fn walk_segment(buf: &[u8]) -> (Vec<Found<'_>>, usize, usize) {
        let mut rows = Vec::new();
        let (skipped, end) = walk(buf, |at, body, row| {
            rows.push((at, RECORD_HEADER + body.len(), row));
            true
        });
        (rows, skipped, end)
    }

    /// Frames `body` as a record (length and checksum), as if a writer had written it.
    pub fn frame_record(body: &[u8], out: &mut Vec<u8>) -> bool {
        let Ok(len) = u16::try_from(body.len()) else {
            return false;
        };
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
        out.extend_from_slice(body);
        true
    }
}

/// One segment file as the log knows it; writers update it as they append.
#[derive(Debug)]
struct Segment {
    seq: u32,
    /// Bytes written (with the header); readers stop here.
    len: AtomicU64,
    /// Earliest and latest record time (`u64::MAX` and 0 while empty).
    min_ms: AtomicU64,
    max_ms: AtomicU64,
    /// The index in memory while the segment may be written; `None` once it is in its
    /// file (`<seq>.idx`).
    index: Mutex<Option<index::Index>>,
}

impl Segment {
    fn new(seq: u32, len: u64) -> Self {
        Self {
            seq,
            len: AtomicU64::new(len),
            min_ms: AtomicU64::new(u64::MAX),
            max_ms: AtomicU64::new(0),
            index: Mutex::new(Some(index::Index::default())),
        }
    }

    fn note(&self, min: u64, max: u64) {
        self.min_ms.fetch_min(min, Ordering::Relaxed);
        self.max_ms.fetch_max(max, Ordering::Relaxed);
    }
}

fn segment_path(dir: &Path, seq: u32) -> PathBuf {
    dir.join(format!("{seq:010}.log"))
}

fn index_path(dir: &Path, seq: u32) -> PathBuf {
    dir.join(format!("{seq:010}.idx"))
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
    fn matches(&self, row: &Record<'_>) -> bool {
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
    /// Records read from disk to make the page: the rows and the one after them, plus any
    /// outside the time window or sharing an index key by chance.
    pub read: u64,
}

/// The segment being appended to.
struct Active {
    file: File,
    segment: Arc<Segment>,
    /// Held while a batch is written, indexed and published.
    writing: Mutex<()>,
}

struct Shared {
    config: LogConfig,
    active: ArcSwap<Active>,
    /// Every segment kept, oldest first; the last is the active one.
    segments: Mutex<Vec<Arc<Segment>>>,
    /// Segments replaced and not yet sealed: synced at every round, and their index
    /// written to its file once nobody holds them to write.
    retired: Mutex<Vec<Arc<Active>>>,
    rotating: Mutex<()>,
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data whole, so a panic elsewhere changes nothing.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The handle connections and administrators use; clones share one log.
#[derive(Clone)]
pub struct SignInLog {
    shared: Arc<Shared>,
    syncer: Arc<Mutex<Option<Syncer>>>,
}

/// The sync thread, and the channel that stops it.
type Syncer = (Sender<()>, JoinHandle<()>);

impl SignInLog {
    /// Opens the log in `config.dir`, recovering what earlier runs wrote (a torn last
    /// record is cut off), begins a new segment, and starts the sync thread.
    pub fn open(config: LogConfig) -> Result<Self, LogError> {
        if config.segment_bytes < 4096 || config.segment_bytes > u64::from(u32::MAX) {
            return Err(LogError::Config(
                "the segment size must be between 4 KiB and 4 GiB",
            ));
        }
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut segments = recover(&dir)?;
        let seq = next_seq(segments.last().map(|s| s.seq))?;
        let active = create_segment(&dir, seq)?;
        segments.push(active.segment.clone());
        let shared = Arc::new(Shared {
            config,
            active: ArcSwap::from_pointee(active),
            segments: Mutex::new(segments),
            retired: Mutex::new(Vec::new()),
            rotating: Mutex::new(()),
            closed: AtomicBool::new(false),
        });
        enforce_retention(&shared);
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let syncing = shared.clone();
        let handle = std::thread::Builder::new()
            .name("portvakt-signin-sync".into())
            .spawn(move || {
                let mut synced = 0;
                loop {
                    let last = match stopped.recv_timeout(syncing.config.sync_every) {
                        Err(RecvTimeoutError::Timeout) => false,
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                    };
                    synced = sync(&syncing, synced);
                    enforce_retention(&syncing);
                    if last {
                        return;
                    }
                }
            })
            .map_err(io_error(&dir))?;
        Ok(Self {
            shared,
            syncer: Arc::new(Mutex::new(Some((stop, handle)))),
        })
    }

    /// Appends a batch of records (made with [`append`]) to the log, and returns once it
    /// is written to the file: in the operating system's hands, so it outlives the
    /// process, and synced to disk within the sync interval. A failed write is retried
    /// until it succeeds; only a closed log makes this fail.
    pub async fn submit(&self, batch: &[u8]) -> Result<(), LogError> {
        loop {
            match self.write(batch) {
                Ok(()) => return Ok(()),
                Err(LogError::Closed) => return Err(LogError::Closed),
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        }
    }

    /// One attempt at appending `batch` (blocking: one `write`).
    pub fn write(&self, batch: &[u8]) -> Result<(), LogError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let active = self.shared.active.load_full();
        let segment = &active.segment;
        let writing = lock(&active.writing);
        let at = segment.len.load(Ordering::Acquire);
        match (&active.file).write_all(batch) {
            Ok(()) => {
                let end = at + batch.len() as u64;
                // Published before it is indexed: every offset a reader finds is below
                // the length it reads to.
                segment.len.store(end, Ordering::Release);
                let (count, min, max) = index_batch(lock(&segment.index).as_mut(), at, batch);
                segment.note(min, max);
                drop(writing);
                metrics::counter!(crate::metrics::SIGNIN_RECORDS).increment(count);
                if end > self.shared.config.segment_bytes {
                    let _ = rotate(&self.shared, &active);
                }
                Ok(())
            }
            Err(source) => {
                // Part of the batch may be in the file: what comes after it (if anything
                // still does) is placed by the file's real length.
                if let Ok(m) = active.file.metadata() {
                    segment.len.store(m.len(), Ordering::Release);
                }
                drop(writing);
                let path = segment_path(&self.shared.config.dir, segment.seq);
                metrics::counter!(crate::metrics::SIGNIN_WRITE_ERRORS).increment(1);
                crate::warn(format_args!(
                    "sign-in log {}: {source}; the batch of {} records waits and is written again",
                    path.display(),
                    index_batch(None, at, batch).0
                ));
                // Part of the batch may be in the file; the rest of this segment is read
                // past it, and new batches go to a fresh segment.
                let _ = rotate(&self.shared, &active);
                Err(LogError::Io { path, source })
            }
        }
    }

    /// Reads a page of matching records (blocking: file reads). The segment's index says
    /// where the tenant's (or the user's) records are; only those are read, one at a
    /// time, so a query holds one page and a chunk of offsets whatever the log's size.
    pub fn query(&self, q: &Query) -> Result<Page, LogError> {
        let segments = lock(&self.shared.segments).clone();
        let limit = q.limit.clamp(1, MAX_SIGN_IN_ROWS);
        let key = match q.user.as_str() {
            "" => index::tenant_key(&q.tenant),
            user => index::user_key(&q.tenant, user),
        };
        let (from_seq, from_offset) = (
            u32::try_from(q.cursor >> 32).unwrap_or(u32::MAX),
            q.cursor & u64::from(u32::MAX),
        );
        let dir = &self.shared.config.dir;
        let mut page = Page::default();
        let mut buf = Vec::new();
        for seg in segments.iter().filter(|s| s.seq >= from_seq) {
            let len = seg.len.load(Ordering::Acquire);
            let (min, max) = (
                seg.min_ms.load(Ordering::Relaxed),
                seg.max_ms.load(Ordering::Relaxed),
            );
            if len <= HEADER || max < q.from_ms || min >= q.to_ms {
                continue;
            }
            let path = segment_path(dir, seg.seq);
            let file = match File::open(&path) {
                Ok(f) => f,
                // Removed by retention since the list was read: its records are gone.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&path)(e)),
            };
            let lookup = Lookup::of(seg, dir)?;
            let (start, end) = lookup.window(q.from_ms, q.to_ms)?;
            let end = end.min(len);
            let mut from = start.max(HEADER);
            if seg.seq == from_seq {
                from = from.max(from_offset);
            }
            loop {
                let offsets = lookup.offsets(key, from, OFFSETS_AT_ONCE)?;
                let Some(&last) = offsets.last() else { break };
                for offset in offsets.into_iter().map(u64::from) {
                    if offset >= end {
                        break;
                    }
                    page.read += 1;
                    let Some(body) =
                        read_record(&file, offset, len, &mut buf).map_err(io_error(&path))?
                    else {
                        continue; // damaged since it was written: stepped over
                    };
                    let Some(row) = decode(body) else { continue };
                    if !q.matches(&row) {
                        continue;
                    }
                    if page.rows.len() == limit {
                        page.next = Some(u64::from(seg.seq) << 32 | offset);
                        return Ok(page);
                    }
                    page.rows.push(body.to_vec());
                }
                from = u64::from(last) + 1;
                if from >= end {
                    break;
                }
            }
        }
        Ok(page)
    }

    /// Syncs what was written to disk and stops the sync thread (blocking). Later
    /// submissions fail with [`LogError::Closed`]; call it once connections are closed.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        if let Some((stop, handle)) = lock(&self.syncer).take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
    }
}

/// Offsets taken from an index at a time.
const OFFSETS_AT_ONCE: usize = 1024;

/// Where a query finds a segment's index.
enum Lookup<'a> {
    /// In memory (the segment may still be written), locked per chunk of offsets; its
    /// file if the segment is sealed meanwhile.
    Memory(&'a Segment, PathBuf),
    /// In its file.
    File(index::IndexFile),
}

impl<'a> Lookup<'a> {
    fn of(seg: &'a Segment, dir: &Path) -> Result<Self, LogError> {
        let path = index_path(dir, seg.seq);
        if lock(&seg.index).is_some() {
            return Ok(Self::Memory(seg, path));
        }
        Self::file(&path)
    }

    fn file(path: &Path) -> Result<Self, LogError> {
        index::IndexFile::open(path)
            .map(Self::File)
            .map_err(io_error(path))
    }

    fn offsets(&self, key: u32, from: u64, n: usize) -> Result<Vec<u32>, LogError> {
        match self {
            Self::Memory(seg, path) => match lock(&seg.index).as_ref() {
                Some(i) => Ok(i.offsets(key, from, n)),
                None => Self::file(path)?.offsets(key, from, n),
            },
            Self::File(f) => f.offsets(key, from, n).map_err(index_error),
        }
    }

    fn window(&self, from_ms: u64, to_ms: u64) -> Result<(u64, u64), LogError> {
        match self {
            Self::Memory(seg, path) => match lock(&seg.index).as_ref() {
                Some(i) => Ok(i.window(from_ms, to_ms)),
                None => Self::file(path)?.window(from_ms, to_ms),
            },
            Self::File(f) => f.window(from_ms, to_ms).map_err(index_error),
        }
    }
}

fn index_error(source: io::Error) -> LogError {
    LogError::Io {
        path: PathBuf::from("a sign-in log index"),
        source,
    }
}

/// The body of the record at `offset` (before `len`), read into `buf`; `None` if what is
/// there is not a whole record with a matching checksum.
fn read_record<'b>(
    file: &File,
    offset: u64,
    len: u64,
    buf: &'b mut Vec<u8>,
) -> io::Result<Option<&'b [u8]>> {
    use std::os::unix::fs::FileExt as _;
    // Most records fit in one read of this size.
    const GUESS: u64 = 512;
    let want = GUESS.min(len.saturating_sub(offset));
    buf.resize(usize::try_from(want).unwrap_or(0), 0);
    file.read_exact_at(buf, offset)?;
    let Some(header) = buf.get(..RECORD_HEADER) else {
        return Ok(None);
    };
    let body_len = usize::from(u16::from_be_bytes([header[0], header[1]]));
    let whole = RECORD_HEADER + body_len;
    if offset + whole as u64 > len {
        return Ok(None);
    }
    if buf.len() < whole {
        let have = buf.len();
        buf.resize(whole, 0);
        file.read_exact_at(
            buf.get_mut(have..).unwrap_or_default(),
            offset + have as u64,
        )?;
    }
    Ok(record_at(buf.get(..whole).unwrap_or_default()).map(|(body, _, _)| body))
}

/// Lists the records of `batch`, written at `at`, in `index` (if given), and gives their
/// number and their earliest and latest time. The batch is this process's own, made by
/// [`append`]: its lengths and the fields at the front of each body are read without
/// checking it again.
fn index_batch(mut index: Option<&mut index::Index>, at: u64, batch: &[u8]) -> (u64, u64, u64) {
    let (mut count, mut min, mut max) = (0, u64::MAX, 0);
    let mut pos = 0;
    while let Some(header) = batch.get(pos..pos + RECORD_HEADER) {
        let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
        let body = batch
            .get(pos + RECORD_HEADER..pos + RECORD_HEADER + len)
            .unwrap_or_default();
        let mut b = Reader(body);
        let at_ms = b.array().map_or(0, u64::from_be_bytes);
        (count, min, max) = (count + 1, min.min(at_ms), max.max(at_ms));
        if let Some(index) = index.as_deref_mut()
            && let (Some(tenant), Some(user)) = (b.str8(MAX_NAME), b.str8(MAX_NAME))
            && let Ok(offset) = u32::try_from(at + pos as u64)
        {
            index.add(offset, tenant, user, at_ms);
        }
        pos += RECORD_HEADER + len;
    }
    (count, min, max)
}

fn next_seq(last: Option<u32>) -> Result<u32, LogError> {
    last.map_or(Some(1), |s| s.checked_add(1))
        .ok_or(LogError::Config(
            "segment numbers are exhausted; move the old log away",
        ))
}

/// Begins the segment after `old`, unless another writer did already.
fn rotate(shared: &Shared, old: &Arc<Active>) -> Result<(), LogError> {
    let _one = lock(&shared.rotating);
    if !Arc::ptr_eq(&shared.active.load(), old) {
        return Ok(());
    }
    let fresh = next_seq(Some(old.segment.seq))
        .and_then(|seq| create_segment(&shared.config.dir, seq))
        .inspect_err(|e| crate::warn(format_args!("{e}; writing on in the old segment")))?;
    lock(&shared.segments).push(fresh.segment.clone());
    lock(&shared.retired).push(shared.active.swap(Arc::new(fresh)));
    enforce_retention(shared);
    Ok(())
}

/// Syncs the segments replaced since the last round and the active one (if it grew past
/// `synced` bytes); returns the active segment's length synced.
fn sync(shared: &Shared, synced: u64) -> u64 {
    let retired = std::mem::take(&mut *lock(&shared.retired));
    let mut held = Vec::new();
    let active = shared.active.load_full();
    let len = active.segment.len.load(Ordering::Acquire);
    let files = retired
        .iter()
        .chain((len != synced || !retired.is_empty()).then_some(&active));
    for a in files {
        if let Err(e) = a.file.sync_data() {
            metrics::counter!(crate::metrics::SIGNIN_WRITE_ERRORS).increment(1);
            crate::warn(format_args!(
                "sign-in log {}: syncing to disk: {e}",
                segment_path(&shared.config.dir, a.segment.seq).display()
            ));
        }
    }
    // A retired segment still held by a writer that took it before it was replaced may
    // get one more batch: its index is written only once nobody holds it.
    for a in retired {
        if Arc::strong_count(&a) > 1 || !seal(&shared.config.dir, &a.segment) {
            held.push(a);
        }
    }
    lock(&shared.retired).extend(held);
    len
}

/// Writes a segment's index to its file and drops it from memory; false if the file
/// could not be written (the index stays in memory, and the next round tries again).
fn seal(dir: &Path, segment: &Segment) -> bool {
    let mut slot = lock(&segment.index);
    let Some(index) = slot.as_ref() else {
        return true;
    };
    let path = index_path(dir, segment.seq);
    let written = index.write(
        &path,
        segment.len.load(Ordering::Acquire),
        segment.min_ms.load(Ordering::Relaxed),
        segment.max_ms.load(Ordering::Relaxed),
    );
    match written {
        Ok(()) => {
            *slot = None;
            true
        }
        Err(e) => {
            crate::warn(format_args!(
                "sign-in log {}: writing the index (kept in memory): {e}",
                path.display()
            ));
            false
        }
    }
}

/// Removes the oldest segments (never the active one) while the log is over its
/// retention size.
fn enforce_retention(shared: &Shared) {
    let total =
        |s: &[Arc<Segment>]| -> u64 { s.iter().map(|s| s.len.load(Ordering::Relaxed)).sum() };
    loop {
        let oldest = {
            let mut segments = lock(&shared.segments);
            metrics::gauge!(crate::metrics::SIGNIN_BYTES).set(total(&segments) as f64);
            if total(&segments) <= shared.config.retain_bytes || segments.len() < 2 {
                return;
            }
            segments.remove(0)
        };
        let path = segment_path(&shared.config.dir, oldest.seq);
        let _ = fs::remove_file(index_path(&shared.config.dir, oldest.seq));
        match fs::remove_file(&path) {
            Ok(()) => {
                metrics::counter!(crate::metrics::SIGNIN_SEGMENTS_REMOVED).increment(1);
                crate::warn(format_args!(
                    "sign-in log: retention removed {} ({} bytes, records up to {} ms)",
                    path.display(),
                    oldest.len.load(Ordering::Relaxed),
                    oldest.max_ms.load(Ordering::Relaxed)
                ));
            }
            Err(e) => crate::warn(format_args!(
                "sign-in log: removing {}: {e}",
                path.display()
            )),
        }
    }
}

/// Lists the segments in `dir` and reads every record: damage is stepped over and
/// reported, and a torn tail of the last segment is cut off.
fn recover(dir: &Path) -> Result<Vec<Arc<Segment>>, LogError> {
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
    let last = seqs.last().copied();
    let mut segments = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let path = segment_path(dir, seq);
        // A segment sealed with its index whole is known without reading it.
        let size = fs::metadata(&path).map_err(io_error(&path))?.len();
        if let Some(c) = index::IndexFile::check(&index_path(dir, seq))
            && c.len == size
            && starts_with_magic(&path)
        {
            let segment = Segment::new(seq, size);
            segment.note(c.min_ms, c.max_ms);
            *lock(&segment.index) = None;
            segments.push(Arc::new(segment));
            continue;
        }
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
        let body = bytes.get(MAGIC.len()..).unwrap_or_default();
        let segment = Segment::new(seq, bytes.len() as u64);
        let mut index = index::Index::default();
        let (skipped, end) = walk(body, |at, _, row| {
            segment.note(row.at_ms, row.at_ms);
            if let Ok(offset) = u32::try_from(HEADER + at as u64) {
                index.add(offset, row.tenant, row.user, row.at_ms);
            }
            true
        });
        *lock(&segment.index) = Some(index);
        if skipped > 0 {
            crate::warn(format_args!(
                "sign-in log {}: {skipped} damaged bytes stepped over; the records around them are read",
                path.display()
            ));
        }
        let whole = HEADER + end as u64;
        if Some(seq) == last && whole < bytes.len() as u64 {
            // A write the process did not finish: the records before it are whole.
            crate::warn(format_args!(
                "sign-in log {}: {} bytes after the last whole record cut off",
                path.display(),
                bytes.len() as u64 - whole
            ));
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_error(&path))?;
            file.set_len(whole).map_err(io_error(&path))?;
            file.sync_all().map_err(io_error(&path))?;
            segment.len.store(whole, Ordering::Relaxed);
        }
        // Nobody writes a recovered segment again: its index goes to its file.
        seal(dir, &segment);
        segments.push(Arc::new(segment));
    }
    Ok(segments)
}

fn starts_with_magic(path: &Path) -> bool {
    let mut head = [0; MAGIC.len()];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == MAGIC
}

fn create_segment(dir: &Path, seq: u32) -> Result<Active, LogError> {
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
    Ok(Active {
        file,
        segment: Arc::new(Segment::new(seq, HEADER)),
        writing: Mutex::new(()),
    })
}

fn names(row: &SignInRow<'_>) -> Names {
    use portvakt_wire::admin::Frontend;
    use portvakt_wire::{MethodKind, Outcome, Purpose};
    (
        Purpose::from_code(row.purpose).map_or("unknown", Purpose::as_str),
        Outcome::from_code(row.outcome).map_or("unknown", Outcome::as_str),
        row.method
            .map(|m| MethodKind::from_code(m).map_or("unknown", MethodKind::as_str)),
        Frontend::from_code(row.frontend).map_or("unknown", Frontend::as_str),
    )
}

/// A row's purpose, outcome, method and frontend by name.
type Names = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
);

/// A record as one JSON object (for `portvakt admin sign-ins --json`).
pub fn to_json(row: &SignInRow<'_>) -> serde_json::Value {
    let (purpose, outcome, method, frontend) = names(row);
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
        "frontend": frontend,
    })
}

/// A record as one line for people. The user name is quoted with escapes, so a name
/// with spaces or control characters cannot forge a second record or column.
pub fn to_line(row: &SignInRow<'_>) -> String {
    let (purpose, outcome, method, frontend) = names(row);
    format!(
        "{} {:?} {} {purpose} {outcome} {} location={} rule={} method={} frontend={frontend}",
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
