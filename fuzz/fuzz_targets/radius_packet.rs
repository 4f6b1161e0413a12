//! RADIUS datagrams (`portvakt-radius`): whatever arrives, decoding answers a packet or an
//! error, never a panic; a packet that decodes encodes to exactly its datagram; checking
//! its Message-Authenticator, revealing its User-Password and signing a reply to it never
//! panic, a signed reply verifies, and so does the packet signed as a request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portvakt_radius::{Packet, attr, reveal_password};

const SECRET: &[u8] = b"fuzzing-secret";

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::decode(data) else {
        return;
    };
    let mut again = Vec::new();
    packet.encode(&mut again).expect("a decoded packet encodes");
    assert_eq!(again, data);
    let _ = Packet::verify_request(data, SECRET);
    if let Some(hidden) = packet.get(attr::USER_PASSWORD) {
        let _ = reveal_password(hidden, SECRET, &packet.authenticator);
    }
    // A reply carrying the request's attributes back (as Proxy-State is): signed, it
    // verifies, unless it no longer fits a packet.
    if let Ok(reply) = packet.sign_reply(&packet.authenticator, SECRET) {
        assert_eq!(
            Packet::verify_reply(&reply, &packet.authenticator, SECRET),
            Ok(true)
        );
    }
    if let Ok(request) = packet.sign_request(SECRET) {
        assert_eq!(Packet::verify_request(&request, SECRET), Ok(true));
    }
});
