//! The codec against itself, against arbitrary bytes, and against a fixed byte layout.

use std::net::IpAddr;

use bytes::BytesMut;
use portvakt_wire::*;
use proptest::prelude::*;

mod common;

fn encode(f: &Frame<'_>) -> BytesMut {
    let mut b = BytesMut::new();
    f.encode(&mut b).unwrap();
    b
}

// Strategies produce owned data; frames borrow from it.
#[derive(Clone, Debug)]
struct Owned {
    kind: u8,
    id: u32,
    names: [String; 4],
    codes: [String; 2],
    ip: IpAddr,
    small: [u8; 6],
    nums: [u32; 3],
    big: u64,
    challenge: [u8; 16],
    answers: Vec<String>,
    methods: Vec<(u32, u8, Option<String>)>,
    flags: [bool; 6],
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9@._-]{0,40}", "\\PC{0,20}"].prop_filter("fits", |s| s.len() <= MAX_NAME)
}

fn code() -> impl Strategy<Value = String> {
    "[0-9 ]{0,16}"
}

fn owned() -> impl Strategy<Value = Owned> {
    (
        (
            0u8..5,
            any::<u32>(),
            [name(), name(), name(), name()],
            [code(), code()],
        ),
        (
            any::<IpAddr>(),
            any::<[u8; 6]>(),
            any::<[u32; 3]>(),
            any::<u64>(),
            any::<[u8; 16]>(),
        ),
        proptest::collection::vec("\\PC{0,30}", 0..=MAX_ANSWERS),
        proptest::collection::vec(
            (
                any::<u32>(),
                1u8..=7,
                proptest::option::of("[•0-9 a-z@.]{0,20}"),
            ),
            0..=MAX_METHODS,
        ),
        any::<[bool; 6]>(),
    )
        .prop_map(
            |(
                (kind, id, names, codes),
                (ip, small, nums, big, challenge),
                answers,
                methods,
                flags,
            )| Owned {
                kind,
                id,
                names,
                codes,
                ip,
                small,
                nums,
                big,
                challenge,
                answers,
                methods,
                flags,
            },
        )
}

fn pick<T: Copy>(all: &[T], i: u8) -> T {
    all[usize::from(i) % all.len()]
}

fn frame(o: &Owned) -> Frame<'_> {
    let decision = Decision {
        outcome: pick(Outcome::ALL, o.small[0]),
        reason: &o.names[0],
        rule: &o.names[1],
        location: &o.names[2],
        methods: o
            .methods
            .iter()
            .map(|(id, k, h)| MethodInfo {
                id: *id,
                kind: pick(MethodKind::ALL, *k),
                hint: h.as_deref(),
            })
            .collect(),
        retry_after_s: o.flags[0].then_some(o.nums[0]),
        method: o.flags[1].then(|| pick(MethodKind::ALL, o.small[1])),
        device_token: o.flags[2].then(|| DeviceToken {
            token: &o.codes[0],
            expires_ms: o.big,
        }),
        approval: o.flags[3].then_some(Approval {
            id: o.challenge,
            number: o.small[5],
            expires_ms: o.big,
        }),
        security_key: o.flags[4].then_some(o.names[3].as_str()),
    };
    match o.kind {
        0 => Frame::Decide(
            o.id,
            Decide {
                tenant: &o.names[0],
                user: &o.names[1],
                ip: o.ip,
                purpose: pick(Purpose::ALL, o.small[2]),
                first_factor: pick(FirstFactor::ALL, o.small[3]),
                proof: match o.small[4] % 8 {
                    0 => None,
                    1 => Some(Proof::Totp(&o.codes[0])),
                    2 => Some(Proof::Hotp {
                        code: &o.codes[0],
                        next: o.flags[3].then_some(o.codes[1].as_str()),
                    }),
                    3 => Some(Proof::Sent {
                        challenge: o.challenge,
                        code: &o.codes[1],
                    }),
                    4 => Some(Proof::AppPassword(&o.codes[0])),
                    6 => Some(Proof::SecurityKey(&o.names[2])),
                    5 => Some(Proof::Push {
                        approval: o.challenge,
                        wait_ms: o.nums[2] % (MAX_WAIT_MS + 1),
                    }),
                    _ => Some(Proof::SecurityAnswers(
                        o.answers.iter().map(String::as_str).collect(),
                    )),
                },
                device_token: o.flags[4].then_some(o.codes[1].as_str()),
                remember_device: o.flags[5],
            },
        ),
        1 => Frame::SendCode(
            o.id,
            SendCode {
                tenant: &o.names[0],
                user: &o.names[3],
                ip: o.ip,
                purpose: pick(Purpose::ALL, o.small[2]),
                method: o.flags[3].then_some(o.nums[1]),
            },
        ),
        2 => Frame::Decision(o.id, decision),
        3 => Frame::Sent {
            id: o.id,
            decision,
            challenge: o.flags[3].then_some(o.challenge),
            delivery: o.flags[4].then(|| Delivery {
                channel: pick(MethodKind::ALL, o.small[5]),
                destination: &o.names[3],
                code: &o.codes[1],
                expires_ms: o.big,
            }),
        },
        _ => Frame::Error {
            id: o.id,
            code: ErrorCode::from_u16(u16::from(o.small[0] % 7 + 1)).unwrap(),
            message: &o.names[3],
        },
    }
}

