//! Security keys' responses (`portvakt_core::webauthn`): whatever a browser or an attacker
//! sends, as JSON or as authenticator data, the relying party's checks answer a refusal,
//! never panic or allocate without bound, and nothing they cannot match holds. The first
//! byte picks: the rest as authenticator data, or as the browser's JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portvakt_core::webauthn::{fuzz_authenticator_data, fuzz_response};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        let _ = fuzz_authenticator_data(bytes);
    } else if let Ok(json) = std::str::from_utf8(bytes) {
        // No response can pass a sign-in's checks against a key nobody holds.
        assert!(
            !fuzz_response(json),
            "a response nobody could sign was accepted"
        );
    }
});
