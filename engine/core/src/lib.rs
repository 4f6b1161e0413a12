//! Portvakt's decision core.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod config;
pub mod id;
pub mod lockout;
pub mod name;
pub mod net;
pub mod otp;
pub mod policy;
pub mod secret;
pub mod state;
mod sync;
mod table;
pub mod time;
pub mod window;
