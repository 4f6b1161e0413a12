//! The directory: users, their groups and their registered methods.
//!
//! Users are keyed by tenant and name. Names are matched exactly except for ASCII case
//! (`Kari@Kommune.no` is `kari@kommune.no`); other Unicode is compared as given, so
//! frontends should send the directory's canonical form.
//!
//! Layout: a small hash index maps a keyed 128-bit hash of (tenant, name) to the user's
//! dense id, and the users themselves live in a segmented arena indexed by that id, each
//! slot under its own read-write lock. The first method is stored inline, so a user with
//! one authenticator app needs no allocation beyond the slot and the name; app passwords
//! and remembered devices live behind one optional box.

pub mod change;

use std::fmt;

use std::ops::{Deref, DerefMut};

use dashmap::DashMap;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use smallvec::SmallVec;

use crate::arena::Slots;
use crate::id::{MethodId, UserId};
use crate::name::{self, Name};
use crate::otp::{Digits, OtpKey, TotpParams};
use crate::policy::Purpose;
use crate::secret::SecretDigest;
use crate::time::Timestamp;

/// At most this many authenticator apps and hardware tokens per user.
pub const MAX_OTP_DEVICES: usize = 5;
/// At most this many methods of any kind per user.
pub const MAX_METHODS: usize = 16;
/// At most this many app passwords per user.
pub const MAX_APP_PASSWORDS: usize = 10;
/// At most this many remembered devices per user; the oldest is forgotten first.
pub const MAX_DEVICES: usize = 10;
/// At most this many groups per user.
pub const MAX_GROUPS: usize = 64;

/// A kind of method a user can register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodKind {
    /// A TOTP authenticator app.
    AuthenticatorApp,
    /// A HOTP hardware token.
    HardwareToken,
    /// Codes by text message.
    Sms,
    /// Codes by voice call.
    Voice,
    /// A FIDO2 security key (WebAuthn; see `webauthn.rs`).
    SecurityKey,
    /// Codes by email: password reset only.
    Email,
    /// Security questions: password reset only.
    SecurityQuestions,
    /// Approve a notification in the authenticator app, typing the number the sign-in
    /// screen shows (a device key pair; see `push.rs`).
    Push,
}

impl MethodKind {
    /// Whether the method may prove identity for `purpose`. Email and security questions
    /// serve password reset only; legacy protocols use app passwords, not methods.
    pub fn serves(self, purpose: Purpose) -> bool {
        match purpose {
            Purpose::SignIn => !matches!(self, Self::Email | Self::SecurityQuestions),
            Purpose::PasswordReset => true,
            Purpose::LegacyProtocol => false,
        }
    }

    /// Whether the method counts toward the five authenticator apps, tokens and push
    /// devices.
    pub fn is_otp_device(self) -> bool {
        matches!(
            self,
            Self::AuthenticatorApp | Self::HardwareToken | Self::Push
        )
    }

    /// Whether codes for this method are sent (SMS, voice, email).
    pub fn is_sent(self) -> bool {
        matches!(self, Self::Sms | Self::Voice | Self::Email)
    }

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthenticatorApp => "authenticator_app",
            Self::HardwareToken => "hardware_token",
            Self::Sms => "sms",
            Self::Voice => "voice",
            Self::SecurityKey => "security_key",
            Self::Email => "email",
            Self::SecurityQuestions => "security_questions",
            Self::Push => "push",
        }
    }
}

/// What a method needs to verify a proof.
#[derive(Clone)]
pub(crate) enum Material {
    Totp {
        key: OtpKey,
        params: TotpParams,
    },
    Hotp {
        key: OtpKey,
        digits: Digits,
    },
    Phone {
        number: Box<str>,
    },
    Email {
        address: Box<str>,
    },
    /// A registered credential; `None` for one recorded by a frontend's own WebAuthn stack
    /// (counted as a method, but it proves nothing here).
    SecurityKey(Option<Box<crate::webauthn::Credential>>),
    Questions {
        answers: Box<[SecretDigest]>,
    },
    Push(crate::push::DeviceKey),
}

