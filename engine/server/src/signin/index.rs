//! The index of one sign-in log segment: where each tenant's and each user's records are,
//! and checkpoints for finding a time, so a query reads only the records it returns.
//!
//! Every record is listed twice: under its tenant's key and under its tenant-and-user key
//! (a stable 32-bit hash of a tag and the names, FNV-1a folded; a collision only makes a
//! query read a record it then skips). An entry is the key and the record's offset in the
//! segment file, packed in a `u64` (key high), so sorting entries sorts by key and then
//! offset.
//! Every [`CHECKPOINT`]th record begins a block, and the block's checkpoint holds its
//! offset, the latest time of all records before it and the earliest time within it. A
//! query for times in [*from*, *to*) starts at the last checkpoint whose records before it
//! are all before *from*, and stops at the first one from which every record is at *to*
//! or later: records are in time order only roughly (concurrent connections' batches
//! interleave), and the checkpoints make the window exact anyway.
//!
//! The active segment's index is kept in memory ([`Index`]) as sorted runs: entries are
//! appended in the order records are written (no scattered writes on the hot path) and
//! every [`RUN`] entries are sorted into a run; a lookup searches each run and scans the
//! short unsorted tail. Once a segment is sealed
//! (nobody writes it any more) its index is written beside it as `<seq>.idx` and dropped
//! from memory, and queries look it up in the file ([`IndexFile`]) with a binary search,
//! so a query's memory stays a small, fixed amount whatever the log's size.
//!
//! `<seq>.idx`: `PVSIDX01`, the segment's length it covers (`u64`), earliest and latest
//! record time (`u64` each), the number of entries (`u32`), the entries sorted (`u64`
//! each: key in the high half, offset in the low), the number of checkpoints (`u32`), the checkpoints
//! (latest time before, earliest time within, both `u64`, and offset `u32`), and a CRC-32
//! of everything before it.
//! Big-endian.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8; 8] = b"PVSIDX01";
/// Magic, length, earliest, latest.
const HEAD: u64 = 8 + 8 + 8 + 8;
const ENTRY: u64 = 8;
/// Entries sorted into a run at a time.
pub const RUN: usize = 8192;
const CHECKPOINT_BYTES: u64 = 20;

/// Where a block of records begins, and what it tells about times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Checkpoint {
    latest_before: u64,
    earliest_within: u64,
    offset: u32,
}
/// A checkpoint every this many records.
pub const CHECKPOINT: u32 = 256;

/// The key of a tenant's records.
pub fn tenant_key(tenant: &str) -> u32 {
    fnv(&[b"t", tenant.as_bytes()])
}

/// The key of one user's records.
pub fn user_key(tenant: &str, user: &str) -> u32 {
    fnv(&[b"u", tenant.as_bytes(), b"\0", user.as_bytes()])
}

/// FNV-1a, 64 bits, folded to 32: stable across builds and versions, which the files
/// need.
fn fnv(parts: &[&[u8]]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (h ^ (h >> 32)) as u32
}

fn entry(key: u32, offset: u32) -> u64 {
    u64::from(key) << 32 | u64::from(offset)
}

fn key_of(entry: u64) -> u32 {
    (entry >> 32) as u32
}

fn offset_of(entry: u64) -> u32 {
    entry as u32
}

/// A segment's index in memory, as records are written.
#[derive(Debug, Default)]
pub struct Index {
    /// Sorted runs; each covers later records than the one before it.
    runs: Vec<Vec<u64>>,
    /// Entries since the last run, in the order written.
    tail: Vec<u64>,
    checkpoints: Vec<Checkpoint>,
    records: u32,
    latest: u64,
}

