//! Push approval with number matching: the rules, in one place.
//!
//! A push device is a key pair the authenticator app made (Ed25519). It is registered in
//! two steps, like an app's first code: an administrator starts an enrolment, which keeps
//! only the digest of a one-time token ([`Engine::enroll_push`]); the device then sends
//! its public key with the token, signed by the new key, which proves it holds the key
//! ([`Engine::pair_push`]).
//!
//! A sign-in that needs the second factor, for a user whose default method is push,
//! *issues an approval*: a challenge record (the same record a sent code has) whose code is
//! a two-digit number. The frontend shows the number; the device is shown where and when
//! someone signs in, never the number. The user types the number on the device, which
//! signs its answer (approval id, verdict, number) with its key:
//!
//! ```text
//!             issue                 device answers                frontend redeems
//!   (none) ─────────▶ pending ──┬─ approve, right number ─▶ approved ──▶ spent: allow, once
//!                               ├─ approve, wrong number ─▶ wrong_number  (a failure is counted)
//!                               ├─ deny ─────────────────▶ denied
//!                               ├─ report suspicious ────▶ reported      (the user is locked
//!                               │                                         away from trusted
//!                               │                                         networks)
//!                               └─ expiry ───────────────▶ gone
//! ```
//!
//! Every change of state is one atomic update of the approval's record, so an answer is
//! taken once, and an approval lets one sign-in through once, however many frontends or
//! nodes ask at the same moment. How many approvals a user can be sent is budgeted in the
//! user's own record (at most `max_pending` waiting at once, `per_user` over a sliding
//! window): a flood of prompts (MFA fatigue) is refused, not delivered.

use std::fmt;

use crate::directory::change::{Change, Op};
use crate::directory::{DirectoryError, Material, MethodKind};
use crate::engine::Engine;
use crate::id::{ChallengeId, MethodId, Subject};
use crate::lockout::{Domain, Factor};
use crate::policy::Purpose;
use crate::secret::{SecretDigest, SecretString};
use crate::state::{ChallengeKind, ChallengeRecord, Effect, StateOps, StateStore, StoreError};
use crate::time::{Duration, Timestamp};

/// An Ed25519 public key's length.
pub const KEY_LEN: usize = 32;
/// An Ed25519 signature's length.
pub const SIGNATURE_LEN: usize = 64;
/// A device sign-in nonce's length.
pub const NONCE_LEN: usize = 32;
/// How long an enrolment token can be used.
pub const ENROLMENT_TTL: Duration = Duration::from_secs(15 * 60);
/// At most this many approvals are shown to a device at once (the tenant's `max_pending`
/// is at most 5).
pub const MAX_LISTED: usize = 5;

/// A push device's key: while enrolling, the digest of its one-time token and when that
/// expires; once paired, the device's Ed25519 public key.
#[derive(Clone, Copy)]
pub enum DeviceKey {
    /// Waiting for the device.
    Enrolling {
        /// Keyed digest of the enrolment token.
        token: SecretDigest,
        /// When the token stops working.
        expires: Timestamp,
    },
    /// The device's public key.
    Paired([u8; KEY_LEN]),
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Enrolling { expires, .. } => write!(f, "Enrolling(until {expires:?})"),
            Self::Paired(_) => f.write_str("Paired"),
        }
    }
}

/// What the device answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The user approves and typed this number.
    Approve,
    /// The user refuses.
    Deny,
    /// The user did not start this sign-in: refuse, and lock the account away from
    /// trusted networks.
    Report,
}

impl Verdict {
    /// The verdict's byte in signed messages and on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::Approve => 1,
            Self::Deny => 2,
            Self::Report => 3,
        }
    }

    /// The verdict with that code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Approve),
            2 => Some(Self::Deny),
            3 => Some(Self::Report),
            _ => None,
        }
    }
}

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    /// Waiting for the device.
    Pending,
    /// Approved with the right number; the next redemption spends it.
    Approved,
    /// Refused by the user.
    Denied,
    /// Approved with a number other than the one shown.
    WrongNumber,
    /// Reported as not started by the user.
    Reported,
}

impl ApprovalState {
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Approved => 1,
            Self::Denied => 2,
            Self::WrongNumber => 3,
            Self::Reported => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Pending,
            1 => Self::Approved,
            2 => Self::Denied,
            3 => Self::WrongNumber,
            4 => Self::Reported,
            _ => return None,
        })
    }
}

