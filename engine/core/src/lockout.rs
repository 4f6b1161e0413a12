//! Lockout: a per-domain state machine driven by failures, successes and time.
//!
//! Each user has four independent lock domains: first-factor and second-factor failures,
//! each counted apart for familiar (trusted-location) and unfamiliar addresses, so that an
//! attacker abroad cannot lock out the employee in the office.
//!
//! ```text
//!                 failure (count < threshold)
//!                 ┌──────────┐
//!                 │          ▼
//!   ┌──────┐  failure   ┌──────────┐  count reaches threshold   ┌──────────────────────┐
//!   │ Open │──────────▶│ Counting │───────────────────────────▶│ Locked(until, level) │
//!   └──────┘            └──────────┘   wait = base·mult^level,  └──────────────────────┘
//!      ▲   success or quiet  │ ▲            capped; level += 1          │
//!      │   for reset_after   │ │                                      │ now ≥ until
//!      └─────────────────────┘ └──────────── Counting(0, level) ◀──────┘
//!      ▲                                     (level survives until a success or
//!      └──────── administrator unlock          a quiet period of reset_after)
//! ```
//!
//! While locked every attempt, right or wrong, answers locked and is not counted. A wrong
//! input equal to one of the last few (by keyed fingerprint) is refused but not counted
//! again. The state is plain data; the store applies these transitions inside its
//! per-key atomic operation.

use crate::time::{Duration, Timestamp};

/// Lockout parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutConfig {
    /// Failures that trigger a lock (1-255).
    pub threshold: u8,
    /// The first lock's wait.
    pub base_wait: Duration,
    /// Each further lock in a streak multiplies the wait by this.
    pub multiplier: u32,
    /// No wait is longer than this.
    pub max_wait: Duration,
    /// A quiet period (no failures) after which counts and the streak start over.
    pub reset_after: Duration,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            threshold: 10,
            base_wait: Duration::from_secs(60),
            multiplier: 2,
            max_wait: Duration::from_secs(3600),
            reset_after: Duration::from_secs(3600),
        }
    }
}

impl LockoutConfig {
    /// The wait of the lock number `level` (0 for the first) in a streak.
    pub fn wait(&self, level: u8) -> Duration {
        let factor = u64::from(self.multiplier).saturating_pow(u32::from(level));
        self.base_wait.saturating_mul(factor).min(self.max_wait)
    }
}

/// How many recent wrong inputs a domain remembers to avoid counting repeats.
pub const REMEMBERED_FAILURES: usize = 3;

/// The state of one lock domain. `Default` is the open state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    failures: u8,
    level: u8,
    /// Fingerprints of the most recent counted wrong inputs; 0 means empty.
    recent: [u32; REMEMBERED_FAILURES],
    last_failure: Timestamp,
    locked_until: Timestamp,
}

impl Lock {
    /// Writes the lock in record format (`record.rs`).
    pub(crate) fn put(&self, p: &mut crate::record::Put<'_>) {
        p.u8(self.failures);
        p.u8(self.level);
        for f in self.recent {
            p.u32(f);
        }
        p.u64(self.last_failure.as_millis());
        p.u64(self.locked_until.as_millis());
    }

    /// Reads a lock written by [`put`](Self::put).
    pub(crate) fn get(g: &mut crate::record::Get<'_>) -> Result<Self, crate::record::RecordError> {
        let failures = g.u8()?;
        let level = g.u8()?;
        let mut recent = [0u32; REMEMBERED_FAILURES];
        for f in &mut recent {
            *f = g.u32()?;
        }
        Ok(Self {
            failures,
            level,
            recent,
            last_failure: Timestamp::from_millis(g.u64()?),
            locked_until: Timestamp::from_millis(g.u64()?),
        })
    }
}

/// The lock state as a reader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// No failures are pending.
    Open,
    /// Some failures are counted; `level` locks happened earlier in this streak.
    Counting {
        /// Failures counted since the last lock or reset.
        failures: u8,
        /// Locks earlier in this streak.
        level: u8,
    },
    /// Locked until the given time.
    Locked {
        /// When attempts are accepted again.
        until: Timestamp,
        /// Locks in this streak, this one included.
        level: u8,
    },
}

