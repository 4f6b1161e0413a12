//! Helpers for tests and benchmarks: deterministic randomness, a manual clock, and a store
//! that fails on purpose.
//!
//! Not for production: [`SeededEntropy`] is predictable by design.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::id::{ChallengeId, MethodId, Subject};
use crate::lockout::{Domain, LockoutConfig};
use crate::policy::PhoneSettings;
use crate::secret::{Entropy, SecretDigest};
use crate::state::{
    Answer, ChallengeRecord, Effect, OtpState, PhoneKeys, Redeem, StateStore, StoreError,
    StoreSizes,
};
use crate::time::{Duration, Timestamp};
use crate::window::Rate;

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

    /// The operation of every call so far, in order (`sign_in`, `refund_source`, ...).
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
        let failed = || StoreError(format!("injected fault at call {n}"));
        match fault {
            Fault::Before(k) if n == from + k => Err(failed()),
            Fault::After(k) if n == from + k => op(&self.inner).and_then(|_| Err(failed())),
            _ => op(&self.inner),
        }
    }
}

impl<S: StateStore> StateStore for Faulty<S> {
    fn otp_state(&self, subject: Subject, method: MethodId) -> Result<OtpState, StoreError> {
        self.call("otp_state", |s| s.otp_state(subject, method))
    }
    fn sign_in(
        &self,
        subject: Subject,
        domain: Domain,
        effect: Effect,
        now: Timestamp,
        cfg: &LockoutConfig,
    ) -> Result<Answer, StoreError> {
        self.call("sign_in", |s| s.sign_in(subject, domain, effect, now, cfg))
    }
    fn reserve_source(
        &self,
        source: u128,
        now: Timestamp,
        rate: Rate,
    ) -> Result<Result<(), Duration>, StoreError> {
        self.call("reserve_source", |s| s.reserve_source(source, now, rate))
    }
    fn refund_source(&self, source: u128, now: Timestamp) -> Result<(), StoreError> {
        self.call("refund_source", |s| s.refund_source(source, now))
    }
    fn reserve_phone_send(
        &self,
        keys: PhoneKeys,
        now: Timestamp,
        settings: &PhoneSettings,
    ) -> Result<Result<(), Duration>, StoreError> {
        self.call("reserve_phone_send", |s| {
            s.reserve_phone_send(keys, now, settings)
        })
    }
    fn phone_blocked(
        &self,
        subject: Subject,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.call("phone_blocked", |s| s.phone_blocked(subject, now))
    }
    fn phone_failure(
        &self,
        subject: Subject,
        now: Timestamp,
        settings: &PhoneSettings,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.call("phone_failure", |s| s.phone_failure(subject, now, settings))
    }
    fn put_challenge(
        &self,
        id: ChallengeId,
        record: ChallengeRecord,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.call("put_challenge", |s| s.put_challenge(id, record, now))
    }
    fn redeem_challenge(
        &self,
        id: ChallengeId,
        subject: Subject,
        digest: &SecretDigest,
        now: Timestamp,
    ) -> Result<Redeem, StoreError> {
        self.call("redeem_challenge", |s| {
            s.redeem_challenge(id, subject, digest, now)
        })
    }
    fn unlock(&self, subject: Subject) -> Result<(), StoreError> {
        self.call("unlock", |s| s.unlock(subject))
    }
    fn reset_drift(&self, subject: Subject, method: MethodId) -> Result<(), StoreError> {
        self.call("reset_drift", |s| s.reset_drift(subject, method))
    }
    fn raise_otp(&self, subject: Subject, method: MethodId, next: u64) -> Result<(), StoreError> {
        self.call("raise_otp", |s| s.raise_otp(subject, method, next))
    }
    fn forget(&self, subject: Subject, method: Option<MethodId>) -> Result<(), StoreError> {
        self.call("forget", |s| s.forget(subject, method))
    }
    fn sizes(&self) -> Result<StoreSizes, StoreError> {
        self.call("sizes", |s| s.sizes())
    }
    fn locked_subjects(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.call("locked_subjects", |s| s.locked_subjects(now))
    }
}
