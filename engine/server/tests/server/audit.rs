//! The audit trail: every administrator operation recorded with who, what and what
//! changed, refusals and reads included, and never a secret; the events' own format
//! strict.

use std::sync::Arc;

use bytes::BytesMut;
use portvakt_core::secret::Pepper;
use portvakt_core::state::StoreLimits;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{Timestamp, config};
use portvakt_server::app::AuditTrail;
use portvakt_server::audit::{Change, Event, Outcome};
use portvakt_server::frontend::quic::service::{AuditQuery, Handled, Role, Service, audit_page};
use portvakt_store::durable;
use portvakt_store::sealed::MasterKey;
use portvakt_wire::admin::{Bytes, Str, StrList};
use portvakt_wire::*;

const ACTOR: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A service over a durable store in a fresh directory.
fn service(name: &str) -> (Service, Arc<durable::Wal>, Dir) {
    let dir =
        Dir(std::env::temp_dir().join(format!("portvakt-audit-{name}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let policy = config::load(include_str!("../../../../examples/kommune.toml")).unwrap();
    let (engine, wal, _) = durable::open(
        &dir.0,
        StoreLimits::default(),
        Timestamp::from_secs(1_700_000_000),
        Arc::new(MasterKey::new(&[5; 32])),
    )
    .unwrap()
    .into_engine(
        policy,
        Pepper::new([3; 32]),
        Box::new(SeededEntropy::new(9)),
    )
    .unwrap();
    let s = Service::new(Arc::new(engine), None).with_state_log(wal.clone());
    (s, wal, dir)
}

fn call(s: &Service, role: &Role, a: Admin<'_>) -> Vec<u8> {
    let mut req = BytesMut::new();
    Frame::Admin(1, a).encode(&mut req).unwrap();
    let (mut out, mut records) = (BytesMut::new(), BytesMut::new());
    let handled = s.handle(
        role,
        &req,
        Timestamp::from_secs(1_700_000_000),
        &mut out,
        &mut records,
    );
    assert!(matches!(handled, Handled::Answered), "{handled:?}");
    out.to_vec()
}

fn events(wal: &Arc<durable::Wal>, user: &str) -> Vec<Event> {
    let q = AuditQuery {
        tenant: String::new(),
        user: user.to_owned(),
        from_ms: 0,
        to_ms: u64::MAX,
        cursor: 0,
        limit: 24,
    };
    audit_page(&AuditTrail::Durable(wal.clone()), &q)
        .unwrap()
        .events
        .iter()
        .map(|b| Event::decode(b).unwrap())
        .collect()
}

fn change(field: &str, before: Option<&str>, after: Option<&str>) -> Change {
    Change {
        field: field.into(),
        before: before.map(Into::into),
        after: after.map(Into::into),
    }
}

#[test]
fn each_operation_is_recorded_with_who_what_and_what_changed() {
    let (s, wal, _dir) = service("each");
    let admin = Role::admin(ACTOR);
    call(
        &s,
        &admin,
        Admin::AddUser {
            tenant: Str("kommune"),
            user: Str("kari"),
            groups: StrList(vec!["staff"]),
            passwordless: false,
        },
    );
    call(
        &s,
        &admin,
        Admin::SetGroups {
            tenant: Str("kommune"),
            user: Str("kari"),
            groups: StrList(vec!["staff", "it"]),
        },
    );
    // Refused: the user exists already. Nothing changes, and the attempt is kept.
    call(
        &s,
        &admin,
        Admin::AddUser {
            tenant: Str("kommune"),
            user: Str("kari"),
            groups: StrList(vec![]),
            passwordless: true,
        },
    );
    // A read: who looked is kept too.
    call(
        &s,
        &admin,
        Admin::UserInfo {
            tenant: Str("kommune"),
            user: Str("kari"),
        },
    );
    // A frontend may not administer, and leaves no event (it did nothing).
    call(
        &s,
        &Role::Frontend,
        Admin::RemoveUser {
            tenant: Str("kommune"),
            user: Str("kari"),
        },
    );
    let got = events(&wal, "kari");
    let ops: Vec<(&str, Outcome)> = got.iter().map(|e| (e.op.as_str(), e.outcome)).collect();
    assert_eq!(
        ops,
        [
            ("add-user", Outcome::Done),
            ("set-groups", Outcome::Done),
            ("add-user", Outcome::Refused),
            ("user-info", Outcome::Done),
        ]
    );
    for e in &got {
        assert_eq!((e.actor.as_str(), e.tenant.as_str()), (ACTOR, "kommune"));
        assert_eq!(e.at_ms, 1_700_000_000_000);
    }
    assert_eq!(
        got[0].changes,
        [
            change("exists", None, Some("yes")),
            change("groups", None, Some("staff")),
            change("passwordless", None, Some("false")),
            change("mfa_opt_out", None, Some("false")),
        ]
    );
    assert_eq!(
        got[1].changes,
        [change("groups", Some("staff"), Some("staff,it"))]
    );
    assert!(
        got[2].changes.is_empty() && got[2].detail.contains("exists"),
        "{:?}",
        got[2]
    );
    assert!(got[3].changes.is_empty());
}

#[test]
fn no_secret_reaches_the_trail() {
    let (s, wal, _dir) = service("secrets");
    let admin = Role::admin(ACTOR);
    call(
        &s,
        &admin,
        Admin::AddUser {
            tenant: Str("kommune"),
            user: Str("ola"),
            groups: StrList(vec![]),
            passwordless: false,
        },
    );
    let imported = b"IMPORTED-SECRET-0123456789";
    call(
        &s,
        &admin,
        Admin::ImportTotp {
            tenant: Str("kommune"),
            user: Str("ola"),
            secret: Bytes(imported),
            algorithm: 1,
            digits: 6,
            period: 30,
            active: true,
        },
    );
    let enrolled = call(
        &s,
        &admin,
        Admin::EnrollTotp {
            tenant: Str("kommune"),
            user: Str("ola"),
            algorithm: 1,
            digits: 6,
            period: 30,
        },
    );
    let Frame::AdminReply(_, AdminReply::TotpEnrolled { secret_base32, .. }) =
        Frame::decode(&enrolled).unwrap()
    else {
        panic!("not enrolled")
    };
    let created = call(
        &s,
        &admin,
        Admin::CreateAppPassword {
            tenant: Str("kommune"),
            user: Str("ola"),
            label: Str("mail"),
        },
    );
    let Frame::AdminReply(_, AdminReply::AppPasswordCreated { password, .. }) =
        Frame::decode(&created).unwrap()
    else {
        panic!("no app password")
    };
    call(
        &s,
        &admin,
        Admin::SetSecurityQuestions {
            tenant: Str("kommune"),
            user: Str("ola"),
            answers: StrList(vec!["first-pet-answer", "street-answer", "town-answer"]),
        },
    );
    let mut all = Vec::new();
    wal.read_audit(|e| {
        all.extend_from_slice(e);
        true
    })
    .unwrap();
    let text = String::from_utf8_lossy(&all);
    for secret in [
        std::str::from_utf8(imported).unwrap(),
        secret_base32.0,
        password.0,
        "first-pet-answer",
    ] {
        assert!(!text.contains(secret), "{secret:?} is in the audit trail");
    }
    // What changed is still said: the methods, by kind.
    let got = events(&wal, "ola");
    assert!(
        got.iter().any(|e| e.op == "import-totp"
            && e.changes.iter().any(|c| c.field == "methods"
                && c.after
                    .as_deref()
                    .is_some_and(|a| a.contains("authenticator_app active")))),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|e| e.op == "create-app-password"
            && e.changes
                .iter()
                .any(|c| c.after.as_deref() == Some("1 mail"))),
        "{got:#?}"
    );
}

#[test]
fn the_event_format_is_strict_and_round_trips() {
    let e = Event {
        at_ms: 1_700_000_000_123,
        actor: ACTOR.into(),
        op: "remove-method".into(),
        tenant: "kommune".into(),
        user: "kåre ø".into(),
        method: Some(7),
        outcome: Outcome::Refused,
        detail: "no such method".into(),
        changes: vec![change("methods", Some("7 sms active"), None)],
    };
    let mut bytes = Vec::new();
    e.encode(&mut bytes);
    assert_eq!(Event::decode(&bytes).unwrap(), e);
    // Every cut is refused, and so is a byte more.
    for n in 0..bytes.len() {
        assert!(Event::decode(&bytes[..n]).is_err(), "cut at {n}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Event::decode(&longer).is_err());
    // Another format version is refused, not misread.
    let mut other = bytes.clone();
    other[0] = 2;
    assert!(Event::decode(&other).is_err());
    // An overlong value is cut on a character boundary with an ellipsis.
    let long = Event {
        detail: "ø".repeat(2000),
        ..e.clone()
    };
    let mut bytes = Vec::new();
    long.encode(&mut bytes);
    let back = Event::decode(&bytes).unwrap();
    assert!(back.detail.len() <= portvakt_server::audit::MAX_DETAIL);
    assert!(back.detail.ends_with('…'));
    // The JSON line says the same.
    let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(v["user"], "kåre ø");
    assert_eq!(v["outcome"], "refused");
    assert_eq!(v["changes"]["methods"]["before"], "7 sms active");
    assert!(v["changes"]["methods"]["after"].is_null());
}

/// A request the connection runs (here a backup): answered, and recorded like any other.
async fn run(s: &Service, a: Admin<'_>) -> Vec<u8> {
    let mut req = BytesMut::new();
    Frame::Admin(3, a).encode(&mut req).unwrap();
    let (mut out, mut records) = (BytesMut::new(), BytesMut::new());
    let role = Role::admin(ACTOR);
    let handled = s.handle(&role, &req, s.now(), &mut out, &mut records);
    let Handled::Query(id, query) = handled else {
        panic!("{handled:?}")
    };
    s.answer_query(id, query, &mut out, &mut BytesMut::new())
        .await;
    out.to_vec()
}

#[tokio::test]
async fn backups_are_made_refused_and_recorded() {
    let (s, wal, dir) = service("backup");
    // A relative path would mean whatever the server's working directory is.
    let out = run(
        &s,
        Admin::Backup {
            path: portvakt_wire::admin::LongStr("copy.pvbackup"),
        },
    )
    .await;
    assert!(matches!(
        Frame::decode(&out).unwrap(),
        Frame::Error {
            code: ErrorCode::Refused,
            ..
        }
    ));
    let file = dir.0.with_extension("pvbackup");
    let _ = std::fs::remove_file(&file);
    let out = run(
        &s,
        Admin::Backup {
            path: portvakt_wire::admin::LongStr(file.to_str().unwrap()),
        },
    )
    .await;
    let Frame::AdminReply(3, AdminReply::BackedUp { bytes, files }) = Frame::decode(&out).unwrap()
    else {
        panic!("{:?}", Frame::decode(&out))
    };
    assert_eq!(bytes, std::fs::metadata(&file).unwrap().len());
    assert!(files >= 2);
    let _ = std::fs::remove_file(&file);
    let got: Vec<(String, Outcome)> = events(&wal, "")
        .into_iter()
        .filter(|e| e.op == "backup")
        .map(|e| (e.detail, e.outcome))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].1, Outcome::Refused);
    assert!(got[0].0.starts_with("copy.pvbackup: "), "{got:?}");
    assert_eq!(got[1].1, Outcome::Done);
    assert!(got[1].0.contains(&format!("({bytes} bytes)")), "{got:?}");
}
