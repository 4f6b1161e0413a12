//! The codec against RFC 2865's own example (§7.1), its limits, and itself.

use portvakt_radius::{
    Attribute, DecodeError, MAX_PACKET, Packet, attr, code, hide_password, reveal_password,
};
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

const SECRET: &[u8] = b"xyzzy5461";

/// RFC 2865 §7.1: nemo's Access-Request, password "arctangent", from 192.168.1.16 port 3.
fn rfc_request() -> Vec<u8> {
    hex(
        "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb 98 f4 22 7a \
         01 06 6e 65 6d 6f \
         02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee \
         04 06 c0 a8 01 10 \
         05 06 00 00 00 03",
    )
}

#[test]
fn the_rfc_s_example_request_reads_and_its_password_is_revealed() {
    let bytes = rfc_request();
    let p = Packet::decode(&bytes).unwrap();
    assert_eq!((p.code, p.identifier), (code::ACCESS_REQUEST, 0));
    assert_eq!(p.get(attr::USER_NAME), Some(&b"nemo"[..]));
    let hidden = p.get(attr::USER_PASSWORD).unwrap();
    assert_eq!(
        reveal_password(hidden, SECRET, &p.authenticator).unwrap(),
        b"arctangent"
    );
    assert_eq!(
        hide_password(b"arctangent", SECRET, &p.authenticator).unwrap(),
        hidden
    );
    let mut again = Vec::new();
    p.encode(&mut again).unwrap();
    assert_eq!(again, bytes);
}

#[test]
fn the_rfc_s_example_accept_s_response_authenticator_verifies() {
    let request = Packet::decode(&rfc_request()).unwrap().authenticator;
    let accept = hex(
        "02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf 9b 55 e0 b2 \
                      06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03",
    );
    assert_eq!(Packet::verify_reply(&accept, &request, SECRET), Ok(true));
    assert_eq!(Packet::verify_reply(&accept, &request, b"wrong"), Ok(false));
    let mut forged = accept.clone();
    forged[25] ^= 1;
    assert_eq!(Packet::verify_reply(&forged, &request, SECRET), Ok(false));
}

#[test]
fn a_signed_reply_has_its_message_authenticator_first_and_verifies() {
    let request = [7u8; 16];
    let reply = Packet {
        code: code::ACCESS_CHALLENGE,
        identifier: 42,
        authenticator: [0; 16],
        attributes: vec![
            Attribute {
                kind: attr::REPLY_MESSAGE,
                value: b"Enter the code",
            },
            Attribute {
                kind: attr::STATE,
                value: &[1, 2, 3],
            },
        ],
    };
    let bytes = reply.sign_reply(&request, SECRET).unwrap();
    let p = Packet::decode(&bytes).unwrap();
    assert_eq!(p.attributes[0].kind, attr::MESSAGE_AUTHENTICATOR);
    assert_eq!(p.attributes.len(), 3);
    assert_eq!(Packet::verify_reply(&bytes, &request, SECRET), Ok(true));
    // Any byte changed, or another request's authenticator, fails.
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        assert_ne!(
            Packet::verify_reply(&bad, &request, SECRET),
            Ok(true),
            "byte {i}"
        );
    }
    assert_eq!(Packet::verify_reply(&bytes, &[8; 16], SECRET), Ok(false));
}

#[test]
fn a_request_s_message_authenticator_is_checked() {
    // A request signed the way clients sign: HMAC-MD5 over the packet with the field
    // zeroed, the request authenticator in the header.
    let mut bytes = rfc_request();
    bytes.extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
    bytes.extend_from_slice(&[0; 16]);
    let len = bytes.len() as u16;
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(Packet::verify_request(&bytes, SECRET), Ok(false));
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<md5::Md5>::new_from_slice(SECRET).unwrap();
    mac.update(&bytes);
    let sig = mac.finalize().into_bytes();
    let at = bytes.len() - 16;
    bytes[at..].copy_from_slice(&sig);
    assert_eq!(Packet::verify_request(&bytes, SECRET), Ok(true));
    assert_eq!(Packet::verify_request(&bytes, b"other"), Ok(false));
    bytes[at] ^= 1;
    assert_eq!(Packet::verify_request(&bytes, SECRET), Ok(false));
    // Without one: not verified.
    assert_eq!(Packet::verify_request(&rfc_request(), SECRET), Ok(false));
}

