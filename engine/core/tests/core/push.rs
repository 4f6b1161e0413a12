//! Push approval with number matching, from enrolment to the one `allow`: the rules of
//! `push.rs` against a memory store, with real Ed25519 keys.

use std::sync::Arc;

use portvakt_core::admin::TotpSpec;
use portvakt_core::push::{self, Answered, DeviceRef, Pairing, PushChallenge, PushError, Verdict};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{
    ChallengeId, Decision, Duration, Engine, FirstFactor, MemoryStore, MethodId, Outcome, Proof,
    Purpose, Reason, Request, SendRequest, Timestamp, config,
};
use ring::signature::{Ed25519KeyPair, KeyPair};

const KOMMUNE: &str = include_str!("../../../../examples/kommune.toml");
const OFFICE: &str = "10.20.1.5";
const HOME: &str = "203.0.113.9";
const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

type E = Engine<MemoryStore>;

/// A phone's key pair.
struct Phone(Ed25519KeyPair);

impl Phone {
    fn new(seed: u8) -> Self {
        Self(Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap())
    }

    fn public(&self) -> &[u8] {
        self.0.public_key().as_ref()
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }
}

fn engine() -> E {
    Engine::new(
        config::load(KOMMUNE).unwrap(),
        MemoryStore::default(),
        Pepper::new([5; 32]),
        Box::new(SeededEntropy::new(11)),
    )
}

/// Pairs `phone` as a new push device of `user`, made the default method.
fn pair(e: &E, user: &str, phone: &Phone) -> MethodId {
    let started = e.enroll_push("kommune", user, at(T0 - 60)).unwrap();
    let token = started.token.expose().to_owned();
    let message = push::enrol_message("kommune", user, started.method, &token, phone.public());
    e.pair_push(
        &Pairing {
            tenant: "kommune",
            user,
            method: started.method,
            token: &token,
            key: phone.public(),
            signature: &phone.sign(&message),
        },
        at(T0 - 50),
    )
    .unwrap();
    e.set_default_method("kommune", user, started.method)
        .unwrap();
    started.method
}

/// kari: a password account with an authenticator app and a push device (the default).
fn kari(e: &E, phone: &Phone) -> MethodId {
    e.add_user("kommune", "kari", &[], false).unwrap();
    e.import_totp(
        "kommune",
        "kari",
        b"kari-app-secret-0000",
        TotpSpec::default(),
        true,
    )
    .unwrap();
    pair(e, "kari", phone)
}

fn signed_in(e: &E, user: &str, method: MethodId, phone: &Phone) -> DeviceRef {
    let nonce = [7u8; push::NONCE_LEN];
    let message = push::sign_in_message(&nonce, "kommune", user, method);
    e.device_sign_in("kommune", user, method, &nonce, &phone.sign(&message))
        .unwrap()
}

fn request<'a>(
    user: &'a str,
    ip: &str,
    first: FirstFactor,
    proof: Option<Proof<'a>>,
) -> Request<'a> {
    Request {
        tenant: "kommune",
        user,
        ip: ip.parse().unwrap(),
        purpose: Purpose::SignIn,
        first_factor: first,
        proof,
        device_token: None,
        remember_device: false,
    }
}

/// A sign-in from home with the right password: the approval it sends.
fn ask(e: &E, user: &str, now: Timestamp) -> (Decision, PushChallenge) {
    let d = e.decide(&request(user, HOME, FirstFactor::Ok, None), now);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Challenge, Reason::ApprovalSent),
        "{d:?}"
    );
    let a = d.approval.expect("an approval");
    (d, a)
}

fn redeem(e: &E, user: &str, approval: ChallengeId, now: Timestamp) -> Decision {
    let hex = approval.to_hex();
    e.decide(
        &request(user, HOME, FirstFactor::Ok, Some(Proof::Push(&hex))),
        now,
    )
}

