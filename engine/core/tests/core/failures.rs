//! A failing store fails closed: every store call of every common request shape is made to
//! fail in turn, before it reaches the store and after the store has done it, and each
//! such decision must answer `deny`/`internal_error` (never `allow`, never a panic), with
//! what the store holds still whole: a spent code stays spent, and the same attempt made
//! again on a healthy store is decided as it would have been.

use portvakt_core::admin::TotpSpec;
use portvakt_core::directory::{DirectoryError, MethodKind};
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::{Fault, Faulty, SeededEntropy};
use portvakt_core::{
    Engine, FirstFactor, MemoryStore, MethodId, Outcome, Proof, Purpose, Reason, Request,
    SendRequest, Timestamp, config,
};

const KOMMUNE: &str = include_str!("../../../../examples/kommune.toml");
const OFFICE: &str = "10.20.1.5";
const HOME: &str = "203.0.113.9";
const T0: u64 = 1_700_000_010;
const SECRET: &[u8] = b"failures-test-secret";
const TOKEN: &[u8] = b"failures-test-token!";

type E = Engine<Faulty<MemoryStore>>;

struct Kari {
    engine: E,
    phone: MethodId,
    app_password: String,
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// kari, with an app, a hardware token, a phone, an app password and security answers.
fn kari() -> Kari {
    kari_with(KOMMUNE)
}

/// [`kari`] under another policy.
fn kari_with(policy: &str) -> Kari {
    let engine = Engine::new(
        config::load(policy).unwrap(),
        Faulty::new(MemoryStore::default()),
        Pepper::new([9; 32]),
        Box::new(SeededEntropy::new(3)),
    );
    let e = &engine;
    e.add_user("kommune", "kari", &[], false).unwrap();
    e.import_totp("kommune", "kari", SECRET, TotpSpec::default(), true)
        .unwrap();
    let token = e
        .add_hotp("kommune", "kari", TOKEN, Digits::SIX, 0)
        .unwrap();
    let first = format!(
        "{:06}",
        OtpKey::new(Algorithm::Sha1, TOKEN).hotp(0, Digits::SIX)
    );
    e.confirm_otp("kommune", "kari", token, &first, at(T0 - 10))
        .unwrap();
    let phone = e
        .add_phone("kommune", "kari", MethodKind::Sms, "+4791234578")
        .unwrap();
    let (challenge, delivery) = e
        .start_confirmation("kommune", "kari", phone, at(T0 - 9))
        .unwrap()
        .unwrap();
    e.confirm_sent(
        "kommune",
        "kari",
        phone,
        challenge,
        delivery.code.expose(),
        at(T0 - 8),
    )
    .unwrap();
    let (_, app_password) = e
        .create_app_password("kommune", "kari", "Outlook", at(T0 - 7))
        .unwrap();
    e.set_security_questions("kommune", "kari", &["Bodø", "Rex"])
        .unwrap();
    Kari {
        engine,
        phone,
        app_password: app_password.expose().to_owned(),
    }
}

fn totp(steps: u64) -> String {
    format!(
        "{:06}",
        OtpKey::new(Algorithm::Sha1, SECRET).hotp(steps, Digits::SIX)
    )
}

fn request<'a>(user: &'a str, ip: &str, purpose: Purpose, proof: Option<Proof<'a>>) -> Request<'a> {
    Request {
        tenant: "kommune",
        user,
        ip: ip.parse().unwrap(),
        purpose,
        first_factor: FirstFactor::Ok,
        proof,
        device_token: None,
        remember_device: false,
    }
}

/// One request shape: what it sends, decided on `k` at time `now`.
type Shape = fn(&Kari, Timestamp) -> (Outcome, Reason);

fn decide(k: &Kari, now: Timestamp, r: Request<'_>) -> (Outcome, Reason) {
    let d = k.engine.decide(&r, now);
    (d.outcome, d.reason)
}

fn shapes() -> Vec<(&'static str, Shape)> {
    vec![
        ("office, password only", |k, now| {
            decide(k, now, request("kari", OFFICE, Purpose::SignIn, None))
        }),
        ("home, the app's code", |k, now| {
            let c = totp(now.as_secs() / 30);
            decide(
                k,
                now,
                request("kari", HOME, Purpose::SignIn, Some(Proof::Totp(&c))),
            )
        }),
        ("home, a wrong code", |k, now| {
            let c = format!(
                "{:06}",
                (totp(now.as_secs() / 30).parse::<u32>().unwrap() + 1) % 1_000_000
            );
            decide(
                k,
                now,
                request("kari", HOME, Purpose::SignIn, Some(Proof::Totp(&c))),
            )
        }),
        ("home, the token's code", |k, now| {
            let c = format!(
                "{:06}",
                OtpKey::new(Algorithm::Sha1, TOKEN).hotp(1, Digits::SIX)
            );
            let proof = Proof::Hotp {
                code: &c,
                next: None,
            };
            decide(k, now, request("kari", HOME, Purpose::SignIn, Some(proof)))
        }),
        ("an unknown name with a code", |k, now| {
            decide(
                k,
                now,
                request("nobody", HOME, Purpose::SignIn, Some(Proof::Totp("123456"))),
            )
        }),
        ("an app password", |k, now| {
            let pw = k.app_password.clone();
            let r = request(
                "kari",
                OFFICE,
                Purpose::LegacyProtocol,
                Some(Proof::AppPassword(&pw)),
            );
            decide(k, now, r)
        }),
        ("security answers", |k, now| {
            let answers = ["bodø", "rex"];
            let r = request(
                "kari",
                HOME,
                Purpose::PasswordReset,
                Some(Proof::SecurityAnswers(&answers)),
            );
            decide(k, now, r)
        }),
        ("a code sent by text", |k, now| {
            let sent = k.engine.send_code(
                &SendRequest {
                    tenant: "kommune",
                    user: "kari",
                    ip: HOME.parse().unwrap(),
                    purpose: Purpose::SignIn,
                    method: Some(k.phone),
                },
                now,
            );
            let (Some(id), Some(delivery)) = (sent.challenge, sent.delivery) else {
                return (sent.decision.outcome, sent.decision.reason);
            };
            let hex = id.to_hex();
            let proof = Proof::Sent {
                challenge: &hex,
                code: delivery.code.expose(),
            };
            decide(k, now, request("kari", HOME, Purpose::SignIn, Some(proof)))
        }),
    ]
}

#[test]
fn every_failed_store_call_answers_deny_internal_error() {
    let now = at(T0 + 60);
    let mut failures = 0;
    for (name, shape) in shapes() {
        // How the shape goes on a healthy store, and how many store calls it makes.
        let healthy = kari();
        let before = healthy.engine.store().calls();
        let expected = shape(&healthy, now);
        let calls = healthy.engine.store().calls() - before;
        assert!(calls > 0, "{name}: no store call");
        let ops = healthy.engine.store().ops();
        let ops = &ops[ops.len() - calls as usize..];
        for (n, op) in (0..calls).zip(ops) {
            for fault in [Fault::Before(n), Fault::After(n)] {
                let k = kari();
                k.engine.store().set(fault);
                let failed = shape(&k, now);
                // Giving back a source's budget after the decision is made is the one
                // call whose failure leaves the answer as it was: the source stays
                // charged, which is stricter, not looser.
                // (A source's budget is reserved before the decision's other calls and
                // given back, if at all, by its last.)
                let refund = *op == "update_counter(source)" && n > 0 && n + 1 == calls;
                let want = if refund {
                    expected
                } else {
                    (Outcome::Deny, Reason::InternalError)
                };
                assert_eq!(
                    failed, want,
                    "{name}, {op} {fault:?}: expected {expected:?}"
                );
                assert!(
                    k.engine.store_errors() >= 1,
                    "{name}, {fault:?}: not counted"
                );
                failures += 1;
                // The same attempt again, on a healthy store: decided as it would have
                // been, except that a code the failed attempt did spend stays spent.
                k.engine.store().set(Fault::Never);
                let again = shape(&k, now);
                assert!(
                    again == expected || again == (Outcome::Deny, Reason::ReplayedCode),
                    "{name}, {op} {fault:?}: again {again:?}, expected {expected:?}"
                );
                if matches!(fault, Fault::Before(_)) && !refund && name != "a code sent by text" {
                    // The failed call never reached the store, and nothing after it was
                    // decided: the retry is the first attempt over again.
                    assert_eq!(again, expected, "{name}, {fault:?}");
                }
            }
        }
    }
    // Eight shapes, each with several calls, each failed two ways.
    assert!(failures > 30, "{failures}");
}

#[test]
fn a_spent_code_whose_answer_was_lost_stays_spent() {
    // The store accepts the code and raises the watermark, and the answer is lost on the
    // way back: the decision is deny, and the code cannot be used again.
    let k = kari();
    let now = at(T0 + 60);
    let c = totp(now.as_secs() / 30);
    let r = request("kari", HOME, Purpose::SignIn, Some(Proof::Totp(&c)));
    // Find the call that commits the code: the last one of a healthy attempt.
    let probe = kari();
    let before = probe.engine.store().calls();
    assert_eq!(probe.engine.decide(&r, now).outcome, Outcome::Allow);
    let ops = probe.engine.store().ops();
    let commit = ops[before as usize..]
        .iter()
        .rposition(|op| *op == "update_subject")
        .unwrap() as u64;
    k.engine.store().set(Fault::After(commit));
    let d = k.engine.decide(&r, now);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::InternalError)
    );
    k.engine.store().set(Fault::Never);
    let d = k.engine.decide(&r, now);
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::ReplayedCode));
}

