//! The municipality's scenarios and the mission's behaviours, end to end through the core.

use crate::common;

use common::*;
use portvakt_core::admin::TotpSpec;
use portvakt_core::directory::{DirectoryError, MethodKind};
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::{
    Duration, FirstFactor, MethodId, Outcome, Proof, Purpose, Reason, SendRequest, config,
};

#[test]
fn office_network_needs_no_second_factor() {
    let e = kommune();
    user_with_app(&e, "kari", &[]);
    let d = e.decide(&req("kari", OFFICE, None), at(T0));
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.reason, Reason::SingleFactorAllowed);
    assert_eq!(d.rule.as_str(), "municipal-network-single-factor");
    assert_eq!(d.location.as_str(), "municipal-network");
    // IPv6 and IPv4-mapped addresses of the same network count too.
    assert_eq!(
        e.decide(&req("kari", "2001:db8:20::7", None), at(T0))
            .outcome,
        Outcome::Allow
    );
    assert_eq!(
        e.decide(&req("kari", "::ffff:10.20.9.9", None), at(T0))
            .outcome,
        Outcome::Allow
    );
}

#[test]
fn home_needs_a_code_and_a_code_is_used_once() {
    let e = kommune();
    let (app, key) = user_with_app(&e, "kari", &[]);
    let d = e.decide(&req("kari", HOME, None), at(T0));
    assert_eq!(d.outcome, Outcome::Challenge);
    assert_eq!(d.reason, Reason::SecondFactorRequired);
    assert_eq!(d.rule.as_str(), "elsewhere-second-factor");
    assert_eq!(d.location.as_str(), "elsewhere");
    assert_eq!(
        d.methods.first().map(|m| (m.id, m.kind)),
        Some((app, MethodKind::AuthenticatorApp))
    );
    assert_eq!(d.methods.len(), 2, "app and phone");
    assert_eq!(d.methods[1].hint.as_deref(), Some("•••• 78"));

    let c = code(&key, T0);
    let d = e.decide(&req("kari", HOME, Some(Proof::Totp(&c))), at(T0));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Allow, Reason::SecondFactorVerified)
    );
    assert_eq!(d.method, Some(MethodKind::AuthenticatorApp));
    // The same code again, even a second later in the same step: refused.
    let d = e.decide(&req("kari", HOME, Some(Proof::Totp(&c))), at(T0 + 1));
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::ReplayedCode));
    // An older, never used code in the window is refused too: steps only move forward.
    let older = code(&key, T0 - 30);
    let d = e.decide(&req("kari", HOME, Some(Proof::Totp(&older))), at(T0 + 2));
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::ReplayedCode));
    // The next step's code is fine.
    let next = code(&key, T0 + 30);
    assert_eq!(
        e.decide(&req("kari", HOME, Some(Proof::Totp(&next))), at(T0 + 30))
            .outcome,
        Outcome::Allow
    );
}

#[test]
fn the_doctors_office_always_uses_the_second_factor() {
    let e = kommune();
    let (_, key) = user_with_app(&e, "lege", &["legekontor"]);
    let d = e.decide(&req("lege", OFFICE, None), at(T0));
    assert_eq!(d.outcome, Outcome::Challenge);
    assert_eq!(d.rule.as_str(), "doctors-office-always-second-factor");
    assert_eq!(d.location.as_str(), "municipal-network");
    // Remembering the device is refused for this rule...
    let c = code(&key, T0);
    let mut r = req("lege", OFFICE, Some(Proof::Totp(&c)));
    r.remember_device = true;
    let d = e.decide(&r, at(T0));
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d.device_token.is_none());
}

#[test]
fn remembered_devices_skip_the_second_factor_until_expiry_or_revocation() {
    let e = kommune();
    let (_, key) = user_with_app(&e, "kari", &[]);
    let c = code(&key, T0);
    let mut r = req("kari", HOME, Some(Proof::Totp(&c)));
    r.remember_device = true;
    let token = e.decide(&r, at(T0)).device_token.expect("a token");
    assert_eq!(token.expires, at(T0 + 14 * 86_400));
    assert!(!format!("{token:?}").contains(token.token.expose()));

    let mut r = req("kari", HOME, None);
    r.device_token = Some(token.token.expose());
    let d = e.decide(&r, at(T0 + 60));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Allow, Reason::TrustedDevice)
    );
    // A tampered token is ignored, not an error.
    let mut bad = token.token.expose().to_owned();
    bad.replace_range(10..11, if &bad[10..11] == "A" { "B" } else { "A" });
    r.device_token = Some(&bad);
    assert_eq!(e.decide(&r, at(T0 + 60)).outcome, Outcome::Challenge);
    // Expired.
    r.device_token = Some(token.token.expose());
    assert_eq!(
        e.decide(&r, at(T0 + 14 * 86_400)).outcome,
        Outcome::Challenge
    );
    // Revoked.
    assert_eq!(e.decide(&r, at(T0 + 120)).outcome, Outcome::Allow);
    e.revoke_devices("kommune", "kari", None).unwrap();
    assert_eq!(e.decide(&r, at(T0 + 121)).outcome, Outcome::Challenge);
    // Another user's token is worthless.
    user_with_app(&e, "ola", &[]);
    let mut r2 = req("ola", HOME, None);
    r2.device_token = Some(token.token.expose());
    assert_eq!(e.decide(&r2, at(T0 + 122)).outcome, Outcome::Challenge);
}

#[test]
fn registration_is_required_before_sign_in() {
    let e = kommune();
    e.add_user("kommune", "ny", &[], false).unwrap();
    let d = e.decide(&req("ny", OFFICE, None), at(T0));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Register, Reason::NoMethods)
    );
    // One method of the two the municipality requires.
    let secret = secret_for("ny");
    e.import_totp("kommune", "ny", &secret, TotpSpec::default(), true)
        .unwrap();
    let d = e.decide(&req("ny", HOME, None), at(T0));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Register, Reason::MoreMethodsRequired)
    );
    add_active_phone(&e, "kommune", "ny");
    assert_eq!(
        e.decide(&req("ny", HOME, None), at(T0)).outcome,
        Outcome::Challenge
    );
}

