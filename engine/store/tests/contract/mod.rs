//! The contract every state-store backend passes. Each check takes a fresh store from
//! `make` and drives it through the core, as the server does, or directly where the check
//! is about one operation. Races release their threads together through a barrier; every
//! assertion is exact, none is about time.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::IpAddr;
use std::sync::{Arc, Barrier};
use std::thread;

use portvakt_core::admin::TotpSpec;
use portvakt_core::directory::MethodKind;
use portvakt_core::lockout::{Domain, Factor, LockoutConfig};
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::state::{Answer, Effect, StateOps, StateStore};
use portvakt_core::testing::{Fault, Faulty, SeededEntropy};
use portvakt_core::{
    Decision, Duration, Engine, FirstFactor, MethodId, Outcome, Proof, Purpose, Reason, Request,
    SendRequest, Subject, Timestamp, UserId, config,
};
use proptest::prelude::*;

/// Instantiates every check of the contract as a test, for the store `make` builds.
/// Instantiates every check of the contract as a test, for the store `make` builds; with
/// `if READY`, a test returns at once when `READY` is false (a backend whose server is not
/// installed here, and not required: see `portvakt_store::redis::local`).
#[macro_export]
macro_rules! contract_tests {
    ($make:expr) => {
        contract_tests!($make, if true);
    };
    ($make:expr, if $ready:expr) => {
        #[test]
        fn replay_and_lockout_follow_the_model() {
            if !$ready {
                return;
            }
            contract::replay_and_lockout_follow_the_model(|| $make);
        }
        #[test]
        fn the_same_code_from_many_threads_is_allowed_once() {
            if !$ready {
                return;
            }
            contract::the_same_code_from_many_threads_is_allowed_once(|| $make);
        }
        #[test]
        fn parallel_wrong_guesses_are_counted_exactly() {
            if !$ready {
                return;
            }
            contract::parallel_wrong_guesses_are_counted_exactly(|| $make);
        }
        #[test]
        fn unknown_names_are_counted_and_locked_like_users() {
            if !$ready {
                return;
            }
            contract::unknown_names_are_counted_and_locked_like_users(|| $make);
        }
        #[test]
        fn spraying_from_one_address_stops_at_its_limit() {
            if !$ready {
                return;
            }
            contract::spraying_from_one_address_stops_at_its_limit(|| $make);
        }
        #[test]
        fn a_sent_code_is_redeemed_exactly_once() {
            if !$ready {
                return;
            }
            contract::a_sent_code_is_redeemed_exactly_once(|| $make);
        }
        #[test]
        fn a_push_approval_is_answered_once_and_lets_one_sign_in_through() {
            if !$ready {
                return;
            }
            contract::a_push_approval_is_answered_once_and_lets_one_sign_in_through(|| $make);
        }
        #[test]
        fn a_ticket_opens_once_and_never_when_the_store_fails() {
            if !$ready {
                return;
            }
            contract::a_ticket_opens_once_and_never_when_the_store_fails(|| $make);
        }
        #[test]
        fn a_failing_store_fails_closed() {
            if !$ready {
                return;
            }
            contract::a_failing_store_fails_closed(|| $make);
        }
    };
}

const KOMMUNE: &str = include_str!("../../../../examples/kommune.toml");
const HOME: &str = "203.0.113.9";
pub const T0: u64 = 1_700_000_010;
const THREADS: usize = 8;

