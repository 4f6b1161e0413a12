//! Loom models of the store's per-key atomic operations. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p portvakt-core --test loom --release`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;

use portvakt_core::lockout::{Domain, Factor, Failure, LockoutConfig};
use portvakt_core::state::{Answer, Effect, MemoryStore, StateOps, StoreLimits};
use portvakt_core::window::Rate;
use portvakt_core::{Duration, MethodId, Subject, Timestamp, UserId};

const DOMAIN: Domain = Domain {
    factor: Factor::Second,
    familiar: false,
};

fn store() -> Arc<MemoryStore> {
    let small = StoreLimits {
        unknown_subjects: 64,
        sources: 64,
        numbers: 64,
        challenges: 64,
    };
    Arc::new(MemoryStore::new(small))
}

#[test]
fn two_threads_same_step_exactly_one_accepted() {
    loom::model(|| {
        let s = store();
        let cfg = LockoutConfig::default();
        let effect = Effect::Otp {
            method: MethodId(1),
            value: 55,
            offset: 0,
            fingerprint: 9,
        };
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || {
                    s.sign_in(
                        Subject::Known(UserId(1)),
                        DOMAIN,
                        effect,
                        Timestamp::from_secs(100),
                        &cfg,
                    )
                })
            })
            .collect();
        let answers: Vec<Answer> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        assert_eq!(
            answers.iter().filter(|a| **a == Answer::Accepted).count(),
            1,
            "{answers:?}"
        );
        assert!(answers.iter().any(|a| matches!(a, Answer::Replayed(_))));
        assert_eq!(
            s.otp_state(Subject::Known(UserId(1)), MethodId(1))
                .unwrap()
                .next,
            56
        );
    });
}

#[test]
fn two_failures_at_threshold_two_lock_exactly_once() {
    loom::model(|| {
        let s = store();
        let cfg = LockoutConfig {
            threshold: 2,
            ..LockoutConfig::default()
        };
        let handles: Vec<_> = (1..=2u32)
            .map(|fp| {
                let s = s.clone();
                thread::spawn(move || {
                    s.sign_in(
                        Subject::Unknown(7),
                        DOMAIN,
                        Effect::Fail { fingerprint: fp },
                        Timestamp::from_secs(100),
                        &cfg,
                    )
                })
            })
            .collect();
        let answers: Vec<Answer> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        let locked_now = answers
            .iter()
            .filter(|a| matches!(a, Answer::Failed(Failure::LockedNow { .. })))
            .count();
        let counted = answers
            .iter()
            .filter(|a| matches!(a, Answer::Failed(Failure::Counted { remaining: 1 })))
            .count();
        assert_eq!((locked_now, counted), (1, 1), "{answers:?}");
    });
}

#[test]
fn a_source_reservation_is_never_overshot() {
    loom::model(|| {
        let s = store();
        let rate = Rate {
            max: 1,
            per: Duration::from_secs(60),
        };
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || {
                    s.reserve_source(42, Timestamp::from_secs(100), rate)
                        .unwrap()
                        .is_ok()
                })
            })
            .collect();
        let granted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(granted, 1);
    });
}
