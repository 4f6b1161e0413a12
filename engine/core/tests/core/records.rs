//! The records a backend stores (a subject's state, a budget, a challenge): any state the
//! rules can reach is written and read back unchanged, and goes on to answer exactly as
//! the original does; a fixed record has fixed bytes; and bytes that are not a record are
//! an error, never a panic.

use portvakt_core::Proof;
use portvakt_core::id::{MethodId, Subject, UserId};
use portvakt_core::lockout::{Domain, Factor, LockoutConfig};
use portvakt_core::policy::{PhoneSettings, Purpose};
use portvakt_core::secret::SecretDigest;
use portvakt_core::state::{
    ChallengeRecord, Counter, Effect, Journal, MemoryStore, RecordKey, Redeem, StateOps,
    StateStore, UserState,
};
use portvakt_core::time::{Duration, Timestamp};
use portvakt_core::window::Rate;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Wait(u64),
    Fail(u8, u32),
    Otp(u8, u32, u64, i8),
    Succeed(u8),
    Send,
    GiveBack,
    PhoneFailure,
    Unlock,
    Raise(u32, u64),
    Forget(u32),
    ResetDrift(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..4_000).prop_map(Op::Wait),
        (0u8..4, 0u32..4).prop_map(|(d, f)| Op::Fail(d, f)),
        (0u8..4, 1u32..5, 0u64..50, -2i8..3).prop_map(|(d, m, v, o)| Op::Otp(d, m, v, o)),
        (0u8..4).prop_map(Op::Succeed),
        Just(Op::Send),
        Just(Op::GiveBack),
        Just(Op::PhoneFailure),
        Just(Op::Unlock),
        (1u32..5, 0u64..60).prop_map(|(m, n)| Op::Raise(m, n)),
        (1u32..5).prop_map(Op::Forget),
        (1u32..5).prop_map(Op::ResetDrift),
    ]
}

fn domain(d: u8) -> Domain {
    Domain {
        factor: if d & 1 == 0 {
            Factor::First
        } else {
            Factor::Second
        },
        familiar: d & 2 == 0,
    }
}

/// Applies `op` and returns what it answered, as text to compare.
fn apply(u: &mut UserState, op: &Op, now: &mut Timestamp) -> String {
    let cfg = LockoutConfig {
        threshold: 3,
        ..LockoutConfig::default()
    };
    let phone = PhoneSettings::default();
    let rate = Rate {
        max: 3,
        per: Duration::from_secs(900),
    };
    match *op {
        Op::Wait(s) => {
            *now = *now + Duration::from_secs(s);
            String::new()
        }
        Op::Fail(d, f) => format!(
            "{:?}",
            u.sign_in(domain(d), Effect::Fail { fingerprint: f }, *now, &cfg)
        ),
        Op::Otp(d, m, v, o) => format!(
            "{:?}",
            u.sign_in(
                domain(d),
                Effect::Otp {
                    method: MethodId(m),
                    value: v,
                    offset: o,
                    fingerprint: 7
                },
                *now,
                &cfg
            )
        ),
        Op::Succeed(d) => format!("{:?}", u.sign_in(domain(d), Effect::Succeed, *now, &cfg)),
        Op::Send => format!("{} {:?}", u.draw_send(*now, rate), u.send_wait(*now, rate)),
        Op::GiveBack => {
            u.give_back_send();
            String::new()
        }
        Op::PhoneFailure => format!(
            "{:?} {:?}",
            u.phone_failure(*now, &phone),
            u.phone_blocked(*now)
        ),
        Op::Unlock => {
            u.unlock();
            String::new()
        }
        Op::Raise(m, n) => {
            u.raise_otp(MethodId(m), n);
            format!("{:?}", u.otp(MethodId(m)))
        }
        Op::Forget(m) => {
            u.forget_otp(MethodId(m));
            String::new()
        }
        Op::ResetDrift(m) => {
            u.reset_drift(MethodId(m));
            format!("{:?}", u.otp(MethodId(m)))
        }
    }
}

