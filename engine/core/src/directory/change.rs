//! The directory's seam: every change to it is a value.
//!
//! An administrator operation (and a decision that remembers a device) checks what it may
//! do against the user as it is, then describes what it does as a batch of [`Change`]s. The
//! engine hands the batch to its [`ChangeLog`], which makes it durable or publishes it,
//! and only then applies it, under the user's write lock the whole time, and acknowledges
//! the operation. Applying is the one place the directory changes, the same code whether
//! the batch was just made, read back from a log after a restart, or received from another
//! node: so a directory rebuilt from a snapshot ([`crate::Engine::snapshot`]) and the
//! changes after it is the directory that made them.
//!
//! A change names its user by id, which the engine gives out once and never again: after
//! a removal the snapshot still carries the next id to give out ([`Change`]'s
//! `NextUser`). Byte form: record format 1 (`record.rs`), below.

use crate::directory::{
    AppPassword, Device, DirectoryError, MAX_DEVICES, Material, Method, MethodKind, User,
};
use crate::id::{MethodId, UserId};
use crate::name::Name;
use crate::otp::{Digits, OtpKey, TotpParams};
use crate::push::DeviceKey;
use crate::record::{FORMAT, Get, Put, RecordError};
use crate::secret::SecretDigest;
use crate::state::StoreError;
use crate::time::Timestamp;

/// Takes each batch of changes before it is applied: makes it durable, or shares it with
/// the other nodes. An error refuses the operation, and nothing of the batch is applied.
pub trait ChangeLog: Send + Sync {
    /// Keeps `changes`, one batch, whole or not at all. A shared log refuses a batch made
    /// on a directory that lacks another node's later change with a
    /// [conflict](StoreError::conflict).
    fn append(&self, changes: &[Change]) -> Result<(), StoreError>;

    /// After a conflict: waits, briefly, until this node's directory holds every change
    /// the log held when it refused; whether it does. The operation may then be made
    /// again on the directory as it is. A log of one node never refuses, so never waits.
    fn settle(&self) -> bool {
        false
    }

    /// Held from before an operation checks what it may do until its batch is logged and
    /// applied. A shared log applies other nodes' batches under the same lock, so none
    /// lands between the check and the append (an id given out, say, that another node's
    /// batch gives out too). A log of one node needs none.
    fn hold(&self) -> Option<parking_lot::MutexGuard<'_, ()>> {
        None
    }
}

/// Keeps nothing: a directory that lives only in this process.
#[derive(Debug, Default)]
pub struct InMemoryOnly;