/// A registered method.
pub struct Method {
    /// Its id.
    pub id: MethodId,
    /// Its kind.
    pub kind: MethodKind,
    /// Whether the user has proved it with a first code (only active methods are used).
    pub active: bool,
    pub(crate) material: Material,
    /// The last drift this engine saw accepted (TOTP): where the search starts. A hint
    /// only; the store holds the drift of record and decides replay.
    pub(crate) drift_hint: std::sync::atomic::AtomicI8,
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Method")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Method {
    /// A short hint a person can recognise the method by ("•••• 34" for a phone), never
    /// the whole number or address.
    pub fn hint(&self) -> Option<String> {
        match &self.material {
            Material::Phone { number } => {
                let tail: String = number
                    .chars()
                    .rev()
                    .take(2)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                Some(format!("•••• {tail}"))
            }
            Material::Email { address } => {
                let (local, domain) = address.split_once('@')?;
                let first = local.chars().next()?;
                Some(format!("{first}•••@{domain}"))
            }
            _ => None,
        }
    }
}

/// An app password as stored: its keyed digest, never the password.
#[derive(Debug)]
pub(crate) struct AppPassword {
    pub(crate) id: u32,
    pub(crate) label: Box<str>,
    pub(crate) digest: SecretDigest,
    pub(crate) created: Timestamp,
}

/// A remembered device as stored.
#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) id: u32,
    pub(crate) digest: SecretDigest,
    pub(crate) expires: Timestamp,
}

#[derive(Debug, Default)]
pub(crate) struct Extras {
    pub(crate) groups: Box<[Name]>,
    pub(crate) app_passwords: Vec<AppPassword>,
    pub(crate) devices: Vec<Device>,
    pub(crate) next_id: u32,
    /// The highest id of a method this user has had removed (0: none).
    pub(crate) retired_method: u32,
}

/// A user.
#[derive(Debug)]
pub struct User {
    /// Engine-wide id.
    pub id: UserId,
    /// The tenant.
    pub tenant: Name,
    /// The name as it was given when the user was added.
    pub name: Box<str>,
    /// Whether the user is in any group (the names are in the cold `extras` box: most
    /// users are in none, and only rules that name groups read them).
    has_groups: bool,
    /// A passwordless account: password attempts are refused.
    pub passwordless: bool,
    /// The user turned two-step verification off (honoured only where the tenant allows).
    pub mfa_opt_out: bool,
    /// The method offered first.
    pub default_method: Option<MethodId>,
    pub(crate) methods: SmallVec<[Method; 1]>,
    pub(crate) extras: Option<Box<Extras>>,
}

impl User {
    pub(crate) fn new(id: UserId, groups: Box<[Name]>, passwordless: bool) -> Self {
        let mut u = Self {
            id,
            tenant: Name::builtin("none"),
            name: Box::from(""),
            has_groups: false,
            passwordless,
            mfa_opt_out: false,
            default_method: None,
            methods: SmallVec::new(),
            extras: None,
        };
        u.set_groups(groups);
        u
    }

    /// Group names.
    pub fn groups(&self) -> &[Name] {
        match self.extras.as_deref() {
            Some(e) if self.has_groups => &e.groups,
            _ => &[],
        }
    }

    pub(crate) fn set_groups(&mut self, groups: Box<[Name]>) {
        self.has_groups = !groups.is_empty();
        if self.has_groups || self.extras.is_some() {
            self.extras_mut().groups = groups;
        }
    }

    /// All methods, pending and active.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// Active methods serving `purpose`, the default first.
    pub fn eligible(&self, purpose: Purpose) -> impl Iterator<Item = &Method> {
        let default = self.default_method;
        let first = self
            .methods
            .iter()
            .filter(move |m| Some(m.id) == default && m.active && m.kind.serves(purpose));
        let rest = self
            .methods
            .iter()
            .filter(move |m| Some(m.id) != default && m.active && m.kind.serves(purpose));
        first.chain(rest)
    }

