//! Shared helpers for the core's scenario tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::IpAddr;

use portvakt_core::admin::TotpSpec;
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{
    Decision, Engine, FirstFactor, MemoryStore, MethodId, Proof, Purpose, Request, Timestamp,
    config,
};

pub const KOMMUNE: &str = include_str!("../../../../examples/kommune.toml");
pub const OFFICE: &str = "10.20.1.5";
pub const HOME: &str = "203.0.113.9";
pub const T0: u64 = 1_700_000_010;

pub fn engine_with(policy_text: &str) -> Engine {
    let policy = config::load(policy_text).expect("policy compiles");
    Engine::new(
        policy,
        MemoryStore::default(),
        Pepper::new([42; 32]),
        Box::new(SeededEntropy::new(7)),
    )
}

pub fn kommune() -> Engine {
    engine_with(KOMMUNE)
}

pub fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// A user with an active authenticator app (secret derived from the name) and an active
/// SMS phone, so the municipality's two-method requirement is met.
pub fn user_with_app(e: &Engine, name: &str, groups: &[&str]) -> (MethodId, OtpKey) {
    e.add_user("kommune", name, groups, false).unwrap();
    let secret = secret_for(name);
    let m = e
        .import_totp("kommune", name, &secret, TotpSpec::default(), true)
        .unwrap();
    add_active_phone(e, "kommune", name);
    (m, OtpKey::new(Algorithm::Sha1, &secret))
}

pub fn secret_for(name: &str) -> Vec<u8> {
    let mut s = name.as_bytes().to_vec();
    s.resize(20, b'#');
    s
}

/// Adds an SMS method and proves it through a sent code.
pub fn add_active_phone(e: &Engine, tenant: &str, name: &str) -> MethodId {
    let m = e
        .add_phone(
            tenant,
            name,
            portvakt_core::directory::MethodKind::Sms,
            &phone_for(name),
        )
        .unwrap();
    let (challenge, delivery) = e
        .start_confirmation(tenant, name, m, at(T0 - 5))
        .unwrap()
        .unwrap();
    e.confirm_sent(
        tenant,
        name,
        m,
        challenge,
        delivery.code.expose(),
        at(T0 - 4),
    )
    .unwrap();
    m
}

/// A distinct Norwegian mobile number per name, ending in 78.
pub fn phone_for(name: &str) -> String {
    let h = name
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("+479{:05}78", h % 100_000)
}

pub fn code(key: &OtpKey, secs: u64) -> String {
    format!("{:06}", key.hotp(secs / 30, Digits::SIX))
}

pub fn req<'a>(user: &'a str, ip: &str, proof: Option<Proof<'a>>) -> Request<'a> {
    Request {
        tenant: "kommune",
        user,
        ip: ip.parse::<IpAddr>().unwrap(),
        purpose: Purpose::SignIn,
        first_factor: FirstFactor::Ok,
        proof,
        device_token: None,
        remember_device: false,
    }
}

/// The parts of a decision a frontend (and so an attacker behind it) can see.
pub fn visible(d: &Decision) -> (String, String, String, String, Option<u64>) {
    (
        d.outcome.as_str().to_owned(),
        d.reason.as_str().to_owned(),
        d.rule.to_string(),
        d.location.to_string(),
        d.retry_after.map(|r| r.as_secs_ceil()),
    )
}