/// What a failure did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Counted; this many more failures lock.
    Counted {
        /// Failures left before the lock.
        remaining: u8,
    },
    /// The same wrong input as a recent one: refused, not counted again.
    Repeated,
    /// This failure locked the domain.
    LockedNow {
        /// When attempts are accepted again.
        until: Timestamp,
    },
    /// The domain was already locked; nothing was counted.
    AlreadyLocked {
        /// When attempts are accepted again.
        until: Timestamp,
    },
}

impl Lock {
    /// Applies the passage of time: an expired lock opens (keeping its streak level), and a
    /// quiet period of `reset_after` clears everything.
    fn settle(&mut self, now: Timestamp, cfg: &LockoutConfig) {
        if self.locked_until != Timestamp::EPOCH && now >= self.locked_until {
            self.locked_until = Timestamp::EPOCH;
            self.failures = 0;
            self.recent = [0; REMEMBERED_FAILURES];
        }
        if self.locked_until == Timestamp::EPOCH
            && (self.failures > 0 || self.level > 0)
            && now.since(self.last_failure) >= cfg.reset_after
        {
            *self = Self::default();
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Timestamp, cfg: &LockoutConfig) -> LockState {
        let mut s = *self;
        s.settle(now, cfg);
        if s.locked_until != Timestamp::EPOCH {
            LockState::Locked {
                until: s.locked_until,
                level: s.level,
            }
        } else if s.failures > 0 || s.level > 0 {
            LockState::Counting {
                failures: s.failures,
                level: s.level,
            }
        } else {
            LockState::Open
        }
    }

    /// When the lock ends, if locked at `now`.
    pub fn locked_until(&self, now: Timestamp) -> Option<Timestamp> {
        (now < self.locked_until).then_some(self.locked_until)
    }

    /// Records a failure whose input has keyed fingerprint `fingerprint` (0 for "no input
    /// to compare", which is always counted).
    pub fn fail(&mut self, now: Timestamp, fingerprint: u32, cfg: &LockoutConfig) -> Failure {
        self.settle(now, cfg);
        if let Some(until) = self.locked_until(now) {
            return Failure::AlreadyLocked { until };
        }
        if fingerprint != 0 && self.recent.contains(&fingerprint) {
            return Failure::Repeated;
        }
        self.recent.rotate_right(1);
        self.recent[0] = fingerprint;
        self.failures = self.failures.saturating_add(1);
        self.last_failure = now;
        let threshold = cfg.threshold.max(1);
        if self.failures >= threshold {
            let until = now + cfg.wait(self.level);
            self.locked_until = until;
            self.level = self.level.saturating_add(1);
            self.failures = 0;
            self.recent = [0; REMEMBERED_FAILURES];
            Failure::LockedNow { until }
        } else {
            Failure::Counted {
                remaining: threshold - self.failures,
            }
        }
    }

    /// Records a success. A locked domain stays locked (the caller answers locked);
    /// otherwise the counts and the streak start over.
    pub fn succeed(&mut self, now: Timestamp, cfg: &LockoutConfig) -> Result<(), Timestamp> {
        self.settle(now, cfg);
        match self.locked_until(now) {
            Some(until) => Err(until),
            None => {
                *self = Self::default();
                Ok(())
            }
        }
    }

    /// How much forgetting this lock would change: a lock in force weighs most (the later
    /// it ends, the more), then a higher level and more counted failures. Bounded tables
    /// evict the lightest entries first.
    pub fn weight(&self, now: Timestamp) -> u64 {
        let pending = (u64::from(self.level) << 8) | u64::from(self.failures);
        match self.locked_until(now) {
            Some(until) => (1 << 62) | until.as_millis().min((1 << 62) - 1),
            None => pending,
        }
    }

    /// Locks until at least `until`, however many failures were counted (a sign-in the
    /// user reported as not theirs at `now`); the streak goes on from it, as from a
    /// failure.
    pub fn force(&mut self, now: Timestamp, until: Timestamp) {
        self.last_failure = now;
        self.locked_until = self.locked_until.max(until);
        self.level = self.level.saturating_add(1);
        self.failures = 0;
        self.recent = [0; REMEMBERED_FAILURES];
    }

    /// An administrator's unlock: back to open.
    pub fn unlock(&mut self) {
        *self = Self::default();
    }

    /// Whether this domain holds no information and could be forgotten at `now`.
    pub fn is_idle(&self, now: Timestamp, cfg: &LockoutConfig) -> bool {
        self.state(now, cfg) == LockState::Open
    }
}

/// Which of a user's lock domains an attempt belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Domain {
    /// First factor (password, app password) or second factor (codes).
    pub factor: Factor,
    /// Whether the address is in a trusted location.
    pub familiar: bool,
}