    /// How many methods are active.
    pub fn active_methods(&self) -> usize {
        self.methods.iter().filter(|m| m.active).count()
    }

    /// The id a newly registered method gets. Ids are numbered per user from 1 and never
    /// reused (a challenge sent through a removed method must not prove its successor), so
    /// the next is one past both the registered ones and the highest ever removed, which
    /// is kept in the cold `extras` box: the hot record stays as small as it was.
    pub(crate) fn next_method_id(&self) -> Option<MethodId> {
        let registered = self.methods.iter().map(|m| m.id.0).max().unwrap_or(0);
        let retired = self.extras.as_deref().map_or(0, |e| e.retired_method);
        registered.max(retired).checked_add(1).map(MethodId)
    }

    /// Records that `id` was removed, so that it is never given out again.
    pub(crate) fn retire_method(&mut self, id: MethodId) {
        let e = self.extras_mut();
        e.retired_method = e.retired_method.max(id.0);
    }

    pub(crate) fn method(&self, id: MethodId) -> Option<&Method> {
        self.methods.iter().find(|m| m.id == id)
    }

    pub(crate) fn method_mut(&mut self, id: MethodId) -> Option<&mut Method> {
        self.methods.iter_mut().find(|m| m.id == id)
    }

    /// Makes sure the default method is an active one, if any is.
    pub(crate) fn fix_default(&mut self) {
        let ok = self
            .default_method
            .and_then(|d| self.method(d))
            .is_some_and(|m| m.active);
        if !ok {
            self.default_method = self.methods.iter().find(|m| m.active).map(|m| m.id);
        }
    }

    pub(crate) fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// App passwords: id, label, creation time.
    pub fn app_passwords(&self) -> Vec<(u32, String, Timestamp)> {
        self.extras
            .as_deref()
            .map(|e| {
                e.app_passwords
                    .iter()
                    .map(|a| (a.id, a.label.to_string(), a.created))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Remembered devices: id and expiry.
    pub fn devices(&self) -> Vec<(u32, Timestamp)> {
        self.extras
            .as_deref()
            .map(|e| e.devices.iter().map(|d| (d.id, d.expires)).collect())
            .unwrap_or_default()
    }
}

/// Hashes a `(u64, u64)` key that is already a keyed hash: the first word is the hash.
#[derive(Clone, Copy, Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // The first word of a `(u64, u64)` key is already a keyed hash.
        if self.0 == 0 {
            self.0 = n;
        }
    }
}

/// Why a directory change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// No tenant of that name in the current policy.
    #[error("unknown tenant")]
    UnknownTenant,
    /// No such user.
    #[error("unknown user")]
    UnknownUser,
    /// The user exists already.
    #[error("user exists already")]
    UserExists,
    /// A name is unusable.
    #[error("invalid name: {0}")]
    InvalidName(#[from] name::NameError),
    /// Too many groups.
    #[error("a user may be in at most {MAX_GROUPS} groups")]
    TooManyGroups,
    /// A security key's registration did not hold (the reason, in words).
    #[error("the security key was refused: {0}")]
    KeyRefused(String),
    /// The sixth authenticator app or hardware token.
    #[error("a user may register at most {MAX_OTP_DEVICES} authenticator apps or hardware tokens")]
    TooManyOtpDevices,
    /// Too many methods of all kinds.
    #[error("a user may register at most {MAX_METHODS} methods")]
    TooManyMethods,
    /// No method with that id for this user.
    #[error("unknown method")]
    UnknownMethod,
    /// The method is active already.
    #[error("method is already active")]
    AlreadyActive,
    /// The method is not active yet.
    #[error("method is not active yet")]
    NotActive,
    /// The proof for confirming a method was wrong.
    #[error("the code does not prove this method")]
    WrongCode,
    /// A phone number is not in E.164 form.
    #[error("phone number must be in E.164 form, such as +4712345678")]
    InvalidPhone,
    /// An email address is malformed.
    #[error("email address is malformed")]
    InvalidEmail,
    /// The state store failed; the change was not made (or, for a change the store was
    /// to record last, may stand without its state: see the operation).
    #[error(transparent)]
    Store(#[from] crate::state::StoreError),
    /// The user has an authenticator app or token of this kind with the same secret.
    #[error("this secret is registered for the user already")]
    DuplicateSecret,
    /// An OTP secret or parameter is unusable.
    #[error("invalid secret: {0}")]
    InvalidSecret(String),
    /// The tenant requires two-step verification, so users cannot turn it off.
    #[error("the organisation requires two-step verification; it cannot be turned off")]
    MfaRequired,
    /// App passwords are turned off for the tenant.
    #[error("app passwords are not allowed in this organisation")]
    AppPasswordsDisabled,
    /// Too many app passwords.
    #[error("a user may have at most {MAX_APP_PASSWORDS} app passwords")]
    TooManyAppPasswords,
    /// No app password or device with that id.
    #[error("no such app password or device")]
    UnknownItem,
    /// A label is unusable.
    #[error("label must be 1-64 printable characters")]
    InvalidLabel,
    /// The directory holds as many users as it can address.
    #[error("the directory is full")]
    DirectoryFull,
    /// Security questions need 1-5 non-empty answers.
    #[error("security questions need 1 to 5 non-empty answers")]
    InvalidAnswers,
}

/// The user table. See the module docs for its layout.
///
/// Two known users can never share a key: an insert whose key is taken is refused. That an
/// unknown name hashes to a known user's key is a 2^-128 event per lookup under a secret
/// key, below any risk worth a cache miss on every decision.
pub struct Directory {
    index: DashMap<(u64, u64), u32, std::hash::BuildHasherDefault<KeyHasher>>,
    slots: Slots<RwLock<Option<User>>>,
    keys: [ahash::RandomState; 2],
}

/// A user held under its slot's read lock.
pub struct UserRef<'a>(RwLockReadGuard<'a, Option<User>>);

impl Deref for UserRef<'_> {
    type Target = User;
    fn deref(&self) -> &User {
        match &*self.0 {
            Some(u) => u,
            None => unreachable!("a UserRef is only made for an occupied slot"),
        }
    }
}

