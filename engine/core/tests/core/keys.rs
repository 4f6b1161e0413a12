//! Security keys (WebAuthn) through the core: a registration and sign-ins made by a
//! software key, every check refusing what it must, and the counter.

use portvakt_core::admin::TotpSpec;
use portvakt_core::directory::{DirectoryError, MethodKind};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::{SeededEntropy, SoftKey};
use portvakt_core::{
    Decision, Engine, FirstFactor, MemoryStore, MethodId, Outcome, Proof, Purpose, Reason, Request,
    Timestamp, config,
};

const KOMMUNE: &str = include_str!("../../../../examples/kommune.toml");
const ORIGIN: &str = "https://login.kommune.no";
const HOME: &str = "203.0.113.9";
const T0: u64 = 1_700_000_000;

type E = Engine<MemoryStore>;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn engine() -> E {
    Engine::new(
        config::load(KOMMUNE).unwrap(),
        MemoryStore::default(),
        Pepper::new([8; 32]),
        Box::new(SeededEntropy::new(13)),
    )
}

/// Registers `key` for `user` and makes it the default.
fn register(e: &E, user: &str, key: &SoftKey) -> MethodId {
    let started = e.security_key_start("kommune", user, at(T0)).unwrap();
    let method = e
        .security_key_finish("kommune", user, &key.register(&started.options), at(T0 + 1))
        .unwrap();
    e.set_default_method("kommune", user, method).unwrap();
    method
}

/// pia: passwordless, an authenticator app and a security key (the default).
fn pia(e: &E, key: &SoftKey) -> MethodId {
    e.add_user("kommune", "pia", &[], true).unwrap();
    e.import_totp(
        "kommune",
        "pia",
        b"pia-app-secret-00000",
        TotpSpec::default(),
        true,
    )
    .unwrap();
    register(e, "pia", key)
}

fn request<'a>(user: &'a str, first: FirstFactor, proof: Option<Proof<'a>>) -> Request<'a> {
    Request {
        tenant: "kommune",
        user,
        ip: HOME.parse().unwrap(),
        purpose: Purpose::SignIn,
        first_factor: first,
        proof,
        device_token: None,
        remember_device: false,
    }
}

/// A sign-in without a password: the options it hands the browser.
fn ask(e: &E, user: &str, now: Timestamp) -> String {
    let d = e.decide(&request(user, FirstFactor::None, None), now);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Challenge, Reason::KeyRequested),
        "{d:?}"
    );
    d.security_key.expect("options")
}

fn answer(e: &E, user: &str, json: &str, now: Timestamp) -> Decision {
    e.decide(
        &request(user, FirstFactor::None, Some(Proof::SecurityKey(json))),
        now,
    )
}

#[test]
fn a_passwordless_account_signs_in_with_its_key_once_per_challenge() {
    let (e, key) = (engine(), SoftKey::new(b"pia-key-1", ORIGIN));
    pia(&e, &key);
    let options = ask(&e, "pia", at(T0 + 10));
    let o: serde_json::Value = serde_json::from_str(&options).unwrap();
    assert_eq!(o["publicKey"]["rpId"], "kommune.no");
    assert_eq!(o["publicKey"]["userVerification"], "required");
    assert_eq!(
        o["publicKey"]["allowCredentials"].as_array().unwrap().len(),
        1
    );
    let json = key.sign(&options);
    let d = answer(&e, "pia", &json, at(T0 + 11));
    assert_eq!(
        (d.outcome, d.reason, d.method),
        (
            Outcome::Allow,
            Reason::SecondFactorVerified,
            Some(MethodKind::SecurityKey)
        ),
        "{d:?}"
    );
    // The same answer again: its challenge is spent.
    let d = answer(&e, "pia", &json, at(T0 + 12));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::ChallengeInvalid)
    );
    // A fresh challenge, a fresh answer: in again.
    let d = answer(
        &e,
        "pia",
        &key.sign(&ask(&e, "pia", at(T0 + 13))),
        at(T0 + 14),
    );
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
}