/// The push part of a challenge record: the state, and whether the sign-in came from a
/// trusted network (the lock domain a wrong number counts in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Approval {
    /// Where it stands.
    pub state: ApprovalState,
    /// Whether the sign-in's address was in a trusted location.
    pub familiar: bool,
}

/// An issued approval, as the frontend is told it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushChallenge {
    /// The approval's id: the frontend redeems it with [`Proof::Push`](crate::Proof::Push).
    pub id: ChallengeId,
    /// The number to show on the sign-in screen (10-99).
    pub number: u8,
    /// The push device it was sent to.
    pub method: MethodId,
    /// When it expires.
    pub expires: Timestamp,
}

/// An approval waiting for a device, as the device is shown it: where and when, never
/// the number. Kept in the user's state record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingApproval {
    /// The approval's id.
    pub id: ChallengeId,
    /// The push device it was sent to.
    pub method: MethodId,
    /// When the sign-in asked.
    pub issued: Timestamp,
    /// When it expires.
    pub expires: Timestamp,
    /// What for.
    pub purpose: Purpose,
    /// The named location of the sign-in's address (`elsewhere` for none).
    pub location: Box<str>,
}

/// A push device that proved its key on this connection ([`Engine::device_sign_in`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRef {
    /// The tenant.
    pub tenant: String,
    /// The user name.
    pub user: String,
    /// The push method.
    pub method: MethodId,
}

/// A started enrolment: the method, pending until the device pairs, and its token.
#[derive(Clone, Debug)]
pub struct PushEnrollment {
    /// The pending method.
    pub method: MethodId,
    /// The one-time token the device presents (shown once).
    pub token: SecretString,
    /// When the token stops working.
    pub expires: Timestamp,
}

/// A device's request to pair ([`Engine::pair_push`]).
#[derive(Clone, Copy)]
pub struct Pairing<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The user.
    pub user: &'a str,
    /// The pending push method.
    pub method: MethodId,
    /// The enrolment token.
    pub token: &'a str,
    /// The device's Ed25519 public key.
    pub key: &'a [u8],
    /// Its signature of [`enrol_message`].
    pub signature: &'a [u8],
}

/// What a device's answer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// Approved: the sign-in may redeem it.
    Approved,
    /// Refused.
    Denied,
    /// The number was not the one shown: refused, and counted as a failed second factor.
    WrongNumber,
    /// Reported: refused, and the user is locked away from trusted networks.
    Reported,
}

/// Why a device request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// No paired push device of that name, or the signature is not its key's. One error
    /// for both, so the device API tells nothing about which accounts exist.
    #[error("not a paired push device, or a wrong signature")]
    NotPaired,
    /// The approval does not exist, is not this device's, expired, or was answered.
    #[error("the approval does not exist, expired or was answered")]
    Gone,
    /// The enrolment token is wrong or expired, or the method is not an enrolling push
    /// device.
    #[error("the enrolment is unknown, used or expired")]
    Enrolment,
    /// A key or signature of the wrong length, or a number outside 10-99.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The directory refused the change.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The state store failed: nothing was decided.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The bytes a device signs to pair: its key, under the enrolment token.
pub fn enrol_message(
    tenant: &str,
    user: &str,
    method: MethodId,
    token: &str,
    key: &[u8],
) -> Vec<u8> {
    message(
        b"enrol",
        &[
            tenant.as_bytes(),
            user.as_bytes(),
            &method.0.to_be_bytes(),
            token.as_bytes(),
            key,
        ],
    )
}

/// The bytes a device signs to prove its key on a connection.
pub fn sign_in_message(
    nonce: &[u8; NONCE_LEN],
    tenant: &str,
    user: &str,
    method: MethodId,
) -> Vec<u8> {
    message(
        b"sign-in",
        &[
            nonce,
            tenant.as_bytes(),
            user.as_bytes(),
            &method.0.to_be_bytes(),
        ],
    )
}

/// The bytes a device signs to answer an approval.
pub fn answer_message(approval: &ChallengeId, verdict: Verdict, number: u8) -> Vec<u8> {
    message(b"answer", &[&approval.0, &[verdict.code(), number]])
}

/// `portvakt-push-v1`, the purpose, then each part with its length first: no message of
/// one kind (or with other parts) can be read as another.
fn message(purpose: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = b"portvakt-push-v1\0".to_vec();
    for part in std::iter::once(purpose).chain(parts.iter().copied()) {
        m.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        m.extend_from_slice(part);
    }
    m
}

