//! The seam's primitive by compare-and-set, for backends that keep versioned bytes.
//!
//! A backend that cannot hold a lock across the core's function (a shared store several
//! nodes reach over the network, say) keeps each record as bytes with a version, and can
//! replace a record only if its version is still the one that was read
//! ([`VersionedRecords`]). [`CasStore`] turns that into a [`StateStore`]: it reads the
//! record, runs the core's function on the decoded record, and swaps the result in; if
//! another writer got there first, it runs the function again on what that writer left.
//! So the backend still carries no rule, and every run of the function sees a record as it
//! was at one instant.
//!
//! A function that leaves its record as it found it (a lock check, a refused reservation)
//! writes nothing: its answer was true of the record when it was read.

use portvakt_core::id::{ChallengeId, Subject};
use portvakt_core::record::RecordError;
use portvakt_core::state::{
    ChallengeRecord, Counter, CounterKey, RecordKey, StateStore, StoreError, StoreSizes, UserState,
};
use portvakt_core::time::Timestamp;

/// A record's bytes and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// Changes with every write, and never repeats for a key, even after the record was
    /// removed and written again (a counter over the whole store serves).
    pub version: u64,
    /// The record as its `encode` wrote it.
    pub bytes: Vec<u8>,
}

/// What a compare-and-set backend offers: versioned byte records by key.
pub trait VersionedRecords: Send + Sync {
    /// The record at `key`, if there is one.
    fn load(&self, key: &[u8]) -> Result<Option<Versioned>, StoreError>;

    /// Replaces the record at `key` with `value` (removes it for `None`) if its version is
    /// still `expected` (`None`: there is no record); otherwise changes nothing and gives
    /// the record as it is now. A record written may be dropped after `keep` (`None`:
    /// kept until removed); a backend without expiry keeps it.
    fn swap(
        &self,
        key: &[u8],
        expected: Option<u64>,
        value: Option<&[u8]>,
        keep: Option<std::time::Duration>,
    ) -> Result<Result<(), Option<Versioned>>, StoreError>;

    /// The record at `key` as an update starts from, and whether it may be stale:
    /// [`load`](Self::load) (fresh), or a copy this backend kept of what it last read or
    /// wrote there. A stale copy is safe to start from: a write swaps only if the version
    /// is still the copy's, and an update that would write nothing checks the version
    /// before its answer stands. Never used to answer a read.
    fn load_for_update(&self, key: &[u8]) -> Result<(Option<Versioned>, bool), StoreError> {
        self.load(key).map(|v| (v, false))
    }

    /// Calls `f` with the bytes of every record whose key starts with `prefix` (a scan,
    /// for metrics).
    fn scan(&self, prefix: u8, f: &mut dyn FnMut(&[u8])) -> Result<(), StoreError>;
}

/// How many times one update runs its function before it gives up with an error (and the
/// decision fails closed). Each conflict means another writer's change went in, so only
/// a record under constant contention from many writers can come near it.
pub const MAX_RUNS: usize = 1_000;

/// A [`StateStore`] over any [`VersionedRecords`].
///
/// Updates of one key from this process take turns (a lock per stripe of keys, held
/// across the update's round trips): a record many threads update at once (one address's
/// failure budget, say) then costs each of them one swap from a current copy, instead of
/// a storm of swaps that conflict with each other. Other processes still conflict, and
/// are still caught by the version check.
pub struct CasStore<B> {
    records: B,
    turns: Box<[parking_lot::Mutex<()>]>,
}

/// Stripes of keys that take turns (a power of two).
const STRIPES: usize = 1024;

impl<B: Default> Default for CasStore<B> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B> CasStore<B> {
    /// The store over `records`.
    pub fn new(records: B) -> Self {
        Self {
            records,
            turns: (0..STRIPES).map(|_| parking_lot::Mutex::new(())).collect(),
        }
    }

    fn turn(&self, key: &[u8]) -> parking_lot::MutexGuard<'_, ()> {
        // FNV-1a: keys are already keyed hashes or ids; this only spreads them.
        let h = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        self.turns[(h as usize) & (STRIPES - 1)].lock()
    }

    /// The backend.
    pub fn records(&self) -> &B {
        &self.records
    }
}

/// The key of a subject's record (`RecordKey::encode`).
pub fn subject_key(subject: Subject) -> Vec<u8> {
    key(RecordKey::Subject(subject))
}

/// The key of a budget's record.
pub fn counter_key(counter: CounterKey) -> Vec<u8> {
    key(RecordKey::Counter(counter))
}

/// The key of a challenge's record.
pub fn challenge_key(id: ChallengeId) -> Vec<u8> {
    key(RecordKey::Challenge(id))
}

fn key(key: RecordKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    key.encode(&mut k);
    k
}

/// How long a record that would change no answer any more (no replay state, no lock or
/// block in force, budgets run out) stays in a store that can drop records by age.
pub const KEEP_IDLE: std::time::Duration = std::time::Duration::from_secs(2 * 86_400);

/// A record type as the store sees it: bytes, and whether there is anything to keep.
trait Record: Sized {
    fn decode(bytes: &[u8]) -> Result<Self, RecordError>;
    fn encode(&self, out: &mut Vec<u8>);
    fn empty() -> Self;
    fn is_empty(&self) -> bool;
    /// How long the record must be kept from `now` (`None`: until it is removed).
    fn keep(&self, now: Timestamp) -> Option<std::time::Duration>;
}

fn keep_idle(idle_later: bool) -> Option<std::time::Duration> {
    idle_later.then_some(KEEP_IDLE)
}

fn later(now: Timestamp) -> Timestamp {
    Timestamp::from_millis(now.as_millis().saturating_add(KEEP_IDLE.as_millis() as u64))
}

