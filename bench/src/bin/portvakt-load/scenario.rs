//! What the generated sign-ins look like.
//!
//! Every scenario is a pure function of the request's number `n` and the clock, so any
//! worker can build request `n` without sharing state with the others.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portvakt_client::FirstFactor;
use portvakt_core::otp::{Algorithm, Digits, OtpKey};

/// A kind of traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
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
    /// A brute-force burst: wrong codes at full rate against the first eight users only,
    /// each guess from another address, as a botnet sends them. A few denials, then every
    /// answer is `locked`.
    BruteForce,
    /// Password spraying: one address outside the trusted networks tries a wrong password
    /// on every user in turn. Denials until the address's failure limit, then `locked`
    /// (reason `source_limited`) whichever user it tries.
    Spray,
    /// Replays: every right code is sent twice in a row, as by someone who captured it;
    /// the second is refused.
    Replay,
    /// A working day: 55 % office sign-ins, 28 % right codes from home, 8 % wrong codes,
    /// 5 % wrong passwords, 4 % users that do not exist. As in `code`, a user's code is
    /// accepted once per 30-second step, so right codes sent again in the step are
    /// replays.
    Mix,
}

/// The tenant every generated user belongs to (the embedded policy's).
pub(crate) const TENANT: &str = "kommune";

/// How many users a brute-force burst aims at.
const BRUTE_FORCE_TARGETS: usize = 8;

/// How many distinct unknown user names the scenarios use.
const UNKNOWN_NAMES: usize = 1024;

/// One sign-in attempt, ready to be put in a `Decide` frame.
pub(crate) struct Attempt<'a> {
    pub(crate) user: &'a str,
    pub(crate) ip: IpAddr,
    pub(crate) first_factor: FirstFactor,
    /// The TOTP code, if one is sent.
    pub(crate) code: Option<u32>,
}

/// The generated users: names, and the keys of their authenticator apps.
pub(crate) struct Users {
    first: usize,
    names: Vec<String>,
    keys: Vec<OtpKey>,
    unknown: Vec<String>,
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
    /// Users number `first` to `first + n - 1`.
    pub(crate) fn new(first: usize, n: usize) -> Self {
        let numbers = first..first + n;
        Self {
            first,
            names: numbers
                .clone()
                .map(|i| format!("load-{i}@kommune.no"))
                .collect(),
            keys: numbers
                .map(|i| OtpKey::new(Algorithm::Sha1, &secret(i)))
                .collect(),
            unknown: (0..UNKNOWN_NAMES)
                .map(|i| format!("nobody-{i}@kommune.no"))
                .collect(),
        }
    }

    /// The number of the `i`-th user here (its name and secret are made from it).
    pub(crate) fn number(&self, i: usize) -> usize {
        self.first + i
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

    /// Request number `n` of `scenario`, sent at `unix_secs`.
    pub(crate) fn attempt(&self, scenario: Scenario, n: u64, unix_secs: u64) -> Attempt<'_> {
        let users = self.len() as u64;
        let i = (n % users) as usize;
        match scenario {
            Scenario::Office => self.office(i),
            Scenario::Code => self.right_code(i, unix_secs),
            Scenario::Wrong => self.wrong_code(i, n / users, unix_secs),
            Scenario::BruteForce => {
                let targets = BRUTE_FORCE_TARGETS.min(self.len()) as u64;
                Attempt {
                    ip: home_ip(n as usize),
                    ..self.wrong_code((n % targets) as usize, n / targets, unix_secs)
                }
            }
            Scenario::Spray => Attempt {
                user: self.name(i),
                ip: SPRAYER,
                first_factor: FirstFactor::Failed,
                code: None,
            },
            Scenario::Replay => self.right_code(((n / 2) % users) as usize, unix_secs),
            Scenario::Mix => match mix(n) % 100 {
                0..55 => self.office(i),
                55..83 => self.right_code(i, unix_secs),
                83..91 => self.wrong_code(i, n / users, unix_secs),
                91..96 => Attempt {
                    first_factor: FirstFactor::Failed,
                    code: None,
                    ..self.right_code(i, unix_secs)
                },
                _ => Attempt {
                    user: &self.unknown[(n % UNKNOWN_NAMES as u64) as usize],
                    ..self.wrong_code(i, n / users, unix_secs)
                },
            },
        }
    }

