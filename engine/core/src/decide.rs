//! One sign-in attempt in, one decision out.
//!
//! [`Engine::decide`] reads the policy snapshot, places the address, finds the user and the
//! first matching rule, checks the proof with pure code, and then commits what it found
//! through the state store in one atomic operation per key. Every decision names the rule
//! and location that made it and a machine-readable reason.
//!
//! An unknown user is decided as a *phantom*: a user in no group with one authenticator
//! app whose code never matches. The phantom's wrong code costs the same HMACs and the same
//! store operation as a real user's, and its failures are counted (in a bounded table) so
//! that it locks like a real user.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use crate::directory::{Material, Method, MethodKind, User};
use crate::engine::{Engine, code_digest};
use crate::id::{ChallengeId, MethodId, Subject};
use crate::lockout::{Domain, Factor, Failure};
use crate::name::Name;
use crate::otp::{self, Code, TotpWindow};
use crate::policy::{Purpose, Requirement, Rule, Settings, TenantPolicy, elsewhere};
use crate::secret::SecretString;
use crate::state::{Answer, Effect, Redeem, StateOps, StateStore, StoreError, UserState};
use crate::time::{Duration, Timestamp};

/// What the frontend's own password check (the first factor) found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstFactor {
    /// The password was right.
    Ok,
    /// The password was wrong.
    Failed,
    /// No password was given (passwordless sign-in, password reset, app password).
    None,
}

/// A proof of the second factor (or, for legacy protocols, an app password).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Proof<'a> {
    /// A code from an authenticator app.
    Totp(&'a str),
    /// A code from a hardware token, optionally with the token's next code to resynchronise.
    Hotp {
        /// The code.
        code: &'a str,
        /// The following code, when resynchronising a token that ran ahead.
        next: Option<&'a str>,
    },
    /// A code from an authenticator app or a hardware token, whichever the user has: for
    /// frontends whose users type a code without saying where it came from (RADIUS).
    Code(&'a str),
    /// A code sent by SMS, voice or email, with the challenge it answers.
    Sent {
        /// The challenge id as issued (32 hex digits).
        challenge: &'a str,
        /// The code.
        code: &'a str,
    },
    /// An app password (legacy protocols only).
    AppPassword(&'a str),
    /// Answers to the security questions, in order (password reset only).
    SecurityAnswers(&'a [&'a str]),
    /// A push approval's id as issued (32 hex digits): redeemed once the device approved.
    Push(&'a str),
    /// A security key's answer: the browser's `PublicKeyCredential` JSON, unchanged.
    SecurityKey(&'a str),
}

impl fmt::Debug for Proof<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Totp(_) => "Totp([redacted])",
            Self::Hotp { .. } => "Hotp([redacted])",
            Self::Code(_) => "Code([redacted])",
            Self::Sent { .. } => "Sent([redacted])",
            Self::AppPassword(_) => "AppPassword([redacted])",
            Self::SecurityAnswers(_) => "SecurityAnswers([redacted])",
            Self::Push(_) => "Push([redacted])",
            Self::SecurityKey(_) => "SecurityKey([redacted])",
        })
    }
}

/// One sign-in attempt. Its `Debug` output shows neither the proof nor the device token.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The organisation.
    pub tenant: &'a str,
    /// The user name.
    pub user: &'a str,
    /// The client's address, as the frontend saw it.
    pub ip: IpAddr,
    /// Why the user signs in.
    pub purpose: Purpose,
    /// What the frontend's password check found.
    pub first_factor: FirstFactor,
    /// A proof, if the user gave one.
    pub proof: Option<Proof<'a>>,
    /// A remembered-device token, if the client holds one.
    pub device_token: Option<&'a str>,
    /// Whether to remember this device after a successful second factor.
    pub remember_device: bool,
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("tenant", &self.tenant)
            .field("user", &self.user)
            .field("ip", &self.ip)
            .field("purpose", &self.purpose)
            .field("first_factor", &self.first_factor)
            .field("proof", &self.proof)
            .field("device_token", &self.device_token.map(|_| "[redacted]"))
            .field("remember_device", &self.remember_device)
            .finish()
    }
}

/// The answer's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Let the user in.
    Allow,
    /// Refuse.
    Deny,
    /// A second factor is required: offer `methods`.
    Challenge,
    /// Too many failures: try again after `retry_after`.
    Locked,
    /// The user must register security info first.
    Register,
    /// Phone codes are rate-limited: use the app or a code instead.
    Throttled,
}

