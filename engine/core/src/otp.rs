//! One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238) over HMAC-SHA-1/256/512.
//!
//! Each credential keeps its HMAC key as the two precomputed chaining values after the
//! inner and outer padded key blocks ([`OtpKey`]), so computing a code costs exactly two
//! compression-function calls and no allocation. Verification returns the step or counter
//! that matched, never a bare `bool`: the caller needs it to raise the credential's replay
//! watermark in the same atomic operation that accepts the code.
//!
//! This module does not decide replay; it only skips steps the caller says are spent.

use std::fmt;

use sha1::Digest as _;
use sha2::digest::generic_array::GenericArray;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::time::Timestamp;

/// The hash under the HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// HMAC-SHA-1: what nearly every authenticator app uses.
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs.
    pub fn uri_name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }
}

const SHA1_IV: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];
const SHA512_IV: [u64; 8] = [
    0x6a09_e667_f3bc_c908,
    0xbb67_ae85_84ca_a73b,
    0x3c6e_f372_fe94_f82b,
    0xa54f_f53a_5f1d_36f1,
    0x510e_527f_ade6_82d1,
    0x9b05_688c_2b3e_6c1f,
    0x1f83_d9ab_fb41_bd6b,
    0x5be0_cd19_137e_2179,
];

/// An HMAC key in precomputed form: the hash state after absorbing `K ^ ipad` and
/// `K ^ opad`. It is as secret as the key itself, so it is zeroised on drop and never shown.
#[derive(Clone)]
pub struct OtpKey(KeyState);

#[derive(Clone)]
enum KeyState {
    Sha1([[u32; 5]; 2]),
    Sha256(Box<[[u32; 8]; 2]>),
    Sha512(Box<[[u64; 8]; 2]>),
}

impl Drop for OtpKey {
    fn drop(&mut self) {
        match &mut self.0 {
            KeyState::Sha1(s) => s.zeroize(),
            KeyState::Sha256(s) => s.zeroize(),
            KeyState::Sha512(s) => s.zeroize(),
        }
    }
}

impl fmt::Debug for OtpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OtpKey({:?}, [redacted])", self.algorithm())
    }
}

/// Pads `key` to one block (hashing it first when it is longer than a block) and XORs it
/// with `pad`, as HMAC's definition says.
fn padded<const B: usize>(key: &[u8], hashed: impl FnOnce(&[u8]) -> Vec<u8>, pad: u8) -> [u8; B] {
    let mut block = [0u8; B];
    let mut long;
    let key = if key.len() > B {
        long = hashed(key);
        &long[..]
    } else {
        long = Vec::new();
        key
    };
    for (b, k) in block.iter_mut().zip(key) {
        *b = *k;
    }
    for b in &mut block {
        *b ^= pad;
    }
    long.zeroize();
    block
}

impl OtpKey {
    /// Precomputes the keyed state for `secret` under `algorithm`.
    pub fn new(algorithm: Algorithm, secret: &[u8]) -> Self {
        match algorithm {
            Algorithm::Sha1 => {
                let mut states = [SHA1_IV; 2];
                for (state, pad) in states.iter_mut().zip([0x36, 0x5c]) {
                    let mut block = padded::<64>(secret, |k| sha1::Sha1::digest(k).to_vec(), pad);
                    sha1::compress(state, &[GenericArray::from(block)]);
                    block.zeroize();
                }
                Self(KeyState::Sha1(states))
            }
            Algorithm::Sha256 => {
                let mut states = Box::new([SHA256_IV; 2]);
                for (state, pad) in states.iter_mut().zip([0x36, 0x5c]) {
                    let mut block = padded::<64>(secret, |k| sha2::Sha256::digest(k).to_vec(), pad);
                    sha2::compress256(state, &[GenericArray::from(block)]);
                    block.zeroize();
                }
                Self(KeyState::Sha256(states))
            }
            Algorithm::Sha512 => {
                let mut states = Box::new([SHA512_IV; 2]);
                for (state, pad) in states.iter_mut().zip([0x36, 0x5c]) {
                    let mut block =
                        padded::<128>(secret, |k| sha2::Sha512::digest(k).to_vec(), pad);
                    sha2::compress512(state, &[*GenericArray::from_slice(&block)]);
                    block.zeroize();
                }
                Self(KeyState::Sha512(states))
            }
        }
    }

