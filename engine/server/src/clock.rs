//! The server's clocks, read here and nowhere else in the server: the wall clock that
//! decisions and sign-in records are made at, and the monotonic clock that times them.
//! (The core reads no clock at all; it takes `now` as an argument.)
#![allow(clippy::disallowed_methods)] // this module is the server's one reader of the clocks

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use portvakt_core::Timestamp;

/// The wall-clock time, as the core takes it.
pub fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// A point on the monotonic clock, for measuring how long something took.
pub fn instant() -> Instant {
    Instant::now()
}
