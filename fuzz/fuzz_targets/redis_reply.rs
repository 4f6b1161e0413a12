//! The shared store's reading of Redis replies (RESP2): whatever bytes arrive, the decoder
//! answers a reply, "not yet" or an error, never panics or allocates past its limits; a
//! reply it accepts is the same when read again from exactly its bytes, and every strict
//! prefix of it is "not yet" (a reply split over reads is never mistaken for another).
//! The first byte picks: decode the rest, or encode the rest as a command (split at
//! zero bytes) and read it back as the array of bulk strings it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portvakt_store::redis::resp::{Reply, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(Some((reply, n))) = decode(bytes) {
            assert!(n <= bytes.len());
            let again = decode(&bytes[..n]).expect("its own bytes decode");
            assert_eq!(again, Some((reply, n)));
            for cut in [0, n / 2, n.saturating_sub(1)] {
                if cut < n {
                    assert_eq!(decode(&bytes[..cut]), Ok(None), "prefix {cut} of {n}");
                }
            }
        }
    } else {
        let args: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
        let mut out = Vec::new();
        encode(&args, &mut out);
        let (reply, n) = decode(&out).expect("a command is a reply").expect("whole");
        assert_eq!(n, out.len());
        let want = Reply::Array(Some(
            args.iter().map(|a| Reply::Bulk(Some(a.to_vec()))).collect(),
        ));
        assert_eq!(reply, want);
    }
});
