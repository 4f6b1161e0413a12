//! Helpers for tests and benchmarks: deterministic randomness, a manual clock, and a store
//! that fails on purpose.
//!
//! Not for production: [`SeededEntropy`] is predictable by design.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::id::{ChallengeId, Subject};
use crate::secret::Entropy;
use crate::state::{
    ChallengeRecord, Counter, CounterKey, StateStore, StoreError, StoreSizes, UserState,
};
use crate::time::{Duration, Timestamp};

/// Deterministic "randomness" (SplitMix64 over an atomic counter), so tests and benches
/// can be replayed exactly. Predictable: never use it to serve real users.
#[derive(Debug)]
pub struct SeededEntropy(AtomicU64);

impl SeededEntropy {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut z = self
                .0
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
                .wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            for (b, v) in chunk.iter_mut().zip(z.to_le_bytes()) {
                *b = v;
            }
        }
    }
}

/// A clock for tests: it moves only when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicU64::new(start.as_millis()))
    }

    /// The time it shows.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }

    /// Moves it forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis(), Ordering::SeqCst);
    }
}

/// When [`Faulty`] fails a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Never.
    Never,
    /// The `n`-th call from now (0: the next), before the call reaches the store: the
    /// store is unchanged, as when a request never arrives.
    Before(u64),
    /// The `n`-th call from now, after the store has done it: the store is changed, as
    /// when an answer is lost on its way back.
    After(u64),
}

/// A store that fails on purpose, for testing what a failing store does to decisions: it
/// passes every call to `inner` and fails the one [`Fault`] names.
#[derive(Debug)]
pub struct Faulty<S> {
    inner: S,
    calls: AtomicU64,
    fault: std::sync::Mutex<(Fault, u64)>,
    ops: std::sync::Mutex<Vec<&'static str>>,
}

impl<S> Faulty<S> {
    /// `inner`, failing nothing yet.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            calls: AtomicU64::new(0),
            fault: std::sync::Mutex::new((Fault::Never, 0)),
            ops: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Fails as `fault` says, counting calls from now.
    pub fn set(&self, fault: Fault) {
        let mut f = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        *f = (fault, self.calls.load(Ordering::SeqCst));
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The operation of every call so far, in order (`update_subject`, `update_counter(source)`, ...).
    pub fn ops(&self) -> Vec<&'static str> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Runs one call through the fault: `Err` instead of it, or `Err` after it.
    fn call<T>(
        &self,
        name: &'static str,
        op: impl FnOnce(&S) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name);
        let (fault, from) = *self.fault.lock().unwrap_or_else(|e| e.into_inner());
        let failed = || StoreError::new(format!("injected fault at call {n}"));
        match fault {
            Fault::Before(k) if n == from + k => Err(failed()),
            Fault::After(k) if n == from + k => op(&self.inner).and_then(|_| Err(failed())),
            _ => op(&self.inner),
        }
    }
}

impl<S: StateStore> StateStore for Faulty<S> {
    fn read_subject<R>(
        &self,
        subject: Subject,
        f: impl FnOnce(Option<&UserState>) -> R,
    ) -> Result<R, StoreError> {
        self.call("read_subject", |s| s.read_subject(subject, f))
    }
    fn update_subject<R>(
        &self,
        subject: Subject,
        now: Timestamp,
        f: impl FnMut(&mut UserState) -> R,
    ) -> Result<R, StoreError> {
        self.call("update_subject", |s| s.update_subject(subject, now, f))
    }
    fn read_counter<R>(
        &self,
        key: CounterKey,
        f: impl FnOnce(Option<&Counter>) -> R,
    ) -> Result<R, StoreError> {
        self.call(counter_op("read", key), |s| s.read_counter(key, f))
    }
    fn update_counter<R>(
        &self,
        key: CounterKey,
        now: Timestamp,
        f: impl FnMut(&mut Counter) -> R,
    ) -> Result<R, StoreError> {
        self.call(counter_op("update", key), |s| s.update_counter(key, now, f))
    }
    fn update_challenge<R>(
        &self,
        id: ChallengeId,
        now: Timestamp,
        f: impl FnMut(&mut Option<ChallengeRecord>) -> R,
    ) -> Result<R, StoreError> {
        self.call("update_challenge", |s| s.update_challenge(id, now, f))
    }
    fn sizes(&self) -> Result<StoreSizes, StoreError> {
        self.call("sizes", |s| s.sizes())
    }
    fn locked_subjects(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.call("locked_subjects", |s| s.locked_subjects(now))
    }
}

/// The name [`Faulty::ops`] gives a counter call: what it does and to which budget.
fn counter_op(what: &str, key: CounterKey) -> &'static str {
    match (what, key) {
        ("read", CounterKey::Source(_)) => "read_counter(source)",
        ("read", CounterKey::Number(_)) => "read_counter(number)",
        ("read", CounterKey::Tenant(_)) => "read_counter(tenant)",
        (_, CounterKey::Source(_)) => "update_counter(source)",
        (_, CounterKey::Number(_)) => "update_counter(number)",
        (_, CounterKey::Tenant(_)) => "update_counter(tenant)",
    }
}

