//! No user enumeration. An unknown name is decided as a phantom (see `phantom.rs`): a user
//! record with methods like a real user's. For a known user and an unknown name whose
//! phantom has the same methods, every request shape gets the same answer, field by field,
//! and performs the same state-store operations in the same order. (Time itself is not
//! asserted: the machine is shared and noisy. The operations are what time is spent on
//! besides the HMACs, and the phantom computes the same HMACs by construction; the
//! `enumeration` bench measures the rest.)

use crate::common;

use std::sync::Mutex;

use common::*;
use portvakt_core::directory::MethodKind;
use portvakt_core::lockout::{Domain, Factor};
use portvakt_core::secret::Pepper;
use portvakt_core::state::{
    Answer, ChallengeRecord, Counter, CounterKey, StoreError, StoreSizes, UserState,
};
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{
    ChallengeId, Decision, Engine, FirstFactor, MemoryStore, MethodId, MethodInfo, Proof, Purpose,
    Request, SendRequest, StateStore, Subject, Timestamp, config,
};

/// Records which operations were called, with what kind of effect, and what they answered.
#[derive(Default)]
struct Recording {
    inner: MemoryStore,
    log: Mutex<Vec<String>>,
}

impl Recording {
    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// What a subject's record shows after a change: whether the change did anything, and
/// for each lock domain whether it is locked now; and whether phone methods are blocked.
fn summary(before: &UserState, after: &UserState, now: Timestamp) -> String {
    let locks: Vec<bool> = [Factor::First, Factor::Second]
        .into_iter()
        .flat_map(|factor| {
            [false, true].map(|familiar| {
                matches!(
                    after.check(Domain { factor, familiar }, now),
                    Answer::Locked { .. }
                )
            })
        })
        .collect();
    format!(
        "changed={} locked={locks:?} phone_blocked={}",
        before != after,
        after.phone_blocked(now).is_some()
    )
}

impl StateStore for Recording {
    fn read_subject<R>(
        &self,
        s: Subject,
        f: impl FnOnce(Option<&UserState>) -> R,
    ) -> Result<R, StoreError> {
        self.note("read_subject".into());
        self.inner.read_subject(s, f)
    }
    fn update_subject<R>(
        &self,
        s: Subject,
        now: Timestamp,
        mut f: impl FnMut(&mut UserState) -> R,
    ) -> Result<R, StoreError> {
        let mut note = String::new();
        let r = self.inner.update_subject(s, now, |u| {
            let before = u.clone();
            let r = f(u);
            note = summary(&before, u, now);
            r
        })?;
        self.note(format!("update_subject {note}"));
        Ok(r)
    }
    fn read_counter<R>(
        &self,
        k: CounterKey,
        f: impl FnOnce(Option<&Counter>) -> R,
    ) -> Result<R, StoreError> {
        self.note(format!("read_counter {}", counter_kind(k)));
        self.inner.read_counter(k, f)
    }
    fn update_counter<R>(
        &self,
        k: CounterKey,
        now: Timestamp,
        mut f: impl FnMut(&mut Counter) -> R,
    ) -> Result<R, StoreError> {
        let mut changed = false;
        let r = self.inner.update_counter(k, now, |c| {
            let before = *c;
            let r = f(c);
            changed = before != *c;
            r
        })?;
        self.note(format!(
            "update_counter {} changed={changed}",
            counter_kind(k)
        ));
        Ok(r)
    }
    fn update_challenge<R>(
        &self,
        id: ChallengeId,
        now: Timestamp,
        mut f: impl FnMut(&mut Option<ChallengeRecord>) -> R,
    ) -> Result<R, StoreError> {
        let mut note = String::new();
        let r = self.inner.update_challenge(id, now, |slot| {
            let before = slot.map(|c| c.attempts_left);
            let r = f(slot);
            note = format!("{before:?} -> {:?}", slot.map(|c| c.attempts_left));
            r
        })?;
        self.note(format!("update_challenge {note}"));
        Ok(r)
    }
    fn sizes(&self) -> Result<StoreSizes, StoreError> {
        self.inner.sizes()
    }
    fn locked_subjects(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.inner.locked_subjects(now)
    }
}

fn counter_kind(k: CounterKey) -> &'static str {
    match k {
        CounterKey::Source(_) => "source",
        CounterKey::Number(_) => "number",
        CounterKey::Tenant(_) => "tenant",
    }
}

