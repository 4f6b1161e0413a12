//! Security keys (FIDO2/WebAuthn): the relying party's checks, in one place.
//!
//! What a frontend hands over is the browser's own JSON (`PublicKeyCredential.toJSON()`),
//! unchanged; what it hands the browser is this module's options JSON, unchanged. The
//! checks are WebAuthn Level 2's (§7.1 registration, §7.2 authentication) for a relying
//! party that does not evaluate attestation:
//!
//! - the client data is of the right type, for a challenge this server issued to this
//!   user and still open (spent by this check, once), from an allowed origin, not
//!   cross-origin;
//! - the authenticator data is for this relying party (its id's SHA-256), with the user
//!   present, and the user verified where the ceremony asked for it (passwordless);
//! - at registration: a credential public key of an algorithm offered (ES256, EdDSA or
//!   RS256), whose id is not already this user's;
//! - at sign-in: a credential of this user's, whose signature over the authenticator data
//!   and the client data's hash verifies (`ring`), and whose signature counter has moved
//!   on (`Effect::KeyCounter` in the user's record: a counter that stands still or goes
//!   back means a cloned key or a replay, and counts as a failure).
//!
//! The attestation statement is not evaluated: registration asks for none, and any format
//! the authenticator sends anyway is accepted without checking who made the key (a
//! deployment that must only accept certain models needs attestation trust roots, which
//! this version does not keep). The key proves itself at every sign-in.

use data_encoding::BASE64URL_NOPAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::id::ChallengeId;

/// The longest credential id (WebAuthn: at most 1,023 bytes).
pub const MAX_CREDENTIAL_ID: usize = 1023;
/// The longest browser JSON taken (a registration with its attestation statement).
pub const MAX_RESPONSE: usize = 12 * 1024;
/// How long a ceremony's challenge is open.
pub const CHALLENGE_TTL: crate::Duration = crate::Duration::from_secs(300);

/// The COSE algorithms offered, in order of preference.
const ES256: i64 = -7;
const EDDSA: i64 = -8;
const RS256: i64 = -257;

/// A credential's public key, as the authenticator gave it at registration.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// ECDSA on P-256 with SHA-256: the uncompressed point (0x04, x, y).
    Es256(Box<[u8; 65]>),
    /// Ed25519.
    EdDsa([u8; 32]),
    /// RSASSA-PKCS1-v1_5 with SHA-256: modulus and exponent, big-endian.
    Rs256 {
        /// The modulus (2,048 to 8,192 bits).
        n: Box<[u8]>,
        /// The public exponent.
        e: Box<[u8]>,
    },
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Es256(_) => "Es256",
            Self::EdDsa(_) => "EdDsa",
            Self::Rs256 { .. } => "Rs256",
        })
    }
}

