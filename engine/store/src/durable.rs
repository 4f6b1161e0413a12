//! The durable embedded store: the state records and the directory's changes, on disk.
//!
//! Decisions run on the in-memory store as before. What changes is told to a log:
//! [`MemoryStore`]'s journal hears each changed record's new bytes, inside the change,
//! and the directory's [`ChangeLog`] hands over each batch of changes. Both append to one
//! write-ahead log ([`Wal`]). A committer thread writes what has gathered and syncs it
//! with one `fdatasync`, so many decisions share one sync (group commit). Nobody waits
//! inside the store: a frontend reads the log's end after it decided and waits, before
//! its answers leave, until the log is durable up to there ([`Wal::durable`]). Whatever
//! an answer depends on (a spent code, a lock, an administrator's change) is then on
//! disk.
//!
//! Now and then a snapshot ([`snapshot`]) writes everything to a temporary file, syncs
//! it and renames it over the last one; the log segments it covers are removed only after
//! that. A start ([`open`]) reads the snapshot, then the log after it.
//!
//! Files, in the store's directory:
//! - `snapshot`: `PVSNAP` `\0` `\x01`, the first log segment after it (`u64`), then frames,
//!   ending with an end frame.
//! - `wal-<16 hex digits>`: `PVWAL` `\0\0` `\x01`, its sequence number (`u64`), then frames.
//!
//! - `audit-<16 hex digits>`: `PVAUDT` `\0` `\x01`, the number of the log segment whose
//!   audit events it keeps (`u64`), then those events' frames. A snapshot writes it before
//!   that segment is removed.
//! - `lock`: held (`flock`) by the server using the directory ([`lock_dir`]).
//!
//! A frame is the magic `PV`, its kind (`u8`: 1 a record, 2 a batch of directory changes,
//! 3 the snapshot's end, 4 an audit event), the body's length (`u32`), a CRC-32 of kind,
//! length and body, and the body. A record's body is its key's length (`u8`), the key
//! (`state::RecordKey`) and the record (empty: none); a batch's body is
//! `Change::encode_batch`'s bytes, sealed; the end's body is the number of frames before
//! it (`u64`); an audit event's body is the server's and the store does not read it. All
//! integers are big-endian.
//!
//! An administrator's change and its audit event are appended under one [`Hold`], so the
//! committer takes them together and they reach the disk in the same write and sync (a
//! snapshot's rotation in between, or a crash inside that one write, are the only ways to
//! split them; `docs/design.md`).
//!
//! A backup ([`backup`]) is one file: a fresh snapshot, the archives and the log after
//! the snapshot, each with its name and a checksum; [`restore`] checks it whole, starts
//! the store from it once to prove it loads under the master key, and only then puts it
//! in place.
//!
//! Damage: a log segment that ends in a frame cut short or failing its checksum, with no
//! good frame after it, was being written when the process died: it is cut there. Damage
//! anywhere else (a bad frame with good ones after it, a bad snapshot, a gap in the
//! segments) stops the start with the file and offset, never silently dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use crate::{Engine, Store};
use portvakt_core::Timestamp;
use portvakt_core::directory::change::{Change, ChangeLog};
use portvakt_core::state::{Journal, MemoryStore, RecordKey, StoreError, StoreLimits};

use crate::sealed::{MasterKey, Purpose};

const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const SNAPSHOT_MAGIC: &[u8; 8] = b"PVSNAP\0\x01";
const WAL_MAGIC: &[u8; 8] = b"PVWAL\0\0\x01";
const HEADER: usize = 16;
const FRAME_HEADER: usize = 11;
/// The largest body a frame may have; a length past it is damage, not a record.
pub const MAX_BODY: usize = 16 << 20;

const RECORD: u8 = 1;
const BATCH: u8 = 2;
const END: u8 = 3;
const AUDIT: u8 = 4;
/// A log segment, `wal-<16 hex digits>`.
const SEGMENT_PREFIX: &str = "wal-";
/// An archive of the audit events of log segment `<hex>`, kept when the segment goes.
const AUDIT_PREFIX: &str = "audit-";
/// Taken by a running server, so a restore (or a second server) cannot use the directory.
const LOCK: &str = "lock";

/// Why the store cannot open or write.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file holds something that is not what the store wrote.
    #[error(
        "{path}, offset {offset}: {what}; the store will not start on a damaged file (restore the data directory from a backup)"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where in it.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The log could not be written; nothing more is accepted until it can.
    #[error("the state log cannot be written: {0}")]
    Failed(String),
    /// Another process (a running server) holds the directory.
    #[error("{0} is in use by a running server (stop it first)")]
    InUse(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DurableError + '_ {
    move |source| DurableError::Io {
        path: path.to_owned(),
        source,
    }
}

fn damaged(path: &Path, offset: u64, what: impl Into<String>) -> DurableError {
    DurableError::Damaged {
        path: path.to_owned(),
        offset,
        what: what.into(),
    }
}

/// Appends one frame to `out`.
fn frame(out: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(&len.to_be_bytes());
    for p in parts {
        crc.update(p);
    }
    out.extend_from_slice(b"PV");
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// The frame at the start of `buf`: its kind and body, and its whole length; `None` if
/// `buf` does not start with a whole, intact frame.
fn read_frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let head = buf.get(..FRAME_HEADER)?;
    if head.get(..2)? != b"PV" {
        return None;
    }
    let kind = *head.get(2)?;
    let len = u32::from_be_bytes(head.get(3..7)?.try_into().ok()?);
    let crc = u32::from_be_bytes(head.get(7..11)?.try_into().ok()?);
    let len_usize = usize::try_from(len).ok().filter(|l| *l <= MAX_BODY)?;
    let body = buf.get(FRAME_HEADER..FRAME_HEADER + len_usize)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(&len.to_be_bytes());
    h.update(body);
    (h.finalize() == crc && matches!(kind, RECORD | BATCH | END | AUDIT)).then_some((
        kind,
        body,
        FRAME_HEADER + len_usize,
    ))
}

/// Whether an intact frame starts anywhere in `buf`.
fn any_frame_in(buf: &[u8]) -> bool {
    (0..buf.len()).any(|i| buf.get(i..).and_then(read_frame).is_some())
}