#[test]
fn enrolment_activates_only_after_the_first_code_and_spends_it() {
    let e = kommune();
    e.add_user("kommune", "per", &[], false).unwrap();
    add_active_phone(&e, "kommune", "per");
    let enrol = e
        .enroll_totp("kommune", "per", TotpSpec::default())
        .unwrap();
    assert!(
        enrol
            .uri
            .expose()
            .starts_with("otpauth://totp/kommune:per?secret=")
    );
    assert!(!format!("{enrol:?}").contains(enrol.secret_base32.expose()));
    let secret = data_encoding::BASE32_NOPAD
        .decode(enrol.secret_base32.expose().as_bytes())
        .unwrap();
    let key = OtpKey::new(Algorithm::Sha1, &secret);
    // Pending: not offered, so still only one active method of two.
    let d = e.decide(&req("per", HOME, None), at(T0));
    assert_eq!(d.reason, Reason::MoreMethodsRequired);
    let c = code(&key, T0);
    assert_eq!(
        e.confirm_otp("kommune", "per", enrol.method, "000000", at(T0))
            .unwrap_err(),
        DirectoryError::WrongCode
    );
    e.confirm_otp("kommune", "per", enrol.method, &c, at(T0))
        .unwrap();
    assert_eq!(
        e.confirm_otp("kommune", "per", enrol.method, &c, at(T0))
            .unwrap_err(),
        DirectoryError::AlreadyActive
    );
    // The enrolment code cannot be replayed to sign in.
    let d = e.decide(&req("per", HOME, Some(Proof::Totp(&c))), at(T0 + 1));
    assert_eq!(d.reason, Reason::ReplayedCode);
}

#[test]
fn at_most_five_authenticator_apps_or_tokens() {
    let e = kommune();
    e.add_user("kommune", "many", &[], false).unwrap();
    for i in 0..3 {
        e.enroll_totp("kommune", "many", TotpSpec::default())
            .unwrap_or_else(|err| panic!("app {i}: {err}"));
    }
    for i in 0..2 {
        e.add_hotp(
            "kommune",
            "many",
            &secret_for(&format!("tok{i}")),
            Digits::SIX,
            0,
        )
        .unwrap();
    }
    let err = e
        .enroll_totp("kommune", "many", TotpSpec::default())
        .unwrap_err();
    assert_eq!(err, DirectoryError::TooManyOtpDevices);
    assert_eq!(
        err.to_string(),
        "a user may register at most 5 authenticator apps or hardware tokens"
    );
    // Other kinds are still fine.
    e.add_phone("kommune", "many", MethodKind::Voice, "+4798765432")
        .unwrap();
}

#[test]
fn a_secret_is_registered_once_per_kind() {
    // Two apps with one secret would make the same codes under two replay watermarks: a
    // code spent on one could be spent again on the other.
    let e = kommune();
    e.add_user("kommune", "twice", &[], false).unwrap();
    let secret = secret_for("twice");
    e.import_totp("kommune", "twice", &secret, TotpSpec::default(), true)
        .unwrap();
    for spec in [
        TotpSpec::default(),
        TotpSpec {
            period: 60,
            ..TotpSpec::default()
        },
    ] {
        assert_eq!(
            e.import_totp("kommune", "twice", &secret, spec, true),
            Err(DirectoryError::DuplicateSecret)
        );
    }
    // Another secret, and the same one under another hash, are other keys.
    e.import_totp(
        "kommune",
        "twice",
        &secret_for("other"),
        TotpSpec::default(),
        true,
    )
    .unwrap();
    e.import_totp(
        "kommune",
        "twice",
        &secret,
        TotpSpec {
            algorithm: Algorithm::Sha256,
            ..TotpSpec::default()
        },
        true,
    )
    .unwrap();
    // A hardware token counts steps of its own, not time: the same secret there is allowed
    // once, and only once.
    e.add_hotp("kommune", "twice", &secret, Digits::SIX, 0)
        .unwrap();
    assert_eq!(
        e.add_hotp("kommune", "twice", &secret, Digits::EIGHT, 0),
        Err(DirectoryError::DuplicateSecret)
    );
    // Another user may have the same secret (an import of shared tokens is the
    // organisation's choice, and each user's codes are replay-checked on their own).
    e.add_user("kommune", "other", &[], false).unwrap();
    e.import_totp("kommune", "other", &secret, TotpSpec::default(), true)
        .unwrap();
}

