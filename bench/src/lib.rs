//! Fixtures and measurement helpers shared by Portvakt's benches and tools.
//!
//! The fixture loads N users, each with one active authenticator app, into an engine whose
//! policy is the municipality's (with one required method). Every user signs in from an
//! address of their own, as real users do, so per-source limits never interfere.
#![allow(clippy::disallowed_methods)] // measurement reads the clock

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use portvakt_core::admin::TotpSpec;
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{Engine, FirstFactor, MemoryStore, Proof, Purpose, Request, Timestamp, config};

/// The municipality's policy with one required method, so one app is enough.
pub const POLICY: &str = include_str!("../../examples/kommune.toml");

/// The shared TOTP secret of every fixture user (the per-user key state is still separate
/// memory, so cache behaviour is that of distinct keys).
pub const SECRET: &[u8] = b"12345678901234567890";

/// The time the fixture starts at.
pub const T0: u64 = 1_700_000_010;

/// N loaded users.
pub struct Fixture {
    /// The engine.
    pub engine: Engine,
    /// User names, by index.
    pub names: Vec<String>,
    /// Client addresses, by index (a distinct IPv6 /64 each).
    pub ips: Vec<IpAddr>,
    /// The key every user's app holds.
    pub key: OtpKey,
    /// How long loading took.
    pub load_time: std::time::Duration,
    /// Resident memory the loaded users added (the fixture's own name and address lists
    /// are built before the measurement starts).
    pub loaded_bytes: u64,
}

/// The name of user `i`.
pub fn name(i: usize) -> String {
    format!("user{i:07}@kommune.no")
}

/// A home address for user `i`: its own /64 in a documentation range.
pub fn ip(i: usize) -> IpAddr {
    let i = i as u64;
    // The user index fills the third and fourth groups: the /64 that per-source limits key on.
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0x0db8,
        (i >> 16) as u16,
        i as u16,
        0,
        0,
        0,
        1,
    ))
}

impl Fixture {
    /// Loads `n` users.
    pub fn load(n: usize) -> Self {
        let text = POLICY.replace("required_methods = 2", "required_methods = 1");
        let policy = config::load(&text).unwrap_or_else(|e| panic!("bench policy: {e}"));
        let engine = Engine::with_capacity(
            policy,
            MemoryStore::default(),
            Pepper::new([9; 32]),
            Box::new(SeededEntropy::new(3)),
            n,
        );
        let names: Vec<String> = (0..n).map(name).collect();
        let ips = (0..n).map(ip).collect();
        let rss_before = rss_bytes();
        let start = Instant::now();
        for name in &names {
            engine
                .add_user("kommune", name, &[], false)
                .unwrap_or_else(|e| panic!("{e}"));
            engine
                .import_totp("kommune", name, SECRET, TotpSpec::default(), true)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        engine.directory().shrink_to_fit();
        let load_time = start.elapsed();
        let loaded_bytes = rss_bytes().saturating_sub(rss_before);
        Self {
            engine,
            names,
            ips,
            key: OtpKey::new(Algorithm::Sha1, SECRET),
            load_time,
            loaded_bytes,
        }
    }

    /// The right code at `secs`.
    pub fn code(&self, secs: u64) -> String {
        format!("{:06}", self.key.hotp(secs / 30, Digits::SIX))
    }

    /// A sign-in request from user `i`'s home with `proof`.
    pub fn request<'a>(&'a self, i: usize, proof: Option<Proof<'a>>) -> Request<'a> {
        Request {
            tenant: "kommune",
            user: &self.names[i],
            ip: self.ips[i],
            purpose: Purpose::SignIn,
            first_factor: FirstFactor::Ok,
            proof,
            device_token: None,
            remember_device: false,
        }
    }
}

/// The time at `secs` after the epoch.
pub fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// On-CPU time of one thread, in seconds, from Linux's `schedstat` (nanosecond resolution).
fn schedstat(path: &str) -> f64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_whitespace()
        .next()
        .and_then(|ns| ns.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

/// On-CPU time of the calling thread so far, in seconds.
pub fn thread_cpu() -> f64 {
    schedstat("/proc/thread-self/schedstat")
}

/// CPU time (user and system) this process has used so far, in seconds, threads that
/// have ended included. From `/proc/self/stat`, so in clock ticks (10 ms): read it over
/// seconds, not microseconds.
pub fn process_cpu() -> f64 {
    cpu_of_process("/proc/self/stat")
}

/// CPU time process `pid` has used so far, in seconds (see [`process_cpu`]).
pub fn process_cpu_of(pid: u32) -> f64 {
    cpu_of_process(&format!("/proc/{pid}/stat"))
}

/// Linux's user-visible clock tick (`sysconf(_SC_CLK_TCK)`), 100 on every architecture
/// it runs on today.
const CLOCK_TICKS_PER_S: f64 = 100.0;

fn cpu_of_process(path: &str) -> f64 {
    cpu_in_stat(&std::fs::read_to_string(path).unwrap_or_default()).unwrap_or(f64::NAN)
}

/// The CPU seconds in a `/proc/<pid>/stat` line. Fields after the command name (which may
/// hold spaces and parentheses): state is the first, utime the 12th and stime the 13th.
fn cpu_in_stat(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / CLOCK_TICKS_PER_S)
}

/// Resident set size of this process in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_an_awkward_command_name() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(cpu_in_stat(stat), Some(3.25));
        assert_eq!(cpu_in_stat("4242 (x) S 1 2"), None);
        let own = process_cpu_of(std::process::id());
        assert!(own.is_finite() && own >= 0.0, "{own}");
    }
}
