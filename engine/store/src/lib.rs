//! Backends of the state seam (`portvakt_core::state::StateStore`).
//!
//! A backend stores what the core hands it and applies each operation atomically; it
//! carries no rule of its own (`docs/design.md`, "The contract for other stores"). Today
//! the one backend is the core's own [`MemoryStore`]; the durable embedded store and the
//! shared store land here.
//!
//! Every backend passes the same contract, `tests/contract/`: replay and lockout against a
//! model, the same code from many threads allowed once, parallel guesses counted exactly,
//! unknown names counted like users, source budgets and sent codes exact under contention,
//! and a failing store failing closed. A backend's test file instantiates it with
//! `contract_tests!(make)`, as `tests/memory.rs` does.

pub use portvakt_core::state::{MemoryStore, StateOps, StateStore, StoreError};