impl PublicKey {
    /// Whether `signature` is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature as sig;
        match self {
            Self::Es256(point) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_ASN1, point.as_slice())
                    .verify(message, signature)
                    .is_ok()
            }
            Self::EdDsa(key) => sig::UnparsedPublicKey::new(&sig::ED25519, key)
                .verify(message, signature)
                .is_ok(),
            Self::Rs256 { n, e } => sig::RsaPublicKeyComponents { n, e }
                .verify(&sig::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
        }
    }

    /// The key from a COSE_Key (RFC 9052, 9053), refusing anything else.
    fn from_cose(value: &ciborium::Value) -> Result<Self, Refusal> {
        let map = value
            .as_map()
            .ok_or(Refusal::Malformed("the credential key is not a COSE map"))?;
        let get = |label: i64| {
            map.iter().find_map(|(k, v)| {
                (k.as_integer().and_then(|i| i64::try_from(i).ok()) == Some(label)).then_some(v)
            })
        };
        let int = |label| {
            get(label)
                .and_then(|v| v.as_integer())
                .and_then(|i| i64::try_from(i).ok())
        };
        let bytes = |label| get(label).and_then(|v| v.as_bytes());
        let bad = Refusal::Malformed("the credential key is not one of ES256, EdDSA, RS256");
        match (int(1), int(3)) {
            // EC2, ES256, P-256.
            (Some(2), Some(ES256)) if int(-1) == Some(1) => {
                let (x, y) = (bytes(-2).ok_or(bad)?, bytes(-3).ok_or(bad)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(bad);
                }
                let mut point = [0u8; 65];
                point[0] = 4;
                point[1..33].copy_from_slice(x);
                point[33..].copy_from_slice(y);
                Ok(Self::Es256(Box::new(point)))
            }
            // OKP, EdDSA, Ed25519.
            (Some(1), Some(EDDSA)) if int(-1) == Some(6) => {
                let x = bytes(-2).ok_or(bad)?;
                Ok(Self::EdDsa(x.as_slice().try_into().map_err(|_| bad)?))
            }
            // RSA, RS256.
            (Some(3), Some(RS256)) => {
                let (n, e) = (bytes(-1).ok_or(bad)?, bytes(-2).ok_or(bad)?);
                if !(256..=1024).contains(&n.len()) || e.is_empty() || e.len() > 8 {
                    return Err(bad);
                }
                Ok(Self::Rs256 {
                    n: n.clone().into_boxed_slice(),
                    e: e.clone().into_boxed_slice(),
                })
            }
            _ => Err(bad),
        }
    }

    pub(crate) fn put(&self, p: &mut crate::record::Put<'_>) {
        match self {
            Self::Es256(point) => {
                p.u8(1);
                p.bytes(point.as_slice());
            }
            Self::EdDsa(key) => {
                p.u8(2);
                p.bytes(key);
            }
            Self::Rs256 { n, e } => {
                p.u8(3);
                p.blob(n);
                p.blob(e);
            }
        }
    }

    pub(crate) fn get(g: &mut crate::record::Get<'_>) -> Result<Self, crate::record::RecordError> {
        use crate::record::RecordError;
        Ok(match g.u8()? {
            1 => {
                let point: [u8; 65] = g.array()?;
                if point[0] != 4 {
                    return Err(RecordError("a P-256 key that is not an uncompressed point"));
                }
                Self::Es256(Box::new(point))
            }
            2 => Self::EdDsa(g.array()?),
            3 => {
                let n = g.blob()?;
                let e = g.blob()?;
                if !(256..=1024).contains(&n.len()) || e.is_empty() || e.len() > 8 {
                    return Err(RecordError("an RSA key of the wrong size"));
                }
                Self::Rs256 {
                    n: n.into(),
                    e: e.into(),
                }
            }
            _ => return Err(RecordError("an unknown kind of security-key public key")),
        })
    }
}

/// Which ceremony a challenge is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ceremony {
    /// A registration (`navigator.credentials.create`); otherwise a sign-in.
    pub register: bool,
    /// Whether the user must be verified (a PIN or biometric on the key): passwordless.
    pub user_verification: bool,
}

/// A registered security key: its credential id and public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The credential id the authenticator chose.
    pub id: Box<[u8]>,
    /// Its public key.
    pub key: PublicKey,
}

/// Why a ceremony's response was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not the JSON, base64url, CBOR or layout WebAuthn says.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// Well-formed, but it does not hold: the wrong ceremony, origin or relying party, no
    /// user presence or verification, an unknown credential, a bad signature.
    #[error("refused: {0}")]
    Invalid(&'static str),
}

/// A tenant's relying party: its id (a domain) and the origins its pages are served from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelyingParty {
    /// The relying party id (`kommune.no`).
    pub id: String,
    /// Its name, as browsers show it.
    pub name: String,
    /// Origins the browser may report (`https://login.kommune.no`).
    pub origins: Vec<String>,
}

impl RelyingParty {
    fn id_hash(&self) -> [u8; 32] {
        Sha256::digest(self.id.as_bytes()).into()
    }
}

/// A new challenge: its first 16 bytes are the record's id (so the browser's response
/// finds it), the rest random. Both are unpredictable.
pub(crate) fn new_challenge(entropy: &dyn crate::secret::Entropy) -> [u8; 32] {
    let mut c = [0u8; 32];
    entropy.fill(&mut c);
    c
}

/// The record id of a challenge.
pub(crate) fn record_id(challenge: &[u8; 32]) -> ChallengeId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&challenge[..16]);
    ChallengeId(id)
}

fn b64(bytes: &[u8]) -> String {
    BASE64URL_NOPAD.encode(bytes)
}

fn unb64(field: &'static str, s: &str) -> Result<Vec<u8>, Refusal> {
    // Browsers send base64url without padding; some libraries pad.
    BASE64URL_NOPAD
        .decode(s.trim_end_matches('=').as_bytes())
        .map_err(|_| Refusal::Malformed(field))
}