    /// Whether `other` is the same key under the same hash (so it makes the same codes),
    /// compared in constant time.
    pub fn same_key(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        match (&self.0, &other.0) {
            (KeyState::Sha1(a), KeyState::Sha1(b)) => a.as_flattened().ct_eq(b.as_flattened()),
            (KeyState::Sha256(a), KeyState::Sha256(b)) => a.as_flattened().ct_eq(b.as_flattened()),
            (KeyState::Sha512(a), KeyState::Sha512(b)) => a.as_flattened().ct_eq(b.as_flattened()),
            _ => return false,
        }
        .into()
    }

    /// Writes the key in record form (`directory/change.rs`): the algorithm (0 SHA-1,
    /// 1 SHA-256, 2 SHA-512), then the two precomputed states, big-endian. As secret as the
    /// key: it makes the same codes.
    pub(crate) fn put(&self, p: &mut crate::record::Put<'_>) {
        match &self.0 {
            KeyState::Sha1(s) => {
                p.u8(0);
                s.as_flattened().iter().for_each(|w| p.u32(*w));
            }
            KeyState::Sha256(s) => {
                p.u8(1);
                s.as_flattened().iter().for_each(|w| p.u32(*w));
            }
            KeyState::Sha512(s) => {
                p.u8(2);
                s.as_flattened().iter().for_each(|w| p.u64(*w));
            }
        }
    }

    /// Reads a key written by [`put`](Self::put).
    pub(crate) fn get(g: &mut crate::record::Get<'_>) -> Result<Self, crate::record::RecordError> {
        Ok(Self(match g.u8()? {
            0 => {
                let mut s = [[0u32; 5]; 2];
                for w in s.as_flattened_mut() {
                    *w = g.u32()?;
                }
                KeyState::Sha1(s)
            }
            1 => {
                let mut s = Box::new([[0u32; 8]; 2]);
                for w in s.as_flattened_mut() {
                    *w = g.u32()?;
                }
                KeyState::Sha256(s)
            }
            2 => {
                let mut s = Box::new([[0u64; 8]; 2]);
                for w in s.as_flattened_mut() {
                    *w = g.u64()?;
                }
                KeyState::Sha512(s)
            }
            _ => return Err(crate::record::RecordError("an unknown OTP algorithm")),
        }))
    }

