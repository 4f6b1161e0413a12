//! Typed answers that own their data, so they outlive the bytes they came in.

use std::time::Duration;

use bytes::Bytes;
use portvakt_wire::{DecodeError, Frame, MethodKind, Outcome};

/// One whole frame from the server, kept as bytes and decoded on demand (zero-copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer(pub(crate) Bytes);

impl Answer {
    /// The frame. Answers from [`crate::Client::call`] and [`crate::Client::admin`] have
    /// been decoded once already, so this fails only for one from
    /// [`crate::Client::call_raw`].
    pub fn frame(&self) -> Result<Frame<'_>, DecodeError> {
        Frame::decode(&self.0)
    }

    /// The frame's bytes, length prefix included.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

/// A method the person can use, as a challenge lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    /// The method's id, to name it in a send-code request.
    pub id: u32,
    /// What kind of method.
    pub kind: MethodKind,
    /// A hint to show, such as the last digits of a phone number.
    pub hint: Option<String>,
}

/// A remembered-device token to store on the person's device.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken {
    /// The token.
    pub token: String,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceToken")
            .field("token", &"<redacted>")
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

/// The server's decision on one sign-in attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What the frontend must do.
    pub outcome: Outcome,
    /// Why, as a stable machine-readable code (see the protocol's reason table).
    pub reason: String,
    /// The policy rule that decided.
    pub rule: String,
    /// The named location of the client address (`elsewhere` if none).
    pub location: String,
    /// For a challenge: the methods the person may use.
    pub methods: Vec<Method>,
    /// For locked and throttled: how long to wait.
    pub retry_after: Option<Duration>,
    /// The method that was verified, when one was.
    pub method: Option<MethodKind>,
    /// A remembered-device token, when one was asked for and granted.
    pub device_token: Option<DeviceToken>,
    /// A push approval, when the challenge sent one: show its number, then ask for the
    /// outcome with [`crate::Client::await_approval`].
    pub approval: Option<portvakt_wire::Approval>,
    /// The options for the browser's `navigator.credentials.get()` (JSON), when the
    /// challenge asks for a security key: hand them over unchanged, and send the browser's
    /// answer back as proof [`portvakt_wire::Proof::SecurityKey`].
    pub security_key: Option<String>,
}

impl Decision {
    pub(crate) fn from_wire(d: &portvakt_wire::Decision<'_>) -> Self {
        Self {
            outcome: d.outcome,
            reason: d.reason.to_owned(),
            rule: d.rule.to_owned(),
            location: d.location.to_owned(),
            methods: d
                .methods
                .iter()
                .map(|m| Method {
                    id: m.id,
                    kind: m.kind,
                    hint: m.hint.map(str::to_owned),
                })
                .collect(),
            retry_after: d.retry_after_s.map(|s| Duration::from_secs(s.into())),
            method: d.method,
            device_token: d.device_token.as_ref().map(|t| DeviceToken {
                token: t.token.to_owned(),
                expires_ms: t.expires_ms,
            }),
            approval: d.approval,
            security_key: d.security_key.map(str::to_owned),
        }
    }
}

/// What the frontend must deliver for a send-code request.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    /// SMS, voice or email.
    pub channel: MethodKind,
    /// The phone number or address to deliver to.
    pub destination: String,
    /// The code to deliver.
    pub code: String,
    /// When the code expires, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("channel", &self.channel)
            .field("destination", &self.destination)
            .field("code", &"<redacted>")
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

/// The answer to a send-code request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The decision: `challenge` with reason `code_sent`, or why no code was sent.
    pub decision: Decision,
    /// The challenge the code answers; pass it back with the code.
    pub challenge: Option<[u8; 16]>,
    /// What to deliver. Absent when nothing is to be delivered, which the frontend must
    /// not reveal to the person (an unknown user gets a challenge that is never sent).
    pub delivery: Option<Delivery>,
}