fn record_body(key: RecordKey, record: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.push(0);
    key.encode(out);
    let key_len = out.len() - start - 1;
    if let Some(b) = out.get_mut(start) {
        *b = u8::try_from(key_len).unwrap_or(u8::MAX);
    }
    out.extend_from_slice(record);
}

/// What a start found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Records read from the snapshot.
    pub snapshot_records: u64,
    /// Batches of directory changes read from the snapshot.
    pub snapshot_batches: u64,
    /// Frames read from the log after the snapshot.
    pub log_frames: u64,
    /// A log segment cut at this offset: its end was being written when the process
    /// stopped.
    pub cut: Option<(PathBuf, u64)>,
}

/// An opened store: its records in memory, the directory's changes to apply, and the log
/// that takes every change from now on.
pub struct Opened {
    /// The records, as of the last durable change.
    pub store: MemoryStore,
    /// The directory's changes, in order: the snapshot's, then the log's.
    pub directory: Vec<Vec<Change>>,
    /// The log.
    pub wal: Arc<Wal>,
    /// What was found.
    pub recovery: Recovery,
}

impl Opened {
    /// The engine over the opened store: the directory rebuilt from its changes, and from
    /// now on every change of the store's records and of the directory going to the log.
    /// The log is returned too: answers wait on it ([`Wal::end`], [`Wal::durable`]).
    pub fn into_engine(
        self,
        policy: portvakt_core::Policy,
        pepper: portvakt_core::secret::Pepper,
        entropy: Box<dyn portvakt_core::secret::Entropy>,
    ) -> Result<(Engine, Arc<Wal>, Recovery), DurableError> {
        let Self {
            store,
            directory,
            wal,
            recovery,
        } = self;
        let engine = Engine::new(policy, Store::Memory(store), pepper, entropy);
        for (i, batch) in directory.iter().enumerate() {
            engine
                .apply_changes(batch)
                .map_err(|e| DurableError::Damaged {
                    path: wal.dir.clone(),
                    offset: 0,
                    what: format!(
                        "the directory's change batch {i} (counting the snapshot's first) does not apply: {e}"
                    ),
                })?;
        }
        let journal = Box::new(WalJournal(wal.clone()));
        let Some(memory) = engine.store().memory() else {
            unreachable!("made just above over the memory tables")
        };
        if memory.set_journal(journal).is_err() {
            return Err(DurableError::Failed(
                "the store had a journal already".into(),
            ));
        }
        let engine = engine.with_change_log(Box::new(WalChangeLog(wal.clone())));
        Ok((engine, wal, recovery))
    }
}

fn segment_name(seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{seq:016x}")
}

/// The log segments in `dir`, by number.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, DurableError> {
    numbered(dir, SEGMENT_PREFIX)
}

fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Opens the store in `dir` (made if missing): reads the snapshot and the log into a
/// memory store with `limits`, and starts the log's committer. `now` is the time records
/// are put back at (it only decides what the bounded tables may evict).
pub fn open(
    dir: &Path,
    limits: StoreLimits,
    now: Timestamp,
    key: Arc<MasterKey>,
) -> Result<Opened, DurableError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let store = MemoryStore::new(limits);
    let mut directory = Vec::new();
    let mut recovery = Recovery::default();
    // A snapshot left half written by a crash was never renamed: it is not the snapshot.
    let tmp = dir.join(SNAPSHOT_TMP);
    if tmp.exists() {
        fs::remove_file(&tmp).map_err(io(&tmp))?;
    }
    let mut first_seq = 0;
    let snap = dir.join(SNAPSHOT);
    if snap.exists() {
        let bytes = fs::read(&snap).map_err(io(&snap))?;
        let head = bytes
            .get(..HEADER)
            .ok_or_else(|| damaged(&snap, 0, "shorter than its header"))?;
        if head.get(..8) != Some(SNAPSHOT_MAGIC.as_slice()) {
            return Err(damaged(
                &snap,
                0,
                "not a Portvakt snapshot (or another version)",
            ));
        }
        first_seq = u64::from_be_bytes(
            head.get(8..16)
                .and_then(|b| b.try_into().ok())
                .unwrap_or_default(),
        );
        let mut at = HEADER;
        let mut frames = 0u64;
        let mut ended = false;
        while at < bytes.len() {
            let rest = bytes.get(at..).unwrap_or_default();
            let Some((kind, body, len)) = read_frame(rest) else {
                return Err(damaged(&snap, at as u64, "a frame is damaged"));
            };
            if ended {
                return Err(damaged(&snap, at as u64, "bytes after the end frame"));
            }
            match kind {
                RECORD => {
                    apply_record(&store, body, now).map_err(|e| damaged(&snap, at as u64, e))?;
                    recovery.snapshot_records += 1;
                }
                BATCH => {
                    let batch =
                        unseal_batch(&key, body).map_err(|e| damaged(&snap, at as u64, e))?;
                    directory.push(batch);
                    recovery.snapshot_batches += 1;
                }
                AUDIT => {
                    return Err(damaged(&snap, at as u64, "an audit event in a snapshot"));
                }
                _ => {
                    let count = body.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
                    if count != frames {
                        return Err(damaged(
                            &snap,
                            at as u64,
                            "the end frame counts other frames",
                        ));
                    }
                    ended = true;
                }
            }
            frames += 1;
            at += len;
        }
        if !ended {
            return Err(damaged(
                &snap,
                bytes.len() as u64,
                "no end frame: the snapshot is cut short",
            ));
        }
    }
    let mut segs = segments(dir)?;
    // Segments a snapshot covers are garbage a crash left before they were removed.
    for (_, path) in segs.iter().filter(|(seq, _)| *seq < first_seq) {
        fs::remove_file(path).map_err(io(path))?;
    }
    segs.retain(|(seq, _)| *seq >= first_seq);
    // The first segment must be the one the snapshot ends at (0 without one): anything
    // else means a snapshot or a segment is gone, and starting would silently forget.
    if let Some((seq, _)) = segs.first()
        && *seq != first_seq
    {
        return Err(damaged(
            &dir.join(segment_name(first_seq)),
            0,
            "the snapshot, or the log segment it ends at, is missing",
        ));
    }
    let last = segs.len().saturating_sub(1);
    let mut next_seq = first_seq;
    for (i, (seq, path)) in segs.iter().enumerate() {
        if i > 0 && *seq != next_seq {
            return Err(damaged(
                &dir.join(segment_name(next_seq)),
                0,
                "a log segment is missing",
            ));
        }
        next_seq = seq + 1;
        let bytes = fs::read(path).map_err(io(path))?;
        let header_ok = bytes.get(..8) == Some(WAL_MAGIC.as_slice())
            && bytes
                .get(8..16)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                == Some(*seq);
        if !header_ok {
            if i == last && bytes.len() <= HEADER {
                // Made, but its header never reached the disk: an empty segment.
                fs::remove_file(path).map_err(io(path))?;
                next_seq = *seq;
                continue;
            }
            return Err(damaged(
                path,
                0,
                "not a Portvakt log segment (or another version)",
            ));
        }
        let mut at = HEADER;
        while at < bytes.len() {
            let rest = bytes.get(at..).unwrap_or_default();
            let Some((kind, body, len)) = read_frame(rest) else {
                if i == last && !any_frame_in(rest.get(1..).unwrap_or_default()) {
                    // The tail being written when the process died.
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io(path))?;
                    f.set_len(at as u64).map_err(io(path))?;
                    f.sync_all().map_err(io(path))?;
                    recovery.cut = Some((path.clone(), at as u64));
                    break;
                }
                return Err(damaged(
                    path,
                    at as u64,
                    "a frame is damaged, and good frames follow it",
                ));
            };
            match kind {
                RECORD => {
                    apply_record(&store, body, now).map_err(|e| damaged(path, at as u64, e))?
                }
                BATCH => directory
                    .push(unseal_batch(&key, body).map_err(|e| damaged(path, at as u64, e))?),
                // Read by audit queries (`read_audit`), not by the store.
                AUDIT => {}
                _ => return Err(damaged(path, at as u64, "an end frame in a log segment")),
            }
            recovery.log_frames += 1;
            at += len;
        }
    }
    let wal = Wal::start(dir, next_seq, key)?;
    Ok(Opened {
        store,
        directory,
        wal,
        recovery,
    })
}