impl Index {
    /// Lists the record at `offset`.
    pub fn add(&mut self, offset: u32, tenant: &str, user: &str, at_ms: u64) {
        if self.records.is_multiple_of(CHECKPOINT) {
            self.checkpoints.push(Checkpoint {
                latest_before: self.latest,
                earliest_within: u64::MAX,
                offset,
            });
        }
        if let Some(c) = self.checkpoints.last_mut() {
            c.earliest_within = c.earliest_within.min(at_ms);
        }
        self.records = self.records.saturating_add(1);
        self.latest = self.latest.max(at_ms);
        self.tail.push(entry(tenant_key(tenant), offset));
        self.tail.push(entry(user_key(tenant, user), offset));
        if self.tail.len() >= RUN {
            let mut run = std::mem::replace(&mut self.tail, Vec::with_capacity(RUN));
            run.sort_unstable();
            self.runs.push(run);
        }
    }

    /// Up to `n` offsets listed under `key`, from `from` on, ascending.
    pub fn offsets(&self, key: u32, from: u64, n: usize) -> Vec<u32> {
        let from = entry(key, u32::try_from(from).unwrap_or(u32::MAX));
        let mut out = Vec::new();
        for run in &self.runs {
            let start = run.partition_point(|&e| e < from);
            let found = run.get(start..).unwrap_or_default().iter();
            out.extend(
                found
                    .take_while(|&&e| key_of(e) == key)
                    .map(|&e| offset_of(e)),
            );
            if out.len() >= n {
                out.truncate(n);
                return out;
            }
        }
        let found = self.tail.iter().filter(|&&e| key_of(e) == key && e >= from);
        out.extend(found.map(|&e| offset_of(e)).take(n - out.len()));
        out
    }

    /// The offsets a query for times in `from_ms..to_ms` must read between.
    pub fn window(&self, from_ms: u64, to_ms: u64) -> (u64, u64) {
        window(&self.checkpoints, from_ms, to_ms)
    }

    /// Writes the index for a segment `len` bytes long, with its earliest and latest
    /// record times, to `path` (through a temporary file, synced, then renamed).
    /// The file is written as it is made: what it takes beyond the index is the sorted
    /// list of keys and a write buffer.
    pub fn write(&self, path: &Path, len: u64, min_ms: u64, max_ms: u64) -> io::Result<()> {
        /// Writes through a buffer, keeping the checksum of all it wrote.
        struct Out {
            file: io::BufWriter<File>,
            crc: crc32fast::Hasher,
        }
        impl Out {
            fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
                self.crc.update(bytes);
                self.file.write_all(bytes)
            }
        }
        let too_many = || io::Error::other("too many records for one index");
        let mut tail = self.tail.clone();
        tail.sort_unstable();
        let runs: Vec<&[u64]> = self
            .runs
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(tail.as_slice()))
            .collect();
        let count: usize = runs.iter().map(|r| r.len()).sum();
        let count = u32::try_from(count).map_err(|_| too_many())?;
        let checkpoints = u32::try_from(self.checkpoints.len()).map_err(|_| too_many())?;
        let tmp = path.with_extension("idx.tmp");
        let mut out = Out {
            file: io::BufWriter::with_capacity(1 << 16, File::create(&tmp)?),
            crc: crc32fast::Hasher::new(),
        };
        out.put(MAGIC)?;
        for v in [len, min_ms, max_ms] {
            out.put(&v.to_be_bytes())?;
        }
        out.put(&count.to_be_bytes())?;
        // The runs merged: a heap of each run's next entry.
        let mut next: std::collections::BinaryHeap<std::cmp::Reverse<(u64, usize)>> = runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some(std::cmp::Reverse((*r.first()?, i))))
            .collect();
        let mut at = vec![0usize; runs.len()];
        while let Some(std::cmp::Reverse((e, i))) = next.pop() {
            out.put(&e.to_be_bytes())?;
            if let (Some(pos), Some(run)) = (at.get_mut(i), runs.get(i)) {
                *pos += 1;
                if let Some(&e) = run.get(*pos) {
                    next.push(std::cmp::Reverse((e, i)));
                }
            }
        }
        out.put(&checkpoints.to_be_bytes())?;
        for c in &self.checkpoints {
            out.put(&c.latest_before.to_be_bytes())?;
            out.put(&c.earliest_within.to_be_bytes())?;
            out.put(&c.offset.to_be_bytes())?;
        }
        let crc = out.crc.finalize();
        let mut file = out.file;
        file.write_all(&crc.to_be_bytes())?;
        let f = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    }
}

