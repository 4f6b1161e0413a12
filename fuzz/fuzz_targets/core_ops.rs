//! Sequences of arbitrary operations against the decision core (administrator changes,
//! decisions, sent codes, time passing), with the municipality's policy. After every
//! operation the engine's internal consistency is checked (`Engine::check_invariants`,
//! compiled only under `cfg(fuzzing)`), and every decision is checked against a model:
//!
//! - a decision has the shape its outcome promises (a wait for locked and throttled, a
//!   method for challenge (a sent code for a send-code answer), an allowing reason for
//!   allow and only for allow);
//! - an authenticator-app code is accepted only if an active app of the user shows it
//!   within the window (one step either side, plus up to two steps of learned drift);
//! - a code is never accepted for a step at or before one already spent on that app
//!   (replay), whether spent by a sign-in or by confirming the app;
//! - a user locked for too many failures is not let in by the same kind of request (same
//!   address, purpose, password outcome, kind of proof) before the wait is over, unless
//!   an administrator unlocked them or they were let in some other way meanwhile;
//! - the directory holds exactly the users added and not removed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use portvakt_core::admin::TotpSpec;
use portvakt_core::directory::MethodKind;
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::state::StoreLimits;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{
    Decision, Engine, FirstFactor, MemoryStore, MethodId, Outcome, Policy, Proof, Purpose, Reason,
    Request, SendRequest, Timestamp, config,
};

const POLICY: &str = include_str!("../../examples/kommune.toml");
const TENANT: &str = "kommune";
/// The users the model follows. Arbitrary other names start with `x-`, so they never
/// fold to one of these.
const USERS: [&str; 4] = [
    "kari@kommune.no",
    "ola.nordmann@kommune.no",
    "lege@kommune.no",
    "søren@kommune.no",
];
const T0: u64 = 1_700_000_000;
/// One step either side, and up to two steps of drift (the policy's).
const WINDOW: u64 = 3;

#[derive(Arbitrary, Debug)]
enum Who {
    User(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Place {
    Office(u16),
    Home(u16),
    V4(u32),
    V6(u128),
}

#[derive(Arbitrary, Debug)]
enum ProofChoice {
    None,
    /// The code app `app` of the user shows `skew` steps from now.
    App {
        app: u8,
        skew: i8,
    },
    Totp(String),
    Hotp(String),
    /// The last code sent, or another code for its challenge.
    Sent(Option<String>),
    /// The last app password created, or another.
    AppPassword(Option<String>),
    Answers(Vec<String>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    AddUser {
        who: Who,
        doctor: bool,
        passwordless: bool,
    },
    RemoveUser {
        who: Who,
    },
    ImportApp {
        user: u8,
        active: bool,
    },
    ConfirmApp {
        user: u8,
        app: u8,
        skew: i8,
    },
    AddSecurityKey {
        user: u8,
    },
    AddPhone {
        user: u8,
        number: String,
        voice: bool,
    },
    RemoveApp {
        user: u8,
        app: u8,
    },
    RemoveAllMethods {
        user: u8,
    },
    Unlock {
        who: Who,
    },
    CreateAppPassword {
        user: u8,
        label: String,
    },
    Decide {
        who: Who,
        at: Place,
        purpose: u8,
        first_factor: u8,
        proof: ProofChoice,
        remember: bool,
        last_device: bool,
    },
    /// A burst of different wrong app codes for one user from one place, as a guesser
    /// sends them (the way to a lock), and then, maybe, the user's own right code from
    /// the same place.
    Guesses {
        user: u8,
        at: Place,
        count: u8,
        then_right_code: bool,
    },
    SendCode {
        who: Who,
        at: Place,
        purpose: u8,
    },
    Advance {
        secs: u16,
    },
}

/// An authenticator app as the model knows it.
struct App {
    id: MethodId,
    key: OtpKey,
    active: bool,
    /// The last step spent on it: codes for it and earlier steps are refused.
    spent: Option<u64>,
}

#[derive(Default)]
struct Model {
    /// The followed users that exist, with their apps.
    users: [Option<Vec<App>>; 4],
    /// Users in the directory, followed or not.
    count: usize,
    apps_made: u64,
    now: u64,
    last_sent: Option<(String, String)>,
    last_app_password: Option<String>,
    last_device: Option<String>,
    /// The followed users' last lock for too many failures, with the request that met it.
    locks: [Option<Lock>; 4],
}

/// A request's shape: what decides which failure counter it meets (address, purpose,
/// the password's outcome, the kind of proof, whether a device token came along).
type Shape = (IpAddr, Purpose, u8, u8, bool);

struct Lock {
    shape: Shape,
    /// Until when, in milliseconds (a second early: a wait is rounded up to whole seconds).
    until_ms: u64,
}

impl Model {
    fn step(&self) -> u64 {
        self.now / 30
    }

    fn apps(&mut self, user: u8) -> Option<&mut Vec<App>> {
        self.users
            .get_mut(usize::from(user) % USERS.len())?
            .as_mut()
    }
}

fn name(who: &Who) -> (String, Option<usize>) {
    match who {
        Who::User(i) => {
            let i = usize::from(*i) % USERS.len();
            (USERS[i].to_owned(), Some(i))
        }
        Who::Other(s) => (format!("x-{s}"), None),
    }
}

fn user(i: u8) -> &'static str {
    USERS[usize::from(i) % USERS.len()]
}

fn ip(at: &Place) -> IpAddr {
    match *at {
        Place::Office(i) => IpAddr::V4(Ipv4Addr::new(10, 20, (i >> 8) as u8, i as u8)),
        Place::Home(i) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, i, 0, 0, 0, 1)),
        Place::V4(v) => IpAddr::V4(v.into()),
        Place::V6(v) => IpAddr::V6(v.into()),
    }
}

