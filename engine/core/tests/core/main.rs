//! The core's integration tests, one binary (it links once): scenarios from the
//! municipality's guide, the enumeration walk, invariants and windows against models,
//! the store's records and the directory's changes as bytes, a directory rebuilt from its
//! changes, and a failing store or change log failing closed. The loom models
//! are their own binary (`tests/loom.rs`), built only with `--cfg loom`.

mod changes;
mod common;
mod enumeration;
mod failures;
mod invariants;
mod keys;
mod push;
mod records;
mod scenarios;
mod window_model;
