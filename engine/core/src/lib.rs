//! Portvakt's decision core: one sign-in attempt in, one decision out.
//!
//! A frontend asks, once per login attempt, *may this person in now, and if not, what
//! must they still show?* This crate answers with [`Engine::decide`]: a pure call that
//! takes the request and the current time and returns a [`Decision`] naming the outcome
//! (allow, deny, challenge, locked, register, throttled), a machine-readable reason, and
//! the rule and network location that decided it.
//!
//! What it does:
//! - TOTP (RFC 6238) and HOTP (RFC 4226) with precomputed HMAC states, windows, learned
//!   and bounded clock drift, and HOTP resynchronisation ([`otp`]);
//! - replay protection, lockout and rate limits as pure transitions of small records,
//!   applied atomically by a [`StateStore`] ([`state`], [`lockout`], [`window`]);
//! - network-location policy with ordered rules ([`policy`], [`net`], [`config`]);
//! - the directory of users and methods, app passwords, remembered devices, SMS/voice
//!   and email codes ([`directory`], [`admin`]).
//!
//! What it does not do: it reads no clock, opens no socket, spawns no thread and writes
//! no file. Time and randomness come in as arguments; serving, persistence and the
//! sign-in log belong to the server crate.
//!
//! ```
//! use portvakt_core::{Engine, Request, FirstFactor, Outcome, Purpose, Timestamp};
//! use portvakt_core::{config, secret::Pepper, state::MemoryStore, testing::SeededEntropy};
//!
//! let policy = config::load(include_str!("../../../examples/kommune.toml")).unwrap();
//! let engine = Engine::new(policy, MemoryStore::default(), Pepper::new([7; 32]),
//!                          Box::new(SeededEntropy::new(1)));
//! engine.add_user("kommune", "kari@kommune.no", &[], false).unwrap();
//! let request = Request {
//!     tenant: "kommune",
//!     user: "kari@kommune.no",
//!     ip: "203.0.113.9".parse().unwrap(), // from home
//!     purpose: Purpose::SignIn,
//!     first_factor: FirstFactor::Ok,
//!     proof: None,
//!     device_token: None,
//!     remember_device: false,
//! };
//! // Kari has registered no methods yet, and the municipality requires two.
//! let decision = engine.decide(&request, Timestamp::from_secs(1_700_000_000));
//! assert_eq!(decision.outcome, Outcome::Register);
//! assert_eq!(decision.rule.as_str(), "elsewhere-second-factor");
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod admin;
mod arena;
pub mod config;
pub mod decide;
pub mod directory;
pub mod engine;
pub mod id;
pub mod lockout;
pub mod name;
pub mod net;
pub mod otp;
mod phantom;
pub mod policy;
pub mod push;
pub mod record;
pub mod secret;
pub mod state;
mod sync;
mod table;
pub mod testing;
pub mod ticket;
pub mod time;
pub mod webauthn;
pub mod window;

pub use decide::{Decision, DeviceToken, FirstFactor, MethodInfo, Outcome, Proof, Reason, Request};
pub use engine::{Delivery, Engine, SendRequest, Sent};
pub use id::{ChallengeId, MethodId, Subject, UserId};
pub use policy::{Policy, Purpose, Requirement};
pub use state::{MemoryStore, StateOps, StateStore};
pub use time::{Duration, Timestamp};
