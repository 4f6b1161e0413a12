//! What the generated sign-ins look like.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portvakt_core::otp::{Algorithm, Digits, OtpKey};

/// A kind of traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Scenario {
    /// Right passwords from the municipal network: single factor, allowed.
    Office,
    /// Right passwords and right codes from home, round the users. A code is accepted once
    /// per 30-second step, so with fewer users than requests per step the rest are replay
    /// refusals (which cost the same HMACs).
    Code,
    /// Right passwords and wrong codes (a new one each time) from home: denials, then
    /// locks.
    Wrong,
}

/// The tenant every generated user belongs to (the embedded policy's).
pub(crate) const TENANT: &str = "kommune";

/// The generated users: names, and the keys of their authenticator apps.
pub(crate) struct Users {
    names: Vec<String>,
    keys: Vec<OtpKey>,
}

/// The secret of user `i`'s authenticator app (20 bytes, as apps use).
pub(crate) fn secret(i: usize) -> [u8; 20] {
    let mut s = *b"portvakt-load-secret";
    for (b, x) in s.iter_mut().zip((i as u64).to_le_bytes()) {
        *b ^= x;
    }
    s
}

impl Users {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            names: (0..n).map(|i| format!("load-{i}@kommune.no")).collect(),
            keys: (0..n)
                .map(|i| OtpKey::new(Algorithm::Sha1, &secret(i)))
                .collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn name(&self, i: usize) -> &str {
        self.names.get(i).map_or("", String::as_str)
    }

    /// The code user `i`'s app shows at `unix_secs`.
    pub(crate) fn code(&self, i: usize, unix_secs: u64) -> u32 {
        self.keys
            .get(i)
            .map_or(0, |k| k.hotp(unix_secs / 30, Digits::SIX))
    }
}

/// An address on the municipal network for user `i`.
pub(crate) fn office_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 20, (i >> 8) as u8, i as u8))
}

/// A home address of user `i`'s own (an IPv6 /64 each, so per-source limits do not mix
/// users up).
pub(crate) fn home_ip(i: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x100 | (i >> 32) as u16,
        (i >> 16) as u16,
        i as u16,
        0,
        0,
        1,
    ))
}