impl ChangeLog for InMemoryOnly {
    fn append(&self, _changes: &[Change]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One change to the directory. Opaque: a log keeps its bytes ([`encode`](Self::encode)),
/// and the engine applies it.
#[derive(Clone)]
pub struct Change(pub(crate) Op);

/// A method as a change carries it: everything but the engine's drift hint.
#[derive(Clone)]
pub(crate) struct MethodRecord {
    pub(crate) id: MethodId,
    pub(crate) kind: MethodKind,
    pub(crate) active: bool,
    pub(crate) material: Material,
}

#[derive(Clone)]
pub(crate) enum Op {
    /// User ids below this are never given out (again).
    NextUser(u32),
    AddUser {
        id: UserId,
        tenant: Name,
        name: Box<str>,
        groups: Box<[Name]>,
        passwordless: bool,
    },
    RemoveUser(UserId),
    SetGroups(UserId, Box<[Name]>),
    SetPasswordless(UserId, bool),
    SetMfaOptOut(UserId, bool),
    AddMethod(UserId, MethodRecord),
    ActivateMethod(UserId, MethodId),
    RemoveMethod(UserId, MethodId),
    /// Every method and every remembered device (a lost phone).
    RemoveAllMethods(UserId),
    SetDefault(UserId, MethodId),
    /// Method ids up to this one are never given out again.
    RetireMethods(UserId, u32),
    AddAppPassword {
        user: UserId,
        id: u32,
        label: Box<str>,
        digest: SecretDigest,
        created: Timestamp,
    },
    RevokeAppPassword(UserId, u32),
    /// Remembers a device, first forgetting those expired at `now` and, when full, the
    /// oldest.
    RememberDevice {
        user: UserId,
        id: u32,
        digest: SecretDigest,
        expires: Timestamp,
        now: Timestamp,
    },
    /// One remembered device, or all of them.
    ForgetDevices(UserId, Option<u32>),
    /// A push device proved its key: the method holds the key and is active.
    PairPush(UserId, MethodId, [u8; crate::push::KEY_LEN]),
    /// App password and device ids up to this one are never given out again.
    ItemsIssued(UserId, u32),
}

impl Change {
    /// The user it changes (`None` for a change to the whole directory).
    pub fn user(&self) -> Option<UserId> {
        match &self.0 {
            Op::NextUser(_) => None,
            Op::AddUser { id: u, .. }
            | Op::RemoveUser(u)
            | Op::SetGroups(u, _)
            | Op::SetPasswordless(u, _)
            | Op::SetMfaOptOut(u, _)
            | Op::AddMethod(u, _)
            | Op::ActivateMethod(u, _)
            | Op::RemoveMethod(u, _)
            | Op::RemoveAllMethods(u)
            | Op::SetDefault(u, _)
            | Op::RetireMethods(u, _)
            | Op::AddAppPassword { user: u, .. }
            | Op::RevokeAppPassword(u, _)
            | Op::RememberDevice { user: u, .. }
            | Op::ForgetDevices(u, _)
            | Op::PairPush(u, ..)
            | Op::ItemsIssued(u, _) => Some(*u),
        }
    }

    /// What kind of change it is, in words (for logs; never a secret).
    pub fn kind(&self) -> &'static str {
        match &self.0 {
            Op::NextUser(_) => "next_user",
            Op::AddUser { .. } => "add_user",
            Op::RemoveUser(_) => "remove_user",
            Op::SetGroups(..) => "set_groups",
            Op::SetPasswordless(..) => "set_passwordless",
            Op::SetMfaOptOut(..) => "set_mfa_opt_out",
            Op::AddMethod(..) => "add_method",
            Op::ActivateMethod(..) => "activate_method",
            Op::RemoveMethod(..) => "remove_method",
            Op::RemoveAllMethods(_) => "remove_all_methods",
            Op::SetDefault(..) => "set_default",
            Op::RetireMethods(..) => "retire_methods",
            Op::AddAppPassword { .. } => "add_app_password",
            Op::RevokeAppPassword(..) => "revoke_app_password",
            Op::RememberDevice { .. } => "remember_device",
            Op::ForgetDevices(..) => "forget_devices",
            Op::ItemsIssued(..) => "items_issued",
            Op::PairPush(..) => "pair_push",
        }
    }
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Kind and user only: a change can carry a secret.
        match self.user() {
            Some(u) => write!(f, "Change({} of user {})", self.kind(), u.0),
            None => write!(f, "Change({})", self.kind()),
        }
    }
}