/// The options for `navigator.credentials.create()`, as JSON
/// (`PublicKeyCredential.parseCreationOptionsFromJSON` reads it).
pub(crate) fn creation_options(
    rp: &RelyingParty,
    user_handle: &[u8],
    user_name: &str,
    challenge: &[u8; 32],
    exclude: &[&[u8]],
    require_uv: bool,
) -> String {
    serde_json::json!({
        "publicKey": {
            "rp": { "id": rp.id, "name": rp.name },
            "user": { "id": b64(user_handle), "name": user_name, "displayName": user_name },
            "challenge": b64(challenge),
            "pubKeyCredParams": [
                { "type": "public-key", "alg": ES256 },
                { "type": "public-key", "alg": EDDSA },
                { "type": "public-key", "alg": RS256 },
            ],
            "timeout": CHALLENGE_TTL.as_millis(),
            "excludeCredentials": exclude
                .iter()
                .map(|id| serde_json::json!({ "type": "public-key", "id": b64(id) }))
                .collect::<Vec<_>>(),
            "authenticatorSelection": {
                "residentKey": "discouraged",
                "userVerification": if require_uv { "required" } else { "preferred" },
            },
            "attestation": "none",
        }
    })
    .to_string()
}

/// The options for `navigator.credentials.get()`, as JSON
/// (`PublicKeyCredential.parseRequestOptionsFromJSON` reads it).
pub(crate) fn request_options(
    rp: &RelyingParty,
    challenge: &[u8; 32],
    allow: &[&[u8]],
    require_uv: bool,
) -> String {
    serde_json::json!({
        "publicKey": {
            "challenge": b64(challenge),
            "rpId": rp.id,
            "timeout": CHALLENGE_TTL.as_millis(),
            "allowCredentials": allow
                .iter()
                .map(|id| serde_json::json!({ "type": "public-key", "id": b64(id) }))
                .collect::<Vec<_>>(),
            "userVerification": if require_uv { "required" } else { "preferred" },
        }
    })
    .to_string()
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(default, rename = "crossOrigin")]
    cross_origin: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(default)]
    attestation_object: Option<String>,
    #[serde(default)]
    authenticator_data: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    user_handle: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Browser {
    raw_id: String,
    #[serde(rename = "type")]
    kind: String,
    response: Response,
}

/// A browser response, parsed: the parts both ceremonies check.
pub(crate) struct Parsed {
    raw_id: Vec<u8>,
    client_data: Vec<u8>,
    client: ClientData,
    /// The challenge the client data names.
    pub(crate) challenge: [u8; 32],
    response: Response,
}

/// Parses the browser's JSON as far as finding its challenge.
pub(crate) fn parse(json: &str) -> Result<Parsed, Refusal> {
    if json.len() > MAX_RESPONSE {
        return Err(Refusal::Malformed("the response is too long"));
    }
    let c: Browser = serde_json::from_str(json)
        .map_err(|_| Refusal::Malformed("not a PublicKeyCredential's JSON"))?;
    if c.kind != "public-key" {
        return Err(Refusal::Malformed(
            "the credential's type is not public-key",
        ));
    }
    let raw_id = unb64("rawId", &c.raw_id)?;
    if raw_id.is_empty() || raw_id.len() > MAX_CREDENTIAL_ID {
        return Err(Refusal::Malformed("a credential id of the wrong length"));
    }
    let client_data = unb64("clientDataJSON", &c.response.client_data_json)?;
    let client: ClientData = serde_json::from_slice(&client_data)
        .map_err(|_| Refusal::Malformed("the client data is not WebAuthn's JSON"))?;
    let challenge: [u8; 32] = unb64("the client data's challenge", &client.challenge)?
        .try_into()
        .map_err(|_| Refusal::Invalid("the challenge is not one this server issues"))?;
    Ok(Parsed {
        raw_id,
        client_data,
        client,
        challenge,
        response: c.response,
    })
}

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;
const ED: u8 = 0x80;

/// What the authenticator data says.
struct AuthData<'a> {
    flags: u8,
    counter: u32,
    /// The attested credential, at registration.
    credential: Option<(Vec<u8>, PublicKey)>,
    bytes: &'a [u8],
}