#[test]
fn administrator_changes_are_whole_or_not_at_all() {
    // A hardware token whose counter could not be raised is taken out again: without the
    // raised counter, codes it showed before would be accepted.
    let k = kari();
    k.engine.store().set(Fault::Before(0));
    let e = k
        .engine
        .add_hotp("kommune", "kari", b"another-token-secret", Digits::SIX, 40)
        .unwrap_err();
    assert!(matches!(e, DirectoryError::Store(_)), "{e:?}");
    let info = k.engine.user_info("kommune", "kari").unwrap();
    assert_eq!(
        info.methods
            .iter()
            .filter(|m| m.1 == MethodKind::HardwareToken)
            .count(),
        1,
        "only the first token"
    );
    // A first code whose spending failed leaves the method pending.
    k.engine.store().set(Fault::Never);
    let token = k
        .engine
        .add_hotp("kommune", "kari", b"another-token-secret", Digits::SIX, 0)
        .unwrap();
    let first = format!(
        "{:06}",
        OtpKey::new(Algorithm::Sha1, b"another-token-secret").hotp(0, Digits::SIX)
    );
    k.engine.store().set(Fault::Before(1));
    assert!(matches!(
        k.engine
            .confirm_otp("kommune", "kari", token, &first, at(T0)),
        Err(DirectoryError::Store(_))
    ));
    let pending = |k: &Kari| {
        k.engine
            .user_info("kommune", "kari")
            .unwrap()
            .methods
            .iter()
            .any(|m| m.0 == token && !m.2)
    };
    assert!(pending(&k));
    k.engine.store().set(Fault::Never);
    k.engine
        .confirm_otp("kommune", "kari", token, &first, at(T0))
        .unwrap();
    assert!(!pending(&k));
    // A removal takes effect even when its state cannot be forgotten; the failure is
    // counted, and the leftover state belongs to an id never given out again.
    let errors = k.engine.store_errors();
    k.engine.store().set(Fault::Before(0));
    k.engine.remove_method("kommune", "kari", token).unwrap();
    assert!(k.engine.store_errors() > errors);
    assert!(
        !k.engine
            .user_info("kommune", "kari")
            .unwrap()
            .methods
            .iter()
            .any(|m| m.0 == token)
    );
    // Unlocking reports the failure.
    k.engine.store().set(Fault::Before(0));
    assert!(matches!(
        k.engine.unlock("kommune", "kari"),
        Err(DirectoryError::Store(_))
    ));
}

