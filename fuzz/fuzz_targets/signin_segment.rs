//! A sign-in log segment as a reader finds it after a crash or disk damage: records with
//! valid checksums around arbitrary bodies (which the fuzzer could not forge), mixed with
//! raw bytes. The walk never panics, accounts for every byte, finds every record that
//! was framed whole and decodes, and each row it finds writes back to the same row.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use portvakt_server::signin::{append, decode, fuzzing};

#[derive(Arbitrary, Debug)]
enum Piece {
    /// A record framed with a correct length and checksum.
    Record(Vec<u8>),
    /// Bytes as they are: damage, a torn write, or a forged header.
    Raw(Vec<u8>),
}

fuzz_target!(|pieces: Vec<Piece>| {
    let mut segment = Vec::new();
    let mut framed = Vec::new();
    for piece in &pieces {
        match piece {
            Piece::Record(body) => {
                let at = segment.len();
                if fuzzing::frame_record(body, &mut segment) && decode(body).is_some() {
                    framed.push(at);
                }
            }
            Piece::Raw(bytes) => segment.extend_from_slice(bytes),
        }
    }
    let (rows, skipped, end) = fuzzing::walk_segment(&segment);
    assert!(end <= segment.len());
    assert!(skipped <= end);
    // Records never overlap, and together with the skipped bytes they fill `..end`.
    let mut covered = 0;
    let mut last_end = 0;
    for (at, len, row) in &rows {
        assert!(*at >= last_end);
        covered += len;
        last_end = at + len;
        // The row written again decodes to itself.
        let mut one = BytesMut::new();
        assert!(
            append(&mut one, row),
            "a row read back does not write: {row:?}"
        );
        assert_eq!(decode(&one[fuzzing::HEADER_LEN..]).as_ref(), Some(row));
    }
    assert_eq!(covered + skipped, end);
    // A framed record is found unless a record the walk found earlier runs over it (raw
    // bytes can hold a valid record when the fuzzer copies one from another input).
    for at in framed {
        let found = rows.iter().any(|(start, _, _)| *start == at);
        let swallowed = rows
            .iter()
            .any(|(start, len, _)| *start < at && start + len > at);
        assert!(found || swallowed, "record at {at} lost");
    }
});
