//! Portvakt's server: the decision core served to frontends over QUIC.
//!
//! Work in progress: certificates and TLS configuration ([`pki`]), the request handler
//! ([`service`]), the QUIC endpoint ([`server`]) and a first client ([`client`]) so far;
//! Prometheus metrics ([`metrics`]); pipelining in the client and reloading on SIGHUP
//! come next.

pub mod client;
pub mod entropy;
pub mod metrics;
pub mod pki;
pub mod server;
pub mod service;