fn new_engine() -> Engine<Recording> {
    let policy = config::load(KOMMUNE).unwrap();
    Engine::new(
        policy,
        Recording::default(),
        Pepper::new([1; 32]),
        Box::new(SeededEntropy::new(5)),
    )
}

/// The methods a password-reset challenge offers `user` (no state is left behind).
fn offered<S: StateStore>(e: &Engine<S>, user: &str) -> Vec<MethodInfo> {
    let mut r = req(user, OFFICE, None);
    r.purpose = Purpose::PasswordReset;
    r.first_factor = FirstFactor::None;
    e.decide(&r, at(T0 - 100)).methods
}

/// An unknown name whose phantom offers `kinds`, in that order, and its offer.
fn twin<S: StateStore>(e: &Engine<S>, kinds: &[MethodKind]) -> (String, Vec<MethodInfo>) {
    (0..10_000)
        .map(|i| format!("nobody{i}@kommune.no"))
        .find_map(|name| {
            let m = offered(e, &name);
            (m.iter().map(|m| m.kind).collect::<Vec<_>>() == kinds).then_some((name, m))
        })
        .expect("some phantom has every common shape")
}

/// Registers, for a new user `name`, methods matching `offer` (kinds and hints), active.
fn enrol_like<S: StateStore>(e: &Engine<S>, name: &str, offer: &[MethodInfo], passwordless: bool) {
    e.add_user("kommune", name, &[], passwordless).unwrap();
    for m in offer {
        match m.kind {
            MethodKind::AuthenticatorApp => {
                e.import_totp("kommune", name, &secret_for(name), Default::default(), true)
                    .unwrap();
            }
            MethodKind::Sms | MethodKind::Voice => {
                let tail = m.hint.as_deref().unwrap().rsplit(' ').next().unwrap();
                let id = e
                    .add_phone("kommune", name, m.kind, &format!("+4791234{tail}"))
                    .unwrap();
                let (ch, d) = e
                    .start_confirmation("kommune", name, id, at(T0 - 100_000))
                    .unwrap()
                    .unwrap();
                e.confirm_sent("kommune", name, id, ch, d.code.expose(), at(T0 - 100_000))
                    .unwrap();
            }
            other => panic!("no phantom has {other:?}"),
        }
    }
    assert_eq!(offered(e, name), offer, "the twin's offer");
}

/// Kari with an app and a phone, and an unknown name whose phantom has the same.
fn engine() -> (Engine<Recording>, String) {
    let e = new_engine();
    let (nobody, offer) = twin(&e, &[MethodKind::AuthenticatorApp, MethodKind::Sms]);
    enrol_like(&e, "kari", &offer, false);
    e.store().take();
    (e, nobody)
}

#[test]
fn an_unknown_user_costs_the_same_store_operations_as_a_wrong_code() {
    let (e, nobody) = engine();
    for i in 0..12u64 {
        let wrong = format!("{:06}", 400_000 + i);
        e.decide(&req("kari", HOME, Some(Proof::Totp(&wrong))), at(T0 + i));
        let known = e.store().take();
        e.decide(&req(&nobody, HOME, Some(Proof::Totp(&wrong))), at(T0 + i));
        let unknown = e.store().take();
        assert_eq!(known, unknown, "wrong code {i}");
        assert!(!known.is_empty());
    }
    for ff in [FirstFactor::Failed, FirstFactor::Ok] {
        let mut r = req("kari", OFFICE, None);
        r.first_factor = ff;
        r.purpose = Purpose::PasswordReset;
        e.decide(&r, at(T0 + 100));
        let known = e.store().take();
        r.user = &nobody;
        e.decide(&r, at(T0 + 100));
        assert_eq!(known, e.store().take(), "reset without proof, {ff:?}");
    }
}

