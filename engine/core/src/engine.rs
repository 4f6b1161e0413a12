//! The engine: policy, directory and state store together, and the one decision call.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use data_encoding::BASE64URL_NOPAD;

use crate::decide::{Attempt, Decision, MethodInfo, Outcome, Reason, Request, no_rule, nowhere};
use crate::directory::change::{Change, Op};
use crate::directory::{Directory, Material, Method, MethodKind, User};
use crate::id::{ChallengeId, MethodId, Subject, UserId};
use crate::lockout::Factor;
use crate::net::source_key;
use crate::otp::Code;
use crate::policy::{Policy, Purpose, Requirement};
use crate::secret::{Entropy, Pepper, SecretDigest, SecretString};
use crate::state::{ChallengeRecord, MemoryStore, PhoneKeys, StateOps, StateStore, StoreError};
use crate::time::Timestamp;

/// The decision engine. Cheap to share: wrap it in an `Arc` and call [`decide`](Self::decide)
/// from any number of threads.
pub struct Engine<S: StateStore = MemoryStore> {
    policy: ArcSwap<Policy>,
    pub(crate) directory: Directory,
    pub(crate) store: S,
    pub(crate) pepper: Pepper,
    pub(crate) fingerprints: crate::secret::Fingerprinter,
    pub(crate) entropy: Box<dyn Entropy>,
    /// The records unknown names are decided as.
    pub(crate) phantoms: crate::phantom::Phantoms,
    /// The stable keys of unknown names, phone numbers and tenants in the store.
    subjects: crate::secret::KeyedHash,
    pub(crate) next_user: std::sync::atomic::AtomicU32,
    /// Takes every directory change before it is applied.
    pub(crate) log: Box<dyn crate::directory::change::ChangeLog>,
    /// Held (shared) while a batch of directory changes is logged and applied, and
    /// (exclusively) while a snapshot cuts the directory: no change is half in a snapshot.
    pub(crate) gate: parking_lot::RwLock<()>,
    /// Store calls that failed, since start.
    store_errors: std::sync::atomic::AtomicU64,
    /// The replay fence, in milliseconds since the epoch (0: none): every TOTP step that
    /// could have been accepted at that instant counts as spent ([`raise_fence`]).
    ///
    /// [`raise_fence`]: Self::raise_fence
    fence: std::sync::atomic::AtomicU64,
    /// The position in a shared change log of the last batch the directory holds (0
    /// without one): [`apply_changes_at`](Self::apply_changes_at) raises it.
    position: std::sync::atomic::AtomicU64,
}

/// The user record an attempt is decided on: the user's own, or the name's phantom, each
/// held under its slot's read lock while the attempt runs.
enum Record<'a> {
    Known(crate::directory::UserRef<'a>),
    Phantom(parking_lot::RwLockReadGuard<'a, User>),
}

impl std::ops::Deref for Record<'_> {
    type Target = User;
    fn deref(&self) -> &User {
        match self {
            Self::Known(u) => u,
            Self::Phantom(p) => p,
        }
    }
}

/// A code to deliver by SMS, voice call or email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// How to send it.
    pub channel: MethodKind,
    /// The phone number (E.164) or email address.
    pub destination: String,
    /// The code (shown once; the store keeps only its digest).
    pub code: SecretString,
    /// When it stops being valid.
    pub expires: Timestamp,
}

/// The answer to a request to send a code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// `challenge`/`code_sent` when a code was sent (or, for an unknown user, would have
    /// been); otherwise why not.
    pub decision: Decision,
    /// The challenge the code answers.
    pub challenge: Option<ChallengeId>,
    /// What the delivery system must send. `None` for an unknown user: frontends must
    /// render that exactly as a sent code.
    pub delivery: Option<Delivery>,
}

/// Which code to send.
#[derive(Clone, Copy, Debug)]
pub struct SendRequest<'a> {
    /// The organisation.
    pub tenant: &'a str,
    /// The user name.
    pub user: &'a str,
    /// The client's address.
    pub ip: IpAddr,
    /// What the code will be used for.
    pub purpose: Purpose,
    /// The method; `None` picks the user's first eligible phone or email method.
    pub method: Option<MethodId>,
}

