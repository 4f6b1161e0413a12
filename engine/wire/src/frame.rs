//! Typed frames and their byte layout (`docs/protocol.md` is the normative description).
//!
//! ```text
//! frame = length:u32  kind:u8  id:u32  body      (length counts kind, id and body)
//! ```

use std::net::IpAddr;

use bytes::BytesMut;

use crate::codec::{DecodeError, Reader, Writer};

/// The longest frame, length prefix excluded.
pub const MAX_FRAME: usize = 16 * 1024;
/// The longest tenant, user, rule, location or reason name.
pub const MAX_NAME: usize = 128;
/// The longest code (OTP or sent code) as typed, spaces included.
pub const MAX_CODE: usize = 16;
/// The longest app password or device token.
pub const MAX_SECRET: usize = 64;
/// The longest security answer.
pub const MAX_ANSWER: usize = 255;
/// The most security answers.
pub const MAX_ANSWERS: usize = 5;
/// The most methods offered in one decision.
pub const MAX_METHODS: usize = 16;
/// The longest method hint or delivery destination.
pub const MAX_HINT: usize = 255;
/// The longest error message.
pub const MAX_MESSAGE: usize = 1024;
/// The longest security-key answer (the browser's JSON).
pub const MAX_KEY_RESPONSE: usize = 12 * 1024;
/// The longest security-key options (JSON for the browser).
pub const MAX_KEY_OPTIONS: usize = 8 * 1024;

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant = $code,)*
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The value with this wire code.
            pub fn from_code(code: u8) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// The value's name in `docs/protocol.md` (snake_case).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }

            fn read(r: &mut Reader<'_>, field: &'static str) -> Result<Self, DecodeError> {
                let v = r.u8(field)?;
                Self::from_code(v).ok_or(DecodeError::BadValue { field, value: u32::from(v) })
            }
        }
    };
}

wire_enum! {
    /// Why the user signs in.
    Purpose { /** `sign_in` */ SignIn = 1 => "sign_in", /** `password_reset` */ PasswordReset = 2 => "password_reset", /** `legacy_protocol` */ LegacyProtocol = 3 => "legacy_protocol", }
}

wire_enum! {
    /// What the frontend's password check found.
    FirstFactor { /** The password was right. */ Ok = 1 => "ok", /** It was wrong. */ Failed = 2 => "failed", /** None was given. */ None = 3 => "none", }
}

wire_enum! {
    /// The answer's kind.
    Outcome {
        /** Let the user in. */ Allow = 1 => "allow",
        /** Refuse. */ Deny = 2 => "deny",
        /** Ask for a second factor. */ Challenge = 3 => "challenge",
        /** Too many failures; retry later. */ Locked = 4 => "locked",
        /** The user must register security info. */ Register = 5 => "register",
        /** Sent codes are rate-limited. */ Throttled = 6 => "throttled",
    }
}

wire_enum! {
    /// A kind of method.
    MethodKind {
        /** Authenticator app (TOTP). */ AuthenticatorApp = 1 => "authenticator_app",
        /** Hardware token (HOTP). */ HardwareToken = 2 => "hardware_token",
        /** Text message. */ Sms = 3 => "sms",
        /** Voice call. */ Voice = 4 => "voice",
        /** Security key. */ SecurityKey = 5 => "security_key",
        /** Email (password reset only). */ Email = 6 => "email",
        /** Security questions (password reset only). */ SecurityQuestions = 7 => "security_questions",
        /** Push approval in the authenticator app. */ Push = 8 => "push",
    }
}

