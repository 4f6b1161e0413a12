//! The store a server runs on, chosen at start: one type, so the server is not generic.

use crate::redis::RedisStore;
use portvakt_core::id::{ChallengeId, Subject};
use portvakt_core::state::{
    ChallengeRecord, Counter, CounterKey, MemoryStore, StateStore, StoreError, StoreSizes,
    UserState,
};
use portvakt_core::time::Timestamp;

/// In this process's memory (made durable by the state log, or not), or shared in Redis.
// One per engine, for its whole life: the tables stay inline rather than one pointer away
// on every decision.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    /// The core's sharded tables.
    Memory(MemoryStore),
    /// One deployment's Redis, shared by all its nodes.
    Shared(RedisStore),
}

/// The engine every server runs.
pub type Engine = portvakt_core::Engine<Store>;

impl From<MemoryStore> for Store {
    fn from(s: MemoryStore) -> Self {
        Self::Memory(s)
    }
}

impl Store {
    /// The in-memory tables, if that is what this is.
    pub fn memory(&self) -> Option<&MemoryStore> {
        match self {
            Self::Memory(m) => Some(m),
            Self::Shared(_) => None,
        }
    }

    /// Whether a call may wait on the network (decisions then run off the async runtime).
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Shared(_))
    }

    /// Drops idle entries from the bounded in-memory tables (a shared store expires its
    /// own); how many.
    pub fn sweep(&self, now: Timestamp) -> usize {
        match self {
            Self::Memory(m) => m.sweep(now),
            Self::Shared(_) => 0,
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Memory($s) => $e,
            Store::Shared($s) => $e,
        }
    };
}

impl StateStore for Store {
    fn read_subject<R>(
        &self,
        subject: Subject,
        f: impl FnOnce(Option<&UserState>) -> R,
    ) -> Result<R, StoreError> {
        each!(self, s => s.read_subject(subject, f))
    }

    fn update_subject<R>(
        &self,
        subject: Subject,
        now: Timestamp,
        f: impl FnMut(&mut UserState) -> R,
    ) -> Result<R, StoreError> {
        each!(self, s => s.update_subject(subject, now, f))
    }

    fn read_counter<R>(
        &self,
        key: CounterKey,
        f: impl FnOnce(Option<&Counter>) -> R,
    ) -> Result<R, StoreError> {
        each!(self, s => s.read_counter(key, f))
    }

    fn update_counter<R>(
        &self,
        key: CounterKey,
        now: Timestamp,
        f: impl FnMut(&mut Counter) -> R,
    ) -> Result<R, StoreError> {
        each!(self, s => s.update_counter(key, now, f))
    }

    fn update_challenge<R>(
        &self,
        id: ChallengeId,
        now: Timestamp,
        f: impl FnMut(&mut Option<ChallengeRecord>) -> R,
    ) -> Result<R, StoreError> {
        each!(self, s => s.update_challenge(id, now, f))
    }

    fn sizes(&self) -> Result<StoreSizes, StoreError> {
        each!(self, s => s.sizes())
    }

    fn locked_subjects(&self, now: Timestamp) -> Result<usize, StoreError> {
        each!(self, s => s.locked_subjects(now))
    }
}