    fn office(&self, i: usize) -> Attempt<'_> {
        Attempt {
            user: self.name(i),
            ip: office_ip(i),
            first_factor: FirstFactor::Ok,
            code: None,
        }
    }

    fn right_code(&self, i: usize, unix_secs: u64) -> Attempt<'_> {
        Attempt {
            user: self.name(i),
            ip: home_ip(i),
            first_factor: FirstFactor::Ok,
            code: Some(self.code(i, unix_secs)),
        }
    }

    /// A wrong code for user `i`, a different one on each `round` (a repeated wrong code
    /// counts as one failure, so a guesser varies them). Wrong for every step the server
    /// could accept (two either side, as far as learned drift reaches), not only the
    /// current one: otherwise about one guess in 200,000 is a right code by chance.
    fn wrong_code(&self, i: usize, round: u64, unix_secs: u64) -> Attempt<'_> {
        let step = unix_secs / 30;
        let shown: [u32; 5] =
            std::array::from_fn(|k| self.code(i, (step + k as u64).saturating_sub(2) * 30));
        let mut code = (self.code(i, unix_secs) + 1 + (round % 999_999) as u32) % 1_000_000;
        while shown.contains(&code) {
            code = (code + 1) % 1_000_000;
        }
        Attempt {
            code: Some(code),
            ..self.right_code(i, unix_secs)
        }
    }
}

/// The address a password sprayer works from (outside every trusted network).
const SPRAYER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 66));

/// Spreads request numbers evenly over the mix's buckets (splitmix64's finaliser).
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An address on the municipal network for user `i`.
pub(crate) fn office_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 20, (i >> 8) as u8, i as u8))
}

/// A home address of user `i`'s own: a /64 each (the prefix per-source limits count by),
/// so users do not share their failures.
pub(crate) fn home_ip(i: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x100 | ((i >> 16) as u16 & 0xff),
        i as u16,
        (i >> 24) as u16,
        0,
        0,
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_its_shares() {
        let users = Users::new(0, 100);
        let mut counts = [0u32; 4];
        for n in 0..100_000 {
            let a = users.attempt(Scenario::Mix, n, 1_700_000_000);
            let k = match (a.first_factor, a.code, a.user.starts_with("nobody")) {
                (FirstFactor::Ok, None, _) => 0,
                (FirstFactor::Failed, ..) => 1,
                (_, Some(_), true) => 2,
                (_, Some(_), false) => 3,
                _ => unreachable!(),
            };
            counts[k] += 1;
        }
        // 55 % office, 5 % wrong passwords, 4 % unknown, 36 % codes; within a percent.
        for (got, want) in counts.iter().zip([55_000, 5_000, 4_000, 36_000]) {
            assert!(got.abs_diff(want) < 1_000, "{counts:?}");
        }
    }

    #[test]
    fn a_replay_repeats_the_code_before_it() {
        let users = Users::new(0, 10);
        for k in 0..20 {
            let first = users.attempt(Scenario::Replay, 2 * k, 1_700_000_000);
            let second = users.attempt(Scenario::Replay, 2 * k + 1, 1_700_000_000);
            assert_eq!((first.user, first.code), (second.user, second.code));
            assert!(first.code.is_some());
        }
    }

    #[test]
    fn brute_force_aims_at_few_users_from_many_addresses() {
        let users = Users::new(0, 1000);
        // Request numbers far past 65,536, where a careless address layout repeats.
        let attempts: Vec<_> = (0..1000)
            .map(|k| users.attempt(Scenario::BruteForce, k * 4099, 1_700_000_000))
            .collect();
        let targets: std::collections::HashSet<_> = attempts.iter().map(|a| a.user).collect();
        assert_eq!(targets.len(), BRUTE_FORCE_TARGETS);
        // Every guess at a user is a different code.
        let guesses: std::collections::HashSet<_> =
            attempts.iter().map(|a| (a.user, a.code)).collect();
        assert_eq!(guesses.len(), attempts.len());
        // Each guess from its own /64, the prefix per-source limits count by.
        let prefixes: std::collections::HashSet<_> = attempts
            .iter()
            .map(|a| match a.ip {
                IpAddr::V6(v6) => v6.segments()[..4].to_vec(),
                IpAddr::V4(_) => unreachable!(),
            })
            .collect();
        assert_eq!(prefixes.len(), 1000);
        for a in &attempts {
            let i: usize = a.user["load-".len()..a.user.find('@').unwrap()]
                .parse()
                .unwrap();
            for t in (1_700_000_000 - 60..=1_700_000_000 + 60).step_by(30) {
                assert_ne!(a.code, Some(users.code(i, t)));
            }
        }
    }
}