/// A proof carried by a decide request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proof<'a> {
    /// An authenticator code.
    Totp(&'a str),
    /// A hardware-token code, with the next one when resynchronising.
    Hotp {
        /// The code.
        code: &'a str,
        /// The following code.
        next: Option<&'a str>,
    },
    /// A sent code and its challenge.
    Sent {
        /// The challenge id.
        challenge: [u8; 16],
        /// The code.
        code: &'a str,
    },
    /// An app password.
    AppPassword(&'a str),
    /// Security answers, in order.
    SecurityAnswers(Vec<&'a str>),
    /// A security key's answer: the browser's `PublicKeyCredential` JSON, unchanged.
    SecurityKey(&'a str),
    /// A push approval to redeem; with `wait_ms` above 0 the server waits (up to
    /// [`MAX_WAIT_MS`]) until the device answered or the approval expired.
    Push {
        /// The approval id.
        approval: [u8; 16],
        /// How long to wait for the device, in milliseconds.
        wait_ms: u32,
    },
}

/// The longest a request waits for a push device.
pub const MAX_WAIT_MS: u32 = 30_000;

/// A push approval issued by a decision: show `number` on the sign-in screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Approval {
    /// The approval id, to redeem it.
    pub id: [u8; 16],
    /// The number the user types on the device (10-99).
    pub number: u8,
    /// Expiry, milliseconds since the UNIX epoch.
    pub expires_ms: u64,
}

/// Body of a decide request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decide<'a> {
    /// Tenant name.
    pub tenant: &'a str,
    /// User name.
    pub user: &'a str,
    /// Client address.
    pub ip: IpAddr,
    /// Purpose.
    pub purpose: Purpose,
    /// First-factor outcome.
    pub first_factor: FirstFactor,
    /// Proof, if any.
    pub proof: Option<Proof<'a>>,
    /// Remembered-device token, if any.
    pub device_token: Option<&'a str>,
    /// Remember this device after a successful second factor.
    pub remember_device: bool,
}

/// Body of a send-code request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendCode<'a> {
    /// Tenant name.
    pub tenant: &'a str,
    /// User name.
    pub user: &'a str,
    /// Client address.
    pub ip: IpAddr,
    /// Purpose the code is for.
    pub purpose: Purpose,
    /// Method id; absent picks the default sent method.
    pub method: Option<u32>,
}

/// A method offered in a challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodInfo<'a> {
    /// Method id.
    pub id: u32,
    /// Kind.
    pub kind: MethodKind,
    /// Recognisable hint ("•••• 78").
    pub hint: Option<&'a str>,
}

/// A newly issued remembered-device token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceToken<'a> {
    /// The token.
    pub token: &'a str,
    /// Expiry, milliseconds since the UNIX epoch.
    pub expires_ms: u64,
}

/// A decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Outcome.
    pub outcome: Outcome,
    /// Reason code (snake_case).
    pub reason: &'a str,
    /// The rule that decided.
    pub rule: &'a str,
    /// The location of the address.
    pub location: &'a str,
    /// Methods to offer (challenge), default first.
    pub methods: Vec<MethodInfo<'a>>,
    /// Seconds to wait (locked, throttled).
    pub retry_after_s: Option<u32>,
    /// The method that proved the user.
    pub method: Option<MethodKind>,
    /// A new remembered-device token.
    pub device_token: Option<DeviceToken<'a>>,
    /// A push approval issued (challenge).
    pub approval: Option<Approval>,
    /// The options for the browser's `navigator.credentials.get()` (JSON), when a security
    /// key is asked for (challenge).
    pub security_key: Option<&'a str>,
}

/// A code to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// SMS, voice or email.
    pub channel: MethodKind,
    /// Phone number or address.
    pub destination: &'a str,
    /// The code.
    pub code: &'a str,
    /// Expiry, milliseconds since the UNIX epoch.
    pub expires_ms: u64,
}

/// Error codes carried by error frames (and, for framing violations, as the QUIC
/// application close code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame could not be decoded.
    Malformed = 1,
    /// The frame is larger than [`MAX_FRAME`].
    TooLarge = 2,
    /// The frame kind is not known to this version.
    UnknownKind = 3,
    /// The caller may not perform this operation.
    Forbidden = 4,
    /// Too many requests in flight on this connection.
    Overloaded = 5,
    /// The operation failed inside the server.
    Internal = 6,
    /// The operation was refused (the message says why).
    Refused = 7,
}