#[test]
fn a_signed_request_carries_its_message_authenticator_first() {
    let bytes = rfc_request();
    let request = Packet::decode(&bytes).unwrap();
    let signed = request.sign_request(SECRET).unwrap();
    let packet = Packet::decode(&signed).unwrap();
    assert_eq!(packet.attributes[0].kind, attr::MESSAGE_AUTHENTICATOR);
    assert_eq!(
        packet.authenticator, request.authenticator,
        "its own, unchanged"
    );
    assert_eq!(&packet.attributes[1..], &request.attributes[..]);
    assert_eq!(Packet::verify_request(&signed, SECRET), Ok(true));
    assert_eq!(Packet::verify_request(&signed, b"other"), Ok(false));
    // Signing again replaces the old one rather than adding a second.
    let again = packet.sign_request(SECRET).unwrap();
    assert_eq!(again, signed);
}

#[test]
fn lengths_and_attributes_must_fit_exactly() {
    let good = rfc_request();
    // Too short, too long, a length field that lies either way.
    assert_eq!(Packet::decode(&good[..19]), Err(DecodeError::Size(19)));
    assert_eq!(
        Packet::decode(&vec![0; MAX_PACKET + 1]),
        Err(DecodeError::Size(MAX_PACKET + 1))
    );
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        Packet::decode(&longer),
        Err(DecodeError::Length { .. })
    ));
    // An attribute of length 0 or 1, or one that runs past the end.
    for (at, len) in [(21, 0u8), (21, 1), (21, 200)] {
        let mut bad = good.clone();
        bad[at] = len;
        assert!(
            matches!(Packet::decode(&bad), Err(DecodeError::Attribute(_))),
            "length {len}"
        );
    }
    // A Message-Authenticator of the wrong size, or two.
    let mut two = good.clone();
    for _ in 0..2 {
        two.extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
        two.extend_from_slice(&[0; 16]);
    }
    let len = two.len() as u16;
    two[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(Packet::decode(&two), Err(DecodeError::MessageAuthenticator));
    // Passwords: at most 128 bytes; hidden ones a multiple of 16.
    assert!(hide_password(&[b'a'; 129], SECRET, &[0; 16]).is_err());
    assert!(reveal_password(&[0; 17], SECRET, &[0; 16]).is_err());
    assert!(reveal_password(&[], SECRET, &[0; 16]).is_err());
    assert!(reveal_password(&[0; 144], SECRET, &[0; 16]).is_err());
    // Values over 253 bytes cannot be written.
    let big = [0u8; 254];
    let p = Packet {
        code: 2,
        identifier: 0,
        authenticator: [0; 16],
        attributes: vec![Attribute {
            kind: attr::REPLY_MESSAGE,
            value: &big,
        }],
    };
    assert!(p.encode(&mut Vec::new()).is_err());
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_and_what_decodes_reencodes_the_same(
        bytes in proptest::collection::vec(any::<u8>(), 0..300)
    ) {
        if let Ok(p) = Packet::decode(&bytes) {
            let mut again = Vec::new();
            p.encode(&mut again).unwrap();
            prop_assert_eq!(again, bytes);
        }
    }

    #[test]
    fn a_hidden_password_is_revealed_as_it_was(
        password in proptest::collection::vec(1u8..=255, 0..=128),
        secret in proptest::collection::vec(any::<u8>(), 1..40),
        authenticator in any::<[u8; 16]>(),
    ) {
        let hidden = hide_password(&password, &secret, &authenticator).unwrap();
        prop_assert_eq!(hidden.len() % 16, 0);
        prop_assert_eq!(reveal_password(&hidden, &secret, &authenticator).unwrap(), password);
    }
}
