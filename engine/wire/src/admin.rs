//! Administrator frames: one table of operations, their kinds and their fields.
//!
//! Every field has a wire type from [`Field`]; bounded strings and lists carry their limit
//! in the type (`Str<128>`), so one macro can generate decoding, encoding and the limit
//! checks for every operation from the table at the bottom of this file.

use crate::codec::{DecodeError, Reader, Writer};
use crate::frame::EncodeError;

/// A value with a wire encoding.
pub trait Field<'a>: Sized {
    /// Reads the value.
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError>;
    /// Writes the value (limits were checked by [`Field::check`]).
    fn write(&self, w: &mut Writer<'_>);
    /// Checks lengths against limits.
    fn check(&self, field: &'static str) -> Result<(), EncodeError>;
}

/// A UTF-8 string of at most `MAX` bytes (one length byte; `MAX` ≤ 255).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Str<'a, const MAX: usize>(pub &'a str);

/// A UTF-8 string of at most `MAX` bytes with a two-byte length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongStr<'a, const MAX: usize>(pub &'a str);

/// A registered method as an administrator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodRow {
    /// Method id.
    pub id: u32,
    /// Method-kind code.
    pub kind: u8,
    /// Proved and usable.
    pub active: bool,
}

/// At most 16 method rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodRows(pub Vec<MethodRow>);

/// An app password as an administrator sees it (never the password).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppPasswordRow<'a> {
    /// Its id, for revoking it.
    pub id: u32,
    /// What it is for.
    pub label: &'a str,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// At most 10 app-password rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPasswordRows<'a>(pub Vec<AppPasswordRow<'a>>);

/// A remembered device as an administrator sees it (never its token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    /// Its id, for revoking it.
    pub id: u32,
    /// When it stops being remembered, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// At most 10 remembered-device rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRows(pub Vec<DeviceRow>);

/// Raw bytes, at most `MAX` (one length byte; `MAX` ≤ 255).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes<'a, const MAX: usize>(pub &'a [u8]);

/// A list of strings: at most `N` items of at most `MAX` bytes each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrList<'a, const N: usize, const MAX: usize>(pub Vec<&'a str>);

pub(crate) fn too_long(field: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        Err(EncodeError { field, len, max })
    } else {
        Ok(())
    }
}

impl<'a, const MAX: usize> Field<'a> for Str<'a, MAX> {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        r.str8(field, MAX).map(Str)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.str8(self.0);
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        too_long(field, self.0.len(), MAX)
    }
}

impl<'a, const MAX: usize> Field<'a> for LongStr<'a, MAX> {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        r.str16(field, MAX).map(LongStr)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.str16(self.0);
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        too_long(field, self.0.len(), MAX)
    }
}

impl<'a> Field<'a> for MethodRows {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        r.list(field, 16, |r| {
            Ok(MethodRow {
                id: r.u32(field)?,
                kind: r.u8(field)?,
                active: r.bool(field)?,
            })
        })
        .map(MethodRows)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.list(&self.0, |w, m| {
            w.u32(m.id);
            w.u8(m.kind);
            w.bool(m.active);
        });
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        too_long(field, self.0.len(), 16)
    }
}

impl<'a> Field<'a> for AppPasswordRows<'a> {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        r.list(field, 10, |r| {
            Ok(AppPasswordRow {
                id: r.u32(field)?,
                label: r.str8(field, 255)?,
                created_ms: r.u64(field)?,
            })
        })
        .map(AppPasswordRows)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.list(&self.0, |w, a| {
            w.u32(a.id);
            w.str8(a.label);
            w.u64(a.created_ms);
        });
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        too_long(field, self.0.len(), 10)?;
        self.0
            .iter()
            .try_for_each(|a| too_long(field, a.label.len(), 255))
    }
}

impl<'a> Field<'a> for DeviceRows {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        r.list(field, 10, |r| {
            Ok(DeviceRow {
                id: r.u32(field)?,
                expires_ms: r.u64(field)?,
            })
        })
        .map(DeviceRows)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.list(&self.0, |w, d| {
            w.u32(d.id);
            w.u64(d.expires_ms);
        });
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        too_long(field, self.0.len(), 10)
    }
}

impl<'a, const MAX: usize> Field<'a> for Bytes<'a, MAX> {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        let len = usize::from(r.u8(field)?);
        if len > MAX {
            return Err(DecodeError::TooLong {
                field,
                len,
                max: MAX,
            });
        }
        r.take(len, field).map(Bytes)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.u8(u8::try_from(self.0.len()).unwrap_or(u8::MAX));
        w.raw(self.0);
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        too_long(field, self.0.len(), MAX)
    }
}