#[test]
fn every_check_refuses_and_counts() {
    let (e, mut key) = (engine(), SoftKey::new(b"pia-key-2", ORIGIN));
    pia(&e, &key);
    let refused = |json: String, want: Reason| {
        let d = answer(&e, "pia", &json, at(T0 + 20));
        assert_eq!((d.outcome, d.reason), (Outcome::Deny, want), "{d:?}");
    };
    // Another origin (a phishing page).
    let mut phish = SoftKey::new(b"pia-key-2", "https://login.kommune.no.evil.example");
    phish.user_verified = true;
    refused(
        phish.sign(&ask(&e, "pia", at(T0 + 20))),
        Reason::InvalidAssertion,
    );
    // Another relying party: options whose rpId is not the tenant's.
    let options = ask(&e, "pia", at(T0 + 20)).replace("\"kommune.no\"", "\"evil.example\"");
    refused(key.sign(&options), Reason::InvalidAssertion);
    // The real key, touched without its PIN: no user verification on a passwordless
    // sign-in.
    key.user_verified = false;
    refused(
        key.sign(&ask(&e, "pia", at(T0 + 20))),
        Reason::InvalidAssertion,
    );
    key.user_verified = true;
    // Another key of the same id (a forgery): the signature does not verify.
    refused(
        SoftKey::new(b"pia-key-2", ORIGIN).sign(&ask(&e, "pia", at(T0 + 20))),
        Reason::InvalidAssertion,
    );
    // A key this user does not have.
    refused(
        SoftKey::new(b"someone-else", ORIGIN).sign(&ask(&e, "pia", at(T0 + 20))),
        Reason::InvalidAssertion,
    );
    // A challenge this server never issued.
    let options = ask(&e, "pia", at(T0 + 20));
    let o: serde_json::Value = serde_json::from_str(&options).unwrap();
    let forged = options.replace(
        o["publicKey"]["challenge"].as_str().unwrap(),
        &"A".repeat(43),
    );
    refused(key.sign(&forged), Reason::ChallengeInvalid);
    // Malformed JSON is refused without counting.
    for junk in [
        "",
        "{",
        "[]",
        "{\"type\":\"public-key\"}",
        "\u{feff}{}",
        &"x".repeat(20_000),
    ] {
        let d = answer(&e, "pia", junk, at(T0 + 21));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Deny, Reason::MalformedProof),
            "{junk:?}"
        );
    }
    // Six counted failures so far; four more lock, as wrong codes do.
    for _ in 0..4 {
        let d = answer(
            &e,
            "pia",
            &SoftKey::new(b"pia-key-2", ORIGIN).sign(&ask(&e, "pia", at(T0 + 22))),
            at(T0 + 22),
        );
        assert!(
            matches!(d.outcome, Outcome::Deny | Outcome::Locked),
            "{d:?}"
        );
    }
    let d = e.decide(&request("pia", FirstFactor::None, None), at(T0 + 23));
    assert_eq!(d.outcome, Outcome::Locked, "{d:?}");
}

#[test]
fn a_counter_that_does_not_move_on_is_a_cloned_key() {
    let (e, key) = (engine(), SoftKey::new(b"pia-key-3", ORIGIN));
    pia(&e, &key);
    for i in 0..3 {
        let d = answer(
            &e,
            "pia",
            &key.sign(&ask(&e, "pia", at(T0 + 30 + i))),
            at(T0 + 30 + i),
        );
        assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    }
    // The key has signed 3 times since registering (counter 4 at the last); a clone made
    // earlier answers with a counter the server has seen.
    key.set_counter(2);
    let d = answer(
        &e,
        "pia",
        &key.sign(&ask(&e, "pia", at(T0 + 40))),
        at(T0 + 40),
    );
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::CounterRegressed),
        "{d:?}"
    );
    // A key that keeps no counter is taken as it is, again and again.
    let (e2, mut plain) = (engine(), SoftKey::new(b"pia-key-4", ORIGIN));
    plain.counts = false;
    pia(&e2, &plain);
    for i in 0..3 {
        let d = answer(
            &e2,
            "pia",
            &plain.sign(&ask(&e2, "pia", at(T0 + 50 + i))),
            at(T0 + 50 + i),
        );
        assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    }
}