    /// The hash this key was prepared for.
    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            KeyState::Sha1(_) => Algorithm::Sha1,
            KeyState::Sha256(_) => Algorithm::Sha256,
            KeyState::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// HMAC of the 8-byte big-endian `counter`, written to `out`; returns the MAC length.
    fn mac_counter(&self, counter: u64, out: &mut [u8; 64]) -> usize {
        // Message lengths in bits, counting the key block already absorbed.
        const INNER_BITS_64: u64 = (64 + 8) * 8;
        const INNER_BITS_128: u128 = (128 + 8) * 8;
        match &self.0 {
            KeyState::Sha1([inner, outer]) => {
                let mut s = *inner;
                let block = short_block_64(&counter.to_be_bytes(), INNER_BITS_64);
                sha1::compress(&mut s, &[GenericArray::from(block)]);
                let mut digest = [0u8; 20];
                for (chunk, w) in digest.chunks_exact_mut(4).zip(s) {
                    chunk.copy_from_slice(&w.to_be_bytes());
                }
                let mut s = *outer;
                let block = short_block_64(&digest, (64 + 20) * 8);
                sha1::compress(&mut s, &[GenericArray::from(block)]);
                for (chunk, w) in out.chunks_exact_mut(4).zip(s) {
                    chunk.copy_from_slice(&w.to_be_bytes());
                }
                20
            }
            KeyState::Sha256(states) => {
                let [inner, outer] = &**states;
                let mut s = *inner;
                let block = short_block_64(&counter.to_be_bytes(), INNER_BITS_64);
                sha2::compress256(&mut s, &[GenericArray::from(block)]);
                let mut digest = [0u8; 32];
                for (chunk, w) in digest.chunks_exact_mut(4).zip(s) {
                    chunk.copy_from_slice(&w.to_be_bytes());
                }
                let mut s = *outer;
                let block = short_block_64(&digest, (64 + 32) * 8);
                sha2::compress256(&mut s, &[GenericArray::from(block)]);
                for (chunk, w) in out.chunks_exact_mut(4).zip(s) {
                    chunk.copy_from_slice(&w.to_be_bytes());
                }
                32
            }
            KeyState::Sha512(states) => {
                let [inner, outer] = &**states;
                let mut s = *inner;
                let block = short_block_128(&counter.to_be_bytes(), INNER_BITS_128);
                sha2::compress512(&mut s, &[*GenericArray::from_slice(&block)]);
                let mut digest = [0u8; 64];
                for (chunk, w) in digest.chunks_exact_mut(8).zip(s) {
                    chunk.copy_from_slice(&w.to_be_bytes());
                }
                let mut s = *outer;
                let block = short_block_128(&digest, (128 + 64) * 8);
                sha2::compress512(&mut s, &[*GenericArray::from_slice(&block)]);
                for (chunk, w) in out.chunks_exact_mut(8).zip(s) {
                    chunk.copy_from_slice(&w.to_be_bytes());
                }
                64
            }
        }
    }

    /// The raw HMAC of an 8-byte big-endian counter (for tests against a reference HMAC).
    pub fn hmac_counter(&self, counter: u64) -> Vec<u8> {
        let mut out = [0u8; 64];
        let n = self.mac_counter(counter, &mut out);
        out.get(..n).unwrap_or_default().to_vec()
    }

    /// The HOTP value of `counter` with `digits` digits (RFC 4226 §5.3).
    pub fn hotp(&self, counter: u64, digits: Digits) -> u32 {
        let mut mac = [0u8; 64];
        let len = self.mac_counter(counter, &mut mac);
        // INVARIANT: len is 20, 32 or 64, so the offset (at most 15) plus 4 is in bounds.
        let offset = usize::from(mac.get(len - 1).copied().unwrap_or(0) & 0x0f);
        let mut word = [0u8; 4];
        if let Some(bytes) = mac.get(offset..offset + 4) {
            word.copy_from_slice(bytes);
        }
        let value = u32::from_be_bytes(word) & 0x7fff_ffff;
        mac.zeroize();
        value % digits.modulus()
    }
}

/// One final block of a 64-byte-block hash: `data`, the 0x80 marker, zeros, and the length.
fn short_block_64(data: &[u8], bit_len: u64) -> [u8; 64] {
    let mut block = [0u8; 64];
    for (b, d) in block.iter_mut().zip(data) {
        *b = *d;
    }
    if let Some(b) = block.get_mut(data.len()) {
        *b = 0x80;
    }
    for (b, l) in block.iter_mut().skip(56).zip(bit_len.to_be_bytes()) {
        *b = l;
    }
    block
}

/// The same for SHA-512's 128-byte blocks, whose length field is 128 bits.
fn short_block_128(data: &[u8], bit_len: u128) -> [u8; 128] {
    let mut block = [0u8; 128];
    for (b, d) in block.iter_mut().zip(data) {
        *b = *d;
    }
    if let Some(b) = block.get_mut(data.len()) {
        *b = 0x80;
    }
    for (b, l) in block.iter_mut().skip(112).zip(bit_len.to_be_bytes()) {
        *b = l;
    }
    block
}