fn answer(
    e: &E,
    device: &DeviceRef,
    phone: &Phone,
    approval: ChallengeId,
    verdict: Verdict,
    number: u8,
    now: Timestamp,
) -> Result<Answered, PushError> {
    let message = push::answer_message(&approval, verdict, number);
    e.answer_approval(
        device,
        approval,
        verdict,
        number,
        &phone.sign(&message),
        now,
    )
}

#[test]
fn an_approval_with_the_right_number_lets_one_sign_in_through_once() {
    let (e, phone) = (engine(), Phone::new(1));
    let method = kari(&e, &phone);
    let device = signed_in(&e, "kari", method, &phone);
    let (d, a) = ask(&e, "kari", at(T0));
    assert!((10..=99).contains(&a.number), "{}", a.number);
    assert_eq!(d.method, Some(portvakt_core::directory::MethodKind::Push));
    // The device is shown where and when, never the number.
    let listed = e.pending_approvals(&device, at(T0 + 1)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id, listed[0].location.as_ref()),
        (a.id, "elsewhere")
    );
    // Before the answer: pending, and nothing counted.
    let d = redeem(&e, "kari", a.id, at(T0 + 2));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Challenge, Reason::ApprovalPending)
    );
    assert_eq!(
        answer(
            &e,
            &device,
            &phone,
            a.id,
            Verdict::Approve,
            a.number,
            at(T0 + 3)
        ),
        Ok(Answered::Approved)
    );
    assert!(e.pending_approvals(&device, at(T0 + 3)).unwrap().is_empty());
    let d = redeem(&e, "kari", a.id, at(T0 + 4));
    assert_eq!(
        (d.outcome, d.reason, d.method),
        (
            Outcome::Allow,
            Reason::SecondFactorVerified,
            Some(portvakt_core::directory::MethodKind::Push)
        )
    );
    // Spent: a second redemption and a second answer find nothing.
    let d = redeem(&e, "kari", a.id, at(T0 + 5));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::ChallengeInvalid)
    );
    assert_eq!(
        answer(
            &e,
            &device,
            &phone,
            a.id,
            Verdict::Approve,
            a.number,
            at(T0 + 6)
        ),
        Err(PushError::Gone)
    );
}

#[test]
fn sixty_four_redemptions_at_once_get_one_allow() {
    let (e, phone) = (Arc::new(engine()), Phone::new(2));
    let method = kari(&e, &phone);
    let device = signed_in(&e, "kari", method, &phone);
    let (_, a) = ask(&e, "kari", at(T0));
    answer(
        &e,
        &device,
        &phone,
        a.id,
        Verdict::Approve,
        a.number,
        at(T0 + 1),
    )
    .unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(64));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let (e, barrier) = (e.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                redeem(&e, "kari", a.id, at(T0 + 2)).outcome
            })
        })
        .collect();
    let outcomes: Vec<Outcome> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let allowed = outcomes.iter().filter(|o| **o == Outcome::Allow).count();
    assert_eq!(allowed, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Allow | Outcome::Deny))
    );
}

#[test]
fn a_wrong_number_is_a_failed_second_factor_and_locks_like_codes() {
    let (e, phone) = (engine(), Phone::new(3));
    let method = kari(&e, &phone);
    let device = signed_in(&e, "kari", method, &phone);
    // Ten wrong numbers lock (the policy's threshold), one approval each; the approvals
    // are spaced so the fatigue budget (10 per 15 minutes) is not what stops them.
    let mut now = T0;
    for i in 0..10 {
        let (_, a) = ask(&e, "kari", at(now));
        let wrong = if a.number == 99 { 10 } else { a.number + 1 };
        let r = answer(
            &e,
            &device,
            &phone,
            a.id,
            Verdict::Approve,
            wrong,
            at(now + 1),
        );
        assert_eq!(r, Ok(Answered::WrongNumber), "approval {i}");
        let d = redeem(&e, "kari", a.id, at(now + 2));
        if i < 9 {
            assert_eq!(
                (d.outcome, d.reason),
                (Outcome::Deny, Reason::NumberMismatch)
            );
        } else {
            assert_eq!(d.outcome, Outcome::Locked, "{d:?}");
        }
        now += 100;
    }
    // Locked: a sign-in from home is refused now, without sending anything.
    let d = e.decide(&request("kari", HOME, FirstFactor::Ok, None), at(now - 97));
    assert_eq!(d.outcome, Outcome::Locked, "{d:?}");
}

