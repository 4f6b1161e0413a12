//! Arbitrary text as an import file, in both formats and as detected: accounts or a list
//! of line errors, never a panic. Every error names a line that exists, and every
//! account names its lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portvakt_server::import::{Format, parse};

fuzz_target!(|text: &str| {
    // CSV records may span lines inside quotes, so line numbers are bounded by the text's.
    let lines = text.split('\n').count().max(1);
    for format in [Format::detect(text), Format::Uris, Format::Csv] {
        match parse(text, format, Some("kommune")) {
            Ok(accounts) => {
                for a in &accounts {
                    assert!(!a.user.is_empty());
                    assert!((1..=lines).contains(&a.line), "{} of {lines}", a.line);
                    for (line, _) in &a.credentials {
                        assert!((1..=lines).contains(line));
                    }
                }
            }
            Err(errors) => {
                assert!(!errors.is_empty());
                for e in &errors {
                    assert!(e.line <= lines, "line {} of {lines}: {}", e.line, e.message);
                    assert!(!e.message.is_empty());
                }
            }
        }
    }
});