impl<'a, const N: usize, const MAX: usize> Field<'a> for StrList<'a, N, MAX> {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        r.list(field, N, |r| r.str8(field, MAX)).map(StrList)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.list(&self.0, |w, s| w.str8(s));
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        too_long(field, self.0.len(), N)?;
        self.0
            .iter()
            .try_for_each(|s| too_long(field, s.len(), MAX))
    }
}

/// One recorded decision, as the sign-in log keeps it and as administrators read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignInRow<'a> {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Organisation, as the frontend named it.
    pub tenant: &'a str,
    /// User name, as the frontend named it (known or not).
    pub user: &'a str,
    /// The client's address.
    pub ip: std::net::IpAddr,
    /// Purpose code (as in decide).
    pub purpose: u8,
    /// Outcome code (as in decision).
    pub outcome: u8,
    /// Reason code.
    pub reason: &'a str,
    /// Method-kind code of the method that proved the user, if one did.
    pub method: Option<u8>,
    /// Named location of the address.
    pub location: &'a str,
    /// The rule that decided.
    pub rule: &'a str,
    /// The frontend that asked ([`Frontend`] code).
    pub frontend: u8,
}

/// The frontend a decision was asked through, as the sign-in log names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Frontend {
    /// Portvakt's own protocol over QUIC.
    Quic = 1,
    /// RADIUS (VPN gateways, Wi-Fi controllers).
    Radius = 2,
    /// HTTP: privacyIDEA's `/validate/check` and Portvakt's JSON API.
    Http = 3,
}

impl Frontend {
    /// The frontend with that code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Quic),
            2 => Some(Self::Radius),
            3 => Some(Self::Http),
            _ => None,
        }
    }

    /// Its name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::Radius => "radius",
            Self::Http => "http",
        }
    }
}

/// The most rows one answer carries (the largest possible rows still fit a frame).
pub const MAX_SIGN_IN_ROWS: usize = 24;

impl<'a> Field<'a> for SignInRow<'a> {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        Ok(Self {
            at_ms: r.u64(field)?,
            tenant: r.str8(field, 128)?,
            user: r.str8(field, 128)?,
            ip: r.ip(field)?,
            purpose: r.u8(field)?,
            outcome: r.u8(field)?,
            reason: r.str8(field, 64)?,
            method: r.opt(field, |r| r.u8(field))?,
            location: r.str8(field, 128)?,
            rule: r.str8(field, 128)?,
            frontend: r.u8(field)?,
        })
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.u64(self.at_ms);
        w.str8(self.tenant);
        w.str8(self.user);
        w.ip(self.ip);
        w.u8(self.purpose);
        w.u8(self.outcome);
        w.str8(self.reason);
        w.opt(self.method, |w, m| w.u8(m));
        w.str8(self.location);
        w.str8(self.rule);
        w.u8(self.frontend);
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        too_long(field, self.tenant.len(), 128)?;
        too_long(field, self.user.len(), 128)?;
        too_long(field, self.reason.len(), 64)?;
        too_long(field, self.location.len(), 128)?;
        too_long(field, self.rule.len(), 128)
    }
}

/// At most [`MAX_SIGN_IN_ROWS`] sign-in rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignInRows<'a>(pub Vec<SignInRow<'a>>);

impl<'a> Field<'a> for SignInRows<'a> {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        r.list(field, MAX_SIGN_IN_ROWS, |r| SignInRow::read(r, field))
            .map(SignInRows)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.list(&self.0, |w, row| row.write(w));
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        too_long(field, self.0.len(), MAX_SIGN_IN_ROWS)?;
        self.0.iter().try_for_each(|row| row.check(field))
    }
}

/// The most audit events one answer carries.
pub const MAX_AUDIT_EVENTS: usize = 24;
/// The longest audit event, in bytes (the server's own encoding; one always fits a frame).
pub const MAX_AUDIT_EVENT: usize = 14 * 1024;

/// Audit events, each in the server's own encoding (`portvakt_server::audit::Event`), as
/// the server keeps them: `u16` length and bytes each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvents<'a>(pub Vec<&'a [u8]>);

impl<'a> Field<'a> for AuditEvents<'a> {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        r.list(field, MAX_AUDIT_EVENTS, |r| {
            let len = usize::from(r.u16(field)?);
            if len > MAX_AUDIT_EVENT {
                return Err(DecodeError::TooLong {
                    field,
                    len,
                    max: MAX_AUDIT_EVENT,
                });
            }
            r.take(len, field)
        })
        .map(AuditEvents)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.list(&self.0, |w, e| {
            w.u16(e.len() as u16);
            w.raw(e);
        });
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        too_long(field, self.0.len(), MAX_AUDIT_EVENTS)?;
        self.0
            .iter()
            .try_for_each(|e| too_long(field, e.len(), MAX_AUDIT_EVENT))
    }
}

