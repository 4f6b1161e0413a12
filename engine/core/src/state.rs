//! The state interface: records a backend keeps, and the core's rules applied to them.
//!
//! The pure part of a decision (policy, OTP arithmetic, method checks) computes *what* it
//! found, for example "the code matches step 55 of method m7"; the subject's record
//! decides *what happened*, for example "accepted, the watermark is now 56", in the same
//! atomic update. Checking and updating are never split: a replayed code, a parallel guess
//! or a spent challenge is caught inside the update that would have accepted it.
//!
//! A backend ([`StateStore`]) only keeps records ([`UserState`], [`Counter`],
//! [`ChallengeRecord`]) by key and applies a function to one of them atomically; the
//! operations decisions use ([`StateOps`]) and the transitions are here, once.
//! [`MemoryStore`] holds the records in sharded in-memory tables; a durable embedded store
//! or a shared store keeps their bytes (`record.rs`). `docs/design.md` states the contract.

use crate::arena::Slots;
use crate::id::{ChallengeId, MethodId, Subject};
use crate::lockout::{Domain, Factor, Failure, Lock, LockoutConfig};
use crate::policy::{PhoneSettings, Purpose};
use crate::secret::SecretDigest;
use crate::sync::{Mutex, lock};
use crate::table::{Idle, Table};
use crate::time::{Duration, Timestamp};
use crate::window::{Rate, SlidingWindow};

/// The replay state of one OTP method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtpState {
    /// The next value that may be accepted: one past the last accepted TOTP step or HOTP
    /// counter. Only ever raised.
    pub next: u64,
    /// Learned clock drift in TOTP steps (0 for HOTP).
    pub drift: i8,
}

impl OtpState {
    /// The last accepted step or counter, if any.
    pub fn watermark(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }
}

/// What the pure part found for a sign-in attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing to prove (a challenge is about to be sent, say): only ask whether locked.
    Check,
    /// A wrong proof, with the keyed fingerprint of what was presented (0 if none).
    Fail {
        /// Repeat detection; 0 always counts.
        fingerprint: u32,
    },
    /// An OTP code matched `value` (a TOTP step or HOTP counter) of `method`. Accepted only
    /// if `value` is at least the method's `next`; then `next = value + 1` and, for TOTP,
    /// the drift becomes `offset`.
    Otp {
        /// The method whose code matched.
        method: MethodId,
        /// The matched step or counter.
        value: u64,
        /// The TOTP offset from the current step (0 for HOTP).
        offset: i8,
        /// Fingerprint counted if the code turns out to be replayed.
        fingerprint: u32,
    },
    /// A security key's signature verified, with its signature counter `value`. Accepted
    /// if the counter moved past the last one seen (kept as the method's `next`), or the
    /// key keeps no counter (both 0); otherwise replayed: a counter that stands still or
    /// goes back means a cloned key or a replayed answer.
    KeyCounter {
        /// The security key.
        method: MethodId,
        /// Its signature counter.
        value: u32,
        /// Fingerprint counted if the counter did not move.
        fingerprint: u32,
    },
    /// A proof that spends nothing here was right (an app password, a redeemed challenge,
    /// a remembered device, a first factor on a single-factor network).
    Succeed,
}

/// What the store says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `Check`: not locked.
    Open,
    /// `Otp` or `Succeed`: accepted; counts in the domain are reset.
    Accepted,
    /// `Otp`: the step or counter is spent. Counted as a failure.
    Replayed(Failure),
    /// `Fail`: counted (or a repeat, or this locked the user).
    Failed(Failure),
    /// Locked: nothing was accepted or counted.
    Locked {
        /// When attempts are accepted again.
        until: Timestamp,
    },
}

/// What redeeming a challenge found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redeem {
    /// The code was right; the challenge is spent.
    Redeemed {
        /// The method the code was sent through.
        method: MethodId,
        /// The purpose it was issued for.
        purpose: Purpose,
    },
    /// The code was wrong; `spent` if that used up the challenge's tries.
    Wrong {
        /// Whether the challenge is now gone.
        spent: bool,
    },
    /// No such challenge for this subject, or it expired or was spent.
    Gone,
}

/// A challenge as stored: never the code, only its keyed digest.
#[derive(Clone, Copy, Debug)]
pub struct ChallengeRecord {
    /// Whose it is.
    pub subject: Subject,
    /// The method it was sent through.
    pub method: MethodId,
    /// What it may be used for.
    pub purpose: Purpose,
    /// Keyed digest of the code.
    pub digest: SecretDigest,
    /// When it stops being valid.
    pub expires: Timestamp,
    /// Wrong codes it still tolerates.
    pub attempts_left: u8,
    /// What the code is: a sent code, a push approval's number, or a security key's
    /// challenge.
    pub kind: ChallengeKind,
}

/// What a challenge's code is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    /// A code sent by SMS, voice or email.
    Code,
    /// A push approval's number, and where the approval stands.
    Push(crate::push::Approval),
    /// A security key ceremony's challenge, and which ceremony.
    Key(crate::webauthn::Ceremony),
    /// A ticket to the security-info pages (`ticket.rs`), whose code is its secret.
    Ticket,
}

impl ChallengeRecord {
    /// Redeems the challenge in `slot` for `subject` with the digest of the presented
    /// code: a right code spends it, a wrong one uses a try (the last try spends it too);
    /// someone else's, an expired or a spent challenge is [`Redeem::Gone`].
    pub fn redeem(
        slot: &mut Option<Self>,
        subject: Subject,
        digest: &SecretDigest,
        now: Timestamp,
    ) -> Redeem {
        let Some(c) = slot.as_mut() else {
            return Redeem::Gone;
        };
        // An approval's number is answered by the device, never typed as a code.
        if c.subject != subject || now >= c.expires || c.kind != ChallengeKind::Code {
            return Redeem::Gone;
        }
        if c.digest.ct_eq(digest) {
            let r = Redeem::Redeemed {
                method: c.method,
                purpose: c.purpose,
            };
            *slot = None;
            return r;
        }
        c.attempts_left = c.attempts_left.saturating_sub(1);
        let spent = c.attempts_left == 0;
        if spent {
            *slot = None;
        }
        Redeem::Wrong { spent }
    }