fn engine<S: StateStore>(store: S, policy: &str) -> Engine<S> {
    Engine::new(
        config::load(policy).expect("policy compiles"),
        store,
        Pepper::new([42; 32]),
        Box::new(SeededEntropy::new(7)),
    )
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

pub fn secret_for(name: &str) -> Vec<u8> {
    let mut s = name.as_bytes().to_vec();
    s.resize(20, b'#');
    s
}

/// A user with an active app (secret from the name) and a proved phone, as the
/// municipality's two methods ask; returns the app's key.
pub fn user<S: StateStore>(e: &Engine<S>, name: &str) -> OtpKey {
    e.add_user("kommune", name, &[], false).unwrap();
    let secret = secret_for(name);
    e.import_totp("kommune", name, &secret, TotpSpec::default(), true)
        .unwrap();
    // A number of its own: the per-number budget is shared by everyone who has it.
    let h = name
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let number = format!("+479{:05}78", h % 100_000);
    let phone = e
        .add_phone("kommune", name, MethodKind::Sms, &number)
        .unwrap();
    let (challenge, delivery) = e
        .start_confirmation("kommune", name, phone, at(T0 - 5))
        .unwrap()
        .unwrap();
    e.confirm_sent(
        "kommune",
        name,
        phone,
        challenge,
        delivery.code.expose(),
        at(T0 - 4),
    )
    .unwrap();
    OtpKey::new(Algorithm::Sha1, &secret)
}

pub fn code(key: &OtpKey, secs: u64) -> String {
    format!("{:06}", key.hotp(secs / 30, Digits::SIX))
}

pub fn req<'a>(user: &'a str, proof: Option<Proof<'a>>) -> Request<'a> {
    Request {
        tenant: "kommune",
        user,
        ip: HOME.parse::<IpAddr>().unwrap(),
        purpose: Purpose::SignIn,
        first_factor: FirstFactor::Ok,
        proof,
        device_token: None,
        remember_device: false,
    }
}

fn race<T: Send + 'static>(f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (f, barrier) = (f.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect()
}

fn count(ds: &[Decision], reason: Reason) -> usize {
    ds.iter().filter(|d| d.reason == reason).count()
}

#[derive(Clone, Debug)]
enum Op {
    Otp { method: u32, value: u64 },
    Fail { fingerprint: u32 },
    Wait { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u32..3, 0u64..40).prop_map(|(method, value)| Op::Otp { method, value }),
        (1u32..6).prop_map(|fingerprint| Op::Fail { fingerprint }),
        (0u64..200).prop_map(|secs| Op::Wait { secs }),
    ]
}

/// Replay: a value is accepted only above every value accepted before for its method, and
/// never while locked. Lockout: once locked, nothing is accepted or counted until the wait
/// ends. Checked against a model over random histories, on the store directly.
pub fn replay_and_lockout_follow_the_model<S: StateStore>(make: impl Fn() -> S) {
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&proptest::collection::vec(op(), 1..200), |ops| {
            let store = make();
            let cfg = LockoutConfig {
                threshold: 4,
                base_wait: Duration::from_secs(60),
                ..LockoutConfig::default()
            };
            let domain = Domain {
                factor: Factor::Second,
                familiar: false,
            };
            let subject = Subject::Known(UserId(1));
            let mut now = Timestamp::from_secs(1_000_000);
            let mut next = [0u64; 3];
            let mut locked_until = Timestamp::EPOCH;
            for op in ops {
                match op {
                    Op::Wait { secs } => now = now + Duration::from_secs(secs),
                    Op::Otp { method, value } => {
                        let effect = Effect::Otp {
                            method: MethodId(method),
                            value,
                            offset: 0,
                            fingerprint: 0,
                        };
                        let a = store.sign_in(subject, domain, effect, now, &cfg).unwrap();
                        let m = method as usize;
                        if now < locked_until {
                            prop_assert!(matches!(a, Answer::Locked { .. }), "{a:?}");
                        } else if value >= next[m] {
                            prop_assert_eq!(a, Answer::Accepted);
                            next[m] = value + 1;
                        } else {
                            prop_assert!(matches!(a, Answer::Replayed(_)), "{a:?}");
                        }
                    }
                    Op::Fail { fingerprint } => {
                        let a = store
                            .sign_in(subject, domain, Effect::Fail { fingerprint }, now, &cfg)
                            .unwrap();
                        if now < locked_until {
                            prop_assert!(matches!(a, Answer::Locked { .. }), "{a:?}");
                        }
                    }
                }
                // Learn the lock from the store's own check, then hold it to it.
                let check = store
                    .sign_in(subject, domain, Effect::Check, now, &cfg)
                    .unwrap();
                if let Answer::Locked { until } = check {
                    prop_assert!(until > now);
                    prop_assert!(until <= now + cfg.max_wait);
                    locked_until = until;
                } else {
                    prop_assert!(now >= locked_until);
                }
                for (m, n) in next.iter().enumerate() {
                    let state = store.otp_state(subject, MethodId(m as u32)).unwrap();
                    prop_assert_eq!(state.next, *n);
                }
            }
            Ok(())
        })
        .unwrap();
}