impl Domain {
    /// The index of this domain in a user's four locks.
    pub fn index(self) -> usize {
        match (self.factor, self.familiar) {
            (Factor::First, true) => 0,
            (Factor::First, false) => 1,
            (Factor::Second, true) => 2,
            (Factor::Second, false) => 3,
        }
    }

    /// The other factor's domain at the same familiarity: a lock there also bars this one.
    pub fn sibling(self) -> Self {
        let factor = match self.factor {
            Factor::First => Factor::Second,
            Factor::Second => Factor::First,
        };
        Self {
            factor,
            familiar: self.familiar,
        }
    }
}

/// The factor a failure is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Factor {
    /// Something the user knows.
    First,
    /// Something the user has.
    Second,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> LockoutConfig {
        LockoutConfig {
            threshold: 3,
            base_wait: Duration::from_secs(60),
            multiplier: 2,
            max_wait: Duration::from_secs(200),
            reset_after: Duration::from_secs(1000),
        }
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(1_000_000 + s)
    }

    #[test]
    fn waits_grow_and_are_capped() {
        let c = cfg();
        assert_eq!(c.wait(0), Duration::from_secs(60));
        assert_eq!(c.wait(1), Duration::from_secs(120));
        assert_eq!(c.wait(2), Duration::from_secs(200));
        assert_eq!(c.wait(255), Duration::from_secs(200));
    }

    #[test]
    fn threshold_locks_then_expiry_reopens_with_longer_next_wait() {
        let c = cfg();
        let mut l = Lock::default();
        assert_eq!(l.fail(t(0), 1, &c), Failure::Counted { remaining: 2 });
        assert_eq!(l.fail(t(1), 2, &c), Failure::Counted { remaining: 1 });
        assert_eq!(l.fail(t(2), 3, &c), Failure::LockedNow { until: t(62) });
        assert_eq!(
            l.state(t(3), &c),
            LockState::Locked {
                until: t(62),
                level: 1
            }
        );
        assert_eq!(
            l.fail(t(10), 4, &c),
            Failure::AlreadyLocked { until: t(62) }
        );
        assert_eq!(
            l.succeed(t(61), &c),
            Err(t(62)),
            "a right answer while locked stays locked"
        );
        // Expired: open again, but the streak remembers one lock.
        assert_eq!(
            l.state(t(62), &c),
            LockState::Counting {
                failures: 0,
                level: 1
            }
        );
        l.fail(t(63), 5, &c);
        l.fail(t(64), 6, &c);
        assert_eq!(l.fail(t(65), 7, &c), Failure::LockedNow { until: t(185) });
        // Quiet long enough after the lock ends: everything starts over.
        assert_eq!(l.state(t(185 + 1000), &c), LockState::Open);
    }

    #[test]
    fn repeated_wrong_input_counts_once() {
        let c = cfg();
        let mut l = Lock::default();
        assert_eq!(l.fail(t(0), 42, &c), Failure::Counted { remaining: 2 });
        assert_eq!(l.fail(t(1), 42, &c), Failure::Repeated);
        assert_eq!(l.fail(t(2), 42, &c), Failure::Repeated);
        assert_eq!(
            l.state(t(3), &c),
            LockState::Counting {
                failures: 1,
                level: 0
            }
        );
        // Fingerprint 0 means "nothing to compare" and always counts.
        assert_eq!(l.fail(t(4), 0, &c), Failure::Counted { remaining: 1 });
        assert_eq!(l.fail(t(5), 0, &c), Failure::LockedNow { until: t(65) });
    }

    #[test]
    fn success_resets_and_unlock_clears() {
        let c = cfg();
        let mut l = Lock::default();
        l.fail(t(0), 1, &c);
        l.fail(t(1), 2, &c);
        assert_eq!(l.succeed(t(2), &c), Ok(()));
        assert_eq!(l.state(t(2), &c), LockState::Open);
        for i in 0..3 {
            l.fail(t(10 + i), 10 + i as u32, &c);
        }
        assert!(matches!(l.state(t(20), &c), LockState::Locked { .. }));
        l.unlock();
        assert_eq!(l.state(t(20), &c), LockState::Open);
        assert!(l.is_idle(t(20), &c));
    }

    #[test]
    fn domains_are_four_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for factor in [Factor::First, Factor::Second] {
            for familiar in [true, false] {
                let d = Domain { factor, familiar };
                assert!(seen.insert(d.index()));
                assert_eq!(d.sibling().sibling(), d);
                assert_eq!(d.sibling().familiar, familiar);
            }
        }
    }

    /// A naive model: a list of failure times and lock intervals, recomputed from scratch.
    #[derive(Default)]
    struct Model {
        failures: Vec<(u64, u32)>,
        locked_until: u64,
        level: u32,
        last_failure: u64,
    }

    impl Model {
        fn fail(&mut self, now: u64, fp: u32, c: &LockoutConfig) -> &'static str {
            let reset = c.reset_after.as_millis();
            if self.locked_until != 0 && now >= self.locked_until {
                self.locked_until = 0;
                self.failures.clear();
            }
            if self.locked_until == 0
                && (!self.failures.is_empty() || self.level > 0)
                && now.saturating_sub(self.last_failure) >= reset
            {
                self.failures.clear();
                self.level = 0;
            }
            if now < self.locked_until {
                return "already";
            }
            let recent: Vec<u32> = self
                .failures
                .iter()
                .rev()
                .take(REMEMBERED_FAILURES)
                .map(|f| f.1)
                .collect();
            if fp != 0 && recent.contains(&fp) {
                return "repeated";
            }
            self.failures.push((now, fp));
            self.last_failure = now;
            if self.failures.len() >= usize::from(c.threshold) {
                let wait = c
                    .base_wait
                    .as_millis()
                    .saturating_mul(u64::from(c.multiplier).saturating_pow(self.level))
                    .min(c.max_wait.as_millis());
                self.locked_until = now + wait;
                self.level += 1;
                self.failures.clear();
                return "locked";
            }
            "counted"
        }
    }

    proptest! {
        /// The state machine agrees with the naive model on every failure outcome.
        #[test]
        fn agrees_with_model(steps in proptest::collection::vec((0u64..400_000, 0u32..5), 1..60)) {
            let c = cfg();
            let mut lock = Lock::default();
            let mut model = Model::default();
            let mut now = 1_000_000_000u64;
            for (dt, fp) in steps {
                now += dt;
                let got = match lock.fail(Timestamp::from_millis(now), fp, &c) {
                    Failure::Counted { .. } => "counted",
                    Failure::Repeated => "repeated",
                    Failure::LockedNow { .. } => "locked",
                    Failure::AlreadyLocked { .. } => "already",
                };
                prop_assert_eq!(got, model.fail(now, fp, &c));
                prop_assert_eq!(lock.locked_until(Timestamp::from_millis(now)).map(|t| t.as_millis()),
                    (now < model.locked_until).then_some(model.locked_until));
            }
        }
    }
}