    /// The record's bytes (record format 1, `record.rs`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut p = crate::record::Put(out);
        p.u8(crate::record::FORMAT);
        match self.subject {
            Subject::Known(id) => {
                p.u8(0);
                p.u64(u64::from(id.0));
            }
            Subject::Unknown(h) => {
                p.u8(1);
                p.u64(h);
            }
        }
        p.u32(self.method.0);
        p.u8(purpose_code(self.purpose));
        p.bytes(&self.digest.to_bytes());
        p.u64(self.expires.as_millis());
        p.u8(self.attempts_left);
        match self.kind {
            ChallengeKind::Code => {}
            ChallengeKind::Push(push) => {
                p.u8(1);
                p.u8(push.state.code());
                p.u8(u8::from(push.familiar));
            }
            ChallengeKind::Key(key) => {
                p.u8(2);
                p.u8(u8::from(key.register));
                p.u8(u8::from(key.user_verification));
            }
            ChallengeKind::Ticket => p.u8(3),
        }
    }

    /// A challenge from its bytes, refusing anything [`encode`](Self::encode) would not
    /// have written.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::record::RecordError> {
        use crate::record::{Get, RecordError};
        let mut g = Get(bytes);
        if g.u8()? != crate::record::FORMAT {
            return Err(RecordError("unknown format"));
        }
        let subject = match (g.u8()?, g.u64()?) {
            (0, id) => Subject::Known(crate::id::UserId(
                u32::try_from(id).map_err(|_| RecordError("a user id past 32 bits"))?,
            )),
            (1, h) => Subject::Unknown(h),
            _ => return Err(RecordError("a subject is neither known nor unknown")),
        };
        let method = MethodId(g.u32()?);
        let purpose = purpose_of(g.u8()?)?;
        let digest = SecretDigest::from_bytes(g.array()?);
        let expires = Timestamp::from_millis(g.u64()?);
        let attempts_left = g.u8()?;
        // A sent code's record ends here; an approval's (1), a ceremony's (2) or a ticket's
        // (3) part follows.
        let kind = if g.is_empty() {
            ChallengeKind::Code
        } else {
            match g.u8()? {
                1 => {
                    let state = crate::push::ApprovalState::from_code(g.u8()?)
                        .ok_or(RecordError("an unknown approval state"))?;
                    ChallengeKind::Push(crate::push::Approval {
                        state,
                        familiar: g.flag()?,
                    })
                }
                2 => ChallengeKind::Key(crate::webauthn::Ceremony {
                    register: g.flag()?,
                    user_verification: g.flag()?,
                }),
                3 => ChallengeKind::Ticket,
                _ => return Err(RecordError("an unknown kind of challenge")),
            }
        };
        g.finish()?;
        Ok(Self {
            subject,
            method,
            purpose,
            digest,
            expires,
            attempts_left,
            kind,
        })
    }
}

fn purpose_code(p: Purpose) -> u8 {
    match p {
        Purpose::SignIn => 0,
        Purpose::PasswordReset => 1,
        Purpose::LegacyProtocol => 2,
    }
}

fn purpose_of(code: u8) -> Result<Purpose, crate::record::RecordError> {
    match code {
        0 => Ok(Purpose::SignIn),
        1 => Ok(Purpose::PasswordReset),
        2 => Ok(Purpose::LegacyProtocol),
        _ => Err(crate::record::RecordError("an unknown purpose")),
    }
}

/// Which phone-code budgets a send draws on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhoneKeys {
    /// The user.
    pub subject: Subject,
    /// Keyed hash of the normalised phone number.
    pub number: u64,
    /// Keyed hash of the tenant.
    pub tenant: u64,
}

/// Sizes of the store's tables, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreSizes {
    /// Slots allocated for known users' state (a segment at a time).
    pub users: usize,
    /// Unknown names being counted.
    pub unknown: usize,
    /// Sources (addresses, /64s) being counted.
    pub sources: usize,
    /// Phone numbers being counted.
    pub numbers: usize,
    /// Open challenges.
    pub challenges: usize,
    /// Entries evicted from bounded tables so far.
    pub evictions: u64,
}

/// Why the store could not do what was asked: it is unreachable, too slow, or refused
/// the operation. The operation either happened whole or not at all; the caller cannot
/// tell which, so it assumes the worst: a decision fails closed (`deny`/`internal_error`),
/// an administrator operation reports the failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the state store failed: {message}")]
pub struct StoreError {
    message: String,
    conflict: bool,
}

impl StoreError {
    /// The store failed, for the reason in `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            conflict: false,
        }
    }

    /// A shared log refused a batch because another node's change came first: nothing was
    /// kept, and the operation may be tried again once this node has caught up
    /// ([`ChangeLog::settle`](crate::directory::change::ChangeLog::settle)).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            conflict: true,
        }
    }

    /// Whether this is a [`conflict`](Self::conflict).
    pub fn is_conflict(&self) -> bool {
        self.conflict
    }

    /// Why, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Which budget a [`Counter`] record keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterKey {
    /// Failures from one IPv4 address or IPv6 /64.
    Source(u128),
    /// Codes sent to one phone number (keyed hash of the normalised number).
    Number(u64),
    /// Codes sent in one tenant (keyed hash of the tenant's name).
    Tenant(u64),
}

/// Which record: a subject's state, a budget, or a challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// A user's or an unknown name's [`UserState`].
    Subject(Subject),
    /// A [`Counter`].
    Counter(CounterKey),
    /// A challenge's [`ChallengeRecord`].
    Challenge(ChallengeId),
}

impl RecordKey {
    /// The key's bytes: a kind letter, then the id, big-endian (`u` a user id, `n` an
    /// unknown name's keyed hash, `s` a source, `p` a phone number, `t` a tenant, `c` a
    /// challenge). The same in every version and on every node.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Self::Subject(Subject::Known(id)) => {
                out.push(b'u');
                out.extend_from_slice(&id.0.to_be_bytes());
            }
            Self::Subject(Subject::Unknown(h)) => {
                out.push(b'n');
                out.extend_from_slice(&h.to_be_bytes());
            }
            Self::Counter(CounterKey::Source(k)) => {
                out.push(b's');
                out.extend_from_slice(&k.to_be_bytes());
            }
            Self::Counter(CounterKey::Number(k)) => {
                out.push(b'p');
                out.extend_from_slice(&k.to_be_bytes());
            }
            Self::Counter(CounterKey::Tenant(k)) => {
                out.push(b't');
                out.extend_from_slice(&k.to_be_bytes());
            }
            Self::Challenge(id) => {
                out.push(b'c');
                out.extend_from_slice(&id.0);
            }
        }
    }

    /// A key from the bytes [`encode`](Self::encode) wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::record::RecordError> {
        use crate::record::{Get, RecordError};
        let mut g = Get(bytes);
        let key = match g.u8()? {
            b'u' => Self::Subject(Subject::Known(crate::id::UserId(g.u32()?))),
            b'n' => Self::Subject(Subject::Unknown(g.u64()?)),
            b's' => Self::Counter(CounterKey::Source(u128::from_be_bytes(g.array()?))),
            b'p' => Self::Counter(CounterKey::Number(g.u64()?)),
            b't' => Self::Counter(CounterKey::Tenant(g.u64()?)),
            b'c' => Self::Challenge(ChallengeId(g.array()?)),
            _ => return Err(RecordError("an unknown kind of record key")),
        };
        g.finish()?;
        Ok(key)
    }
}