#[test]
fn a_tenant_may_let_office_password_sign_ins_through_without_the_store_and_nothing_else() {
    let now = at(T0 + 60);
    let policy = KOMMUNE.replace(
        "when_store_fails = \"deny\"",
        "when_store_fails = \"allow-single-factor\"",
    );
    assert_ne!(policy, KOMMUNE);
    for (name, shape) in shapes() {
        for fault in [Fault::Before(0), Fault::After(0)] {
            let k = kari_with(&policy);
            k.engine.store().set(fault);
            let got = shape(&k, now);
            let want = if name == "office, password only" {
                (Outcome::Allow, Reason::AllowedWithoutStore)
            } else {
                (Outcome::Deny, Reason::InternalError)
            };
            assert_eq!(got, want, "{name}, {fault:?}");
            assert!(k.engine.store_errors() >= 1, "{name}: not counted");
        }
    }
    // An unknown name at the office, or a user whose registration is incomplete, is not
    // let through either.
    let k = kari_with(&policy);
    k.engine.add_user("kommune", "ny", &[], false).unwrap();
    for user in ["ny", "nobody"] {
        k.engine.store().set(Fault::Before(0));
        let got = decide(&k, now, request(user, OFFICE, Purpose::SignIn, None));
        assert_eq!(got, (Outcome::Deny, Reason::InternalError), "{user}");
    }
    // Off in the example (and by default), and a misspelt setting is refused rather than read as off.
    let k = kari();
    k.engine.store().set(Fault::Before(0));
    let got = decide(&k, now, request("kari", OFFICE, Purpose::SignIn, None));
    assert_eq!(got, (Outcome::Deny, Reason::InternalError));
    let wrong = KOMMUNE.replace(
        "when_store_fails = \"deny\"",
        "when_store_fails = \"allow\"",
    );
    assert!(config::load(&wrong).is_err());
}
