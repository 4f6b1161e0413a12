//! Portvakt's server: the decision core served to frontends over QUIC.
//!
//! Work in progress: certificates and TLS configuration ([`pki`]) and the request
//! handler ([`service`]) so far.

pub mod pki;
pub mod service;