#[test]
fn lockout_grows_and_a_right_code_while_locked_is_still_locked() {
    let e = kommune();
    let (_, key) = user_with_app(&e, "kari", &[]);
    let mut t = T0;
    for i in 0..9 {
        let wrong = format!("{:06}", 100_000 + i);
        let d = e.decide(&req("kari", HOME, Some(Proof::Totp(&wrong))), at(t));
        assert_eq!(d.reason, Reason::InvalidCode, "failure {i}");
        t += 1;
    }
    let d = e.decide(&req("kari", HOME, Some(Proof::Totp("999999"))), at(t));
    assert_eq!(
        (d.outcome, d.reason, d.retry_after),
        (
            Outcome::Locked,
            Reason::TooManyFailures,
            Some(Duration::from_secs(60))
        )
    );
    let right = code(&key, t + 5);
    let d = e.decide(&req("kari", HOME, Some(Proof::Totp(&right))), at(t + 5));
    assert_eq!(
        d.outcome,
        Outcome::Locked,
        "a right code while locked answers locked"
    );
    assert_eq!(d.retry_after, Some(Duration::from_secs(55)));
    // A challenge request is locked too.
    assert_eq!(
        e.decide(&req("kari", HOME, None), at(t + 6)).outcome,
        Outcome::Locked
    );
    // The store counts her as locked out (the metric of active lockouts) until the wait
    // is over; an unknown name locked by guessing counts too.
    use portvakt_core::state::StateStore;
    assert_eq!(e.store().locked_subjects(at(t + 6)).unwrap(), 1);
    for i in 0..10 {
        let wrong = format!("{:06}", 300_000 + i);
        e.decide(&req("nobody", HOME, Some(Proof::Totp(&wrong))), at(t + 6));
    }
    assert_eq!(e.store().locked_subjects(at(t + 6)).unwrap(), 2);
    assert_eq!(e.store().locked_subjects(at(t + 60 + 7)).unwrap(), 0);
    // After the wait, the right code works (it was never accepted, so not replayed).
    let t2 = t + 60;
    let right = code(&key, t2);
    assert_eq!(
        e.decide(&req("kari", HOME, Some(Proof::Totp(&right))), at(t2))
            .outcome,
        Outcome::Allow
    );

    // A new streak after a lock that ended: the next lock waits twice as long, unless a
    // success reset it. Here the success reset it, so the next lock waits 60 s again.
    let mut t3 = t2 + 31;
    for i in 0..10 {
        let d = e.decide(
            &req(
                "kari",
                HOME,
                Some(Proof::Totp(&format!("{:06}", 200_000 + i))),
            ),
            at(t3),
        );
        t3 += 1;
        if i == 9 {
            assert_eq!(d.retry_after, Some(Duration::from_secs(60)));
        }
    }
    // Without a success in between, the second lock doubles.
    let t4 = t3 + 60;
    for i in 0..10 {
        let d = e.decide(
            &req(
                "kari",
                HOME,
                Some(Proof::Totp(&format!("{:06}", 300_000 + i))),
            ),
            at(t4 + i),
        );
        if i == 9 {
            assert_eq!(
                (d.outcome, d.retry_after),
                (Outcome::Locked, Some(Duration::from_secs(120)))
            );
        }
    }
}

#[test]
fn an_attacker_abroad_cannot_lock_out_the_office() {
    let e = kommune();
    user_with_app(&e, "kari", &[]);
    for i in 0..10 {
        e.decide(
            &req(
                "kari",
                HOME,
                Some(Proof::Totp(&format!("{:06}", 100_000 + i))),
            ),
            at(T0 + i),
        );
    }
    assert_eq!(
        e.decide(&req("kari", HOME, None), at(T0 + 11)).outcome,
        Outcome::Locked
    );
    let d = e.decide(&req("kari", OFFICE, None), at(T0 + 11));
    assert_eq!(
        d.outcome,
        Outcome::Allow,
        "familiar failures are counted apart"
    );
    // Failed passwords abroad lock the unfamiliar side only, too.
    let e = kommune();
    user_with_app(&e, "ola", &[]);
    for i in 0..10 {
        let mut r = req("ola", HOME, None);
        r.first_factor = FirstFactor::Failed;
        let d = e.decide(&r, at(T0 + i));
        assert_eq!(
            d.outcome,
            if i < 9 {
                Outcome::Deny
            } else {
                Outcome::Locked
            }
        );
    }
    assert_eq!(
        e.decide(&req("ola", OFFICE, None), at(T0 + 11)).outcome,
        Outcome::Allow
    );
    assert_eq!(
        e.decide(&req("ola", HOME, None), at(T0 + 11)).outcome,
        Outcome::Locked
    );
}

#[test]
fn a_second_factor_forgives_bad_passwords() {
    let e = kommune();
    let (_, key) = user_with_app(&e, "kari", &[]);
    let failed = |t| {
        let mut r = req("kari", HOME, None);
        r.first_factor = FirstFactor::Failed;
        e.decide(&r, at(t)).outcome
    };
    for i in 0..9 {
        assert_eq!(failed(T0 + i), Outcome::Deny);
    }
    let c = code(&key, T0 + 10);
    assert_eq!(
        e.decide(&req("kari", HOME, Some(Proof::Totp(&c))), at(T0 + 10))
            .outcome,
        Outcome::Allow
    );
    // Nine more bad passwords do not lock: the count started over.
    for i in 0..9 {
        assert_eq!(
            failed(T0 + 20 + i),
            Outcome::Deny,
            "bad password {i} after the reset"
        );
    }
    assert_eq!(failed(T0 + 30), Outcome::Locked);
}

#[test]
fn the_same_wrong_code_counts_once_and_malformed_codes_not_at_all() {
    let e = kommune();
    user_with_app(&e, "kari", &[]);
    for i in 0..30 {
        let d = e.decide(&req("kari", HOME, Some(Proof::Totp("123456"))), at(T0 + i));
        assert_eq!(d.reason, Reason::InvalidCode);
    }
    for (i, bad) in ["12345", "abcdef", "١٢٣٤٥٦", "123456789", ""]
        .iter()
        .enumerate()
    {
        let d = e.decide(
            &req("kari", HOME, Some(Proof::Totp(bad))),
            at(T0 + 40 + i as u64),
        );
        assert_eq!(d.reason, Reason::MalformedProof, "{bad:?}");
    }
    // Eight different wrong codes lock it (1 + 9 = 10).
    for i in 0..9 {
        let d = e.decide(
            &req(
                "kari",
                HOME,
                Some(Proof::Totp(&format!("{:06}", 500_000 + i))),
            ),
            at(T0 + 50 + i),
        );
        assert_eq!(
            d.outcome,
            if i < 8 {
                Outcome::Deny
            } else {
                Outcome::Locked
            },
            "attempt {i}"
        );
    }
}