fn auth_data(bytes: &[u8]) -> Result<AuthData<'_>, Refusal> {
    let short = Refusal::Malformed("the authenticator data is cut short");
    // rpIdHash (32), flags (1), counter (4), then what the flags announce.
    let (head, mut rest) = bytes.split_first_chunk::<37>().ok_or(short)?;
    let [.., flags, c0, c1, c2, c3] = *head;
    let counter = u32::from_be_bytes([c0, c1, c2, c3]);
    let credential = if flags & AT != 0 {
        // AAGUID (16), credential id length (2), credential id, public key.
        let (aaguid_and_len, _) = rest.split_first_chunk::<18>().ok_or(short)?;
        let [.., l0, l1] = *aaguid_and_len;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len == 0 || len > MAX_CREDENTIAL_ID {
            return Err(Refusal::Malformed("a credential id of the wrong length"));
        }
        let id = rest.get(18..18 + len).ok_or(short)?.to_vec();
        let mut key_bytes = rest.get(18 + len..).ok_or(short)?;
        let value: ciborium::Value = ciborium::from_reader(&mut key_bytes)
            .map_err(|_| Refusal::Malformed("the credential key is not CBOR"))?;
        rest = key_bytes;
        Some((id, PublicKey::from_cose(&value)?))
    } else {
        None
    };
    if flags & ED != 0 {
        let _: ciborium::Value = ciborium::from_reader(&mut rest)
            .map_err(|_| Refusal::Malformed("the extensions are not CBOR"))?;
    }
    if !rest.is_empty() {
        return Err(Refusal::Malformed("bytes after the authenticator data"));
    }
    Ok(AuthData {
        flags,
        counter,
        credential,
        bytes,
    })
}

impl Parsed {
    fn check_client(&self, rp: &RelyingParty, kind: &str) -> Result<(), Refusal> {
        if self.client.kind != kind {
            return Err(Refusal::Invalid("the client data is for another ceremony"));
        }
        if self.client.cross_origin {
            return Err(Refusal::Invalid("the ceremony ran in a cross-origin frame"));
        }
        if !rp.origins.contains(&self.client.origin) {
            return Err(Refusal::Invalid(
                "the origin is not one of this relying party's",
            ));
        }
        Ok(())
    }

    fn check_auth(rp: &RelyingParty, a: &AuthData<'_>, require_uv: bool) -> Result<(), Refusal> {
        if a.bytes.get(..32) != Some(rp.id_hash().as_slice()) {
            return Err(Refusal::Invalid(
                "the authenticator data is for another relying party",
            ));
        }
        if a.flags & UP == 0 {
            return Err(Refusal::Invalid("the user was not present"));
        }
        if require_uv && a.flags & UV == 0 {
            return Err(Refusal::Invalid("the user was not verified"));
        }
        Ok(())
    }

    /// Checks a registration (the challenge already found open for this user): the new
    /// credential and its first counter.
    pub(crate) fn registration(
        &self,
        rp: &RelyingParty,
        require_uv: bool,
        existing: &[&[u8]],
    ) -> Result<(Credential, u32), Refusal> {
        self.check_client(rp, "webauthn.create")?;
        let object = self
            .response
            .attestation_object
            .as_deref()
            .ok_or(Refusal::Malformed("no attestation object"))?;
        let object = unb64("attestationObject", object)?;
        let value: ciborium::Value = ciborium::from_reader(object.as_slice())
            .map_err(|_| Refusal::Malformed("the attestation object is not CBOR"))?;
        let map = value
            .as_map()
            .ok_or(Refusal::Malformed("the attestation object is not a map"))?;
        let field = |name: &str| {
            map.iter()
                .find_map(|(k, v)| (k.as_text() == Some(name)).then_some(v))
        };
        let auth = field("authData")
            .and_then(|v| v.as_bytes())
            .ok_or(Refusal::Malformed("the attestation object has no authData"))?;
        field("fmt")
            .and_then(|v| v.as_text())
            .ok_or(Refusal::Malformed("the attestation object has no fmt"))?;
        let a = auth_data(auth)?;
        Self::check_auth(rp, &a, require_uv)?;
        let (id, key) = a
            .credential
            .ok_or(Refusal::Malformed("no attested credential"))?;
        if id != self.raw_id {
            return Err(Refusal::Invalid(
                "the credential id is not the one attested",
            ));
        }
        if existing.contains(&id.as_slice()) {
            return Err(Refusal::Invalid("this security key is registered already"));
        }
        Ok((
            Credential {
                id: id.into_boxed_slice(),
                key,
            },
            a.counter,
        ))
    }