fn window(checkpoints: &[Checkpoint], from_ms: u64, to_ms: u64) -> (u64, u64) {
    // The latest time before a checkpoint only grows along the segment.
    let start = checkpoints
        .iter()
        .take_while(|c| c.latest_before < from_ms)
        .last()
        .map_or(0, |c| u64::from(c.offset));
    // The first checkpoint from which every block begins at `to_ms` or later.
    let mut end = u64::MAX;
    let mut earliest_after = u64::MAX;
    for c in checkpoints.iter().rev() {
        earliest_after = earliest_after.min(c.earliest_within);
        if earliest_after < to_ms {
            break;
        }
        end = u64::from(c.offset);
    }
    (start, end)
}

/// A sealed segment's index, read from its file as queries need it.
#[derive(Debug)]
pub struct IndexFile {
    file: File,
    entries: u64,
    checkpoints_at: u64,
    checkpoints: u64,
}

/// What [`IndexFile::check`] found in a whole file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Covered {
    /// The segment's length the index covers.
    pub len: u64,
    /// Earliest record time.
    pub min_ms: u64,
    /// Latest record time.
    pub max_ms: u64,
}

impl IndexFile {
    /// Reads the whole file once and checks its checksum and shape (at start, before the
    /// index is trusted); what it covers, or `None` if it is not a whole index.
    pub fn check(path: &Path) -> Option<Covered> {
        let mut bytes = Vec::new();
        File::open(path).ok()?.read_to_end(&mut bytes).ok()?;
        let (body, crc) = bytes.split_last_chunk::<4>()?;
        if crc32fast::hash(body) != u32::from_be_bytes(*crc) || body.get(..8)? != MAGIC {
            return None;
        }
        let u64_at = |at: usize| Some(u64::from_be_bytes(body.get(at..at + 8)?.try_into().ok()?));
        let u32_at = |at: usize| Some(u32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?));
        let entries = u64::from(u32_at(HEAD as usize)?);
        let at = HEAD + 4 + entries * ENTRY;
        let checkpoints = u64::from(u32_at(usize::try_from(at).ok()?)?);
        (at + 4 + checkpoints * CHECKPOINT_BYTES == body.len() as u64).then_some(Covered {
            len: u64_at(8)?,
            min_ms: u64_at(16)?,
            max_ms: u64_at(24)?,
        })
    }

    /// Opens an index file [`check`](Self::check) accepted.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let entries = u64::from(read_u32(&file, HEAD)?);
        let checkpoints_at = HEAD + 4 + entries * ENTRY;
        let checkpoints = u64::from(read_u32(&file, checkpoints_at)?);
        Ok(Self {
            file,
            entries,
            checkpoints_at: checkpoints_at + 4,
            checkpoints,
        })
    }

    fn entry(&self, i: u64) -> io::Result<u64> {
        let mut b = [0; ENTRY as usize];
        self.file.read_exact_at(&mut b, HEAD + 4 + i * ENTRY)?;
        Ok(u64::from_be_bytes(b))
    }

    /// Up to `n` offsets listed under `key`, from `from` on (a binary search, then one
    /// read).
    pub fn offsets(&self, key: u32, from: u64, n: usize) -> io::Result<Vec<u32>> {
        let from = entry(key, u32::try_from(from).unwrap_or(u32::MAX));
        let (mut lo, mut hi) = (0, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)? < from {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let take = (self.entries - lo).min(n as u64);
        let mut bytes = vec![0; usize::try_from(take * ENTRY).unwrap_or(0)];
        self.file.read_exact_at(&mut bytes, HEAD + 4 + lo * ENTRY)?;
        Ok(bytes
            .chunks_exact(ENTRY as usize)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
            .take_while(|&e| key_of(e) == key)
            .map(offset_of)
            .collect())
    }

    /// The offsets a query for times in `from_ms..to_ms` must read between.
    pub fn window(&self, from_ms: u64, to_ms: u64) -> io::Result<(u64, u64)> {
        let mut bytes = vec![0; usize::try_from(self.checkpoints * CHECKPOINT_BYTES).unwrap_or(0)];
        self.file.read_exact_at(&mut bytes, self.checkpoints_at)?;
        let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
        let checkpoints: Vec<Checkpoint> = bytes
            .chunks_exact(CHECKPOINT_BYTES as usize)
            .map(|c| Checkpoint {
                latest_before: be64(c.get(..8).unwrap_or_default()),
                earliest_within: be64(c.get(8..16).unwrap_or_default()),
                offset: u32::from_be_bytes(
                    c.get(16..)
                        .unwrap_or_default()
                        .try_into()
                        .unwrap_or_default(),
                ),
            })
            .collect();
        Ok(window(&checkpoints, from_ms, to_ms))
    }
}