proptest! {
    #[test]
    fn every_frame_round_trips(o in owned()) {
        let f = frame(&o);
        let bytes = encode(&f);
        common::seed(&bytes);
        prop_assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
        prop_assert_eq!(Frame::decode(&bytes), Ok(f));
    }

    #[test]
    fn every_truncation_and_extension_is_an_error(o in owned(), extra in 1usize..8) {
        let bytes = encode(&frame(&o));
        for cut in 0..bytes.len() {
            prop_assert!(Frame::decode(&bytes[..cut]).is_err(), "cut at {}", cut);
            prop_assert_eq!(frame_len(&bytes[..cut]).ok().flatten(), None);
        }
        // Bytes after the frame are refused by decode (a stream reader would split them off).
        let mut longer = bytes.to_vec();
        longer.extend(std::iter::repeat_n(0u8, extra));
        prop_assert_eq!(Frame::decode(&longer), Err(DecodeError::Trailing(extra)));
        // A body longer than its fields is refused too.
        let mut padded = bytes.to_vec();
        padded.push(0);
        let len = u32::from_be_bytes(padded[..4].try_into().unwrap()) + 1;
        padded[..4].copy_from_slice(&len.to_be_bytes());
        prop_assert_eq!(Frame::decode(&padded), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = frame_len(&bytes);
        if let Ok(f) = Frame::decode(&bytes) {
            // Whatever decodes re-encodes to the same bytes.
            prop_assert_eq!(encode(&f).to_vec(), bytes);
        }
    }

    #[test]
    fn valid_prefix_with_random_body_never_panics(kind in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = ((body.len() + 5) as u32).to_be_bytes().to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(&[0, 0, 0, 1]);
        bytes.extend_from_slice(&body);
        if let Ok(f) = Frame::decode(&bytes) {
            prop_assert_eq!(encode(&f).to_vec(), bytes);
        }
    }
}

/// First found by the `wire_decode` fuzz target: `frame_len` and `decode` must agree on a
/// length prefix too short to hold a kind and an id. It delimits a frame like any other
/// (so a stream reader answers it as malformed and goes on with what follows); decoding
/// that frame fails for want of its kind or id.
#[test]
fn a_length_too_short_for_kind_and_id_delimits_a_malformed_frame() {
    let crash = b"\0\0\0\0\0\x02\x01\x01\0\0\0\x03\x03\0\x01\x07Outlook\x02";
    for len in 0u32..5 {
        let mut buf = len.to_be_bytes().to_vec();
        buf.extend_from_slice(&crash[4..]);
        let end = 4 + len as usize;
        assert_eq!(frame_len(&buf), Ok(Some(end)));
        assert_eq!(
            Frame::decode(&buf),
            Err(DecodeError::Trailing(buf.len() - end))
        );
        let field = if len == 0 { "kind" } else { "id" };
        let want = DecodeError::Truncated { field };
        assert_eq!(Frame::decode(&buf[..end]), Err(want.clone()));
        assert_eq!(ErrorCode::of(&want), ErrorCode::Malformed);
    }
}

#[test]
fn limits_are_checked_before_allocating() {
    // A length prefix past the limit is refused from the first four bytes.
    let huge = (MAX_FRAME as u32 + 1).to_be_bytes();
    assert!(matches!(
        frame_len(&huge),
        Err(DecodeError::TooLong { field: "frame", .. })
    ));
    assert_eq!(
        ErrorCode::of(&frame_len(&huge).unwrap_err()),
        ErrorCode::TooLarge
    );
    assert_eq!(frame_len(&[0, 0, 0, 2]), Ok(None));
    assert_eq!(frame_len(&[0, 0, 0, 2, 0, 0]), Ok(Some(6)));
    // A list count larger than the bytes present is refused before any Vec is reserved.
    let mut f = vec![0, 0, 0, 0, 0x81, 0, 0, 0, 1, 1, 0, 0, 0, 200];
    let len = (f.len() - 4) as u32;
    f[..4].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(
        Frame::decode(&f),
        Err(DecodeError::TooLong {
            field: "methods",
            ..
        })
    ));
    let mut f = vec![0, 0, 0, 0, 0x81, 0, 0, 0, 1, 1, 0, 0, 0, 9];
    let len = (f.len() - 4) as u32;
    f[..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        Frame::decode(&f),
        Err(DecodeError::Truncated { field: "methods" })
    );
    // Encoding refuses fields over their limits instead of truncating them.
    let long = "x".repeat(MAX_NAME + 1);
    let f = Frame::SendCode(
        1,
        SendCode {
            tenant: &long,
            user: "u",
            ip: "::1".parse().unwrap(),
            purpose: Purpose::SignIn,
            method: None,
        },
    );
    let mut b = BytesMut::new();
    assert_eq!(f.encode(&mut b).unwrap_err().field, "tenant");
    assert!(b.is_empty(), "nothing is written for a refused frame");
}