impl ErrorCode {
    /// The code for a wire value.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Malformed,
            2 => Self::TooLarge,
            3 => Self::UnknownKind,
            4 => Self::Forbidden,
            5 => Self::Overloaded,
            6 => Self::Internal,
            7 => Self::Refused,
            _ => return None,
        })
    }

    /// The code's name in `docs/protocol.md`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::UnknownKind => "unknown_kind",
            Self::Forbidden => "forbidden",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
            Self::Refused => "refused",
        }
    }

    /// The code for a decode failure.
    pub fn of(e: &DecodeError) -> Self {
        match e {
            DecodeError::UnknownKind(_) => Self::UnknownKind,
            DecodeError::TooLong { field: "frame", .. } => Self::TooLarge,
            _ => Self::Malformed,
        }
    }
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Client: decide a sign-in attempt.
    Decide(u32, Decide<'a>),
    /// Client: send a code.
    SendCode(u32, SendCode<'a>),
    /// Server: a decision.
    Decision(u32, Decision<'a>),
    /// Server: a send-code answer.
    Sent {
        /// Request id.
        id: u32,
        /// The decision (challenge/code_sent, or why not).
        decision: Decision<'a>,
        /// The challenge the code answers.
        challenge: Option<[u8; 16]>,
        /// What to deliver.
        delivery: Option<Delivery<'a>>,
    },
    /// Administrator client: an administrator operation.
    Admin(u32, crate::admin::Admin<'a>),
    /// Server: the answer to an administrator operation.
    AdminReply(u32, crate::admin::AdminReply<'a>),
    /// Push device: a device request.
    Device(u32, crate::device::Device<'a>),
    /// Server: the answer to a device request.
    DeviceReply(u32, crate::device::DeviceReply<'a>),
    /// Server: the request failed.
    Error {
        /// Request id (0 when the request's id could not be read).
        id: u32,
        /// Machine-readable code.
        code: ErrorCode,
        /// What went wrong, for people.
        message: &'a str,
    },
}

/// Frame kinds on the wire.
mod kind {
    pub(super) const DECIDE: u8 = 0x01;
    pub(super) const SEND_CODE: u8 = 0x02;
    pub(super) const DECISION: u8 = 0x81;
    pub(super) const SENT: u8 = 0x82;
    pub(super) const ERROR: u8 = 0xff;
}

/// Why a frame cannot be encoded: a field over its limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {len} long, over the limit of {max}")]
pub struct EncodeError {
    /// The field.
    pub field: &'static str,
    /// Its length.
    pub len: usize,
    /// The limit.
    pub max: usize,
}

fn check(field: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        Err(EncodeError { field, len, max })
    } else {
        Ok(())
    }
}

/// How many bytes at the start of `buf` make up the first frame: `Ok(None)` when more
/// bytes are needed, an error when the length prefix is over the limit (the stream cannot
/// be resynchronised after that, since the reader will not hold that many bytes).
///
/// A length under 5 still delimits a frame, one too short for its kind and id: it is
/// returned like any other, and decoding it fails, so a reader answers it as malformed
/// and goes on with the next frame.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    if len > MAX_FRAME {
        return Err(DecodeError::TooLong {
            field: "frame",
            len,
            max: MAX_FRAME,
        });
    }
    Ok((buf.len() >= 4 + len).then_some(4 + len))
}

impl<'a> Frame<'a> {
    /// The request id.
    pub fn id(&self) -> u32 {
        match self {
            Self::Decide(id, _) | Self::SendCode(id, _) | Self::Decision(id, _) => *id,
            Self::Admin(id, _) | Self::AdminReply(id, _) => *id,
            Self::Device(id, _) | Self::DeviceReply(id, _) => *id,
            Self::Sent { id, .. } | Self::Error { id, .. } => *id,
        }
    }

    /// Decodes one whole frame, length prefix included; nothing may follow it.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        // The same framing rules a stream reader applies with `frame_len`, so the two
        // never disagree about a frame's bounds.
        let end = frame_len(buf)?.ok_or(DecodeError::Truncated { field: "frame" })?;
        if buf.len() != end {
            return Err(DecodeError::Trailing(buf.len() - end));
        }
        let mut r = Reader::new(buf.get(4..).unwrap_or_default());
        let kind = r.u8("kind")?;
        let id = r.u32("id")?;
        let frame = match kind {
            kind::DECIDE => Self::Decide(id, read_decide(&mut r)?),
            kind::SEND_CODE => Self::SendCode(
                id,
                SendCode {
                    tenant: r.str8("tenant", MAX_NAME)?,
                    user: r.str8("user", MAX_NAME)?,
                    ip: r.ip("ip")?,
                    purpose: Purpose::read(&mut r, "purpose")?,
                    method: r.opt("method", |r| r.u32("method"))?,
                },
            ),
            kind::DECISION => Self::Decision(id, read_decision(&mut r)?),
            kind::SENT => Self::Sent {
                id,
                decision: read_decision(&mut r)?,
                challenge: r.opt("challenge", |r| r.bytes16("challenge"))?,
                delivery: r.opt("delivery", |r| {
                    Ok(Delivery {
                        channel: MethodKind::read(r, "channel")?,
                        destination: r.str8("destination", MAX_HINT)?,
                        code: r.str8("code", MAX_CODE)?,
                        expires_ms: r.u64("expires")?,
                    })
                })?,
            },
            kind::ERROR => {
                let raw = r.u16("error code")?;
                let code = ErrorCode::from_u16(raw).ok_or(DecodeError::BadValue {
                    field: "error code",
                    value: u32::from(raw),
                })?;
                Self::Error {
                    id,
                    code,
                    message: r.str16("message", MAX_MESSAGE)?,
                }
            }
            other => match crate::admin::Admin::read(other, &mut r) {
                Some(admin) => Self::Admin(id, admin?),
                None => match crate::admin::AdminReply::read(other, &mut r) {
                    Some(reply) => Self::AdminReply(id, reply?),
                    None => match crate::device::Device::read(other, &mut r) {
                        Some(d) => Self::Device(id, d?),
                        None => match crate::device::DeviceReply::read(other, &mut r) {
                            Some(d) => Self::DeviceReply(id, d?),
                            None => return Err(DecodeError::UnknownKind(other)),
                        },
                    },
                },
            },
        };
        r.finish()?;
        Ok(frame)
    }

    /// Appends the frame, length prefix included, to `out`. Fields over their limits are
    /// refused before anything is written.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check()?;
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut w = Writer::new(out);
        match self {
            Self::Decide(id, d) => {
                w.u8(kind::DECIDE);
                w.u32(*id);
                write_decide(&mut w, d);
            }
            Self::SendCode(id, s) => {
                w.u8(kind::SEND_CODE);
                w.u32(*id);
                w.str8(s.tenant);
                w.str8(s.user);
                w.ip(s.ip);
                w.u8(s.purpose as u8);
                w.opt(s.method, |w, m| w.u32(m));
            }
            Self::Decision(id, d) => {
                w.u8(kind::DECISION);
                w.u32(*id);
                write_decision(&mut w, d);
            }
            Self::Sent {
                id,
                decision,
                challenge,
                delivery,
            } => {
                w.u8(kind::SENT);
                w.u32(*id);
                write_decision(&mut w, decision);
                w.opt(challenge.as_ref(), |w, c| w.raw(c));
                w.opt(delivery.as_ref(), |w, d| {
                    w.u8(d.channel as u8);
                    w.str8(d.destination);
                    w.str8(d.code);
                    w.u64(d.expires_ms);
                });
            }
            Self::Admin(id, a) => {
                w.u8(a.kind());
                w.u32(*id);
                a.write(&mut w);
            }
            Self::AdminReply(id, a) => {
                w.u8(a.kind());
                w.u32(*id);
                a.write(&mut w);
            }
            Self::Device(id, d) => {
                w.u8(d.kind());
                w.u32(*id);
                d.write(&mut w);
            }
            Self::DeviceReply(id, d) => {
                w.u8(d.kind());
                w.u32(*id);
                d.write(&mut w);
            }
            Self::Error { id, code, message } => {
                w.u8(kind::ERROR);
                w.u32(*id);
                w.u16(*code as u16);
                w.str16(message);
            }
        }
        let len = out.len() - start - 4;
        check("frame", len, MAX_FRAME)?;
        if let Some(prefix) = out.get_mut(start..start + 4) {
            prefix.copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        }
        Ok(())
    }

    /// Checks every length against its limit.
    fn check(&self) -> Result<(), EncodeError> {
        let decision = |d: &Decision<'_>| -> Result<(), EncodeError> {
            check("reason", d.reason.len(), MAX_NAME)?;
            check("rule", d.rule.len(), MAX_NAME)?;
            check("location", d.location.len(), MAX_NAME)?;
            check("methods", d.methods.len(), MAX_METHODS)?;
            for m in &d.methods {
                check("hint", m.hint.map_or(0, str::len), MAX_HINT)?;
            }
            check(
                "device token",
                d.device_token.as_ref().map_or(0, |t| t.token.len()),
                MAX_SECRET,
            )?;
            check(
                "security-key options",
                d.security_key.map_or(0, str::len),
                MAX_KEY_OPTIONS,
            )
        };
        match self {
            Self::Decide(_, d) => {
                check("tenant", d.tenant.len(), MAX_NAME)?;
                check("user", d.user.len(), MAX_NAME)?;
                check(
                    "device token",
                    d.device_token.map_or(0, str::len),
                    MAX_SECRET,
                )?;
                match &d.proof {
                    None => Ok(()),
                    Some(Proof::Totp(c)) => check("code", c.len(), MAX_CODE),
                    Some(Proof::Hotp { code, next }) => {
                        check("code", code.len(), MAX_CODE)?;
                        check("next code", next.map_or(0, str::len), MAX_CODE)
                    }
                    Some(Proof::Sent { code, .. }) => check("code", code.len(), MAX_CODE),
                    Some(Proof::AppPassword(p)) => check("app password", p.len(), MAX_SECRET),
                    Some(Proof::SecurityAnswers(a)) => {
                        check("answers", a.len(), MAX_ANSWERS)?;
                        a.iter()
                            .try_for_each(|x| check("answer", x.len(), MAX_ANSWER))
                    }
                    Some(Proof::SecurityKey(json)) => {
                        check("security-key answer", json.len(), MAX_KEY_RESPONSE)
                    }
                    Some(Proof::Push { wait_ms, .. }) => {
                        check("wait", *wait_ms as usize, MAX_WAIT_MS as usize)
                    }
                }
            }
            Self::SendCode(_, s) => {
                check("tenant", s.tenant.len(), MAX_NAME)?;
                check("user", s.user.len(), MAX_NAME)
            }
            Self::Decision(_, d) => decision(d),
            Self::Sent {
                decision: d,
                delivery,
                ..
            } => {
                decision(d)?;
                if let Some(x) = delivery {
                    check("destination", x.destination.len(), MAX_HINT)?;
                    check("code", x.code.len(), MAX_CODE)?;
                }
                Ok(())
            }
            Self::Admin(_, a) => a.check(),
            Self::AdminReply(_, a) => a.check(),
            Self::Device(_, d) => d.check(),
            Self::DeviceReply(_, d) => d.check(),
            Self::Error { message, .. } => check("message", message.len(), MAX_MESSAGE),
        }
    }
}