#[test]
fn a_number_from_another_approval_is_a_wrong_number() {
    let (e, phone) = (engine(), Phone::new(4));
    let method = kari(&e, &phone);
    let device = signed_in(&e, "kari", method, &phone);
    let (_, a) = ask(&e, "kari", at(T0));
    let (_, b) = ask(&e, "kari", at(T0 + 1));
    if a.number == b.number {
        return; // the same number by chance (1 in 90): nothing to tell apart
    }
    assert_eq!(
        answer(
            &e,
            &device,
            &phone,
            b.id,
            Verdict::Approve,
            a.number,
            at(T0 + 2)
        ),
        Ok(Answered::WrongNumber)
    );
    let d = redeem(&e, "kari", b.id, at(T0 + 3));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::NumberMismatch)
    );
    // The other approval is untouched.
    assert_eq!(
        answer(
            &e,
            &device,
            &phone,
            a.id,
            Verdict::Approve,
            a.number,
            at(T0 + 4)
        ),
        Ok(Answered::Approved)
    );
}

#[test]
fn deny_refuses_and_expiry_refuses() {
    let (e, phone) = (engine(), Phone::new(5));
    let method = kari(&e, &phone);
    let device = signed_in(&e, "kari", method, &phone);
    let (_, a) = ask(&e, "kari", at(T0));
    assert_eq!(
        answer(&e, &device, &phone, a.id, Verdict::Deny, 0, at(T0 + 1)),
        Ok(Answered::Denied)
    );
    let d = redeem(&e, "kari", a.id, at(T0 + 2));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::ApprovalDenied)
    );

    let (_, b) = ask(&e, "kari", at(T0 + 10));
    let late = Timestamp::from_millis(b.expires.as_millis());
    let d = redeem(&e, "kari", b.id, late);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::ChallengeInvalid)
    );
    // A late answer changes nothing.
    assert_eq!(
        answer(&e, &device, &phone, b.id, Verdict::Approve, b.number, late),
        Err(PushError::Gone)
    );
    assert!(e.pending_approvals(&device, late).unwrap().is_empty());
}

#[test]
fn too_many_prompts_are_throttled_not_sent() {
    let (e, phone) = (engine(), Phone::new(6));
    kari(&e, &phone);
    // Three may wait at once.
    for i in 0..3 {
        ask(&e, "kari", at(T0 + i));
    }
    let d = e.decide(&request("kari", HOME, FirstFactor::Ok, None), at(T0 + 4));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Throttled, Reason::ApprovalsLimited),
        "{d:?}"
    );
    assert!(d.approval.is_none());
    // The other methods are offered instead, and the wait ends when one expires.
    assert!(
        d.methods
            .iter()
            .all(|m| m.kind != portvakt_core::directory::MethodKind::Push)
    );
    assert!(!d.methods.is_empty());
    assert!(d.retry_after.unwrap() <= Duration::from_secs(120));
    // Ten per quarter hour in all: three at a time, each three once the earlier ones
    // have expired, until the budget says no.
    let (mut now, mut sent) = (T0 + 125, 3);
    'outer: loop {
        for _ in 0..3 {
            let d = e.decide(&request("kari", HOME, FirstFactor::Ok, None), at(now));
            if d.outcome == Outcome::Throttled {
                assert_eq!(d.reason, Reason::ApprovalsLimited);
                break 'outer;
            }
            assert_eq!(d.reason, Reason::ApprovalSent, "{d:?}");
            sent += 1;
            assert!(sent <= 10, "more than ten approvals in a quarter hour");
        }
        now += 125;
    }
    assert!(now < T0 + 900);
    assert_eq!(sent, 10);
}