/// A batch of directory changes from its sealed bytes.
fn unseal_batch(key: &MasterKey, sealed: &[u8]) -> Result<Vec<Change>, String> {
    let plain = key
        .open(Purpose::Changes, sealed)
        .map_err(|e| format!("a batch of directory changes {e}"))?;
    Change::decode_batch(&plain).map_err(|e| e.to_string())
}

fn apply_record(store: &MemoryStore, body: &[u8], now: Timestamp) -> Result<(), String> {
    let (&key_len, rest) = body.split_first().ok_or("an empty record frame")?;
    let key = rest
        .get(..usize::from(key_len))
        .ok_or("a record's key is cut short")?;
    let record = rest.get(usize::from(key_len)..).unwrap_or_default();
    let key = RecordKey::decode(key).map_err(|e| e.to_string())?;
    store.restore(key, record, now).map_err(|e| e.to_string())
}

/// How far the log is durable, and whether writing it fails now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// Everything appended before this position is on disk.
    pub position: u64,
    /// Why the last write failed, until one succeeds.
    pub error: Option<String>,
}

impl Synced {
    /// Whether a wait for `position` is over: durable, or failed before it got there.
    fn reached(&self, position: u64) -> Option<Result<(), String>> {
        if self.position >= position {
            Some(Ok(()))
        } else {
            self.error.clone().map(Err)
        }
    }
}

struct Pending {
    /// Frames appended and not yet taken by the committer.
    bytes: Vec<u8>,
    /// Everything ever appended, as a position.
    end: u64,
    /// A rotation asked for at this position.
    rotate_at: Option<u64>,
    /// The segment being written.
    seq: u64,
    /// Bytes in the segments not yet covered by a snapshot.
    unsnapshotted: u64,
    failed: Option<String>,
    closing: bool,
    /// The committer is waiting for work: only then does an append wake it (a wake-up is
    /// a system call, and appends come from every decision).
    idle: bool,
    /// Where each [`Hold`] began (with how many began there): nothing at or past the
    /// first is written until it is released.
    holds: std::collections::BTreeMap<u64, usize>,
}

impl Pending {
    /// How far the committer may take bytes now: up to a rotation's cut, else up to the
    /// first hold. A rotation does not wait for holds: it is asked for by a snapshot
    /// holding the directory still, which a held operation may be waiting for. A closing
    /// log writes everything.
    fn limit(&self) -> u64 {
        match (self.rotate_at, self.closing) {
            (Some(cut), _) => cut,
            (None, true) => self.end,
            (None, false) => self
                .holds
                .keys()
                .next()
                .map_or(self.end, |&h| h.min(self.end)),
        }
    }

    /// Whether the committer has something to do.
    fn work(&self) -> bool {
        let start = self.end - self.bytes.len() as u64;
        self.limit() > start || self.rotate_at == Some(start) || self.closing
    }
}

/// Keeps what this thread appends, from its first append on, out of the disk's reach
/// until it is dropped: frames that must become durable together (an administrator's
/// change and its audit event) are appended under one hold. The hold begins at the
/// thread's first append, not when it is taken, so an operation that first waits (for a
/// snapshot to let the directory go, say) holds nothing back while it waits.
pub struct Hold<'a> {
    wal: &'a Wal,
    /// A hold lives in its thread's state: it must be dropped where it was taken.
    _here: std::marker::PhantomData<*const ()>,
}

thread_local! {
    /// The log this thread holds (by address), and where its hold began once it has.
    static HELD: std::cell::Cell<(usize, Option<u64>)> = const { std::cell::Cell::new((0, None)) };
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let (held, from) = HELD.with(|h| h.replace((0, None)));
        let Some(from) = from.filter(|_| held == std::ptr::from_ref(self.wal) as usize) else {
            return;
        };
        let mut p = lock(&self.wal.pending);
        if let std::collections::btree_map::Entry::Occupied(mut e) = p.holds.entry(from) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
        let idle = p.idle;
        drop(p);
        if idle {
            self.wal.wake.notify_all();
        }
    }
}

