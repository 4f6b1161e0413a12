//! One Access-Request's answer: who is asking and from where, how the first factor is
//! known, the decision, and the decision said in RADIUS (Accept, Reject, Challenge).
//!
//! Reply-Messages depend on the outcome only, never on the reason: an unknown name, a
//! wrong password and a wrong code are all "refused" in the same words, and the core
//! makes the decisions for unknown names look like a user's.

use std::net::IpAddr;

use bytes::BytesMut;
use portvakt_core::{ChallengeId, Decision, FirstFactor, Outcome, Proof, Purpose};
use portvakt_radius::{Packet, attr, code, reveal_password};
use zeroize::Zeroizing;

use super::config::{self, Client, UserAddress};
use crate::app::{App, Frontend};
use crate::frontend::challenge::{self as state, Bound, Pending, Refused};
use crate::frontend::upstream::{self, Verdict};

/// The longest user name, as over QUIC and in the sign-in log.
const MAX_NAME: usize = 128;

/// Asks for an app's or token's code.
const CODE_PROMPT: &str = "Enter the code from your authenticator app or security token.";
/// Any refusal: a wrong password or code, an unknown name, a policy that blocks.
pub(super) const REFUSED: &str = "The sign-in was refused.";
/// Locked or throttled.
const LATER: &str = "Too many attempts. Try again later.";
/// A user who has no methods yet.
const REGISTER: &str = "Register your sign-in methods (Security info) before signing in here.";
/// A challenge answered after its five minutes.
const EXPIRED: &str = "The sign-in took too long. Start again.";
/// The password could not be checked, or the answer could not be made durable.
pub(super) const UNAVAILABLE: &str = "The sign-in cannot be completed now. Try again later.";

/// What to answer: the reply's code, its Reply-Message, and for a challenge its State.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Answer {
    /// `code::ACCESS_ACCEPT`, `code::ACCESS_REJECT` or `code::ACCESS_CHALLENGE`.
    pub(super) code: u8,
    /// The Reply-Message, if any.
    pub(super) message: Option<String>,
    /// The State, for a challenge.
    pub(super) state: Option<Vec<u8>>,
}

impl Answer {
    /// An Access-Reject saying `message`.
    pub(super) fn reject(message: &str) -> Self {
        Self {
            code: code::ACCESS_REJECT,
            message: Some(message.to_owned()),
            state: None,
        }
    }

    fn accept() -> Self {
        Self {
            code: code::ACCESS_ACCEPT,
            message: None,
            state: None,
        }
    }

    fn challenge(message: String, state: Vec<u8>) -> Self {
        Self {
            code: code::ACCESS_CHALLENGE,
            message: Some(message),
            state: Some(state),
        }
    }

    /// The reply's name in metrics.
    pub(super) fn name(&self) -> &'static str {
        match self.code {
            code::ACCESS_ACCEPT => "accept",
            code::ACCESS_CHALLENGE => "challenge",
            _ => "reject",
        }
    }
}

/// Answers an Access-Request from `client` (its authenticity already checked), sent from
/// `nas`. Decisions' sign-in records are appended to `records`.
pub(super) async fn answer(
    app: &App,
    client: &Client,
    packet: &Packet<'_>,
    nas: IpAddr,
    records: &mut BytesMut,
) -> Answer {
    // Only PAP is read: a CHAP or EAP request is refused before anything is decided or
    // counted (its User-Password would be missing, and read as an empty password).
    if packet.get(attr::CHAP_PASSWORD).is_some() || packet.get(attr::EAP_MESSAGE).is_some() {
        return Answer::reject(REFUSED);
    }
    let Some(user) = packet.get(attr::USER_NAME).filter(|u| !u.is_empty()) else {
        return Answer::reject(REFUSED);
    };
    // A name that is not UTF-8, or longer than any name can be (128 bytes, as over QUIC
    // and in the sign-in log), is no one's: refused, as anyone's would be, and not
    // decided.
    let Ok(name) = std::str::from_utf8(user) else {
        return Answer::reject(REFUSED);
    };
    if name.len() > MAX_NAME {
        return Answer::reject(REFUSED);
    }
    let password = match packet.get(attr::USER_PASSWORD) {
        None => Zeroizing::new(Vec::new()),
        Some(hidden) => match reveal_password(hidden, &client.secret, &packet.authenticator) {
            Ok(p) => Zeroizing::new(p),
            Err(_) => return Answer::reject(REFUSED),
        },
    };
    let ask = Ask {
        app,
        client,
        name,
        ip: user_address(client, packet, nas),
        bound: Bound {
            client: &client.name,
            tenant: &client.tenant,
            user,
        },
    };
    if let Some(state) = packet.get(attr::STATE) {
        return match state::open(app.engine(), &ask.bound, state, app.now()) {
            Ok(pending) => ask.proceed(pending, &password, records).await,
            Err(Refused::Expired) => Answer::reject(EXPIRED),
            Err(Refused::Forged) => Answer::reject(REFUSED),
        };
    }
    let (first, code) = match client.first_factor {
        config::FirstFactor::Nas => (FirstFactor::Ok, Some(&password[..])),
        config::FirstFactor::UpstreamWithCode => {
            let (password, code) = upstream::split_code(&password, client.code_digits);
            match ask.password(password).await {
                Ok(first) => (first, code),
                Err(answer) => return answer,
            }
        }
        config::FirstFactor::UpstreamThenChallenge => match ask.password(&password).await {
            Ok(first) => (first, None),
            Err(answer) => return answer,
        },
    };
    // With a wrong password the core counts the failure without looking at the code, so
    // the code is not spent on a sign-in that fails anyway.
    let proof = code.filter(|c| !c.is_empty()).map(|c| Proof::Code(text(c)));
    let d = ask.decide(first, proof, records);
    ask.reply(&d, None)
}