#[test]
fn sent_codes_cost_the_same_store_operations_for_an_unknown_user() {
    let (e, nobody) = engine();
    let send = |user| SendRequest {
        tenant: "kommune",
        user,
        ip: HOME.parse().unwrap(),
        purpose: Purpose::SignIn,
        method: None,
    };
    let k = e.send_code(&send("kari"), at(T0));
    let known_send = e.store().take();
    let u = e.send_code(&send(&nobody), at(T0));
    assert_eq!(known_send, e.store().take());
    let (kid, uid) = (k.challenge.unwrap().to_hex(), u.challenge.unwrap().to_hex());
    for i in 0..4u64 {
        let wrong = format!("{:06}", 123_000 + i);
        e.decide(
            &req(
                "kari",
                HOME,
                Some(Proof::Sent {
                    challenge: &kid,
                    code: &wrong,
                }),
            ),
            at(T0 + 1 + i),
        );
        let known = e.store().take();
        e.decide(
            &req(
                &nobody,
                HOME,
                Some(Proof::Sent {
                    challenge: &uid,
                    code: &wrong,
                }),
            ),
            at(T0 + 1 + i),
        );
        assert_eq!(known, e.store().take(), "sent code {i}");
    }
}

/// Everything a frontend sees of an answer, the device token only as present or not.
fn seen(d: &Decision) -> String {
    format!(
        "{} {} rule={} location={} methods={:?} retry={:?} method={:?} token={}",
        d.outcome.as_str(),
        d.reason,
        d.rule,
        d.location,
        d.methods,
        d.retry_after,
        d.method,
        d.device_token.is_some()
    )
}

/// Every request shape, for a known user and an unknown name with the same methods:
/// each purpose and first-factor outcome, each kind of proof (wrong, malformed, replayed
/// challenge), remembered-device tokens, and sending codes (by default, by each id, by an
/// id nobody has). The answers must be equal field by field, and so must the store
/// operations; the walk goes on into lockout, which both must reach together.
#[test]
fn every_request_shape_answers_alike() {
    let shapes: &[&[MethodKind]] = &[
        &[MethodKind::AuthenticatorApp],
        &[MethodKind::AuthenticatorApp, MethodKind::Sms],
        &[MethodKind::Sms, MethodKind::AuthenticatorApp],
        &[MethodKind::AuthenticatorApp, MethodKind::Voice],
        &[],
    ];
    let mut walked = 0;
    let mut outcomes = std::collections::BTreeSet::new();
    for (n, kinds) in shapes.iter().enumerate() {
        for passwordless in [false, true] {
            let e = new_engine();
            let (nobody, offer) = twin(&e, kinds);
            let known = format!("user{n}@kommune.no");
            enrol_like(&e, &known, &offer, passwordless);
            e.store().take();
            walked += walk(&e, &known, &nobody, passwordless, &mut outcomes);
        }
    }
    assert!(walked > 1_000, "{walked} comparisons");
    // The walk reached every kind of answer (allow: single factor on the office network).
    let all = [
        "allow",
        "challenge",
        "deny",
        "locked",
        "register",
        "throttled",
    ];
    assert_eq!(outcomes.iter().copied().collect::<Vec<_>>(), all);
}

