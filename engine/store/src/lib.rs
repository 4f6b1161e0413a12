//! Backends of the state seam (`portvakt_core::state::StateStore`).
//!
//! A backend keeps the core's records by key and applies the core's function to one of
//! them atomically; it carries no rule of its own (`docs/design.md`, "The contract for
//! other stores"). Two ways to be one:
//!
//! - hold a lock across the function, as the core's own [`MemoryStore`] does;
//! - keep versioned bytes and swap a record only if its version is still the one read
//!   ([`cas::VersionedRecords`]); [`cas::CasStore`] runs the function, and runs it again
//!   after a conflict. The shared store over Redis ([`redis`]) is one.
//!
//! Every backend passes the same contract, `tests/contract/`: replay and lockout against a
//! model, the same code from many threads allowed once, parallel guesses counted exactly,
//! unknown names counted like users, source budgets and sent codes exact under contention,
//! and a failing store failing closed. A backend's test file instantiates it with
//! `contract_tests!(make)`, as `tests/memory.rs` and `tests/cas.rs` do.

mod any;
pub mod cas;
pub mod durable;
pub mod redis;
pub mod sealed;

pub use any::{Engine, Store};
pub use portvakt_core::state::{MemoryStore, StateOps, StateStore, StoreError};