fn round_trip(u: &UserState) -> UserState {
    let mut bytes = Vec::new();
    u.encode(&mut bytes);
    let back = UserState::decode(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"));
    // One state, one form.
    let mut again = Vec::new();
    back.encode(&mut again);
    assert_eq!(again, bytes);
    back
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Written and read back at any point, a record is the same record, and from then
    /// on answers every operation as the one that never left memory.
    #[test]
    fn a_record_read_back_is_the_same_record(ops in proptest::collection::vec(op(), 1..120)) {
        let mut kept = UserState::default();
        let mut stored = UserState::default();
        let mut now = Timestamp::from_secs(1_800_000_000);
        let mut now2 = now;
        for op in &ops {
            stored = round_trip(&stored);
            prop_assert_eq!(&stored, &kept);
            let a = apply(&mut kept, op, &mut now);
            let b = apply(&mut stored, op, &mut now2);
            prop_assert_eq!(a, b, "{:?}", op);
        }
    }

    /// Bytes that are not a record are refused; the ones that are read back canonically.
    #[test]
    fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(u) = UserState::decode(&bytes) {
            let mut again = Vec::new();
            u.encode(&mut again);
            prop_assert_eq!(again, bytes);
        }
    }
}

#[test]
fn an_empty_record_and_a_small_one_have_fixed_bytes() {
    let mut bytes = Vec::new();
    UserState::default().encode(&mut bytes);
    assert_eq!(
        bytes,
        [1, 0, 0, 0],
        "format 1, no OTP state, no locks, no phone"
    );
    let mut u = UserState::default();
    u.raise_otp(MethodId(2), 0x0102);
    let mut bytes = Vec::new();
    u.encode(&mut bytes);
    assert_eq!(
        bytes,
        [1, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0],
        "format, one state: method 2, next 0x102, drift 0; no locks, no phone"
    );
    // Another format, a duplicated method, trailing bytes: all refused.
    assert!(UserState::decode(&[2, 0, 0, 0]).is_err());
    let mut twice = vec![1, 2];
    for _ in 0..2 {
        twice.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 2, 0]);
    }
    twice.extend_from_slice(&[0, 0]);
    assert!(UserState::decode(&twice).is_err());
    assert!(UserState::decode(&[1, 0, 0, 0, 0]).is_err());
    // A window whose used slot follows a free one breaks the window's rules: refused.
    let window = |slots: [(u32, u32); 5]| {
        let mut w = 1_000u64.to_be_bytes().to_vec();
        for (offset, count) in slots {
            w.extend_from_slice(&offset.to_be_bytes());
            w.extend_from_slice(&count.to_be_bytes());
        }
        w
    };
    let phone = |sends: Vec<u8>| {
        let mut r = vec![1, 0, 0, 1];
        r.extend_from_slice(&sends);
        r.extend_from_slice(&window([(0, 0); 5]));
        r.extend_from_slice(&0u64.to_be_bytes());
        r
    };
    let good = phone(window([(5, 1), (9, 2), (0, 0), (0, 0), (0, 0)]));
    assert!(UserState::decode(&good).is_ok());
    for bad in [
        window([(0, 0), (5, 1), (0, 0), (0, 0), (0, 0)]),
        window([(9, 1), (5, 2), (0, 0), (0, 0), (0, 0)]),
        window([(5, 1), (7, 0), (0, 0), (0, 0), (0, 0)]),
    ] {
        assert!(UserState::decode(&phone(bad)).is_err());
    }
}

