//! Administrator operations: users, methods and enrolment, unlock, app passwords, devices.
//!
//! Each operation validates its input and answers a precise [`DirectoryError`]; none leaves
//! a user half-changed. Operations that touch sign-in state (confirming a method raises
//! its replay watermark, removing one forgets its state, unlocking clears counters) go
//! through the same state store as decisions.

use std::sync::atomic::Ordering;

use data_encoding::BASE32_NOPAD;

use crate::directory::change::{Change, MethodRecord, Op};
use crate::directory::{
    self, DirectoryError, Material, MethodKind, User, check_email, check_label, normalise_phone,
};
use crate::engine::{Delivery, Engine, code_digest};
use crate::id::{ChallengeId, MethodId, Subject, UserId};
use crate::name::Name;
use crate::otp::{self, Algorithm, Code, Digits, OtpKey, TotpParams};
use crate::policy::{Purpose, TenantPolicy};
use crate::secret::{SecretBytes, SecretString};
use crate::state::{Redeem, StateOps, StateStore};
use crate::time::Timestamp;

/// How a new authenticator app is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotpSpec {
    /// The HMAC hash (SHA-1 for the widest app support).
    pub algorithm: Algorithm,
    /// Code length.
    pub digits: Digits,
    /// Step length in seconds.
    pub period: u32,
}

impl Default for TotpSpec {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Sha1,
            digits: Digits::SIX,
            period: 30,
        }
    }
}

/// A new authenticator app, pending until its first code is proved.
#[derive(Debug)]
pub struct TotpEnrollment {
    /// The new method.
    pub method: MethodId,
    /// The secret, base32 (shown once).
    pub secret_base32: SecretString,
    /// The `otpauth://` URI for a QR code (contains the secret; shown once).
    pub uri: SecretString,
}

/// A snapshot of a user for administrators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// Engine-wide id.
    pub id: UserId,
    /// Groups.
    pub groups: Vec<String>,
    /// Passwordless account.
    pub passwordless: bool,
    /// Opted out of two-step verification.
    pub mfa_opt_out: bool,
    /// The default method.
    pub default_method: Option<MethodId>,
    /// Methods: id, kind, active.
    pub methods: Vec<(MethodId, MethodKind, bool)>,
    /// App passwords: id, label, created.
    pub app_passwords: Vec<(u32, String, Timestamp)>,
    /// Remembered devices: id, expiry.
    pub devices: Vec<(u32, Timestamp)>,
}

/// A method as its owner sees it: never a secret, a number or an address whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnMethod {
    /// Its id.
    pub id: MethodId,
    /// Its kind.
    pub kind: MethodKind,
    /// Proved and usable.
    pub active: bool,
    /// What the user knows it by ("•••• 34" for a phone), if anything.
    pub hint: Option<String>,
}

/// OTP secrets must be 10-128 bytes (RFC 4226 asks for at least 128 bits; 80 is the
/// least any deployed token uses).
fn check_secret(secret: &[u8]) -> Result<(), DirectoryError> {
    if (10..=128).contains(&secret.len()) {
        Ok(())
    } else {
        Err(DirectoryError::InvalidSecret(
            "secret must be 10-128 bytes".into(),
        ))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `otpauth://totp/...` URI that authenticator apps read from a QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8], spec: TotpSpec) -> SecretString {
    SecretString::new(format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
        percent(issuer),
        percent(account),
        BASE32_NOPAD.encode(secret),
        percent(issuer),
        spec.algorithm.uri_name(),
        spec.digits.get(),
        spec.period
    ))
}

impl<S: StateStore> Engine<S> {
    fn tenant_policy(
        &self,
        tenant: &str,
    ) -> Result<std::sync::Arc<crate::policy::Policy>, DirectoryError> {
        let p = self.policy();
        p.tenant(tenant).ok_or(DirectoryError::UnknownTenant)?;
        Ok(p)
    }

