//! The audit trail: every administrator operation, who asked (the administrator
//! certificate's fingerprint), when, what it touched and what changed, never a secret.
//!
//! An event is written to the durable store's log under the same hold as the change it
//! describes (`portvakt_store::durable::Hold`), so the log never holds a change without its
//! event, and the answer waits until both are durable. Refused operations and reads are
//! recorded too: a security team wants the attempts and who looked. The store keeps the
//! events in order for as long as the data directory is kept.
//!
//! What changed is a user's [`Summary`] before and after, field by field: groups, flags,
//! the default method, the methods (kind and state), app passwords (labels) and remembered
//! devices. Secrets, codes, phone numbers and addresses never enter a summary.
//!
//! The event's bytes are its own, versioned format ([`Event::encode`]); administrators
//! read events as JSON lines ([`Event::to_json`]).

use std::fmt::Write as _;

use portvakt_core::Timestamp;
use portvakt_core::admin::UserInfo;

use crate::bytes_in::Reader;

/// The event format written by this version.
const FORMAT: u8 = 1;
/// The longest value a summary field keeps; longer ones are cut with an ellipsis.
pub const MAX_VALUE: usize = 512;
/// The longest detail (a refusal's reason) kept.
pub const MAX_DETAIL: usize = 1024;
/// The most fields one event's changes hold.
const MAX_CHANGES: usize = 8;

/// What became of the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or read).
    Done,
    /// Refused by the directory's rules (nothing changed).
    Refused,
    /// Failed (the store could not be written; nothing changed).
    Failed,
}

impl Outcome {
    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Done => 1,
            Self::Refused => 2,
            Self::Failed => 3,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(Self::Done),
            2 => Some(Self::Refused),
            3 => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One field that changed: its name, and its value before and after (`None`: absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The field.
    pub field: String,
    /// Before the operation.
    pub before: Option<String>,
    /// After it.
    pub after: Option<String>,
}

/// One administrator operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who: the SHA-256 fingerprint of the administrator certificate, in hex.
    pub actor: String,
    /// The operation, as `portvakt admin` names it (`add-user`, `remove-method`, ...).
    pub op: String,
    /// The organisation (empty for operations on the whole server).
    pub tenant: String,
    /// The user (empty for operations on the whole server).
    pub user: String,
    /// The method the operation named, if it named one.
    pub method: Option<u32>,
    /// What became of it.
    pub outcome: Outcome,
    /// A refusal's reason, or what a server-wide operation did.
    pub detail: String,
    /// What changed.
    pub changes: Vec<Change>,
}