const PROOF_TOTP: u8 = 1;
const PROOF_HOTP: u8 = 2;
const PROOF_SENT: u8 = 3;
const PROOF_APP_PASSWORD: u8 = 4;
const PROOF_ANSWERS: u8 = 5;
const PROOF_PUSH: u8 = 6;
const PROOF_SECURITY_KEY: u8 = 7;

fn read_decide<'a>(r: &mut Reader<'a>) -> Result<Decide<'a>, DecodeError> {
    Ok(Decide {
        tenant: r.str8("tenant", MAX_NAME)?,
        user: r.str8("user", MAX_NAME)?,
        ip: r.ip("ip")?,
        purpose: Purpose::read(r, "purpose")?,
        first_factor: FirstFactor::read(r, "first factor")?,
        proof: r.opt("proof", |r| match r.u8("proof kind")? {
            PROOF_TOTP => Ok(Proof::Totp(r.str8("code", MAX_CODE)?)),
            PROOF_HOTP => Ok(Proof::Hotp {
                code: r.str8("code", MAX_CODE)?,
                next: r.opt("next code", |r| r.str8("next code", MAX_CODE))?,
            }),
            PROOF_SENT => Ok(Proof::Sent {
                challenge: r.bytes16("challenge")?,
                code: r.str8("code", MAX_CODE)?,
            }),
            PROOF_APP_PASSWORD => Ok(Proof::AppPassword(r.str8("app password", MAX_SECRET)?)),
            PROOF_ANSWERS => Ok(Proof::SecurityAnswers(r.list(
                "answers",
                MAX_ANSWERS,
                |r| r.str8("answer", MAX_ANSWER),
            )?)),
            PROOF_SECURITY_KEY => Ok(Proof::SecurityKey(
                r.str16("security-key answer", MAX_KEY_RESPONSE)?,
            )),
            PROOF_PUSH => Ok(Proof::Push {
                approval: r.bytes16("approval")?,
                wait_ms: match r.u32("wait")? {
                    w if w <= MAX_WAIT_MS => w,
                    w => {
                        return Err(DecodeError::BadValue {
                            field: "wait",
                            value: w,
                        });
                    }
                },
            }),
            v => Err(DecodeError::BadValue {
                field: "proof kind",
                value: u32::from(v),
            }),
        })?,
        device_token: r.opt("device token", |r| r.str8("device token", MAX_SECRET))?,
        remember_device: r.bool("remember device")?,
    })
}