#[test]
fn administrators_unlock() {
    let e = kommune();
    let (_, key) = user_with_app(&e, "kari", &[]);
    for i in 0..10 {
        e.decide(
            &req(
                "kari",
                HOME,
                Some(Proof::Totp(&format!("{:06}", 100_000 + i))),
            ),
            at(T0 + i),
        );
    }
    assert_eq!(
        e.decide(&req("kari", HOME, None), at(T0 + 11)).outcome,
        Outcome::Locked
    );
    e.unlock("kommune", "kari").unwrap();
    let c = code(&key, T0 + 12);
    assert_eq!(
        e.decide(&req("kari", HOME, Some(Proof::Totp(&c))), at(T0 + 12))
            .outcome,
        Outcome::Allow
    );
    assert_eq!(
        e.unlock("kommune", "nobody"),
        Err(DirectoryError::UnknownUser)
    );
}

#[test]
fn an_unknown_user_looks_exactly_like_a_wrong_code() {
    let e = kommune();
    user_with_app(&e, "kari", &[]);
    for i in 0..12 {
        let wrong = format!("{:06}", 700_000 + i);
        let known = e.decide(&req("kari", HOME, Some(Proof::Totp(&wrong))), at(T0 + i));
        let unknown = e.decide(&req("nobody", HOME, Some(Proof::Totp(&wrong))), at(T0 + i));
        assert_eq!(visible(&known), visible(&unknown), "attempt {i}");
        let mut failed = req("kari", HOME, None);
        failed.first_factor = FirstFactor::Failed;
        let mut failed_unknown = failed;
        failed_unknown.user = "nobody";
        assert_eq!(
            visible(&e.decide(&failed, at(T0 + i))),
            visible(&e.decide(&failed_unknown, at(T0 + i)))
        );
    }
    // Both are locked now, identically.
    let k = e.decide(&req("kari", HOME, Some(Proof::Totp("111111"))), at(T0 + 20));
    let u = e.decide(
        &req("nobody", HOME, Some(Proof::Totp("111111"))),
        at(T0 + 20),
    );
    assert_eq!(k.outcome, Outcome::Locked);
    assert_eq!(visible(&k), visible(&u));
    // Asking for a code to be sent looks the same too.
    let e = kommune();
    user_with_app(&e, "kari", &[]);
    let send = |user| SendRequest {
        tenant: "kommune",
        user,
        ip: HOME.parse().unwrap(),
        purpose: Purpose::SignIn,
        method: None,
    };
    let k = e.send_code(&send("kari"), at(T0));
    let u = e.send_code(&send("nobody"), at(T0));
    assert_eq!(visible(&k.decision), visible(&u.decision));
    assert_eq!(k.decision.method, u.decision.method);
    assert!(k.delivery.is_some() && u.delivery.is_none());
    // A wrong code against each challenge, three times (using up the tries), then once more.
    let (kid, uid) = (k.challenge.unwrap().to_hex(), u.challenge.unwrap().to_hex());
    for i in 0..4 {
        let wrong = format!("{:06}", 900_000 + i);
        let kd = e.decide(
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
        let ud = e.decide(
            &req(
                "nobody",
                HOME,
                Some(Proof::Sent {
                    challenge: &uid,
                    code: &wrong,
                }),
            ),
            at(T0 + 1 + i),
        );
        assert_eq!(visible(&kd), visible(&ud), "sent-code attempt {i}");
    }
    // The send budget runs out alike (kari's phone was proved with one send already, so
    // the unknown name gets one more before both are throttled).
    let mut k_throttled = None;
    let mut u_throttled = None;
    for i in 0..6 {
        let k = e.send_code(&send("kari"), at(T0 + 10 + i));
        let u = e.send_code(&send("nobody"), at(T0 + 10 + i));
        if k.decision.outcome == Outcome::Throttled && k_throttled.is_none() {
            k_throttled = Some(i);
        }
        if u.decision.outcome == Outcome::Throttled && u_throttled.is_none() {
            u_throttled = Some(i);
        }
    }
    assert!(
        k_throttled.is_some() && u_throttled.is_some(),
        "{k_throttled:?} {u_throttled:?}"
    );
    assert!(u_throttled.unwrap() - k_throttled.unwrap() <= 1);
}

#[test]
fn an_unknown_user_with_a_vouched_password_must_register() {
    let e = kommune();
    for ip in [OFFICE, HOME] {
        let d = e.decide(&req("nobody", ip, None), at(T0));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Register, Reason::NoMethods),
            "{ip}"
        );
    }
    // With a proof the phantom answers, like any wrong code.
    let d = e.decide(&req("nobody", HOME, Some(Proof::Totp("123456"))), at(T0));
    assert_eq!(d.reason, Reason::InvalidCode);
}

#[test]
fn one_address_cannot_spray_many_users() {
    let text = KOMMUNE.replace(
        "max = 100              # one address",
        "max = 20 # one address",
    );
    let e = engine_with(&text);
    for u in 0..30 {
        user_with_app(&e, &format!("u{u}"), &[]);
    }
    let mut limited = 0;
    for u in 0..30 {
        let name = format!("u{u}");
        let d = e.decide(&req(&name, HOME, Some(Proof::Totp("424242"))), at(T0 + u));
        if d.reason == Reason::SourceLimited {
            limited += 1;
            assert_eq!(d.outcome, Outcome::Locked);
        }
    }
    assert_eq!(
        limited, 10,
        "exactly the failures past the limit are refused"
    );
    // Another address of the same IPv6 /64 is the same source; another /64 is not.
    let e = engine_with(&text);
    for u in 0..21 {
        user_with_app(&e, &format!("u{u}"), &[]);
    }
    for u in 0..20 {
        let ip = format!("2001:db8:99:1::{u:x}");
        e.decide(
            &req(&format!("u{u}"), &ip, Some(Proof::Totp("424242"))),
            at(T0),
        );
    }
    assert_eq!(
        e.decide(&req("u20", "2001:db8:99:1::ffff", None), at(T0))
            .reason,
        Reason::SourceLimited
    );
    assert_eq!(
        e.decide(&req("u20", "2001:db8:99:2::1", None), at(T0))
            .outcome,
        Outcome::Challenge
    );
    // Successes do not use up the budget, and trusted networks have none.
    assert_eq!(
        e.decide(&req("u20", OFFICE, None), at(T0)).outcome,
        Outcome::Allow
    );
}