pub fn the_same_code_from_many_threads_is_allowed_once<S: StateStore + 'static>(
    make: impl Fn() -> S,
) {
    let e = Arc::new(engine(make(), KOMMUNE));
    for round in 0..50u64 {
        let name = format!("user{round}");
        let key = user(&e, &name);
        let t = T0 + round * 30;
        let c = code(&key, t);
        let e2 = e.clone();
        let outcomes = race(move |_| e2.decide(&req(&name, Some(Proof::Totp(&c))), at(t)));
        let allowed = outcomes
            .iter()
            .filter(|d| d.outcome == Outcome::Allow)
            .count();
        assert_eq!(allowed, 1, "round {round}: {outcomes:?}");
        assert_eq!(count(&outcomes, Reason::ReplayedCode), THREADS - 1);
    }
}

pub fn parallel_wrong_guesses_are_counted_exactly<S: StateStore + 'static>(make: impl Fn() -> S) {
    let e = Arc::new(engine(make(), KOMMUNE));
    for round in 0..20u64 {
        let name = format!("victim{round}");
        user(&e, &name);
        let e2 = e.clone();
        // Eight threads, eight distinct wrong codes each: 64 guesses against a threshold
        // of 10. Nine are evaluated and answered invalid, the tenth locks, and every later
        // guess is refused unevaluated.
        let all: Vec<Decision> = race(move |i| {
            (0..8)
                .map(|j| {
                    let wrong = format!("{:06}", 100_000 + i * 8 + j);
                    e2.decide(
                        &req(&name, Some(Proof::Totp(&wrong))),
                        at(T0 + round * 10_000),
                    )
                })
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(count(&all, Reason::InvalidCode), 9, "round {round}");
        let locked = all.iter().filter(|d| d.outcome == Outcome::Locked).count();
        assert_eq!(locked, 64 - 9, "round {round}");
    }
}

pub fn unknown_names_are_counted_and_locked_like_users<S: StateStore + 'static>(
    make: impl Fn() -> S,
) {
    let e = Arc::new(engine(make(), KOMMUNE));
    user(&e, "kari");
    // The same guesses against a user and against a name nobody has: the same answers,
    // in the same order, from the same counts (each its own).
    for name in ["kari", "nobody"] {
        let answers: Vec<(Outcome, Reason)> = (0..12)
            .map(|i| {
                let wrong = format!("{:06}", 200_000 + i);
                let d = e.decide(&req(name, Some(Proof::Totp(&wrong))), at(T0));
                (d.outcome, d.reason)
            })
            .collect();
        assert_eq!(
            answers
                .iter()
                .filter(|a| a.1 == Reason::InvalidCode)
                .count(),
            9,
            "{name}: {answers:?}"
        );
        assert!(
            answers[9..].iter().all(|a| a.0 == Outcome::Locked),
            "{name}"
        );
    }
    // Another unknown name is counted on its own.
    let d = e.decide(&req("someone else", Some(Proof::Totp("123456"))), at(T0));
    assert_eq!(d.reason, Reason::InvalidCode);
}