fn write_decide(w: &mut Writer<'_>, d: &Decide<'_>) {
    w.str8(d.tenant);
    w.str8(d.user);
    w.ip(d.ip);
    w.u8(d.purpose as u8);
    w.u8(d.first_factor as u8);
    w.opt(d.proof.as_ref(), |w, p| match p {
        Proof::Totp(c) => {
            w.u8(PROOF_TOTP);
            w.str8(c);
        }
        Proof::Hotp { code, next } => {
            w.u8(PROOF_HOTP);
            w.str8(code);
            w.opt(*next, |w, n| w.str8(n));
        }
        Proof::Sent { challenge, code } => {
            w.u8(PROOF_SENT);
            w.raw(challenge);
            w.str8(code);
        }
        Proof::AppPassword(p) => {
            w.u8(PROOF_APP_PASSWORD);
            w.str8(p);
        }
        Proof::SecurityAnswers(a) => {
            w.u8(PROOF_ANSWERS);
            w.list(a, |w, x| w.str8(x));
        }
        Proof::SecurityKey(json) => {
            w.u8(PROOF_SECURITY_KEY);
            w.str16(json);
        }
        Proof::Push { approval, wait_ms } => {
            w.u8(PROOF_PUSH);
            w.raw(approval);
            w.u32(*wait_ms);
        }
    });
    w.opt(d.device_token, |w, t| w.str8(t));
    w.bool(d.remember_device);
}