/// How many decimal digits a code has: 6, 7 or 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Digits(u8);

impl Digits {
    /// Six digits, the common default.
    pub const SIX: Self = Self(6);
    /// Eight digits.
    pub const EIGHT: Self = Self(8);

    /// `n` digits, if `n` is 6, 7 or 8.
    pub fn new(n: u8) -> Option<Self> {
        (6..=8).contains(&n).then_some(Self(n))
    }

    /// The digit count.
    pub fn get(self) -> u8 {
        self.0
    }

    fn modulus(self) -> u32 {
        10u32.pow(u32::from(self.0))
    }
}

/// A code as a user typed it, parsed: the value and how many digits were given.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code {
    value: u32,
    digits: u8,
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code([redacted; {} digits])", self.digits)
    }
}

/// Why a typed code is not a code at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Something other than ASCII digits (spaces between groups are allowed).
    #[error("code may contain only the ASCII digits 0-9")]
    NotDigits,
    /// Fewer than 6 or more than 8 digits.
    #[error("code must have 6 to 8 digits")]
    Length,
}

impl Code {
    /// Parses a code: 6 to 8 ASCII digits, with single ASCII spaces allowed between groups
    /// ("123 456"). Any other character, including digits from other scripts, is refused.
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let mut value: u32 = 0;
        let mut digits: u8 = 0;
        for b in s.bytes() {
            match b {
                b'0'..=b'9' => {
                    if digits == 8 {
                        return Err(CodeError::Length);
                    }
                    value = value * 10 + u32::from(b - b'0');
                    digits += 1;
                }
                b' ' => {}
                _ => return Err(CodeError::NotDigits),
            }
        }
        if digits < 6 {
            return Err(CodeError::Length);
        }
        Ok(Self { value, digits })
    }

    /// A code from its numeric value and digit count (value is reduced modulo 10^digits).
    pub fn from_value(value: u32, digits: Digits) -> Self {
        Self {
            value: value % digits.modulus(),
            digits: digits.0,
        }
    }

    /// The digit count the user typed.
    pub fn digits(self) -> u8 {
        self.digits
    }

    /// The numeric value, for fingerprinting. Do not log.
    pub fn value(self) -> u32 {
        self.value
    }

    /// Constant-time comparison against a computed value with `digits` digits.
    fn matches(self, computed: u32, digits: Digits) -> bool {
        let same_len = self.digits.ct_eq(&digits.0);
        let same_value = self.value.ct_eq(&computed);
        (same_len & same_value).into()
    }
}

/// TOTP parameters of one credential (RFC 6238 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotpParams {
    /// Code length.
    pub digits: Digits,
    /// Step length in seconds (30 by default).
    pub period: u32,
    /// The Unix time, in seconds, of step 0 (0 by default).
    pub t0: u64,
}

impl Default for TotpParams {
    fn default() -> Self {
        Self {
            digits: Digits::SIX,
            period: 30,
            t0: 0,
        }
    }
}

impl TotpParams {
    /// The time step that contains `now`.
    pub fn step_at(&self, now: Timestamp) -> u64 {
        now.as_secs().saturating_sub(self.t0) / u64::from(self.period.max(1))
    }
}

/// Where to look for a TOTP code and which steps are spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotpWindow {
    /// Steps accepted either side of the centre (the RFC's "network delay" allowance).
    pub steps: u32,
    /// The credential's learned clock drift, in steps; the centre is `now + drift`.
    pub drift: i32,
    /// The largest drift ever followed. Whatever `drift` says, no step further than
    /// `steps + max_drift` from the current one is accepted.
    pub max_drift: u32,
    /// The last accepted step, if any: it and everything before it are spent.
    pub watermark: Option<u64>,
}

/// A TOTP code that matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotpMatch {
    /// The time step the code belongs to.
    pub step: u64,
    /// That step minus the current step: the clock offset this proof shows.
    pub offset: i32,
}

