//! The subject record a backend stores: any state the rules can reach is written and read
//! back unchanged, and goes on to answer exactly as the original does; a fixed record has
//! fixed bytes; and bytes that are not a record are an error, never a panic.

use portvakt_core::id::MethodId;
use portvakt_core::lockout::{Domain, Factor, LockoutConfig};
use portvakt_core::policy::PhoneSettings;
use portvakt_core::state::{Effect, UserState};
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