/// Hears every change [`MemoryStore`] makes to a record, with the record's new bytes
/// (empty: no record), inside the change: changes to one record are heard in the order
/// they were made, and before anyone can see the next. A durable backend writes them to
/// its log.
pub trait Journal: Send + Sync {
    /// Whether changes can be kept now; asked before each change, which an error refuses
    /// (so the decision fails closed) before anything is changed.
    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// `key`'s record is now `record`.
    fn changed(&self, key: RecordKey, record: &[u8]);
}

/// What a backend does: keep records by key, and apply a function to one record
/// atomically. Nothing else. The rules (what a wrong code counts, when a lock ends, how a
/// window slides, whether a challenge is spent) are the functions, which the core passes
/// in; they are the transitions of [`UserState`], [`Counter`] and [`ChallengeRecord`].
/// The operations a decision uses ([`StateOps`]) are built on these in the core, once,
/// for every backend.
///
/// An `update_*` call runs its function on the record as it is (a default record if there
/// is none), stores the result and returns the function's value, with no other change to
/// that record in between. The function is pure: it may be run more than once (a backend
/// that applies changes by compare-and-set on a version runs it again after a conflict),
/// and only the last run's result is kept. A record that the function leaves empty (no
/// state worth keeping) may be dropped. Calls on different keys are independent.
///
/// Every call can fail with a [`StoreError`]; a failed call has stored the function's
/// result whole or not at all, never part of it.
pub trait StateStore: Send + Sync {
    /// Runs `f` on `subject`'s record, `None` if it has none. Changes nothing.
    fn read_subject<R>(
        &self,
        subject: Subject,
        f: impl FnOnce(Option<&UserState>) -> R,
    ) -> Result<R, StoreError>;

    /// Applies `f` to `subject`'s record atomically.
    fn update_subject<R>(
        &self,
        subject: Subject,
        now: Timestamp,
        f: impl FnMut(&mut UserState) -> R,
    ) -> Result<R, StoreError>;

    /// Runs `f` on the counter `key`, `None` if it has none. Changes nothing.
    fn read_counter<R>(
        &self,
        key: CounterKey,
        f: impl FnOnce(Option<&Counter>) -> R,
    ) -> Result<R, StoreError>;

    /// Applies `f` to the counter `key` atomically.
    fn update_counter<R>(
        &self,
        key: CounterKey,
        now: Timestamp,
        f: impl FnMut(&mut Counter) -> R,
    ) -> Result<R, StoreError>;

    /// Applies `f` to challenge `id`'s slot atomically (`None`: no such challenge).
    fn update_challenge<R>(
        &self,
        id: ChallengeId,
        now: Timestamp,
        f: impl FnMut(&mut Option<ChallengeRecord>) -> R,
    ) -> Result<R, StoreError>;

    /// Table sizes, for metrics.
    fn sizes(&self) -> Result<StoreSizes, StoreError>;

    /// How many subjects (known users and unknown names) are locked out of any domain at
    /// `now` ([`UserState::any_locked`]). A scan of the whole store: for metrics now and
    /// then, not per request.
    fn locked_subjects(&self, now: Timestamp) -> Result<usize, StoreError>;
}

/// The operations decisions and administrators use, built on [`StateStore`]'s records and
/// the core's transitions. Implemented for every store and only here, so no backend can
/// bring its own version of a rule.
pub trait StateOps: StateStore {
    /// The replay state of `method` (a plain read).
    fn otp_state(&self, subject: Subject, method: MethodId) -> Result<OtpState, StoreError> {
        self.read_subject(subject, |u| {
            u.and_then(|u| u.otp(method)).unwrap_or_default()
        })
    }

    /// Applies `effect` to `subject` in lock domain `domain`, atomically: a lock in the
    /// domain or its sibling (the other factor at the same familiarity) refuses everything.
    /// [`Effect::Check`] only reads.
    fn sign_in(
        &self,
        subject: Subject,
        domain: Domain,
        effect: Effect,
        now: Timestamp,
        cfg: &LockoutConfig,
    ) -> Result<Answer, StoreError> {
        if effect == Effect::Check {
            return self.read_subject(subject, |u| {
                u.map_or(Answer::Open, |u| u.check(domain, now))
            });
        }
        self.update_subject(subject, now, |u| u.sign_in(domain, effect, now, cfg))
    }

    /// Counts one attempt against a source (IPv4 address or IPv6 /64) if that stays within
    /// `rate`; otherwise says how long to wait. Successful attempts are refunded with
    /// [`refund_source`](Self::refund_source), so only failures stay counted.
    fn reserve_source(
        &self,
        source: u128,
        now: Timestamp,
        rate: Rate,
    ) -> Result<Result<(), Duration>, StoreError> {
        self.update_counter(CounterKey::Source(source), now, |c| c.reserve(now, rate))
    }

    /// Takes back a reservation whose attempt did not fail.
    fn refund_source(&self, source: u128, now: Timestamp) -> Result<(), StoreError> {
        self.update_counter(CounterKey::Source(source), now, Counter::refund)
    }

