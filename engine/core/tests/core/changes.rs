//! The directory's seam: every change is a value taken by the change log before it is
//! applied. A directory rebuilt from those values (as bytes), or from a snapshot and the
//! values after it, is the same directory: the same users, ids and secrets, so the same
//! codes, app passwords and remembered devices work on it. A log that fails refuses the
//! change, and nothing of it is applied.

use std::sync::{Arc, Mutex};

use crate::common::*;
use portvakt_core::admin::{TotpSpec, UserInfo};
use portvakt_core::directory::change::{Change, ChangeLog};
use portvakt_core::directory::{DirectoryError, MethodKind};
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::state::StoreError;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{Engine, FirstFactor, MemoryStore, Outcome, Proof, Purpose, Reason, config};
use proptest::prelude::*;

/// Keeps every batch as bytes, as a durable or shared log would; fails while `failing`.
#[derive(Clone, Default)]
struct Log {
    batches: Arc<Mutex<Vec<Vec<u8>>>>,
    failing: Arc<Mutex<bool>>,
}

impl ChangeLog for Log {
    fn append(&self, changes: &[Change]) -> Result<(), StoreError> {
        if *self.failing.lock().unwrap() {
            return Err(StoreError::new("the log is down"));
        }
        let mut bytes = Vec::new();
        Change::encode_batch(changes, &mut bytes);
        self.batches.lock().unwrap().push(bytes);
        Ok(())
    }
}

impl Log {
    fn batches(&self) -> Vec<Vec<u8>> {
        self.batches.lock().unwrap().clone()
    }
    fn fail(&self, on: bool) {
        *self.failing.lock().unwrap() = on;
    }
}

/// An engine with the kommune policy and pepper 42; `seed` varies everything that is
/// only this process's (the directory's index hash, codes drawn later).
fn node(seed: u64) -> Engine {
    Engine::new(
        config::load(KOMMUNE).unwrap(),
        MemoryStore::default(),
        Pepper::new([42; 32]),
        Box::new(SeededEntropy::new(seed)),
    )
}

fn logged(seed: u64) -> (Engine, Log) {
    let log = Log::default();
    (node(seed).with_change_log(Box::new(log.clone())), log)
}

fn replay(e: &Engine, batches: &[Vec<u8>]) {
    for b in batches {
        let changes = Change::decode_batch(b).expect("a logged batch decodes");
        e.apply_changes(&changes).expect("a logged batch applies");
    }
}

const NAMES: [&str; 5] = ["kari", "ola", "Åse Øvrebø", "per", "tmp"];

fn infos(e: &Engine) -> Vec<(String, Option<UserInfo>)> {
    NAMES
        .iter()
        .map(|n| (n.to_string(), e.user_info("kommune", n).ok()))
        .collect()
}

/// What the first node does: every kind of directory change.
struct Made {
    app_password: String,
    device: String,
    kari_key: OtpKey,
}

fn first_half(e: &Engine) -> OtpKey {
    let now = at(T0);
    e.add_user("kommune", "kari", &[], false).unwrap();
    e.add_user("kommune", "ola", &["legekontor"], false)
        .unwrap();
    e.add_user("kommune", "Åse Øvrebø", &[], true).unwrap();
    e.add_user("kommune", "tmp", &[], false).unwrap();
    let enrolment = e
        .enroll_totp("kommune", "kari", TotpSpec::default())
        .unwrap();
    let secret = data_encoding::BASE32_NOPAD
        .decode(enrolment.secret_base32.expose().as_bytes())
        .unwrap();
    let key = OtpKey::new(Algorithm::Sha1, &secret);
    e.confirm_otp("kommune", "kari", enrolment.method, &code(&key, T0), now)
        .unwrap();
    add_active_phone(e, "kommune", "kari");
    let token = secret_for("ola-token");
    let hotp = e
        .add_hotp("kommune", "ola", &token, Digits::SIX, 5)
        .unwrap();
    let first = OtpKey::new(Algorithm::Sha1, &token).hotp(6, Digits::SIX);
    e.confirm_otp("kommune", "ola", hotp, &format!("{first:06}"), now)
        .unwrap();
    e.add_phone("kommune", "ola", MethodKind::Voice, "+4790000011")
        .unwrap();
    e.set_security_questions("kommune", "ola", &["Oslo", "Rex"])
        .unwrap();
    e.set_security_questions("kommune", "ola", &["Bergen"])
        .unwrap();
    e.add_email("kommune", "ola", "ola@kommune.no").unwrap();
    e.add_security_key("kommune", "Åse Øvrebø").unwrap();
    e.import_totp(
        "kommune",
        "Åse Øvrebø",
        &secret_for("åse"),
        TotpSpec::default(),
        true,
    )
    .unwrap();
    e.set_groups("kommune", "kari", &["Økonomi", "IT"]).unwrap();
    e.remove_user("kommune", "tmp").unwrap();
    key
}