fn read_u32(file: &File, at: u64) -> io::Result<u32> {
    let mut b = [0; 4];
    file.read_exact_at(&mut b, at)?;
    Ok(u32::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain list: the memory index (runs and tail) and the file written from
    /// it give every key's offsets from any point, in order, and the time windows hold
    /// every record in them.
    #[test]
    fn lookups_agree_with_a_plain_list() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let users: Vec<String> = (0..300).map(|i| format!("user{i}")).collect();
        let mut index = Index::default();
        let mut plain = Vec::new();
        let mut offset = 8u32;
        let mut time = 1_000u64;
        // Enough records for several runs and a tail.
        for _ in 0..(RUN * 3 / 2 + 77) {
            let tenant = if next() % 5 == 0 { "annen" } else { "kommune" };
            let user = &users[(next() % 300) as usize];
            // Roughly in time order, as interleaved batches are.
            let at = time + next() % 7;
            time += 2;
            index.add(offset, tenant, user, at);
            plain.push((offset, tenant, user.clone(), at));
            offset += 40 + (next() % 60) as u32;
        }
        let dir = std::env::temp_dir().join(format!("portvakt-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("1.idx");
        index
            .write(&path, u64::from(offset), 1_000, time + 7)
            .unwrap();
        assert!(IndexFile::check(&path).is_some());
        let file = IndexFile::open(&path).unwrap();
        for probe in 0..40 {
            let user = &users[probe * 7];
            let (key, wanted): (u32, Vec<u32>) = match probe % 3 {
                0 => (
                    tenant_key("annen"),
                    plain
                        .iter()
                        .filter(|r| r.1 == "annen")
                        .map(|r| r.0)
                        .collect(),
                ),
                _ => (
                    user_key("kommune", user),
                    plain
                        .iter()
                        .filter(|r| r.1 == "kommune" && &r.2 == user)
                        .map(|r| r.0)
                        .collect(),
                ),
            };
            let from = u64::from(plain[(next() % plain.len() as u64) as usize].0);
            let expected: Vec<u32> = wanted
                .iter()
                .copied()
                .filter(|&o| u64::from(o) >= from)
                .take(50)
                .collect();
            // Collisions may add offsets, never drop one; with these names there are none.
            assert_eq!(
                index.offsets(key, from, 50),
                expected,
                "memory, probe {probe}"
            );
            assert_eq!(
                file.offsets(key, from, 50).unwrap(),
                expected,
                "file, probe {probe}"
            );
        }
        for (from_ms, to_ms) in [
            (0, u64::MAX),
            (5_000, 5_100),
            (9_000, 20_000),
            (1_000, 1_001),
        ] {
            let (start, end) = index.window(from_ms, to_ms);
            assert_eq!(file.window(from_ms, to_ms).unwrap(), (start, end));
            for r in plain.iter().filter(|r| (from_ms..to_ms).contains(&r.3)) {
                let o = u64::from(r.0);
                assert!(
                    o >= start && o < end,
                    "{o} outside {start}..{end} for {from_ms}..{to_ms}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