/// Whether `signature` is `key`'s Ed25519 signature of `message`.
pub fn verify(key: &[u8; KEY_LEN], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(message, signature)
        .is_ok()
}

impl<S: StateStore> Engine<S> {
    /// Starts enrolling a push device: a pending method and a one-time token, which the
    /// device presents with its new key ([`pair_push`](Self::pair_push)) within
    /// [`ENROLMENT_TTL`]. Counts toward the five apps, tokens and push devices.
    pub fn enroll_push(
        &self,
        tenant: &str,
        user: &str,
        now: Timestamp,
    ) -> Result<PushEnrollment, DirectoryError> {
        let mut raw = [0u8; 20];
        self.entropy.fill(&mut raw);
        let token = data_encoding::BASE32_NOPAD.encode(&raw);
        let expires = now + ENROLMENT_TTL;
        let key = DeviceKey::Enrolling {
            token: self.enrolment_digest(tenant, user, &token),
            expires,
        };
        let method = self.add_method(
            tenant,
            user,
            MethodKind::Push,
            false,
            Material::Push(key),
            |_, _| Ok(()),
        )?;
        Ok(PushEnrollment {
            method,
            token: SecretString::new(token),
            expires,
        })
    }

    fn enrolment_digest(&self, tenant: &str, user: &str, token: &str) -> SecretDigest {
        let ctx = [
            b"push-enrolment\0",
            tenant.as_bytes(),
            b"\0",
            user.as_bytes(),
        ]
        .concat();
        self.pepper.digest(&ctx, token.as_bytes())
    }

    /// Pairs a push device: `p.key` is its public key, `p.signature` its signature of
    /// [`enrol_message`], which proves it holds the key. The token works once.
    pub fn pair_push(&self, p: &Pairing<'_>, now: Timestamp) -> Result<(), PushError> {
        let Pairing {
            tenant,
            user,
            method,
            token,
            key,
            signature,
        } = *p;
        let key: [u8; KEY_LEN] = key
            .try_into()
            .map_err(|_| PushError::Malformed("a device key is 32 bytes"))?;
        let digest = self.enrolment_digest(tenant, user, token);
        let (_held, mut u) = self.user_mut(tenant, user).map_err(|e| match e {
            DirectoryError::UnknownUser => PushError::Enrolment,
            e => PushError::Directory(e),
        })?;
        let enrolling = u.method(method).and_then(|m| match m.material {
            Material::Push(DeviceKey::Enrolling { token, expires }) => Some((token, expires)),
            _ => None,
        });
        let Some((expected, expires)) = enrolling else {
            return Err(PushError::Enrolment);
        };
        if !expected.ct_eq(&digest) || now >= expires {
            return Err(PushError::Enrolment);
        }
        if !verify(
            &key,
            &enrol_message(tenant, user, method, token, &key),
            signature,
        ) {
            return Err(PushError::NotPaired);
        }
        let uid = u.id;
        let change = Change(Op::PairPush(uid, method, key));
        Ok(self.commit(&mut u, &[change])?)
    }

    /// The paired key of `tenant`/`user`'s push device `method`, if there is one.
    fn device_key(
        &self,
        tenant: &str,
        user: &str,
        method: MethodId,
    ) -> Option<(Subject, [u8; KEY_LEN])> {
        let u = self.directory.get(tenant, user)?;
        let m = u.method(method).filter(|m| m.active)?;
        match m.material {
            Material::Push(DeviceKey::Paired(key)) => Some((Subject::Known(u.id), key)),
            _ => None,
        }
    }

    /// Checks a device's signature of [`sign_in_message`] over a nonce the server gave it:
    /// the device then acts as `tenant`/`user`'s push device `method`.
    pub fn device_sign_in(
        &self,
        tenant: &str,
        user: &str,
        method: MethodId,
        nonce: &[u8; NONCE_LEN],
        signature: &[u8],
    ) -> Result<DeviceRef, PushError> {
        let (_, key) = self
            .device_key(tenant, user, method)
            .ok_or(PushError::NotPaired)?;
        if !verify(
            &key,
            &sign_in_message(nonce, tenant, user, method),
            signature,
        ) {
            return Err(PushError::NotPaired);
        }
        Ok(DeviceRef {
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            method,
        })
    }