/// Why bytes are not an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an audit event: {0}")]
pub struct BadEvent(&'static str);

impl Event {
    /// An event about `op` on `tenant`'s `user` by `actor` at `now`, done and changing
    /// nothing until told otherwise.
    pub fn about(actor: &str, op: &str, tenant: &str, user: &str, now: Timestamp) -> Self {
        Self {
            at_ms: now.as_millis(),
            actor: actor.to_owned(),
            op: op.to_owned(),
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            method: None,
            outcome: Outcome::Done,
            detail: String::new(),
            changes: Vec::new(),
        }
    }

    /// The event's bytes: format (`u8`), time (`u64`), actor, operation, tenant and user
    /// (each `u8` length and UTF-8), method (`u8` 0, or 1 and `u32`), outcome (`u8`),
    /// detail (`u16` length and UTF-8), and the changes (`u8` count; each a field name
    /// with a `u8` length, then before and after as `u8` 0 for absent or 1 and a `u16`
    /// length and UTF-8). Big-endian. Overlong strings are cut on a character boundary.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let str8 = |out: &mut Vec<u8>, s: &str| {
            let s = cut(s, usize::from(u8::MAX));
            out.push(s.len() as u8);
            out.extend_from_slice(s.as_bytes());
        };
        let str16 = |out: &mut Vec<u8>, s: &str, max: usize| {
            let s = cut(s, max);
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        out.push(FORMAT);
        out.extend_from_slice(&self.at_ms.to_be_bytes());
        str8(out, &self.actor);
        str8(out, &self.op);
        str8(out, &self.tenant);
        str8(out, &self.user);
        match self.method {
            Some(m) => {
                out.push(1);
                out.extend_from_slice(&m.to_be_bytes());
            }
            None => out.push(0),
        }
        out.push(self.outcome.code());
        str16(out, &self.detail, MAX_DETAIL);
        let changes = self.changes.get(..MAX_CHANGES).unwrap_or(&self.changes);
        out.push(changes.len() as u8);
        for c in changes {
            str8(out, &c.field);
            for value in [&c.before, &c.after] {
                match value {
                    Some(v) => {
                        out.push(1);
                        str16(out, v, MAX_VALUE);
                    }
                    None => out.push(0),
                }
            }
        }
    }

    /// An event from its bytes; strict: anything but exactly one event is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, BadEvent> {
        const SHORT: BadEvent = BadEvent("cut short");
        const NAME: BadEvent = BadEvent("a name cut short or not UTF-8");
        const TEXT: BadEvent = BadEvent("a text cut short, over its limit or not UTF-8");
        let name = |r: &mut Reader<'_>| r.str8(usize::from(u8::MAX)).map(str::to_owned).ok_or(NAME);
        let mut r = Reader(bytes);
        if r.u8().ok_or(SHORT)? != FORMAT {
            return Err(BadEvent("another format"));
        }
        let at_ms = u64::from_be_bytes(r.array().ok_or(SHORT)?);
        let actor = name(&mut r)?;
        let op = name(&mut r)?;
        let tenant = name(&mut r)?;
        let user = name(&mut r)?;
        let method = match r.u8().ok_or(SHORT)? {
            0 => None,
            1 => Some(u32::from_be_bytes(r.array().ok_or(SHORT)?)),
            _ => return Err(BadEvent("a method flag")),
        };
        let outcome = Outcome::from_code(r.u8().ok_or(SHORT)?).ok_or(BadEvent("an outcome"))?;
        let detail = r.str16(MAX_DETAIL).ok_or(TEXT)?.to_owned();
        let n = r.u8().ok_or(SHORT)?;
        if usize::from(n) > MAX_CHANGES {
            return Err(BadEvent("too many changes"));
        }
        let mut changes = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let field = name(&mut r)?;
            let mut value = || match r.u8().ok_or(SHORT)? {
                0 => Ok(None),
                1 => r.str16(MAX_VALUE).map(|v| Some(v.to_owned())).ok_or(TEXT),
                _ => Err(BadEvent("a value flag")),
            };
            let before = value()?;
            let after = value()?;
            changes.push(Change {
                field,
                before,
                after,
            });
        }
        if !r.is_empty() {
            return Err(BadEvent("bytes after the event"));
        }
        Ok(Self {
            at_ms,
            actor,
            op,
            tenant,
            user,
            method,
            outcome,
            detail,
            changes,
        })
    }

    /// The event as one line for people: time, operation, whom, outcome, changes, and
    /// the certificate's fingerprint (shortened).
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "{} {} {}/{}",
            crate::signin::rfc3339(self.at_ms),
            self.op,
            self.tenant,
            self.user
        );
        if let Some(m) = self.method {
            let _ = write!(line, " method {m}");
        }
        let _ = write!(line, " {}", self.outcome.as_str());
        if !self.detail.is_empty() {
            let _ = write!(line, " ({})", self.detail);
        }
        for c in &self.changes {
            let show =
                |v: &Option<String>| v.as_deref().map_or("-".to_owned(), |v| format!("{v:?}"));
            let _ = write!(
                line,
                "; {}: {} -> {}",
                c.field,
                show(&c.before),
                show(&c.after)
            );
        }
        let short = self.actor.get(..16).unwrap_or(&self.actor);
        let _ = write!(line, "; by {short}");
        line
    }

    /// The event as one line of JSON.
    pub fn to_json(&self) -> String {
        let changes: serde_json::Map<String, serde_json::Value> = self
            .changes
            .iter()
            .map(|c| {
                (
                    c.field.clone(),
                    serde_json::json!({ "before": c.before, "after": c.after }),
                )
            })
            .collect();
        serde_json::json!({
            "at_ms": self.at_ms,
            "actor": self.actor,
            "op": self.op,
            "tenant": self.tenant,
            "user": self.user,
            "method": self.method,
            "outcome": self.outcome.as_str(),
            "detail": self.detail,
            "changes": changes,
        })
        .to_string()
    }
}

/// `s` cut to at most `max` bytes on a character boundary, with an ellipsis if cut.
fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default()).into()
}

/// What an administrator can see of a user, field by field, for before and after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary(Vec<(&'static str, String)>);

impl Summary {
    /// The summary of a user (`None`: no such user).
    pub fn of(info: Option<&UserInfo>) -> Self {
        let Some(u) = info else {
            return Self::default();
        };
        let mut fields = vec![
            ("exists", "yes".to_owned()),
            ("groups", u.groups.join(",")),
            ("passwordless", u.passwordless.to_string()),
            ("mfa_opt_out", u.mfa_opt_out.to_string()),
        ];
        if let Some(m) = u.default_method {
            fields.push(("default_method", m.0.to_string()));
        }
        let mut methods = String::new();
        for (id, kind, active) in &u.methods {
            let state = if *active { "active" } else { "pending" };
            let sep = if methods.is_empty() { "" } else { ", " };
            let _ = write!(methods, "{sep}{} {} {state}", id.0, kind.as_str());
        }
        let mut passwords = String::new();
        for (id, label, _) in &u.app_passwords {
            let sep = if passwords.is_empty() { "" } else { ", " };
            let _ = write!(passwords, "{sep}{id} {label}");
        }
        let mut devices = String::new();
        for (id, expires) in &u.devices {
            let sep = if devices.is_empty() { "" } else { ", " };
            let _ = write!(devices, "{sep}{id} until {}", expires.as_millis());
        }
        for (name, value) in [
            ("methods", methods),
            ("app_passwords", passwords),
            ("devices", devices),
        ] {
            if !value.is_empty() {
                fields.push((name, value));
            }
        }
        Self(fields)
    }

    fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }

    /// The fields that differ from `self` to `after`, in a fixed order.
    pub fn changes(&self, after: &Self) -> Vec<Change> {
        const FIELDS: [&str; 8] = [
            "exists",
            "groups",
            "passwordless",
            "mfa_opt_out",
            "default_method",
            "methods",
            "app_passwords",
            "devices",
        ];
        FIELDS
            .iter()
            .filter_map(|&f| {
                let (b, a) = (self.get(f), after.get(f));
                (b != a).then(|| Change {
                    field: f.to_owned(),
                    before: b.map(str::to_owned),
                    after: a.map(str::to_owned),
                })
            })
            .collect()
    }
}