/// Verifies `code` against `key` at `now`.
///
/// Steps are tried from the centre outwards (the centre first, so the usual case costs one
/// HMAC). Steps at or below the watermark are skipped; the caller must still raise the
/// watermark atomically, because another request may have spent the step meanwhile.
pub fn verify_totp(
    key: &OtpKey,
    params: &TotpParams,
    code: Code,
    now: Timestamp,
    window: TotpWindow,
) -> Option<TotpMatch> {
    let current = i64::try_from(params.step_at(now)).unwrap_or(i64::MAX);
    let max_drift = i64::from(window.max_drift);
    let drift = i64::from(window.drift).clamp(-max_drift, max_drift);
    let centre = current + drift;
    let steps = i64::from(window.steps);
    let bound = steps + max_drift;
    let spent = window
        .watermark
        .map_or(-1, |w| i64::try_from(w).unwrap_or(i64::MAX));
    let mut found = None;
    for i in 0..=2 * steps {
        // 0, -1, +1, -2, +2, ...
        let delta = if i % 2 == 0 { i / 2 } else { -(i + 1) / 2 };
        let step = centre + delta;
        if step < 0 || step <= spent || (step - current).abs() > bound {
            continue;
        }
        let Ok(s) = u64::try_from(step) else { continue };
        if code.matches(key.hotp(s, params.digits), params.digits) {
            found = Some(TotpMatch {
                step: s,
                offset: i32::try_from(step - current).unwrap_or(0),
            });
            break;
        }
    }
    found
}

/// Verifies a HOTP `code` against counters `next ..= next + look_ahead` and returns the
/// counter that matched. The caller moves the credential's counter past it atomically.
pub fn verify_hotp(
    key: &OtpKey,
    digits: Digits,
    code: Code,
    next: u64,
    look_ahead: u32,
) -> Option<u64> {
    (next..=next.saturating_add(u64::from(look_ahead)))
        .find(|&c| code.matches(key.hotp(c, digits), digits))
}

/// Finds a counter `c` past the look-ahead window (up to `next + resync_limit`) such that
/// `first` is the code of `c` and `second` the code of `c + 1`: RFC 4226 §7.4's
/// resynchronisation with two consecutive codes. Returns `c + 1`, the counter last used.
pub fn resync_hotp(
    key: &OtpKey,
    digits: Digits,
    first: Code,
    second: Code,
    next: u64,
    resync_limit: u32,
) -> Option<u64> {
    (next..next.saturating_add(u64::from(resync_limit)))
        .find(|&c| {
            code_at(key, digits, first, c) && code_at(key, digits, second, c.saturating_add(1))
        })
        .map(|c| c.saturating_add(1))
}

