//! Phantoms: how a name nobody has is decided.
//!
//! An unknown name must get the answers a known user with a wrong proof gets, in the same
//! shapes and at the same cost, or anyone could list which accounts exist. So an unknown
//! name is decided as a *phantom*: a user record that goes through exactly the code a real
//! user goes through, with registered methods (ids, kinds, phone hints) like a real user's,
//! and secrets that nobody holds.
//!
//! The phantoms are a fixed pool of [`POOL`] records. A name picks its phantom by the keyed
//! hash that counts its failures, so asking twice gives the same phantom; the records
//! themselves are derived from the pepper, so every engine with the same pepper builds the
//! same pool. A record is built on first use and then kept in its own slot, under its own
//! lock, like a real user's: reading it costs a cache miss as a real user's record does,
//! rather than hitting one record that every unknown name shares.
//!
//! A phantom can never be let in by a secret: the decision refuses any match of a
//! phantom's OTP or sent code before anything is committed (`decide.rs`). Its codes are
//! random, never shown and never sent, so a match could only be a guess anyway.

use std::sync::OnceLock;

use parking_lot::{RwLock, RwLockReadGuard};
use smallvec::SmallVec;

use crate::directory::{Material, Method, MethodKind, User};
use crate::id::{MethodId, UserId};
use crate::otp::{Algorithm, OtpKey, TotpParams};
use crate::secret::Pepper;
use MethodKind::{AuthenticatorApp as App, Push, SecurityKey as Key, Sms, Voice};

/// Phantoms in the pool of each tier. Large enough that the pool does not sit in a cache
/// the way one shared record would; small enough to cost little (records are built on
/// first use, and an unused slot is one pointer).
#[cfg(not(fuzzing))]
pub(crate) const POOL: usize = 1 << 14;
#[cfg(fuzzing)]
pub(crate) const POOL: usize = 1 << 6;

/// The method shapes a phantom can have, by sixteenths, for each tier of the tenant's
/// required number of methods (at most one, two, three or more): most users register what
/// their organisation asks for, as default an app, the app's notification, a security key
/// or a phone; a few have not finished.
const PROFILES: [[&[MethodKind]; 16]; 3] = [
    [
        &[Push, App],
        &[Push, App],
        &[Key, App],
        &[App],
        &[App],
        &[App],
        &[App],
        &[App, Sms],
        &[App, Sms],
        &[App, Sms],
        &[Sms, App],
        &[Sms, App],
        &[App, Voice],
        &[App, Sms, Voice],
        &[Sms],
        &[],
    ],
    [
        &[Push, Sms],
        &[Key, App],
        &[App, Sms],
        &[App, Sms],
        &[App, Sms],
        &[App, Sms],
        &[Sms, App],
        &[Sms, App],
        &[Sms, App],
        &[Sms, App],
        &[App, Voice],
        &[App, Voice],
        &[App, Sms, Voice],
        &[App, Sms, Voice],
        &[App],
        &[],
    ],
    [
        &[Push, App, Sms],
        &[Key, App, Sms],
        &[App, Sms, Voice],
        &[App, Sms, Voice],
        &[App, Sms, Voice],
        &[App, Sms, Voice],
        &[App, Sms, Voice],
        &[App, Sms, Voice],
        &[Sms, App, Voice],
        &[Sms, App, Voice],
        &[Sms, App, Voice],
        &[Sms, App, Voice],
        &[App, Voice, Sms],
        &[App, Voice, Sms],
        &[App, Sms],
        &[],
    ],
];

pub(crate) struct Phantoms {
    /// `PROFILES.len()` tiers of `POOL` slots each.
    slots: Box<[OnceLock<Box<RwLock<User>>>]>,
    pepper: Pepper,
}

impl Phantoms {
    pub(crate) fn new(pepper: &Pepper) -> Self {
        Self {
            slots: (0..POOL * PROFILES.len())
                .map(|_| OnceLock::new())
                .collect(),
            pepper: pepper.clone(),
        }
    }

    /// The phantom for the unknown name whose keyed hash is `hash`, in a tenant that asks
    /// for `required` methods, read-locked.
    pub(crate) fn get(&self, hash: u64, required: u8) -> RwLockReadGuard<'_, User> {
        let tier = usize::from(required.clamp(1, 3) - 1);
        // The high bits: the low ones also pick the store's shard.
        let i = tier * POOL + (hash >> 40) as usize % POOL;
        let slot = match self.slots.get(i) {
            Some(s) => s,
            None => unreachable!("the index is reduced modulo the pool's length"),
        };
        slot.get_or_init(|| Box::new(RwLock::new(self.build(tier, i))))
            .read()
    }

    fn build(&self, tier: usize, i: usize) -> User {
        let seed = self
            .pepper
            .digest(b"phantom", &(i as u64).to_le_bytes())
            .to_bytes();
        let [profile, d0, d1, ..] = seed;
        let kinds = PROFILES
            .get(tier)
            .and_then(|t| t.get(usize::from(profile) % t.len()))
            .copied()
            .unwrap_or(&[]);
        let mut methods = SmallVec::new();
        for (n, kind) in (1u32..).zip(kinds) {
            let material = match kind {
                MethodKind::Sms | MethodKind::Voice => Material::Phone {
                    // Only the hint is ever shown: the last two digits.
                    number: format!("+4790000{:02}{:02}", d0 % 100, d1 % 100).into(),
                },
                // A credential nobody holds: no answer verifies, and none is let in.
                MethodKind::SecurityKey => {
                    let id = self
                        .pepper
                        .digest(b"phantom-credential", &(i as u64).to_le_bytes())
                        .to_bytes();
                    let key = self
                        .pepper
                        .digest(b"phantom-credential-key", &(i as u64).to_le_bytes())
                        .to_bytes();
                    Material::SecurityKey(Some(Box::new(crate::webauthn::Credential {
                        id: [id, key].concat().into_boxed_slice(),
                        key: crate::webauthn::PublicKey::EdDsa(key),
                    })))
                }
                // A key nobody holds the private half of: no answer is ever signed.
                MethodKind::Push => Material::Push(crate::push::DeviceKey::Paired(
                    self.pepper
                        .digest(b"phantom-device", &(i as u64).to_le_bytes())
                        .to_bytes(),
                )),
                _ => {
                    let key = self
                        .pepper
                        .digest(b"phantom-key", &(i as u64).to_le_bytes())
                        .to_bytes();
                    Material::Totp {
                        key: OtpKey::new(Algorithm::Sha1, key.get(..20).unwrap_or(&key)),
                        params: TotpParams::default(),
                    }
                }
            };
            methods.push(Method {
                id: MethodId(n),
                kind: *kind,
                active: true,
                material,
                drift_hint: Default::default(),
            });
        }
        let mut user = User::new(UserId(0), Box::default(), false);
        user.default_method = methods.first().map(|m: &Method| m.id);
        user.methods = methods;
        user
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_pepper_builds_the_same_phantoms() {
        let a = Phantoms::new(&Pepper::new([1; 32]));
        let b = Phantoms::new(&Pepper::new([1; 32]));
        let shape = |p: &Phantoms, h: u64| {
            let u = p.get(h, 2);
            u.methods()
                .iter()
                .map(|m| (m.id, m.kind, m.hint()))
                .collect::<Vec<_>>()
        };
        let mut kinds = std::collections::HashSet::new();
        for h in (0..200u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) {
            assert_eq!(shape(&a, h), shape(&b, h));
            kinds.insert(shape(&a, h).len());
        }
        // The pool is not one shape.
        assert!(kinds.len() >= 3, "{kinds:?}");
    }
}
