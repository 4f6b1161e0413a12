//! Secrets at rest: a master key, and values sealed with it.
//!
//! The directory's changes carry credential secrets (an authenticator app's key, as its
//! two HMAC states; the digests of app passwords, devices and security answers), and the
//! pepper keys every digest. On disk they are sealed with AES-256-GCM (through `ring`,
//! already in the tree for TLS) under a master key: a fresh random 96-bit nonce per value,
//! stored before the ciphertext, and the value's purpose as associated data, so a value
//! sealed for one place does not open in another. A wrong key or a damaged value does not
//! open, and says so; it is never taken for an empty or a different value.
//!
//! The master key is 32 random bytes in a file readable by its owner only: made on first
//! start, or given (`--master-key FILE`). It is never printed.

use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Why a key could not be had or a value not opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file could not be read or made.
    #[error("{path}: {why}")]
    KeyFile {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// A sealed value does not open: the wrong master key, or a damaged file.
    #[error("does not open with this master key: the wrong key, or damaged")]
    Open,
    /// The system's randomness failed.
    #[error("no randomness for a nonce")]
    Random,
}

/// The key values are sealed with. Not `Debug`, not `Clone`: it stays where it was made.
pub struct MasterKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

/// What a sealed value is for; the associated data, so a value opens only where it was
/// sealed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A batch of directory changes, in the log or a snapshot.
    Changes,
    /// The pepper.
    Pepper,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::Changes => b"portvakt/1 directory changes",
            Self::Pepper => b"portvakt/1 pepper",
        }
    }
}

impl MasterKey {
    /// A key from its 32 bytes.
    pub fn new(bytes: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| {
            // AES-256-GCM takes exactly 32 bytes, which the type guarantees.
            unreachable!("a 32-byte AES-256 key")
        });
        Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// Reads the key in `path`, or makes one there (mode 0600) if there is none.
    pub fn load_or_make(path: &Path) -> Result<Self, SealError> {
        let err = |why: String| SealError::KeyFile {
            path: path.display().to_string(),
            why,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| err("a master key is exactly 32 bytes".into()))?;
                Ok(Self::new(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| SealError::Random)?;
                write_private(path, &key).map_err(|e| err(e.to_string()))?;
                Ok(Self::new(&key))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Reads the key in `path`, which must exist.
    pub fn load(path: &Path) -> Result<Self, SealError> {
        if !path.exists() {
            return Err(SealError::KeyFile {
                path: path.display().to_string(),
                why: "no such file".into(),
            });
        }
        Self::load_or_make(path)
    }

    /// `plaintext` sealed for `purpose`: nonce, then ciphertext and tag.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let body = out.get_mut(NONCE_LEN..).unwrap_or_default();
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.aad()),
                body,
            )
            .map_err(|_| SealError::Open)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// The plaintext of a value [`seal`](Self::seal)ed for `purpose`.
    pub fn open(&self, purpose: Purpose, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or(SealError::Open)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.aad()), &mut body)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

/// Writes `bytes` to a new file at `path` readable by its owner only, synced.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = create_private(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Creates a new file at `path` (never over an existing one), readable by its owner only
/// from the moment it exists.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_with_its_key_and_purpose_only() {
        let k = MasterKey::new(&[7; 32]);
        let sealed = k.seal(Purpose::Changes, b"an app's key").unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"an app's key"));
        assert_eq!(k.open(Purpose::Changes, &sealed).unwrap(), b"an app's key");
        assert!(k.open(Purpose::Pepper, &sealed).is_err());
        assert!(
            MasterKey::new(&[8; 32])
                .open(Purpose::Changes, &sealed)
                .is_err()
        );
        let mut damaged = sealed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(k.open(Purpose::Changes, &damaged).is_err());
        assert!(k.open(Purpose::Changes, &sealed[..10]).is_err());
        // Two seals of one value differ (fresh nonces).
        assert_ne!(
            k.seal(Purpose::Changes, b"x").unwrap(),
            k.seal(Purpose::Changes, b"x").unwrap()
        );
    }
}