/// Where the committer writes; a file, or in tests one that fails on purpose.
pub trait Sink: Send {
    /// Appends `bytes` and makes them durable.
    fn append_durably(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Cuts the file back to `len` bytes (after a failed append).
    fn cut(&mut self, len: u64) -> std::io::Result<()>;
}

struct FileSink(File);

impl Sink for FileSink {
    fn append_durably(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)?;
        self.0.sync_data()
    }
    fn cut(&mut self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
}

/// Makes a segment's sink; tests swap in failing ones.
pub type SinkMaker = Box<dyn Fn(&Path) -> std::io::Result<Box<dyn Sink>> + Send + Sync>;

fn file_sink(path: &Path) -> std::io::Result<Box<dyn Sink>> {
    let f = OpenOptions::new().append(true).open(path)?;
    Ok(Box::new(FileSink(f)))
}

/// The write-ahead log: append from any thread, one committer thread writes and syncs.
pub struct Wal {
    dir: PathBuf,
    pending: Mutex<Pending>,
    /// Wakes the committer (new bytes, a rotation, closing) and rotation waiters.
    wake: Condvar,
    rotated: Condvar,
    synced: tokio::sync::watch::Sender<Synced>,
    sinks: SinkMaker,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    me: std::sync::OnceLock<std::sync::Weak<Wal>>,
    /// Seals the directory's changes, which carry credential secrets.
    key: Arc<MasterKey>,
    /// Whether the last write failed: every change asks, so it is read without the lock.
    failing: std::sync::atomic::AtomicBool,
    /// Held by a snapshot, a backup and an audit query: none of them may see segments
    /// removed under it.
    files: Mutex<()>,
}

impl Wal {
    fn start(dir: &Path, seq: u64, key: Arc<MasterKey>) -> Result<Arc<Self>, DurableError> {
        Self::start_with(dir, seq, key, Box::new(file_sink))
    }

    /// Starts a log in `dir` at segment `seq` writing through `sinks` (tests inject
    /// failures with it).
    pub fn start_with(
        dir: &Path,
        seq: u64,
        key: Arc<MasterKey>,
        sinks: SinkMaker,
    ) -> Result<Arc<Self>, DurableError> {
        let sink = new_segment(dir, seq, &sinks)?;
        let unsnapshotted = segments(dir)?
            .iter()
            .filter_map(|(_, p)| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let wal = Arc::new(Self {
            dir: dir.to_owned(),
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                end: 0,
                rotate_at: None,
                seq,
                unsnapshotted,
                failed: None,
                closing: false,
                idle: false,
                holds: std::collections::BTreeMap::new(),
            }),
            wake: Condvar::new(),
            rotated: Condvar::new(),
            synced: tokio::sync::watch::Sender::new(Synced::default()),
            sinks,
            committer: Mutex::new(None),
            me: std::sync::OnceLock::new(),
            key,
            failing: std::sync::atomic::AtomicBool::new(false),
            files: Mutex::new(()),
        });
        let _ = wal.me.set(Arc::downgrade(&wal));
        let w = wal.clone();
        let handle = std::thread::Builder::new()
            .name("portvakt-wal".into())
            .spawn(move || w.commit_loop(sink))
            .map_err(io(dir))?;
        *lock(&wal.committer) = Some(handle);
        Ok(wal)
    }

    /// Appends a frame; its end position. Refused while writing fails.
    fn append(&self, kind: u8, parts: &[&[u8]], refuse_if_failed: bool) -> Result<u64, StoreError> {
        let mut p = lock(&self.pending);
        if refuse_if_failed && let Some(e) = &p.failed {
            return Err(StoreError::new(format!(
                "the state log cannot be written: {e}"
            )));
        }
        // This thread's first append under a hold is where the hold begins.
        let me = std::ptr::from_ref(self) as usize;
        HELD.with(|h| {
            if let (held, None) = h.get()
                && held == me
            {
                let at = p.end;
                *p.holds.entry(at).or_default() += 1;
                h.set((held, Some(at)));
            }
        });
        let before = p.bytes.len();
        frame(&mut p.bytes, kind, parts);
        p.end += (p.bytes.len() - before) as u64;
        let end = p.end;
        let idle = std::mem::replace(&mut p.idle, false);
        drop(p);
        if idle {
            self.wake.notify_all();
        }
        Ok(end)
    }

    /// The position after everything appended so far: what an answer decided now waits for.
    pub fn end(&self) -> u64 {
        lock(&self.pending).end
    }