    /// Draws one send from the user's, the number's and the tenant's budgets, all or none;
    /// otherwise says how long to wait. A store error part way gives back what was drawn
    /// (as far as the store lets it: a send not given back only makes the budget stricter).
    fn reserve_phone_send(
        &self,
        keys: PhoneKeys,
        now: Timestamp,
        s: &PhoneSettings,
    ) -> Result<Result<(), Duration>, StoreError> {
        let number = CounterKey::Number(keys.number);
        let tenant = CounterKey::Tenant(keys.tenant);
        let user = self.update_subject(keys.subject, now, |u| u.draw_send(now, s.per_user))?;
        let drawn_number = if user {
            match self.update_counter(number, now, |c| c.reserve(now, s.per_number)) {
                Ok(r) => r.is_ok(),
                Err(e) => {
                    let _ = self.update_subject(keys.subject, now, UserState::give_back_send);
                    return Err(e);
                }
            }
        } else {
            false
        };
        let drawn_tenant = if drawn_number {
            match self.update_counter(tenant, now, |c| c.reserve(now, s.per_tenant)) {
                Ok(r) => r.is_ok(),
                Err(e) => {
                    let _ = self.update_subject(keys.subject, now, UserState::give_back_send);
                    let _ = self.update_counter(number, now, Counter::refund);
                    return Err(e);
                }
            }
        } else {
            false
        };
        if drawn_tenant {
            return Ok(Ok(()));
        }
        // All or none: give back what was drawn.
        if user {
            self.update_subject(keys.subject, now, UserState::give_back_send)?;
        }
        if drawn_number {
            self.update_counter(number, now, Counter::refund)?;
        }
        // Refused: the wait is the longest of the budgets, so a send after it fits all
        // three (unless others spend them first).
        let user = self.read_subject(keys.subject, |u| {
            u.and_then(|u| u.send_wait(now, s.per_user))
        })?;
        let number = self.read_counter(number, |c| c.and_then(|c| c.wait(now, s.per_number)))?;
        let tenant = self.read_counter(tenant, |c| c.and_then(|c| c.wait(now, s.per_tenant)))?;
        Ok(Err(user
            .max(number)
            .max(tenant)
            .unwrap_or(Duration::from_secs(1))))
    }

    /// Whether phone methods are blocked for `subject` after failed verifications.
    fn phone_blocked(
        &self,
        subject: Subject,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.read_subject(subject, |u| u.and_then(|u| u.phone_blocked(now)))
    }

    /// Counts a failed phone-code verification; returns the block's end if this blocks.
    fn phone_failure(
        &self,
        subject: Subject,
        now: Timestamp,
        s: &PhoneSettings,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.update_subject(subject, now, |u| u.phone_failure(now, s))
    }

    /// Stores a new challenge.
    fn put_challenge(
        &self,
        id: ChallengeId,
        record: ChallengeRecord,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.update_challenge(id, now, |slot| *slot = Some(record))
    }

    /// Redeems a challenge with the digest of the presented code, atomically: a right code
    /// spends it, a wrong one uses a try.
    fn redeem_challenge(
        &self,
        id: ChallengeId,
        subject: Subject,
        digest: &SecretDigest,
        now: Timestamp,
    ) -> Result<Redeem, StoreError> {
        self.update_challenge(id, now, |slot| {
            ChallengeRecord::redeem(slot, subject, digest, now)
        })
    }

    /// Administrator: clears every lock domain and the phone block of `subject`.
    fn unlock(&self, subject: Subject) -> Result<(), StoreError> {
        self.update_subject(subject, Timestamp::EPOCH, UserState::unlock)
    }

    /// Administrator: forgets the learned clock drift of `method`.
    fn reset_drift(&self, subject: Subject, method: MethodId) -> Result<(), StoreError> {
        self.update_subject(subject, Timestamp::EPOCH, |u| u.reset_drift(method))
    }

    /// Raises `method`'s `next` to at least `next` (enrolment proves a first code).
    fn raise_otp(&self, subject: Subject, method: MethodId, next: u64) -> Result<(), StoreError> {
        self.update_subject(subject, Timestamp::EPOCH, |u| u.raise_otp(method, next))
    }

    /// Forgets `method` (removed), or everything about `subject` when `method` is `None`.
    fn forget(&self, subject: Subject, method: Option<MethodId>) -> Result<(), StoreError> {
        self.update_subject(subject, Timestamp::EPOCH, |u| match method {
            Some(m) => u.forget_otp(m),
            None => *u = UserState::default(),
        })
    }
}

impl<S: StateStore> StateOps for S {}

/// A sliding-window budget (a source's failures, a number's or a tenant's sends) as a
/// record: [`reserve`](Self::reserve), [`refund`](Self::refund), [`wait`](Self::wait).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter(SlidingWindow);

impl Counter {
    /// Counts one event if that stays within `rate`; otherwise how long to wait.
    pub fn reserve(&mut self, now: Timestamp, rate: Rate) -> Result<(), Duration> {
        self.0.try_add(now, rate, 1)
    }

    /// Takes back one event counted by [`reserve`](Self::reserve).
    pub fn refund(&mut self) {
        self.0.remove(1);
    }

    /// How long until `rate` has room for one more event, if it has none now.
    pub fn wait(&self, now: Timestamp, rate: Rate) -> Option<Duration> {
        self.0.wait(now, rate, 1)
    }

    /// The record's bytes (record format 1, `record.rs`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut p = crate::record::Put(out);
        p.u8(crate::record::FORMAT);
        self.0.put(&mut p);
    }

    /// A counter from its bytes, refusing anything [`encode`](Self::encode) would not
    /// have written.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::record::RecordError> {
        let mut g = crate::record::Get(bytes);
        if g.u8()? != crate::record::FORMAT {
            return Err(crate::record::RecordError("unknown format"));
        }
        let w = SlidingWindow::get(&mut g)?;
        g.finish()?;
        Ok(Self(w))
    }
}

/// Everything the store keeps for one subject (a user or an unknown name): replay state,
/// lock domains, phone budgets and block. Its transitions below are the rules; a backend
/// keeps it as an opaque record ([`encode`](Self::encode), format in `record.rs`) and
/// applies a transition to it atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserState {
    /// The first method's replay state, inline: most users have one method, and this
    /// saves a cache miss on every decision.
    otp_first: Option<(MethodId, OtpState)>,
    otp_more: Vec<(MethodId, OtpState)>,
    locks: Option<Box<[Lock; 4]>>,
    phone: Option<Box<PhoneState>>,
    push: Option<Box<PushState>>,
}

/// A user's push approvals: those waiting for a device, and the budget of approvals sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PushState {
    sent: SlidingWindow,
    pending: Vec<crate::push::PendingApproval>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PhoneState {
    sends: SlidingWindow,
    failures: SlidingWindow,
    blocked_until: Timestamp,
}