fn counter_round_trip(c: &Counter) -> Counter {
    let mut bytes = Vec::new();
    c.encode(&mut bytes);
    let back = Counter::decode(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"));
    let mut again = Vec::new();
    back.encode(&mut again);
    assert_eq!(again, bytes);
    back
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A budget written and read back at any point answers as the one kept in memory.
    #[test]
    fn a_counter_read_back_is_the_same_counter(
        ops in proptest::collection::vec((0u8..3, 0u64..400_000), 1..200)
    ) {
        let rate = Rate { max: 7, per: Duration::from_secs(600) };
        let (mut kept, mut stored) = (Counter::default(), Counter::default());
        let mut now = Timestamp::from_secs(1_800_000_000);
        for (what, wait) in ops {
            stored = counter_round_trip(&stored);
            prop_assert_eq!(stored, kept);
            now = now + Duration::from_millis(wait);
            match what {
                0 => prop_assert_eq!(kept.reserve(now, rate), stored.reserve(now, rate)),
                1 => {
                    kept.refund();
                    stored.refund();
                }
                _ => prop_assert_eq!(kept.wait(now, rate), stored.wait(now, rate)),
            }
        }
    }

    /// Bytes that are neither a counter nor a challenge are refused; the ones that are
    /// read back canonically.
    #[test]
    fn any_bytes_are_a_counter_a_challenge_or_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..120)
    ) {
        if let Ok(c) = Counter::decode(&bytes) {
            let mut again = Vec::new();
            c.encode(&mut again);
            prop_assert_eq!(again, bytes.clone());
        }
        if let Ok(c) = ChallengeRecord::decode(&bytes) {
            let mut again = Vec::new();
            c.encode(&mut again);
            prop_assert_eq!(again, bytes);
        }
    }
}

#[test]
fn a_challenge_has_fixed_bytes_and_is_redeemed_by_its_rules() {
    let record = ChallengeRecord {
        subject: Subject::Known(UserId(7)),
        method: MethodId(2),
        purpose: Purpose::PasswordReset,
        digest: SecretDigest::from_bytes([0xab; 32]),
        expires: Timestamp::from_millis(0x0102),
        attempts_left: 2,
        kind: portvakt_core::state::ChallengeKind::Code,
    };
    let mut bytes = Vec::new();
    record.encode(&mut bytes);
    let mut want = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2, 1];
    want.extend_from_slice(&[0xab; 32]);
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2, 2]);
    assert_eq!(
        bytes, want,
        "format, known user 7, method 2, password reset, digest, expiry, two tries"
    );
    let back = ChallengeRecord::decode(&bytes).unwrap();
    let mut again = Vec::new();
    back.encode(&mut again);
    assert_eq!(again, bytes);
    // A purpose or a subject kind that does not exist, or a user id past 32 bits: refused.
    for (at, value) in [(14, 3), (1, 2), (5, 1)] {
        let mut bad = bytes.clone();
        bad[at] = value;
        assert!(
            ChallengeRecord::decode(&bad).is_err(),
            "byte {at} = {value}"
        );
    }

    // The rules: someone else's or an expired challenge is gone and stays; a wrong code
    // uses a try, the last try spends it; a right one spends it.
    let now = Timestamp::from_millis(0x0100);
    let right = SecretDigest::from_bytes([0xab; 32]);
    let wrong = SecretDigest::from_bytes([0xac; 32]);
    let mut slot = Some(back);
    let other = Subject::Known(UserId(8));
    assert_eq!(
        ChallengeRecord::redeem(&mut slot, other, &right, now),
        Redeem::Gone
    );
    let late = Timestamp::from_millis(0x0102);
    assert_eq!(
        ChallengeRecord::redeem(&mut slot, record.subject, &right, late),
        Redeem::Gone
    );
    assert!(slot.is_some(), "looking does not spend");
    assert_eq!(
        ChallengeRecord::redeem(&mut slot, record.subject, &wrong, now),
        Redeem::Wrong { spent: false }
    );
    assert_eq!(
        ChallengeRecord::redeem(&mut slot, record.subject, &right, now),
        Redeem::Redeemed {
            method: MethodId(2),
            purpose: Purpose::PasswordReset
        }
    );
    assert!(slot.is_none(), "a right code spends it");
    let mut slot = Some(record);
    for spent in [false, true] {
        assert_eq!(
            ChallengeRecord::redeem(&mut slot, record.subject, &wrong, now),
            Redeem::Wrong { spent }
        );
    }
    assert_eq!(
        ChallengeRecord::redeem(&mut slot, record.subject, &right, now),
        Redeem::Gone
    );
}

/// Hears every change a store makes, in order.
#[derive(Clone, Default)]
struct Heard(std::sync::Arc<std::sync::Mutex<Vec<Change>>>);

/// A record's key and its new bytes.
type Change = (RecordKey, Vec<u8>);

