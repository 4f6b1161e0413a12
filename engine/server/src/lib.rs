//! Portvakt's server: the decision core served to frontends over QUIC.
//!
//! Certificates and TLS configuration ([`pki`]), the request handler ([`service`]), the
//! QUIC endpoint ([`server`]), Prometheus metrics ([`metrics`]) and the operating system's
//! randomness ([`entropy`]). The client frontends embed is the `portvakt-client` crate.

pub mod entropy;
pub mod metrics;
pub mod pki;
pub mod server;
pub mod service;