fn walk(
    e: &Engine<Recording>,
    known: &str,
    nobody: &str,
    passwordless: bool,
    outcomes: &mut std::collections::BTreeSet<&'static str>,
) -> usize {
    let seen_outcomes = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let mut compared = 0;
    let mut t = T0;
    let mut ask = |r: Request<'_>, other: Request<'_>, t: u64, what: &str| {
        let a = e.decide(&Request { user: known, ..r }, at(t));
        let ops_a = e.store().take();
        let b = e.decide(
            &Request {
                user: nobody,
                ..other
            },
            at(t),
        );
        let ops_b = e.store().take();
        assert_eq!(seen(&a), seen(&b), "{what} (passwordless {passwordless})");
        seen_outcomes.borrow_mut().insert(a.outcome.as_str());
        assert_eq!(ops_a, ops_b, "{what}: store operations");
        compared += 1;
    };
    let sends = |purpose: Purpose, method: Option<MethodId>, ip: &str, t: u64| {
        let send = |user| SendRequest {
            tenant: "kommune",
            user,
            ip: ip.parse().unwrap(),
            purpose,
            method,
        };
        let a = e.send_code(&send(known), at(t));
        let ops_a = e.store().take();
        let b = e.send_code(&send(nobody), at(t));
        let ops_b = e.store().take();
        let what = format!("send {purpose:?} {method:?} from {ip}");
        assert_eq!(seen(&a.decision), seen(&b.decision), "{what}");
        seen_outcomes
            .borrow_mut()
            .insert(a.decision.outcome.as_str());
        assert_eq!(a.challenge.is_some(), b.challenge.is_some(), "{what}");
        assert_eq!(ops_a, ops_b, "{what}: store operations");
        a.challenge.zip(b.challenge)
    };
    // Two rounds: the second runs into lockout and send limits.
    for round in 0..2 {
        for (i, ip) in [OFFICE, HOME, "2001:db8:7::1"].into_iter().enumerate() {
            for purpose in Purpose::ALL {
                let mut challenges = Vec::new();
                for method in [
                    None,
                    Some(MethodId(1)),
                    Some(MethodId(2)),
                    Some(MethodId(9)),
                ] {
                    t += 1;
                    challenges.extend(sends(purpose, method, ip, t));
                }
                let challenge = challenges.first().map(|(a, b)| (a.to_hex(), b.to_hex()));
                for ff in [FirstFactor::Ok, FirstFactor::Failed, FirstFactor::None] {
                    let base = Request {
                        tenant: "kommune",
                        user: "",
                        ip: ip.parse().unwrap(),
                        purpose,
                        first_factor: ff,
                        proof: None,
                        device_token: None,
                        remember_device: false,
                    };
                    let wrong = format!("{:06}", 100_000 + t % 900_000);
                    let what = format!("round {round} ip {i} {purpose:?} {ff:?}");
                    // Where the frontend vouches for a password, the answer may differ: only
                    // someone who has the password sees it. An unknown name with a right
                    // password is told to register; a passwordless account with a right
                    // password is told passwords are not allowed (docs/protocol.md).
                    let vouched = ff == FirstFactor::Ok;
                    if vouched && passwordless {
                        continue;
                    }
                    t += 1;
                    if !(vouched && purpose == Purpose::SignIn) {
                        ask(base, base, t, &format!("{what} no proof"));
                    }
                    for proof in [
                        Proof::Totp(&wrong),
                        Proof::Totp("12a456"),
                        Proof::Hotp {
                            code: &wrong,
                            next: None,
                        },
                        Proof::Hotp {
                            code: &wrong,
                            next: Some(&wrong),
                        },
                        Proof::AppPassword("abcd efgh ijkl mnop"),
                        Proof::SecurityAnswers(&["blue", "oslo"]),
                    ] {
                        t += 1;
                        let r = Request {
                            proof: Some(proof),
                            ..base
                        };
                        ask(r, r, t, &format!("{what} {proof:?}"));
                    }
                    if let Some((a, b)) = &challenge {
                        // Each side its own challenge, the other side's, and a made-up one.
                        let made_up = "00112233445566778899aabbccddeeff";
                        for (x, y) in [(a, b), (b, a), (&made_up.into(), &made_up.into())] {
                            t += 1;
                            let sent = |ch| Request {
                                proof: Some(Proof::Sent {
                                    challenge: ch,
                                    code: &wrong,
                                }),
                                ..base
                            };
                            ask(sent(x), sent(y), t, &format!("{what} sent"));
                        }
                    }
                    if !(vouched && purpose == Purpose::SignIn) {
                        t += 1;
                        let token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
                        let r = Request {
                            device_token: Some(token),
                            remember_device: true,
                            ..base
                        };
                        ask(r, r, t, &format!("{what} device token"));
                    }
                }
            }
        }
    }
    outcomes.extend(seen_outcomes.into_inner());
    compared
}