#[test]
fn a_report_refuses_and_locks_away_from_trusted_networks() {
    let (e, phone) = (engine(), Phone::new(7));
    let method = kari(&e, &phone);
    let device = signed_in(&e, "kari", method, &phone);
    let (_, a) = ask(&e, "kari", at(T0));
    assert_eq!(
        answer(&e, &device, &phone, a.id, Verdict::Report, 0, at(T0 + 1)),
        Ok(Answered::Reported)
    );
    let d = redeem(&e, "kari", a.id, at(T0 + 2));
    assert_eq!(d.outcome, Outcome::Locked, "{d:?}");
    let d = e.decide(&request("kari", HOME, FirstFactor::Ok, None), at(T0 + 3));
    assert_eq!(d.outcome, Outcome::Locked, "{d:?}");
    // The office still lets kari in: the report locks the unfamiliar domain only.
    let d = e.decide(&request("kari", OFFICE, FirstFactor::Ok, None), at(T0 + 4));
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    // The lock is the longest wait, and then it ends.
    let max = portvakt_core::config::load(KOMMUNE)
        .unwrap()
        .settings
        .lockout
        .max_wait;
    let d = e.decide(
        &request("kari", HOME, FirstFactor::Ok, None),
        Timestamp::from_millis(at(T0 + 1).as_millis() + max.as_millis() - 1_000),
    );
    assert_eq!(d.outcome, Outcome::Locked, "{d:?}");
    let d = e.decide(
        &request("kari", HOME, FirstFactor::Ok, None),
        Timestamp::from_millis(at(T0 + 1).as_millis() + max.as_millis()),
    );
    assert_eq!(d.reason, Reason::ApprovalSent, "{d:?}");
}

#[test]
fn forged_replayed_and_foreign_answers_are_refused() {
    let (e, phone) = (engine(), Phone::new(8));
    let method = kari(&e, &phone);
    let device = signed_in(&e, "kari", method, &phone);
    let (_, a) = ask(&e, "kari", at(T0));
    // Signed by another key.
    let thief = Phone::new(9);
    assert_eq!(
        answer(
            &e,
            &device,
            &thief,
            a.id,
            Verdict::Approve,
            a.number,
            at(T0 + 1)
        ),
        Err(PushError::NotPaired)
    );
    // Signed over another number than the one sent.
    let message = push::answer_message(&a.id, Verdict::Approve, a.number);
    let sig = phone.sign(&message);
    let other = if a.number == 99 { 10 } else { a.number + 1 };
    assert_eq!(
        e.answer_approval(&device, a.id, Verdict::Approve, other, &sig, at(T0 + 1)),
        Err(PushError::NotPaired)
    );
    // A signature that is not one.
    assert_eq!(
        e.answer_approval(
            &device,
            a.id,
            Verdict::Approve,
            a.number,
            &[0u8; 3],
            at(T0 + 1)
        ),
        Err(PushError::NotPaired)
    );
    // Another user's device cannot answer kari's approval, though its key is its own.
    let per_phone = Phone::new(10);
    e.add_user("kommune", "per", &[], false).unwrap();
    let per_method = pair(&e, "per", &per_phone);
    let per = signed_in(&e, "per", per_method, &per_phone);
    assert_eq!(
        answer(
            &e,
            &per,
            &per_phone,
            a.id,
            Verdict::Approve,
            a.number,
            at(T0 + 2)
        ),
        Err(PushError::Gone)
    );
    // Nothing above changed the approval; the real answer is taken once.
    assert_eq!(
        answer(
            &e,
            &device,
            &phone,
            a.id,
            Verdict::Approve,
            a.number,
            at(T0 + 3)
        ),
        Ok(Answered::Approved)
    );
    assert_eq!(
        answer(&e, &device, &phone, a.id, Verdict::Deny, 0, at(T0 + 4)),
        Err(PushError::Gone)
    );
    // A device sign-in over another nonce than the one signed is refused.
    let message = push::sign_in_message(&[1; push::NONCE_LEN], "kommune", "kari", method);
    assert_eq!(
        e.device_sign_in(
            "kommune",
            "kari",
            method,
            &[2; push::NONCE_LEN],
            &phone.sign(&message)
        ),
        Err(PushError::NotPaired)
    );
    // An unknown user and a wrong key are refused alike.
    let message = push::sign_in_message(&[1; push::NONCE_LEN], "kommune", "nobody", method);
    assert_eq!(
        e.device_sign_in(
            "kommune",
            "nobody",
            method,
            &[1; push::NONCE_LEN],
            &phone.sign(&message)
        ),
        Err(PushError::NotPaired)
    );
}