fn second_half(e: &Engine, kari_key: OtpKey) -> Made {
    let now = at(T0 + 120);
    let (_, app_password) = e
        .create_app_password("kommune", "kari", "Mail on the phone", now)
        .unwrap();
    let (revoked, _) = e
        .create_app_password("kommune", "kari", "Old laptop", now)
        .unwrap();
    e.revoke_app_password("kommune", "kari", revoked).unwrap();
    // A device remembered by a decision goes through the log too.
    let c = code(&kari_key, now.as_secs());
    let mut r = req("kari", HOME, Some(Proof::Totp(&c)));
    r.remember_device = true;
    let d = e.decide(&r, now);
    assert_eq!(d.outcome, Outcome::Allow);
    let device = d.device_token.expect("a device token").token;
    let info = e.user_info("kommune", "ola").unwrap();
    let voice = info
        .methods
        .iter()
        .find(|m| m.1 == MethodKind::Voice)
        .unwrap()
        .0;
    e.remove_method("kommune", "ola", voice).unwrap();
    let questions = info
        .methods
        .iter()
        .find(|m| m.1 == MethodKind::SecurityQuestions)
        .unwrap()
        .0;
    e.set_default_method("kommune", "ola", questions).unwrap();
    e.set_mfa_opt_out("kommune", "per", true).unwrap_err();
    e.add_user("kommune", "per", &[], false).unwrap();
    e.remove_all_methods("kommune", "Åse Øvrebø").unwrap();
    e.set_passwordless("kommune", "Åse Øvrebø", false).unwrap();
    Made {
        app_password: app_password.expose().to_owned(),
        device: device.expose().to_owned(),
        kari_key,
    }
}

/// Checks that `b` works as `a` does for what `made` made.
fn same_directory(a: &Engine, b: &Engine, made: &Made) {
    assert_eq!(infos(a), infos(b));
    assert!(infos(a).iter().filter(|(_, i)| i.is_some()).count() == 4);
    // The same ids for what comes next.
    assert_eq!(
        a.add_user("kommune", "new", &[], false).unwrap(),
        b.add_user("kommune", "new", &[], false).unwrap()
    );
    let now = at(T0 + 600);
    // The app's code (b has its own state store: the code is fresh there).
    let c = code(&made.kari_key, now.as_secs());
    let d = b.decide(&req("kari", HOME, Some(Proof::Totp(&c))), now);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Allow, Reason::SecondFactorVerified)
    );
    // The app password, for a legacy client.
    let mut r = req("kari", OFFICE, Some(Proof::AppPassword(&made.app_password)));
    r.purpose = Purpose::LegacyProtocol;
    r.first_factor = FirstFactor::None;
    let d = b.decide(&r, now);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Allow, Reason::AppPasswordVerified)
    );
    // The remembered device.
    let mut r = req("kari", HOME, None);
    r.device_token = Some(&made.device);
    let d = b.decide(&r, now);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Allow, Reason::TrustedDevice)
    );
    // The token's counter lives in the state store, not the directory: b's store has not
    // seen the first code, a's has.
    let token = OtpKey::new(Algorithm::Sha1, &secret_for("ola-token"));
    let next = format!("{:06}", token.hotp(7, Digits::SIX));
    let d = a.decide(
        &req(
            "ola",
            HOME,
            Some(Proof::Hotp {
                code: &next,
                next: None,
            }),
        ),
        now,
    );
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
}

#[test]
fn a_directory_rebuilt_from_its_changes_is_the_same_directory() {
    let (a, log) = logged(1);
    let key = first_half(&a);
    let made = second_half(&a, key);
    let b = node(99);
    replay(&b, &log.batches());
    same_directory(&a, &b, &made);
}

#[test]
fn a_snapshot_and_the_changes_after_it_rebuild_the_directory() {
    let (a, log) = logged(1);
    let key = first_half(&a);
    let snapshot = a.snapshot();
    let taken = log.batches().len();
    let made = second_half(&a, key);
    // The snapshot as bytes, as a store keeps it.
    let mut bytes = Vec::new();
    Change::encode_batch(&snapshot, &mut bytes);
    let snapshot = Change::decode_batch(&bytes).unwrap();
    let mut again = Vec::new();
    Change::encode_batch(&snapshot, &mut again);
    assert_eq!(again, bytes, "one form per snapshot");
    let c = node(5);
    c.apply_changes(&snapshot).unwrap();
    replay(&c, &log.batches()[taken..]);
    same_directory(&a, &c, &made);
    // And a snapshot of the rebuilt directory is the first's, byte for byte.
    let (mut x, mut y) = (Vec::new(), Vec::new());
    Change::encode_batch(&a.snapshot(), &mut x);
    Change::encode_batch(&c.snapshot(), &mut y);
    assert_eq!(x, y);
}

