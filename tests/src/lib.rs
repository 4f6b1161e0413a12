//! Portvakt's integration-test crate.
//!
//! Today it compiles the README's Rust example as a doc test, so the README cannot drift
//! from the API. Tests that start real servers on loopback join it with the server.
#![cfg_attr(doctest, doc = include_str!("../../README.md"))]