macro_rules! fixed_field {
    ($t:ty, $read:ident, $write:ident) => {
        impl<'a> Field<'a> for $t {
            fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
                r.$read(field)
            }
            fn write(&self, w: &mut Writer<'_>) {
                w.$write(*self);
            }
            fn check(&self, _: &'static str) -> Result<(), EncodeError> {
                Ok(())
            }
        }
    };
}

fixed_field!(u8, u8, u8);
fixed_field!(u16, u16, u16);
fixed_field!(u32, u32, u32);
fixed_field!(u64, u64, u64);
fixed_field!(bool, bool, bool);

impl<'a, const N: usize> Field<'a> for [u8; N] {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        r.array(field)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.raw(self);
    }
    fn check(&self, _: &'static str) -> Result<(), EncodeError> {
        Ok(())
    }
}

impl<'a, T: Field<'a>> Field<'a> for Option<T> {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        r.opt(field, |r| T::read(r, field))
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.opt(self.as_ref(), |w, v| v.write(w));
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        self.as_ref().map_or(Ok(()), |v| v.check(field))
    }
}

macro_rules! messages {
    (
        $(#[$doc:meta])* $name:ident {
            $( $(#[$vdoc:meta])* $kind:literal $variant:ident { $( $(#[$fdoc:meta])* $field:ident : $ty:ty ),* $(,)? } )*
        }
    ) => {
        $(#[$doc])*
        // Fields are named for what they hold; each variant's doc and docs/protocol.md say
        // the rest.
        #[allow(missing_docs)]
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum $name<'a> {
            $( $(#[$vdoc])* $variant { $( $(#[$fdoc])* $field: $ty, )* }, )*
        }

        impl<'a> $name<'a> {
            /// Every kind in this table, for documentation and tests.
            pub const KINDS: &'static [(u8, &'static str)] = &[$( ($kind, stringify!($variant)), )*];

            /// The frame kind.
            pub fn kind(&self) -> u8 {
                match self { $( Self::$variant { .. } => $kind, )* }
            }

            /// Decodes the body of a frame of kind `kind`, if the kind is in this table.
            pub(crate) fn read(kind: u8, r: &mut Reader<'a>) -> Option<Result<Self, DecodeError>> {
                Self::KINDS.iter().any(|(k, _)| *k == kind).then(|| Self::read_body(kind, r))
            }

            fn read_body(kind: u8, r: &mut Reader<'a>) -> Result<Self, DecodeError> {
                match kind {
                    $( $kind => Ok(Self::$variant { $( $field: <$ty as Field>::read(r, stringify!($field))?, )* }), )*
                    other => Err(DecodeError::UnknownKind(other)),
                }
            }

            pub(crate) fn write(&self, w: &mut Writer<'_>) {
                match self {
                    $( Self::$variant { $( $field, )* } => { $( $field.write(w); )* } )*
                }
            }

            pub(crate) fn check(&self) -> Result<(), EncodeError> {
                match self {
                    $( Self::$variant { $( $field, )* } => { $( $field.check(stringify!($field))?; )* Ok(()) } )*
                }
            }
        }

        #[cfg(feature = "json")]
        impl<'a> $name<'a> {
            /// Every kind's name in JSON (`crate::json`), in table order.
            pub fn json_names() -> Vec<String> {
                vec![$( crate::json::snake_case(stringify!($variant)), )*]
            }

            /// What a JSON request for kind `name` must own rather than borrow (secrets'
            /// bytes, decoded), for [`Self::from_json`].
            pub fn json_owned(name: &str, v: &serde_json::Value) -> Result<Vec<Vec<u8>>, String> {
                let mut owned = Vec::new();
                $( if name == crate::json::snake_case(stringify!($variant)) {
                    let map = crate::json::object(v, &[$( stringify!($field) ),*])?;
                    $( <$ty as crate::json::JsonField<'_>>::own(map.get(stringify!($field)), stringify!($field), &mut owned)?; )*
                    let _ = map;
                    return Ok(owned);
                } )*
                Err(format!("no such operation: {name:?}"))
            }

            /// The request of kind `name` that `v` holds, with `owned` from
            /// [`Self::json_owned`].
            pub fn from_json(name: &str, v: &'a serde_json::Value, owned: &'a [Vec<u8>]) -> Result<Self, String> {
                let mut owned = owned.iter();
                $( if name == crate::json::snake_case(stringify!($variant)) {
                    let map = crate::json::object(v, &[$( stringify!($field) ),*])?;
                    let _ = (&map, &mut owned);
                    return Ok(Self::$variant { $( $field: <$ty as crate::json::JsonField<'a>>::from_json(map.get(stringify!($field)), stringify!($field), &mut owned)?, )* });
                } )*
                Err(format!("no such operation: {name:?}"))
            }

            /// The kind's name in JSON and its fields.
            pub fn to_json(&self) -> (String, serde_json::Map<String, serde_json::Value>) {
                match self {
                    $( Self::$variant { $( $field, )* } => {
                        #[allow(unused_mut)]
                        let mut map = serde_json::Map::new();
                        $( map.insert(stringify!($field).to_owned(), crate::json::JsonField::to_json($field)); )*
                        (crate::json::snake_case(stringify!($variant)), map)
                    } )*
                }
            }
        }
    };
}

/// A tenant or user name.
pub type Name<'a> = Str<'a, 128>;
/// A code as typed.
pub type CodeStr<'a> = Str<'a, 16>;

messages! {
    /// Administrator requests (client → server). Only clients with the administrator
    /// certificate may send them.
    Admin {
        /// Adds a user.
        0x10 AddUser { tenant: Name<'a>, user: Name<'a>, groups: StrList<'a, 64, 128>, passwordless: bool }
        /// Removes a user and all its state.
        0x11 RemoveUser { tenant: Name<'a>, user: Name<'a> }
        /// Replaces a user's groups.
        0x12 SetGroups { tenant: Name<'a>, user: Name<'a>, groups: StrList<'a, 64, 128> }
        /// Makes an account passwordless, or not.
        0x13 SetPasswordless { tenant: Name<'a>, user: Name<'a>, passwordless: bool }
        /// Turns two-step verification off or on for a user (refused under security defaults).
        0x14 SetMfaOptOut { tenant: Name<'a>, user: Name<'a>, opt_out: bool }
        /// Starts enrolling an authenticator app: algorithm 1 SHA-1, 2 SHA-256, 3 SHA-512.
        0x15 EnrollTotp { tenant: Name<'a>, user: Name<'a>, algorithm: u8, digits: u8, period: u16 }
        /// Imports an authenticator app with a known secret.
        0x16 ImportTotp { tenant: Name<'a>, user: Name<'a>, secret: Bytes<'a, 128>, algorithm: u8, digits: u8, period: u16, active: bool }
        /// Adds a hardware token (HOTP, SHA-1) at a counter.
        0x17 AddHotp { tenant: Name<'a>, user: Name<'a>, secret: Bytes<'a, 128>, digits: u8, counter: u64 }
        /// Adds a phone: kind 3 SMS or 4 voice (the method-kind codes).
        0x18 AddPhone { tenant: Name<'a>, user: Name<'a>, kind: u8, number: Str<'a, 32> }
        /// Adds an email address for password reset.
        0x19 AddEmail { tenant: Name<'a>, user: Name<'a>, address: Str<'a, 254> }
        /// Records a security key registered by the frontend.
        0x1a AddSecurityKey { tenant: Name<'a>, user: Name<'a> }
        /// Sets the security answers.
        0x1b SetSecurityQuestions { tenant: Name<'a>, user: Name<'a>, answers: StrList<'a, 5, 255> }
        /// Proves a pending authenticator app or token with its first code.
        0x1c ConfirmOtp { tenant: Name<'a>, user: Name<'a>, method: u32, code: CodeStr<'a> }
        /// Sends a code to a pending phone or email.
        0x1d StartConfirmation { tenant: Name<'a>, user: Name<'a>, method: u32 }
        /// Proves a pending phone or email with the code sent.
        0x1e ConfirmSent { tenant: Name<'a>, user: Name<'a>, method: u32, challenge: [u8; 16], code: CodeStr<'a> }
        /// Removes one method.
        0x1f RemoveMethod { tenant: Name<'a>, user: Name<'a>, method: u32 }
        /// A lost or stolen phone: removes every method and remembered device.
        0x20 RemoveAllMethods { tenant: Name<'a>, user: Name<'a> }
        /// Makes an active method the default.
        0x21 SetDefaultMethod { tenant: Name<'a>, user: Name<'a>, method: u32 }
        /// Clears a user's lockout.
        0x22 Unlock { tenant: Name<'a>, user: Name<'a> }
        /// Forgets an authenticator's learned clock drift.
        0x23 ResetDrift { tenant: Name<'a>, user: Name<'a>, method: u32 }
        /// Creates an app password.
        0x24 CreateAppPassword { tenant: Name<'a>, user: Name<'a>, label: Str<'a, 255> }
        /// Revokes an app password.
        0x25 RevokeAppPassword { tenant: Name<'a>, user: Name<'a>, id: u32 }
        /// Forgets one remembered device, or all of them.
        0x26 RevokeDevices { tenant: Name<'a>, user: Name<'a>, id: Option<u32> }
        /// Describes a user.
        0x27 UserInfo { tenant: Name<'a>, user: Name<'a> }
        /// Reloads the policy from the server's configuration file.
        0x28 ReloadPolicy {}
        /// Reads the sign-in log: a tenant's records (one user's, or everyone's when `user`
        /// is empty) with `from_ms <= time < to_ms`, resuming at `cursor` (0: the start),
        /// at most `limit` rows (capped at 24).
        0x29 SignIns { tenant: Name<'a>, user: Str<'a, 128>, from_ms: u64, to_ms: u64, cursor: u64, limit: u8 }
        /// Writes a consistent copy of the durable store to `path`, a new file on the
        /// server's machine.
        0x2a Backup { path: LongStr<'a, 1024> }
        /// Reads the audit trail: events with `from_ms <= time < to_ms`, of one tenant
        /// (all when empty) and one user (all when empty), resuming at `cursor` (0: the
        /// start), at most `limit` events (capped at 24, fewer if they fill a frame).
        0x2b Audit { tenant: Str<'a, 128>, user: Str<'a, 128>, from_ms: u64, to_ms: u64, cursor: u64, limit: u8 }
        /// Starts enrolling a push device: a pending method and a one-time token for the
        /// device to pair with (frame `device_enrol`).
        0x2c EnrollPush { tenant: Name<'a>, user: Name<'a> }
        /// Starts registering a security key: the options for the browser's
        /// `navigator.credentials.create()`.
        0x2d SecurityKeyStart { tenant: Name<'a>, user: Name<'a> }
        /// Finishes registering a security key with the browser's JSON, unchanged.
        0x2e SecurityKeyFinish { tenant: Name<'a>, user: Name<'a>, response: LongStr<'a, 12288> }
    }
}

messages! {
    /// Answers to administrator requests (server → client).
    AdminReply {
        /// Done; nothing to report.
        0xa0 Done {}
        /// A user was added.
        0xa1 UserAdded { user_id: u32 }
        /// A method was added (pending unless the request said otherwise).
        0xa2 MethodAdded { method: u32 }
        /// An authenticator app is pending: show the URI as a QR code, once.
        0xa3 TotpEnrolled { method: u32, secret_base32: Str<'a, 128>, uri: LongStr<'a, 1024> }
        /// An app password was created: show it once.
        0xa4 AppPasswordCreated { id: u32, password: Str<'a, 64> }
        /// A confirmation code was made: deliver it (channel is a method-kind code).
        0xa5 ConfirmationSent { challenge: [u8; 16], channel: u8, destination: Str<'a, 255>, code: CodeStr<'a>, expires_ms: u64 }
        /// Sending a confirmation code is rate-limited.
        0xa6 ConfirmationThrottled { retry_after_s: u32 }
        /// A user: groups, flags, default method, methods, app passwords and remembered
        /// devices (with the ids that revoke them).
        0xa7 UserDescribed {
            user_id: u32, groups: StrList<'a, 64, 128>, passwordless: bool, mfa_opt_out: bool,
            default_method: Option<u32>, methods: MethodRows, app_passwords: AppPasswordRows<'a>,
            devices: DeviceRows
        }
        /// The policy was reloaded.
        0xa8 PolicyReloaded { tenants: u16 }
        /// Sign-in records in the order they were logged; `next` is the cursor to ask with
        /// for more, absent when the log holds no more matches.
        0xa9 SignInsFound { rows: SignInRows<'a>, next: Option<u64> }
        /// The backup was written: its size and the number of files in it.
        0xaa BackedUp { bytes: u64, files: u32 }
        /// Audit events in the order they were made; `next` is the cursor to ask with for
        /// more, absent when the trail holds no more.
        0xab AuditFound { events: AuditEvents<'a>, next: Option<u64> }
        /// A push device is pending: hand the device the method and token (an enrolment
        /// URI), once; the token works until `expires_ms`.
        0xac PushEnrolled { method: u32, token: Str<'a, 64>, expires_ms: u64 }
        /// A security key's registration is open until `expires_ms`: hand the options to
        /// the browser, unchanged.
        0xad SecurityKeyOptions { options: LongStr<'a, 8192>, expires_ms: u64 }
    }
}
