//! No user enumeration, beyond equal answers: an unknown user's attempt performs the same
//! state-store operations, in the same order, as a known user's wrong attempt. (Time
//! itself is not asserted: the machine is shared and noisy. The operations are what time
//! is spent on besides the HMACs, and the phantom computes the same HMACs by
//! construction; see `decide.rs`.)

mod common;

use std::sync::Mutex;

use common::*;
use portvakt_core::lockout::{Domain, LockoutConfig};
use portvakt_core::policy::PhoneSettings;
use portvakt_core::secret::{Pepper, SecretDigest};
use portvakt_core::state::{
    Answer, ChallengeRecord, Effect, OtpState, PhoneKeys, Redeem, StoreSizes,
};
use portvakt_core::testing::SeededEntropy;
use portvakt_core::window::Rate;
use portvakt_core::{
    ChallengeId, Duration, Engine, FirstFactor, MemoryStore, MethodId, Proof, Purpose, SendRequest,
    StateStore, Subject, Timestamp, config,
};

/// Records which operations were called, with what kind of effect, and what they answered.
#[derive(Default)]
struct Recording {
    inner: MemoryStore,
    log: Mutex<Vec<String>>,
}

impl Recording {
    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn effect_kind(e: &Effect) -> &'static str {
    match e {
        Effect::Check => "check",
        Effect::Fail { .. } => "fail",
        Effect::Otp { .. } => "otp",
        Effect::Succeed => "succeed",
    }
}

impl StateStore for Recording {
    fn otp_state(&self, s: Subject, m: MethodId) -> OtpState {
        self.note("otp_state".into());
        self.inner.otp_state(s, m)
    }
    fn sign_in(
        &self,
        s: Subject,
        d: Domain,
        e: Effect,
        now: Timestamp,
        cfg: &LockoutConfig,
    ) -> Answer {
        let a = self.inner.sign_in(s, d, e, now, cfg);
        let answer = match a {
            Answer::Failed(f) | Answer::Replayed(f) => {
                format!("{f:?}").split(' ').next().unwrap_or("").to_owned()
            }
            other => format!("{other:?}")
                .split(' ')
                .next()
                .unwrap_or("")
                .to_owned(),
        };
        self.note(format!("sign_in {:?} {} -> {answer}", d, effect_kind(&e)));
        a
    }
    fn reserve_source(&self, src: u128, now: Timestamp, rate: Rate) -> Result<(), Duration> {
        self.note("reserve_source".into());
        self.inner.reserve_source(src, now, rate)
    }
    fn refund_source(&self, src: u128, now: Timestamp) {
        self.note("refund_source".into());
        self.inner.refund_source(src, now)
    }
    fn reserve_phone_send(
        &self,
        k: PhoneKeys,
        now: Timestamp,
        s: &PhoneSettings,
    ) -> Result<(), Duration> {
        let r = self.inner.reserve_phone_send(k, now, s);
        self.note(format!("reserve_phone_send -> {}", r.is_ok()));
        r
    }
    fn phone_blocked(&self, s: Subject, now: Timestamp) -> Option<Timestamp> {
        self.note("phone_blocked".into());
        self.inner.phone_blocked(s, now)
    }
    fn phone_failure(&self, s: Subject, now: Timestamp, p: &PhoneSettings) -> Option<Timestamp> {
        self.note("phone_failure".into());
        self.inner.phone_failure(s, now, p)
    }
    fn put_challenge(&self, id: ChallengeId, r: ChallengeRecord, now: Timestamp) {
        self.note("put_challenge".into());
        self.inner.put_challenge(id, r, now)
    }
    fn redeem_challenge(
        &self,
        id: ChallengeId,
        s: Subject,
        d: &SecretDigest,
        now: Timestamp,
    ) -> Redeem {
        let r = self.inner.redeem_challenge(id, s, d, now);
        self.note(format!("redeem_challenge -> {r:?}"));
        r
    }
    fn unlock(&self, s: Subject) {
        self.inner.unlock(s)
    }
    fn reset_drift(&self, s: Subject, m: MethodId) {
        self.inner.reset_drift(s, m)
    }
    fn raise_otp(&self, s: Subject, m: MethodId, next: u64) {
        self.inner.raise_otp(s, m, next)
    }
    fn forget(&self, s: Subject, m: Option<MethodId>) {
        self.inner.forget(s, m)
    }
    fn sizes(&self) -> StoreSizes {
        self.inner.sizes()
    }
    fn locked_subjects(&self, now: Timestamp) -> usize {
        self.inner.locked_subjects(now)
    }
}

fn engine() -> Engine<Recording> {
    let policy = config::load(KOMMUNE).unwrap();
    let e = Engine::new(
        policy,
        Recording::default(),
        Pepper::new([1; 32]),
        Box::new(SeededEntropy::new(5)),
    );
    e.add_user("kommune", "kari", &[], false).unwrap();
    e.import_totp(
        "kommune",
        "kari",
        &secret_for("kari"),
        Default::default(),
        true,
    )
    .unwrap();
    let phone = e
        .add_phone(
            "kommune",
            "kari",
            portvakt_core::directory::MethodKind::Sms,
            &phone_for("kari"),
        )
        .unwrap();
    let (ch, delivery) = e
        .start_confirmation("kommune", "kari", phone, at(T0 - 5))
        .unwrap()
        .unwrap();
    e.confirm_sent(
        "kommune",
        "kari",
        phone,
        ch,
        delivery.code.expose(),
        at(T0 - 5),
    )
    .unwrap();
    e.store().take();
    e
}

#[test]
fn an_unknown_user_costs_the_same_store_operations_as_a_wrong_code() {
    let e = engine();
    for i in 0..12u64 {
        let wrong = format!("{:06}", 400_000 + i);
        e.decide(&req("kari", HOME, Some(Proof::Totp(&wrong))), at(T0 + i));
        let known = e.store().take();
        e.decide(&req("nobody", HOME, Some(Proof::Totp(&wrong))), at(T0 + i));
        let unknown = e.store().take();
        assert_eq!(known, unknown, "wrong code {i}");
        assert!(!known.is_empty());
    }
    for ff in [FirstFactor::Failed, FirstFactor::Ok] {
        let mut r = req("kari", OFFICE, None);
        r.first_factor = ff;
        r.purpose = Purpose::PasswordReset;
        e.decide(&r, at(T0 + 100));
        let known = e.store().take();
        r.user = "nobody";
        e.decide(&r, at(T0 + 100));
        assert_eq!(known, e.store().take(), "reset without proof, {ff:?}");
    }
}

#[test]
fn sent_codes_cost_the_same_store_operations_for_an_unknown_user() {
    let e = engine();
    let send = |user| SendRequest {
        tenant: "kommune",
        user,
        ip: HOME.parse().unwrap(),
        purpose: Purpose::SignIn,
        method: None,
    };
    let k = e.send_code(&send("kari"), at(T0));
    let known_send = e.store().take();
    let u = e.send_code(&send("nobody"), at(T0));
    assert_eq!(known_send, e.store().take());
    let (kid, uid) = (k.challenge.unwrap().to_hex(), u.challenge.unwrap().to_hex());
    for i in 0..4u64 {
        let wrong = format!("{:06}", 123_000 + i);
        e.decide(
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
        let known = e.store().take();
        e.decide(
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
        assert_eq!(known, e.store().take(), "sent code {i}");
    }
}