    /// Holds back from the disk everything appended from this thread's next append until
    /// the hold is dropped (appends go on; only their writing waits). Keep it short once
    /// it has begun: every answer decided meanwhile waits for it too.
    pub fn hold(&self) -> Hold<'_> {
        HELD.with(|h| h.set((std::ptr::from_ref(self) as usize, None)));
        Hold {
            wal: self,
            _here: std::marker::PhantomData,
        }
    }

    /// Appends an audit event (bytes the store does not read; [`Wal::read_audit`] gives them
    /// back in order); its end position. Refused while writing fails.
    pub fn append_audit(&self, event: &[u8]) -> Result<u64, StoreError> {
        if event.len() > MAX_BODY {
            return Err(StoreError::new("an audit event over the frame limit"));
        }
        self.append(AUDIT, &[event], true)
    }

    /// Follows how far the log is durable, and its failures.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<Synced> {
        self.synced.subscribe()
    }

    /// How far the log is durable.
    pub fn synced(&self) -> Synced {
        self.synced.borrow().clone()
    }

    /// Why appends are refused now (the last write failed), if they are.
    pub fn failure(&self) -> Option<String> {
        if !self.failing.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        lock(&self.pending).failed.clone()
    }

    /// Resolves when everything before `position` is durable, or with the error if
    /// writing fails before it is.
    pub fn durable(
        &self,
        position: u64,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let mut rx = self.synced.subscribe();
        async move {
            loop {
                if let Some(done) = rx.borrow_and_update().reached(position) {
                    return done;
                }
                if rx.changed().await.is_err() {
                    return Err("the state log is closed".into());
                }
            }
        }
    }

    /// Blocks until everything before `position` is durable (for tools and tests).
    pub fn wait_durable(&self, position: u64) -> Result<(), String> {
        loop {
            if let Some(done) = self.synced.borrow().reached(position) {
                return done;
            }
            // The committer publishes after every write; poll between.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Bytes in the log not covered by a snapshot yet.
    pub fn unsnapshotted(&self) -> u64 {
        lock(&self.pending).unsnapshotted
    }

    /// Ends the current segment at the current end and starts the next; the next's
    /// sequence number. Everything appended before the call is in the earlier segments,
    /// everything after in the new one.
    pub fn rotate(&self) -> Result<u64, DurableError> {
        let mut p = lock(&self.pending);
        let from = p.seq;
        p.rotate_at = Some(p.end);
        self.wake.notify_all();
        while p.seq == from {
            if let Some(e) = &p.failed {
                let e = e.clone();
                p.rotate_at = None;
                return Err(DurableError::Failed(e));
            }
            p = self.rotated.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        Ok(p.seq)
    }

    /// Writes what is pending, then stops the committer.
    pub fn close(&self) {
        lock(&self.pending).closing = true;
        self.wake.notify_all();
        if let Some(h) = lock(&self.committer).take() {
            let _ = h.join();
        }
    }

    fn commit_loop(&self, mut sink: Box<dyn Sink>) {
        let mut file_len = HEADER as u64;
        let mut taken = Vec::new();
        loop {
            let mut p = lock(&self.pending);
            while !p.work() {
                p.idle = true;
                let (q, timeout) = self
                    .wake
                    .wait_timeout(p, std::time::Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner());
                p = q;
                p.idle = false;
                if timeout.timed_out() && p.bytes.is_empty() && self.orphaned() {
                    return; // nobody can append any more
                }
            }
            if p.bytes.is_empty() && p.rotate_at.is_none() {
                return; // closing, and nothing left
            }
            // Take everything pending, or up to a rotation's cut or a hold.
            let start = p.end - p.bytes.len() as u64;
            let cut = p.limit();
            let n = usize::try_from(cut.saturating_sub(start))
                .unwrap_or(usize::MAX)
                .min(p.bytes.len());
            taken.clear();
            taken.extend(p.bytes.drain(..n));
            let rotate_now = p.rotate_at == Some(start + n as u64);
            let retrying = p.failed.is_some();
            drop(p);
            if retrying {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            if !taken.is_empty() {
                if let Err(e) = sink.append_durably(&taken) {
                    // Nothing half written stays: the next try starts where the last good
                    // write ended, with the same bytes.
                    let _ = sink.cut(file_len);
                    let mut p = lock(&self.pending);
                    let rest = std::mem::take(&mut p.bytes);
                    p.bytes = std::mem::take(&mut taken);
                    p.bytes.extend_from_slice(&rest);
                    self.fail(p, e.to_string(), start);
                    continue;
                }
                file_len += taken.len() as u64;
                let mut p = lock(&self.pending);
                p.failed = None;
                self.failing
                    .store(false, std::sync::atomic::Ordering::Release);
                p.unsnapshotted += taken.len() as u64;
                drop(p);
                self.synced.send_replace(Synced {
                    position: start + taken.len() as u64,
                    error: None,
                });
            }
            if rotate_now {
                let next = lock(&self.pending).seq + 1;
                match new_segment(&self.dir, next, &self.sinks) {
                    Ok(s) => {
                        sink = s;
                        file_len = HEADER as u64;
                        let mut p = lock(&self.pending);
                        p.seq = next;
                        p.rotate_at = None;
                        drop(p);
                        self.rotated.notify_all();
                    }
                    Err(e) => {
                        let p = lock(&self.pending);
                        let at = p.end - p.bytes.len() as u64;
                        self.fail(p, e.to_string(), at);
                    }
                }
            }
        }
    }

    /// Whether the committer is all that is left holding the log.
    fn orphaned(&self) -> bool {
        self.me
            .get()
            .and_then(std::sync::Weak::upgrade)
            .is_none_or(|me| Arc::strong_count(&me) <= 2)
    }

    /// Marks the log failed: appends are refused, waiters for what is not durable are
    /// told, and a rotation waiting is given up.
    fn fail(&self, mut p: std::sync::MutexGuard<'_, Pending>, why: String, durable: u64) {
        p.failed = Some(why.clone());
        self.failing
            .store(true, std::sync::atomic::Ordering::Release);
        drop(p);
        self.rotated.notify_all();
        self.synced.send_replace(Synced {
            position: durable,
            error: Some(why),
        });
    }

    /// Forgets the bytes a snapshot now covers.
    fn snapshotted(&self, covered: u64) {
        let mut p = lock(&self.pending);
        p.unsnapshotted = p.unsnapshotted.saturating_sub(covered);
    }
}

fn new_segment(dir: &Path, seq: u64, sinks: &SinkMaker) -> Result<Box<dyn Sink>, DurableError> {
    let path = dir.join(segment_name(seq));
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    let mut head = WAL_MAGIC.to_vec();
    head.extend_from_slice(&seq.to_be_bytes());
    f.write_all(&head).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    drop(f);
    sync_dir(dir)?;
    sinks(&path).map_err(io(&path))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The journal [`MemoryStore`] tells its changes to: each becomes a record frame.
pub struct WalJournal(pub Arc<Wal>);

impl Journal for WalJournal {
    fn check(&self) -> Result<(), StoreError> {
        match self.0.failure() {
            Some(e) => Err(StoreError::new(format!(
                "the state log cannot be written: {e}"
            ))),
            None => Ok(()),
        }
    }

    fn changed(&self, key: RecordKey, record: &[u8]) {
        thread_local! {
            static BODY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BODY.with(|body| {
            let mut body = body.borrow_mut();
            body.clear();
            record_body(key, record, &mut body);
            // Accepted even if writing fails now: the answer that depends on it waits for
            // the log and is refused if it never gets there.
            let _ = self.0.append(RECORD, &[&body], false);
        });
    }
}

/// The directory's change log: each batch becomes a frame, refused while writing fails.
pub struct WalChangeLog(pub Arc<Wal>);

impl ChangeLog for WalChangeLog {
    fn append(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut plain = Vec::new();
        Change::encode_batch(changes, &mut plain);
        let sealed = self
            .0
            .key
            .seal(Purpose::Changes, &plain)
            .map_err(|e| StoreError::new(format!("sealing directory changes: {e}")))?;
        self.0.append(BATCH, &[&sealed], true).map(|_| ())
    }
}

/// Writes a snapshot of `engine` (its directory and its store's records) and removes the
/// log segments it covers. The directory is cut at one instant (no change is made while
/// its users are written); the records are written as they are reached, which the log
/// after the cut makes whole again on the next start.
pub fn snapshot(engine: &Engine, wal: &Wal) -> Result<u64, DurableError> {
    let _files = lock(&wal.files);
    snapshot_held(engine, wal)
}

fn snapshot_held(engine: &Engine, wal: &Wal) -> Result<u64, DurableError> {
    let Some(memory) = engine.store().memory() else {
        return Err(DurableError::Failed(
            "a durable snapshot is of the in-memory tables; this engine shares its state".into(),
        ));
    };
    let dir = wal.dir.as_path();
    let tmp = dir.join(SNAPSHOT_TMP);
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let out = BufWriter::with_capacity(1 << 20, file);
    /// Writes frames, keeping the first error (the snapshot is then abandoned).
    struct Frames {
        out: BufWriter<File>,
        buf: Vec<u8>,
        count: u64,
        error: Option<std::io::Error>,
    }
    impl Frames {
        fn put(&mut self, kind: u8, body: &[u8]) {
            self.buf.clear();
            frame(&mut self.buf, kind, &[body]);
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error.get_or_insert(e);
            }
            self.count += 1;
        }
    }
    let mut w = Frames {
        out,
        buf: Vec::new(),
        count: 0,
        error: None,
    };
    // The header is written last, over these zeros: a snapshot without it is no snapshot.
    if let Err(e) = w.out.write_all(&[0; HEADER]) {
        w.error = Some(e);
    }
    let mut header = SNAPSHOT_MAGIC.to_vec();
    let mut seq = 0;
    let mut body = Vec::new();
    engine.snapshot_each(
        || {
            seq = wal.rotate()?;
            Ok::<(), DurableError>(())
        },
        |changes| {
            body.clear();
            Change::encode_batch(changes, &mut body);
            match wal.key.seal(Purpose::Changes, &body) {
                Ok(sealed) => w.put(BATCH, &sealed),
                Err(e) => {
                    w.error.get_or_insert(std::io::Error::other(e.to_string()));
                }
            }
        },
    )?;
    memory.for_each_record(|key, record| {
        body.clear();
        record_body(key, record, &mut body);
        w.put(RECORD, &body);
    });
    let frames = w.count;
    w.put(END, &frames.to_be_bytes());
    if let Some(e) = w.error {
        return Err(DurableError::Io {
            path: tmp,
            source: e,
        });
    }
    let out = w.out;
    header.extend_from_slice(&seq.to_be_bytes());
    let file = out.into_inner().map_err(|e| DurableError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    use std::os::unix::fs::FileExt as _;
    file.write_all_at(&header, 0).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    // The audit events of the segments about to go are kept first; an archive left by a
    // crash before the rename is written again, the same, by the next snapshot.
    for (s, path) in segments(dir)? {
        if s < seq {
            archive_audit(dir, s, &path)?;
        }
    }
    let snap = dir.join(SNAPSHOT);
    fs::rename(&tmp, &snap).map_err(io(&snap))?;
    sync_dir(dir)?;
    let mut covered = 0;
    for (s, path) in segments(dir)? {
        if s < seq {
            covered += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    wal.snapshotted(covered);
    Ok(frames)
}

const AUDIT_MAGIC: &[u8; 8] = b"PVAUDT\0\x01";

/// Calls `each` with the kind and body of every intact frame in `r`, in order, until it
/// answers false; stops quietly at the first bytes that are not an intact frame (the tail
/// of a segment being written). Reads a frame at a time, however large the file.
fn scan_frames(r: impl Read, mut each: impl FnMut(u8, &[u8]) -> bool) -> std::io::Result<()> {
    let mut r = BufReader::with_capacity(1 << 16, r);
    let mut buf = vec![0; FRAME_HEADER];
    loop {
        buf.truncate(FRAME_HEADER);
        match r.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = buf
            .get(3..7)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .and_then(|l| usize::try_from(l).ok())
            .filter(|l| *l <= MAX_BODY);
        let Some(len) = len else { return Ok(()) };
        buf.resize(FRAME_HEADER + len, 0);
        match r.read_exact(buf.get_mut(FRAME_HEADER..).unwrap_or_default()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let Some((kind, body, _)) = read_frame(&buf) else {
            return Ok(());
        };
        if !each(kind, body) {
            return Ok(());
        }
    }
}

fn archive_name(seq: u64) -> String {
    format!("{AUDIT_PREFIX}{seq:016x}")
}

/// Writes the audit events of segment `seq` (at `path`) to their archive, if it has any.
fn archive_audit(dir: &Path, seq: u64, path: &Path) -> Result<(), DurableError> {
    let mut out = AUDIT_MAGIC.to_vec();
    out.extend_from_slice(&seq.to_be_bytes());
    let mut f = File::open(path).map_err(io(path))?;
    let mut head = [0; HEADER];
    if f.read_exact(&mut head).is_err() {
        return Ok(()); // a segment without even its header holds nothing
    }
    let mut events = 0;
    scan_frames(f, |kind, body| {
        if kind == AUDIT {
            frame(&mut out, AUDIT, &[body]);
            events += 1;
        }
        true
    })
    .map_err(io(path))?;
    if events == 0 {
        return Ok(());
    }
    let target = dir.join(archive_name(seq));
    let tmp = dir.join(format!("{}.tmp", archive_name(seq)));
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&out).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, &target).map_err(io(&target))?;
    sync_dir(dir)
}

/// Files in `dir` named `<prefix><16 hex digits>`, by number.
fn numbered(dir: &Path, prefix: &str) -> Result<Vec<(u64, PathBuf)>, DurableError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(hex) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if hex.len() == 16
            && let Ok(seq) = u64::from_str_radix(hex, 16)
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The first log segment the snapshot does not cover (0 without a snapshot).
fn snapshot_seq(dir: &Path) -> Result<u64, DurableError> {
    let snap = dir.join(SNAPSHOT);
    let mut head = [0; HEADER];
    match File::open(&snap) {
        Ok(mut f) => {
            f.read_exact(&mut head).map_err(io(&snap))?;
            Ok(u64::from_be_bytes(
                head.get(8..16)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or_default(),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io(&snap)(e)),
    }
}

impl Wal {
    /// Calls `each` with every audit event appended before the call, oldest first (the
    /// archives, then the log), until it answers false. Waits first until those events
    /// are written (an error if the log cannot be written). Reads a frame at a time.
    pub fn read_audit(&self, mut each: impl FnMut(&[u8]) -> bool) -> Result<(), DurableError> {
        self.wait_durable(self.end())
            .map_err(DurableError::Failed)?;
        let _files = lock(&self.files);
        let first = snapshot_seq(&self.dir)?;
        let going = std::cell::Cell::new(true);
        let mut visit = |kind: u8, body: &[u8]| {
            if kind == AUDIT {
                going.set(each(body));
            }
            going.get()
        };
        // Archives of segments the snapshot covers; one of a later segment was left by a
        // snapshot that never finished, and that segment is still read below.
        for (_, path) in numbered(&self.dir, AUDIT_PREFIX)?
            .into_iter()
            .filter(|(s, _)| *s < first)
        {
            let mut f = File::open(&path).map_err(io(&path))?;
            let mut head = [0; HEADER];
            f.read_exact(&mut head).map_err(io(&path))?;
            if head.get(..8) != Some(AUDIT_MAGIC.as_slice()) {
                return Err(damaged(
                    &path,
                    0,
                    "not an audit archive (or another version)",
                ));
            }
            scan_frames(f, &mut visit).map_err(io(&path))?;
            if !going.get() {
                return Ok(());
            }
        }
        for (_, path) in segments(&self.dir)?
            .into_iter()
            .filter(|(s, _)| *s >= first)
        {
            let mut f = File::open(&path).map_err(io(&path))?;
            let mut head = [0; HEADER];
            if f.read_exact(&mut head).is_err() {
                continue;
            }
            scan_frames(f, &mut visit).map_err(io(&path))?;
            if !going.get() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// A data directory held by one server: released when dropped (or when the process
/// ends, however it ends).
pub struct DirLock {
    _file: File,
}

/// Takes the store directory `dir` (made if missing) for this process, or says that a
/// running server holds it.
pub fn lock_dir(dir: &Path) -> Result<DirLock, DurableError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(LOCK);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match f.try_lock() {
        Ok(()) => Ok(DirLock { _file: f }),
        Err(std::fs::TryLockError::WouldBlock) => Err(DurableError::InUse(dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

const BACKUP_MAGIC: &[u8; 8] = b"PVBACK\0\x01";

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackedUp {
    /// Its size, in bytes.
    pub bytes: u64,
    /// The files in it.
    pub files: usize,
}

/// Writes a consistent copy of the store to `dest` (which must not exist) while it
/// serves: a fresh snapshot, the log after it as far as it is durable, and the audit
/// archives, in one file with a checksum per file. Restoring it ([`restore`]) is the
/// start after a crash at the moment the copy ended: nothing acknowledged before the
/// backup began is missing from it.
pub fn backup(engine: &Engine, wal: &Wal, dest: &Path) -> Result<BackedUp, DurableError> {
    let _files = lock(&wal.files);
    snapshot_held(engine, wal)?;
    let dir = wal.dir.as_path();
    // What was appended while the snapshot was written (it makes the snapshot's records
    // whole) must be in the copy.
    wal.wait_durable(wal.end()).map_err(DurableError::Failed)?;
    let first = snapshot_seq(dir)?;
    let mut files = vec![(SNAPSHOT.to_owned(), dir.join(SNAPSHOT))];
    for (seq, path) in numbered(dir, AUDIT_PREFIX)? {
        if seq < first {
            files.push((archive_name(seq), path));
        }
    }
    for (seq, path) in segments(dir)? {
        if seq >= first {
            files.push((segment_name(seq), path));
        }
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .ok_or_else(|| io(dest)(std::io::Error::other("not a file name")))?;
    let tmp = parent.join(format!(".{}.partial", name.to_string_lossy()));
    let written = write_backup(&files, &tmp);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Never over an existing file: a backup must not silently replace another.
    if let Err(e) = fs::hard_link(&tmp, dest) {
        let _ = fs::remove_file(&tmp);
        let e = match e.kind() {
            std::io::ErrorKind::AlreadyExists => std::io::Error::new(
                e.kind(),
                "a file is there already, and a backup never replaces one",
            ),
            _ => e,
        };
        return Err(io(dest)(e));
    }
    fs::remove_file(&tmp).map_err(io(&tmp))?;
    sync_dir(parent)?;
    let bytes = fs::metadata(dest).map_err(io(dest))?.len();
    Ok(BackedUp {
        bytes,
        files: files.len(),
    })
}

/// The backup file: its magic, then per file its name (`u8` length), its length (`u64`),
/// a CRC-32 of name, length and contents, and the contents; then a zero name length and
/// the number of files (`u64`).
fn write_backup(files: &[(String, PathBuf)], tmp: &Path) -> Result<(), DurableError> {
    let f = crate::sealed::create_private(tmp).map_err(io(tmp))?;
    let mut out = BufWriter::with_capacity(1 << 20, f);
    out.write_all(BACKUP_MAGIC).map_err(io(tmp))?;
    let mut buf = vec![0; 1 << 20];
    for (name, path) in files {
        let name_len = u8::try_from(name.len())
            .map_err(|_| io(path)(std::io::Error::other("name too long")))?;
        let file = File::open(path).map_err(io(path))?;
        // A segment being appended is copied as far as it is written now: a frame cut
        // short at its end is what a start cuts off after a crash.
        let len = file.metadata().map_err(io(path))?.len();
        // The checksum comes before the contents, so each file is read twice, a buffer
        // at a time, rather than held whole; the second read must see the same bytes.
        let crc = |out: Option<&mut BufWriter<File>>, buf: &mut [u8]| {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&[name_len]);
            crc.update(name.as_bytes());
            crc.update(&len.to_be_bytes());
            copy_hashed(&file, len, buf, &mut crc, out)?;
            Ok::<u32, std::io::Error>(crc.finalize())
        };
        let sum = crc(None, &mut buf).map_err(io(path))?;
        out.write_all(&[name_len]).map_err(io(tmp))?;
        out.write_all(name.as_bytes()).map_err(io(tmp))?;
        out.write_all(&len.to_be_bytes()).map_err(io(tmp))?;
        out.write_all(&sum.to_be_bytes()).map_err(io(tmp))?;
        if crc(Some(&mut out), &mut buf).map_err(io(path))? != sum {
            return Err(io(path)(std::io::Error::other(
                "the file changed while it was copied; make the backup again",
            )));
        }
    }
    out.write_all(&[0]).map_err(io(tmp))?;
    out.write_all(&(files.len() as u64).to_be_bytes())
        .map_err(io(tmp))?;
    let f = out.into_inner().map_err(|e| io(tmp)(e.into_error()))?;
    f.sync_all().map_err(io(tmp))
}

/// Reads the first `len` bytes of `file` through `buf` into `crc`, and into `out` if
/// given.
fn copy_hashed(
    file: &File,
    len: u64,
    buf: &mut [u8],
    crc: &mut crc32fast::Hasher,
    mut out: Option<&mut BufWriter<File>>,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let mut at = 0;
    while at < len {
        let n = usize::try_from(len - at).map_or(buf.len(), |left| left.min(buf.len()));
        let chunk = buf.get_mut(..n).unwrap_or_default();
        file.read_exact_at(chunk, at)?;
        crc.update(chunk);
        if let Some(out) = out.as_deref_mut() {
            out.write_all(chunk)?;
        }
        at += n as u64;
    }
    Ok(())
}

/// Whether `name` is one a store directory holds (and nothing that leaves it).
fn store_file_name(name: &str) -> bool {
    let numbered = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    name == SNAPSHOT || numbered(SEGMENT_PREFIX) || numbered(AUDIT_PREFIX)
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// What opening the restored store found.
    pub recovery: Recovery,
    /// Where the store it replaced was moved, if there was one.
    pub replaced: Option<PathBuf>,
}

/// Brings back the backup `file` as the store directory `dir`, with the server stopped:
/// the backup is checked whole (every file's checksum, then a full start of the store
/// under `key`, so a wrong key or damage stops here), and only then put in place. A
/// store already in `dir` is kept beside it, renamed, never deleted.
pub fn restore(
    file: &Path,
    dir: &Path,
    limits: StoreLimits,
    now: Timestamp,
    key: Arc<MasterKey>,
) -> Result<Restored, DurableError> {
    let held = if dir.exists() {
        Some(lock_dir(dir)?)
    } else {
        None
    };
    let name = dir
        .file_name()
        .ok_or_else(|| io(dir)(std::io::Error::other("not a directory name")))?
        .to_string_lossy()
        .into_owned();
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = parent.join(format!("{name}.restoring"));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    fs::create_dir(&staging).map_err(io(&staging))?;
    let checked = unpack(file, &staging).and_then(|()| {
        let opened = open(&staging, limits, now, key)?;
        opened.wal.close();
        Ok(opened.recovery)
    });
    let recovery = match checked {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let mut replaced = None;
    if dir.exists() {
        let secs = now.as_millis() / 1000;
        let mut aside = parent.join(format!("{name}.before-restore-{secs}"));
        let mut n = 1;
        while aside.exists() {
            aside = parent.join(format!("{name}.before-restore-{secs}-{n}"));
            n += 1;
        }
        fs::rename(dir, &aside).map_err(io(dir))?;
        replaced = Some(aside);
    }
    drop(held);
    fs::rename(&staging, dir).map_err(io(dir))?;
    sync_dir(parent)?;
    Ok(Restored { recovery, replaced })
}

/// Writes the files of backup `file` into the empty directory `into`, checking each.
fn unpack(file: &Path, into: &Path) -> Result<(), DurableError> {
    let f = File::open(file).map_err(io(file))?;
    let total = f.metadata().map_err(io(file))?.len();
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut at = 0u64;
    let mut magic = [0; 8];
    r.read_exact(&mut magic)
        .map_err(|_| damaged(file, 0, "shorter than a backup's header"))?;
    if &magic != BACKUP_MAGIC {
        return Err(damaged(
            file,
            0,
            "not a Portvakt backup (or another version)",
        ));
    }
    at += 8;
    let mut count = 0u64;
    let mut contents = Vec::new();
    loop {
        let cut = |at| damaged(file, at, "the backup is cut short");
        let mut name_len = [0; 1];
        r.read_exact(&mut name_len).map_err(|_| cut(at))?;
        if name_len[0] == 0 {
            let mut n = [0; 8];
            r.read_exact(&mut n).map_err(|_| cut(at))?;
            if u64::from_be_bytes(n) != count {
                return Err(damaged(file, at, "the end counts other files"));
            }
            if r.read(&mut [0; 1]).map_err(io(file))? != 0 {
                return Err(damaged(file, at + 9, "bytes after the end"));
            }
            break;
        }
        let mut name = vec![0; usize::from(name_len[0])];
        r.read_exact(&mut name).map_err(|_| cut(at))?;
        let mut head = [0; 12];
        r.read_exact(&mut head).map_err(|_| cut(at))?;
        let len = u64::from_be_bytes(
            head.get(..8)
                .and_then(|b| b.try_into().ok())
                .unwrap_or_default(),
        );
        let crc = u32::from_be_bytes(
            head.get(8..)
                .and_then(|b| b.try_into().ok())
                .unwrap_or_default(),
        );
        let name = String::from_utf8(name)
            .ok()
            .filter(|n| store_file_name(n))
            .ok_or_else(|| damaged(file, at, "a file name a store does not have"))?;
        if len > total {
            return Err(damaged(file, at, format!("{name}: longer than the backup")));
        }
        contents.clear();
        contents.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
        r.read_exact(&mut contents).map_err(|_| cut(at))?;
        let mut h = crc32fast::Hasher::new();
        h.update(&name_len);
        h.update(name.as_bytes());
        h.update(&len.to_be_bytes());
        h.update(&contents);
        if h.finalize() != crc {
            return Err(damaged(
                file,
                at,
                format!("{name}: the checksum does not match"),
            ));
        }
        let path = into.join(&name);
        let mut out = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|_| damaged(file, at, format!("{name}: twice in the backup")))?;
        out.write_all(&contents).map_err(io(&path))?;
        out.sync_all().map_err(io(&path))?;
        count += 1;
        at += 1 + name.len() as u64 + 12 + len;
    }
    sync_dir(into)
}
