//! Administrator frames: every kind round-trips, kinds are unique, limits hold.

use std::collections::HashSet;

use bytes::BytesMut;
use portvakt_wire::admin::{
    AppPasswordRow, AppPasswordRows, AuditEvents, Bytes, DeviceRow, DeviceRows, LongStr,
    MAX_AUDIT_EVENT, MethodRow, MethodRows, SignInRow, SignInRows, Str, StrList,
};
use portvakt_wire::*;
use proptest::prelude::*;

mod common;

fn round_trip(f: Frame<'_>) {
    let mut b = BytesMut::new();
    f.encode(&mut b).unwrap_or_else(|e| panic!("{f:?}: {e}"));
    common::seed(&b);
    assert_eq!(frame_len(&b), Ok(Some(b.len())));
    assert_eq!(Frame::decode(&b), Ok(f.clone()));
    for cut in 0..b.len() {
        assert!(Frame::decode(&b[..cut]).is_err(), "{f:?} cut at {cut}");
    }
}

fn examples<'a>(t: &'a str, u: &'a str, s: &'a str) -> Vec<Admin<'a>> {
    let name = Str(t);
    let user = Str(u);
    vec![
        Admin::AddUser {
            tenant: name,
            user,
            groups: StrList(vec!["legekontor", s]),
            passwordless: true,
        },
        Admin::RemoveUser { tenant: name, user },
        Admin::SetGroups {
            tenant: name,
            user,
            groups: StrList(vec![]),
        },
        Admin::SetPasswordless {
            tenant: name,
            user,
            passwordless: false,
        },
        Admin::SetMfaOptOut {
            tenant: name,
            user,
            opt_out: true,
        },
        Admin::EnrollTotp {
            tenant: name,
            user,
            algorithm: 1,
            digits: 6,
            period: 30,
        },
        Admin::ImportTotp {
            tenant: name,
            user,
            secret: Bytes(s.as_bytes()),
            algorithm: 3,
            digits: 8,
            period: 60,
            active: true,
        },
        Admin::AddHotp {
            tenant: name,
            user,
            secret: Bytes(b"12345678901234567890"),
            digits: 6,
            counter: u64::MAX,
        },
        Admin::AddPhone {
            tenant: name,
            user,
            kind: 3,
            number: Str("+4791234567"),
        },
        Admin::AddEmail {
            tenant: name,
            user,
            address: Str("kari@example.no"),
        },
        Admin::AddSecurityKey { tenant: name, user },
        Admin::SetSecurityQuestions {
            tenant: name,
            user,
            answers: StrList(vec!["Tromsø", s]),
        },
        Admin::ConfirmOtp {
            tenant: name,
            user,
            method: 7,
            code: Str("123 456"),
        },
        Admin::StartConfirmation {
            tenant: name,
            user,
            method: 8,
        },
        Admin::ConfirmSent {
            tenant: name,
            user,
            method: 8,
            challenge: [9; 16],
            code: Str("654321"),
        },
        Admin::RemoveMethod {
            tenant: name,
            user,
            method: 1,
        },
        Admin::RemoveAllMethods { tenant: name, user },
        Admin::SetDefaultMethod {
            tenant: name,
            user,
            method: 2,
        },
        Admin::Unlock { tenant: name, user },
        Admin::ResetDrift {
            tenant: name,
            user,
            method: 3,
        },
        Admin::CreateAppPassword {
            tenant: name,
            user,
            label: Str(s),
        },
        Admin::RevokeAppPassword {
            tenant: name,
            user,
            id: 4,
        },
        Admin::RevokeDevices {
            tenant: name,
            user,
            id: None,
        },
        Admin::UserInfo { tenant: name, user },
        Admin::ReloadPolicy {},
        Admin::Backup {
            path: LongStr("/var/backups/portvakt/2026-11-30.pvbackup"),
        },
        Admin::Audit {
            tenant: Str(""),
            user: Str("ø"),
            from_ms: 1,
            to_ms: u64::MAX,
            cursor: 12,
            limit: 24,
        },
        Admin::SignIns {
            tenant: name,
            user: Str(""),
            from_ms: 0,
            to_ms: u64::MAX,
            cursor: 1 << 32,
            limit: 24,
        },
        Admin::EnrollPush { tenant: name, user },
        Admin::SecurityKeyStart { tenant: name, user },
        Admin::SecurityKeyFinish {
            tenant: name,
            user,
            response: LongStr(s),
        },
    ]
}

