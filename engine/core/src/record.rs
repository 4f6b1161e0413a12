//! The byte form of the records a store keeps: small and versioned, so a durable or shared
//! backend can store them as opaque values, while every rule that reads or changes them
//! stays here in the core (the transitions of `state::UserState`, `state::Counter` and
//! `state::ChallengeRecord`).
//!
//! Record format 1, all integers big-endian. A subject's state (`UserState`):
//!
//! | field | bytes |
//! |---|---|
//! | format | `u8` = 1 |
//! | OTP states | count `u8` (at most 64), then each: method `u32`, next `u64`, drift `i8` |
//! | locks | `u8` 0, or 1 and four locks in domain order: failures `u8`, level `u8`, three fingerprints `u32`, last failure `u64` ms, locked until `u64` ms |
//! | phone | `u8` 0, or 1 and: sends window, failures window, blocked until `u64` ms |
//! | push | absent, or `u8` 1 and: the approvals-sent window; count `u8` (at most 5) of approvals waiting, each: id 16 bytes, method `u32`, issued `u64` ms, expires `u64` ms, purpose `u8`, location (`u16` length and UTF-8) |
//!
//! A budget (`Counter`): format `u8` = 1, then one window. A challenge
//! (`ChallengeRecord`): format `u8` = 1; subject kind `u8` (0 a user, 1 an unknown name)
//! and its id or keyed hash as `u64`; method `u32`; purpose `u8` (0 sign-in, 1 password
//! reset, 2 legacy); the code's keyed digest, 32 bytes; expiry `u64` ms; tries left `u8`;
//! then nothing for a sent code, `u8` 1 and the approval's state `u8` and familiarity
//! flag for a push approval (whose code is its number), or `u8` 2 and two flags
//! (registration, user verification) for a security key's ceremony (whose code is its
//! challenge), or `u8` 3 for a ticket to the security-info pages (whose code is its
//! secret). Records written before approvals and ceremonies existed read unchanged.
//!
//! A window is its base `u64` ms and five slots of offset `u32` ms and count `u32`; used
//! slots (count above 0) come first, in order of time, and free slots are all zero.
//! Decoding checks all of it and refuses bytes left over, so a damaged or forged record is
//! an error, never a state the rules were not written for.

/// Why bytes are not a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a state record: {0}")]
pub struct RecordError(pub &'static str);

/// The format this build writes (and the only one it reads).
pub const FORMAT: u8 = 1;

/// Writes big-endian integers.
pub(crate) struct Put<'a>(pub(crate) &'a mut Vec<u8>);

impl Put<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// Bytes of at most `u16::MAX`, their length first (the caller bounds them).
    pub(crate) fn blob(&mut self, v: &[u8]) {
        let n = v.len().min(usize::from(u16::MAX));
        self.0
            .extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
        self.0.extend_from_slice(v.get(..n).unwrap_or_default());
    }
    /// A string of at most `u16::MAX` bytes, its length first (longer ones are cut at a
    /// character boundary; every string the directory keeps is far shorter).
    pub(crate) fn str(&mut self, s: &str) {
        let mut end = s.len().min(usize::from(u16::MAX));
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let s = s.get(..end).unwrap_or_default();
        self.0
            .extend_from_slice(&u16::try_from(s.len()).unwrap_or(u16::MAX).to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// Reads big-endian integers from the front.
pub(crate) struct Get<'a>(pub(crate) &'a [u8]);

impl<'a> Get<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(RecordError("cut short"))?;
        self.0 = rest;
        Ok(*head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, RecordError> {
        self.take::<1>().map(|[b]| b)
    }
    pub(crate) fn u32(&mut self) -> Result<u32, RecordError> {
        self.take().map(u32::from_be_bytes)
    }
    pub(crate) fn u64(&mut self) -> Result<u64, RecordError> {
        self.take().map(u64::from_be_bytes)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        self.take()
    }
    /// A string written by [`Put::str`]: refused unless UTF-8.
    pub(crate) fn str(&mut self) -> Result<&'a str, RecordError> {
        let len = usize::from(u16::from_be_bytes(self.take()?));
        if self.0.len() < len {
            return Err(RecordError("cut short"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(head).map_err(|_| RecordError("a string is not UTF-8"))
    }
    /// Bytes written by [`Put::blob`].
    pub(crate) fn blob(&mut self) -> Result<&'a [u8], RecordError> {
        let len = usize::from(u16::from_be_bytes(self.take()?));
        if self.0.len() < len {
            return Err(RecordError("cut short"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }
    /// A presence flag: 0 or 1.
    pub(crate) fn flag(&mut self) -> Result<bool, RecordError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError("a presence flag is neither 0 nor 1")),
        }
    }
    /// Whether every byte has been read (an optional part at the end is absent).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn finish(&self) -> Result<(), RecordError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RecordError("bytes left over"))
        }
    }
}
