//! Portvakt's server: the decision core served to frontends over QUIC, RADIUS and HTTPS.
//!
//! What every frontend shares ([`app`]: the engine, the clock, the policy file, and each
//! decision timed, counted and recorded in the sign-in log), the frontends
//! ([`frontend`]: the QUIC endpoint and the service answering its frames, RADIUS for VPN
//! gateways, HTTPS for privacyIDEA's clients and the JSON API), certificates
//! and TLS configuration ([`pki`]), the sign-in log ([`signin`]), the audit trail ([`audit`]), reading import files
//! ([`import`]), keeping the durable store ([`state`]), Prometheus metrics
//! ([`metrics`]), the clocks ([`clock`]) and the operating system's randomness
//! ([`entropy`]). The client frontends embed is the `portvakt-client` crate.

pub mod app;
pub mod audit;
mod bytes_in;
pub mod clock;
pub mod entropy;
pub mod frontend;
pub mod import;
pub mod metrics;
pub mod pki;
pub mod push;
pub mod signin;
pub mod state;

/// Writes one line to standard error, ignoring failure (a server must not stop because
/// whoever started it closed its output).
pub(crate) fn warn(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "portvakt: {line}");
}
