//! Decode, then encode: every frame the decoder accepts encodes again, the encoding
//! decodes to the same frame, and encoding that again gives the same bytes (so what a
//! server writes back is canonical).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portvakt_wire::Frame;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    let mut once = BytesMut::new();
    frame
        .encode(&mut once)
        .unwrap_or_else(|e| panic!("a decoded frame does not encode: {e}: {frame:?}"));
    let again = Frame::decode(&once).expect("an encoded frame decodes");
    assert_eq!(again, frame);
    let mut twice = BytesMut::new();
    again.encode(&mut twice).expect("encodes");
    assert_eq!(once, twice);
});