fn purpose(p: u8) -> Purpose {
    Purpose::ALL[usize::from(p) % Purpose::ALL.len()]
}

fn code(key: &OtpKey, step: u64) -> String {
    format!("{:06}", key.hotp(step, Digits::SIX))
}

/// The steps near `centre` at which `key` shows `code`.
fn steps_showing(key: &OtpKey, code: &str, centre: u64, reach: u64) -> Vec<u64> {
    (centre.saturating_sub(reach)..=centre + reach)
        .filter(|&s| self::code(key, s) == code)
        .collect()
}

/// `sent` for the answer to a send-code request, whose challenge is the code sent.
fn check_shape(d: &Decision, sent: bool) {
    let allowing = matches!(
        d.reason,
        Reason::SingleFactorAllowed
            | Reason::SecondFactorVerified
            | Reason::TrustedDevice
            | Reason::AppPasswordVerified
            | Reason::ResetVerified
    );
    assert_eq!(d.outcome == Outcome::Allow, allowing, "{d:?}");
    match d.outcome {
        Outcome::Locked | Outcome::Throttled => assert!(d.retry_after.is_some(), "{d:?}"),
        Outcome::Challenge if sent => assert_eq!(d.reason, Reason::CodeSent, "{d:?}"),
        Outcome::Challenge => assert!(!d.methods.is_empty(), "{d:?}"),
        Outcome::Allow => assert!(d.retry_after.is_none(), "{d:?}"),
        Outcome::Deny | Outcome::Register => {}
    }
}

/// A sign-in accepted an app's code: it must be one an active app could show now and has
/// not spent, and that step is spent from now on.
fn spend(apps: &mut [App], code: &str, centre: u64) {
    let mut candidates = Vec::new();
    for (i, app) in apps.iter().enumerate().filter(|(_, a)| a.active) {
        for s in steps_showing(&app.key, code, centre, WINDOW) {
            if app.spent.is_none_or(|spent| s > spent) {
                candidates.push((i, s));
            }
        }
    }
    assert!(
        !candidates.is_empty(),
        "code {code} accepted at step {centre}, but no app could show it unspent"
    );
    // Spend only what is certain: the earliest candidate step, if one app is the only
    // candidate (two apps showing the same code at once is a one-in-a-million chance).
    let first = candidates[0].0;
    if candidates.iter().all(|(i, _)| *i == first) {
        let earliest = candidates.iter().map(|(_, s)| *s).min();
        apps[first].spent = earliest.max(apps[first].spent);
    }
}