    /// The credential id the response names.
    pub(crate) fn credential_id(&self) -> &[u8] {
        &self.raw_id
    }

    /// Checks an assertion (the challenge already found open for this user) against
    /// `credential`, which the response named; its signature counter.
    pub(crate) fn assertion(
        &self,
        rp: &RelyingParty,
        require_uv: bool,
        credential: &Credential,
        user_handle: &[u8],
    ) -> Result<u32, Refusal> {
        self.check_client(rp, "webauthn.get")?;
        let auth = self
            .response
            .authenticator_data
            .as_deref()
            .ok_or(Refusal::Malformed("no authenticator data"))?;
        let auth = unb64("authenticatorData", auth)?;
        let signature = self
            .response
            .signature
            .as_deref()
            .ok_or(Refusal::Malformed("no signature"))?;
        let signature = unb64("signature", signature)?;
        let handle = self.response.user_handle.as_deref().unwrap_or_default();
        if !handle.is_empty() && unb64("userHandle", handle)? != user_handle {
            return Err(Refusal::Invalid("the response is for another user"));
        }
        let a = auth_data(&auth)?;
        if a.credential.is_some() {
            return Err(Refusal::Malformed(
                "an assertion with an attested credential",
            ));
        }
        Self::check_auth(rp, &a, require_uv)?;
        let mut signed = auth.clone();
        signed.extend_from_slice(&Sha256::digest(&self.client_data));
        if !credential.key.verify(&signed, &signature) {
            return Err(Refusal::Invalid("the signature does not verify"));
        }
        Ok(a.counter)
    }
}

/// The ceremony a challenge record is for, if it is a security key's.
fn key_ceremony(c: &crate::state::ChallengeRecord) -> Option<Ceremony> {
    match c.kind {
        crate::state::ChallengeKind::Key(k) => Some(k),
        _ => None,
    }
}

/// The keyed digest of a ceremony's challenge: the store never holds the challenge.
fn challenge_digest(
    pepper: &crate::secret::Pepper,
    challenge: &[u8; 32],
) -> crate::secret::SecretDigest {
    pepper.digest(b"webauthn-challenge", challenge)
}

/// The security keys among `user`'s methods for `purpose`: (method, credential).
fn keys_of(
    user: &crate::directory::User,
    purpose: crate::Purpose,
) -> Vec<(crate::MethodId, &Credential)> {
    user.eligible(purpose)
        .filter_map(|m| Some((m.id, credential(m)?)))
        .collect()
}

/// A method's registered credential, if it is a security key registered here.
fn credential(m: &crate::directory::Method) -> Option<&Credential> {
    match &m.material {
        crate::directory::Material::SecurityKey(Some(c)) => Some(c),
        _ => None,
    }
}

/// A ceremony's options, issued: what the frontend hands the browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyOptions {
    /// The options JSON (`{"publicKey": {...}}`).
    pub options: String,
    /// When the challenge expires.
    pub expires: crate::Timestamp,
}

impl<S: crate::StateStore> crate::Engine<S> {
    /// The user handle WebAuthn keeps with a credential: a keyed hash of the user's id,
    /// so it names nobody outside this deployment.
    fn user_handle(&self, user: crate::UserId) -> [u8; 16] {
        let d = self
            .pepper
            .digest(b"webauthn-user", &user.0.to_be_bytes())
            .to_bytes();
        let mut h = [0u8; 16];
        h.copy_from_slice(&d[..16]);
        h
    }

