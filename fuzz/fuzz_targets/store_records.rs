//! The bytes a store keeps: a subject's state, a budget, a challenge, a batch of directory
//! changes, an audit event. Each decoder refuses what its encoder would not have written, never panics,
//! and what it accepts encodes to the same bytes (one form per record). The first byte
//! picks the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portvakt_core::directory::change::Change;
use portvakt_core::state::{ChallengeRecord, Counter, UserState};
use portvakt_server::audit::Event;

fn canonical<T>(bytes: &[u8], decode: fn(&[u8]) -> Option<T>, encode: fn(&T, &mut Vec<u8>)) {
    if let Some(record) = decode(bytes) {
        let mut again = Vec::new();
        encode(&record, &mut again);
        assert_eq!(again, bytes, "a decoded record encodes to other bytes");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => canonical(bytes, |b| UserState::decode(b).ok(), UserState::encode),
        1 => canonical(bytes, |b| Counter::decode(b).ok(), Counter::encode),
        2 => canonical(
            bytes,
            |b| ChallengeRecord::decode(b).ok(),
            ChallengeRecord::encode,
        ),
        3 => canonical(
            bytes,
            |b| Change::decode_batch(b).ok(),
            |c, out| Change::encode_batch(c, out),
        ),
        _ => canonical(bytes, |b| Event::decode(b).ok(), Event::encode),
    }
});