/// A request's parts the decision needs.
struct Ask<'a> {
    app: &'a App,
    client: &'a Client,
    name: &'a str,
    ip: IpAddr,
    bound: Bound<'a>,
}

impl Ask<'_> {
    /// Asks the client's upstream server whether `password` is right. No answer fails
    /// closed: the request is refused without a decision (nothing was learned about the
    /// user).
    async fn password(&self, password: &[u8]) -> Result<FirstFactor, Answer> {
        if password.is_empty() {
            return Ok(FirstFactor::Failed);
        }
        let Some(upstream) = &self.client.upstream else {
            return Err(Answer::reject(UNAVAILABLE));
        };
        match upstream::check(upstream, self.bound.user, password).await {
            Ok(Verdict::Right) => Ok(FirstFactor::Ok),
            Ok(Verdict::Wrong) => Ok(FirstFactor::Failed),
            Err(e) => {
                metrics::counter!(crate::metrics::RADIUS_UPSTREAM_FAILURES, "client" => self.client.name.clone())
                    .increment(1);
                crate::warn(format_args!(
                    "radius: client {}: the upstream password check failed: {e}",
                    self.client.name
                ));
                Err(Answer::reject(UNAVAILABLE))
            }
        }
    }

    /// Continues a challenge: the request carries the code, or waits for the device.
    async fn proceed(&self, pending: Pending, typed: &[u8], records: &mut BytesMut) -> Answer {
        let typed = text(typed).trim();
        match pending {
            Pending::Push { id, number } if !is_code(typed) => {
                let app = self.app;
                let deadline = tokio::time::Instant::now() + self.client.push_wait;
                app.approvals()
                    .until_answered(app.engine(), id, || app.now(), deadline)
                    .await;
                let hex = id.to_hex();
                let d = self.decide(FirstFactor::Ok, Some(Proof::Push(&hex)), records);
                self.reply(&d, Some((id, number)))
            }
            Pending::Push { id, number } => {
                let d = self.decide(FirstFactor::Ok, Some(Proof::Code(typed)), records);
                self.reply(&d, Some((id, number)))
            }
            Pending::Code => {
                let d = self.decide(FirstFactor::Ok, Some(Proof::Code(typed)), records);
                self.reply(&d, None)
            }
        }
    }

    fn decide(
        &self,
        first: FirstFactor,
        proof: Option<Proof<'_>>,
        records: &mut BytesMut,
    ) -> Decision {
        let request = portvakt_core::Request {
            tenant: &self.client.tenant,
            user: self.name,
            ip: self.ip,
            purpose: Purpose::SignIn,
            first_factor: first,
            proof,
            device_token: None,
            remember_device: false,
        };
        self.app.decide_now(Frontend::Radius, &request, records)
    }

    /// The decision in RADIUS. `waiting` is the approval a continuation waited on, so a
    /// wait that ran out asks again with it.
    fn reply(&self, d: &Decision, waiting: Option<(ChallengeId, u8)>) -> Answer {
        match d.outcome {
            Outcome::Allow => Answer::accept(),
            Outcome::Challenge => {
                let pending = state::after(d, waiting);
                let message = match pending {
                    Pending::Push { number, .. } => format!(
                        "Approve the sign-in in the app on your phone by choosing {number}, then press Enter (or type a code from the app)."
                    ),
                    Pending::Code => CODE_PROMPT.to_owned(),
                };
                let sealed = state::seal(self.app.engine(), &self.bound, pending, self.app.now());
                Answer::challenge(message, sealed)
            }
            Outcome::Locked | Outcome::Throttled => Answer::reject(LATER),
            Outcome::Register => Answer::reject(REGISTER),
            Outcome::Deny => Answer::reject(REFUSED),
        }
    }
}

/// The user's address: what the client reports, for a client configured to, else the
/// NAS's own.
fn user_address(client: &Client, packet: &Packet<'_>, nas: IpAddr) -> IpAddr {
    let reported = match client.user_address {
        None => None,
        Some(UserAddress::CallingStationId) => packet
            .get(attr::CALLING_STATION_ID)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.trim().parse::<IpAddr>().ok()),
        Some(UserAddress::FramedIpAddress) => packet
            .get(attr::FRAMED_IP_ADDRESS)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(IpAddr::from),
    };
    reported.unwrap_or(nas)
}

/// Typed bytes as text: anything not UTF-8 becomes a character no code has, and so is
/// refused as malformed.
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("\u{fffd}")
}

/// Whether a continuation typed a code rather than just pressing Enter.
fn is_code(typed: &str) -> bool {
    !typed.is_empty() && typed.bytes().all(|b| b.is_ascii_digit())
}