#[test]
fn sms_codes_are_single_use_expire_and_are_throttled() {
    let e = kommune();
    let (_, key) = user_with_app(&e, "kari", &[]);
    let send = SendRequest {
        tenant: "kommune",
        user: "kari",
        ip: HOME.parse().unwrap(),
        purpose: Purpose::SignIn,
        method: None,
    };
    // The phone was proved at T0 - 5 with one send; four more fit in the window of five.
    let s = e.send_code(&send, at(T0));
    assert_eq!(
        (s.decision.outcome, s.decision.reason),
        (Outcome::Challenge, Reason::CodeSent)
    );
    let delivery = s.delivery.expect("delivery");
    assert_eq!(delivery.channel, MethodKind::Sms);
    assert_eq!(delivery.destination, phone_for("kari"));
    let id = s.challenge.unwrap().to_hex();
    let proof = Proof::Sent {
        challenge: &id,
        code: delivery.code.expose(),
    };
    let d = e.decide(&req("kari", HOME, Some(proof)), at(T0 + 10));
    assert_eq!(
        (d.outcome, d.method),
        (Outcome::Allow, Some(MethodKind::Sms))
    );
    let d = e.decide(&req("kari", HOME, Some(proof)), at(T0 + 11));
    assert_eq!(d.reason, Reason::ChallengeInvalid, "single use");
    // Expiry.
    let s = e.send_code(&send, at(T0 + 20));
    let id = s.challenge.unwrap().to_hex();
    let c = s.delivery.unwrap().code;
    let d = e.decide(
        &req(
            "kari",
            HOME,
            Some(Proof::Sent {
                challenge: &id,
                code: c.expose(),
            }),
        ),
        at(T0 + 20 + 300),
    );
    assert_eq!(d.reason, Reason::ChallengeInvalid);
    // Two more sends fit; the next is throttled, pointing at the app.
    assert!(e.send_code(&send, at(T0 + 30)).delivery.is_some());
    assert!(e.send_code(&send, at(T0 + 31)).delivery.is_some());
    let s = e.send_code(&send, at(T0 + 32));
    assert_eq!(
        (s.decision.outcome, s.decision.reason),
        (Outcome::Throttled, Reason::SendRateLimited)
    );
    assert!(s.decision.retry_after.unwrap() > Duration::ZERO);
    assert!(s.delivery.is_none());
    // Authenticator codes are not limited by any of that.
    let c = code(&key, T0 + 40);
    assert_eq!(
        e.decide(&req("kari", HOME, Some(Proof::Totp(&c))), at(T0 + 40))
            .outcome,
        Outcome::Allow
    );
}

#[test]
fn failed_phone_codes_block_phone_methods_but_not_the_app() {
    let e = kommune();
    let (_, key) = user_with_app(&e, "kari", &[]);
    let send = SendRequest {
        tenant: "kommune",
        user: "kari",
        ip: OFFICE.parse().unwrap(),
        purpose: Purpose::SignIn,
        method: None,
    };
    let mut last = None;
    let mut t = T0;
    for i in 0..5 {
        // Each challenge allows three tries; spend one wrong try on each.
        let s = e.send_code(&send, at(t));
        let id = s.challenge.unwrap().to_hex();
        let wrong = format!("{:06}", 10 + i);
        let mut r = req(
            "kari",
            HOME,
            Some(Proof::Sent {
                challenge: &id,
                code: &wrong,
            }),
        );
        r.ip = HOME.parse().unwrap();
        last = Some(e.decide(&r, at(t + 1)));
        t += 400;
    }
    let d = last.unwrap();
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Throttled, Reason::PhoneBlocked)
    );
    let s = e.send_code(&send, at(t));
    assert_eq!(s.decision.reason, Reason::PhoneBlocked);
    let c = code(&key, t);
    assert_eq!(
        e.decide(&req("kari", HOME, Some(Proof::Totp(&c))), at(t))
            .outcome,
        Outcome::Allow
    );
}

const LEGACY_POLICY: &str = r#"
version = 1
[[tenants]]
name = "kommune"
required_methods = 1
[[tenants.locations]]
name = "office"
trusted = true
ranges = ["10.20.0.0/16"]
[[tenants.rules]]
name = "office-single"
locations = ["office"]
require = "single_factor"
[tenants.default_rule]
name = "second"
require = "second_factor"
"#;

#[test]
fn app_passwords_serve_legacy_clients_only() {
    let e = engine_with(LEGACY_POLICY);
    user_with_app(&e, "kari", &[]);
    let (id, pw) = e
        .create_app_password("kommune", "kari", "Outlook 2010", at(T0))
        .unwrap();
    assert_eq!(pw.expose().len(), 16);
    assert!(!format!("{pw:?}").contains(pw.expose()));
    let legacy = |proof, ff| {
        let mut r = req("kari", HOME, proof);
        r.purpose = Purpose::LegacyProtocol;
        r.first_factor = ff;
        r
    };
    // A password alone from elsewhere is not enough for a legacy client.
    let d = e.decide(&legacy(None, FirstFactor::Ok), at(T0));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::AppPasswordRequired)
    );
    let d = e.decide(
        &legacy(Some(Proof::AppPassword(pw.expose())), FirstFactor::None),
        at(T0),
    );
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Allow, Reason::AppPasswordVerified)
    );
    // Typed with spaces and capitals, as people copy them.
    let spaced: String = pw
        .expose()
        .to_uppercase()
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        e.decide(
            &legacy(Some(Proof::AppPassword(&spaced)), FirstFactor::None),
            at(T0)
        )
        .outcome,
        Outcome::Allow
    );
    // Not valid for an interactive sign-in.
    let d = e.decide(
        &req("kari", HOME, Some(Proof::AppPassword(pw.expose()))),
        at(T0),
    );
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::MethodNotAllowed)
    );
    let d = e.decide(
        &legacy(
            Some(Proof::AppPassword("wrongwrongwrongw")),
            FirstFactor::None,
        ),
        at(T0),
    );
    assert_eq!(d.reason, Reason::InvalidAppPassword);
    e.revoke_app_password("kommune", "kari", id).unwrap();
    let d = e.decide(
        &legacy(Some(Proof::AppPassword(pw.expose())), FirstFactor::None),
        at(T0),
    );
    assert_eq!(d.reason, Reason::InvalidAppPassword);
    assert_eq!(
        e.revoke_app_password("kommune", "kari", id),
        Err(DirectoryError::UnknownItem)
    );
}