    /// Starts registering a security key for `tenant`/`user`: the options for
    /// `navigator.credentials.create()`. A passwordless account's key must verify the user.
    pub fn security_key_start(
        &self,
        tenant: &str,
        user: &str,
        now: crate::Timestamp,
    ) -> Result<KeyOptions, crate::directory::DirectoryError> {
        use crate::directory::DirectoryError;
        let policy = self.policy();
        let rp = &policy
            .tenant(tenant)
            .ok_or(DirectoryError::UnknownUser)?
            .webauthn;
        let u = self
            .directory
            .get(tenant, user)
            .ok_or(DirectoryError::UnknownUser)?;
        let existing: Vec<&[u8]> = u
            .methods()
            .iter()
            .filter_map(|m| Some(&*credential(m)?.id))
            .collect();
        let challenge = new_challenge(&*self.entropy);
        let expires = now + CHALLENGE_TTL;
        let record = crate::state::ChallengeRecord {
            subject: crate::Subject::Known(u.id),
            method: crate::MethodId(0),
            purpose: crate::Purpose::SignIn,
            digest: challenge_digest(&self.pepper, &challenge),
            expires,
            attempts_left: 1,
            kind: crate::state::ChallengeKind::Key(Ceremony {
                register: true,
                user_verification: u.passwordless,
            }),
        };
        crate::StateOps::put_challenge(&self.store, record_id(&challenge), record, now)?;
        let options = creation_options(
            rp,
            &self.user_handle(u.id),
            &u.name,
            &challenge,
            &existing,
            u.passwordless,
        );
        Ok(KeyOptions { options, expires })
    }

    /// Finishes registering a security key: `response` is the browser's JSON for the
    /// options [`security_key_start`](Self::security_key_start) gave, unchanged. The
    /// challenge is spent whether the response holds or not.
    pub fn security_key_finish(
        &self,
        tenant: &str,
        user: &str,
        response: &str,
        now: crate::Timestamp,
    ) -> Result<crate::MethodId, crate::directory::DirectoryError> {
        use crate::directory::{DirectoryError, Material, MethodKind};
        let refused = |r: Refusal| DirectoryError::KeyRefused(r.to_string());
        let policy = self.policy();
        let rp = &policy
            .tenant(tenant)
            .ok_or(DirectoryError::UnknownUser)?
            .webauthn;
        let parsed = parse(response).map_err(refused)?;
        let subject = self.subject_of(tenant, user)?;
        let digest = challenge_digest(&self.pepper, &parsed.challenge);
        let open = self
            .store
            .update_challenge(record_id(&parsed.challenge), now, |slot| {
                let c = slot.as_ref()?;
                let k = key_ceremony(c).filter(|k| k.register)?;
                if c.subject != subject || now >= c.expires || !c.digest.ct_eq(&digest) {
                    return None;
                }
                *slot = None;
                Some(k.user_verification)
            })?;
        let uv = open.ok_or_else(|| {
            DirectoryError::KeyRefused(
                "the challenge is not open: expired, used, or another user's".into(),
            )
        })?;
        let existing: Vec<Box<[u8]>> = {
            let u = self
                .directory
                .get(tenant, user)
                .ok_or(DirectoryError::UnknownUser)?;
            u.methods()
                .iter()
                .filter_map(|m| Some(credential(m)?.id.clone()))
                .collect()
        };
        let existing: Vec<&[u8]> = existing.iter().map(|b| &**b).collect();
        let (credential, counter) = parsed.registration(rp, uv, &existing).map_err(refused)?;
        self.add_method(
            tenant,
            user,
            MethodKind::SecurityKey,
            true,
            Material::SecurityKey(Some(Box::new(credential))),
            |uid, id| {
                if counter > 0 {
                    self.store.update_subject(
                        crate::Subject::Known(uid),
                        crate::Timestamp::EPOCH,
                        |u| u.raise_otp(id, u64::from(counter)),
                    )?;
                }
                Ok(())
            },
        )
    }
}