#[test]
fn bad_values_are_named() {
    let ok = Frame::SendCode(
        3,
        SendCode {
            tenant: "t",
            user: "u",
            ip: "10.0.0.1".parse().unwrap(),
            purpose: Purpose::SignIn,
            method: None,
        },
    );
    let bytes = encode(&ok).to_vec();
    // Purpose is the byte after tenant, user and the 5-byte IPv4 address.
    let purpose_at = 4 + 1 + 4 + 2 + 2 + 5;
    let mut bad = bytes.clone();
    bad[purpose_at] = 9;
    assert_eq!(
        Frame::decode(&bad),
        Err(DecodeError::BadValue {
            field: "purpose",
            value: 9
        })
    );
    let mut bad = bytes.clone();
    bad[4] = 0x42;
    assert_eq!(Frame::decode(&bad), Err(DecodeError::UnknownKind(0x42)));
    assert_eq!(
        ErrorCode::of(&DecodeError::UnknownKind(0x42)),
        ErrorCode::UnknownKind
    );
    let mut bad = bytes.clone();
    bad[4 + 1 + 4 + 1] = 0xff; // tenant's one byte is not UTF-8
    assert_eq!(
        Frame::decode(&bad),
        Err(DecodeError::Utf8 { field: "tenant" })
    );
    let mut bad = bytes;
    bad[4 + 1 + 4 + 2 + 2] = 5; // IP family 5
    assert_eq!(
        Frame::decode(&bad),
        Err(DecodeError::BadValue {
            field: "ip",
            value: 5
        })
    );
}