fn read_decision<'a>(r: &mut Reader<'a>) -> Result<Decision<'a>, DecodeError> {
    Ok(Decision {
        outcome: Outcome::read(r, "outcome")?,
        reason: r.str8("reason", MAX_NAME)?,
        rule: r.str8("rule", MAX_NAME)?,
        location: r.str8("location", MAX_NAME)?,
        methods: r.list("methods", MAX_METHODS, |r| {
            Ok(MethodInfo {
                id: r.u32("method id")?,
                kind: MethodKind::read(r, "method kind")?,
                hint: r.opt("hint", |r| r.str8("hint", MAX_HINT))?,
            })
        })?,
        retry_after_s: r.opt("retry after", |r| r.u32("retry after"))?,
        method: r.opt("method", |r| MethodKind::read(r, "method"))?,
        device_token: r.opt("device token", |r| {
            Ok(DeviceToken {
                token: r.str8("device token", MAX_SECRET)?,
                expires_ms: r.u64("token expiry")?,
            })
        })?,
        approval: r.opt("approval", |r| {
            Ok(Approval {
                id: r.bytes16("approval")?,
                number: r.u8("number")?,
                expires_ms: r.u64("approval expiry")?,
            })
        })?,
        security_key: r.opt("security-key options", |r| {
            r.str16("security-key options", MAX_KEY_OPTIONS)
        })?,
    })
}

fn write_decision(w: &mut Writer<'_>, d: &Decision<'_>) {
    w.u8(d.outcome as u8);
    w.str8(d.reason);
    w.str8(d.rule);
    w.str8(d.location);
    w.list(&d.methods, |w, m| {
        w.u32(m.id);
        w.u8(m.kind as u8);
        w.opt(m.hint, |w, h| w.str8(h));
    });
    w.opt(d.retry_after_s, |w, s| w.u32(s));
    w.opt(d.method, |w, m| w.u8(m as u8));
    w.opt(d.device_token.as_ref(), |w, t| {
        w.str8(t.token);
        w.u64(t.expires_ms);
    });
    w.opt(d.approval.as_ref(), |w, a| {
        w.raw(&a.id);
        w.u8(a.number);
        w.u64(a.expires_ms);
    });
    w.opt(d.security_key, |w, o| w.str16(o));
}
