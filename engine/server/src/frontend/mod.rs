//! The ways frontends reach the engine, one folder each: today QUIC with Portvakt's own
//! protocol ([`quic`]).

pub mod quic;