#[test]
fn enrolment_takes_the_token_once_and_a_proof_of_the_key() {
    let e = engine();
    e.add_user("kommune", "kari", &[], false).unwrap();
    let phone = Phone::new(12);
    let started = e.enroll_push("kommune", "kari", at(T0)).unwrap();
    let token = started.token.expose().to_owned();
    let message = push::enrol_message("kommune", "kari", started.method, &token, phone.public());
    let signature = phone.sign(&message);
    let pairing = |token: &'static str, key: &'static [u8], signature: &'static [u8]| Pairing {
        tenant: "kommune",
        user: "kari",
        method: started.method,
        token,
        key,
        signature,
    };
    let leak = |v: Vec<u8>| -> &'static [u8] { Box::leak(v.into_boxed_slice()) };
    let token: &'static str = Box::leak(token.into_boxed_str());
    let key = leak(phone.public().to_vec());
    let signature = leak(signature);
    // A wrong token; a key signed by another key; a key of the wrong length.
    assert_eq!(
        e.pair_push(&pairing("AAAAAAAA", key, signature), at(T0 + 1)),
        Err(PushError::Enrolment)
    );
    let other = Phone::new(13);
    let forged = leak(other.sign(&message));
    assert_eq!(
        e.pair_push(&pairing(token, key, forged), at(T0 + 1)),
        Err(PushError::NotPaired)
    );
    assert!(matches!(
        e.pair_push(&pairing(token, &key[..31], signature), at(T0 + 1)),
        Err(PushError::Malformed(_))
    ));
    // Too late.
    let late = Timestamp::from_millis(started.expires.as_millis());
    assert_eq!(
        e.pair_push(&pairing(token, key, signature), late),
        Err(PushError::Enrolment)
    );
    // In time: paired; the token does not work twice.
    e.pair_push(&pairing(token, key, signature), at(T0 + 2))
        .unwrap();
    assert_eq!(
        e.pair_push(&pairing(token, key, signature), at(T0 + 3)),
        Err(PushError::Enrolment)
    );
    let info = e.user_info("kommune", "kari").unwrap();
    assert!(
        info.methods
            .iter()
            .any(|(id, kind, active)| *id == started.method
                && *kind == portvakt_core::directory::MethodKind::Push
                && *active)
    );
}

#[test]
fn push_devices_count_toward_the_five_devices() {
    let e = engine();
    e.add_user("kommune", "kari", &[], false).unwrap();
    for i in 0..3u8 {
        e.import_totp(
            "kommune",
            "kari",
            &[b'a' + i; 20],
            TotpSpec::default(),
            true,
        )
        .unwrap();
    }
    e.enroll_push("kommune", "kari", at(T0)).unwrap();
    e.enroll_push("kommune", "kari", at(T0)).unwrap();
    assert_eq!(
        e.enroll_push("kommune", "kari", at(T0)).unwrap_err(),
        portvakt_core::directory::DirectoryError::TooManyOtpDevices
    );
}