    fn with_tenant<R>(
        &self,
        tenant: &str,
        f: impl FnOnce(&TenantPolicy) -> R,
    ) -> Result<R, DirectoryError> {
        let p = self.tenant_policy(tenant)?;
        let t = p.tenant(tenant).ok_or(DirectoryError::UnknownTenant)?;
        Ok(f(t))
    }

    fn groups(groups: &[&str]) -> Result<Box<[Name]>, DirectoryError> {
        if groups.len() > directory::MAX_GROUPS {
            return Err(DirectoryError::TooManyGroups);
        }
        let mut out: Vec<Name> = Vec::with_capacity(groups.len());
        for g in groups {
            let n = Name::group(g)?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Ok(out.into_boxed_slice())
    }

    /// Adds a user to a tenant.
    pub fn add_user(
        &self,
        tenant: &str,
        user: &str,
        groups: &[&str],
        passwordless: bool,
    ) -> Result<UserId, DirectoryError> {
        let tenant = self.with_tenant(tenant, |t| t.name)?;
        let groups = Self::groups(groups)?;
        let _hold = self.log.hold();
        let _gate = self.gate.read();
        self.directory.insert(tenant, user, || {
            // An id is given out once, logged or not: a failed log burns it.
            let id = UserId(self.next_user.fetch_add(1, Ordering::Relaxed));
            let change = Change(Op::AddUser {
                id,
                tenant,
                name: user.into(),
                groups: groups.clone(),
                passwordless,
            });
            self.log_changes(std::slice::from_ref(&change))?;
            Ok(User::new(id, groups, passwordless))
        })
    }

    /// Removes a user and all its sign-in state.
    pub fn remove_user(&self, tenant: &str, user: &str) -> Result<(), DirectoryError> {
        // The user goes first, so nothing of it can be used again; its state is then only
        // garbage under an id never given out again, which a failed store may leave (and
        // which is counted, not refused: the removal itself has happened).
        let (gate, u) = self.user_mut(tenant, user)?;
        let id = u.id;
        self.log_changes(&[Change(Op::RemoveUser(id))])?;
        self.directory.remove(u);
        drop(gate);
        self.forget_state(Subject::Known(id), None);
        Ok(())
    }

    /// Replaces a user's groups.
    pub fn set_groups(
        &self,
        tenant: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<(), DirectoryError> {
        let groups = Self::groups(groups)?;
        let (_gate, mut u) = self.user_mut(tenant, user)?;
        let id = u.id;
        self.commit(&mut u, &[Change(Op::SetGroups(id, groups))])
    }

    /// Makes an account passwordless, or gives it back its password.
    pub fn set_passwordless(
        &self,
        tenant: &str,
        user: &str,
        passwordless: bool,
    ) -> Result<(), DirectoryError> {
        let (_gate, mut u) = self.user_mut(tenant, user)?;
        let id = u.id;
        self.commit(&mut u, &[Change(Op::SetPasswordless(id, passwordless))])
    }

    /// Turns two-step verification off (or on) for one user. Refused where the tenant
    /// requires it (security defaults).
    pub fn set_mfa_opt_out(
        &self,
        tenant: &str,
        user: &str,
        opt_out: bool,
    ) -> Result<(), DirectoryError> {
        let required = self.with_tenant(tenant, |t| t.require_mfa)?;
        if opt_out && required {
            return Err(DirectoryError::MfaRequired);
        }
        let (_gate, mut u) = self.user_mut(tenant, user)?;
        let id = u.id;
        self.commit(&mut u, &[Change(Op::SetMfaOptOut(id, opt_out))])
    }

    /// A user's methods as the user may see them on the security-info pages, in the order
    /// they were added, and the default method.
    pub fn own_methods(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<(Vec<OwnMethod>, Option<MethodId>), DirectoryError> {
        let u = self
            .directory
            .get(tenant, user)
            .ok_or(DirectoryError::UnknownUser)?;
        let methods = u
            .methods()
            .iter()
            .map(|m| OwnMethod {
                id: m.id,
                kind: m.kind,
                active: m.active,
                hint: m.hint(),
            })
            .collect();
        Ok((methods, u.default_method))
    }

    /// A snapshot of a user.
    pub fn user_info(&self, tenant: &str, user: &str) -> Result<UserInfo, DirectoryError> {
        let u = self
            .directory
            .get(tenant, user)
            .ok_or(DirectoryError::UnknownUser)?;
        Ok(UserInfo {
            id: u.id,
            groups: u.groups().iter().map(|g| g.as_str().to_owned()).collect(),
            passwordless: u.passwordless,
            mfa_opt_out: u.mfa_opt_out,
            default_method: u.default_method,
            methods: u
                .methods()
                .iter()
                .map(|m| (m.id, m.kind, m.active))
                .collect(),
            app_passwords: u.app_passwords(),
            devices: u.devices(),
        })
    }

    /// Registers a method, after `prepare` (given the user and the method's id) has done
    /// what must come first. A new set of security questions replaces the old one.
    pub(crate) fn add_method(
        &self,
        tenant: &str,
        user: &str,
        kind: MethodKind,
        active: bool,
        material: Material,
        prepare: impl FnOnce(UserId, MethodId) -> Result<(), DirectoryError>,
    ) -> Result<MethodId, DirectoryError> {
        let (_gate, mut u) = self.user_mut(tenant, user)?;
        // A second method with the same key would make the same codes under its own replay
        // watermark, so a code spent on one could be spent again on the other.
        fn key_of(m: &Material) -> Option<&OtpKey> {
            match m {
                Material::Totp { key, .. } | Material::Hotp { key, .. } => Some(key),
                _ => None,
            }
        }
        if let Some(new) = key_of(&material)
            && u.methods
                .iter()
                .filter(|m| m.kind == kind)
                .filter_map(|m| key_of(&m.material))
                .any(|old| old.same_key(new))
        {
            return Err(DirectoryError::DuplicateSecret);
        }
        let replaced = u
            .methods
            .iter()
            .find(|m| kind == MethodKind::SecurityQuestions && m.kind == kind)
            .map(|m| m.id);
        if u.methods.len() - usize::from(replaced.is_some()) >= directory::MAX_METHODS {
            return Err(DirectoryError::TooManyMethods);
        }
        if kind.is_otp_device()
            && u.methods.iter().filter(|m| m.kind.is_otp_device()).count()
                >= directory::MAX_OTP_DEVICES
        {
            return Err(DirectoryError::TooManyOtpDevices);
        }
        let uid = u.id;
        // Past every registered id, the replaced one's too.
        let id = u.next_method_id().ok_or(DirectoryError::TooManyMethods)?;
        prepare(uid, id)?;
        let add = Change(Op::AddMethod(
            uid,
            MethodRecord {
                id,
                kind,
                active,
                material,
            },
        ));
        match replaced {
            Some(old) => self.commit(&mut u, &[Change(Op::RemoveMethod(uid, old)), add])?,
            None => self.commit(&mut u, &[add])?,
        }
        Ok(id)
    }

    /// Starts enrolling an authenticator app: a fresh random secret and its `otpauth://`
    /// URI. The app becomes usable after [`confirm_otp`](Self::confirm_otp).
    pub fn enroll_totp(
        &self,
        tenant: &str,
        user: &str,
        spec: TotpSpec,
    ) -> Result<TotpEnrollment, DirectoryError> {
        let len = match spec.algorithm {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        };
        let mut secret = vec![0u8; len];
        self.entropy.fill(&mut secret);
        let secret = SecretBytes::new(secret);
        let method = self.import_totp(tenant, user, secret.expose(), spec, false)?;
        Ok(TotpEnrollment {
            method,
            secret_base32: SecretString::new(BASE32_NOPAD.encode(secret.expose())),
            uri: otpauth_uri(tenant, user, secret.expose(), spec),
        })
    }

    /// Adds an authenticator app with a known secret (an import); `active` skips the
    /// first-code proof for credentials already proven elsewhere.
    pub fn import_totp(
        &self,
        tenant: &str,
        user: &str,
        secret: &[u8],
        spec: TotpSpec,
        active: bool,
    ) -> Result<MethodId, DirectoryError> {
        check_secret(secret)?;
        if !(10..=120).contains(&spec.period) {
            return Err(DirectoryError::InvalidSecret(
                "period must be 10-120 seconds".into(),
            ));
        }
        let params = TotpParams {
            digits: spec.digits,
            period: spec.period,
            t0: 0,
        };
        let key = OtpKey::new(spec.algorithm, secret);
        self.add_method(
            tenant,
            user,
            MethodKind::AuthenticatorApp,
            active,
            Material::Totp { key, params },
            |_, _| Ok(()),
        )
    }

    /// Adds a HOTP hardware token at `counter`, pending until its first code is proved.
    pub fn add_hotp(
        &self,
        tenant: &str,
        user: &str,
        secret: &[u8],
        digits: Digits,
        counter: u64,
    ) -> Result<MethodId, DirectoryError> {
        check_secret(secret)?;
        let key = OtpKey::new(Algorithm::Sha1, secret);
        // The token has shown codes up to `counter` already: the counter is raised before
        // the token is registered, so without it, it is not registered at all.
        self.add_method(
            tenant,
            user,
            MethodKind::HardwareToken,
            false,
            Material::Hotp { key, digits },
            |uid, id| Ok(self.store.raise_otp(Subject::Known(uid), id, counter)?),
        )
    }

    /// Adds a phone for SMS or voice codes, pending until a sent code is proved.
    pub fn add_phone(
        &self,
        tenant: &str,
        user: &str,
        kind: MethodKind,
        number: &str,
    ) -> Result<MethodId, DirectoryError> {
        if !matches!(kind, MethodKind::Sms | MethodKind::Voice) {
            return Err(DirectoryError::InvalidPhone);
        }
        let number = normalise_phone(number)?;
        self.add_method(
            tenant,
            user,
            kind,
            false,
            Material::Phone {
                number: number.into(),
            },
            |_, _| Ok(()),
        )
    }

    /// Adds an email address for password-reset codes, pending until a sent code is proved.
    pub fn add_email(
        &self,
        tenant: &str,
        user: &str,
        address: &str,
    ) -> Result<MethodId, DirectoryError> {
        check_email(address)?;
        self.add_method(
            tenant,
            user,
            MethodKind::Email,
            false,
            Material::Email {
                address: address.into(),
            },
            |_, _| Ok(()),
        )
    }

    /// Records a security key registered (and attested) by the frontend's WebAuthn stack.
    pub fn add_security_key(&self, tenant: &str, user: &str) -> Result<MethodId, DirectoryError> {
        self.add_method(
            tenant,
            user,
            MethodKind::SecurityKey,
            true,
            Material::SecurityKey(None),
            |_, _| Ok(()),
        )
    }

    /// Sets the answers to the security questions (password reset only); stored as keyed
    /// digests of the answers with case and spacing folded.
    pub fn set_security_questions(
        &self,
        tenant: &str,
        user: &str,
        answers: &[&str],
    ) -> Result<MethodId, DirectoryError> {
        if answers.is_empty()
            || answers.len() > 5
            || answers.iter().any(|a| a.trim().is_empty() || a.len() > 256)
        {
            return Err(DirectoryError::InvalidAnswers);
        }
        let id = self.subject_of(tenant, user)?;
        let Subject::Known(uid) = id else {
            return Err(DirectoryError::UnknownUser);
        };
        let digests = answers
            .iter()
            .map(|a| self.answer_digest(uid.0, a))
            .collect();
        self.add_method(
            tenant,
            user,
            MethodKind::SecurityQuestions,
            true,
            Material::Questions { answers: digests },
            |_, _| Ok(()),
        )
    }

    pub(crate) fn subject_of(&self, tenant: &str, user: &str) -> Result<Subject, DirectoryError> {
        Ok(Subject::Known(
            self.directory
                .get(tenant, user)
                .ok_or(DirectoryError::UnknownUser)?
                .id,
        ))
    }

    /// Proves a pending authenticator app or hardware token with its first code, making it
    /// active. The code's step or counter is spent: it cannot be used again to sign in.
    pub fn confirm_otp(
        &self,
        tenant: &str,
        user: &str,
        method: MethodId,
        code: &str,
        now: Timestamp,
    ) -> Result<(), DirectoryError> {
        let code = Code::parse(code).map_err(|_| DirectoryError::WrongCode)?;
        let settings = self.policy().settings;
        let (_gate, mut u) = self.user_mut(tenant, user)?;
        let subject = Subject::Known(u.id);
        let m = u.method(method).ok_or(DirectoryError::UnknownMethod)?;
        if m.active {
            return Err(DirectoryError::AlreadyActive);
        }
        let state = self.store.otp_state(subject, method)?;
        let next = match &m.material {
            Material::Totp { key, params } => {
                let w = otp::TotpWindow {
                    steps: settings.totp_window,
                    drift: 0,
                    max_drift: 0,
                    watermark: state.watermark(),
                };
                otp::verify_totp(key, params, code, now, w).map(|hit| hit.step)
            }
            Material::Hotp { key, digits } => {
                otp::verify_hotp(key, *digits, code, state.next, settings.hotp_look_ahead)
            }
            _ => return Err(DirectoryError::UnknownMethod),
        };
        let value = next.ok_or(DirectoryError::WrongCode)?;
        // The code is spent before the method becomes active, or not at all.
        self.store
            .raise_otp(subject, method, value.saturating_add(1))?;
        let uid = u.id;
        self.commit(&mut u, &[Change(Op::ActivateMethod(uid, method))])
    }

    /// Sends a code to a pending phone or email method, to prove it.
    pub fn start_confirmation(
        &self,
        tenant: &str,
        user: &str,
        method: MethodId,
        now: Timestamp,
    ) -> Result<Result<(ChallengeId, Delivery), crate::time::Duration>, DirectoryError> {
        let policy = self.tenant_policy(tenant)?;
        let t = policy.tenant(tenant).ok_or(DirectoryError::UnknownTenant)?;
        let (subject, kind, destination) = {
            let u = self
                .directory
                .get(tenant, user)
                .ok_or(DirectoryError::UnknownUser)?;
            let m = u.method(method).ok_or(DirectoryError::UnknownMethod)?;
            if m.active {
                return Err(DirectoryError::AlreadyActive);
            }
            let dest = match &m.material {
                Material::Phone { number } => number.to_string(),
                Material::Email { address } => address.to_string(),
                _ => return Err(DirectoryError::UnknownMethod),
            };
            (Subject::Known(u.id), m.kind, dest)
        };
        let purpose = if kind == MethodKind::Email {
            Purpose::PasswordReset
        } else {
            Purpose::SignIn
        };
        match self.issue(t, subject, kind, method, purpose, destination, now) {
            Ok(issued) => Ok(Ok(issued)),
            Err(crate::engine::NotIssued::Refused(_, wait)) => Ok(Err(wait)),
            Err(crate::engine::NotIssued::Store(e)) => Err(e.into()),
        }
    }

    /// Proves a pending phone or email method with the code sent by
    /// [`start_confirmation`](Self::start_confirmation).
    pub fn confirm_sent(
        &self,
        tenant: &str,
        user: &str,
        method: MethodId,
        challenge: ChallengeId,
        code: &str,
        now: Timestamp,
    ) -> Result<(), DirectoryError> {
        let code = Code::parse(code).map_err(|_| DirectoryError::WrongCode)?;
        let subject = self.subject_of(tenant, user)?;
        let digest = code_digest(&self.pepper, &challenge, code);
        match self
            .store
            .redeem_challenge(challenge, subject, &digest, now)?
        {
            Redeem::Redeemed { method: m, .. } if m == method => {
                let (_gate, mut u) = self.user_mut(tenant, user)?;
                u.method(method).ok_or(DirectoryError::UnknownMethod)?;
                let uid = u.id;
                self.commit(&mut u, &[Change(Op::ActivateMethod(uid, method))])
            }
            _ => Err(DirectoryError::WrongCode),
        }
    }

    /// Removes one method and its sign-in state.
    pub fn remove_method(
        &self,
        tenant: &str,
        user: &str,
        method: MethodId,
    ) -> Result<(), DirectoryError> {
        let (_gate, mut u) = self.user_mut(tenant, user)?;
        u.method(method).ok_or(DirectoryError::UnknownMethod)?;
        let uid = u.id;
        self.commit(&mut u, &[Change(Op::RemoveMethod(uid, method))])?;
        // As for a removed user: the method is gone, its id is never reused, and its
        // state is garbage (forgetting it first would let a spent code through meanwhile).
        self.forget_state(Subject::Known(u.id), Some(method));
        Ok(())
    }

    /// A lost or stolen phone: removes every method and forgets every remembered device,
    /// so the next sign-in answers register. App passwords are kept (revoke them apart).
    pub fn remove_all_methods(&self, tenant: &str, user: &str) -> Result<usize, DirectoryError> {
        let (_gate, mut u) = self.user_mut(tenant, user)?;
        let removed: Vec<MethodId> = u.methods.iter().map(|m| m.id).collect();
        let uid = u.id;
        self.commit(&mut u, &[Change(Op::RemoveAllMethods(uid))])?;
        let subject = Subject::Known(uid);
        for m in &removed {
            self.forget_state(subject, Some(*m));
        }
        Ok(removed.len())
    }

    /// Makes an active method the default.
    pub fn set_default_method(
        &self,
        tenant: &str,
        user: &str,
        method: MethodId,
    ) -> Result<(), DirectoryError> {
        let (_gate, mut u) = self.user_mut(tenant, user)?;
        let m = u.method(method).ok_or(DirectoryError::UnknownMethod)?;
        if !m.active {
            return Err(DirectoryError::NotActive);
        }
        let uid = u.id;
        self.commit(&mut u, &[Change(Op::SetDefault(uid, method))])
    }

    /// Forgets the state of what was just removed from the directory. A failure leaves
    /// garbage nothing can reach (ids are never reused) and is counted.
    fn forget_state(&self, subject: Subject, method: Option<MethodId>) {
        if let Err(e) = self.store.forget(subject, method) {
            self.count_store_error(&e);
        }
    }

    /// Clears a user's lockout (every domain) and phone block.
    pub fn unlock(&self, tenant: &str, user: &str) -> Result<(), DirectoryError> {
        let subject = self.subject_of(tenant, user)?;
        self.store.unlock(subject)?;
        Ok(())
    }

    /// Forgets the learned clock drift of an authenticator app.
    pub fn reset_drift(
        &self,
        tenant: &str,
        user: &str,
        method: MethodId,
    ) -> Result<(), DirectoryError> {
        let subject = {
            let u = self
                .directory
                .get(tenant, user)
                .ok_or(DirectoryError::UnknownUser)?;
            let m = u.method(method).ok_or(DirectoryError::UnknownMethod)?;
            m.drift_hint.store(0, std::sync::atomic::Ordering::Relaxed);
            Subject::Known(u.id)
        };
        self.store.reset_drift(subject, method)?;
        Ok(())
    }

    /// Creates an app password for legacy clients: 16 random lowercase letters, shown once,
    /// stored only as a keyed digest, valid only for the `legacy_protocol` purpose.
    pub fn create_app_password(
        &self,
        tenant: &str,
        user: &str,
        label: &str,
        now: Timestamp,
    ) -> Result<(u32, SecretString), DirectoryError> {
        check_label(label)?;
        if !self.with_tenant(tenant, |t| t.app_passwords)? {
            return Err(DirectoryError::AppPasswordsDisabled);
        }
        let (_gate, mut u) = self.user_mut(tenant, user)?;
        let uid = u.id.0;
        if u.extras
            .as_deref()
            .is_some_and(|e| e.app_passwords.len() >= directory::MAX_APP_PASSWORDS)
        {
            return Err(DirectoryError::TooManyAppPasswords);
        }
        let secret: String = (0..16)
            .map(|_| char::from(b'a' + (self.entropy.below(26) as u8)))
            .collect();
        let digest = self.app_password_digest(uid, &secret);
        let id = u
            .extras
            .as_deref()
            .map_or(0, |e| e.next_id)
            .checked_add(1)
            .ok_or(DirectoryError::TooManyAppPasswords)?;
        let change = Change(Op::AddAppPassword {
            user: u.id,
            id,
            label: label.into(),
            digest,
            created: now,
        });
        self.commit(&mut u, &[change])?;
        Ok((id, SecretString::new(secret)))
    }

    /// Revokes an app password.
    pub fn revoke_app_password(
        &self,
        tenant: &str,
        user: &str,
        id: u32,
    ) -> Result<(), DirectoryError> {
        let (_gate, mut u) = self.user_mut(tenant, user)?;
        let known = u
            .extras
            .as_deref()
            .is_some_and(|e| e.app_passwords.iter().any(|a| a.id == id));
        if !known {
            return Err(DirectoryError::UnknownItem);
        }
        let uid = u.id;
        self.commit(&mut u, &[Change(Op::RevokeAppPassword(uid, id))])
    }

    /// Forgets one remembered device, or all of them when `id` is `None`.
    pub fn revoke_devices(
        &self,
        tenant: &str,
        user: &str,
        id: Option<u32>,
    ) -> Result<(), DirectoryError> {
        let (_gate, mut u) = self.user_mut(tenant, user)?;
        let known = id.is_none_or(|id| {
            u.extras
                .as_deref()
                .is_some_and(|e| e.devices.iter().any(|d| d.id == id))
        });
        if !known {
            return Err(DirectoryError::UnknownItem);
        }
        let uid = u.id;
        self.commit(&mut u, &[Change(Op::ForgetDevices(uid, id))])
    }

    /// The user for changing: the log's hold (a shared log's, see
    /// [`ChangeLog::hold`](crate::directory::change::ChangeLog::hold)),
    /// then the snapshot gate (shared), then the user's write lock, always in that order,
    /// so a snapshot (which holds the gate and then reads each user) never waits on an
    /// operation that waits on it, and a shared log's follower (which takes the hold and
    /// then applies) never waits on an operation that waits on it either.
    pub(crate) fn user_mut(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<(Held<'_>, crate::directory::UserMut<'_>), DirectoryError> {
        let hold = self.log.hold();
        let gate = self.gate.read();
        let u = self.directory.get_mut(tenant, user)?;
        Ok((
            Held {
                _gate: gate,
                _hold: hold,
            },
            u,
        ))
    }

    /// Hands `changes` to the log; a failure is counted and refuses the operation.
    fn log_changes(&self, changes: &[Change]) -> Result<(), DirectoryError> {
        self.log.append(changes).map_err(|e| {
            self.count_store_error(&e);
            DirectoryError::Store(e)
        })
    }

    /// Logs `changes` (one batch) and applies them to `u`, whose write lock the caller
    /// has held since it checked them against the user as it is.
    pub(crate) fn commit(&self, u: &mut User, changes: &[Change]) -> Result<(), DirectoryError> {
        self.log_changes(changes)?;
        changes.iter().try_for_each(|c| u.apply(&c.0))
    }

    /// Applies changes made elsewhere: read back from a log after a restart, or made on
    /// another node. Nothing is logged. A removed user's sign-in state is not touched:
    /// the node that removed it forgot it in the shared store. Stops at the first change
    /// that does not fit the directory as it is.
    pub fn apply_changes(&self, changes: &[Change]) -> Result<(), DirectoryError> {
        self.apply_changes_at(0, changes)
    }

    /// [`apply_changes`](Self::apply_changes) for the batch at `position` in a shared
    /// change log; the directory's position ([`directory_position`]) becomes at least
    /// `position` with the batch applied, under the same gate a snapshot cuts at.
    ///
    /// [`directory_position`]: Self::directory_position
    pub fn apply_changes_at(
        &self,
        position: u64,
        changes: &[Change],
    ) -> Result<(), DirectoryError> {
        let _gate = self.gate.read();
        self.apply_held(changes)?;
        self.set_position(position);
        Ok(())
    }

    fn apply_held(&self, changes: &[Change]) -> Result<(), DirectoryError> {
        for c in changes {
            match &c.0 {
                Op::NextUser(n) => {
                    self.next_user.fetch_max(*n, Ordering::Relaxed);
                }
                Op::AddUser {
                    id,
                    tenant,
                    name,
                    groups,
                    passwordless,
                } => {
                    self.directory.insert(*tenant, name, || {
                        Ok(User::new(*id, groups.clone(), *passwordless))
                    })?;
                    self.next_user
                        .fetch_max(id.0.saturating_add(1), Ordering::Relaxed);
                }
                Op::RemoveUser(id) => {
                    let u = self.directory.get_mut_by_id(*id)?;
                    self.directory.remove(u);
                }
                op => {
                    let id = c.user().ok_or(DirectoryError::UnknownUser)?;
                    self.directory.get_mut_by_id(id)?.apply(op)?;
                }
            }
        }
        Ok(())
    }

    /// The whole directory as changes that rebuild it: the next user id, then each user
    /// with its methods, app passwords and remembered devices (each user as it was at one
    /// instant). Applied to an empty engine with the same pepper
    /// ([`apply_changes`](Self::apply_changes)), it gives the same users, ids and secrets.
    pub fn snapshot(&self) -> Vec<Change> {
        let mut out = Vec::new();
        let Ok(()) =
            self.snapshot_each::<std::convert::Infallible>(|| Ok(()), |c| out.extend_from_slice(c));
        out
    }

    /// The snapshot a batch at a time (the next user id, then each user's), with the
    /// directory held still: `at_cut` runs first, with no change being logged or applied,
    /// and no change is made until the last batch is out. A log marks its position in
    /// `at_cut`, so that the changes after it are exactly those the snapshot lacks. If
    /// `at_cut` fails, nothing is given out.
    pub fn snapshot_each<E>(
        &self,
        at_cut: impl FnOnce() -> Result<(), E>,
        mut each: impl FnMut(&[Change]),
    ) -> Result<(), E> {
        let _gate = self.gate.write();
        at_cut()?;
        each(&[Change(Op::NextUser(self.next_user.load(Ordering::Relaxed)))]);
        self.directory.for_each(|u| each(&u.recreate()));
        Ok(())
    }
}

/// What an operation holds while it changes a user: the log's hold and the snapshot gate
/// (dropped in the reverse order of taking them).
pub(crate) struct Held<'a> {
    _gate: parking_lot::RwLockReadGuard<'a, ()>,
    _hold: Option<parking_lot::MutexGuard<'a, ()>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_is_percent_encoded() {
        let spec = TotpSpec::default();
        let uri = otpauth_uri(
            "Kommune X",
            "kari@kommune.no",
            b"12345678901234567890",
            spec,
        );
        assert_eq!(
            uri.expose(),
            "otpauth://totp/Kommune%20X:kari%40kommune.no?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Kommune%20X&algorithm=SHA1&digits=6&period=30"
        );
    }
}