impl Outcome {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Challenge => "challenge",
            Self::Locked => "locked",
            Self::Register => "register",
            Self::Throttled => "throttled",
        }
    }
}

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $code:literal,)*) => {
        /// Why a decision was made: a machine-readable code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The stable snake_case code.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $code,)*
                }
            }

            /// The reason with that code.
            pub fn from_code(code: &str) -> Option<Self> {
                match code {
                    $($code => Some(Reason::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    /// The rule allows a single factor here and the password was right.
    SingleFactorAllowed = "single_factor_allowed",
    /// A second factor was proved.
    SecondFactorVerified = "second_factor_verified",
    /// A remembered device stood in for the second factor.
    TrustedDevice = "trusted_device",
    /// An app password was right (legacy protocol).
    AppPasswordVerified = "app_password_verified",
    /// A proof for password reset was right.
    ResetVerified = "reset_verified",
    /// The matching rule blocks this attempt.
    PolicyBlock = "policy_block",
    /// The frontend's password check failed.
    FirstFactorFailed = "first_factor_failed",
    /// No password was checked, and this purpose needs one.
    FirstFactorRequired = "first_factor_required",
    /// The account is passwordless; a password was used.
    PasswordNotAllowed = "password_not_allowed",
    /// The code was wrong.
    InvalidCode = "invalid_code",
    /// The code was right but already used.
    ReplayedCode = "replayed_code",
    /// The app password was wrong.
    InvalidAppPassword = "invalid_app_password",
    /// The security answers were wrong.
    InvalidAnswers = "invalid_answers",
    /// The proof is not well-formed (a code with letters, say).
    MalformedProof = "malformed_proof",
    /// The proof's method may not be used for this purpose.
    MethodNotAllowed = "method_not_allowed",
    /// The challenge does not exist, expired, or was spent.
    ChallengeInvalid = "challenge_invalid",
    /// A legacy client needs an app password here.
    AppPasswordRequired = "app_password_required",
    /// The user has no method for this purpose and cannot register one here.
    NoEligibleMethod = "no_eligible_method",
    /// No tenant of that name.
    UnknownTenant = "unknown_tenant",
    /// Something went wrong inside; the attempt is refused.
    InternalError = "internal_error",
    /// The state store could not be reached, and the tenant lets single-factor sign-ins
    /// on trusted networks through without it (`when_store_fails`).
    AllowedWithoutStore = "allowed_without_store",
    /// A second factor is required.
    SecondFactorRequired = "second_factor_required",
    /// A code was sent.
    CodeSent = "code_sent",
    /// Too many failures for this user.
    TooManyFailures = "too_many_failures",
    /// Too many failures from this address.
    SourceLimited = "source_limited",
    /// The user has no methods yet.
    NoMethods = "no_methods",
    /// The organisation requires more registered methods.
    MoreMethodsRequired = "more_methods_required",
    /// Phone or email codes were sent too often.
    SendRateLimited = "send_rate_limited",
    /// Too many failed phone codes; phone methods are paused.
    PhoneBlocked = "phone_blocked",
    /// A push approval was sent to the user's device: show its number.
    ApprovalSent = "approval_sent",
    /// The push approval has not been answered yet.
    ApprovalPending = "approval_pending",
    /// The user refused the push approval.
    ApprovalDenied = "approval_denied",
    /// The user approved with a number other than the one shown.
    NumberMismatch = "number_mismatch",
    /// The user reported the push approval as not theirs.
    ApprovalReported = "approval_reported",
    /// Too many push approvals are waiting or were sent.
    ApprovalsLimited = "approvals_limited",
    /// A security key is asked for: hand the options to the browser.
    KeyRequested = "security_key_requested",
    /// The security key's answer did not verify (wrong origin or relying party, no user
    /// presence or verification, an unknown key, a bad signature).
    InvalidAssertion = "invalid_assertion",
    /// The security key's signature counter did not move on: a cloned key or a replay.
    CounterRegressed = "counter_regressed",
}

impl MethodInfo {
    pub(crate) fn of(m: &Method) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            hint: m.hint(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A method as offered in a challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodInfo {
    /// Its id, to ask for a code to be sent.
    pub id: MethodId,
    /// Its kind.
    pub kind: MethodKind,
    /// A hint a person recognises it by ("•••• 78").
    pub hint: Option<String>,
}

/// A remembered-device token, issued after a successful second factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceToken {
    /// The token to hand to the client (shown once).
    pub token: SecretString,
    /// When it stops standing in for the second factor.
    pub expires: Timestamp,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub outcome: Outcome,
    /// Why.
    pub reason: Reason,
    /// The rule that decided.
    pub rule: Name,
    /// The named location of the address (`elsewhere` for none).
    pub location: Name,
    /// For challenge: the methods to offer, the default first.
    pub methods: Vec<MethodInfo>,
    /// For locked and throttled: how long to wait.
    pub retry_after: Option<Duration>,
    /// The kind of method that proved the user, when one did.
    pub method: Option<MethodKind>,
    /// A new remembered-device token, when one was asked for and granted.
    pub device_token: Option<DeviceToken>,
    /// For challenge: the push approval issued, whose number the sign-in screen shows.
    pub approval: Option<crate::push::PushChallenge>,
    /// For challenge: the options for the browser's `navigator.credentials.get()` (JSON),
    /// when a security key is asked for.
    pub security_key: Option<String>,
}

impl Decision {
    pub(crate) fn new(outcome: Outcome, reason: Reason, rule: Name, location: Name) -> Self {
        Self {
            outcome,
            reason,
            rule,
            location,
            methods: Vec::new(),
            retry_after: None,
            method: None,
            device_token: None,
            approval: None,
            security_key: None,
        }
    }
}

/// The rule name reported when no tenant policy applies.
pub(crate) fn no_rule() -> Name {
    static NONE: std::sync::OnceLock<Name> = std::sync::OnceLock::new();
    *NONE.get_or_init(|| Name::builtin("none"))
}

/// The methods whose codes a [`Proof::Code`] may be: an authenticator app's or a hardware
/// token's.
const OTP_KINDS: &[MethodKind] = &[MethodKind::AuthenticatorApp, MethodKind::HardwareToken];

/// The pieces one decision works with.
pub(crate) struct Attempt<'e, S: StateStore> {
    pub(crate) engine: &'e Engine<S>,
    pub(crate) settings: &'e Settings,
    pub(crate) tenant: &'e TenantPolicy,
    pub(crate) rule: &'e Rule,
    pub(crate) location: Name,
    pub(crate) familiar: bool,
    pub(crate) subject: Subject,
    /// The user's record, or for an unknown name its phantom (see `phantom.rs`).
    pub(crate) user: &'e User,
    /// Whether `user` is a real user; a phantom is never let in by a secret.
    pub(crate) known: bool,
    pub(crate) now: Timestamp,
    /// Set when a failure was counted against the user (and so against the source).
    pub(crate) counted_failure: bool,
    /// The sign-in came without a password: decided as a passwordless one would be.
    pub(crate) no_password: bool,
    /// The first store call that failed. Once set, whatever the attempt goes on to find,
    /// its answer is `deny`/`internal_error` (see `Engine::decide`).
    pub(crate) store_error: std::cell::OnceCell<StoreError>,
}

impl<S: StateStore> Attempt<'_, S> {
    pub(crate) fn decision(&self, outcome: Outcome, reason: Reason) -> Decision {
        Decision::new(outcome, reason, self.rule.name, self.location)
    }

    fn domain(&self, factor: Factor) -> Domain {
        Domain {
            factor,
            familiar: self.familiar,
        }
    }

    fn locked(&self, until: Timestamp) -> Decision {
        let mut d = self.decision(Outcome::Locked, Reason::TooManyFailures);
        d.retry_after = Some(until.since(self.now).max(Duration::from_secs(1)));
        d
    }

    /// A store call's value; if it failed, `fallback` (chosen to end the attempt the
    /// shortest way) with the error kept, which makes the answer `deny`/`internal_error`.
    pub(crate) fn stored<T>(&self, r: Result<T, StoreError>, fallback: T) -> T {
        r.unwrap_or_else(|e| {
            let _ = self.store_error.set(e);
            fallback
        })
    }

    /// The answer when the store failed: `deny`/`internal_error`, never anything the
    /// attempt may have found without the store.
    pub(crate) fn store_failed(&self, e: StoreError) -> Decision {
        self.engine.count_store_error(&e);
        self.decision(Outcome::Deny, Reason::InternalError)
    }

    pub(crate) fn commit(&mut self, factor: Factor, effect: Effect) -> Answer {
        let r = self.engine.store.sign_in(
            self.subject,
            self.domain(factor),
            effect,
            self.now,
            &self.settings.lockout,
        );
        self.stored(r, Answer::Locked { until: self.now })
    }

    /// Whether the subject is locked for `factor` right now.
    pub(crate) fn check(&mut self, factor: Factor) -> Option<Decision> {
        match self.commit(factor, Effect::Check) {
            Answer::Locked { until } => Some(self.locked(until)),
            _ => None,
        }
    }

    /// Counts a failure and answers `reason`, or locked.
    pub(crate) fn fail(&mut self, factor: Factor, fingerprint: u32, reason: Reason) -> Decision {
        let answer = self.commit(factor, Effect::Fail { fingerprint });
        self.after_failure(answer, reason)
    }

    pub(crate) fn after_failure(&mut self, answer: Answer, reason: Reason) -> Decision {
        match answer {
            Answer::Locked { until } | Answer::Failed(Failure::AlreadyLocked { until }) => {
                self.locked(until)
            }
            Answer::Replayed(f) | Answer::Failed(f) => {
                self.counted_failure = !matches!(f, Failure::Repeated);
                match f {
                    Failure::LockedNow { until } => self.locked(until),
                    _ => self.decision(Outcome::Deny, reason),
                }
            }
            // A failure never answers these; decide deny rather than trust it.
            Answer::Open | Answer::Accepted => self.decision(Outcome::Deny, Reason::InternalError),
        }
    }

    /// Records a success and answers `reason`, or locked.
    pub(crate) fn succeed(
        &mut self,
        factor: Factor,
        reason: Reason,
        method: Option<MethodKind>,
    ) -> Decision {
        match self.commit(factor, Effect::Succeed) {
            Answer::Accepted => {
                let mut d = self.decision(Outcome::Allow, reason);
                d.method = method;
                d
            }
            Answer::Locked { until } => self.locked(until),
            _ => self.decision(Outcome::Deny, Reason::InternalError),
        }
    }

    pub(crate) fn fingerprint(&self, what: &[u8], value: &[u8]) -> u32 {
        self.engine.fingerprints.of(what, value)
    }

    /// Runs the purpose's flow. The caller has answered `block` rules already.
    pub(crate) fn run(&mut self, req: &Request<'_>) -> Decision {
        match req.purpose {
            Purpose::SignIn => self.sign_in(req),
            Purpose::PasswordReset => self.password_reset(req),
            Purpose::LegacyProtocol => self.legacy(req),
        }
    }

    /// What the rule requires of this user: a user's own opt-out of two-step verification
    /// counts only where the tenant does not require it; a sign-in without a password
    /// (a passwordless account's, or anyone's who gave none) always proves a method.
    /// Whether the tenant's `when_store_fails = "allow-single-factor"` lets this attempt
    /// through without the store: a known user with every required method registered,
    /// signing in on a trusted network with the password alone, which the rule allows.
    pub(crate) fn single_factor_without_store(&self, req: &Request<'_>) -> bool {
        self.tenant.single_factor_without_store
            && self.known
            && self.familiar
            && req.purpose == Purpose::SignIn
            && req.proof.is_none()
            && req.first_factor == crate::FirstFactor::Ok
            && !self.no_password
            && self.requirement() == Requirement::SingleFactor
            && self.registration_missing().is_none()
    }

    fn requirement(&self) -> Requirement {
        let user = self.user;
        let no_password = user.passwordless || self.no_password;
        match self.rule.require {
            Requirement::SecondFactor
                if !self.tenant.require_mfa && user.mfa_opt_out && !no_password =>
            {
                Requirement::SingleFactor
            }
            Requirement::SingleFactor if no_password => Requirement::SecondFactor,
            r => r,
        }
    }

    fn registration_missing(&self) -> Option<Reason> {
        let user = self.user;
        let active = user.active_methods();
        let required = usize::from(self.tenant.required_methods);
        if active == 0 && (required > 0 || self.requirement() == Requirement::SecondFactor) {
            Some(Reason::NoMethods)
        } else if active < required {
            Some(Reason::MoreMethodsRequired)
        } else {
            None
        }
    }

    fn sign_in(&mut self, req: &Request<'_>) -> Decision {
        match (self.user.passwordless, req.first_factor) {
            // A failed password is a failed password, for a passwordless account too: to
            // answer otherwise would tell anyone without a credential that the name exists
            // and is passwordless. (Only a password the frontend accepted says more.)
            (_, FirstFactor::Failed) => {
                return self.fail(Factor::First, 0, Reason::FirstFactorFailed);
            }
            (true, FirstFactor::Ok) => {
                return self.decision(Outcome::Deny, Reason::PasswordNotAllowed);
            }
            // Without a password, everyone goes the passwordless way up to the proof, so a
            // request without any credential cannot tell account kinds apart; only a proved
            // method then learns that a password account needs its password.
            (_, FirstFactor::None) => self.no_password = true,
            (false, FirstFactor::Ok) => {}
        }
        // Nobody of this name is known, yet the frontend vouches for the password: whoever
        // it is has registered no security info here. (With a proof, the phantom answers
        // instead, exactly as a wrong code does.)
        if !self.known && !self.no_password && req.proof.is_none() {
            if let Some(locked) = self.check(Factor::Second) {
                return locked;
            }
            return self.decision(Outcome::Register, Reason::NoMethods);
        }
        if let Some(reason) = self.registration_missing() {
            if let Some(locked) = self.check(Factor::Second) {
                return locked;
            }
            return self.decision(Outcome::Register, reason);
        }
        let d = match self.requirement() {
            Requirement::SingleFactor => {
                self.succeed(Factor::First, Reason::SingleFactorAllowed, None)
            }
            Requirement::SecondFactor => self.second_factor(req, Purpose::SignIn),
            Requirement::Block => self.decision(Outcome::Deny, Reason::PolicyBlock),
        };
        if d.outcome == Outcome::Allow && self.no_password && !self.user.passwordless {
            return self.decision(Outcome::Deny, Reason::FirstFactorRequired);
        }
        d
    }

    fn password_reset(&mut self, req: &Request<'_>) -> Decision {
        if self.user.eligible(Purpose::PasswordReset).next().is_none() {
            if let Some(locked) = self.check(Factor::Second) {
                return locked;
            }
            return self.decision(Outcome::Deny, Reason::NoEligibleMethod);
        }
        let d = self.second_factor(req, Purpose::PasswordReset);
        // A passwordless account has no password to reset. Only someone who proved one of
        // its methods learns that; everyone else sees the flow anyone sees.
        if d.outcome == Outcome::Allow && self.user.passwordless {
            return self.decision(Outcome::Deny, Reason::PasswordNotAllowed);
        }
        d
    }

    fn legacy(&mut self, req: &Request<'_>) -> Decision {
        match req.proof {
            Some(Proof::AppPassword(secret)) => self.app_password(secret),
            Some(_) => self.decision(Outcome::Deny, Reason::MethodNotAllowed),
            None => match req.first_factor {
                FirstFactor::Failed => self.fail(Factor::First, 0, Reason::FirstFactorFailed),
                FirstFactor::None => self.decision(Outcome::Deny, Reason::FirstFactorRequired),
                _ if self.user.passwordless => {
                    self.decision(Outcome::Deny, Reason::PasswordNotAllowed)
                }
                FirstFactor::Ok => match self.requirement() {
                    Requirement::SingleFactor => {
                        self.succeed(Factor::First, Reason::SingleFactorAllowed, None)
                    }
                    _ => self.decision(Outcome::Deny, Reason::AppPasswordRequired),
                },
            },
        }
    }

    fn app_password(&mut self, secret: &str) -> Decision {
        if !self.tenant.app_passwords {
            return self.decision(Outcome::Deny, Reason::MethodNotAllowed);
        }
        let normalised: String = secret
            .chars()
            .filter(|c| *c != ' ')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let digest = self.engine.app_password_digest(self.user.id.0, &normalised);
        let mut matched = false;
        if let Some(extras) = self.user.extras.as_deref() {
            for a in &extras.app_passwords {
                // Compare with every one, without stopping early.
                matched |= a.digest.ct_eq(&digest);
            }
        }
        if matched {
            self.succeed(Factor::First, Reason::AppPasswordVerified, None)
        } else {
            let fp = self.fingerprint(b"app-password", normalised.as_bytes());
            self.fail(Factor::First, fp, Reason::InvalidAppPassword)
        }
    }

    pub(crate) fn allowed(&self, purpose: Purpose) -> Reason {
        match purpose {
            Purpose::PasswordReset => Reason::ResetVerified,
            _ => Reason::SecondFactorVerified,
        }
    }

    fn second_factor(&mut self, req: &Request<'_>, purpose: Purpose) -> Decision {
        if purpose == Purpose::SignIn && self.device_trusted(req) {
            return self.succeed(Factor::Second, Reason::TrustedDevice, None);
        }
        let Some(proof) = req.proof else {
            if let Some(locked) = self.check(Factor::Second) {
                return locked;
            }
            let mut d = self.decision(Outcome::Challenge, Reason::SecondFactorRequired);
            d.methods = self.user.eligible(purpose).map(MethodInfo::of).collect();
            // A user whose default is the app's notification is sent one at once; one whose
            // default is a security key is asked for it.
            match self.user.eligible(purpose).next() {
                Some(m) if m.kind == MethodKind::Push => return self.push(m.id, purpose, d),
                Some(m) if m.kind == MethodKind::SecurityKey => {
                    return self.key_challenge(purpose, d);
                }
                _ => return d,
            }
        };
        match proof {
            Proof::Totp(code) => self.otp(code, None, purpose, &[MethodKind::AuthenticatorApp]),
            Proof::Hotp { code, next } => {
                self.otp(code, next, purpose, &[MethodKind::HardwareToken])
            }
            Proof::Code(code) => self.otp(code, None, purpose, OTP_KINDS),
            Proof::Sent { challenge, code } => self.sent_code(challenge, code, purpose),
            Proof::SecurityAnswers(answers) if purpose == Purpose::PasswordReset => {
                self.answers(answers)
            }
            Proof::SecurityAnswers(_) | Proof::AppPassword(_) => {
                self.decision(Outcome::Deny, Reason::MethodNotAllowed)
            }
            Proof::Push(approval) => self.redeem_push(approval, purpose),
            Proof::SecurityKey(json) => self.security_key(json, purpose),
        }
    }

    /// Issues a push approval to `method` and answers `challenge` with it, or throttled.
    pub(crate) fn push(
        &mut self,
        method: MethodId,
        purpose: Purpose,
        challenge: Decision,
    ) -> Decision {
        match self.issue_approval(method, purpose) {
            Ok(approval) => {
                let mut d = challenge;
                d.reason = Reason::ApprovalSent;
                d.method = Some(MethodKind::Push);
                d.approval = Some(approval);
                d
            }
            Err(crate::push::NotIssued::Limited(wait)) => {
                self.throttled(Reason::ApprovalsLimited, wait, purpose)
            }
            Err(crate::push::NotIssued::Store(e)) => {
                let _ = self.store_error.set(e);
                self.decision(Outcome::Deny, Reason::InternalError)
            }
        }
    }

    fn device_trusted(&self, req: &Request<'_>) -> bool {
        let Some(token) = req.device_token else {
            return false;
        };
        if !self.rule.trusted_devices || self.tenant.trusted_device_ttl == Duration::ZERO {
            return false;
        }
        self.engine.device_valid(self.user, token, self.now)
    }

    pub(crate) fn malformed(&mut self) -> Decision {
        self.check(Factor::Second)
            .unwrap_or_else(|| self.decision(Outcome::Deny, Reason::MalformedProof))
    }

    fn otp(
        &mut self,
        code: &str,
        next: Option<&str>,
        purpose: Purpose,
        kinds: &[MethodKind],
    ) -> Decision {
        let Ok(parsed) = Code::parse(code) else {
            return self.malformed();
        };
        let next = match next.map(Code::parse) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => return self.malformed(),
        };
        let fp = self
            .engine
            .fingerprints
            .of_code(parsed.digits(), parsed.value());
        // One atomic commit decides the code. Inside it, a lock in force answers before any
        // HMAC is computed (guessing against a lock costs nothing); then the code is looked
        // for with the subject's own replay state in hand (no separate read), and what was
        // found is applied. The phantom takes the same steps. The search is pure, so a
        // backend may run it again after a conflicting write.
        let (domain, now, cfg, known) = (
            self.domain(Factor::Second),
            self.now,
            &self.settings.lockout,
            self.known,
        );
        let user = self.user;
        let this = &*self;
        let fence = self.engine.fence();
        let r = self
            .engine
            .store
            .update_subject(self.subject, now, |state| {
                if let locked @ Answer::Locked { .. } = state.check(domain, now) {
                    return (locked, None);
                }
                let found = this.search(user, parsed, next, purpose, kinds, state);
                if let (Some(fence), Some((method, _, _))) = (fence, found) {
                    // Behind the fence the watermark may have been lost: it stands at
                    // the fence at least, so such a code answers as replayed.
                    if let Some(spent) = this.fenced_step(method, fence) {
                        state.raise_otp(method.id, spent.saturating_add(1));
                    }
                }
                // A phantom's code is nobody's: a match is a lucky guess, and counts as
                // wrong.
                let effect = match found.filter(|_| known) {
                    Some((method, value, offset)) => Effect::Otp {
                        method: method.id,
                        value,
                        offset,
                        fingerprint: fp,
                    },
                    None => Effect::Fail { fingerprint: fp },
                };
                (state.sign_in(domain, effect, now, cfg), found)
            });
        let (answer, found) = self.stored(r, (Answer::Locked { until: now }, None));
        match (answer, found) {
            (Answer::Accepted, Some((method, _, offset))) => {
                if method.kind == MethodKind::AuthenticatorApp {
                    method.drift_hint.store(offset, Ordering::Relaxed);
                }
                let mut d = self.decision(Outcome::Allow, self.allowed(purpose));
                d.method = Some(method.kind);
                d
            }
            (a @ Answer::Replayed(_), _) => self.after_failure(a, Reason::ReplayedCode),
            (a @ Answer::Failed(_), _) => self.after_failure(a, Reason::InvalidCode),
            (Answer::Locked { until }, _) => self.locked(until),
            _ => self.decision(Outcome::Deny, Reason::InternalError),
        }
    }

    /// Looks for `code` among the user's methods of `kinds`: an authenticator app's centre
    /// step first (the usual right code costs one HMAC), then every method's window.
    fn search<'u>(
        &self,
        user: &'u User,
        code: Code,
        next: Option<Code>,
        purpose: Purpose,
        kinds: &[MethodKind],
        state: &UserState,
    ) -> Option<(&'u Method, u64, i8)> {
        let centre = match kinds.contains(&MethodKind::AuthenticatorApp) {
            true => self.totp_at_centre(user, code, purpose),
            false => None,
        };
        centre.or_else(|| self.find_otp(user, code, next, purpose, kinds, state))
    }

    /// The last TOTP step of `method` that could have been accepted at `fence`: its
    /// window and largest drift ahead of the step then current.
    fn fenced_step(&self, method: &Method, fence: Timestamp) -> Option<u64> {
        let Material::Totp { params, .. } = &method.material else {
            return None;
        };
        let ahead = u64::from(self.settings.totp_window) + u64::from(self.settings.totp_max_drift);
        Some(params.step_at(fence).saturating_add(ahead))
    }

    /// Only the centre step (`now + drift`), within the usual bound.
    fn centre_window(&self, drift: i8) -> TotpWindow {
        TotpWindow {
            steps: 0,
            ..self.window(None, drift)
        }
    }

    /// The user's authenticator apps serving `purpose`, each tried at its centre step only.
    fn totp_at_centre<'u>(
        &self,
        user: &'u User,
        code: Code,
        purpose: Purpose,
    ) -> Option<(&'u Method, u64, i8)> {
        user.eligible(purpose)
            .filter(|m| m.kind == MethodKind::AuthenticatorApp)
            .find_map(|m| {
                let Material::Totp { key, params } = &m.material else {
                    return None;
                };
                let w = self.centre_window(m.drift_hint.load(Ordering::Relaxed));
                otp::verify_totp(key, params, code, self.now, w)
                    .map(|hit| (m, hit.step, i8::try_from(hit.offset).unwrap_or(0)))
            })
    }

    fn window(&self, watermark: Option<u64>, drift: i8) -> TotpWindow {
        TotpWindow {
            steps: self.settings.totp_window,
            drift: i32::from(drift),
            max_drift: self.settings.totp_max_drift,
            watermark,
        }
    }

    /// Tries the user's active methods of `kinds` serving `purpose`, default first.
    fn find_otp<'u>(
        &self,
        user: &'u User,
        code: Code,
        next: Option<Code>,
        purpose: Purpose,
        kinds: &[MethodKind],
        state: &UserState,
    ) -> Option<(&'u Method, u64, i8)> {
        for m in user.eligible(purpose).filter(|m| kinds.contains(&m.kind)) {
            let stored = state.otp(m.id).unwrap_or_default();
            match &m.material {
                Material::Totp { key, params } => {
                    // Spent steps are not skipped here: the commit refuses them and the
                    // answer says "replayed" rather than "invalid". The search is centred
                    // on the node's own drift hint first; only a miss tries the record's.
                    let hint = m.drift_hint.load(Ordering::Relaxed);
                    let mut hit =
                        otp::verify_totp(key, params, code, self.now, self.window(None, hint));
                    if hit.is_none() && stored.drift != hint {
                        hit = otp::verify_totp(
                            key,
                            params,
                            code,
                            self.now,
                            self.window(None, stored.drift),
                        );
                    }
                    if let Some(hit) = hit {
                        let offset = i8::try_from(hit.offset).unwrap_or(0);
                        return Some((m, hit.step, offset));
                    }
                }
                Material::Hotp { key, digits } => {
                    let s = self.settings;
                    let state = stored;
                    // The search also looks as far behind the counter as ahead of it, so a
                    // replayed token code is found, refused by the store and answered
                    // `replayed_code`, as a replayed app code is.
                    let behind = u64::from(s.hotp_look_ahead).min(state.next);
                    let span = s.hotp_look_ahead.saturating_mul(2);
                    if let Some(c) = otp::verify_hotp(key, *digits, code, state.next - behind, span)
                    {
                        return Some((m, c, 0));
                    }
                    if let Some(second) = next {
                        let from = state.next.saturating_add(u64::from(s.hotp_look_ahead));
                        if let Some(c) =
                            otp::resync_hotp(key, *digits, code, second, from, s.hotp_resync_limit)
                        {
                            return Some((m, c, 0));
                        }
                    }
                }
                _ => {}
            }
        }
        None
    }

    fn sent_code(&mut self, challenge: &str, code: &str, purpose: Purpose) -> Decision {
        let (Some(id), Ok(parsed)) = (ChallengeId::from_hex(challenge), Code::parse(code)) else {
            return self.malformed();
        };
        // One read for both bars: a lock, then a block of phone methods.
        let (domain, now) = (self.domain(Factor::Second), self.now);
        let barred = self.engine.store.read_subject(self.subject, |u| {
            u.map_or((Answer::Open, None), |u| {
                (u.check(domain, now), u.phone_blocked(now))
            })
        });
        match self.stored(barred, (Answer::Locked { until: now }, None)) {
            (Answer::Locked { until }, _) => return self.locked(until),
            (_, Some(until)) => {
                return self.throttled(Reason::PhoneBlocked, until.since(now), purpose);
            }
            _ => {}
        }
        let digest = code_digest(&self.engine.pepper, &id, parsed);
        let fp = self.fingerprint(b"sent", &digest.to_bytes());
        let redeemed = self
            .engine
            .store
            .redeem_challenge(id, self.subject, &digest, self.now);
        let redeemed = self.stored(redeemed, Redeem::Gone);
        match redeemed {
            Redeem::Redeemed {
                method,
                purpose: issued_for,
            } if self.known => self.redeemed(method, issued_for, purpose, MethodKind::is_sent),
            // A phantom's code is never sent: a match is a lucky guess, and counts as wrong.
            Redeem::Wrong { .. } | Redeem::Redeemed { .. } => {
                // The phone block and the lock count in one commit.
                let (phone, cfg) = (&self.tenant.phone, &self.settings.lockout);
                let r = self.engine.store.update_subject(self.subject, now, |u| {
                    let blocked = u.phone_failure(now, phone);
                    (
                        u.sign_in(domain, Effect::Fail { fingerprint: fp }, now, cfg),
                        blocked,
                    )
                });
                let (answer, blocked) = self.stored(r, (Answer::Locked { until: now }, None));
                let d = self.after_failure(answer, Reason::InvalidCode);
                match blocked {
                    Some(until) if d.outcome == Outcome::Deny => {
                        self.throttled(Reason::PhoneBlocked, until.since(self.now), purpose)
                    }
                    _ => d,
                }
            }
            Redeem::Gone => self.fail(Factor::Second, fp, Reason::ChallengeInvalid),
        }
    }

    /// A challenge issued through `method` for `issued_for` was redeemed: `allow` if the
    /// method is still there, active, of a kind `fits` accepts and serving `purpose`, and
    /// the challenge was issued for `purpose`.
    pub(crate) fn redeemed(
        &mut self,
        method: MethodId,
        issued_for: Purpose,
        purpose: Purpose,
        fits: fn(MethodKind) -> bool,
    ) -> Decision {
        let method = self
            .user
            .method(method)
            .filter(|m| m.active && fits(m.kind) && m.kind.serves(purpose));
        match method {
            Some(m) if issued_for == purpose => {
                let kind = m.kind;
                self.succeed(Factor::Second, self.allowed(purpose), Some(kind))
            }
            _ => self.decision(Outcome::Deny, Reason::MethodNotAllowed),
        }
    }

    fn answers(&mut self, answers: &[&str]) -> Decision {
        let id = self.user.id.0;
        let given: Vec<_> = answers
            .iter()
            .map(|a| self.engine.answer_digest(id, a))
            .collect();
        let method = self
            .user
            .eligible(Purpose::PasswordReset)
            .find(|m| m.kind == MethodKind::SecurityQuestions);
        let right = match method.map(|m| &m.material) {
            Some(Material::Questions { answers: stored }) => {
                stored.len() == given.len()
                    && stored
                        .iter()
                        .zip(&given)
                        .fold(true, |ok, (s, g)| ok & s.ct_eq(g))
            }
            _ => false,
        };
        if right {
            self.succeed(
                Factor::Second,
                Reason::ResetVerified,
                Some(MethodKind::SecurityQuestions),
            )
        } else {
            let all: Vec<u8> = given.iter().flat_map(|g| g.to_bytes()).collect();
            let fp = self.fingerprint(b"answers", &all);
            self.fail(Factor::Second, fp, Reason::InvalidAnswers)
        }
    }

    /// Codes cannot be sent (or checked) now: the answer says when, and offers the
    /// methods that need no sent code.
    pub(crate) fn throttled(&self, reason: Reason, wait: Duration, purpose: Purpose) -> Decision {
        let mut d = self.decision(Outcome::Throttled, reason);
        d.retry_after = Some(wait.max(Duration::from_secs(1)));
        d.methods = self
            .user
            .eligible(purpose)
            .filter(|m| match reason {
                Reason::ApprovalsLimited => m.kind != MethodKind::Push,
                _ => !m.kind.is_sent(),
            })
            .map(MethodInfo::of)
            .collect();
        d
    }
}

/// The location name for decisions made without a tenant.
pub(crate) fn nowhere() -> Name {
    elsewhere()
}