/// A user held under its slot's write lock.
pub(crate) struct UserMut<'a>(RwLockWriteGuard<'a, Option<User>>);

impl Deref for UserMut<'_> {
    type Target = User;
    fn deref(&self) -> &User {
        match &*self.0 {
            Some(u) => u,
            None => unreachable!("a UserMut is only made for an occupied slot"),
        }
    }
}

impl DerefMut for UserMut<'_> {
    fn deref_mut(&mut self) -> &mut User {
        match &mut *self.0 {
            Some(u) => u,
            None => unreachable!("a UserMut is only made for an occupied slot"),
        }
    }
}

impl Directory {
    /// An empty directory whose key hash is seeded with `seeds`.
    pub(crate) fn new(seeds: [u64; 8], capacity: usize) -> Self {
        let [a, b, c, d, e, f, g, h] = seeds;
        Self {
            index: DashMap::with_capacity_and_hasher(capacity, Default::default()),
            slots: Slots::new(),
            keys: [
                ahash::RandomState::with_seeds(a, b, c, d),
                ahash::RandomState::with_seeds(e, f, g, h),
            ],
        }
    }

    /// The index key of a user name: its compared form (RFC 8265, see
    /// [`name::canonical`]) under two keyed hashes; `None` for a string no user can have.
    fn key(&self, tenant: &str, user: &str) -> Option<(u64, u64)> {
        let mut buf = [0u8; name::MAX_NAME_LEN];
        let form = name::canonical(user, &mut buf)?;
        let form = form.as_bytes();
        let [k0, k1] = &self.keys;
        Some((
            k0.hash_one((tenant.as_bytes(), form)),
            k1.hash_one((tenant.as_bytes(), form)),
        ))
    }