fn replies(s: &str) -> Vec<AdminReply<'_>> {
    vec![
        AdminReply::Done {},
        AdminReply::UserAdded { user_id: 1 },
        AdminReply::MethodAdded { method: 2 },
        AdminReply::TotpEnrolled {
            method: 3,
            secret_base32: Str("GEZDGNBV"),
            uri: LongStr(s),
        },
        AdminReply::AppPasswordCreated {
            id: 1,
            password: Str("abcdefghijklmnop"),
        },
        AdminReply::ConfirmationSent {
            challenge: [1; 16],
            channel: 3,
            destination: Str("+4791234567"),
            code: Str("123456"),
            expires_ms: 5,
        },
        AdminReply::ConfirmationThrottled { retry_after_s: 60 },
        AdminReply::UserDescribed {
            user_id: 9,
            groups: StrList(vec!["a"]),
            passwordless: false,
            mfa_opt_out: false,
            default_method: Some(2),
            methods: MethodRows(vec![
                MethodRow {
                    id: 2,
                    kind: 1,
                    active: true,
                },
                MethodRow {
                    id: 3,
                    kind: 3,
                    active: false,
                },
            ]),
            app_passwords: AppPasswordRows(vec![AppPasswordRow {
                id: 1,
                label: "Outlook",
                created_ms: 1_700_000_000_000,
            }]),
            devices: DeviceRows(vec![
                DeviceRow {
                    id: 1,
                    expires_ms: 5,
                },
                DeviceRow {
                    id: 4,
                    expires_ms: u64::MAX,
                },
            ]),
        },
        AdminReply::PolicyReloaded { tenants: 3 },
        AdminReply::SecurityKeyOptions {
            options: LongStr(s),
            expires_ms: 1,
        },
        AdminReply::PushEnrolled {
            method: 4,
            token: Str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
            expires_ms: 1_700_000_900_000,
        },
        AdminReply::BackedUp {
            bytes: 1 << 33,
            files: 3,
        },
        AdminReply::AuditFound {
            events: AuditEvents(vec![b"\x01event", &[0; MAX_AUDIT_EVENT]]),
            next: None,
        },
        AdminReply::SignInsFound {
            rows: SignInRows(vec![row("kari@kommune.no"), row("ø")]),
            next: Some(7),
        },
    ]
}

fn row(s: &str) -> SignInRow<'_> {
    SignInRow {
        at_ms: 1_700_000_000_000,
        tenant: "kommune",
        user: s,
        ip: "2001:db8::1".parse().unwrap(),
        purpose: 1,
        outcome: 3,
        reason: "second_factor_required",
        method: None,
        location: "elsewhere",
        rule: "default",
        frontend: 1,
    }
}

#[test]
fn a_full_page_of_the_longest_sign_in_rows_fits_a_frame() {
    let name = "n".repeat(128);
    let reason = "r".repeat(64);
    let longest = SignInRow {
        at_ms: u64::MAX,
        tenant: &name,
        user: &name,
        ip: "2001:db8::1".parse().unwrap(),
        purpose: 1,
        outcome: 1,
        reason: &reason,
        method: Some(1),
        location: &name,
        rule: &name,
        frontend: 2,
    };
    let page = AdminReply::SignInsFound {
        rows: SignInRows(vec![longest; admin::MAX_SIGN_IN_ROWS]),
        next: Some(u64::MAX),
    };
    round_trip(Frame::AdminReply(u32::MAX, page));
    let over = AdminReply::SignInsFound {
        rows: SignInRows(vec![longest; admin::MAX_SIGN_IN_ROWS + 1]),
        next: None,
    };
    assert!(
        Frame::AdminReply(1, over)
            .encode(&mut BytesMut::new())
            .is_err()
    );
}

#[test]
fn every_admin_kind_round_trips_and_is_covered() {
    let long_uri = format!(
        "otpauth://totp/{}?secret={}",
        "k%20".repeat(60),
        "A".repeat(103)
    );
    let ex = examples("kommune", "kari@kommune.no", "ø and more");
    let covered: HashSet<u8> = ex.iter().map(Admin::kind).collect();
    let table: HashSet<u8> = Admin::KINDS.iter().map(|(k, _)| *k).collect();
    assert_eq!(covered, table, "every request kind has an example");
    for (i, a) in ex.into_iter().enumerate() {
        round_trip(Frame::Admin(i as u32, a));
    }
    let re = replies(&long_uri);
    let covered: HashSet<u8> = re.iter().map(AdminReply::kind).collect();
    assert_eq!(
        covered,
        AdminReply::KINDS
            .iter()
            .map(|(k, _)| *k)
            .collect::<HashSet<u8>>()
    );
    for (i, a) in re.into_iter().enumerate() {
        round_trip(Frame::AdminReply(i as u32, a));
    }
}

#[test]
fn kinds_are_unique_across_all_tables() {
    let mut seen = HashSet::from([0x01u8, 0x02, 0x81, 0x82, 0xff]);
    for (k, name) in Admin::KINDS.iter().chain(AdminReply::KINDS) {
        assert!(seen.insert(*k), "kind 0x{k:02x} ({name}) is used twice");
    }
}