#[test]
fn a_password_account_s_key_needs_no_verification_but_its_password() {
    let (e, mut key) = (engine(), SoftKey::new(b"kari-key", ORIGIN));
    e.add_user("kommune", "kari", &[], false).unwrap();
    e.import_totp(
        "kommune",
        "kari",
        b"kari-app-secret-0000",
        TotpSpec::default(),
        true,
    )
    .unwrap();
    register(&e, "kari", &key);
    key.user_verified = false;
    let d = e.decide(&request("kari", FirstFactor::Ok, None), at(T0 + 60));
    assert_eq!(d.reason, Reason::KeyRequested, "{d:?}");
    let options = d.security_key.unwrap();
    assert!(
        options.contains("\"userVerification\":\"preferred\""),
        "{options}"
    );
    let json = key.sign(&options);
    let d = e.decide(
        &request("kari", FirstFactor::Ok, Some(Proof::SecurityKey(&json))),
        at(T0 + 61),
    );
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    // Without the password, the key alone must verify the user.
    let d = e.decide(&request("kari", FirstFactor::None, None), at(T0 + 62));
    let options = d.security_key.unwrap();
    assert!(
        options.contains("\"userVerification\":\"required\""),
        "{options}"
    );
    let d = e.decide(
        &request(
            "kari",
            FirstFactor::None,
            Some(Proof::SecurityKey(&key.sign(&options))),
        ),
        at(T0 + 63),
    );
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::InvalidAssertion)
    );
}

