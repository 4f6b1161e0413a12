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
        Fingerprinter(self.keyed_hash(b"fingerprints"))
    }

    /// A keyed hash for the keys of stored and shared state (unknown names, phone numbers),
    /// one per `purpose`: the same on every node that shares the pepper, after every
    /// restart and upgrade.
    pub fn keyed_hash(&self, purpose: &[u8]) -> KeyedHash {
        let mut d = self.digest(b"keyed-hash", purpose).to_bytes();
        let mut key = [0u8; 16];
        for (k, b) in key.iter_mut().zip(d) {
            *k = b;
        }
        let hash = KeyedHash(siphasher::sip::SipHasher13::new_with_key(&key));
        key.zeroize();
        d.zeroize();
        hash
    }
}

/// SipHash-1-3 under a key derived from the pepper: a stable, keyed 64-bit hash of a
/// sequence of byte strings (each length-prefixed, so `("ab", "c")` and `("a", "bc")`
/// differ). Its output is fixed by the algorithm, so keys made with it can be stored
/// and shared between nodes.
#[derive(Clone)]
pub struct KeyedHash(siphasher::sip::SipHasher13);

impl KeyedHash {
    /// The hash of `parts`: SipHash-1-3 of each part's length (`u64`, little-endian) and
    /// bytes, in order.
    pub fn of(&self, parts: &[&[u8]]) -> u64 {
        use std::hash::Hasher as _;
        // Most keys are a few short parts: framed into one small buffer, they are hashed
        // in one call, which costs a fraction of a call per piece.
        let mut buf = [0u8; 96];
        let mut used = 0;
        for part in parts {
            let len = (part.len() as u64).to_le_bytes();
            let Some(room) = buf.get_mut(used..used + 8 + part.len()) else {
                return self.streamed(parts);
            };
            let (head, tail) = room.split_at_mut(8);
            head.copy_from_slice(&len);
            tail.copy_from_slice(part);
            used += 8 + part.len();
        }
        let mut h = self.0;
        h.write(buf.get(..used).unwrap_or_default());
        h.finish()
    }

    /// The hash of one 64-bit word (its eight little-endian bytes, unframed): the
    /// cheapest keyed hash there is, for keys that are one number.
    pub fn of_word(&self, word: u64) -> u64 {
        use std::hash::Hasher as _;
        let mut h = self.0;
        h.write_u64(word);
        h.finish()
    }

    /// [`of`](Self::of) for parts too long for its buffer: the same bytes, piece by piece
    /// (SipHash is a stream, so the result is the same).
    fn streamed(&self, parts: &[&[u8]]) -> u64 {
        use std::hash::Hasher as _;
        let mut h = self.0;
        for part in parts {
            h.write(&(part.len() as u64).to_le_bytes());
            h.write(part);
        }
        h.finish()
    }
}

impl fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyedHash([redacted])")
    }
}

/// Computes short fingerprints of wrong inputs (the lockout counts a repeated wrong code
/// once); they are stored with the lockout state, so they are stable like every key.
#[derive(Clone)]
pub struct Fingerprinter(KeyedHash);

impl Fingerprinter {
    /// The fingerprint of `value` in `context`; never 0 (0 means "nothing to compare").
    pub fn of(&self, context: &[u8], value: &[u8]) -> u32 {
        fold(self.0.of(&[context, value]))
    }

    /// The fingerprint of a one-time code of `digits` digits: made on every code checked,
    /// right or wrong (the replay rule counts a spent code as a failure), so it is one
    /// word, tagged apart from every [`of`](Self::of) (whose input is never 8 bytes long).
    pub fn of_code(&self, digits: u8, value: u32) -> u32 {
        const TAG: u64 = 0x00ff_6f74_7000_0000; // "otp" in bytes 3..6, 0xff in byte 6
        fold(
            self.0
                .of_word(TAG ^ (u64::from(digits) << 32) ^ u64::from(value)),
        )
    }
}

fn fold(h: u64) -> u32 {
    ((h >> 32) as u32 ^ h as u32).max(1)
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
    fn keyed_hashes_are_fixed_by_the_pepper_alone() {
        // Known answers: keys derived with these are stored and shared, so a change here
        // (another hash, another derivation, another framing) would orphan every key a
        // deployment holds. If this fails, that change needs a migration, not a new
        // expected value.
        let p = Pepper::new([7; 32]);
        let h = p.keyed_hash(b"subjects");
        assert_eq!(h.of(&[b"name", b"kommune", b"kari"]), 0x37b8_24ea_222c_096c);
        assert_eq!(p.fingerprinter().of(b"totp", b"123456"), 0x04e1_8244);
        assert_eq!(p.fingerprinter().of_code(6, 123_456), 0x6518_0f75);
        // The same pepper, the same keys; the framing keeps the parts apart; purposes and
        // peppers give other keys.
        assert_eq!(
            Pepper::new([7; 32])
                .keyed_hash(b"subjects")
                .of(&[b"a", b"bc"]),
            h.of(&[b"a", b"bc"])
        );
        assert_ne!(h.of(&[b"ab", b"c"]), h.of(&[b"a", b"bc"]));
        assert_ne!(p.keyed_hash(b"other").of(&[b"a"]), h.of(&[b"a"]));
        assert_ne!(
            Pepper::new([8; 32]).keyed_hash(b"subjects").of(&[b"a"]),
            h.of(&[b"a"])
        );
        // Short keys framed in one buffer hash as the same bytes streamed piece by piece.
        for parts in [&[&b"name"[..], b"kommune", b"kari"][..], &[b"", b"x"], &[]] {
            assert_eq!(h.of(parts), h.streamed(parts));
        }
        let long = vec![b'x'; 700];
        assert_eq!(h.of(&[b"name", &long]), h.streamed(&[b"name", &long]));
    }

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