    /// The approvals waiting for `device` at `now`, oldest first. A device removed since
    /// it signed in gets [`PushError::NotPaired`].
    pub fn pending_approvals(
        &self,
        device: &DeviceRef,
        now: Timestamp,
    ) -> Result<Vec<PendingApproval>, PushError> {
        let (subject, _) = self
            .device_key(&device.tenant, &device.user, device.method)
            .ok_or(PushError::NotPaired)?;
        Ok(self.store.read_subject(subject, |u| {
            u.map(|u| {
                u.pending_approvals()
                    .iter()
                    .filter(|p| p.method == device.method && now < p.expires)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
        })?)
    }

    /// Where approval `id` stands at `now` (`None`: no such approval, or it expired or
    /// was spent). Changes nothing: for a frontend waiting on the device.
    pub fn approval_state(
        &self,
        id: ChallengeId,
        now: Timestamp,
    ) -> Result<Option<ApprovalState>, StoreError> {
        self.store.update_challenge(id, now, |slot| {
            slot.as_ref()
                .filter(|c| now < c.expires)
                .and_then(|c| match c.kind {
                    ChallengeKind::Push(p) => Some(p.state),
                    _ => None,
                })
        })
    }

    /// Takes `device`'s answer to `approval`, signed over [`answer_message`]. The
    /// approval's record changes once: a second answer, a late one, or one for another
    /// device's approval is [`PushError::Gone`]. A wrong number counts as a failed second
    /// factor; a report locks the user away from trusted networks.
    pub fn answer_approval(
        &self,
        device: &DeviceRef,
        approval: ChallengeId,
        verdict: Verdict,
        number: u8,
        signature: &[u8],
        now: Timestamp,
    ) -> Result<Answered, PushError> {
        let (subject, key) = self
            .device_key(&device.tenant, &device.user, device.method)
            .ok_or(PushError::NotPaired)?;
        if !verify(&key, &answer_message(&approval, verdict, number), signature) {
            return Err(PushError::NotPaired);
        }
        let digest = number_digest(&self.pepper, &approval, number);
        let method = device.method;
        let taken = self.store.update_challenge(approval, now, |slot| {
            let c = slot.as_mut()?;
            let ChallengeKind::Push(push) = &mut c.kind else {
                return None;
            };
            if c.subject != subject
                || c.method != method
                || now >= c.expires
                || push.state != ApprovalState::Pending
            {
                return None;
            }
            push.state = match verdict {
                Verdict::Approve if c.digest.ct_eq(&digest) => ApprovalState::Approved,
                Verdict::Approve => ApprovalState::WrongNumber,
                Verdict::Deny => ApprovalState::Denied,
                Verdict::Report => ApprovalState::Reported,
            };
            Some((push.state, push.familiar))
        })?;
        let Some((state, familiar)) = taken else {
            return Err(PushError::Gone);
        };
        let policy = self.policy();
        let cfg = &policy.settings.lockout;
        let fingerprint = self.fingerprints.of(b"push-number", &digest.to_bytes());
        self.store.update_subject(subject, now, |u| {
            u.forget_approval(approval);
            match state {
                ApprovalState::WrongNumber => {
                    let domain = Domain {
                        factor: Factor::Second,
                        familiar,
                    };
                    let _ = u.sign_in(domain, Effect::Fail { fingerprint }, now, cfg);
                }
                ApprovalState::Reported => u.report(now, cfg),
                _ => {}
            }
        })?;
        Ok(match state {
            ApprovalState::Approved => Answered::Approved,
            ApprovalState::WrongNumber => Answered::WrongNumber,
            ApprovalState::Reported => Answered::Reported,
            _ => Answered::Denied,
        })
    }
}

/// The keyed digest of an approval's number: the store never holds the number itself.
pub(crate) fn number_digest(
    pepper: &crate::secret::Pepper,
    id: &ChallengeId,
    number: u8,
) -> SecretDigest {
    pepper.digest(&[b"approval".as_slice(), &id.0].concat(), &[number])
}

/// What redeeming an approval found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Redeemed {
    /// Approved, and now spent.
    Approved { method: MethodId, purpose: Purpose },
    /// Still waiting for the device.
    Pending,
    /// Answered with a refusal (now spent).
    Refused(ApprovalState),
    /// No such approval for this subject, expired or spent.
    Gone,
}

impl ChallengeRecord {
    /// Redeems the approval in `slot` for `subject`: an approved one is spent and lets one
    /// sign-in through; a refused one is spent and says why; a pending one stays.
    pub(crate) fn redeem_approval(
        slot: &mut Option<Self>,
        subject: Subject,
        now: Timestamp,
    ) -> Redeemed {
        let Some(c) = slot.as_ref() else {
            return Redeemed::Gone;
        };
        let ChallengeKind::Push(push) = c.kind else {
            return Redeemed::Gone;
        };
        if c.subject != subject || now >= c.expires {
            return Redeemed::Gone;
        }
        let r = match push.state {
            ApprovalState::Pending => return Redeemed::Pending,
            ApprovalState::Approved => Redeemed::Approved {
                method: c.method,
                purpose: c.purpose,
            },
            refused => Redeemed::Refused(refused),
        };
        *slot = None;
        r
    }
}

/// Why an approval was not issued.
pub(crate) enum NotIssued {
    /// Too many waiting or sent: wait this long.
    Limited(Duration),
    Store(StoreError),
}

impl From<StoreError> for NotIssued {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl<S: StateStore> crate::decide::Attempt<'_, S> {
    /// Issues an approval to push device `method`: drawn from the user's budgets, stored,
    /// and listed for the device, in that order (a failure part way leaves at most a
    /// budget drawn, which only makes it stricter).
    pub(crate) fn issue_approval(
        &mut self,
        method: MethodId,
        purpose: Purpose,
    ) -> Result<PushChallenge, NotIssued> {
        let engine = self.engine;
        let s = self.tenant.push;
        let now = self.now;
        let mut raw = [0u8; 16];
        engine.entropy.fill(&mut raw);
        let id = ChallengeId(raw);
        let number = u8::try_from(10 + engine.entropy.below(90)).unwrap_or(10);
        let expires = now + s.ttl;
        let pending = PendingApproval {
            id,
            method,
            issued: now,
            expires,
            purpose,
            location: self.location.as_str().into(),
        };
        let drawn = engine
            .store
            .update_subject(self.subject, now, |u| u.draw_approval(&pending, now, &s))?;
        drawn.map_err(NotIssued::Limited)?;
        let record = ChallengeRecord {
            subject: self.subject,
            method,
            purpose,
            digest: number_digest(&engine.pepper, &id, number),
            expires,
            attempts_left: 1,
            kind: ChallengeKind::Push(Approval {
                state: ApprovalState::Pending,
                familiar: self.familiar,
            }),
        };
        engine.store.put_challenge(id, record, now)?;
        Ok(PushChallenge {
            id,
            number,
            method,
            expires,
        })
    }

