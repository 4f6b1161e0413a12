//! Arbitrary bytes as a frame: decoding never panics, and the framing check a stream
//! reader uses agrees with the full decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portvakt_wire::{DecodeError, Frame, frame_len};

fuzz_target!(|data: &[u8]| {
    let decoded = Frame::decode(data);
    match frame_len(data) {
        // A whole frame by its length prefix: decode reads exactly it, or names a field.
        Ok(Some(n)) => {
            assert!(n <= data.len());
            if n < data.len() {
                assert_eq!(decoded, Err(DecodeError::Trailing(data.len() - n)));
            }
        }
        // Not all there yet: decode cannot have found a frame either.
        Ok(None) => assert!(decoded.is_err()),
        // A length over the limit: refused before anything else is read.
        Err(e) => assert_eq!(decoded, Err(e)),
    }
    if let Ok(frame) = decoded {
        assert_eq!(frame_len(data), Ok(Some(data.len())));
        let _ = frame.id();
    }
});
