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

pub mod net;
pub mod otp;
pub mod secret;
pub mod time;
