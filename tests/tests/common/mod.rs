//! What the integration tests share.

use portvakt_wire::{Decide, FirstFactor, Proof, Purpose};

/// A sign-in to the municipality from `ip`, the password checked, with `code` from an
/// authenticator app if given.
pub(crate) fn attempt<'a>(user: &'a str, ip: &str, code: Option<&'a str>) -> Decide<'a> {
    Decide {
        tenant: "kommune",
        user,
        ip: ip.parse().unwrap(),
        purpose: Purpose::SignIn,
        first_factor: FirstFactor::Ok,
        proof: code.map(Proof::Totp),
        device_token: None,
        remember_device: false,
    }
}