/// Checks a decision for followed user `i` against the lock the model knows of, and
/// updates it.
fn observe_lock(m: &mut Model, i: usize, shape: Shape, d: &Decision) {
    let now_ms = m.now * 1000;
    if let Some(lock) = &m.locks[i]
        && lock.shape == shape
        && now_ms < lock.until_ms
    {
        assert_ne!(
            d.outcome,
            Outcome::Allow,
            "{} let in {} ms before the lock ends: {d:?}",
            USERS[i],
            lock.until_ms - now_ms
        );
    }
    if d.outcome == Outcome::Allow {
        m.locks[i] = None;
    } else if d.reason == Reason::TooManyFailures {
        let wait = d.retry_after.map_or(0, |w| w.as_millis());
        m.locks[i] = Some(Lock {
            shape,
            until_ms: now_ms + wait.saturating_sub(1000),
        });
    }
}

/// A code none of user `i`'s apps shows within reach of now (the `n`th such guess).
fn wrong_code(m: &Model, i: usize, n: u32) -> String {
    let step = m.step();
    let shown: Vec<String> = m.users[i]
        .iter()
        .flatten()
        .flat_map(|app| {
            (step.saturating_sub(WINDOW)..=step + WINDOW).map(move |s| code(&app.key, s))
        })
        .collect();
    let mut guess = 123_457u32.wrapping_mul(n + 1) % 1_000_000;
    while shown.contains(&format!("{guess:06}")) {
        guess = (guess + 1) % 1_000_000;
    }
    format!("{guess:06}")
}

