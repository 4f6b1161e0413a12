//! The ways frontends reach the engine, one folder each: QUIC with Portvakt's own
//! protocol ([`quic`]), and RADIUS for VPN gateways and network gear ([`radius`]).

mod challenge;
pub mod quic;
pub mod radius;
