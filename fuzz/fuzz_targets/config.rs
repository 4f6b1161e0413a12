//! Arbitrary text as the policy file: a policy or a precise error, never a panic. A
//! policy that loads renders its diagnostics without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match portvakt_core::config::load(text) {
        Ok(policy) => {
            let _ = format!("{policy:?}");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty());
        }
    }
});