#[test]
fn admin_limits_hold_both_ways() {
    let long = "x".repeat(129);
    let f = Frame::Admin(
        1,
        Admin::Unlock {
            tenant: Str(&long),
            user: Str("u"),
        },
    );
    assert_eq!(f.encode(&mut BytesMut::new()).unwrap_err().field, "tenant");
    let secret = vec![7u8; 129];
    let f = Frame::Admin(
        1,
        Admin::AddHotp {
            tenant: Str("t"),
            user: Str("u"),
            secret: Bytes(&secret),
            digits: 6,
            counter: 0,
        },
    );
    assert_eq!(f.encode(&mut BytesMut::new()).unwrap_err().field, "secret");
    let many: Vec<&str> = (0..65).map(|_| "g").collect();
    let f = Frame::Admin(
        1,
        Admin::SetGroups {
            tenant: Str("t"),
            user: Str("u"),
            groups: StrList(many),
        },
    );
    assert_eq!(f.encode(&mut BytesMut::new()).unwrap_err().field, "groups");
    // On the decode side, a forged group count is refused.
    let f = Frame::Admin(
        1,
        Admin::SetGroups {
            tenant: Str("t"),
            user: Str("u"),
            groups: StrList(vec![]),
        },
    );
    let mut b = BytesMut::new();
    f.encode(&mut b).unwrap();
    let mut forged = b.to_vec();
    *forged.last_mut().unwrap() = 65;
    assert!(matches!(
        Frame::decode(&forged),
        Err(DecodeError::TooLong {
            field: "groups",
            ..
        })
    ));
}

proptest! {
    #[test]
    fn admin_frames_with_arbitrary_text_round_trip(t in "\\PC{0,30}", u in "\\PC{0,30}", s in "[a-zA-Z0-9 ]{0,40}") {
        prop_assume!(t.len() <= 128 && u.len() <= 128);
        for a in examples(&t, &u, &s) {
            let f = Frame::Admin(5, a);
            let mut b = BytesMut::new();
            f.encode(&mut b).unwrap();
            prop_assert_eq!(Frame::decode(&b), Ok(f));
        }
    }
}

#[test]
fn every_device_kind_round_trips_and_refuses_what_it_must() {
    use portvakt_wire::device::{ApprovalRow, ApprovalRows, MAX_APPROVALS};
    let requests = vec![
        Device::DeviceEnrol {
            tenant: Str("kommune"),
            user: Str("ø@kommune.no"),
            method: 3,
            token: Str("ABCDEFGH"),
            key: [7; 32],
            signature: [8; 64],
        },
        Device::DeviceNonce {},
        Device::DeviceSignIn {
            tenant: Str("kommune"),
            user: Str("kari"),
            method: u32::MAX,
            signature: [0; 64],
        },
        Device::DeviceList { wait_ms: 30_000 },
        Device::DeviceAnswer {
            approval: [1; 16],
            verdict: 1,
            number: 42,
            signature: [2; 64],
        },
    ];
    let covered: HashSet<u8> = requests.iter().map(Device::kind).collect();
    let table: HashSet<u8> = Device::KINDS.iter().map(|(k, _)| *k).collect();
    assert_eq!(covered, table, "every device request has an example");
    for (i, d) in requests.into_iter().enumerate() {
        round_trip(Frame::Device(i as u32, d));
    }
    let row = ApprovalRow {
        id: [3; 16],
        issued_ms: 1,
        expires_ms: u64::MAX,
        purpose: 1,
        location: "municipal-network",
    };
    let replies = vec![
        DeviceReply::DeviceDone {},
        DeviceReply::Nonce { nonce: [9; 32] },
        DeviceReply::Approvals {
            approvals: ApprovalRows(vec![row; MAX_APPROVALS]),
        },
        DeviceReply::Answered { result: 3 },
    ];
    let covered: HashSet<u8> = replies.iter().map(DeviceReply::kind).collect();
    let table: HashSet<u8> = DeviceReply::KINDS.iter().map(|(k, _)| *k).collect();
    assert_eq!(covered, table, "every device reply has an example");
    for (i, d) in replies.into_iter().enumerate() {
        round_trip(Frame::DeviceReply(i as u32, d));
    }
    // Six approvals are more than a list holds: refused on both sides.
    let over = DeviceReply::Approvals {
        approvals: ApprovalRows(vec![row; MAX_APPROVALS + 1]),
    };
    assert!(
        Frame::DeviceReply(1, over)
            .encode(&mut BytesMut::new())
            .is_err()
    );
    let mut b = BytesMut::new();
    Frame::DeviceReply(
        1,
        DeviceReply::Approvals {
            approvals: ApprovalRows(vec![row; MAX_APPROVALS]),
        },
    )
    .encode(&mut b)
    .unwrap();
    // The count byte follows length, kind and id.
    b[9] = (MAX_APPROVALS + 1) as u8;
    assert!(Frame::decode(&b).is_err());
    // Kinds are unique across every table.
    let all: Vec<u8> = Admin::KINDS
        .iter()
        .chain(AdminReply::KINDS)
        .chain(Device::KINDS)
        .chain(DeviceReply::KINDS)
        .map(|(k, _)| *k)
        .chain([0x01, 0x02, 0x81, 0x82, 0xff])
        .collect();
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        all.len(),
        "{all:?}"
    );
}

