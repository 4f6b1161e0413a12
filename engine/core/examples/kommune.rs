//! The municipality's sign-in rules, decided by the core: enrolment, the office network,
//! home, the doctors' office, a replayed code, a lockout, an unknown user and an SMS code.
//!
//! Runs on the embedded `examples/kommune.toml` with a fixed clock and seeded randomness,
//! so every run prints the same decisions:
//!
//! ```sh
//! cargo run -p portvakt-core --example kommune
//! ```

use portvakt_core::admin::TotpSpec;
use portvakt_core::directory::MethodKind;
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{
    Decision, Engine, FirstFactor, MemoryStore, Proof, Purpose, Request, SendRequest, Timestamp,
    config,
};

const POLICY: &str = include_str!("../../../examples/kommune.toml");
const OFFICE: &str = "10.20.4.17";
const HOME: &str = "203.0.113.50";

fn show(what: &str, d: &Decision) {
    let mut line = format!(
        "{what:<58} {:<9} {:<24} rule={} location={}",
        d.outcome.as_str(),
        d.reason.as_str(),
        d.rule,
        d.location
    );
    if !d.methods.is_empty() {
        let kinds: Vec<&str> = d.methods.iter().map(|m| m.kind.as_str()).collect();
        line.push_str(&format!(" methods={}", kinds.join(",")));
    }
    if let Some(r) = d.retry_after {
        line.push_str(&format!(" retry_after={}s", r.as_secs_ceil()));
    }
    println!("{line}");
}

fn request<'a>(user: &'a str, ip: &str, proof: Option<Proof<'a>>) -> Request<'a> {
    Request {
        tenant: "kommune",
        user,
        ip: ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}")),
        purpose: Purpose::SignIn,
        first_factor: FirstFactor::Ok,
        proof,
        device_token: None,
        remember_device: false,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = config::load(POLICY)?;
    let engine = Engine::new(
        policy,
        MemoryStore::default(),
        Pepper::new([7; 32]),
        Box::new(SeededEntropy::new(2026)),
    );
    let t0 = 1_795_000_000u64; // a fixed "now", in seconds
    let at = Timestamp::from_secs;

    // Enrol Kari (an office worker) and Lege (in the doctors' office) with an
    // authenticator app each, proved with its first code, and a phone each.
    let mut keys = Vec::new();
    for (user, groups, phone) in [
        ("kari@kommune.no", &[][..], "+47 912 34 567"),
        ("lege@kommune.no", &["legekontor"][..], "+47 913 45 678"),
    ] {
        engine.add_user("kommune", user, groups, false)?;
        let enrol = engine.enroll_totp("kommune", user, TotpSpec::default())?;
        let secret = data_encoding::BASE32_NOPAD.decode(enrol.secret_base32.expose().as_bytes())?;
        let key = OtpKey::new(Algorithm::Sha1, &secret);
        let first = format!("{:06}", key.hotp((t0 - 60) / 30, Digits::SIX));
        engine.confirm_otp("kommune", user, enrol.method, &first, at(t0 - 60))?;
        let phone = engine.add_phone("kommune", user, MethodKind::Sms, phone)?;
        if let Ok((challenge, delivery)) =
            engine.start_confirmation("kommune", user, phone, at(t0 - 50))?
        {
            engine.confirm_sent(
                "kommune",
                user,
                phone,
                challenge,
                delivery.code.expose(),
                at(t0 - 50),
            )?;
        }
        keys.push(key);
        println!("enrolled {user}: authenticator app and SMS, both proved");
    }
    let code = |key: &OtpKey, secs: u64| format!("{:06}", key.hotp(secs / 30, Digits::SIX));
    println!();

    let kari = "kari@kommune.no";
    show(
        "Kari, password ok, on the municipal network",
        &engine.decide(&request(kari, OFFICE, None), at(t0)),
    );
    show(
        "Kari, password ok, from home",
        &engine.decide(&request(kari, HOME, None), at(t0)),
    );
    let c = code(&keys[0], t0 + 5);
    show(
        "Kari, from home, with her app's code",
        &engine.decide(&request(kari, HOME, Some(Proof::Totp(&c))), at(t0 + 5)),
    );
    show(
        "... the same code again",
        &engine.decide(&request(kari, HOME, Some(Proof::Totp(&c))), at(t0 + 8)),
    );
    let lege = "lege@kommune.no";
    show(
        "Lege, on the municipal network (doctors' office)",
        &engine.decide(&request(lege, OFFICE, None), at(t0)),
    );

    // Someone abroad guesses Kari's codes.
    let mut last = None;
    for i in 0..10u64 {
        let guess = format!("{:06}", 100_000 + i * 7_919);
        last = Some(engine.decide(
            &request(kari, HOME, Some(Proof::Totp(&guess))),
            at(t0 + 60 + i),
        ));
    }
    if let Some(d) = &last {
        show("ten wrong codes from outside: the tenth", d);
    }
    let c = code(&keys[0], t0 + 75);
    show(
        "... then the right code, still inside the lock",
        &engine.decide(&request(kari, HOME, Some(Proof::Totp(&c))), at(t0 + 75)),
    );
    show(
        "... while Kari in the office is not locked out",
        &engine.decide(&request(kari, OFFICE, None), at(t0 + 76)),
    );
    show(
        "an unknown user with a wrong code",
        &engine.decide(
            &request("nobody@kommune.no", HOME, Some(Proof::Totp("123456"))),
            at(t0 + 80),
        ),
    );
    show(
        "Kari with a wrong code (for comparison)",
        &engine.decide(
            &request("kari@kommune.no", HOME, Some(Proof::Totp("123456"))),
            at(t0 + 3_800),
        ),
    );

    // Lege asks for an SMS code and uses it.
    let send = SendRequest {
        tenant: "kommune",
        user: lege,
        ip: HOME.parse()?,
        purpose: Purpose::SignIn,
        method: None,
    };
    let sent = engine.send_code(&send, at(t0 + 100));
    show("Lege asks for an SMS code", &sent.decision);
    if let (Some(challenge), Some(delivery)) = (sent.challenge, sent.delivery) {
        println!(
            "    (deliver to {} by {:?})",
            delivery.destination, delivery.channel
        );
        let id = challenge.to_hex();
        let proof = Proof::Sent {
            challenge: &id,
            code: delivery.code.expose(),
        };
        show(
            "Lege types the SMS code",
            &engine.decide(&request(lege, HOME, Some(proof)), at(t0 + 130)),
        );
    }
    Ok(())
}