    /// Redeems approval `id` (hex) for this sign-in.
    pub(crate) fn redeem_push(&mut self, id: &str, purpose: Purpose) -> crate::Decision {
        use crate::decide::{Outcome, Reason};
        let Some(id) = ChallengeId::from_hex(id) else {
            return self.malformed();
        };
        if let Some(locked) = self.check(Factor::Second) {
            return locked;
        }
        let (subject, now) = (self.subject, self.now);
        let r = self.engine.store.update_challenge(id, now, |slot| {
            ChallengeRecord::redeem_approval(slot, subject, now)
        });
        match self.stored(r, Redeemed::Gone) {
            Redeemed::Approved {
                method,
                purpose: issued_for,
            } if self.known => {
                self.redeemed(method, issued_for, purpose, |k| k == MethodKind::Push)
            }
            Redeemed::Pending => {
                let mut d = self.decision(Outcome::Challenge, Reason::ApprovalPending);
                d.method = Some(MethodKind::Push);
                d
            }
            Redeemed::Refused(ApprovalState::WrongNumber) => {
                self.decision(Outcome::Deny, Reason::NumberMismatch)
            }
            Redeemed::Refused(ApprovalState::Reported) => {
                self.decision(Outcome::Deny, Reason::ApprovalReported)
            }
            Redeemed::Refused(_) => self.decision(Outcome::Deny, Reason::ApprovalDenied),
            // A phantom's approval is never answered; one approved anyway cannot be.
            Redeemed::Approved { .. } | Redeemed::Gone => {
                self.decision(Outcome::Deny, Reason::ChallengeInvalid)
            }
        }
    }
}

/// The lock a report sets: the longest wait, in the domain of untrusted networks.
pub(crate) fn reported_domain() -> Domain {
    Domain {
        factor: Factor::Second,
        familiar: false,
    }
}
