//! Arbitrary text as an `otpauth://` URI: a credential or an error naming the problem.
//! A URI that parses has a usable secret, and its account and issuer are not empty
//! strings.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match portvakt_server::import::parse_uri(text) {
        Ok(uri) => {
            assert!(!uri.account.is_empty());
            assert!(uri.issuer.as_deref() != Some(""));
            let debug = format!("{uri:?}");
            // The secret never shows in diagnostics.
            assert!(debug.contains("redacted"), "{debug}");
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
