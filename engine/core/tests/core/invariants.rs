//! Random sequences of sign-in attempts against the whole engine, with the security
//! invariants checked after every decision:
//! - a code's step is accepted at most once, and accepted steps only move forward;
//! - no step further from the clock than the window plus the drift bound is accepted;
//! - nothing is allowed while the engine answers locked for the same user and side.

use crate::common;

use common::*;
use portvakt_core::{Outcome, Proof, Reason};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// A right code for step `now + offset`.
    Right { offset: i64 },
    /// A wrong code.
    Wrong { n: u32 },
    /// Time passes.
    Wait { secs: u64 },
    /// An administrator unlocks.
    Unlock,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (-5i64..=5).prop_map(|offset| Op::Right { offset }),
        3 => (0u32..6).prop_map(|n| Op::Wrong { n }),
        3 => (0u64..200).prop_map(|secs| Op::Wait { secs }),
        1 => Just(Op::Unlock),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn replay_bound_and_lock_invariants_hold(ops in proptest::collection::vec(op(), 1..120)) {
        let e = kommune();
        let (_, key) = user_with_app(&e, "kari", &[]);
        let mut now = T0;
        let mut accepted: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                Op::Wait { secs } => now += secs,
                Op::Unlock => e.unlock("kommune", "kari").unwrap(),
                Op::Wrong { n } => {
                    let wrong = format!("{:06}", (key.hotp(now / 30, portvakt_core::otp::Digits::SIX) + 1 + n) % 1_000_000);
                    let d = e.decide(&req("kari", HOME, Some(Proof::Totp(&wrong))), at(now));
                    // A wrong code may collide with a neighbouring step's code; that case is
                    // then a right code and is checked like one below only if allowed.
                    if d.outcome == Outcome::Allow {
                        prop_assert_eq!(d.reason, Reason::SecondFactorVerified);
                    } else {
                        prop_assert!(matches!(d.outcome, Outcome::Deny | Outcome::Locked), "{:?}", d);
                    }
                }
                Op::Right { offset } => {
                    let step = (now / 30) as i64 + offset;
                    let code = format!("{:06}", key.hotp(step as u64, portvakt_core::otp::Digits::SIX));
                    // Was the user locked just before? Ask without a proof (a check only).
                    let before = e.decide(&req("kari", HOME, None), at(now));
                    let d = e.decide(&req("kari", HOME, Some(Proof::Totp(&code))), at(now));
                    if before.outcome == Outcome::Locked {
                        prop_assert_eq!(d.outcome, Outcome::Locked, "a lock in force allows nothing");
                    }
                    if d.outcome == Outcome::Allow {
                        prop_assert!(offset.abs() <= 3, "step {} from the clock accepted", offset);
                        prop_assert!(accepted.last().is_none_or(|&last| (step as u64) > last),
                            "step {} accepted after {:?}", step, accepted.last());
                        accepted.push(step as u64);
                    } else if accepted.contains(&(step as u64)) {
                        // A spent step is refused: as replayed inside the window, as invalid
                        // outside it, or unevaluated under a lock.
                        prop_assert!(
                            matches!(d.reason, Reason::ReplayedCode | Reason::InvalidCode | Reason::TooManyFailures),
                            "{:?}", d
                        );
                    }
                }
            }
        }
    }
}