impl<S: StateStore> Engine<S> {
    /// An engine with `policy`, an empty directory and `store`. `pepper` keys every stored
    /// digest; `entropy` supplies codes, tokens and the keyed hashes' seeds.
    pub fn new(policy: Policy, store: S, pepper: Pepper, entropy: Box<dyn Entropy>) -> Self {
        Self::with_capacity(policy, store, pepper, entropy, 0)
    }

    /// Like [`new`](Self::new), with room for `users` users reserved up front, so a bulk
    /// load (a restore, an import) neither rehashes the index nor leaves the memory of its
    /// smaller predecessors with the allocator.
    pub fn with_capacity(
        policy: Policy,
        store: S,
        pepper: Pepper,
        entropy: Box<dyn Entropy>,
        users: usize,
    ) -> Self {
        // The directory's index lives in this process only; its hash needs no stability,
        // only unpredictable seeds.
        let mut dir_seed = [0u64; 8];
        for w in &mut dir_seed {
            let mut b = [0u8; 8];
            entropy.fill(&mut b);
            *w = u64::from_le_bytes(b);
        }
        Self {
            policy: ArcSwap::from_pointee(policy),
            directory: Directory::new(dir_seed, users),
            store,
            fingerprints: pepper.fingerprinter(),
            phantoms: crate::phantom::Phantoms::new(&pepper),
            subjects: pepper.keyed_hash(b"subjects"),
            pepper,
            entropy,
            next_user: 1.into(),
            log: Box::new(crate::directory::change::InMemoryOnly),
            gate: parking_lot::RwLock::new(()),
            store_errors: 0.into(),
            fence: 0.into(),
            position: 0.into(),
        }
    }

    /// The engine with `log` taking every directory change before it is applied: an
    /// administrator operation is acknowledged only after its changes are in the log.
    pub fn with_change_log(mut self, log: Box<dyn crate::directory::change::ChangeLog>) -> Self {
        self.log = log;
        self
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Replaces the policy atomically. Decisions already running finish on the old one.
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    /// The directory (read-only; change it through the administrator operations).
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Checks the engine's internal consistency, for fuzzing (see
    /// [`Directory::check_invariants`]).
    #[cfg(fuzzing)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let ids = self.next_user.load(std::sync::atomic::Ordering::Relaxed);
        self.directory.check_invariants(ids)
    }