fn code_at(key: &OtpKey, digits: Digits, code: Code, counter: u64) -> bool {
    code.matches(key.hotp(counter, digits), digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use proptest::prelude::*;

    const RFC4226_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc4226_appendix_d() {
        let key = OtpKey::new(Algorithm::Sha1, RFC4226_SECRET);
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(
                key.hotp(counter as u64, Digits::SIX),
                *want,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn rfc6238_appendix_b() {
        let sha1 = OtpKey::new(Algorithm::Sha1, b"12345678901234567890");
        let sha256 = OtpKey::new(Algorithm::Sha256, b"12345678901234567890123456789012");
        let sha512 = OtpKey::new(
            Algorithm::Sha512,
            b"1234567890123456789012345678901234567890123456789012345678901234",
        );
        let table: [(u64, u32, u32, u32); 6] = [
            (59, 94287082, 46119246, 90693936),
            (1111111109, 7081804, 68084774, 25091201),
            (1111111111, 14050471, 67062674, 99943326),
            (1234567890, 89005924, 91819424, 93441116),
            (2000000000, 69279037, 90698825, 38618901),
            (20000000000, 65353130, 77737706, 47863826),
        ];
        let params = TotpParams {
            digits: Digits::EIGHT,
            ..TotpParams::default()
        };
        for (t, w1, w256, w512) in table {
            let step = params.step_at(Timestamp::from_secs(t));
            assert_eq!(sha1.hotp(step, Digits::EIGHT), w1, "sha1 t={t}");
            assert_eq!(sha256.hotp(step, Digits::EIGHT), w256, "sha256 t={t}");
            assert_eq!(sha512.hotp(step, Digits::EIGHT), w512, "sha512 t={t}");
            // And through the verifier, with no window at all.
            let w = TotpWindow {
                steps: 0,
                drift: 0,
                max_drift: 0,
                watermark: None,
            };
            let now = Timestamp::from_secs(t);
            let m = verify_totp(
                &sha512,
                &params,
                Code::from_value(w512, Digits::EIGHT),
                now,
                w,
            );
            assert_eq!(m, Some(TotpMatch { step, offset: 0 }));
        }
    }

    fn reference_hmac(alg: Algorithm, key: &[u8], msg: &[u8]) -> Vec<u8> {
        match alg {
            Algorithm::Sha1 => {
                let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).unwrap();
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
            Algorithm::Sha256 => {
                let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
            Algorithm::Sha512 => {
                let mut m = <Hmac<sha2::Sha512> as Mac>::new_from_slice(key).unwrap();
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    proptest! {
        #[test]
        fn precomputed_hmac_equals_reference(
            key in proptest::collection::vec(any::<u8>(), 0..300),
            counter in any::<u64>(),
            alg in prop_oneof![Just(Algorithm::Sha1), Just(Algorithm::Sha256), Just(Algorithm::Sha512)],
        ) {
            let ours = OtpKey::new(alg, &key).hmac_counter(counter);
            prop_assert_eq!(ours, reference_hmac(alg, &key, &counter.to_be_bytes()));
        }

        #[test]
        fn code_parse_never_panics(s in "\\PC{0,20}") {
            let _ = Code::parse(&s);
        }
    }

    #[test]
    fn code_parsing() {
        assert_eq!(
            Code::parse("123456").unwrap(),
            Code {
                value: 123456,
                digits: 6
            }
        );
        assert_eq!(
            Code::parse("123 456").unwrap(),
            Code {
                value: 123456,
                digits: 6
            }
        );
        assert_eq!(
            Code::parse("00123456").unwrap(),
            Code {
                value: 123456,
                digits: 8
            }
        );
        assert_eq!(Code::parse("12345"), Err(CodeError::Length));
        assert_eq!(Code::parse("123456789"), Err(CodeError::Length));
        assert_eq!(Code::parse("12345a"), Err(CodeError::NotDigits));
        // Arabic-Indic and full-width digits are not ASCII digits.
        assert_eq!(Code::parse("١٢٣٤٥٦"), Err(CodeError::NotDigits));
        assert_eq!(Code::parse("１２３４５６"), Err(CodeError::NotDigits));
        assert_eq!(Code::parse(""), Err(CodeError::Length));
        // A leading zero is a digit: "012345" is not "12345" with six digits.
        let c = Code::parse("012345").unwrap();
        assert!(c.matches(12345, Digits::SIX));
        assert!(!c.matches(12345, Digits::EIGHT));
    }

    fn window(steps: u32, drift: i32, max_drift: u32, watermark: Option<u64>) -> TotpWindow {
        TotpWindow {
            steps,
            drift,
            max_drift,
            watermark,
        }
    }

    #[test]
    fn window_accepts_neighbours_and_reports_offset() {
        let key = OtpKey::new(Algorithm::Sha1, b"abc");
        let p = TotpParams::default();
        let now = Timestamp::from_secs(30 * 1000 + 5);
        let code = |step: u64| Code::from_value(key.hotp(step, p.digits), p.digits);
        let w = window(1, 0, 0, None);
        assert_eq!(
            verify_totp(&key, &p, code(1000), now, w).map(|m| m.offset),
            Some(0)
        );
        assert_eq!(
            verify_totp(&key, &p, code(999), now, w).map(|m| m.offset),
            Some(-1)
        );
        assert_eq!(
            verify_totp(&key, &p, code(1001), now, w).map(|m| m.offset),
            Some(1)
        );
        assert_eq!(verify_totp(&key, &p, code(998), now, w), None);
        assert_eq!(verify_totp(&key, &p, code(1002), now, w), None);
    }

    #[test]
    fn watermark_skips_spent_steps() {
        let key = OtpKey::new(Algorithm::Sha1, b"abc");
        let p = TotpParams::default();
        let now = Timestamp::from_secs(30 * 1000);
        let c = Code::from_value(key.hotp(1000, p.digits), p.digits);
        assert!(verify_totp(&key, &p, c, now, window(1, 0, 0, Some(999))).is_some());
        assert!(verify_totp(&key, &p, c, now, window(1, 0, 0, Some(1000))).is_none());
    }

    #[test]
    fn drift_moves_the_centre_but_never_past_the_bound() {
        let key = OtpKey::new(Algorithm::Sha1, b"drifty");
        let p = TotpParams::default();
        let now = Timestamp::from_secs(30 * 5000);
        let code = |step: u64| Code::from_value(key.hotp(step, p.digits), p.digits);
        // Learned drift +2 with max 2: steps 5001..=5003 are reachable, 4999 no longer is.
        let w = window(1, 2, 2, None);
        assert_eq!(
            verify_totp(&key, &p, code(5003), now, w).map(|m| m.step),
            Some(5003)
        );
        assert_eq!(verify_totp(&key, &p, code(4999), now, w), None);
        // A stored drift beyond the maximum is clamped: 5004 stays out of reach.
        let w = window(1, 9, 2, None);
        assert_eq!(verify_totp(&key, &p, code(5004), now, w), None);
        assert_eq!(
            verify_totp(&key, &p, code(5003), now, w).map(|m| m.offset),
            Some(3)
        );
    }

    #[test]
    fn step_zero_and_huge_times_do_not_overflow() {
        let key = OtpKey::new(Algorithm::Sha1, b"k");
        let p = TotpParams::default();
        let c = Code::from_value(key.hotp(0, p.digits), p.digits);
        let w = window(3, -3, 3, None);
        assert_eq!(
            verify_totp(&key, &p, c, Timestamp::EPOCH, w).map(|m| m.step),
            Some(0)
        );
        let _ = verify_totp(
            &key,
            &p,
            c,
            Timestamp::from_millis(u64::MAX),
            window(3, 3, 3, None),
        );
    }

    #[test]
    fn hotp_look_ahead_and_resync() {
        let key = OtpKey::new(Algorithm::Sha1, RFC4226_SECRET);
        let d = Digits::SIX;
        let code = |c: u64| Code::from_value(key.hotp(c, d), d);
        assert_eq!(verify_hotp(&key, d, code(3), 0, 10), Some(3));
        assert_eq!(verify_hotp(&key, d, code(9), 5, 10), Some(9));
        assert_eq!(
            verify_hotp(&key, d, code(4), 5, 10),
            None,
            "counters only move forward"
        );
        assert_eq!(verify_hotp(&key, d, code(40), 5, 10), None);
        assert_eq!(resync_hotp(&key, d, code(40), code(41), 5, 100), Some(41));
        assert_eq!(resync_hotp(&key, d, code(40), code(42), 5, 100), None);
        assert_eq!(resync_hotp(&key, d, code(400), code(401), 5, 100), None);
    }

    #[test]
    fn key_debug_is_redacted() {
        let key = OtpKey::new(Algorithm::Sha256, b"secret");
        assert_eq!(format!("{key:?}"), "OtpKey(Sha256, [redacted])");
    }
}