#[test]
fn a_failing_log_refuses_the_change_and_nothing_of_it_is_applied() {
    let (e, log) = logged(1);
    let key = first_half(&e);
    let now = at(T0 + 120);
    let before = infos(&e);
    let snapshot = |e: &Engine| {
        let mut b = Vec::new();
        Change::encode_batch(&e.snapshot(), &mut b);
        b
    };
    let whole = snapshot(&e);
    fn store<T>(r: Result<T, DirectoryError>) -> bool {
        matches!(r, Err(DirectoryError::Store(_)))
    }
    log.fail(true);
    let ola = e.user_info("kommune", "ola").unwrap();
    let m = ola.methods[0].0;
    let refused = [
        store(e.add_user("kommune", "new", &[], false)),
        store(e.remove_user("kommune", "ola")),
        store(e.set_groups("kommune", "ola", &["it"])),
        store(e.set_passwordless("kommune", "ola", true)),
        store(
            e.enroll_totp("kommune", "ola", TotpSpec::default())
                .map(|_| ()),
        ),
        store(e.add_phone("kommune", "ola", MethodKind::Sms, "+4790000099")),
        store(e.set_security_questions("kommune", "ola", &["Tromsø"])),
        store(e.remove_method("kommune", "ola", m)),
        store(e.remove_all_methods("kommune", "ola")),
        store(e.create_app_password("kommune", "kari", "x", now)),
        store(e.revoke_devices("kommune", "kari", None)),
    ];
    assert!(refused.iter().all(|r| *r), "{refused:?}");
    assert!(e.store_errors() >= refused.len() as u64);
    assert_eq!(infos(&e), before);
    // Past the batch's count and the next user id (a refused user burnt one).
    assert_eq!(snapshot(&e)[8..], whole[8..], "no user changed");
    // A sign-in that asks to remember the device is still allowed, without a token.
    let c = code(&key, now.as_secs());
    let mut r = req("kari", HOME, Some(Proof::Totp(&c)));
    r.remember_device = true;
    let d = e.decide(&r, now);
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d.device_token.is_none());
    // Back up: the burnt user id is not given out again.
    log.fail(false);
    let id = e.add_user("kommune", "new", &[], false).unwrap();
    let b = node(3);
    replay(&b, &log.batches());
    assert_eq!(b.user_info("kommune", "new").unwrap().id, id);
    assert!(b.add_user("kommune", "newer", &[], false).unwrap().0 > id.0);
}

#[test]
fn a_change_that_does_not_fit_is_refused_on_replay() {
    let (a, log) = logged(1);
    first_half(&a);
    let batches = log.batches();
    let b = node(2);
    replay(&b, &batches);
    // The same batches again: every user exists already.
    let first = Change::decode_batch(&batches[0]).unwrap();
    assert_eq!(b.apply_changes(&first), Err(DirectoryError::UserExists));
    // Another name under an id in use: refused, and the user with that id stays.
    let kari = b.user_info("kommune", "kari").unwrap();
    let mut other = batches[0].clone();
    let at = other.windows(4).position(|w| w == b"kari").unwrap();
    other[at..at + 4].copy_from_slice(b"kara");
    let other = Change::decode_batch(&other).unwrap();
    assert_eq!(b.apply_changes(&other), Err(DirectoryError::UserExists));
    assert_eq!(b.user_info("kommune", "kari").unwrap(), kari);
    assert!(b.user_info("kommune", "kara").is_err());
    // A method for a user nobody has.
    let c = node(2);
    let later = batches
        .iter()
        .map(|b| Change::decode_batch(b).unwrap())
        .find(|b| b.iter().any(|c| c.kind() == "add_method"))
        .unwrap();
    assert_eq!(c.apply_changes(&later), Err(DirectoryError::UnknownUser));
}

/// The batches of [`first_half`], made once.
static LOGGED: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(|| {
    let (a, log) = logged(1);
    first_half(&a);
    log.batches()
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Bytes that are not a batch of changes are refused, never a panic; the ones that are
    /// read back canonically.
    #[test]
    fn any_bytes_are_a_batch_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        if let Ok(changes) = Change::decode_batch(&bytes) {
            let mut again = Vec::new();
            Change::encode_batch(&changes, &mut again);
            prop_assert_eq!(again, bytes);
        }
    }

    /// A logged batch with one byte changed is refused or is another valid batch; it
    /// never panics.
    #[test]
    fn a_damaged_batch_is_refused_or_canonical(at in any::<prop::sample::Index>(), to in any::<u8>()) {
        for batch in LOGGED.iter() {
            let mut bad = batch.clone();
            let i = at.index(bad.len());
            bad[i] = to;
            if let Ok(changes) = Change::decode_batch(&bad) {
                let mut again = Vec::new();
                Change::encode_batch(&changes, &mut again);
                prop_assert_eq!(again, bad);
            }
        }
    }
}