impl UserState {
    /// The record's bytes (record format 1, `record.rs`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        use crate::record::Put;
        let mut p = Put(out);
        p.u8(crate::record::FORMAT);
        let otp: Vec<(MethodId, OtpState)> = self
            .otp_first
            .into_iter()
            .chain(self.otp_more.iter().copied())
            .collect();
        p.u8(u8::try_from(otp.len()).unwrap_or(u8::MAX));
        for (m, s) in otp.iter().take(usize::from(u8::MAX)) {
            p.u32(m.0);
            p.u64(s.next);
            p.u8(s.drift.to_be_bytes()[0]);
        }
        match self.locks.as_deref() {
            None => p.u8(0),
            Some(locks) => {
                p.u8(1);
                for l in locks {
                    l.put(&mut p);
                }
            }
        }
        match self.phone.as_deref() {
            None => p.u8(0),
            Some(phone) => {
                p.u8(1);
                phone.sends.put(&mut p);
                phone.failures.put(&mut p);
                p.u64(phone.blocked_until.as_millis());
            }
        }
        // Only a record with push state has this part (flag 1), so every record written
        // before push approvals existed reads back the same.
        if let Some(push) = self.push.as_deref() {
            p.u8(1);
            push.sent.put(&mut p);
            let n = push.pending.len().min(crate::push::MAX_LISTED);
            p.u8(u8::try_from(n).unwrap_or(0));
            for a in push.pending.iter().take(n) {
                p.bytes(&a.id.0);
                p.u32(a.method.0);
                p.u64(a.issued.as_millis());
                p.u64(a.expires.as_millis());
                p.u8(purpose_code(a.purpose));
                p.str(&a.location);
            }
        }
    }

    /// A record from its bytes; an error for anything [`encode`](Self::encode) would not
    /// have written (another format, a duplicate method, bytes left over, ...).
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::record::RecordError> {
        use crate::record::{Get, RecordError};
        let mut g = Get(bytes);
        if g.u8()? != crate::record::FORMAT {
            return Err(RecordError("unknown format"));
        }
        let count = g.u8()?;
        if count > 64 {
            return Err(RecordError("too many OTP states"));
        }
        let mut otp: Vec<(MethodId, OtpState)> = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let method = MethodId(g.u32()?);
            let next = g.u64()?;
            let drift = i8::from_be_bytes([g.u8()?]);
            if otp.iter().any(|(m, _)| *m == method) {
                return Err(RecordError("a method's OTP state appears twice"));
            }
            otp.push((method, OtpState { next, drift }));
        }
        let locks = if g.flag()? {
            let mut locks = [Lock::default(); 4];
            for l in &mut locks {
                *l = Lock::get(&mut g)?;
            }
            Some(Box::new(locks))
        } else {
            None
        };
        let phone = if g.flag()? {
            Some(Box::new(PhoneState {
                sends: SlidingWindow::get(&mut g)?,
                failures: SlidingWindow::get(&mut g)?,
                blocked_until: Timestamp::from_millis(g.u64()?),
            }))
        } else {
            None
        };
        let push = if g.is_empty() {
            None
        } else {
            if g.u8()? != 1 {
                return Err(RecordError("a push part without its flag"));
            }
            let sent = SlidingWindow::get(&mut g)?;
            let n = usize::from(g.u8()?);
            if n > crate::push::MAX_LISTED {
                return Err(RecordError("too many pending approvals"));
            }
            let mut pending = Vec::with_capacity(n);
            for _ in 0..n {
                pending.push(crate::push::PendingApproval {
                    id: ChallengeId(g.array()?),
                    method: MethodId(g.u32()?),
                    issued: Timestamp::from_millis(g.u64()?),
                    expires: Timestamp::from_millis(g.u64()?),
                    purpose: purpose_of(g.u8()?)?,
                    location: g.str()?.into(),
                });
            }
            Some(Box::new(PushState { sent, pending }))
        };
        g.finish()?;
        let mut otp = otp.into_iter();
        Ok(Self {
            otp_first: otp.next(),
            otp_more: otp.collect(),
            locks,
            phone,
            push,
        })
    }

    /// Applies a sign-in's `effect` in `domain`: refused while the domain or its sibling
    /// is locked; otherwise counted, accepted (a one-time value at or past the method's
    /// watermark, which it then passes) or replayed (a spent value, counted as a failure).
    pub fn sign_in(
        &mut self,
        domain: Domain,
        effect: Effect,
        now: Timestamp,
        cfg: &LockoutConfig,
    ) -> Answer {
        if let Some(until) = self.locked(domain, now) {
            return Answer::Locked { until };
        }
        match effect {
            Effect::Check => Answer::Open,
            Effect::Fail { fingerprint } => {
                Answer::Failed(self.fail(domain, fingerprint, now, cfg))
            }
            Effect::Otp {
                method,
                value,
                offset,
                fingerprint,
            } => {
                let s = self.otp_mut(method);
                if value < s.next {
                    return Answer::Replayed(self.fail(domain, fingerprint, now, cfg));
                }
                s.next = value.saturating_add(1);
                s.drift = offset;
                self.succeed(domain, now, cfg);
                Answer::Accepted
            }
            Effect::KeyCounter {
                method,
                value,
                fingerprint,
            } => {
                let last = self.otp(method).map_or(0, |s| s.next);
                let value = u64::from(value);
                if (value, last) != (0, 0) {
                    if value <= last {
                        return Answer::Replayed(self.fail(domain, fingerprint, now, cfg));
                    }
                    self.otp_mut(method).next = value;
                }
                self.succeed(domain, now, cfg);
                Answer::Accepted
            }
            Effect::Succeed => {
                self.succeed(domain, now, cfg);
                Answer::Accepted
            }
        }
    }

    /// [`sign_in`](Self::sign_in) with [`Effect::Check`], which changes nothing.
    pub fn check(&self, domain: Domain, now: Timestamp) -> Answer {
        match self.locked(domain, now) {
            Some(until) => Answer::Locked { until },
            None => Answer::Open,
        }
    }

    /// Takes one send from the subject's phone budget, if it has room.
    pub fn draw_send(&mut self, now: Timestamp, rate: Rate) -> bool {
        let p = self.phone.get_or_insert_with(Box::default);
        p.sends.try_add(now, rate, 1).is_ok()
    }

    /// Gives back a send taken by [`draw_send`](Self::draw_send).
    pub fn give_back_send(&mut self) {
        if let Some(p) = self.phone.as_deref_mut() {
            p.sends.remove(1);
        }
    }

    /// How long until the phone budget has room for a send, if it has none now.
    pub fn send_wait(&self, now: Timestamp, rate: Rate) -> Option<Duration> {
        self.phone
            .as_deref()
            .and_then(|p| p.sends.wait(now, rate, 1))
    }

    /// Until when phone methods are blocked, if they are.
    pub fn phone_blocked(&self, now: Timestamp) -> Option<Timestamp> {
        self.phone
            .as_deref()
            .and_then(|p| (now < p.blocked_until).then_some(p.blocked_until))
    }

    /// Counts a failed sent code; blocks phone methods past the limit.
    pub fn phone_failure(&mut self, now: Timestamp, s: &PhoneSettings) -> Option<Timestamp> {
        let p = self.phone.get_or_insert_with(Box::default);
        p.failures.add(now, s.failures.per, 1);
        if p.failures.estimate(now, s.failures.per) >= u64::from(s.failures.max) {
            p.blocked_until = now + s.block_for;
            p.failures = SlidingWindow::default();
            Some(p.blocked_until)
        } else {
            None
        }
    }

    /// The approvals listed for the user's push devices (expired ones may be among them).
    pub fn pending_approvals(&self) -> &[crate::push::PendingApproval] {
        self.push.as_deref().map_or(&[], |p| p.pending.as_slice())
    }

    /// Lists `approval` for its device if the user has room for it: fewer than
    /// `max_pending` waiting (expired ones are dropped first), and a send left in the
    /// `per_user` window. Otherwise how long until there is room.
    pub fn draw_approval(
        &mut self,
        approval: &crate::push::PendingApproval,
        now: Timestamp,
        s: &crate::policy::PushSettings,
    ) -> Result<(), Duration> {
        let p = self.push.get_or_insert_with(Box::default);
        p.pending.retain(|a| now < a.expires);
        let max = usize::from(s.max_pending).min(crate::push::MAX_LISTED);
        if p.pending.len() >= max {
            let first = p.pending.iter().map(|a| a.expires).min().unwrap_or(now);
            return Err(first.since(now));
        }
        p.sent.try_add(now, s.per_user, 1)?;
        p.pending.push(approval.clone());
        Ok(())
    }

    /// Takes `approval` off the device's list (it was answered).
    pub fn forget_approval(&mut self, approval: ChallengeId) {
        if let Some(p) = self.push.as_deref_mut() {
            p.pending.retain(|a| a.id != approval);
        }
    }

    /// A push approval was reported as not started by the user: locks the second factor
    /// away from trusted networks (and so, as its sibling, the password there too) for the
    /// longest wait, however many failures were counted.
    pub fn report(&mut self, now: Timestamp, cfg: &LockoutConfig) {
        self.lock_mut(crate::push::reported_domain())
            .force(now, now + cfg.max_wait);
    }

    /// Clears every lock domain and the phone block.
    pub fn unlock(&mut self) {
        self.locks = None;
        if let Some(p) = self.phone.as_deref_mut() {
            p.blocked_until = Timestamp::EPOCH;
            p.failures = SlidingWindow::default();
        }
    }

    /// Forgets the learned drift of `method`.
    pub fn reset_drift(&mut self, method: MethodId) {
        if self.otp(method).is_some() {
            self.otp_mut(method).drift = 0;
        }
    }

    /// Raises `method`'s watermark to at least `next`.
    pub fn raise_otp(&mut self, method: MethodId, next: u64) {
        let s = self.otp_mut(method);
        s.next = s.next.max(next);
    }

    /// Whether any lock domain is locked at `now`.
    pub fn any_locked(&self, now: Timestamp) -> bool {
        self.locks
            .as_deref()
            .is_some_and(|locks| locks.iter().any(|l| l.locked_until(now).is_some()))
    }

    fn locked(&self, domain: Domain, now: Timestamp) -> Option<Timestamp> {
        let locks = self.locks.as_deref()?;
        let a = locks.get(domain.index()).and_then(|l| l.locked_until(now));
        let b = locks
            .get(domain.sibling().index())
            .and_then(|l| l.locked_until(now));
        a.max(b)
    }

    fn lock_mut(&mut self, domain: Domain) -> &mut Lock {
        let locks = self.locks.get_or_insert_with(Box::default);
        match locks.get_mut(domain.index()) {
            Some(l) => l,
            None => unreachable!("Domain::index is below 4"),
        }
    }

    fn fail(
        &mut self,
        domain: Domain,
        fingerprint: u32,
        now: Timestamp,
        cfg: &LockoutConfig,
    ) -> Failure {
        // The sibling's lock bars this domain too; `sign_in` checked it already.
        self.lock_mut(domain).fail(now, fingerprint, cfg)
    }

    /// Resets the counts of `domain`, which the caller found unlocked. A second factor
    /// proves more than a password, so its success also forgives the first factor's
    /// failures at the same familiarity; a password's success forgives only passwords.
    fn succeed(&mut self, domain: Domain, now: Timestamp, cfg: &LockoutConfig) {
        if let Some(locks) = self.locks.as_deref_mut() {
            let also = (domain.factor == Factor::Second).then(|| domain.sibling());
            for d in std::iter::once(domain).chain(also) {
                if let Some(l) = locks.get_mut(d.index()) {
                    let _ = l.succeed(now, cfg);
                }
            }
            if locks.iter().all(|l| *l == Lock::default()) {
                self.locks = None;
            }
        }
    }

    /// The replay state of `method`, if it has any.
    pub fn otp(&self, method: MethodId) -> Option<OtpState> {
        match self.otp_first {
            Some((m, s)) if m == method => Some(s),
            _ => self
                .otp_more
                .iter()
                .find(|(m, _)| *m == method)
                .map(|(_, s)| *s),
        }
    }

    fn otp_mut(&mut self, method: MethodId) -> &mut OtpState {
        if self.otp_first.is_none() {
            self.otp_first = Some((method, OtpState::default()));
        }
        if let Some((m, s)) = &mut self.otp_first
            && *m == method
        {
            return s;
        }
        let i = match self.otp_more.iter().position(|(m, _)| *m == method) {
            Some(i) => i,
            None => {
                self.otp_more.push((method, OtpState::default()));
                self.otp_more.len() - 1
            }
        };
        match self.otp_more.get_mut(i) {
            Some((_, s)) => s,
            None => unreachable!("index was just found or pushed"),
        }
    }

    /// Forgets `method`'s replay state (the method was removed).
    pub fn forget_otp(&mut self, method: MethodId) {
        if self.otp_first.is_some_and(|(m, _)| m == method) {
            self.otp_first = if self.otp_more.is_empty() {
                None
            } else {
                Some(self.otp_more.remove(0))
            };
        } else {
            self.otp_more.retain(|(m, _)| *m != method);
        }
    }
}

