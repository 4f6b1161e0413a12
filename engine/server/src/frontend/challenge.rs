//! What a challenge's answer continues (RADIUS's State attribute), sealed so that only a
//! node holding the deployment's pepper could have written it.
//!
//! Layout (43 bytes): version `1`, expiry (`u64` ms), kind (`1` a code is asked for, `2`
//! a push approval waits), the number to choose and the approval's id (zeros for a
//! code), and a 16-byte tag over
//! all of it and the client's name, tenant and user name ([`Engine::tag`]). Nothing is
//! kept on the server between the two requests, so a continuation may reach any node.
//!
//! A State stands for a first factor already checked, for five minutes. Using one twice
//! gains nothing: every code and approval it leads to is spent once by the core.

use portvakt_core::{ChallengeId, Timestamp};
use portvakt_store::Engine;

/// How long a challenge may be answered.
pub(crate) const TTL_MS: u64 = 5 * 60 * 1000;

const VERSION: u8 = 1;
pub(crate) const LEN: usize = 1 + 8 + 1 + 1 + 16 + 16;
const TAG_PURPOSE: &[u8] = b"radius-state";

/// What the request answering a challenge continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pending {
    /// A code from an app or token was asked for.
    Code,
    /// A push approval was sent; the device's answer is awaited.
    Push {
        /// The approval.
        id: ChallengeId,
        /// The number the user must choose on the device.
        number: u8,
    },
}

/// What the answer to a challenge decision `d` continues: the push approval it issued,
/// or, when a redemption found the approval `waiting` still pending, that one again;
/// otherwise a code.
pub(crate) fn after(d: &portvakt_core::Decision, waiting: Option<(ChallengeId, u8)>) -> Pending {
    match (&d.approval, waiting) {
        (Some(a), _) => Pending::Push {
            id: a.id,
            number: a.number,
        },
        (None, Some((id, number))) if d.reason == portvakt_core::Reason::ApprovalPending => {
            Pending::Push { id, number }
        }
        _ => Pending::Code,
    }
}

/// Who the State is for: the client's name, the tenant, and the user as named.
pub(crate) struct Bound<'a> {
    pub(crate) client: &'a str,
    pub(crate) tenant: &'a str,
    pub(crate) user: &'a [u8],
}

impl Bound<'_> {
    fn tag(&self, engine: &Engine, body: &[u8]) -> [u8; 16] {
        let mut data = Vec::with_capacity(body.len() + 3 * 2 + 64);
        for part in [self.client.as_bytes(), self.tenant.as_bytes(), self.user] {
            data.extend_from_slice(&u16::try_from(part.len()).unwrap_or(u16::MAX).to_be_bytes());
            data.extend_from_slice(part);
        }
        data.extend_from_slice(body);
        let digest = engine.tag(TAG_PURPOSE, &data).to_bytes();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&digest[..16]);
        tag
    }
}

/// The State for `pending`, valid until `now` plus [`TTL_MS`].
pub(crate) fn seal(engine: &Engine, who: &Bound<'_>, pending: Pending, now: Timestamp) -> Vec<u8> {
    let (kind, number, id) = match pending {
        Pending::Code => (1, 0, [0u8; 16]),
        Pending::Push { id, number } => (2, number, id.0),
    };
    let mut out = Vec::with_capacity(LEN);
    out.push(VERSION);
    out.extend_from_slice(&now.as_millis().saturating_add(TTL_MS).to_be_bytes());
    out.push(kind);
    out.push(number);
    out.extend_from_slice(&id);
    let tag = who.tag(engine, &out);
    out.extend_from_slice(&tag);
    out
}

/// Why a State was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not one of ours, or for another client, tenant or user.
    Forged,
    /// Ours, but past its five minutes.
    Expired,
}

/// What `state` continues, if this node's deployment wrote it for `who` and it has not
/// expired.
pub(crate) fn open(
    engine: &Engine,
    who: &Bound<'_>,
    state: &[u8],
    now: Timestamp,
) -> Result<Pending, Refused> {
    if state.len() != LEN || state[0] != VERSION {
        return Err(Refused::Forged);
    }
    let (body, tag) = state.split_at(LEN - 16);
    let expected = who.tag(engine, body);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], tag)) {
        return Err(Refused::Forged);
    }
    let mut expires = [0u8; 8];
    expires.copy_from_slice(&body[1..9]);
    if now.as_millis() >= u64::from_be_bytes(expires) {
        return Err(Refused::Expired);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&body[11..27]);
    match body[9] {
        1 => Ok(Pending::Code),
        2 => Ok(Pending::Push {
            id: ChallengeId(id),
            number: body[10],
        }),
        _ => Err(Refused::Forged),
    }
}