#[test]
fn legacy_protocols_are_blocked_outside_the_municipal_network() {
    let e = kommune();
    user_with_app(&e, "kari", &[]);
    let mut r = req("kari", HOME, None);
    r.purpose = Purpose::LegacyProtocol;
    let d = e.decide(&r, at(T0));
    assert_eq!(
        (d.outcome, d.reason, d.rule.as_str()),
        (
            Outcome::Deny,
            Reason::PolicyBlock,
            "legacy-only-on-municipal-network"
        )
    );
    r.ip = OFFICE.parse().unwrap();
    assert_eq!(e.decide(&r, at(T0)).outcome, Outcome::Allow);
}

#[test]
fn passwordless_accounts_refuse_passwords() {
    let e = kommune();
    let (_, key) = user_with_app(&e, "pl", &[]);
    e.set_passwordless("kommune", "pl", true).unwrap();
    let d = e.decide(&req("pl", OFFICE, None), at(T0));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::PasswordNotAllowed)
    );
    let mut r = req("pl", OFFICE, None);
    r.first_factor = FirstFactor::None;
    assert_eq!(
        e.decide(&r, at(T0)).outcome,
        Outcome::Challenge,
        "even on the office network a method is needed"
    );
    let c = code(&key, T0);
    r.proof = Some(Proof::Totp(&c));
    assert_eq!(e.decide(&r, at(T0)).outcome, Outcome::Allow);
}

#[test]
fn a_lost_phone_means_register_next_time() {
    let e = kommune();
    let (_, key) = user_with_app(&e, "kari", &[]);
    let c = code(&key, T0);
    let mut r = req("kari", HOME, Some(Proof::Totp(&c)));
    r.remember_device = true;
    let token = e.decide(&r, at(T0)).device_token.unwrap();
    assert_eq!(e.remove_all_methods("kommune", "kari").unwrap(), 2);
    let mut r = req("kari", HOME, None);
    r.device_token = Some(token.token.expose());
    let d = e.decide(&r, at(T0 + 60));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Register, Reason::NoMethods)
    );
    let c = code(&key, T0 + 60);
    let d = e.decide(&req("kari", HOME, Some(Proof::Totp(&c))), at(T0 + 60));
    assert_eq!(
        d.outcome,
        Outcome::Register,
        "the old app's codes are worthless"
    );
}

#[test]
fn methods_serve_their_purposes() {
    let e = kommune();
    user_with_app(&e, "kari", &[]);
    e.set_security_questions("kommune", "kari", &["Tromsø", "Rex"])
        .unwrap();
    let email = e.add_email("kommune", "kari", "kari@example.no").unwrap();
    let (ch, delivery) = e
        .start_confirmation("kommune", "kari", email, at(T0))
        .unwrap()
        .unwrap();
    e.confirm_sent("kommune", "kari", email, ch, delivery.code.expose(), at(T0))
        .unwrap();

    let reset = |proof| {
        let mut r = req("kari", HOME, proof);
        r.purpose = Purpose::PasswordReset;
        r.first_factor = FirstFactor::None;
        r
    };
    let d = e.decide(&reset(None), at(T0));
    assert_eq!(d.outcome, Outcome::Challenge);
    let kinds: Vec<_> = d.methods.iter().map(|m| m.kind).collect();
    assert!(kinds.contains(&MethodKind::Email) && kinds.contains(&MethodKind::SecurityQuestions));
    // Sign-in never offers reset-only methods.
    let kinds: Vec<_> = e
        .decide(&req("kari", HOME, None), at(T0))
        .methods
        .iter()
        .map(|m| m.kind)
        .collect();
    assert!(!kinds.contains(&MethodKind::Email) && !kinds.contains(&MethodKind::SecurityQuestions));

    let answers = ["  tromsø ", "REX"];
    let d = e.decide(&reset(Some(Proof::SecurityAnswers(&answers))), at(T0));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Allow, Reason::ResetVerified)
    );
    let d = e.decide(
        &req("kari", HOME, Some(Proof::SecurityAnswers(&answers))),
        at(T0),
    );
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::MethodNotAllowed)
    );
    let wrong = ["Bergen", "Rex"];
    assert_eq!(
        e.decide(&reset(Some(Proof::SecurityAnswers(&wrong))), at(T0))
            .reason,
        Reason::InvalidAnswers
    );

    // An email code may not be asked for to sign in, and one sent for reset cannot sign in.
    let send = |purpose| SendRequest {
        tenant: "kommune",
        user: "kari",
        ip: HOME.parse().unwrap(),
        purpose,
        method: Some(email),
    };
    assert_eq!(
        e.send_code(&send(Purpose::SignIn), at(T0)).decision.reason,
        Reason::MethodNotAllowed
    );
    let s = e.send_code(&send(Purpose::PasswordReset), at(T0));
    let id = s.challenge.unwrap().to_hex();
    let c = s.delivery.unwrap().code;
    let d = e.decide(
        &req(
            "kari",
            HOME,
            Some(Proof::Sent {
                challenge: &id,
                code: c.expose(),
            }),
        ),
        at(T0),
    );
    assert_eq!(d.reason, Reason::MethodNotAllowed);
}