/// A flood of failures for random names, each source within its limit, evicts other such
/// names from the bounded table, not a lock in force: the locked unknown name still
/// answers as the locked user does.
#[test]
fn a_flood_does_not_erase_an_unknown_names_lock() {
    use portvakt_core::Outcome;
    use portvakt_core::state::StoreLimits;
    let limits = StoreLimits {
        unknown_subjects: 2_000,
        ..StoreLimits::default()
    };
    let e = Engine::new(
        config::load(KOMMUNE).unwrap(),
        MemoryStore::new(limits),
        Pepper::new([1; 32]),
        Box::new(SeededEntropy::new(5)),
    );
    let (nobody, offer) = twin(&e, &[MethodKind::AuthenticatorApp, MethodKind::Sms]);
    enrol_like(&e, "kari", &offer, false);
    let mut locked_at = None;
    for i in 0..30u64 {
        let wrong = format!("{:06}", 200_000 + i);
        let a = e.decide(&req("kari", HOME, Some(Proof::Totp(&wrong))), at(T0 + i));
        let b = e.decide(&req(&nobody, HOME, Some(Proof::Totp(&wrong))), at(T0 + i));
        assert_eq!(seen(&a), seen(&b));
        if a.outcome == Outcome::Locked {
            locked_at = Some(T0 + i);
            break;
        }
    }
    let locked_at = locked_at.expect("both locked");
    // More locked unknown names, so that keeping them is no accident of hash order. Each
    // from an address of its own, within the per-source limit.
    let from =
        |i: usize| -> std::net::IpAddr { format!("2001:db8:ffff:{i:x}::1").parse().unwrap() };
    let ask = |n: &str, i: usize, proof: Option<Proof<'_>>, t: u64| {
        let mut r = req(n, HOME, proof);
        r.ip = from(i);
        e.decide(&r, at(t))
    };
    let lockable: Vec<String> = (0..1_000)
        .map(|i| format!("locked{i}@kommune.no"))
        .filter(|n| {
            ask(n, 0, Some(Proof::Totp("999999")), T0).reason == portvakt_core::Reason::InvalidCode
        })
        .take(32)
        .collect();
    assert_eq!(lockable.len(), 32);
    for (k, n) in lockable.iter().enumerate() {
        for i in 0..12u64 {
            let wrong = format!("{:06}", 300_000 + i);
            ask(n, k + 1, Some(Proof::Totp(&wrong)), locked_at);
        }
        assert_eq!(
            ask(n, k + 1, None, locked_at).outcome,
            Outcome::Locked,
            "{n}"
        );
    }
    // Ten times the table's cap of names, each failing once, from a /64 of its own.
    for i in 0..20_000u32 {
        let name = format!("flood{i}@kommune.no");
        let mut r = req(&name, "2001:db8::1", Some(Proof::Totp("000000")));
        r.ip = format!("2001:db8:{:x}:{:x}::1", i >> 16, i & 0xffff)
            .parse()
            .unwrap();
        e.decide(&r, at(locked_at + 1));
    }
    // Names whose phantom has fewer methods than kommune asks for are told to register
    // and count nothing; the rest (fourteen in sixteen) overflow the table.
    assert!(
        e.store().sizes().unwrap().evictions > 5_000,
        "{:?}",
        e.store().sizes()
    );
    let a = e.decide(&req("kari", HOME, None), at(locked_at + 2));
    let b = e.decide(&req(&nobody, HOME, None), at(locked_at + 2));
    assert_eq!(a.outcome, Outcome::Locked);
    assert_eq!(seen(&a), seen(&b));
    for (k, n) in lockable.iter().enumerate() {
        let d = ask(n, k + 1, None, locked_at + 2);
        assert_eq!(d.outcome, Outcome::Locked, "{n} forgotten");
    }
}
