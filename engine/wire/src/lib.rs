//! Portvakt's wire protocol: compact, length-prefixed binary frames.
//!
//! This crate turns bytes into typed [`Frame`]s and back, and does nothing else: no I/O,
//! no async runtime, no knowledge of the engine. Every length is checked against its limit
//! (and against the bytes present) before anything is allocated; trailing bytes are
//! refused; a decode failure is a [`DecodeError`] value, never a panic.
//!
//! Versioning is by ALPN: this crate speaks `portvakt/1`. A server that learns a later
//! version keeps offering `portvakt/1` beside it, so older clients go on being served.
//! The byte layout of every frame is in `docs/protocol.md`.
//!
//! ```
//! use bytes::BytesMut;
//! use portvakt_wire::{Decide, FirstFactor, Frame, Proof, Purpose};
//!
//! let frame = Frame::Decide(7, Decide {
//!     tenant: "kommune",
//!     user: "kari@kommune.no",
//!     ip: "203.0.113.9".parse().unwrap(),
//!     purpose: Purpose::SignIn,
//!     first_factor: FirstFactor::Ok,
//!     proof: Some(Proof::Totp("492039")),
//!     device_token: None,
//!     remember_device: false,
//! });
//! let mut buf = BytesMut::new();
//! frame.encode(&mut buf).unwrap();
//! assert_eq!(portvakt_wire::frame_len(&buf), Ok(Some(buf.len())));
//! assert_eq!(Frame::decode(&buf), Ok(frame));
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[macro_use]
pub mod admin;
pub mod codec;
#[cfg(feature = "core")]
mod core;
pub mod device;
mod frame;
#[cfg(feature = "json")]
pub mod json;

pub use admin::{Admin, AdminReply};
pub use codec::DecodeError;
pub use device::{Device, DeviceReply};
pub use frame::*;

/// The ALPN protocol id of this version.
pub const ALPN: &[u8] = b"portvakt/1";