#[test]
fn a_passwordless_account_signs_in_with_an_approval() {
    let (e, phone) = (engine(), Phone::new(14));
    e.add_user("kommune", "pia", &[], true).unwrap();
    e.import_totp(
        "kommune",
        "pia",
        b"pia-app-secret-00000",
        TotpSpec::default(),
        true,
    )
    .unwrap();
    let method = pair(&e, "pia", &phone);
    let device = signed_in(&e, "pia", method, &phone);
    let d = e.decide(&request("pia", HOME, FirstFactor::None, None), at(T0));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Challenge, Reason::ApprovalSent)
    );
    let a = d.approval.unwrap();
    answer(
        &e,
        &device,
        &phone,
        a.id,
        Verdict::Approve,
        a.number,
        at(T0 + 1),
    )
    .unwrap();
    let hex = a.id.to_hex();
    let d = e.decide(
        &request("pia", HOME, FirstFactor::None, Some(Proof::Push(&hex))),
        at(T0 + 2),
    );
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Allow, Reason::SecondFactorVerified)
    );
    // The same approval cannot be redeemed by a password sign-in of someone else's name.
    let d = e.decide(
        &request("kari", HOME, FirstFactor::Ok, Some(Proof::Push(&hex))),
        at(T0 + 3),
    );
    assert_eq!(d.outcome, Outcome::Deny);
}

#[test]
fn an_unknown_name_is_sent_an_approval_that_looks_like_a_user_s() {
    let (e, phone) = (engine(), Phone::new(15));
    kari(&e, &phone);
    // Some unknown names' phantoms prompt the app's notification, as some users' do.
    let shape = |d: &Decision| {
        (
            d.outcome,
            d.reason,
            d.rule,
            d.location,
            d.method,
            d.approval.is_some(),
            d.methods.first().map(|m| m.kind),
        )
    };
    let known = e.decide(&request("kari", HOME, FirstFactor::None, None), at(T0));
    let mut found = None;
    for i in 0..400 {
        let name = format!("nobody{i}");
        let d = e.decide(&request(&name, HOME, FirstFactor::None, None), at(T0));
        if d.approval.is_some() {
            found = Some((name, d));
            break;
        }
    }
    let (name, unknown) = found.expect("no phantom prompts a notification");
    assert_eq!(shape(&unknown), shape(&known));
    // Waiting on it looks the same, and so does its end.
    let a = unknown.approval.unwrap();
    let hex = a.id.to_hex();
    let poll = |user: &str, hex: &str, now| {
        e.decide(
            &request(user, HOME, FirstFactor::None, Some(Proof::Push(hex))),
            now,
        )
    };
    let k = known.approval.unwrap();
    let khex = k.id.to_hex();
    assert_eq!(
        shape(&poll(&name, &hex, at(T0 + 1))),
        shape(&poll("kari", &khex, at(T0 + 1)))
    );
    let late = at(T0 + 121);
    assert_eq!(
        shape(&poll(&name, &hex, late)),
        shape(&poll("kari", &khex, late))
    );
}

#[test]
fn a_push_method_asked_for_by_id_sends_an_approval() {
    let (e, phone) = (engine(), Phone::new(16));
    let method = kari(&e, &phone);
    let sent = e.send_code(
        &SendRequest {
            tenant: "kommune",
            user: "kari",
            ip: HOME.parse().unwrap(),
            purpose: Purpose::SignIn,
            method: Some(method),
        },
        at(T0),
    );
    assert_eq!(sent.decision.reason, Reason::ApprovalSent);
    assert!(sent.decision.approval.is_some());
    assert!(sent.challenge.is_none() && sent.delivery.is_none());
}