#[test]
fn a_registration_takes_its_own_open_challenge_once() {
    let e = engine();
    e.add_user("kommune", "kari", &[], false).unwrap();
    e.add_user("kommune", "per", &[], false).unwrap();
    let key = SoftKey::new(b"kari-key-r", ORIGIN);
    let started = e.security_key_start("kommune", "kari", at(T0)).unwrap();
    let o: serde_json::Value = serde_json::from_str(&started.options).unwrap();
    assert_eq!(o["publicKey"]["rp"]["id"], "kommune.no");
    assert_eq!(o["publicKey"]["attestation"], "none");
    let json = key.register(&started.options);
    let refused = |r: Result<MethodId, DirectoryError>| {
        assert!(matches!(r, Err(DirectoryError::KeyRefused(_))), "{r:?}")
    };
    // Another user cannot take it; a phishing origin cannot; too late cannot.
    refused(e.security_key_finish("kommune", "per", &json, at(T0 + 1)));
    let again = e.security_key_start("kommune", "kari", at(T0)).unwrap();
    let phish = SoftKey::new(b"kari-key-r", "https://evil.example");
    refused(e.security_key_finish(
        "kommune",
        "kari",
        &phish.register(&again.options),
        at(T0 + 1),
    ));
    let late = e.security_key_start("kommune", "kari", at(T0)).unwrap();
    refused(e.security_key_finish(
        "kommune",
        "kari",
        &key.register(&late.options),
        Timestamp::from_millis(late.expires.as_millis()),
    ));
    // The first one, in time: registered, active; once only; and not the same key twice.
    let method = e
        .security_key_finish("kommune", "kari", &json, at(T0 + 2))
        .unwrap();
    refused(e.security_key_finish("kommune", "kari", &json, at(T0 + 3)));
    let twice = e.security_key_start("kommune", "kari", at(T0 + 4)).unwrap();
    let o: serde_json::Value = serde_json::from_str(&twice.options).unwrap();
    assert_eq!(
        o["publicKey"]["excludeCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    refused(e.security_key_finish("kommune", "kari", &key.register(&twice.options), at(T0 + 5)));
    let info = e.user_info("kommune", "kari").unwrap();
    assert!(
        info.methods
            .iter()
            .any(|(id, kind, active)| *id == method && *kind == MethodKind::SecurityKey && *active)
    );
    // Garbage is refused as such.
    for junk in ["", "{}", "null", &"\u{0}".repeat(100)] {
        refused(e.security_key_finish("kommune", "kari", junk, at(T0 + 6)));
    }
}

#[test]
fn an_unknown_name_is_asked_for_a_key_as_a_user_is() {
    let (e, key) = (engine(), SoftKey::new(b"pia-key-5", ORIGIN));
    pia(&e, &key);
    let shape = |d: &Decision| {
        let o: serde_json::Value =
            serde_json::from_str(d.security_key.as_deref().unwrap_or("{}")).unwrap();
        (
            d.outcome,
            d.reason,
            d.method,
            o["publicKey"]["userVerification"].clone(),
            o["publicKey"]["allowCredentials"].as_array().map(Vec::len),
        )
    };
    let known = e.decide(&request("pia", FirstFactor::None, None), at(T0));
    let unknown = (0..400)
        .map(|i| {
            e.decide(
                &request(&format!("nobody{i}"), FirstFactor::None, None),
                at(T0),
            )
        })
        .find(|d| d.security_key.is_some())
        .expect("no phantom asks for a security key");
    assert_eq!(shape(&unknown), shape(&known));
}

/// The software key of another implementation (PyPI's `soft-webauthn`, on python-fido2
/// and `cryptography`), through `tests/webauthn/soft_key.py`: its registration and its
/// signatures hold here, and its counter is followed. `PORTVAKT_SOFT_WEBAUTHN` names a
/// Python with `soft-webauthn` installed (`.ci/run` makes one); without it the test says
/// so and passes, unless `PORTVAKT_REQUIRE_SOFT_WEBAUTHN` is set, as `.ci/run` sets it.
#[test]
fn another_implementation_s_key_registers_and_signs_in() {
    let Some(python) = std::env::var_os("PORTVAKT_SOFT_WEBAUTHN") else {
        assert!(
            std::env::var_os("PORTVAKT_REQUIRE_SOFT_WEBAUTHN").is_none(),
            "PORTVAKT_SOFT_WEBAUTHN is not set, and the test is required"
        );
        eprintln!("no PORTVAKT_SOFT_WEBAUTHN: the differential security-key test is skipped");
        return;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/webauthn/soft_key.py"
    );
    let state = std::env::temp_dir().join(format!("portvakt-soft-key-{}", std::process::id()));
    let run = |command: &str, options: &str| -> String {
        use std::io::Write;
        let mut child = std::process::Command::new(&python)
            .arg(script)
            .arg(&state)
            .arg(command)
            .arg(ORIGIN)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(options.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "soft_key.py {command} failed");
        String::from_utf8(out.stdout).unwrap()
    };
    // A password account: soft-webauthn does not verify users, and none is asked for
    // when the password was checked.
    let e = engine();
    e.add_user("kommune", "kari", &[], false).unwrap();
    e.import_totp(
        "kommune",
        "kari",
        b"kari-app-secret-0000",
        TotpSpec::default(),
        true,
    )
    .unwrap();
    let started = e.security_key_start("kommune", "kari", at(T0)).unwrap();
    let method = e
        .security_key_finish(
            "kommune",
            "kari",
            &run("create", &started.options),
            at(T0 + 1),
        )
        .unwrap();
    e.set_default_method("kommune", "kari", method).unwrap();
    for i in 0..3 {
        let d = e.decide(&request("kari", FirstFactor::Ok, None), at(T0 + 10 + i));
        assert_eq!(d.reason, Reason::KeyRequested, "{d:?}");
        let json = run("get", d.security_key.as_deref().unwrap());
        let proof = Some(Proof::SecurityKey(&json));
        let d = e.decide(&request("kari", FirstFactor::Ok, proof), at(T0 + 10 + i));
        assert_eq!(d.outcome, Outcome::Allow, "sign-in {i}: {d:?}");
        // The same answer again: its challenge is spent.
        let d = e.decide(&request("kari", FirstFactor::Ok, proof), at(T0 + 10 + i));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Deny, Reason::ChallengeInvalid)
        );
    }
    let _ = std::fs::remove_file(&state);
}
