//! Identifiers.

use std::fmt;

/// A user, unique within the engine; assigned by the directory, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub u32);

/// A registered method (authenticator, phone, token, ...), unique within its user: a
/// user's methods are numbered from 1, in the order they were registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MethodId(pub u32);

impl fmt::Display for MethodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// Whose sign-in state an operation touches: a known user, or a name nobody has, keyed by
/// a keyed hash so that unknown names are counted exactly like known ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user in the directory.
    Known(UserId),
    /// A (tenant, name) pair with no user, by keyed hash.
    Unknown(u64),
}

/// A challenge (a code sent by SMS, voice or email): 128 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChallengeId(pub [u8; 16]);

impl ChallengeId {
    /// Lowercase hex, as frontends see it.
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        if s.len() != 32 {
            return None;
        }
        let n = data_encoding::HEXLOWER_PERMISSIVE
            .decode_mut(s.as_bytes(), &mut out)
            .ok()?;
        (n == 16).then_some(Self(out))
    }
}

impl fmt::Debug for ChallengeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChallengeId({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_hex_round_trip() {
        let id = ChallengeId([0xab; 16]);
        assert_eq!(ChallengeId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(ChallengeId::from_hex(&id.to_hex().to_uppercase()), Some(id));
        assert_eq!(ChallengeId::from_hex("abc"), None);
        assert_eq!(ChallengeId::from_hex(&"g".repeat(32)), None);
        assert_eq!(ChallengeId::from_hex(&"é".repeat(16)), None);
    }
}
