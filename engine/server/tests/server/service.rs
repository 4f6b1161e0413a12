//! The request handler, frame in and frame out, without a network.

use std::sync::Arc;

use bytes::BytesMut;
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{MemoryStore, Timestamp, config};
use portvakt_server::frontend::quic::service::{Handled, Query, Role, Service};
use portvakt_store::Engine;
use portvakt_wire::admin::{Str, StrList};
use portvakt_wire::*;

fn service() -> Service {
    let policy = config::load(include_str!("../../../../examples/kommune.toml")).unwrap();
    let engine = Engine::new(
        policy,
        MemoryStore::default().into(),
        Pepper::new([3; 32]),
        Box::new(SeededEntropy::new(9)),
    );
    Service::new(Arc::new(engine), None)
}

fn call(s: &Service, role: Role, f: &Frame<'_>) -> Vec<u8> {
    call_logged(s, role, f).0
}

/// The answer and the sign-in records the frame produced.
fn call_logged(s: &Service, role: Role, f: &Frame<'_>) -> (Vec<u8>, Vec<u8>) {
    let mut req = BytesMut::new();
    f.encode(&mut req).unwrap();
    let (mut out, mut records) = (BytesMut::new(), BytesMut::new());
    let handled = s.handle(
        &role,
        &req,
        Timestamp::from_secs(1_700_000_000),
        &mut out,
        &mut records,
    );
    assert!(matches!(handled, Handled::Answered), "{handled:?}");
    (out.to_vec(), records.to_vec())
}

#[test]
fn each_decision_leaves_one_sign_in_record_and_nothing_else_does() {
    let s = service();
    let (_, records) = call_logged(&s, Role::Frontend, &decide("ukjent ø"));
    // header: u16 length, u32 CRC, then the row
    let len = usize::from(u16::from_be_bytes([records[0], records[1]]));
    assert_eq!(records.len(), 6 + len, "exactly one record");
    let row = portvakt_server::signin::decode(&records[6..]).unwrap();
    assert_eq!(row.at_ms, 1_700_000_000_000);
    assert_eq!((row.tenant, row.user), ("kommune", "ukjent ø"));
    assert_eq!(row.ip, "10.20.1.1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(
        (row.outcome, row.reason),
        (Outcome::Register as u8, "no_methods")
    );
    assert_eq!(row.location, "municipal-network");
    assert_eq!(row.rule, "municipal-network-single-factor");
    assert_eq!(row.method, None);

    let add = Frame::Admin(
        1,
        Admin::AddUser {
            tenant: Str("kommune"),
            user: Str("kari"),
            groups: StrList(vec![]),
            passwordless: false,
        },
    );
    assert!(call_logged(&s, Role::admin("test"), &add).1.is_empty());
    let garbage = [0, 0, 0, 5, 0x01, 0, 0, 0, 1];
    let (mut out, mut records) = (BytesMut::new(), BytesMut::new());
    s.handle(
        &Role::Frontend,
        &garbage,
        Timestamp::from_secs(1),
        &mut out,
        &mut records,
    );
    assert!(records.is_empty(), "an undecodable frame decides nothing");
}

#[test]
fn a_sign_in_query_is_left_to_the_connection_and_refused_to_frontends() {
    let s = service();
    let q = Frame::Admin(
        5,
        Admin::SignIns {
            tenant: Str("kommune"),
            user: Str("kari"),
            from_ms: 0,
            to_ms: u64::MAX,
            cursor: 0,
            limit: 10,
        },
    );
    let mut req = BytesMut::new();
    q.encode(&mut req).unwrap();
    let (mut out, mut records) = (BytesMut::new(), BytesMut::new());
    let handled = s.handle(
        &Role::admin("test"),
        &req,
        Timestamp::from_secs(1),
        &mut out,
        &mut records,
    );
    let Handled::Query(5, Query::SignIns(actor, query)) = handled else {
        panic!("{handled:?}")
    };
    assert_eq!(&*actor, "test");
    assert_eq!(
        (query.tenant.as_str(), query.user.as_str()),
        ("kommune", "kari")
    );
    assert!(out.is_empty());
    let out = call(&s, Role::Frontend, &q);
    assert!(matches!(
        Frame::decode(&out).unwrap(),
        Frame::Error {
            id: 5,
            code: ErrorCode::Forbidden,
            ..
        }
    ));
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
    let out = call(&s, Role::admin("test"), &add);
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
    let out = call(&s, Role::admin("test"), &add);
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
    let out = call(&s, Role::admin("test"), &enrol);
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
    s.handle(
        &Role::Frontend,
        &bad,
        Timestamp::from_secs(1),
        &mut out,
        &mut BytesMut::new(),
    );
    let Frame::Error { id, code, message } = Frame::decode(&out).unwrap() else {
        panic!()
    };
    assert_eq!((id, code), (11, ErrorCode::Malformed));
    assert_eq!(message, "tenant is not valid UTF-8");
    // A server-only frame sent by a client.
    let reply = Frame::AdminReply(4, AdminReply::Done {});
    let out = call(&s, Role::admin("test"), &reply);
    assert!(matches!(
        Frame::decode(&out).unwrap(),
        Frame::Error {
            id: 4,
            code: ErrorCode::Malformed,
            ..
        }
    ));
}