pub fn spraying_from_one_address_stops_at_its_limit<S: StateStore + 'static>(make: impl Fn() -> S) {
    let text = KOMMUNE.replace(
        "max = 100              # one address",
        "max = 20 # one address",
    );
    let e = Arc::new(engine(make(), &text));
    for u in 0..64 {
        user(&e, &format!("s{u}"));
    }
    let e2 = e.clone();
    let all: Vec<Decision> = race(move |i| {
        (0..8)
            .map(|j| {
                e2.decide(
                    &req(&format!("s{}", i * 8 + j), Some(Proof::Totp("424242"))),
                    at(T0),
                )
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(count(&all, Reason::InvalidCode), 20);
    assert_eq!(count(&all, Reason::SourceLimited), 44);
}

pub fn a_sent_code_is_redeemed_exactly_once<S: StateStore + 'static>(make: impl Fn() -> S) {
    let e = Arc::new(engine(make(), KOMMUNE));
    for round in 0..30u64 {
        let name = format!("sms{round}");
        user(&e, &name);
        let t = T0 + round;
        let send = SendRequest {
            tenant: "kommune",
            user: &name,
            ip: HOME.parse().unwrap(),
            purpose: Purpose::SignIn,
            method: None,
        };
        let s = e.send_code(&send, at(t));
        let id = s.challenge.unwrap().to_hex();
        let c = s.delivery.unwrap().code.expose().to_owned();
        let e2 = e.clone();
        let outcomes = race(move |_| {
            let proof = Proof::Sent {
                challenge: &id,
                code: &c,
            };
            e2.decide(&req(&name, Some(proof)), at(t))
        });
        let allowed = outcomes
            .iter()
            .filter(|d| d.outcome == Outcome::Allow)
            .count();
        assert_eq!(allowed, 1, "round {round}");
    }
}

/// A ticket to the security-info pages: redeemed from many threads at once, one opens;
/// a store failing before or after the redemption reaches it opens nothing then, and the
/// ticket opens at most once after.
pub fn a_ticket_opens_once_and_never_when_the_store_fails<S: StateStore + 'static>(
    make: impl Fn() -> S,
) {
    let ttl = Duration::from_secs(300);
    let e = Arc::new(engine(make(), KOMMUNE));
    user(&e, "kari");
    for round in 0..20u64 {
        let now = at(T0 + round);
        let t = e.issue_ticket("kommune", "kari", ttl, now).unwrap();
        let e2 = e.clone();
        let opened = race(move |_| {
            e2.redeem_ticket("kommune", "kari", t.id, &t.secret, now)
                .unwrap()
        });
        assert_eq!(opened.iter().filter(|o| **o).count(), 1, "round {round}");
    }
    for fault in [Fault::Before(0), Fault::After(0)] {
        let now = at(T0);
        let e = engine(Faulty::new(make()), KOMMUNE);
        user(&e, "kari");
        let t = e.issue_ticket("kommune", "kari", ttl, now).unwrap();
        e.store().set(fault);
        assert!(
            e.redeem_ticket("kommune", "kari", t.id, &t.secret, now)
                .is_err(),
            "{fault:?}"
        );
        e.store().set(Fault::Never);
        let again = e
            .redeem_ticket("kommune", "kari", t.id, &t.secret, now)
            .unwrap();
        // Lost before the store: still unspent. Lost on the way back: spent.
        assert_eq!(again, matches!(fault, Fault::Before(_)), "{fault:?}");
        assert!(
            !e.redeem_ticket("kommune", "kari", t.id, &t.secret, now)
                .unwrap()
        );
    }
}

/// A push approval: answered from many threads at once, one answer is taken; redeemed
/// from many threads at once, one sign-in gets through. A wrong number is counted once.
pub fn a_push_approval_is_answered_once_and_lets_one_sign_in_through<S: StateStore + 'static>(
    make: impl Fn() -> S,
) {
    use portvakt_core::push::{self, Answered, Pairing, PushError, Verdict};
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let e = Arc::new(engine(make(), KOMMUNE));
    user(&e, "kari");
    let phone = Arc::new(Ed25519KeyPair::from_seed_unchecked(&[3; 32]).unwrap());
    let started = e.enroll_push("kommune", "kari", at(T0)).unwrap();
    let (method, token) = (started.method, started.token.expose().to_owned());
    let key = phone.public_key().as_ref().to_vec();
    let message = push::enrol_message("kommune", "kari", method, &token, &key);
    let signature = phone.sign(&message);
    let pairing = Pairing {
        tenant: "kommune",
        user: "kari",
        method,
        token: &token,
        key: &key,
        signature: signature.as_ref(),
    };
    e.pair_push(&pairing, at(T0 + 1)).unwrap();
    e.set_default_method("kommune", "kari", method).unwrap();
    let nonce = [9u8; push::NONCE_LEN];
    let signed = phone.sign(&push::sign_in_message(&nonce, "kommune", "kari", method));
    let device = e
        .device_sign_in("kommune", "kari", method, &nonce, signed.as_ref())
        .unwrap();
    for round in 0..10u64 {
        let t = T0 + 10 + round * 200;
        let d = e.decide(&req("kari", None), at(t));
        assert_eq!(d.reason, Reason::ApprovalSent, "round {round}: {d:?}");
        let a = d.approval.unwrap();
        // Odd rounds: everyone approves with a wrong number; even rounds: the right one.
        let number = if round % 2 == 1 {
            if a.number == 99 { 10 } else { a.number + 1 }
        } else {
            a.number
        };
        let (e2, phone2, device2) = (e.clone(), phone.clone(), device.clone());
        let answers = race(move |_| {
            let m = push::answer_message(&a.id, Verdict::Approve, number);
            let sig = phone2.sign(&m);
            e2.answer_approval(
                &device2,
                a.id,
                Verdict::Approve,
                number,
                sig.as_ref(),
                at(t + 1),
            )
        });
        let taken: Vec<_> = answers.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(taken.len(), 1, "round {round}: {answers:?}");
        assert!(
            answers
                .iter()
                .all(|r| r.is_ok() || *r == Err(PushError::Gone)),
            "round {round}: {answers:?}"
        );
        let hex = a.id.to_hex();
        let e2 = e.clone();
        let outcomes = race(move |_| e2.decide(&req("kari", Some(Proof::Push(&hex))), at(t + 2)));
        let allowed = outcomes
            .iter()
            .filter(|d| d.outcome == Outcome::Allow)
            .count();
        if round % 2 == 1 {
            assert_eq!(*taken[0], Ok(Answered::WrongNumber));
            assert_eq!(allowed, 0, "round {round}");
        } else {
            assert_eq!(*taken[0], Ok(Answered::Approved));
            assert_eq!(allowed, 1, "round {round}");
        }
    }
}