impl<S: crate::StateStore> crate::decide::Attempt<'_, S> {
    /// Asks for a security key: a sign-in challenge stored, and the options for
    /// `navigator.credentials.get()` in the answer `d`. The user must be verified on the
    /// key where no password was checked.
    pub(crate) fn key_challenge(
        &mut self,
        purpose: crate::Purpose,
        mut d: crate::Decision,
    ) -> crate::Decision {
        let keys = keys_of(self.user, purpose);
        if keys.is_empty() {
            return d;
        }
        let ids: Vec<&[u8]> = keys.iter().map(|(_, c)| &*c.id).collect();
        let engine = self.engine;
        let challenge = new_challenge(&*engine.entropy);
        let uv = self.user.passwordless || self.no_password;
        let record = crate::state::ChallengeRecord {
            subject: self.subject,
            method: crate::MethodId(0),
            purpose,
            digest: challenge_digest(&engine.pepper, &challenge),
            expires: self.now + CHALLENGE_TTL,
            attempts_left: 1,
            kind: crate::state::ChallengeKind::Key(Ceremony {
                register: false,
                user_verification: uv,
            }),
        };
        let put =
            crate::StateOps::put_challenge(&engine.store, record_id(&challenge), record, self.now);
        if let Err(e) = put {
            let _ = self.store_error.set(e);
            return self.decision(crate::Outcome::Deny, crate::Reason::InternalError);
        }
        d.reason = crate::Reason::KeyRequested;
        d.method = Some(crate::directory::MethodKind::SecurityKey);
        d.security_key = Some(request_options(&self.tenant.webauthn, &challenge, &ids, uv));
        d
    }

    /// Checks a security key's answer (the browser's JSON): the challenge is spent, then
    /// the answer verified against the key it names, then its counter committed.
    pub(crate) fn security_key(&mut self, json: &str, purpose: crate::Purpose) -> crate::Decision {
        use crate::lockout::Factor;
        use crate::state::{Answer, Effect};
        use crate::{Outcome, Reason};
        let Ok(parsed) = parse(json) else {
            return self.malformed();
        };
        if let Some(locked) = self.check(Factor::Second) {
            return locked;
        }
        let engine = self.engine;
        let digest = challenge_digest(&engine.pepper, &parsed.challenge);
        let fp = self.fingerprint(b"security-key", &digest.to_bytes());
        let (subject, now) = (self.subject, self.now);
        let spent = engine
            .store
            .update_challenge(record_id(&parsed.challenge), now, |slot| {
                let c = slot.as_ref()?;
                let k = key_ceremony(c).filter(|k| !k.register)?;
                if c.subject != subject || now >= c.expires || !c.digest.ct_eq(&digest) {
                    return None;
                }
                let r = (k.user_verification, c.purpose);
                *slot = None;
                Some(r)
            });
        let Some((uv, issued_for)) = self.stored(spent, None) else {
            return self.fail(Factor::Second, fp, Reason::ChallengeInvalid);
        };
        if issued_for != purpose {
            return self.decision(Outcome::Deny, Reason::MethodNotAllowed);
        }
        let uv = uv || self.user.passwordless || self.no_password;
        let key = keys_of(self.user, purpose)
            .into_iter()
            .find(|(_, c)| *c.id == *parsed.credential_id());
        // A phantom's keys are nobody's: nothing it is sent can verify, and nothing may.
        let checked = match key {
            Some((method, c)) if self.known => {
                let handle = engine.user_handle(self.user.id);
                parsed
                    .assertion(&self.tenant.webauthn, uv, c, &handle)
                    .map(|counter| (method, counter))
            }
            _ => Err(Refusal::Invalid("not a security key of this user's")),
        };
        let Ok((method, counter)) = checked else {
            return self.fail(Factor::Second, fp, Reason::InvalidAssertion);
        };
        let effect = Effect::KeyCounter {
            method,
            value: counter,
            fingerprint: fp,
        };
        match self.commit(Factor::Second, effect) {
            Answer::Accepted => {
                let mut d = self.decision(Outcome::Allow, self.allowed(purpose));
                d.method = Some(crate::directory::MethodKind::SecurityKey);
                d
            }
            other => self.after_failure(other, Reason::CounterRegressed),
        }
    }
}

/// For the fuzz targets: authenticator data read as a sign-in or a registration reads it.
#[cfg(fuzzing)]
pub fn fuzz_authenticator_data(bytes: &[u8]) -> bool {
    auth_data(bytes).is_ok()
}

/// For the fuzz targets: a browser response taken through both ceremonies' checks;
/// whether it passed a sign-in's against a key nobody holds (it never may). A
/// registration's may pass: its proof is the open challenge, which this cannot forge.
#[cfg(fuzzing)]
pub fn fuzz_response(json: &str) -> bool {
    let rp = RelyingParty {
        id: "kommune.no".into(),
        name: "Kommunen".into(),
        origins: vec!["https://login.kommune.no".into()],
    };
    let Ok(p) = parse(json) else {
        return false;
    };
    let key = Credential {
        id: Box::new([1; 16]),
        key: PublicKey::EdDsa([7; 32]),
    };
    let _ = p.registration(&rp, true, &[]);
    p.assertion(&rp, true, &key, &[0; 16]).is_ok()
}