#[test]
fn a_push_proof_waits_at_most_thirty_seconds() {
    let decide = |wait_ms| {
        Frame::Decide(
            1,
            Decide {
                tenant: "k",
                user: "u",
                ip: "192.0.2.1".parse().unwrap(),
                purpose: Purpose::SignIn,
                first_factor: FirstFactor::None,
                proof: Some(Proof::Push {
                    approval: [5; 16],
                    wait_ms,
                }),
                device_token: None,
                remember_device: false,
            },
        )
    };
    round_trip(decide(MAX_WAIT_MS));
    assert!(
        decide(MAX_WAIT_MS + 1)
            .encode(&mut BytesMut::new())
            .is_err()
    );
    // Written by hand past the limit, it is refused on decoding.
    let mut b = BytesMut::new();
    decide(MAX_WAIT_MS).encode(&mut b).unwrap();
    let at = b.len() - 6; // wait u32, then no device token, no remembering
    b[at..at + 4].copy_from_slice(&(MAX_WAIT_MS + 1).to_be_bytes());
    assert!(matches!(
        Frame::decode(&b),
        Err(DecodeError::BadValue { field: "wait", .. })
    ));
}

#[cfg(feature = "json")]
#[test]
fn every_admin_kind_goes_to_json_and_back_unchanged() {
    let ex = examples("kommune", "kari@kommune.no", "ø and more");
    for a in ex {
        let (name, fields) = a.to_json();
        let value = serde_json::Value::Object(fields);
        let owned = Admin::json_owned(&name, &value).unwrap_or_else(|e| panic!("{name}: {e}"));
        let back =
            Admin::from_json(&name, &value, &owned).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, a, "{name}: {value}");
    }
    assert_eq!(Admin::json_names().len(), Admin::KINDS.len());
    assert!(Admin::json_names().contains(&"add_user".to_owned()));
    // Every reply has a JSON form naming it.
    for r in replies("otpauth://totp/x") {
        let (name, _) = r.to_json();
        assert!(AdminReply::json_names().contains(&name));
    }
}

#[cfg(feature = "json")]
#[test]
fn json_requests_are_refused_with_the_field_named() {
    use serde_json::json;
    let refused = |name: &str, v: serde_json::Value| {
        let owned = Admin::json_owned(name, &v);
        match owned {
            Err(e) => e,
            Ok(owned) => Admin::from_json(name, &v, &owned).unwrap_err(),
        }
    };
    let add = |v| refused("add_user", v);
    assert_eq!(
        add(json!({"tenant": "kommune", "user": "kari", "groups": []})),
        "passwordless: missing"
    );
    assert!(
        add(json!({"tenant": "k", "user": "x".repeat(129), "groups": [], "passwordless": false}))
            .starts_with("user: 129 bytes")
    );
    assert!(
        add(
            json!({"tenant": "k", "user": "u", "groups": [], "passwordless": false, "admin": true})
        )
        .starts_with("admin: not a field")
    );
    assert!(
        add(json!({"tenant": 5, "user": "u", "groups": [], "passwordless": false}))
            .starts_with("tenant: not a string")
    );
    assert!(add(json!([1, 2])).contains("not a JSON object"));
    let groups: Vec<String> = (0..65).map(|i| i.to_string()).collect();
    assert!(
        add(json!({"tenant": "k", "user": "u", "groups": groups, "passwordless": false}))
            .starts_with("groups: 65 items")
    );
    let import = |secret: &str| {
        refused(
            "import_totp",
            json!({"tenant": "k", "user": "u", "secret": secret, "algorithm": 1, "digits": 6, "period": 30, "active": true}),
        )
    };
    assert!(import("not base32!").starts_with("secret: not base32"));
    assert!(import(&"A".repeat(300)).starts_with("secret: 187 bytes"));
    assert!(
        refused(
            "confirm_sent",
            json!({"tenant": "k", "user": "u", "method": 1, "challenge": "abcd", "code": "123456"})
        )
        .starts_with("challenge: not 32 hex digits")
    );
    assert!(
        refused(
            "set_default_method",
            json!({"tenant": "k", "user": "u", "method": -1})
        )
        .starts_with("method: not a whole number")
    );
    assert!(refused("no_such_thing", json!({})).contains("no such operation"));
}