/// Byte form, record format 1: the format, a tag, then the fields (integers big-endian,
/// strings with a `u16` length, names as strings, flags as 0 or 1).
///
/// | tag | change | fields |
/// |---|---|---|
/// | 0 | next user | id `u32` |
/// | 1 | add user | id, tenant, name, groups (count `u8`, names), passwordless |
/// | 2 | remove user | id |
/// | 3 | set groups | id, groups |
/// | 4, 5 | set passwordless, set MFA opt-out | id, flag |
/// | 6 | add method | id, method `u32`, kind `u8`, active, material |
/// | 7, 8, 10 | activate, remove, make default | id, method `u32` |
/// | 9 | remove all methods | id |
/// | 11 | retire methods up to | id, method `u32` |
/// | 12 | add app password | id, item `u32`, label, digest (32 bytes), created `u64` ms |
/// | 13 | revoke app password | id, item `u32` |
/// | 14 | remember device | id, item `u32`, digest, expires `u64` ms, now `u64` ms |
/// | 15 | forget devices | id, `u8` 0 (all) or 1 and item `u32` |
/// | 16 | items issued up to | id, item `u32` |
///
/// A material is a tag and its fields: 0 TOTP (key, digits `u8`, period `u32`, t0 `u64`),
/// 1 HOTP (key, digits), 2 phone (E.164 number), 3 email (address), 4 security key, 5
/// security questions (count `u8`, digests). A key is its algorithm `u8` and its two
/// precomputed HMAC states (`otp.rs`). Kinds: 0 app, 1 token, 2 SMS, 3 voice, 4 security
/// key, 5 email, 6 questions.
impl Change {
    /// Appends the change's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut p = Put(out);
        p.u8(FORMAT);
        let user = |p: &mut Put<'_>, u: &UserId| p.u32(u.0);
        match &self.0 {
            Op::NextUser(n) => {
                p.u8(0);
                p.u32(*n);
            }
            Op::AddUser {
                id,
                tenant,
                name,
                groups,
                passwordless,
            } => {
                p.u8(1);
                user(&mut p, id);
                p.str(tenant.as_str());
                p.str(name);
                put_groups(&mut p, groups);
                p.u8(u8::from(*passwordless));
            }
            Op::RemoveUser(u) => {
                p.u8(2);
                user(&mut p, u);
            }
            Op::SetGroups(u, groups) => {
                p.u8(3);
                user(&mut p, u);
                put_groups(&mut p, groups);
            }
            Op::SetPasswordless(u, on) | Op::SetMfaOptOut(u, on) => {
                p.u8(if matches!(self.0, Op::SetPasswordless(..)) {
                    4
                } else {
                    5
                });
                user(&mut p, u);
                p.u8(u8::from(*on));
            }
            Op::AddMethod(u, m) => {
                p.u8(6);
                user(&mut p, u);
                p.u32(m.id.0);
                p.u8(kind_tag(m.kind));
                p.u8(u8::from(m.active));
                put_material(&mut p, &m.material);
            }
            Op::ActivateMethod(u, m) | Op::RemoveMethod(u, m) | Op::SetDefault(u, m) => {
                p.u8(match self.0 {
                    Op::ActivateMethod(..) => 7,
                    Op::RemoveMethod(..) => 8,
                    _ => 10,
                });
                user(&mut p, u);
                p.u32(m.0);
            }
            Op::RemoveAllMethods(u) => {
                p.u8(9);
                user(&mut p, u);
            }
            Op::PairPush(u, m, key) => {
                p.u8(17);
                user(&mut p, u);
                p.u32(m.0);
                p.bytes(key);
            }
            Op::RetireMethods(u, n) | Op::RevokeAppPassword(u, n) | Op::ItemsIssued(u, n) => {
                p.u8(match self.0 {
                    Op::RetireMethods(..) => 11,
                    Op::RevokeAppPassword(..) => 13,
                    _ => 16,
                });
                user(&mut p, u);
                p.u32(*n);
            }
            Op::AddAppPassword {
                user: u,
                id,
                label,
                digest,
                created,
            } => {
                p.u8(12);
                user(&mut p, u);
                p.u32(*id);
                p.str(label);
                p.bytes(&digest.to_bytes());
                p.u64(created.as_millis());
            }
            Op::RememberDevice {
                user: u,
                id,
                digest,
                expires,
                now,
            } => {
                p.u8(14);
                user(&mut p, u);
                p.u32(*id);
                p.bytes(&digest.to_bytes());
                p.u64(expires.as_millis());
                p.u64(now.as_millis());
            }
            Op::ForgetDevices(u, item) => {
                p.u8(15);
                user(&mut p, u);
                match item {
                    None => p.u8(0),
                    Some(i) => {
                        p.u8(1);
                        p.u32(*i);
                    }
                }
            }
        }
    }

    /// A change from its bytes, refusing anything [`encode`](Self::encode) would not have
    /// written, or that no operation could have made (a name no user can have, a phone
    /// number not in E.164 form, a material that does not fit its kind, ...).
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut g = Get(bytes);
        let change = Self::get(&mut g)?;
        g.finish()?;
        Ok(change)
    }

    /// Appends a batch: its count (`u16`), then each change.
    pub fn encode_batch(changes: &[Self], out: &mut Vec<u8>) {
        let n = u16::try_from(changes.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for c in changes.iter().take(usize::from(n)) {
            c.encode(out);
        }
    }

    /// A batch from its bytes.
    pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Self>, RecordError> {
        let mut g = Get(bytes);
        let n = u16::from_be_bytes(g.array()?);
        // At most one change per remaining byte: a count cannot make us allocate more.
        let mut out = Vec::with_capacity(usize::from(n).min(bytes.len()));
        for _ in 0..n {
            out.push(Self::get(&mut g)?);
        }
        g.finish()?;
        Ok(out)
    }

    fn get(g: &mut Get<'_>) -> Result<Self, RecordError> {
        if g.u8()? != FORMAT {
            return Err(RecordError("unknown format"));
        }
        let tag = g.u8()?;
        if tag == 0 {
            return Ok(Self(Op::NextUser(g.u32()?)));
        }
        let u = UserId(g.u32()?);
        let op = match tag {
            1 => {
                let tenant =
                    Name::intern(g.str()?).map_err(|_| RecordError("an unusable tenant name"))?;
                let name = g.str()?;
                crate::name::validate_user(name)
                    .map_err(|_| RecordError("a name no user can have"))?;
                Op::AddUser {
                    id: u,
                    tenant,
                    name: name.into(),
                    groups: get_groups(g)?,
                    passwordless: g.flag()?,
                }
            }
            2 => Op::RemoveUser(u),
            3 => Op::SetGroups(u, get_groups(g)?),
            4 => Op::SetPasswordless(u, g.flag()?),
            5 => Op::SetMfaOptOut(u, g.flag()?),
            6 => {
                let id = MethodId(g.u32()?);
                let kind = kind_of(g.u8()?)?;
                let active = g.flag()?;
                let material = get_material(g, kind)?;
                Op::AddMethod(
                    u,
                    MethodRecord {
                        id,
                        kind,
                        active,
                        material,
                    },
                )
            }
            7 => Op::ActivateMethod(u, MethodId(g.u32()?)),
            8 => Op::RemoveMethod(u, MethodId(g.u32()?)),
            9 => Op::RemoveAllMethods(u),
            10 => Op::SetDefault(u, MethodId(g.u32()?)),
            11 => Op::RetireMethods(u, g.u32()?),
            12 => {
                let id = g.u32()?;
                let label = g.str()?;
                crate::directory::check_label(label)
                    .map_err(|_| RecordError("an unusable label"))?;
                Op::AddAppPassword {
                    user: u,
                    id,
                    label: label.into(),
                    digest: SecretDigest::from_bytes(g.array()?),
                    created: Timestamp::from_millis(g.u64()?),
                }
            }
            13 => Op::RevokeAppPassword(u, g.u32()?),
            14 => Op::RememberDevice {
                user: u,
                id: g.u32()?,
                digest: SecretDigest::from_bytes(g.array()?),
                expires: Timestamp::from_millis(g.u64()?),
                now: Timestamp::from_millis(g.u64()?),
            },
            15 => Op::ForgetDevices(u, if g.flag()? { Some(g.u32()?) } else { None }),
            16 => Op::ItemsIssued(u, g.u32()?),
            17 => Op::PairPush(u, MethodId(g.u32()?), g.array()?),
            _ => return Err(RecordError("an unknown change")),
        };
        Ok(Self(op))
    }
}