    fn id(&self, tenant: &str, user: &str) -> Option<u32> {
        let key = self.key(tenant, user)?;
        self.index.get(&key).map(|id| *id)
    }

    /// The user, if there is one, held under its slot's read lock.
    pub fn get(&self, tenant: &str, user: &str) -> Option<UserRef<'_>> {
        let slot = self.slots.get(self.id(tenant, user)?)?;
        let guard = slot.read();
        // Removed between the index lookup and now: as if unknown.
        guard.is_some().then_some(UserRef(guard))
    }

    /// The user for changing, held under its slot's write lock.
    pub(crate) fn get_mut(&self, tenant: &str, user: &str) -> Result<UserMut<'_>, DirectoryError> {
        let slot = self
            .id(tenant, user)
            .and_then(|id| self.slots.get(id))
            .ok_or(DirectoryError::UnknownUser)?;
        let guard = slot.write();
        if guard.is_some() {
            Ok(UserMut(guard))
        } else {
            Err(DirectoryError::UnknownUser)
        }
    }

    /// Adds the user `make` gives; fails if one of that name exists, and then does not
    /// call `make`. Its id must be fresh. The name stays taken while `make` runs, so
    /// `make` may log the change before the user becomes visible.
    pub(crate) fn insert(
        &self,
        tenant: Name,
        user: &str,
        make: impl FnOnce() -> Result<User, DirectoryError>,
    ) -> Result<UserId, DirectoryError> {
        name::validate_user(user)?;
        let key = self
            .key(tenant.as_str(), user)
            .ok_or(DirectoryError::UnknownUser)?;
        match self.index.entry(key) {
            dashmap::Entry::Occupied(_) => Err(DirectoryError::UserExists),
            dashmap::Entry::Vacant(v) => {
                let mut u = make()?;
                u.tenant = tenant;
                u.name = user.into();
                let id = u.id;
                let slot = self
                    .slots
                    .get_or_alloc(id.0)
                    .ok_or(DirectoryError::DirectoryFull)?;
                // The slot is filled before the index points at it, so a reader that finds
                // the id always finds the user. An id in use (a change replayed from a
                // damaged or foreign log) is refused, never written over.
                let mut held = slot.write();
                if held.is_some() {
                    return Err(DirectoryError::UserExists);
                }
                *held = Some(u);
                drop(held);
                v.insert(id.0);
                Ok(id)
            }
        }
    }

    /// The user with id `id`, for changing, held under its slot's write lock.
    pub(crate) fn get_mut_by_id(&self, id: UserId) -> Result<UserMut<'_>, DirectoryError> {
        let guard = self
            .slots
            .get(id.0)
            .ok_or(DirectoryError::UnknownUser)?
            .write();
        if guard.is_some() {
            Ok(UserMut(guard))
        } else {
            Err(DirectoryError::UnknownUser)
        }
    }

    /// Removes the user held by `u`, whose write lock is released on return.
    pub(crate) fn remove(&self, mut u: UserMut<'_>) -> Option<User> {
        if let Some(key) = self.key(u.tenant.as_str(), &u.name) {
            self.index.remove(&key);
        }
        u.0.take()
    }

    /// Calls `f` with every user, each under its slot's read lock in turn.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&User)) {
        for slot in self.slots.iter() {
            if let Some(u) = slot.read().as_ref() {
                f(u);
            }
        }
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Names of a tenant's users, sorted (for administrators; walks the whole arena).
    pub fn user_names(&self, tenant: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let g = slot.read();
                g.as_ref()
                    .filter(|u| u.tenant.as_str() == tenant)
                    .map(|u| u.name.to_string())
            })
            .collect();
        names.sort();
        names
    }

    /// Releases unused capacity of the index (after a bulk load).
    pub fn shrink_to_fit(&self) {
        self.index.shrink_to_fit();
    }

    /// Checks the directory's internal consistency, for fuzzing: every index entry points
    /// at an occupied slot holding a user of that key and id, no occupied slot is missing
    /// from the index, and every user is consistent with itself. Ids are below `ids`. Not
    /// for concurrent use (it takes locks in an order the engine does not).
    #[cfg(fuzzing)]
    pub fn check_invariants(&self, ids: u32) -> Result<(), String> {
        for entry in self.index.iter() {
            let (key, id) = (*entry.key(), *entry.value());
            let slot = self
                .slots
                .get(id)
                .ok_or_else(|| format!("the index points at slot {id}, which does not exist"))?;
            let guard = slot.read();
            let user = guard
                .as_ref()
                .ok_or_else(|| format!("the index points at slot {id}, which is empty"))?;
            if user.id.0 != id {
                return Err(format!("slot {id} holds user {}", user.id.0));
            }
            if id >= ids {
                return Err(format!(
                    "user {id} has an id never handed out (next is {ids})"
                ));
            }
            if self.key(user.tenant.as_str(), &user.name) != Some(key) {
                return Err(format!(
                    "{:?} is indexed under another name's key",
                    user.name
                ));
            }
            user.check_invariants()?;
        }
        let occupied = (0..ids)
            .filter_map(|i| self.slots.get(i))
            .filter(|s| s.read().is_some())
            .count();
        if occupied != self.index.len() {
            return Err(format!(
                "{occupied} occupied slots but {} index entries",
                self.index.len()
            ));
        }
        Ok(())
    }
}