/// The longest `reset_after` the configuration accepts. A domain quiet for this long holds
/// nothing under any valid configuration, so idleness can be judged without one.
pub const MAX_RESET_AFTER: Duration = Duration::from_secs(86_400);

fn idle_locks(locks: &[Lock; 4], now: Timestamp) -> bool {
    let cfg = LockoutConfig {
        reset_after: MAX_RESET_AFTER,
        ..LockoutConfig::default()
    };
    locks.iter().all(|l| l.is_idle(now, &cfg))
}

impl UserState {
    /// Whether dropping the record at `at` would change no answer after it (a store may
    /// let it expire then).
    pub fn idle_at(&self, at: Timestamp) -> bool {
        self.is_idle(at)
    }
}

impl Counter {
    /// Whether dropping the record at `at` would change no answer after it.
    pub fn idle_at(&self, at: Timestamp) -> bool {
        self.is_idle(at)
    }
}

impl Idle for UserState {
    fn weight(&self, now: Timestamp) -> u64 {
        let locks = self
            .locks
            .as_deref()
            .map_or(0, |l| l.iter().map(|l| l.weight(now)).max().unwrap_or(0));
        let blocked = self.phone.as_deref().is_some_and(|p| p.blocked_until > now);
        locks.max(if blocked { 1 << 62 } else { 0 })
    }

