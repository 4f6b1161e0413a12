//! Helpers for tests and benchmarks: deterministic randomness, a manual clock, and a store
//! that fails on purpose.
//!
//! Not for production: [`SeededEntropy`] is predictable by design.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::id::{ChallengeId, Subject};
use crate::secret::Entropy;
use crate::state::{
    ChallengeRecord, Counter, CounterKey, StateStore, StoreError, StoreSizes, UserState,
};
use crate::time::{Duration, Timestamp};

/// Deterministic "randomness" (SplitMix64 over an atomic counter), so tests and benches
/// can be replayed exactly. Predictable: never use it to serve real users.
#[derive(Debug)]
pub struct SeededEntropy(AtomicU64);

impl SeededEntropy {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut z = self
                .0
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
                .wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            for (b, v) in chunk.iter_mut().zip(z.to_le_bytes()) {
                *b = v;
            }
        }
    }
}

/// A clock for tests: it moves only when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicU64::new(start.as_millis()))
    }

    /// The time it shows.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }

    /// Moves it forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis(), Ordering::SeqCst);
    }
}

/// When [`Faulty`] fails a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Never.
    Never,
    /// The `n`-th call from now (0: the next), before the call reaches the store: the
    /// store is unchanged, as when a request never arrives.
    Before(u64),
    /// The `n`-th call from now, after the store has done it: the store is changed, as
    /// when an answer is lost on its way back.
    After(u64),
}

/// A store that fails on purpose, for testing what a failing store does to decisions: it
/// passes every call to `inner` and fails the one [`Fault`] names.
#[derive(Debug)]
pub struct Faulty<S> {
    inner: S,
    calls: AtomicU64,
    fault: std::sync::Mutex<(Fault, u64)>,
    ops: std::sync::Mutex<Vec<&'static str>>,
}

impl<S> Faulty<S> {
    /// `inner`, failing nothing yet.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            calls: AtomicU64::new(0),
            fault: std::sync::Mutex::new((Fault::Never, 0)),
            ops: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Fails as `fault` says, counting calls from now.
    pub fn set(&self, fault: Fault) {
        let mut f = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        *f = (fault, self.calls.load(Ordering::SeqCst));
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The operation of every call so far, in order (`update_subject`, `update_counter(source)`, ...).
    pub fn ops(&self) -> Vec<&'static str> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Runs one call through the fault: `Err` instead of it, or `Err` after it.
    fn call<T>(
        &self,
        name: &'static str,
        op: impl FnOnce(&S) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name);
        let (fault, from) = *self.fault.lock().unwrap_or_else(|e| e.into_inner());
        let failed = || StoreError::new(format!("injected fault at call {n}"));
        match fault {
            Fault::Before(k) if n == from + k => Err(failed()),
            Fault::After(k) if n == from + k => op(&self.inner).and_then(|_| Err(failed())),
            _ => op(&self.inner),
        }
    }
}

impl<S: StateStore> StateStore for Faulty<S> {
    fn read_subject<R>(
        &self,
        subject: Subject,
        f: impl FnOnce(Option<&UserState>) -> R,
    ) -> Result<R, StoreError> {
        self.call("read_subject", |s| s.read_subject(subject, f))
    }
    fn update_subject<R>(
        &self,
        subject: Subject,
        now: Timestamp,
        f: impl FnMut(&mut UserState) -> R,
    ) -> Result<R, StoreError> {
        self.call("update_subject", |s| s.update_subject(subject, now, f))
    }
    fn read_counter<R>(
        &self,
        key: CounterKey,
        f: impl FnOnce(Option<&Counter>) -> R,
    ) -> Result<R, StoreError> {
        self.call(counter_op("read", key), |s| s.read_counter(key, f))
    }
    fn update_counter<R>(
        &self,
        key: CounterKey,
        now: Timestamp,
        f: impl FnMut(&mut Counter) -> R,
    ) -> Result<R, StoreError> {
        self.call(counter_op("update", key), |s| s.update_counter(key, now, f))
    }
    fn update_challenge<R>(
        &self,
        id: ChallengeId,
        now: Timestamp,
        f: impl FnMut(&mut Option<ChallengeRecord>) -> R,
    ) -> Result<R, StoreError> {
        self.call("update_challenge", |s| s.update_challenge(id, now, f))
    }
    fn sizes(&self) -> Result<StoreSizes, StoreError> {
        self.call("sizes", |s| s.sizes())
    }
    fn locked_subjects(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.call("locked_subjects", |s| s.locked_subjects(now))
    }
}

/// The name [`Faulty::ops`] gives a counter call: what it does and to which budget.
fn counter_op(what: &str, key: CounterKey) -> &'static str {
    match (what, key) {
        ("read", CounterKey::Source(_)) => "read_counter(source)",
        ("read", CounterKey::Number(_)) => "read_counter(number)",
        ("read", CounterKey::Tenant(_)) => "read_counter(tenant)",
        (_, CounterKey::Source(_)) => "update_counter(source)",
        (_, CounterKey::Number(_)) => "update_counter(number)",
        (_, CounterKey::Tenant(_)) => "update_counter(tenant)",
    }
}