#[cfg(fuzzing)]
impl User {
    fn check_invariants(&self) -> Result<(), String> {
        let name = &self.name;
        let groups = self.extras.as_deref().map_or(0, |e| e.groups.len());
        if self.has_groups != (groups > 0) {
            return Err(format!(
                "{name}: has_groups is {} with {groups} groups",
                self.has_groups
            ));
        }
        let mut ids: Vec<u32> = self.methods.iter().map(|m| m.id.0).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("{name}: two methods share an id: {ids:?}"));
        }
        if let Some(d) = self.default_method {
            let method = self
                .method(d)
                .ok_or_else(|| format!("{name}: the default method {} does not exist", d.0))?;
            if !method.active && self.active_methods() > 0 {
                return Err(format!(
                    "{name}: the default method is pending, another is active"
                ));
            }
        }
        if let Some(e) = self.extras.as_deref() {
            let mut ids: Vec<u32> = e.app_passwords.iter().map(|a| a.id).collect();
            ids.extend(e.devices.iter().map(|d| d.id));
            ids.sort_unstable();
            if ids.windows(2).any(|w| w[0] == w[1]) || ids.last().is_some_and(|&l| l > e.next_id) {
                return Err(format!(
                    "{name}: app password and device ids {ids:?} repeat or exceed the last issued {}",
                    e.next_id
                ));
            }
        }
        Ok(())
    }
}

/// Normalises a phone number to E.164 (`+` and 8-15 digits; spaces, dashes and dots
/// between digits are dropped).
pub fn normalise_phone(s: &str) -> Result<String, DirectoryError> {
    let rest = s
        .trim()
        .strip_prefix('+')
        .ok_or(DirectoryError::InvalidPhone)?;
    let mut out = String::from("+");
    for c in rest.chars() {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' => {}
            _ => return Err(DirectoryError::InvalidPhone),
        }
    }
    let digits = out.len() - 1;
    if !(8..=15).contains(&digits) || out.as_bytes().get(1) == Some(&b'0') {
        return Err(DirectoryError::InvalidPhone);
    }
    Ok(out)
}

/// Checks the shape of an email address (one `@`, non-empty parts, a dot in the domain, no
/// spaces or control characters, at most 254 bytes).
pub fn check_email(s: &str) -> Result<(), DirectoryError> {
    let (local, domain) = s.split_once('@').ok_or(DirectoryError::InvalidEmail)?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(DirectoryError::InvalidEmail)
    }
}