    fn is_idle(&self, now: Timestamp) -> bool {
        self.otp_first.is_none()
            && self.locks.as_deref().is_none_or(|l| idle_locks(l, now))
            && self.phone.as_deref().is_none_or(|p| {
                p.blocked_until <= now
                    && p.sends.is_idle(now, Duration::from_secs(86_400))
                    && p.failures.is_idle(now, Duration::from_secs(86_400))
            })
            && self.push.as_deref().is_none_or(|p| {
                p.sent.is_idle(now, Duration::from_secs(86_400))
                    && p.pending.iter().all(|a| now >= a.expires)
            })
    }
}

impl Idle for Counter {
    fn is_idle(&self, now: Timestamp) -> bool {
        self.0.is_idle(now, Duration::from_secs(86_400))
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct ChallengeSlot(Option<ChallengeRecord>);

impl Idle for ChallengeSlot {
    fn is_idle(&self, now: Timestamp) -> bool {
        self.0.is_none_or(|c| now >= c.expires)
    }
}

/// Caps of the tables keyed by input an attacker chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Unknown user names counted at once.
    pub unknown_subjects: usize,
    /// Sources counted at once.
    pub sources: usize,
    /// Phone numbers counted at once.
    pub numbers: usize,
    /// Open challenges.
    pub challenges: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            unknown_subjects: 200_000,
            sources: 200_000,
            numbers: 200_000,
            challenges: 500_000,
        }
    }
}

/// The in-memory store: sharded tables, one mutex per shard.
pub struct MemoryStore {
    /// Known users' state, dense by user id: one slot and one lock per user, no probing.
    users: Slots<Mutex<UserState>>,
    unknown: Table<u64, UserState>,
    sources: Table<u128, Counter>,
    numbers: Table<u64, Counter>,
    tenants: Table<u64, Counter>,
    challenges: Table<ChallengeId, ChallengeSlot>,
    /// Hears every change, once set (a durable backend's log).
    journal: std::sync::OnceLock<Box<dyn Journal>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(StoreLimits::default())
    }
}

impl MemoryStore {
    /// An empty store with the given caps.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            users: Slots::new(),
            unknown: Table::new(Some(limits.unknown_subjects)),
            sources: Table::new(Some(limits.sources)),
            numbers: Table::new(Some(limits.numbers)),
            tenants: Table::new(None),
            challenges: Table::new(Some(limits.challenges)),
            journal: std::sync::OnceLock::new(),
        }
    }

    /// Sends every change from now on to `journal`, which can be set once; a second one
    /// is handed back.
    pub fn set_journal(&self, journal: Box<dyn Journal>) -> Result<(), Box<dyn Journal>> {
        self.journal.set(journal)
    }

    fn check_journal(&self) -> Result<(), StoreError> {
        self.journal.get().map_or(Ok(()), |j| j.check())
    }

    /// Runs `f` on `value`, telling the journal (if there is one) the record's new bytes
    /// if `f` changed them.
    fn journaled<V, R>(
        &self,
        key: RecordKey,
        value: &mut V,
        encode: fn(&V, &mut Vec<u8>),
        f: impl FnOnce(&mut V) -> R,
    ) -> R {
        let Some(journal) = self.journal.get() else {
            return f(value);
        };
        thread_local! {
            static BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BYTES.with(|bytes| {
            let mut bytes = bytes.borrow_mut();
            bytes.clear();
            encode(value, &mut bytes);
            let before = bytes.len();
            let r = f(value);
            encode(value, &mut bytes);
            let (old, new) = bytes.split_at(before);
            if old != new {
                journal.changed(key, new);
            }
            r
        })
    }

    /// Puts back a record read from a durable copy (`record` as its `encode` wrote it;
    /// empty: none), without telling the journal. For recovery, before serving.
    pub fn restore(
        &self,
        key: RecordKey,
        record: &[u8],
        now: Timestamp,
    ) -> Result<(), crate::record::RecordError> {
        match key {
            RecordKey::Subject(s) => {
                let state = if record.is_empty() {
                    UserState::default()
                } else {
                    UserState::decode(record)?
                };
                self.with_user(s, now, |u| *u = state);
            }
            RecordKey::Counter(k) => {
                let c = if record.is_empty() {
                    Counter::default()
                } else {
                    Counter::decode(record)?
                };
                match k {
                    CounterKey::Source(k) => self.sources.update(k, now, |x| *x = c),
                    CounterKey::Number(k) => self.numbers.update(k, now, |x| *x = c),
                    CounterKey::Tenant(k) => self.tenants.update(k, now, |x| *x = c),
                }
            }
            RecordKey::Challenge(id) => {
                let c = if record.is_empty() {
                    None
                } else {
                    Some(ChallengeRecord::decode(record)?)
                };
                self.challenges.update(id, now, |slot| slot.0 = c);
            }
        }
        Ok(())
    }

    /// Calls `f` with every record held and its bytes (a dump for a snapshot: each record
    /// as it is when it is reached, not all at one instant).
    pub fn for_each_record(&self, mut f: impl FnMut(RecordKey, &[u8])) {
        let mut bytes = Vec::new();
        let mut put = |key: RecordKey, encode: &dyn Fn(&mut Vec<u8>)| {
            bytes.clear();
            encode(&mut bytes);
            f(key, &bytes);
        };
        for (i, slot) in self.users.iter_indexed() {
            let u = lock(slot);
            if *u != UserState::default() {
                let key = RecordKey::Subject(Subject::Known(crate::id::UserId(i)));
                put(key, &|out| u.encode(out));
            }
        }
        self.unknown.for_each(|h, u| {
            put(RecordKey::Subject(Subject::Unknown(*h)), &|out| {
                u.encode(out)
            });
        });
        for (table, make) in [
            (&self.numbers, CounterKey::Number as fn(u64) -> CounterKey),
            (&self.tenants, CounterKey::Tenant),
        ] {
            table.for_each(|k, c| put(RecordKey::Counter(make(*k)), &|out| c.encode(out)));
        }
        self.sources.for_each(|k, c| {
            put(RecordKey::Counter(CounterKey::Source(*k)), &|out| {
                c.encode(out)
            });
        });
        self.challenges.for_each(|id, slot| {
            if let Some(c) = slot.0 {
                put(RecordKey::Challenge(*id), &|out| c.encode(out));
            }
        });
    }

    fn with_user<R>(
        &self,
        subject: Subject,
        now: Timestamp,
        f: impl FnOnce(&mut UserState) -> R,
    ) -> R {
        match subject {
            Subject::Known(id) => match self.users.get_or_alloc(id.0) {
                Some(slot) => f(&mut lock(slot)),
                // Ids past the arena cannot be issued by the directory; should one appear,
                // it is still counted, in the bounded table.
                None => self.unknown.update(u64::from(id.0) | 1 << 63, now, f),
            },
            Subject::Unknown(h) => self.unknown.update(h, now, f),
        }
    }

    fn read_user<R>(&self, subject: Subject, f: impl FnOnce(Option<&UserState>) -> R) -> R {
        match subject {
            Subject::Known(id) => match self.users.get(id.0) {
                Some(slot) => f(Some(&lock(slot))),
                None => self.unknown.read(&(u64::from(id.0) | 1 << 63), f),
            },
            Subject::Unknown(h) => self.unknown.read(&h, f),
        }
    }

    /// Drops idle entries from every table (run now and then by the server).
    pub fn sweep(&self, now: Timestamp) -> usize {
        self.unknown.sweep(now)
            + self.sources.sweep(now)
            + self.numbers.sweep(now)
            + self.tenants.sweep(now)
            + self.challenges.sweep(now)
    }
}