/// A software security key for tests and benches: an ES256 key pair and a signature
/// counter, making the browser's JSON for a registration and for sign-ins, as a FIDO2 key
/// behind `navigator.credentials` would. Not a real authenticator: it signs whatever it is
/// asked, for whatever origin it is told.
pub struct SoftKey {
    key: ring::signature::EcdsaKeyPair,
    id: Vec<u8>,
    counter: std::sync::atomic::AtomicU32,
    /// The origin it reports (the page's, in a browser).
    pub origin: String,
    /// Whether it says the user was verified (a PIN or a fingerprint on the key).
    pub user_verified: bool,
    /// Whether it counts its signatures (some keys keep no counter: always 0).
    pub counts: bool,
}

// A test helper: a broken key pair or options it cannot read end the test, loudly.
#[allow(clippy::panic, clippy::indexing_slicing)]
impl SoftKey {
    /// A new key, with credential id `id`, reporting `origin`.
    pub fn new(id: &[u8], origin: &str) -> Self {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .unwrap_or_else(|_| panic!("a P-256 key pair"));
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap_or_else(|_| panic!("a P-256 key pair"));
        Self {
            key,
            id: id.to_vec(),
            counter: std::sync::atomic::AtomicU32::new(0),
            origin: origin.to_owned(),
            user_verified: true,
            counts: true,
        }
    }

    /// Sets the signature counter (a clone of a key starts where the original was).
    pub fn set_counter(&self, n: u32) {
        self.counter.store(n, Ordering::SeqCst);
    }

    fn options(json: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("options JSON: {e}"));
        v["publicKey"].clone()
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    fn auth_data(&self, rp_id: &str, attested: bool) -> Vec<u8> {
        use sha2::Digest;
        let mut a = sha2::Sha256::digest(rp_id.as_bytes()).to_vec();
        let mut flags = 0x01u8;
        if self.user_verified {
            flags |= 0x04;
        }
        if attested {
            flags |= 0x40;
        }
        a.push(flags);
        let counter = if self.counts {
            self.counter.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            0
        };
        a.extend_from_slice(&counter.to_be_bytes());
        if attested {
            use ciborium::Value;
            use ring::signature::KeyPair;
            a.extend_from_slice(&[0u8; 16]);
            a.extend_from_slice(&u16::try_from(self.id.len()).unwrap_or(0).to_be_bytes());
            a.extend_from_slice(&self.id);
            let point = self.key.public_key().as_ref();
            let cose = Value::Map(vec![
                (Value::from(1), Value::from(2)),
                (Value::from(3), Value::from(-7)),
                (Value::from(-1), Value::from(1)),
                (Value::from(-2), Value::Bytes(point[1..33].to_vec())),
                (Value::from(-3), Value::Bytes(point[33..].to_vec())),
            ]);
            ciborium::into_writer(&cose, &mut a).unwrap_or_else(|e| panic!("CBOR: {e}"));
        }
        a
    }

    /// The browser's JSON for `navigator.credentials.create(options)`.
    pub fn register(&self, options: &str) -> String {
        use ciborium::Value;
        use data_encoding::BASE64URL_NOPAD as B64;
        let o = Self::options(options);
        let challenge = o["challenge"].as_str().unwrap_or_default();
        let rp_id = o["rp"]["id"].as_str().unwrap_or_default();
        let client = self.client_data("webauthn.create", challenge);
        let object = Value::Map(vec![
            (Value::from("fmt"), Value::from("none")),
            (Value::from("attStmt"), Value::Map(vec![])),
            (
                Value::from("authData"),
                Value::Bytes(self.auth_data(rp_id, true)),
            ),
        ]);
        let mut att = Vec::new();
        ciborium::into_writer(&object, &mut att).unwrap_or_else(|e| panic!("CBOR: {e}"));
        serde_json::json!({
            "id": B64.encode(&self.id),
            "rawId": B64.encode(&self.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(&client),
                "attestationObject": B64.encode(&att),
                "transports": ["usb"],
            },
            "authenticatorAttachment": "cross-platform",
            "clientExtensionResults": {},
        })
        .to_string()
    }

    /// The browser's JSON for `navigator.credentials.get(options)`, signed.
    pub fn sign(&self, options: &str) -> String {
        use data_encoding::BASE64URL_NOPAD as B64;
        use sha2::Digest;
        let o = Self::options(options);
        let challenge = o["challenge"].as_str().unwrap_or_default();
        let rp_id = o["rpId"].as_str().unwrap_or_default();
        let client = self.client_data("webauthn.get", challenge);
        let auth = self.auth_data(rp_id, false);
        let mut signed = auth.clone();
        signed.extend_from_slice(&sha2::Sha256::digest(&client));
        let signature = self
            .key
            .sign(&ring::rand::SystemRandom::new(), &signed)
            .unwrap_or_else(|_| panic!("an ECDSA signature"));
        serde_json::json!({
            "id": B64.encode(&self.id),
            "rawId": B64.encode(&self.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(&client),
                "authenticatorData": B64.encode(&auth),
                "signature": B64.encode(signature.as_ref()),
                "userHandle": null,
            },
            "authenticatorAttachment": "cross-platform",
            "clientExtensionResults": {},
        })
        .to_string()
    }
}