/// Checks a label for an app password or device: 1-64 characters, none of them control.
pub fn check_label(s: &str) -> Result<(), DirectoryError> {
    let n = s.chars().count();
    if (1..=64).contains(&n) && !s.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(DirectoryError::InvalidLabel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_names_compared_forms() {
        let d = Directory::new([1, 2, 3, 4, 5, 6, 7, 8], 0);
        assert_eq!(d.key("t", "Kari@Kommune.NO"), d.key("t", "kari@kommune.no"));
        assert_eq!(d.key("t", "Åse"), d.key("t", "åse"));
        assert_eq!(d.key("t", "A\u{30A}se"), d.key("t", "åse"));
        assert_eq!(d.key("t", "ka\u{200B}ri"), None);
        assert_ne!(d.key("t", "kari"), d.key("u", "kari"));
        // The tenant/user boundary is part of the key.
        assert_ne!(d.key("ab", "c"), d.key("a", "bc"));
        assert_eq!(d.key("t", &"x".repeat(129)), None);
        assert!(d.key("t", &"u".repeat(128)).is_some());
        let t = Name::intern("t").unwrap();
        let make = || Ok(User::new(UserId(1), Box::new([]), false));
        assert!(d.insert(t, "Kari", make).is_ok());
        assert_eq!(d.insert(t, "kari", make), Err(DirectoryError::UserExists));
        assert_eq!(
            d.get("t", "KARI").map(|u| u.name.to_string()),
            Some("Kari".into())
        );
        assert!(matches!(
            d.insert(t, "a\u{1f}b", make),
            Err(DirectoryError::InvalidName(_))
        ));
        assert_eq!(d.user_names("t"), ["Kari"]);
    }

    #[test]
    fn phone_and_email_shapes() {
        assert_eq!(normalise_phone("+47 123 45 678").unwrap(), "+4712345678");
        assert_eq!(normalise_phone("+47-123.45.678").unwrap(), "+4712345678");
        assert!(normalise_phone("12345678").is_err());
        assert!(normalise_phone("+47 12a45678").is_err());
        assert!(normalise_phone("+٤٧١٢٣٤٥٦٧٨").is_err());
        assert!(normalise_phone("+0123456789").is_err());
        assert!(normalise_phone("+1234567").is_err());
        assert!(check_email("kari@kommune.no").is_ok());
        assert!(check_email("kari@kommune").is_err());
        assert!(check_email("kari kommune@x.no").is_err());
        assert!(check_email("@x.no").is_err());
        assert!(check_label("Outlook på PC").is_ok());
        assert!(check_label("").is_err());
        assert!(check_label("a\nb").is_err());
    }

    #[test]
    fn eligible_lists_default_first_and_filters_purpose() {
        let mut u = User::new(UserId(1), Box::new([]), false);
        let phone = |id, kind, active| Method {
            id: MethodId(id),
            kind,
            active,
            material: Material::Phone {
                number: "+4712345678".into(),
            },
            drift_hint: Default::default(),
        };
        u.methods.push(phone(1, MethodKind::Sms, true));
        u.methods.push(Method {
            id: MethodId(2),
            kind: MethodKind::Email,
            active: true,
            material: Material::Email {
                address: "a@b.no".into(),
            },
            drift_hint: Default::default(),
        });
        u.methods.push(phone(3, MethodKind::Voice, true));
        u.methods.push(phone(4, MethodKind::Voice, false));
        u.default_method = Some(MethodId(3));
        let ids: Vec<u32> = u.eligible(Purpose::SignIn).map(|m| m.id.0).collect();
        assert_eq!(ids, [3, 1]);
        let ids: Vec<u32> = u.eligible(Purpose::PasswordReset).map(|m| m.id.0).collect();
        assert_eq!(ids, [3, 1, 2]);
        assert_eq!(u.eligible(Purpose::LegacyProtocol).count(), 0);
        assert_eq!(u.methods[0].hint().as_deref(), Some("•••• 78"));
        assert_eq!(u.methods[1].hint().as_deref(), Some("a•••@b.no"));
    }
}