impl Journal for Heard {
    fn changed(&self, key: RecordKey, record: &[u8]) {
        self.0.lock().unwrap().push((key, record.to_vec()));
    }
}

fn dump(store: &MemoryStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    store.for_each_record(|k, r| {
        let mut key = Vec::new();
        k.encode(&mut key);
        assert_eq!(RecordKey::decode(&key), Ok(k), "a key reads back");
        out.push((key, r.to_vec()));
    });
    out.sort();
    out
}

#[test]
fn the_journal_hears_every_change_and_rebuilds_the_store() {
    use crate::common::*;
    let e = kommune();
    let heard = Heard::default();
    assert!(e.store().set_journal(Box::new(heard.clone())).is_ok());
    assert!(
        e.store().set_journal(Box::new(Heard::default())).is_err(),
        "set once"
    );
    let (_, key) = user_with_app(&e, "kari", &[]);
    // Codes, a replay, wrong codes up to a lock, an unknown name, a sent code.
    let now = at(T0 + 60);
    let right = code(&key, now.as_secs());
    for c in [right.as_str(), right.as_str()] {
        e.decide(&req("kari", HOME, Some(Proof::Totp(c))), now);
    }
    for i in 0..12 {
        let wrong = format!("{:06}", (i * 7919) % 1_000_000);
        e.decide(&req("kari", HOME, Some(Proof::Totp(&wrong))), now);
        e.decide(&req("nobody", HOME, Some(Proof::Totp(&wrong))), now);
    }
    // An office sign-in with nothing to forgive changes no record: nothing is heard.
    let before = heard.0.lock().unwrap().len();
    let d = e.decide(&req("kari", OFFICE, None), now);
    assert_eq!(d.outcome, portvakt_core::Outcome::Allow);
    assert_eq!(heard.0.lock().unwrap().len(), before);

    // Replaying what was heard, in order, gives the same records; so does a dump.
    let rebuilt = MemoryStore::default();
    for (k, r) in heard.0.lock().unwrap().iter() {
        rebuilt.restore(*k, r, now).unwrap();
    }
    let original = dump(e.store());
    assert!(original.len() >= 3, "{original:?}");
    assert_eq!(dump(&rebuilt), original);
    let again = MemoryStore::default();
    for (k, r) in &original {
        again
            .restore(RecordKey::decode(k).unwrap(), r, now)
            .unwrap();
    }
    assert_eq!(dump(&again), original);
    // And the rebuilt store answers as the original: the lock and the spent code hold.
    let check = |s: &MemoryStore| {
        let subject = e.user_info("kommune", "kari").unwrap().id;
        s.read_subject(portvakt_core::Subject::Known(subject), |u| {
            u.map(|u| u.any_locked(now))
        })
        .unwrap()
    };
    assert_eq!(check(&rebuilt), Some(true));
    assert_eq!(check(e.store()), Some(true));
    // A damaged record is refused, not guessed at.
    let (k, mut r) = original[0].clone();
    r.push(0);
    assert!(
        rebuilt
            .restore(RecordKey::decode(&k).unwrap(), &r, now)
            .is_err()
    );
}

#[test]
fn a_change_that_changes_nothing_is_not_heard() {
    let store = MemoryStore::default();
    let heard = Heard::default();
    store.set_journal(Box::new(heard.clone())).ok().unwrap();
    let now = Timestamp::from_secs(1_800_000_000);
    let s = portvakt_core::Subject::Known(UserId(4));
    store.raise_otp(s, MethodId(1), 5).unwrap();
    store.raise_otp(s, MethodId(1), 3).unwrap();
    store.unlock(s).unwrap();
    let rate = Rate {
        max: 1,
        per: Duration::from_secs(60),
    };
    store.reserve_source(9, now, rate).unwrap().unwrap();
    store.reserve_source(9, now, rate).unwrap().unwrap_err();
    let heard = heard.0.lock().unwrap().clone();
    let kinds: Vec<RecordKey> = heard.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            RecordKey::Subject(s),
            RecordKey::Counter(portvakt_core::state::CounterKey::Source(9))
        ],
        "only the first raise and the first reservation changed anything"
    );
}