/// Every store call of a right code's decision failing in turn, before and after the
/// store does it: `deny`/`internal_error` each time (the refund of the source's budget
/// excepted, which leaves the answer as it was), and the code is then either still good
/// or spent, never good twice.
pub fn a_failing_store_fails_closed<S: StateStore>(make: impl Fn() -> S) {
    let now = at(T0 + 60);
    let probe = engine(Faulty::new(make()), KOMMUNE);
    let key = user(&probe, "kari");
    let c = code(&key, now.as_secs());
    let before = probe.store().calls();
    assert_eq!(
        probe
            .decide(&req("kari", Some(Proof::Totp(&c))), now)
            .outcome,
        Outcome::Allow
    );
    let ops = probe.store().ops();
    let ops = &ops[before as usize..];
    for (n, op) in (0u64..).zip(ops) {
        for fault in [Fault::Before(n), Fault::After(n)] {
            let e = engine(Faulty::new(make()), KOMMUNE);
            user(&e, "kari");
            e.store().set(fault);
            let d = e.decide(&req("kari", Some(Proof::Totp(&c))), now);
            // The source's budget is reserved first and given back last.
            let refund = *op == "update_counter(source)" && n + 1 == ops.len() as u64;
            if refund {
                assert_eq!(d.outcome, Outcome::Allow, "{op} {fault:?}");
            } else {
                assert_eq!(
                    (d.outcome, d.reason),
                    (Outcome::Deny, Reason::InternalError),
                    "{op} {fault:?}"
                );
            }
            e.store().set(Fault::Never);
            let again = e.decide(&req("kari", Some(Proof::Totp(&c))), now);
            let allowed_before = d.outcome == Outcome::Allow;
            match again.outcome {
                Outcome::Allow => assert!(!allowed_before, "{op} {fault:?}: allowed twice"),
                _ => assert_eq!(again.reason, Reason::ReplayedCode, "{op} {fault:?}"),
            }
        }
    }
}

/// The store calls each common decision makes, in order (measured through `Faulty`).
pub fn calls_per_decision<S: StateStore>(
    make: impl Fn() -> S,
) -> Vec<(&'static str, Vec<&'static str>)> {
    let e = engine(Faulty::new(make()), KOMMUNE);
    let key = user(&e, "kari");
    let now = at(T0 + 60);
    let right = code(&key, now.as_secs());
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    let office = Request {
        ip: "10.20.1.5".parse().unwrap(),
        ..req("kari", None)
    };
    let shapes: [(&str, Request<'_>); 5] = [
        ("office sign-in, password only", office),
        (
            "from home, the app's code",
            req("kari", Some(Proof::Totp(&right))),
        ),
        (
            "from home, a wrong code",
            req("kari", Some(Proof::Totp(&wrong))),
        ),
        ("from home, no code yet (challenge)", req("kari", None)),
        (
            "an unknown name with a code",
            req("nobody", Some(Proof::Totp(&wrong))),
        ),
    ];
    shapes
        .into_iter()
        .map(|(name, r)| {
            let before = e.store().calls() as usize;
            e.decide(&r, now);
            (name, e.store().ops()[before..].to_vec())
        })
        .collect()
}
