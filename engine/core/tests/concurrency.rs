//! Many threads at once: exactly-once acceptance and exact failure counts.
//!
//! Each round releases all threads together through a barrier so the requests really do
//! race. The assertions are exact, never timing-based.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;

use common::*;
use portvakt_core::{Outcome, Proof, Purpose, Reason, SendRequest};

const THREADS: usize = 8;

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

#[test]
fn the_same_valid_code_from_many_threads_is_allowed_exactly_once() {
    let e = Arc::new(kommune());
    for round in 0..100u64 {
        let name = format!("user{round}");
        let (_, key) = user_with_app(&e, &name, &[]);
        let t = T0 + round * 30;
        let c = code(&key, t);
        let (e2, n2) = (e.clone(), name.clone());
        let outcomes = race(move |_| e2.decide(&req(&n2, HOME, Some(Proof::Totp(&c))), at(t)));
        let allowed = outcomes
            .iter()
            .filter(|d| d.outcome == Outcome::Allow)
            .count();
        assert_eq!(allowed, 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .filter(|d| d.outcome != Outcome::Allow)
                .all(|d| d.reason == Reason::ReplayedCode)
        );
    }
}

#[test]
fn parallel_wrong_guesses_are_counted_exactly() {
    let e = Arc::new(kommune());
    for round in 0..30u64 {
        let name = format!("victim{round}");
        user_with_app(&e, &name, &[]);
        let (e2, n2) = (e.clone(), name.clone());
        // Eight threads, eight distinct wrong codes each: 64 guesses against a threshold of 10.
        let results = race(move |i| {
            (0..8)
                .map(|j| {
                    let wrong = format!("{:06}", 100_000 + i * 8 + j);
                    e2.decide(
                        &req(&n2, HOME, Some(Proof::Totp(&wrong))),
                        at(T0 + round * 10_000),
                    )
                })
                .collect::<Vec<_>>()
        });
        let all: Vec<_> = results.into_iter().flatten().collect();
        let invalid = all
            .iter()
            .filter(|d| d.reason == Reason::InvalidCode)
            .count();
        let locked = all.iter().filter(|d| d.outcome == Outcome::Locked).count();
        assert_eq!(
            invalid, 9,
            "round {round}: nine counted failures answer invalid_code"
        );
        assert_eq!(
            locked,
            64 - 9,
            "the tenth locks, and every later guess is refused unevaluated"
        );
    }
}

#[test]
fn parallel_spraying_from_one_address_stops_at_the_limit() {
    let text = KOMMUNE.replace(
        "max = 100              # one address",
        "max = 20 # one address",
    );
    let e = Arc::new(engine_with(&text));
    for u in 0..64 {
        user_with_app(&e, &format!("s{u}"), &[]);
    }
    let e2 = e.clone();
    let results = race(move |i| {
        (0..8)
            .map(|j| {
                e2.decide(
                    &req(
                        &format!("s{}", i * 8 + j),
                        HOME,
                        Some(Proof::Totp("424242")),
                    ),
                    at(T0),
                )
            })
            .collect::<Vec<_>>()
    });
    let all: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(
        all.iter()
            .filter(|d| d.reason == Reason::InvalidCode)
            .count(),
        20
    );
    assert_eq!(
        all.iter()
            .filter(|d| d.reason == Reason::SourceLimited)
            .count(),
        44
    );
}

#[test]
fn a_sent_code_is_redeemed_exactly_once_under_contention() {
    let e = Arc::new(kommune());
    for round in 0..50u64 {
        let name = format!("sms{round}");
        user_with_app(&e, &name, &[]);
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
        let (e2, n2) = (e.clone(), name.clone());
        let outcomes = race(move |_| {
            e2.decide(
                &req(
                    &n2,
                    HOME,
                    Some(Proof::Sent {
                        challenge: &id,
                        code: &c,
                    }),
                ),
                at(t),
            )
        });
        assert_eq!(
            outcomes
                .iter()
                .filter(|d| d.outcome == Outcome::Allow)
                .count(),
            1,
            "round {round}"
        );
    }
}
