//! Secret bytes and the keyed hash that stores them.
//!
//! Secrets never appear in `Debug` output, are compared in constant time and are zeroised
//! when dropped. Values that only need to be recognised later (app passwords, trusted-device
//! tokens, security answers) are stored as a keyed hash under the engine's pepper, so a copy
//! of the tables alone does not reveal or let anyone test them.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes that must not leak: zeroised on drop, redacted in `Debug`, compared in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Box<[u8]>);

impl SecretBytes {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Self {
        Self(bytes.into())
    }

    /// The secret itself. Callers must not log or copy it into unprotected memory.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {}])", self.0.len())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretBytes {}

/// A secret string shown once (an app password, a device token, a code to deliver):
/// zeroised on drop and redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretString(String);

impl SecretString {
    /// Takes ownership of `s`.
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The secret itself. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

/// A 32-byte keyed hash of a secret, as stored at rest.
#[derive(Clone, Copy, Zeroize)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// Constant-time comparison.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The raw digest, for persistence.
    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// Rebuilds a digest read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigest([redacted])")
    }
}

/// The engine's pepper: the key of every stored [`SecretDigest`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pepper([u8; 32]);

impl Pepper {
    /// A pepper from 32 random bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// The keyed hash of `secret`, bound to `context` so that a digest of one kind can never
    /// stand in for another (an app password for a device token, say).
    pub fn digest(&self, context: &[u8], secret: &[u8]) -> SecretDigest {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(&(context.len() as u64).to_be_bytes());
        mac.update(context);
        mac.update(secret);
        SecretDigest(mac.finalize().into_bytes().into())
    }

    /// A keyed hasher for short fingerprints, derived from the pepper so that every node
    /// sharing the pepper computes the same fingerprints.
    pub fn fingerprinter(&self) -> Fingerprinter {
        let d = self.digest(b"fingerprint-seeds", b"").to_bytes();
        let word = |i: usize| {
            let mut w = [0u8; 8];
            if let Some(bytes) = d.get(i * 8..i * 8 + 8) {
                w.copy_from_slice(bytes);
            }
            u64::from_le_bytes(w)
        };
        Fingerprinter(ahash::RandomState::with_seeds(
            word(0),
            word(1),
            word(2),
            word(3),
        ))
    }
}

/// Short keyed fingerprints of wrong inputs, to notice one repeated without storing it.
/// Not a MAC: it only has to be unpredictable without the pepper and cheap on the hot path.
#[derive(Clone)]
pub struct Fingerprinter(ahash::RandomState);

impl Fingerprinter {
    /// The fingerprint of `value` in `context`; never 0 (0 means "nothing to compare").
    pub fn of(&self, context: &[u8], value: &[u8]) -> u32 {
        let h = self.0.hash_one((context, value));
        ((h >> 32) as u32 ^ h as u32).max(1)
    }
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter([redacted])")
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper([redacted])")
    }
}

/// Source of randomness for codes, tokens and ids. The server backs it with the operating
/// system's generator; tests use a seeded one.
pub trait Entropy: Send + Sync {
    /// Fills `buf` with unpredictable bytes.
    fn fill(&self, buf: &mut [u8]);

    /// A uniformly random number below `bound` (which must be non-zero), without modulo bias.
    fn below(&self, bound: u64) -> u64 {
        if bound <= 1 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let mut b = [0u8; 8];
            self.fill(&mut b);
            let v = u64::from_le_bytes(b);
            if v < zone {
                return v % bound;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = SecretBytes::new(b"hunter2hunter2".to_vec());
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
        let p = Pepper::new([7; 32]);
        assert!(!format!("{p:?}").contains('7'));
        let d = p.digest(b"x", b"hunter2");
        assert_eq!(format!("{d:?}"), "SecretDigest([redacted])");
    }

    #[test]
    fn digest_is_bound_to_context_and_key() {
        let p = Pepper::new([1; 32]);
        let q = Pepper::new([2; 32]);
        assert!(p.digest(b"a", b"s").ct_eq(&p.digest(b"a", b"s")));
        assert!(!p.digest(b"a", b"s").ct_eq(&p.digest(b"b", b"s")));
        assert!(!p.digest(b"a", b"s").ct_eq(&q.digest(b"a", b"s")));
        // The context length is hashed, so shifting bytes between context and secret differs.
        assert!(!p.digest(b"ab", b"c").ct_eq(&p.digest(b"a", b"bc")));
    }

    #[test]
    fn secret_equality() {
        assert_eq!(SecretBytes::new(vec![1, 2]), SecretBytes::new(vec![1, 2]));
        assert_ne!(SecretBytes::new(vec![1, 2]), SecretBytes::new(vec![1, 3]));
        assert_ne!(
            SecretBytes::new(vec![1, 2]),
            SecretBytes::new(vec![1, 2, 3])
        );
    }
}