    /// How many decisions and administrator operations the store failed, since start
    /// (each answered `deny`/`internal_error`, or refused).
    pub fn store_errors(&self) -> u64 {
        self.store_errors.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_store_error(&self, _e: &StoreError) {
        self.store_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Raises the replay fence to `at`: from now on, no TOTP step that could have been
    /// accepted at `at` (its window and largest drift included) is accepted, as if each
    /// user's watermark stood there. A store that may have lost acknowledged writes (a
    /// shared store that restarted or failed over) raises it to the moment it noticed, so
    /// a code accepted before the loss cannot be accepted again. Only ever raised.
    pub fn raise_fence(&self, at: Timestamp) {
        self.fence
            .fetch_max(at.as_millis(), std::sync::atomic::Ordering::AcqRel);
    }

    /// The replay fence (`None` if never raised).
    pub fn fence(&self) -> Option<Timestamp> {
        match self.fence.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            ms => Some(Timestamp::from_millis(ms)),
        }
    }

    /// After an operation failed with a [conflict](StoreError::is_conflict): waits,
    /// briefly, until the directory holds every change the shared log refused it for;
    /// whether it does (then the operation may be made again).
    pub fn settle_log(&self) -> bool {
        self.log.settle()
    }

    /// The position of the last shared change-log batch the directory holds: mark a
    /// snapshot with it.
    pub fn directory_position(&self) -> u64 {
        self.position.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn set_position(&self, at: u64) {
        self.position
            .fetch_max(at, std::sync::atomic::Ordering::AcqRel);
    }

    /// The state store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The keyed hash an unknown name is counted and phantomed under.
    pub(crate) fn unknown_hash(&self, tenant: &str, user: &str) -> u64 {
        let mut buf = [0u8; crate::name::MAX_NAME_LEN];
        // Names no user can have are hashed as given; they are unknown either way. (A
        // compared form never equals such a string's bytes, so the two cannot meet.)
        match crate::name::canonical(user, &mut buf) {
            Some(form) => self
                .subjects
                .of(&[b"name", tenant.as_bytes(), form.as_bytes()]),
            None => self
                .subjects
                .of(&[b"name", tenant.as_bytes(), user.as_bytes()]),
        }
    }

    /// A tag over `data`, keyed by the pepper and kept apart by `purpose`: every node
    /// sharing the pepper computes the same one, and nobody without it can. For state a
    /// frontend hands its caller to bring back unchanged (RADIUS's State).
    pub fn tag(&self, purpose: &[u8], data: &[u8]) -> SecretDigest {
        self.pepper
            .digest(&[b"frontend-tag:".as_slice(), purpose].concat(), data)
    }

    pub(crate) fn app_password_digest(&self, user: u32, normalised: &str) -> SecretDigest {
        self.pepper.digest(
            &[b"app-password".as_slice(), &user.to_le_bytes()].concat(),
            normalised.as_bytes(),
        )
    }

    pub(crate) fn answer_digest(&self, user: u32, answer: &str) -> SecretDigest {
        let folded: String = answer
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        self.pepper.digest(
            &[b"security-answer".as_slice(), &user.to_le_bytes()].concat(),
            folded.as_bytes(),
        )
    }

    fn device_digest(&self, user: UserId, device: u32, secret: &[u8]) -> SecretDigest {
        let ctx = [
            b"device".as_slice(),
            &user.0.to_le_bytes(),
            &device.to_le_bytes(),
        ]
        .concat();
        self.pepper.digest(&ctx, secret)
    }

    /// Whether `token` is a live remembered device of `user`.
    pub(crate) fn device_valid(&self, user: &User, token: &str, now: Timestamp) -> bool {
        // Tokens are 48 characters; anything much longer is not worth decoding.
        if token.len() > 64 {
            return false;
        }
        let Ok(raw) = BASE64URL_NOPAD.decode(token.as_bytes()) else {
            return false;
        };
        let Some((id, secret)) = raw.split_first_chunk::<4>() else {
            return false;
        };
        let id = u32::from_le_bytes(*id);
        let digest = self.device_digest(user.id, id, secret);
        user.extras
            .as_deref()
            .and_then(|e| e.devices.iter().find(|d| d.id == id))
            .is_some_and(|d| now < d.expires && d.digest.ct_eq(&digest))
    }

    /// Sets up an attempt (policy snapshot, place, user or phantom, first matching rule)
    /// and runs `f` on it; `None` if the tenant is unknown. The user's slot stays read-locked
    /// only while `f` runs.
    fn attempt<R>(
        &self,
        tenant: &str,
        user: &str,
        ip: IpAddr,
        purpose: Purpose,
        now: Timestamp,
        f: impl FnOnce(&mut Attempt<'_, S>) -> R,
    ) -> Option<R> {
        let policy = self.policy.load();
        let tenant_policy = policy.tenant(tenant)?;
        let place = tenant_policy.place(ip);
        let (subject, record) = match self.directory.get(tenant, user) {
            Some(u) => (Subject::Known(u.id), Record::Known(u)),
            None => {
                let h = self.unknown_hash(tenant, user);
                (
                    Subject::Unknown(h),
                    Record::Phantom(self.phantoms.get(h, tenant_policy.required_methods)),
                )
            }
        };
        let mut attempt = Attempt {
            engine: self,
            settings: &policy.settings,
            tenant: tenant_policy,
            rule: tenant_policy.rule_for(record.groups(), place, purpose),
            location: tenant_policy.place_name(place),
            familiar: tenant_policy.is_familiar(place),
            subject,
            user: &record,
            known: matches!(record, Record::Known(_)),
            now,
            counted_failure: false,
            no_password: false,
            store_error: Default::default(),
        };
        Some(f(&mut attempt))
    }

    /// Decides one sign-in attempt at `now`.
    pub fn decide(&self, req: &Request<'_>, now: Timestamp) -> Decision {
        let decided = self.attempt(req.tenant, req.user, req.ip, req.purpose, now, |a| {
            if a.rule.require == Requirement::Block {
                return (a.decision(Outcome::Deny, Reason::PolicyBlock), None);
            }
            // One unfamiliar address may only fail so often, over all users. The
            // reservation is taken before the attempt is evaluated, so parallel guesses
            // cannot overshoot; it is refunded unless a failure was counted.
            let source = (!a.familiar).then(|| source_key(req.ip));
            if let Some(source) = source {
                let reserved = self
                    .store
                    .reserve_source(source, now, a.settings.source_failures);
                match reserved {
                    Ok(Ok(())) => {}
                    Ok(Err(wait)) => {
                        let mut d = a.decision(Outcome::Locked, Reason::SourceLimited);
                        d.retry_after = Some(wait);
                        return (d, None);
                    }
                    Err(e) => return (a.store_failed(e), None),
                }
            }
            let decision = a.run(req);
            // The one place a failed store call becomes the answer: whatever the attempt
            // found after it, it is `deny`/`internal_error`, and nothing is remembered.
            if let Some(e) = a.store_error.take() {
                if a.single_factor_without_store(req) {
                    self.count_store_error(&e);
                    return (
                        a.decision(Outcome::Allow, Reason::AllowedWithoutStore),
                        None,
                    );
                }
                return (a.store_failed(e), None);
            }
            if let Some(source) = source
                && !a.counted_failure
            {
                // A refund that fails leaves the attempt counted against the source:
                // stricter, not looser, so the answer stands (and the failure is counted).
                if let Err(e) = self.store.refund_source(source, now) {
                    self.count_store_error(&e);
                }
            }
            let ttl = a.tenant.trusted_device_ttl;
            let remember = req.remember_device
                && decision.outcome == Outcome::Allow
                && decision.reason == Reason::SecondFactorVerified
                && a.rule.trusted_devices
                && ttl > crate::time::Duration::ZERO;
            (decision, remember.then_some(ttl))
        });
        let Some((mut decision, remember)) = decided else {
            return Decision::new(Outcome::Deny, Reason::UnknownTenant, no_rule(), nowhere());
        };
        // The user's slot is no longer read-locked here, so it can be written.
        if let Some(ttl) = remember {
            decision.device_token = self.remember_device(req.tenant, req.user, now, now + ttl, 4);
        }
        decision
    }

    fn remember_device(
        &self,
        tenant: &str,
        user: &str,
        now: Timestamp,
        expires: Timestamp,
        attempts: u32,
    ) -> Option<crate::decide::DeviceToken> {
        let (_gate, mut u) = self.user_mut(tenant, user).ok()?;
        let user_id = u.id;
        let id = u
            .extras
            .as_deref()
            .map_or(0, |e| e.next_id)
            .checked_add(1)?;
        let mut raw = [0u8; 36];
        raw[..4].copy_from_slice(&id.to_le_bytes());
        self.entropy.fill(&mut raw[4..]);
        let digest = self.device_digest(user_id, id, &raw[4..]);
        let change = Change(Op::RememberDevice {
            user: user_id,
            id,
            digest,
            expires,
            now,
        });
        // Not remembered (the log failed, counted there): the sign-in stands, without a
        // token. A shared log that refused the batch because another node's change came
        // first is caught up with, and the device remembered on the user as it is then.
        match self.commit(&mut u, &[change]) {
            Ok(()) => {}
            Err(crate::directory::DirectoryError::Store(e)) if e.is_conflict() && attempts > 1 => {
                drop((_gate, u));
                zeroize::Zeroize::zeroize(&mut raw);
                self.log.settle();
                return self.remember_device(tenant, user, now, expires, attempts - 1);
            }
            Err(_) => return None,
        }
        let token = SecretString::new(BASE64URL_NOPAD.encode(&raw));
        zeroize::Zeroize::zeroize(&mut raw);
        Some(crate::decide::DeviceToken { token, expires })
    }

    /// Sends a code by SMS, voice or email, subject to the tenant's rate limits.
    pub fn send_code(&self, req: &SendRequest<'_>, now: Timestamp) -> Sent {
        let none = |decision| Sent {
            decision,
            challenge: None,
            delivery: None,
        };
        let sent = self.attempt(req.tenant, req.user, req.ip, req.purpose, now, |a| {
            if a.rule.require == Requirement::Block {
                return none(a.decision(Outcome::Deny, Reason::PolicyBlock));
            }
            if let Some(locked) = a.check(Factor::Second) {
                return none(match a.store_error.take() {
                    Some(e) => a.store_failed(e),
                    None => locked,
                });
            }
            // The phantom picks its method exactly as a user does, so an unknown name is
            // refused where a user without that method is, and "sent" where a user with it
            // is sent a code.
            let u = a.user;
            let method = match req.method {
                Some(id) => u.method(id).filter(|m| m.active),
                None => u.eligible(req.purpose).find(|m| m.kind.is_sent()),
            };
            // Asked for by id, a push device is sent an approval, and a security key is asked
            // for with the browser's options, instead of a code.
            let asked = |m: &&Method| matches!(m.kind, MethodKind::Push | MethodKind::SecurityKey);
            if let Some(m) = method.filter(asked) {
                if !m.kind.serves(req.purpose) {
                    return none(a.decision(Outcome::Deny, Reason::MethodNotAllowed));
                }
                let mut d = a.decision(Outcome::Challenge, Reason::SecondFactorRequired);
                d.methods = u.eligible(req.purpose).map(MethodInfo::of).collect();
                let d = match m.kind {
                    MethodKind::Push => a.push(m.id, req.purpose, d),
                    _ => a.key_challenge(req.purpose, d),
                };
                return match a.store_error.take() {
                    Some(e) => none(a.store_failed(e)),
                    // A key recorded by a frontend's own stack has nothing to ask with.
                    None if d.reason == Reason::SecondFactorRequired => {
                        none(a.decision(Outcome::Deny, Reason::MethodNotAllowed))
                    }
                    None => none(d),
                };
            }
            let Some(method) = method.filter(|m| m.kind.is_sent() && m.kind.serves(req.purpose))
            else {
                return none(a.decision(Outcome::Deny, Reason::MethodNotAllowed));
            };
            let destination = match &method.material {
                // The phantom's code is made, stored and budgeted like a real one, so a wrong
                // code, a spent challenge and throttling all answer alike; it is never sent,
                // and its number budget is its own.
                _ if !a.known => format!("phantom:{:?}", a.subject),
                Material::Phone { number } => number.to_string(),
                Material::Email { address } => address.to_string(),
                _ => return none(a.decision(Outcome::Deny, Reason::InternalError)),
            };
            let (channel, method) = (method.kind, method.id);
            match self.issue(
                a.tenant,
                a.subject,
                channel,
                method,
                req.purpose,
                destination,
                now,
            ) {
                Ok((id, delivery)) => {
                    let mut d = a.decision(Outcome::Challenge, Reason::CodeSent);
                    d.method = Some(channel);
                    Sent {
                        decision: d,
                        challenge: Some(id),
                        delivery: a.known.then_some(delivery),
                    }
                }
                Err(NotIssued::Refused(reason, wait)) => {
                    none(a.throttled(reason, wait, req.purpose))
                }
                Err(NotIssued::Store(e)) => none(a.store_failed(e)),
            }
        });
        sent.unwrap_or_else(|| {
            none(Decision::new(
                Outcome::Deny,
                Reason::UnknownTenant,
                no_rule(),
                nowhere(),
            ))
        })
    }

    /// Draws on the send budgets, makes a code, stores its digest and returns the delivery.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn issue(
        &self,
        tenant: &crate::policy::TenantPolicy,
        subject: Subject,
        channel: MethodKind,
        method: MethodId,
        purpose: Purpose,
        destination: String,
        now: Timestamp,
    ) -> Result<(ChallengeId, Delivery), NotIssued> {
        if let Some(until) = self.store.phone_blocked(subject, now)? {
            return Err(NotIssued::Refused(Reason::PhoneBlocked, until.since(now)));
        }
        let keys = PhoneKeys {
            subject,
            number: self.subjects.of(&[b"destination", destination.as_bytes()]),
            tenant: self
                .subjects
                .of(&[b"tenant", tenant.name.as_str().as_bytes()]),
        };
        let s = &tenant.phone;
        self.store
            .reserve_phone_send(keys, now, s)?
            .map_err(|w| NotIssued::Refused(Reason::SendRateLimited, w))?;
        let digits = crate::otp::Digits::new(s.digits).unwrap_or(crate::otp::Digits::SIX);
        let value = self.entropy.below(10u64.pow(u32::from(digits.get())));
        let code = Code::from_value(u32::try_from(value).unwrap_or(0), digits);
        let mut id = [0u8; 16];
        self.entropy.fill(&mut id);
        let id = ChallengeId(id);
        let record = ChallengeRecord {
            subject,
            method,
            purpose,
            digest: code_digest(&self.pepper, &id, code),
            expires: now + s.code_ttl,
            attempts_left: s.max_attempts,
            kind: crate::state::ChallengeKind::Code,
        };
        self.store.put_challenge(id, record, now)?;
        let text = format!(
            "{:0width$}",
            code.value(),
            width = usize::from(digits.get())
        );
        Ok((
            id,
            Delivery {
                channel,
                destination,
                code: SecretString::new(text),
                expires: record.expires,
            },
        ))
    }
}

/// Why no code was made.
pub(crate) enum NotIssued {
    /// Blocked or over a budget: the reason, and how long to wait.
    Refused(Reason, crate::time::Duration),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for NotIssued {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The keyed digest under which a challenge's code is stored and compared.
pub(crate) fn code_digest(pepper: &Pepper, id: &ChallengeId, code: Code) -> SecretDigest {
    let mut v = [0u8; 5];
    v[0] = code.digits();
    v[1..].copy_from_slice(&code.value().to_le_bytes());
    pepper.digest(&[b"challenge".as_slice(), &id.0].concat(), &v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SeededEntropy;

    fn engine(entropy: u64) -> Engine {
        let policy = crate::config::load(include_str!("../../../examples/kommune.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        Engine::new(
            policy,
            MemoryStore::default(),
            Pepper::new([3; 32]),
            Box::new(SeededEntropy::new(entropy)),
        )
    }

    #[test]
    fn keys_come_from_the_secret_and_the_changes_not_the_process() {
        // Two engines (two nodes, or one before and after a restart) with the same secret
        // and different randomness, given the same changes in the same order.
        let (a, b) = (engine(1), engine(2));
        for e in [&a, &b] {
            for user in ["kari", "ola"] {
                e.add_user("kommune", user, &[], false).unwrap();
            }
        }
        for user in ["kari", "Ola"] {
            assert_eq!(
                a.subject_of("kommune", user).unwrap(),
                b.subject_of("kommune", user).unwrap()
            );
        }
        // Unknown names, in their compared form.
        assert_eq!(
            a.unknown_hash("kommune", "nobody"),
            b.unknown_hash("kommune", "nobody")
        );
        assert_eq!(
            a.unknown_hash("kommune", "Åse"),
            b.unknown_hash("kommune", "åse")
        );
        assert_ne!(
            a.unknown_hash("kommune", "nobody"),
            a.unknown_hash("other", "nobody")
        );
        // Fingerprints of wrong inputs, kept with the lockout state.
        assert_eq!(
            a.fingerprints.of(b"totp", b"123456"),
            b.fingerprints.of(b"totp", b"123456")
        );
        // Another secret, other keys.
        let other = Engine::new(
            crate::config::load(include_str!("../../../examples/kommune.toml")).unwrap(),
            MemoryStore::default(),
            Pepper::new([4; 32]),
            Box::new(SeededEntropy::new(1)),
        );
        assert_ne!(
            a.unknown_hash("kommune", "nobody"),
            other.unknown_hash("kommune", "nobody")
        );
    }
}
