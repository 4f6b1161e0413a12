//! Portvakt's own protocol over QUIC: the endpoint (connections, limits, streams, framing)
//! and the service that answers each frame.

pub mod device;
pub mod endpoint;
pub mod service;