impl Record for UserState {
    fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        UserState::decode(bytes)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        UserState::encode(self, out);
    }
    fn empty() -> Self {
        Self::default()
    }
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
    fn keep(&self, now: Timestamp) -> Option<std::time::Duration> {
        keep_idle(self.idle_at(later(now)))
    }
}

impl Record for Counter {
    fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        Counter::decode(bytes)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        Counter::encode(self, out);
    }
    fn empty() -> Self {
        Self::default()
    }
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
    fn keep(&self, now: Timestamp) -> Option<std::time::Duration> {
        keep_idle(self.idle_at(later(now)))
    }
}

impl Record for Option<ChallengeRecord> {
    fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        ChallengeRecord::decode(bytes).map(Some)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        if let Some(c) = self {
            c.encode(out);
        }
    }
    fn empty() -> Self {
        None
    }
    fn is_empty(&self) -> bool {
        self.is_none()
    }
    fn keep(&self, now: Timestamp) -> Option<std::time::Duration> {
        // A challenge is worth nothing after it expires (a minute's grace for clocks).
        let ends = self.map_or(0, |c| c.expires.as_millis());
        let ms = ends.saturating_sub(now.as_millis()).saturating_add(60_000);
        Some(std::time::Duration::from_millis(ms))
    }
}

fn damaged(key: &[u8], e: RecordError) -> StoreError {
    // A record this build cannot read is not guessed at: the decision fails closed.
    StoreError::new(format!("record {:02x?}: {e}", key))
}

impl<B: VersionedRecords> CasStore<B> {
    fn read<T: Record, R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&T>) -> R,
    ) -> Result<R, StoreError> {
        match self.records.load(key)? {
            None => Ok(f(None)),
            Some(v) => {
                let record = T::decode(&v.bytes).map_err(|e| damaged(key, e))?;
                Ok(f(Some(&record)))
            }
        }
    }

    fn update<T: Record, R>(
        &self,
        key: &[u8],
        now: Timestamp,
        mut f: impl FnMut(&mut T) -> R,
    ) -> Result<R, StoreError> {
        let _turn = self.turn(key);
        let (mut current, mut stale) = self.records.load_for_update(key)?;
        let mut bytes = Vec::new();
        for _ in 0..MAX_RUNS {
            let mut record = match &current {
                Some(v) => T::decode(&v.bytes).map_err(|e| damaged(key, e))?,
                None => T::empty(),
            };
            let r = f(&mut record);
            bytes.clear();
            let value = if record.is_empty() {
                None
            } else {
                record.encode(&mut bytes);
                Some(bytes.as_slice())
            };
            if value == current.as_ref().map(|v| v.bytes.as_slice()) {
                if !stale {
                    return Ok(r);
                }
                // Nothing to write, but the answer came from a copy that may be out of
                // date (a lock made through another node, say): it stands only if the
                // record is still that version.
                let fresh = self.records.load(key)?;
                if fresh.as_ref().map(|v| v.version) == current.as_ref().map(|v| v.version) {
                    return Ok(r);
                }
                (current, stale) = (fresh, false);
                continue;
            }
            let keep = record.keep(now);
            match self
                .records
                .swap(key, current.as_ref().map(|v| v.version), value, keep)?
            {
                Ok(()) => return Ok(r),
                Err(now) => (current, stale) = (now, false),
            }
        }
        Err(StoreError::new(format!(
            "record {key:02x?}: {MAX_RUNS} conflicting writes in a row"
        )))
    }
}

impl<B: VersionedRecords> StateStore for CasStore<B> {
    fn read_subject<R>(
        &self,
        subject: Subject,
        f: impl FnOnce(Option<&UserState>) -> R,
    ) -> Result<R, StoreError> {
        self.read(&subject_key(subject), f)
    }

    fn update_subject<R>(
        &self,
        subject: Subject,
        now: Timestamp,
        f: impl FnMut(&mut UserState) -> R,
    ) -> Result<R, StoreError> {
        self.update(&subject_key(subject), now, f)
    }

    fn read_counter<R>(
        &self,
        key: CounterKey,
        f: impl FnOnce(Option<&Counter>) -> R,
    ) -> Result<R, StoreError> {
        self.read(&counter_key(key), f)
    }

    fn update_counter<R>(
        &self,
        key: CounterKey,
        now: Timestamp,
        f: impl FnMut(&mut Counter) -> R,
    ) -> Result<R, StoreError> {
        self.update(&counter_key(key), now, f)
    }

    fn update_challenge<R>(
        &self,
        id: ChallengeId,
        now: Timestamp,
        f: impl FnMut(&mut Option<ChallengeRecord>) -> R,
    ) -> Result<R, StoreError> {
        self.update(&challenge_key(id), now, f)
    }

    fn sizes(&self) -> Result<StoreSizes, StoreError> {
        let count = |prefix: u8| -> Result<usize, StoreError> {
            let mut n = 0;
            self.records.scan(prefix, &mut |_| n += 1)?;
            Ok(n)
        };
        Ok(StoreSizes {
            users: count(b'u')?,
            unknown: count(b'n')?,
            sources: count(b's')?,
            numbers: count(b'p')?,
            challenges: count(b'c')?,
            evictions: 0,
        })
    }

    fn locked_subjects(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut locked = 0;
        let mut damaged = None;
        for prefix in [b'u', b'n'] {
            self.records
                .scan(prefix, &mut |bytes| match UserState::decode(bytes) {
                    Ok(u) => locked += usize::from(u.any_locked(now)),
                    Err(e) => damaged = Some(e),
                })?;
        }
        match damaged {
            Some(e) => Err(StoreError::new(format!("a subject record: {e}"))),
            None => Ok(locked),
        }
    }
}
