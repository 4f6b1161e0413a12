//! RADIUS for VPN gateways, Wi-Fi controllers and network gear (RFC 2865, with RFC 2869,
//! 3579 and 5080's rules for Message-Authenticator and duplicates), deciding through the
//! same core as the QUIC frontend.
//!
//! - [`config`]: the listening address and the clients (NAS), each with address ranges,
//!   a shared secret, a tenant, and how the first factor is known.
//! - `endpoint`: the UDP socket, authenticity (BlastRADIUS: Message-Authenticator
//!   required by default, placed first in every reply), and the duplicates cache.
//! - `dialogue`: one Access-Request's answer: the first factor, the decision, and
//!   Accept, Reject or Challenge.

pub mod config;
mod dialogue;
mod endpoint;

pub use config::Config;
pub use endpoint::{MAX_ENTRIES, start};