#[test]
fn drift_is_learned_bounded_and_resettable() {
    let e = kommune();
    let (app, key) = user_with_app(&e, "kari", &[]);
    let step = 30;
    // The phone runs one step fast: accepted (window ±1), and the drift is learned.
    let mut t = T0 - T0 % step;
    let d = e.decide(
        &req("kari", HOME, Some(Proof::Totp(&code(&key, t + step)))),
        at(t),
    );
    assert_eq!(d.outcome, Outcome::Allow);
    // Now two steps fast is reachable, since the centre moved by one.
    t += 10 * step;
    assert_eq!(
        e.decide(
            &req("kari", HOME, Some(Proof::Totp(&code(&key, t + 2 * step)))),
            at(t)
        )
        .outcome,
        Outcome::Allow
    );
    // Three ahead (the bound: window 1 + max drift 2) after learning two.
    t += 10 * step;
    assert_eq!(
        e.decide(
            &req("kari", HOME, Some(Proof::Totp(&code(&key, t + 3 * step)))),
            at(t)
        )
        .outcome,
        Outcome::Allow
    );
    // Four ahead is past the bound whatever was learned.
    t += 10 * step;
    assert_eq!(
        e.decide(
            &req("kari", HOME, Some(Proof::Totp(&code(&key, t + 4 * step)))),
            at(t)
        )
        .reason,
        Reason::InvalidCode
    );
    // After a reset the centre is the clock again: two ahead is out of reach.
    e.reset_drift("kommune", "kari", app).unwrap();
    t += 10 * step;
    assert_eq!(
        e.decide(
            &req("kari", HOME, Some(Proof::Totp(&code(&key, t + 2 * step)))),
            at(t)
        )
        .reason,
        Reason::InvalidCode
    );
    assert_eq!(
        e.decide(&req("kari", HOME, Some(Proof::Totp(&code(&key, t)))), at(t))
            .outcome,
        Outcome::Allow
    );
}

#[test]
fn hardware_tokens_look_ahead_and_resynchronise() {
    let e = kommune();
    e.add_user("kommune", "tok", &[], false).unwrap();
    add_active_phone(&e, "kommune", "tok");
    let secret = b"12345678901234567890";
    let m = e
        .add_hotp("kommune", "tok", secret, Digits::SIX, 0)
        .unwrap();
    let key = OtpKey::new(Algorithm::Sha1, secret);
    let hotp = |c: u64| format!("{:06}", key.hotp(c, Digits::SIX));
    e.confirm_otp("kommune", "tok", m, &hotp(0), at(T0))
        .unwrap();
    let proof = |c: &str| {
        Some(Proof::Hotp {
            code: Box::leak(c.to_owned().into_boxed_str()),
            next: None,
        })
    };
    assert_eq!(
        e.decide(&req("tok", HOME, proof(&hotp(5))), at(T0)).outcome,
        Outcome::Allow
    );
    assert_eq!(
        e.decide(&req("tok", HOME, proof(&hotp(3))), at(T0)).reason,
        Reason::ReplayedCode,
        "behind the counter: skipped, and so spent, as an app's earlier steps are"
    );
    assert_eq!(
        e.decide(&req("tok", HOME, proof(&hotp(5))), at(T0)).reason,
        Reason::ReplayedCode,
        "spent"
    );

    // Pressed many times away from the server: 50 ahead is beyond the look-ahead of 10.
    assert_eq!(
        e.decide(&req("tok", HOME, proof(&hotp(56))), at(T0)).reason,
        Reason::InvalidCode
    );
    let (a, b) = (hotp(57), hotp(58));
    let d = e.decide(
        &req(
            "tok",
            HOME,
            Some(Proof::Hotp {
                code: &a,
                next: Some(&b),
            }),
        ),
        at(T0),
    );
    assert_eq!(d.outcome, Outcome::Allow);
    // Resynchronised: 59 is within the window again, and 58 is spent.
    assert_eq!(
        e.decide(&req("tok", HOME, proof(&hotp(58))), at(T0)).reason,
        Reason::ReplayedCode
    );
    assert_eq!(
        e.decide(&req("tok", HOME, proof(&hotp(59))), at(T0))
            .outcome,
        Outcome::Allow
    );
}

#[test]
fn security_defaults_stop_users_turning_two_step_off() {
    let e = kommune();
    user_with_app(&e, "kari", &[]);
    let err = e.set_mfa_opt_out("kommune", "kari", true).unwrap_err();
    assert_eq!(err, DirectoryError::MfaRequired);
    let relaxed = LEGACY_POLICY.replace(
        "required_methods = 1",
        "required_methods = 1\nrequire_mfa = false",
    );
    let e = engine_with(&relaxed);
    user_with_app(&e, "kari", &[]);
    assert_eq!(
        e.decide(&req("kari", HOME, None), at(T0)).outcome,
        Outcome::Challenge
    );
    e.set_mfa_opt_out("kommune", "kari", true).unwrap();
    assert_eq!(
        e.decide(&req("kari", HOME, None), at(T0)).outcome,
        Outcome::Allow
    );
}

#[test]
fn policy_swaps_apply_to_new_decisions() {
    let e = kommune();
    user_with_app(&e, "kari", &[]);
    assert_eq!(
        e.decide(&req("kari", OFFICE, None), at(T0)).outcome,
        Outcome::Allow
    );
    let old = e.policy();
    let stricter = KOMMUNE.replace("require = \"single_factor\"", "require = \"second_factor\"");
    e.set_policy(config::load(&stricter).unwrap());
    assert_eq!(
        e.decide(&req("kari", OFFICE, None), at(T0)).outcome,
        Outcome::Challenge
    );
    // A snapshot taken before the swap still reads the old rules.
    assert_eq!(
        old.tenant("kommune").unwrap().rules[2].require,
        portvakt_core::Requirement::SingleFactor
    );
}