/// Adds an authenticator app with a secret of its own to user `u`, and to the model.
fn import_app(engine: &Engine, m: &mut Model, u: u8, active: bool) {
    m.apps_made += 1;
    let mut secret = *b"core-ops-app-secret-";
    secret[..8].copy_from_slice(&m.apps_made.to_le_bytes());
    let made = engine.import_totp(TENANT, user(u), &secret, TotpSpec::default(), active);
    match (made, m.apps(u)) {
        (Ok(id), Some(apps)) => apps.push(App {
            id,
            key: OtpKey::new(Algorithm::Sha1, &secret),
            active,
            spent: None,
        }),
        // No such user, or the engine's limit of methods per user.
        (Err(_), _) => {}
        (Ok(_), None) => panic!("an app was added to a user who does not exist"),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    static POLICY_ONCE: OnceLock<Policy> = OnceLock::new();
    let policy =
        POLICY_ONCE.get_or_init(|| config::load(POLICY).expect("the example policy loads"));
    // Tiny tables, so that evicting old entries is exercised too.
    let limits = StoreLimits {
        unknown_subjects: 8,
        sources: 8,
        numbers: 8,
        challenges: 8,
    };
    let engine = Engine::new(
        policy.clone(),
        MemoryStore::new(limits),
        Pepper::new([7; 32]),
        Box::new(SeededEntropy::new(1)),
    );
    let mut m = Model {
        now: T0,
        ..Model::default()
    };
    // Every input starts from a working municipality: the followed users exist (the
    // third in the doctors' office), each with an active app and a security key, so a
    // single operation can already sign someone in or replay a code.
    for (i, name) in USERS.iter().enumerate() {
        let groups: &[&str] = if i == 2 { &["legekontor"] } else { &[] };
        engine
            .add_user(TENANT, name, groups, false)
            .expect("a fresh directory takes the user");
        m.count += 1;
        m.users[i] = Some(Vec::new());
        import_app(&engine, &mut m, i as u8, true);
        engine
            .add_security_key(TENANT, name)
            .expect("the user exists");
    }
    for op in ops.iter().take(200) {
        let now = Timestamp::from_secs(m.now);
        match op {
            Op::AddUser {
                who,
                doctor,
                passwordless,
            } => {
                let (name, followed) = name(who);
                let groups: &[&str] = if *doctor { &["legekontor"] } else { &[] };
                if engine
                    .add_user(TENANT, &name, groups, *passwordless)
                    .is_ok()
                {
                    m.count += 1;
                    if let Some(i) = followed {
                        assert!(m.users[i].is_none(), "{name} added twice");
                        m.users[i] = Some(Vec::new());
                    }
                } else if let Some(i) = followed {
                    assert!(m.users[i].is_some(), "{name} could not be added");
                }
            }
            Op::RemoveUser { who } => {
                let (name, followed) = name(who);
                let removed = engine.remove_user(TENANT, &name).is_ok();
                if removed {
                    m.count -= 1;
                }
                if let Some(i) = followed {
                    assert_eq!(removed, m.users[i].take().is_some(), "{name}");
                    m.locks[i] = None;
                }
            }
            Op::ImportApp { user: u, active } => import_app(&engine, &mut m, *u, *active),
            Op::ConfirmApp { user: u, app, skew } => {
                let step = m.step().saturating_add_signed(i64::from(*skew));
                let Some(apps) = m.apps(*u) else {
                    continue;
                };
                let Some(i) = (!apps.is_empty()).then(|| usize::from(*app) % apps.len()) else {
                    continue;
                };
                let c = code(&apps[i].key, step);
                if engine
                    .confirm_otp(TENANT, user(*u), apps[i].id, &c, now)
                    .is_ok()
                {
                    let centre = step;
                    let a = &mut apps[i];
                    a.active = true;
                    let earliest = steps_showing(&a.key, &c, centre, WINDOW).into_iter().min();
                    a.spent = earliest.max(a.spent);
                }
            }
            Op::AddSecurityKey { user: u } => {
                let _ = engine.add_security_key(TENANT, user(*u));
            }
            Op::AddPhone {
                user: u,
                number,
                voice,
            } => {
                let kind = if *voice {
                    MethodKind::Voice
                } else {
                    MethodKind::Sms
                };
                let _ = engine.add_phone(TENANT, user(*u), kind, number);
            }
            Op::RemoveApp { user: u, app } => {
                let Some(apps) = m.apps(*u) else {
                    continue;
                };
                if apps.is_empty() {
                    continue;
                }
                let i = usize::from(*app) % apps.len();
                if engine.remove_method(TENANT, user(*u), apps[i].id).is_ok() {
                    apps.remove(i);
                }
            }
            Op::RemoveAllMethods { user: u } => {
                if engine.remove_all_methods(TENANT, user(*u)).is_ok()
                    && let Some(apps) = m.apps(*u)
                {
                    apps.clear();
                }
            }
            Op::Unlock { who } => {
                let (name, followed) = name(who);
                if engine.unlock(TENANT, &name).is_ok()
                    && let Some(i) = followed
                {
                    m.locks[i] = None;
                }
            }
            Op::CreateAppPassword { user: u, label } => {
                if let Ok((_, password)) = engine.create_app_password(TENANT, user(*u), label, now)
                {
                    m.last_app_password = Some(password.expose().to_owned());
                }
            }
            Op::Decide {
                who,
                at,
                purpose: p,
                first_factor,
                proof,
                remember,
                last_device,
            } => {
                let (name, followed) = name(who);
                let app_code;
                let answers: Vec<&str>;
                let proof_kind = match proof {
                    ProofChoice::None => 0,
                    ProofChoice::App { .. } | ProofChoice::Totp(_) => 1,
                    ProofChoice::Hotp(_) => 2,
                    ProofChoice::Sent(_) => 3,
                    ProofChoice::AppPassword(_) => 4,
                    ProofChoice::Answers(_) => 5,
                };
                // Owned copies, so the model can change while the request is alive.
                let (last_sent, last_app_password) =
                    (m.last_sent.clone(), m.last_app_password.clone());
                let device = if *last_device {
                    m.last_device.clone()
                } else {
                    None
                };
                let proof = match proof {
                    ProofChoice::None => None,
                    ProofChoice::App { app, skew } => {
                        let step = m.step().saturating_add_signed(i64::from(*skew));
                        app_code = followed
                            .and_then(|i| m.users[i].as_ref())
                            .filter(|apps| !apps.is_empty())
                            .map(|apps| code(&apps[usize::from(*app) % apps.len()].key, step))
                            .unwrap_or_else(|| "000000".to_owned());
                        Some(Proof::Totp(&app_code))
                    }
                    ProofChoice::Totp(c) => Some(Proof::Totp(c)),
                    ProofChoice::Hotp(c) => Some(Proof::Hotp {
                        code: c,
                        next: None,
                    }),
                    ProofChoice::Sent(c) => {
                        last_sent.as_ref().map(|(challenge, sent)| Proof::Sent {
                            challenge,
                            code: c.as_deref().unwrap_or(sent),
                        })
                    }
                    ProofChoice::AppPassword(p) => p
                        .as_deref()
                        .or(last_app_password.as_deref())
                        .map(Proof::AppPassword),
                    ProofChoice::Answers(a) => {
                        answers = a.iter().map(String::as_str).collect();
                        Some(Proof::SecurityAnswers(&answers))
                    }
                };
                let request = Request {
                    tenant: TENANT,
                    user: &name,
                    ip: ip(at),
                    purpose: purpose(*p),
                    first_factor: [FirstFactor::Ok, FirstFactor::Failed, FirstFactor::None]
                        [usize::from(*first_factor) % 3],
                    proof,
                    device_token: device.as_deref(),
                    remember_device: *remember,
                };
                let d = engine.decide(&request, now);
                check_shape(&d, false);
                if let Some(i) = followed {
                    let shape = (
                        request.ip,
                        request.purpose,
                        *first_factor % 3,
                        proof_kind,
                        request.device_token.is_some(),
                    );
                    observe_lock(&mut m, i, shape, &d);
                }
                if d.outcome == Outcome::Allow && d.method == Some(MethodKind::AuthenticatorApp) {
                    let Some(Proof::Totp(c)) = request.proof else {
                        panic!("an app proved the user without an app code: {d:?}");
                    };
                    if let Some(i) = followed {
                        let step = m.step();
                        let apps = m.users[i].as_mut().expect("an allowed user exists");
                        spend(apps, c, step);
                    }
                }
                if let Some(token) = &d.device_token {
                    m.last_device = Some(token.token.expose().to_owned());
                }
            }
            Op::Guesses {
                user: u,
                at,
                count,
                then_right_code,
            } => {
                let i = usize::from(*u) % USERS.len();
                let right = m.users[i]
                    .as_ref()
                    .and_then(|apps| apps.iter().find(|a| a.active))
                    .map(|app| code(&app.key, m.step()));
                let guesses =
                    (0..u32::from(*count % 16) + 1).map(|n| (wrong_code(&m, i, n), false));
                let codes: Vec<(String, bool)> = guesses
                    .chain(right.filter(|_| *then_right_code).map(|c| (c, true)))
                    .collect();
                for (c, is_right) in &codes {
                    let request = Request {
                        tenant: TENANT,
                        user: USERS[i],
                        ip: ip(at),
                        purpose: Purpose::SignIn,
                        first_factor: FirstFactor::Ok,
                        proof: Some(Proof::Totp(c)),
                        device_token: None,
                        remember_device: false,
                    };
                    let d = engine.decide(&request, now);
                    check_shape(&d, false);
                    let proved = d.method == Some(MethodKind::AuthenticatorApp);
                    // (From the office a password is enough, and the code is not looked at.)
                    assert!(
                        *is_right || !proved,
                        "a wrong code proved {}: {d:?}",
                        USERS[i]
                    );
                    observe_lock(&mut m, i, (request.ip, Purpose::SignIn, 0, 1, false), &d);
                    let step = m.step();
                    if proved && let Some(apps) = m.users[i].as_mut() {
                        spend(apps, c, step);
                    }
                }
            }
            Op::SendCode {
                who,
                at,
                purpose: p,
            } => {
                let name = name(who).0;
                let sent = engine.send_code(
                    &SendRequest {
                        tenant: TENANT,
                        user: &name,
                        ip: ip(at),
                        purpose: purpose(*p),
                        method: None,
                    },
                    now,
                );
                check_shape(&sent.decision, true);
                if let (Some(challenge), Some(delivery)) = (sent.challenge, sent.delivery) {
                    m.last_sent = Some((challenge.to_hex(), delivery.code.expose().to_owned()));
                }
            }
            Op::Advance { secs } => m.now += u64::from(*secs),
        }
        engine
            .check_invariants()
            .unwrap_or_else(|e| panic!("after {op:?}: {e}"));
        assert_eq!(engine.directory().len(), m.count, "after {op:?}");
    }
});
