//! The core's integration tests, one binary (it links once): scenarios from the
//! municipality's guide, the enumeration walk, invariants and windows against models,
//! the subject record's byte form, and a failing store failing closed. The loom models
//! are their own binary (`tests/loom.rs`), built only with `--cfg loom`.

mod common;
mod enumeration;
mod failures;
mod invariants;
mod records;
mod scenarios;
mod window_model;