#[test]
fn bad_input_gets_a_precise_answer() {
    let e = kommune();
    user_with_app(&e, "kari", &[]);
    let mut r = req("kari", HOME, None);
    r.tenant = "nope";
    let d = e.decide(&r, at(T0));
    assert_eq!(
        (d.outcome, d.reason, d.rule.as_str()),
        (Outcome::Deny, Reason::UnknownTenant, "none")
    );
    // Names that cannot exist are unknown users, not errors or panics.
    for name in ["", "a\u{0}b", &"x".repeat(10_000), "\u{202e}kari", " kari"] {
        // Each is decided as its phantom: a wrong code, or registration still missing
        // (kommune asks for two methods, and some phantoms have fewer).
        let d = e.decide(&req(name, HOME, Some(Proof::Totp("123456"))), at(T0));
        assert!(
            matches!(
                d.reason,
                Reason::InvalidCode | Reason::MoreMethodsRequired | Reason::NoMethods
            ),
            "{name:?}: {d:?}"
        );
    }
    assert_eq!(
        e.add_user("kommune", "a\nb", &[], false)
            .unwrap_err()
            .to_string(),
        "invalid name: name \"a\\nb\" has control characters or surrounding white space"
    );
    assert_eq!(
        e.add_user("nope", "x", &[], false),
        Err(DirectoryError::UnknownTenant)
    );
    assert_eq!(
        e.add_user("kommune", "KARI", &[], false),
        Err(DirectoryError::UserExists),
        "ASCII case is folded"
    );
    assert_eq!(
        e.add_phone("kommune", "kari", MethodKind::Sms, "12345"),
        Err(DirectoryError::InvalidPhone)
    );
    let d = e.decide(
        &req(
            "kari",
            HOME,
            Some(Proof::Sent {
                challenge: "zz",
                code: "123456",
            }),
        ),
        at(T0),
    );
    assert_eq!(d.reason, Reason::MalformedProof);
    // Proofs never show up in Debug output.
    let mut r = req("kari", HOME, Some(Proof::Totp("314159")));
    r.device_token = Some("c2VjcmV0LWRldmljZS10b2tlbg");
    let shown = format!("{r:?}");
    assert!(!shown.contains("314159"), "{shown}");
    assert!(!shown.contains("c2VjcmV0"), "{shown}");
    assert!(shown.contains("kari"), "{shown}");
}

#[test]
fn method_ids_are_per_user_and_never_reused() {
    let e = kommune();
    e.add_user("kommune", "a", &[], false).unwrap();
    e.add_user("kommune", "b", &[], false).unwrap();
    let key = |u| e.add_security_key("kommune", u).unwrap();
    assert_eq!(
        (key("a"), key("a"), key("b")),
        (MethodId(1), MethodId(2), MethodId(1))
    );
    // A removed id is not given out again, not even after every method is gone.
    e.remove_method("kommune", "a", MethodId(2)).unwrap();
    assert_eq!(key("a"), MethodId(3));
    e.remove_all_methods("kommune", "a").unwrap();
    assert_eq!(key("a"), MethodId(4));
}

#[test]
fn behind_the_replay_fence_no_code_that_could_have_been_accepted_then_is_accepted() {
    let e = kommune();
    let (_, key) = user_with_app(&e, "kari", &[]);
    let (_, other) = user_with_app(&e, "ola", &[]);
    e.raise_fence(at(T0));
    // The step current at the fence, and those its window (1) and drift (2) reach ahead,
    // are spent, for every user: answered as replayed, and counted.
    for ahead in 0..=3 {
        let t = T0 + ahead * 30;
        let d = e.decide(&req("kari", HOME, Some(Proof::Totp(&code(&key, t)))), at(t));
        assert_eq!(d.reason, Reason::ReplayedCode, "{ahead} steps ahead: {d:?}");
    }
    // The first step past them is accepted, once.
    let t = T0 + 4 * 30;
    let c = code(&other, t);
    assert_eq!(
        e.decide(&req("ola", HOME, Some(Proof::Totp(&c))), at(t))
            .outcome,
        Outcome::Allow
    );
    assert_eq!(
        e.decide(&req("ola", HOME, Some(Proof::Totp(&c))), at(t))
            .reason,
        Reason::ReplayedCode
    );
    // A fence is only ever raised.
    e.raise_fence(at(T0 - 600));
    assert_eq!(e.fence(), Some(at(T0)));
}

#[test]
fn a_code_of_unnamed_origin_is_tried_on_apps_and_tokens_alike() {
    let e = kommune();
    // One user with an app, one with a hardware token only: both type "a code".
    let (_, app) = user_with_app(&e, "kari", &[]);
    e.add_user("kommune", "tok", &[], false).unwrap();
    add_active_phone(&e, "kommune", "tok");
    let secret = b"12345678901234567890";
    let m = e
        .add_hotp("kommune", "tok", secret, Digits::SIX, 0)
        .unwrap();
    let token = OtpKey::new(Algorithm::Sha1, secret);
    let hotp = |c: u64| format!("{:06}", token.hotp(c, Digits::SIX));
    e.confirm_otp("kommune", "tok", m, &hotp(0), at(T0))
        .unwrap();

    let app_code = code(&app, T0);
    let d = e.decide(&req("kari", HOME, Some(Proof::Code(&app_code))), at(T0));
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.method, Some(MethodKind::AuthenticatorApp));
    assert_eq!(
        e.decide(&req("kari", HOME, Some(Proof::Code(&app_code))), at(T0))
            .reason,
        Reason::ReplayedCode,
        "spent whichever way it came"
    );
    let t1 = hotp(1);
    let d = e.decide(&req("tok", HOME, Some(Proof::Code(&t1))), at(T0));
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.method, Some(MethodKind::HardwareToken));
    // The token's code is no use as the app's, nor the other way round.
    let t2 = hotp(2);
    assert_eq!(
        e.decide(&req("kari", HOME, Some(Proof::Code(&t2))), at(T0 + 30))
            .reason,
        Reason::InvalidCode
    );
    assert_eq!(
        e.decide(&req("tok", HOME, Some(Proof::Totp(&t2))), at(T0 + 30))
            .reason,
        Reason::InvalidCode
    );
}