impl StateStore for MemoryStore {
    fn read_subject<R>(
        &self,
        subject: Subject,
        f: impl FnOnce(Option<&UserState>) -> R,
    ) -> Result<R, StoreError> {
        Ok(self.read_user(subject, f))
    }

    fn update_subject<R>(
        &self,
        subject: Subject,
        now: Timestamp,
        mut f: impl FnMut(&mut UserState) -> R,
    ) -> Result<R, StoreError> {
        self.check_journal()?;
        let key = RecordKey::Subject(subject);
        Ok(self.with_user(subject, now, |u| {
            self.journaled(key, u, UserState::encode, |u| f(u))
        }))
    }

    fn read_counter<R>(
        &self,
        key: CounterKey,
        f: impl FnOnce(Option<&Counter>) -> R,
    ) -> Result<R, StoreError> {
        Ok(match key {
            CounterKey::Source(k) => self.sources.read(&k, f),
            CounterKey::Number(k) => self.numbers.read(&k, f),
            CounterKey::Tenant(k) => self.tenants.read(&k, f),
        })
    }

    fn update_counter<R>(
        &self,
        key: CounterKey,
        now: Timestamp,
        mut f: impl FnMut(&mut Counter) -> R,
    ) -> Result<R, StoreError> {
        self.check_journal()?;
        let record = RecordKey::Counter(key);
        let mut f = |c: &mut Counter| self.journaled(record, c, Counter::encode, |c| f(c));
        Ok(match key {
            CounterKey::Source(k) => self.sources.update(k, now, &mut f),
            CounterKey::Number(k) => self.numbers.update(k, now, &mut f),
            CounterKey::Tenant(k) => self.tenants.update(k, now, &mut f),
        })
    }

    fn update_challenge<R>(
        &self,
        id: ChallengeId,
        now: Timestamp,
        mut f: impl FnMut(&mut Option<ChallengeRecord>) -> R,
    ) -> Result<R, StoreError> {
        fn encode(slot: &Option<ChallengeRecord>, out: &mut Vec<u8>) {
            if let Some(c) = slot {
                c.encode(out);
            }
        }
        self.check_journal()?;
        let key = RecordKey::Challenge(id);
        Ok(self.challenges.update(id, now, |slot| {
            self.journaled(key, &mut slot.0, encode, |c| f(c))
        }))
    }

    fn sizes(&self) -> Result<StoreSizes, StoreError> {
        Ok(StoreSizes {
            users: self.users.allocated_slots(),
            unknown: self.unknown.len(),
            sources: self.sources.len(),
            numbers: self.numbers.len(),
            challenges: self.challenges.len(),
            evictions: self.unknown.evictions()
                + self.sources.evictions()
                + self.numbers.evictions()
                + self.challenges.evictions(),
        })
    }

    fn locked_subjects(&self, now: Timestamp) -> Result<usize, StoreError> {
        let known = self
            .users
            .iter()
            .filter(|u| lock(u).any_locked(now))
            .count();
        Ok(known + self.unknown.count(|u| u.any_locked(now)))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::id::UserId;

    #[test]
    fn a_code_forgives_passwords_but_a_password_does_not_forgive_codes() {
        let store = MemoryStore::default();
        let cfg = LockoutConfig {
            threshold: 3,
            ..LockoutConfig::default()
        };
        let user = Subject::Known(UserId(1));
        let first = Domain {
            factor: Factor::First,
            familiar: true,
        };
        let second = Domain {
            factor: Factor::Second,
            familiar: true,
        };
        let t = Timestamp::from_secs(1_000);
        let fail = |d, fp| {
            store
                .sign_in(user, d, Effect::Fail { fingerprint: fp }, t, &cfg)
                .unwrap()
        };
        // Two bad codes, then a password alone succeeds: the third bad code still locks.
        fail(second, 1);
        fail(second, 2);
        assert_eq!(
            store
                .sign_in(user, first, Effect::Succeed, t, &cfg)
                .unwrap(),
            Answer::Accepted
        );
        assert!(matches!(
            fail(second, 3),
            Answer::Failed(Failure::LockedNow { .. })
        ));
        store.unlock(user).unwrap();
        // Two bad passwords, then a code succeeds: the count of passwords starts over.
        fail(first, 1);
        fail(first, 2);
        assert_eq!(
            store
                .sign_in(user, second, Effect::Succeed, t, &cfg)
                .unwrap(),
            Answer::Accepted
        );
        assert_eq!(
            fail(first, 3),
            Answer::Failed(Failure::Counted { remaining: 2 })
        );
    }
}
