//! The request handler, frame in and frame out, without a network.

use std::sync::Arc;

use bytes::BytesMut;
use portvakt::service::{Role, Service};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{Engine, MemoryStore, Timestamp, config};
use portvakt_wire::admin::{Str, StrList};
use portvakt_wire::*;

fn service() -> Service {
    let policy = config::load(include_str!("../../../examples/kommune.toml")).unwrap();
    let engine = Engine::new(
        policy,
        MemoryStore::default(),
        Pepper::new([3; 32]),
        Box::new(SeededEntropy::new(9)),
    );
    Service::new(Arc::new(engine), None)
}

fn call(s: &Service, role: Role, f: &Frame<'_>) -> Vec<u8> {
    let mut req = BytesMut::new();
    f.encode(&mut req).unwrap();
    let mut out = BytesMut::new();
    s.handle(role, &req, Timestamp::from_secs(1_700_000_000), &mut out);
    out.to_vec()
}

fn decide<'a>(user: &'a str) -> Frame<'a> {
    Frame::Decide(
        11,
        Decide {
            tenant: "kommune",
            user,
            ip: "10.20.1.1".parse().unwrap(),
            purpose: Purpose::SignIn,
            first_factor: FirstFactor::Ok,
            proof: None,
            device_token: None,
            remember_device: false,
        },
    )
}

#[test]
fn frames_in_frames_out_with_roles() {
    let s = service();
    // Nobody called kari is known, but the frontend vouches for the password: register.
    let out = call(&s, Role::Frontend, &decide("kari"));
    let Frame::Decision(11, d) = Frame::decode(&out).unwrap() else {
        panic!("{out:?}")
    };
    assert_eq!((d.outcome, d.reason), (Outcome::Register, "no_methods"));
    assert_eq!(
        (d.rule, d.location),
        ("municipal-network-single-factor", "municipal-network")
    );

    let add = Frame::Admin(
        12,
        Admin::AddUser {
            tenant: Str("kommune"),
            user: Str("kari"),
            groups: StrList(vec![]),
            passwordless: false,
        },
    );
    let out = call(&s, Role::Frontend, &add);
    assert!(matches!(
        Frame::decode(&out).unwrap(),
        Frame::Error {
            id: 12,
            code: ErrorCode::Forbidden,
            ..
        }
    ));
    let out = call(&s, Role::Admin, &add);
    assert!(matches!(
        Frame::decode(&out).unwrap(),
        Frame::AdminReply(12, AdminReply::UserAdded { .. })
    ));
    // Known now, without methods: register.
    let out = call(&s, Role::Frontend, &decide("kari"));
    let Frame::Decision(_, d) = Frame::decode(&out).unwrap() else {
        panic!()
    };
    assert_eq!((d.outcome, d.reason), (Outcome::Register, "no_methods"));
    // A refused administrator operation says why.
    let out = call(&s, Role::Admin, &add);
    let Frame::Error { code, message, .. } = Frame::decode(&out).unwrap() else {
        panic!()
    };
    assert_eq!((code, message), (ErrorCode::Refused, "user exists already"));
    // Enrolment hands back an otpauth URI.
    let enrol = Frame::Admin(
        13,
        Admin::EnrollTotp {
            tenant: Str("kommune"),
            user: Str("kari"),
            algorithm: 1,
            digits: 6,
            period: 30,
        },
    );
    let out = call(&s, Role::Admin, &enrol);
    let Frame::AdminReply(13, AdminReply::TotpEnrolled { uri, .. }) = Frame::decode(&out).unwrap()
    else {
        panic!()
    };
    assert!(uri.0.starts_with("otpauth://totp/kommune:kari?secret="));
}

#[test]
fn malformed_frames_get_an_error_naming_the_problem() {
    let s = service();
    let mut good = BytesMut::new();
    decide("kari").encode(&mut good).unwrap();
    let mut bad = good.to_vec();
    bad[9 + 1] = 0xff; // inside the tenant name: not UTF-8
    let mut out = BytesMut::new();
    s.handle(Role::Frontend, &bad, Timestamp::from_secs(1), &mut out);
    let Frame::Error { id, code, message } = Frame::decode(&out).unwrap() else {
        panic!()
    };
    assert_eq!((id, code), (11, ErrorCode::Malformed));
    assert_eq!(message, "tenant is not valid UTF-8");
    // A server-only frame sent by a client.
    let reply = Frame::AdminReply(4, AdminReply::Done {});
    let out = call(&s, Role::Admin, &reply);
    assert!(matches!(
        Frame::decode(&out).unwrap(),
        Frame::Error {
            id: 4,
            code: ErrorCode::Malformed,
            ..
        }
    ));
}
