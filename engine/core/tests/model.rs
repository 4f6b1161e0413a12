//! The store's replay and lockout behaviour against a simple model, by property test.

use portvakt_core::lockout::{Domain, Factor, LockoutConfig};
use portvakt_core::state::{Answer, Effect, MemoryStore, StateStore};
use portvakt_core::{Duration, MethodId, Subject, Timestamp, UserId};
use proptest::prelude::*;

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

proptest! {
    /// Replay: a value is accepted only if it is above every value accepted before for that
    /// method, and never while locked. Lockout: once locked, nothing is accepted or counted
    /// until the wait ends.
    #[test]
    fn replay_and_lock_follow_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        let store = MemoryStore::default();
        let cfg = LockoutConfig { threshold: 4, base_wait: Duration::from_secs(60), ..LockoutConfig::default() };
        let domain = Domain { factor: Factor::Second, familiar: false };
        let subject = Subject::Known(UserId(1));
        let mut now = Timestamp::from_secs(1_000_000);
        let mut next = [0u64; 3];
        let mut locked_until = Timestamp::EPOCH;
        for op in ops {
            match op {
                Op::Wait { secs } => now = now + Duration::from_secs(secs),
                Op::Otp { method, value } => {
                    let a = store.sign_in(subject, domain, Effect::Otp { method: MethodId(method), value, offset: 0, fingerprint: 0 }, now, &cfg).unwrap();
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
                    let a = store.sign_in(subject, domain, Effect::Fail { fingerprint }, now, &cfg).unwrap();
                    if now < locked_until {
                        prop_assert!(matches!(a, Answer::Locked { .. }), "{a:?}");
                    }
                }
            }
            // Learn the lock from the store's own check, then hold it to it.
            if let Answer::Locked { until } = store.sign_in(subject, domain, Effect::Check, now, &cfg).unwrap() {
                prop_assert!(until > now);
                prop_assert!(until <= now + cfg.max_wait);
                locked_until = until;
            } else {
                prop_assert!(now >= locked_until);
            }
            for (m, n) in next.iter().enumerate() {
                prop_assert_eq!(store.otp_state(subject, MethodId(m as u32)).unwrap().next, *n);
            }
        }
    }
}