fn put_groups(p: &mut Put<'_>, groups: &[Name]) {
    let n = groups.len().min(crate::directory::MAX_GROUPS);
    p.u8(u8::try_from(n).unwrap_or(u8::MAX));
    for g in groups.iter().take(n) {
        p.str(g.as_str());
    }
}

fn get_groups(g: &mut Get<'_>) -> Result<Box<[Name]>, RecordError> {
    let n = usize::from(g.u8()?);
    if n > crate::directory::MAX_GROUPS {
        return Err(RecordError("too many groups"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let given = g.str()?;
        let name = Name::group(given).map_err(|_| RecordError("an unusable group name"))?;
        if name.as_str() != given {
            return Err(RecordError("a group name not in its compared form"));
        }
        if out.contains(&name) {
            return Err(RecordError("a group appears twice"));
        }
        out.push(name);
    }
    Ok(out.into_boxed_slice())
}

const KINDS: [MethodKind; 8] = [
    MethodKind::AuthenticatorApp,
    MethodKind::HardwareToken,
    MethodKind::Sms,
    MethodKind::Voice,
    MethodKind::SecurityKey,
    MethodKind::Email,
    MethodKind::SecurityQuestions,
    MethodKind::Push,
];

fn kind_tag(kind: MethodKind) -> u8 {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

fn kind_of(tag: u8) -> Result<MethodKind, RecordError> {
    KINDS
        .get(usize::from(tag))
        .copied()
        .ok_or(RecordError("an unknown method kind"))
}

fn put_material(p: &mut Put<'_>, m: &Material) {
    match m {
        Material::Totp { key, params } => {
            p.u8(0);
            key.put(p);
            p.u8(params.digits.get());
            p.u32(params.period);
            p.u64(params.t0);
        }
        Material::Hotp { key, digits } => {
            p.u8(1);
            key.put(p);
            p.u8(digits.get());
        }
        Material::Phone { number } => {
            p.u8(2);
            p.str(number);
        }
        Material::Email { address } => {
            p.u8(3);
            p.str(address);
        }
        Material::SecurityKey(None) => p.u8(4),
        Material::SecurityKey(Some(c)) => {
            p.u8(7);
            p.blob(&c.id);
            c.key.put(p);
        }
        Material::Push(key) => {
            p.u8(6);
            match key {
                DeviceKey::Enrolling { token, expires } => {
                    p.u8(0);
                    p.bytes(&token.to_bytes());
                    p.u64(expires.as_millis());
                }
                DeviceKey::Paired(key) => {
                    p.u8(1);
                    p.bytes(key);
                }
            }
        }
        Material::Questions { answers } => {
            p.u8(5);
            p.u8(u8::try_from(answers.len()).unwrap_or(u8::MAX));
            for a in answers.iter().take(usize::from(u8::MAX)) {
                p.bytes(&a.to_bytes());
            }
        }
    }
}

fn get_material(g: &mut Get<'_>, kind: MethodKind) -> Result<Material, RecordError> {
    let digits = |d: u8| Digits::new(d).ok_or(RecordError("digits outside 6-8"));
    let material = match g.u8()? {
        0 => Material::Totp {
            key: OtpKey::get(g)?,
            params: TotpParams {
                digits: digits(g.u8()?)?,
                period: match g.u32()? {
                    p @ 10..=120 => p,
                    _ => return Err(RecordError("a period outside 10-120 seconds")),
                },
                t0: g.u64()?,
            },
        },
        1 => Material::Hotp {
            key: OtpKey::get(g)?,
            digits: digits(g.u8()?)?,
        },
        2 => {
            let number = g.str()?;
            if crate::directory::normalise_phone(number).as_deref() != Ok(number) {
                return Err(RecordError("a phone number not in E.164 form"));
            }
            Material::Phone {
                number: number.into(),
            }
        }
        3 => {
            let address = g.str()?;
            crate::directory::check_email(address)
                .map_err(|_| RecordError("a malformed email address"))?;
            Material::Email {
                address: address.into(),
            }
        }
        4 => Material::SecurityKey(None),
        7 => {
            let id = g.blob()?;
            if id.is_empty() || id.len() > crate::webauthn::MAX_CREDENTIAL_ID {
                return Err(RecordError("a credential id of the wrong length"));
            }
            Material::SecurityKey(Some(Box::new(crate::webauthn::Credential {
                id: id.into(),
                key: crate::webauthn::PublicKey::get(g)?,
            })))
        }
        5 => {
            let n = g.u8()?;
            if !(1..=5).contains(&n) {
                return Err(RecordError("security questions need 1-5 answers"));
            }
            let mut answers = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                answers.push(SecretDigest::from_bytes(g.array()?));
            }
            Material::Questions {
                answers: answers.into_boxed_slice(),
            }
        }
        6 => Material::Push(match g.u8()? {
            0 => DeviceKey::Enrolling {
                token: SecretDigest::from_bytes(g.array()?),
                expires: Timestamp::from_millis(g.u64()?),
            },
            1 => DeviceKey::Paired(g.array()?),
            _ => return Err(RecordError("a push key is neither enrolling nor paired")),
        }),
        _ => return Err(RecordError("an unknown method material")),
    };
    let fits = matches!(
        (kind, &material),
        (MethodKind::AuthenticatorApp, Material::Totp { .. })
            | (MethodKind::HardwareToken, Material::Hotp { .. })
            | (MethodKind::Sms | MethodKind::Voice, Material::Phone { .. })
            | (MethodKind::Email, Material::Email { .. })
            | (MethodKind::SecurityKey, Material::SecurityKey(_))
            | (MethodKind::SecurityQuestions, Material::Questions { .. })
            | (MethodKind::Push, Material::Push(_))
    );
    if fits {
        Ok(material)
    } else {
        Err(RecordError("a method's material does not fit its kind"))
    }
}

impl User {
    /// Applies a change to this user: the one place a user changes. Refuses a change that
    /// does not fit the user as it is (a method id taken, an unknown method or item), and
    /// then changes nothing.
    pub(crate) fn apply(&mut self, op: &Op) -> Result<(), DirectoryError> {
        match op {
            Op::NextUser(_) | Op::AddUser { .. } | Op::RemoveUser(_) => {
                return Err(DirectoryError::UnknownUser);
            }
            Op::SetGroups(_, groups) => self.set_groups(groups.clone()),
            Op::SetPasswordless(_, on) => self.passwordless = *on,
            Op::SetMfaOptOut(_, on) => self.mfa_opt_out = *on,
            Op::AddMethod(_, m) => {
                let retired = self.extras.as_deref().map_or(0, |e| e.retired_method);
                if m.id.0 == 0 || m.id.0 <= retired || self.method(m.id).is_some() {
                    return Err(DirectoryError::UnknownMethod);
                }
                if self.methods.len() >= crate::directory::MAX_METHODS {
                    return Err(DirectoryError::TooManyMethods);
                }
                // Exact capacity: a growing Vec would reserve four methods for the first.
                self.methods.reserve_exact(1);
                self.methods.push(Method {
                    id: m.id,
                    kind: m.kind,
                    active: m.active,
                    material: m.material.clone(),
                    drift_hint: Default::default(),
                });
                self.fix_default();
            }
            Op::PairPush(_, id, key) => {
                let m = self.method_mut(*id).ok_or(DirectoryError::UnknownMethod)?;
                if m.kind != MethodKind::Push {
                    return Err(DirectoryError::UnknownMethod);
                }
                m.material = Material::Push(DeviceKey::Paired(*key));
                m.active = true;
                self.fix_default();
            }
            Op::ActivateMethod(_, id) => {
                self.method_mut(*id)
                    .ok_or(DirectoryError::UnknownMethod)?
                    .active = true;
                self.fix_default();
            }
            Op::RemoveMethod(_, id) => {
                self.method(*id).ok_or(DirectoryError::UnknownMethod)?;
                self.methods.retain(|m| m.id != *id);
                self.retire_method(*id);
                self.fix_default();
            }
            Op::RemoveAllMethods(_) => {
                let last = self.methods.iter().map(|m| m.id).max();
                self.methods.clear();
                if let Some(last) = last {
                    self.retire_method(last);
                }
                self.default_method = None;
                if let Some(e) = self.extras.as_deref_mut() {
                    e.devices.clear();
                }
            }
            Op::SetDefault(_, id) => {
                let m = self.method(*id).ok_or(DirectoryError::UnknownMethod)?;
                if !m.active {
                    return Err(DirectoryError::NotActive);
                }
                self.default_method = Some(*id);
            }
            Op::RetireMethods(_, up_to) => self.retire_method(MethodId(*up_to)),
            Op::AddAppPassword {
                id,
                label,
                digest,
                created,
                ..
            } => {
                let e = self.extras_mut();
                if *id <= e.next_id {
                    return Err(DirectoryError::UnknownItem);
                }
                if e.app_passwords.len() >= crate::directory::MAX_APP_PASSWORDS {
                    return Err(DirectoryError::TooManyAppPasswords);
                }
                e.next_id = *id;
                e.app_passwords.push(AppPassword {
                    id: *id,
                    label: label.clone(),
                    digest: *digest,
                    created: *created,
                });
            }
            Op::RevokeAppPassword(_, id) => {
                let e = self
                    .extras
                    .as_deref_mut()
                    .ok_or(DirectoryError::UnknownItem)?;
                let before = e.app_passwords.len();
                e.app_passwords.retain(|a| a.id != *id);
                if e.app_passwords.len() == before {
                    return Err(DirectoryError::UnknownItem);
                }
            }
            Op::RememberDevice {
                id,
                digest,
                expires,
                now,
                ..
            } => {
                let e = self.extras_mut();
                if *id <= e.next_id {
                    return Err(DirectoryError::UnknownItem);
                }
                e.next_id = *id;
                e.devices.retain(|d| d.expires > *now);
                if e.devices.len() >= MAX_DEVICES {
                    e.devices.remove(0);
                }
                e.devices.push(Device {
                    id: *id,
                    digest: *digest,
                    expires: *expires,
                });
            }
            Op::ForgetDevices(_, item) => {
                let Some(e) = self.extras.as_deref_mut() else {
                    return match item {
                        None => Ok(()),
                        Some(_) => Err(DirectoryError::UnknownItem),
                    };
                };
                match item {
                    None => e.devices.clear(),
                    Some(id) => {
                        let before = e.devices.len();
                        e.devices.retain(|d| d.id != *id);
                        if e.devices.len() == before {
                            return Err(DirectoryError::UnknownItem);
                        }
                    }
                }
            }
            Op::ItemsIssued(_, n) => {
                let e = self.extras_mut();
                e.next_id = e.next_id.max(*n);
            }
        }
        Ok(())
    }

    /// The changes that make this user from nothing, for a snapshot.
    pub(crate) fn recreate(&self) -> Vec<Change> {
        let id = self.id;
        let mut out = vec![Change(Op::AddUser {
            id,
            tenant: self.tenant,
            name: self.name.clone(),
            groups: self.groups().into(),
            passwordless: self.passwordless,
        })];
        let mut push = |op| out.push(Change(op));
        if self.mfa_opt_out {
            push(Op::SetMfaOptOut(id, true));
        }
        for m in &self.methods {
            push(Op::AddMethod(
                id,
                MethodRecord {
                    id: m.id,
                    kind: m.kind,
                    active: m.active,
                    material: m.material.clone(),
                },
            ));
        }
        if let Some(d) = self.default_method {
            push(Op::SetDefault(id, d));
        }
        if let Some(e) = self.extras.as_deref() {
            // After the methods: a method kept from before a removal has a lower id.
            if e.retired_method > 0 {
                push(Op::RetireMethods(id, e.retired_method));
            }
            // App passwords and devices share one sequence of ids: in order of id.
            let mut items: Vec<(u32, Op)> = e
                .app_passwords
                .iter()
                .map(|a| {
                    let op = Op::AddAppPassword {
                        user: id,
                        id: a.id,
                        label: a.label.clone(),
                        digest: a.digest,
                        created: a.created,
                    };
                    (a.id, op)
                })
                .chain(e.devices.iter().map(|d| {
                    let op = Op::RememberDevice {
                        user: id,
                        id: d.id,
                        digest: d.digest,
                        expires: d.expires,
                        now: Timestamp::EPOCH,
                    };
                    (d.id, op)
                }))
                .collect();
            items.sort_by_key(|(i, _)| *i);
            for (_, op) in items {
                push(op);
            }
            if e.next_id > 0 {
                push(Op::ItemsIssued(id, e.next_id));
            }
        }
        out
    }
}
