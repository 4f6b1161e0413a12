//! Administrator operations and their answers as JSON (feature `json`), for the HTTP
//! API's `/v1/admin/<operation>` routes: the same operations, the same fields by the same
//! names, and the same limits as the frames have.
//!
//! A request is one JSON object of the operation's fields; a field that may be absent in
//! the frame (`opt`) may be absent or `null`, every other one must be there, and a field
//! the operation does not have is an error. Strings are strings, numbers numbers, flags
//! booleans, lists arrays; ids, keys and signatures of fixed length hex (a 16-byte id is
//! 32 hex digits), and secrets (bytes) base32 as
//! in `otpauth://` URIs. An answer is an object of the reply's fields with `"reply"` naming
//! it.

use serde_json::{Map, Value};

use crate::admin::{
    AppPasswordRows, AuditEvents, Bytes, DeviceRows, LongStr, MethodRows, SignInRows, Str, StrList,
};

/// A field's JSON form.
pub trait JsonField<'a>: Sized {
    /// Decodes what the field must own rather than borrow (a secret's bytes), appending
    /// it to `owned`; fields are visited in order, so [`JsonField::from_json`] finds it
    /// again.
    fn own(
        _v: Option<&Value>,
        _field: &'static str,
        _owned: &mut Vec<Vec<u8>>,
    ) -> Result<(), String> {
        Ok(())
    }
    /// The field from `v` (absent: `None`), borrowing strings from it and owned bytes, in
    /// order, from `owned`.
    fn from_json(
        v: Option<&'a Value>,
        field: &'static str,
        owned: &mut std::slice::Iter<'a, Vec<u8>>,
    ) -> Result<Self, String>;
    /// The field as JSON.
    fn to_json(&self) -> Value;
}

fn present<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a Value, String> {
    match v {
        Some(Value::Null) | None => Err(format!("{field}: missing")),
        Some(v) => Ok(v),
    }
}

fn string<'a>(v: Option<&'a Value>, field: &str, max: usize) -> Result<&'a str, String> {
    let s = present(v, field)?
        .as_str()
        .ok_or_else(|| format!("{field}: not a string"))?;
    if s.len() > max {
        return Err(format!("{field}: {} bytes, at most {max}", s.len()));
    }
    Ok(s)
}

fn output_only(field: &str) -> String {
    format!("{field}: not a field a request has")
}

/// Strings of at most `MAX` bytes, whichever length prefix the frame gives them.
macro_rules! string_field {
    ($($t:ident),*) => {$(
        impl<'a, const MAX: usize> JsonField<'a> for $t<'a, MAX> {
            fn from_json(
                v: Option<&'a Value>,
                field: &'static str,
                _: &mut std::slice::Iter<'a, Vec<u8>>,
            ) -> Result<Self, String> {
                string(v, field, MAX).map($t)
            }
            fn to_json(&self) -> Value {
                Value::from(self.0)
            }
        }
    )*};
}

string_field!(Str, LongStr);

impl<'a, const N: usize, const MAX: usize> JsonField<'a> for StrList<'a, N, MAX> {
    fn from_json(
        v: Option<&'a Value>,
        field: &'static str,
        _: &mut std::slice::Iter<'a, Vec<u8>>,
    ) -> Result<Self, String> {
        let items = present(v, field)?
            .as_array()
            .ok_or_else(|| format!("{field}: not an array"))?;
        if items.len() > N {
            return Err(format!("{field}: {} items, at most {N}", items.len()));
        }
        items
            .iter()
            .map(|item| string(Some(item), field, MAX))
            .collect::<Result<_, _>>()
            .map(StrList)
    }
    fn to_json(&self) -> Value {
        Value::from(self.0.clone())
    }
}

impl<'a, const MAX: usize> JsonField<'a> for Bytes<'a, MAX> {
    fn own(v: Option<&Value>, field: &'static str, owned: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let text: String = string(v, field, usize::MAX)?
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(text.as_bytes())
            .map_err(|e| format!("{field}: not base32 ({e})"))?;
        if bytes.len() > MAX {
            return Err(format!("{field}: {} bytes, at most {MAX}", bytes.len()));
        }
        owned.push(bytes);
        Ok(())
    }
    fn from_json(
        _: Option<&'a Value>,
        field: &'static str,
        owned: &mut std::slice::Iter<'a, Vec<u8>>,
    ) -> Result<Self, String> {
        owned
            .next()
            .map(|b| Bytes(b.as_slice()))
            .ok_or_else(|| format!("{field}: missing"))
    }
    fn to_json(&self) -> Value {
        Value::from(data_encoding::BASE32_NOPAD.encode(self.0))
    }
}

macro_rules! number_field {
    ($($t:ty),*) => {$(
        impl<'a> JsonField<'a> for $t {
            fn from_json(
                v: Option<&'a Value>,
                field: &'static str,
                _: &mut std::slice::Iter<'a, Vec<u8>>,
            ) -> Result<Self, String> {
                present(v, field)?
                    .as_u64()
                    .and_then(|n| <$t>::try_from(n).ok())
                    .ok_or_else(|| format!("{field}: not a whole number from 0 to {}", <$t>::MAX))
            }
            fn to_json(&self) -> Value {
                Value::from(*self)
            }
        }
    )*};
}

number_field!(u8, u16, u32, u64);

impl<'a> JsonField<'a> for bool {
    fn from_json(
        v: Option<&'a Value>,
        field: &'static str,
        _: &mut std::slice::Iter<'a, Vec<u8>>,
    ) -> Result<Self, String> {
        present(v, field)?
            .as_bool()
            .ok_or_else(|| format!("{field}: not true or false"))
    }
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
}

impl<'a, const N: usize> JsonField<'a> for [u8; N] {
    fn from_json(
        v: Option<&'a Value>,
        field: &'static str,
        _: &mut std::slice::Iter<'a, Vec<u8>>,
    ) -> Result<Self, String> {
        let text = string(v, field, 2 * N)?;
        let mut out = [0u8; N];
        // The length first: decoding into a buffer of another length panics.
        let decoded = (text.len() == 2 * N)
            .then(|| data_encoding::HEXLOWER_PERMISSIVE.decode_mut(text.as_bytes(), &mut out));
        match decoded {
            Some(Ok(_)) => Ok(out),
            _ => Err(format!("{field}: not {} hex digits", 2 * N)),
        }
    }
    fn to_json(&self) -> Value {
        Value::from(data_encoding::HEXLOWER.encode(self))
    }
}

impl<'a, T: JsonField<'a>> JsonField<'a> for Option<T> {
    fn own(v: Option<&Value>, field: &'static str, owned: &mut Vec<Vec<u8>>) -> Result<(), String> {
        match v {
            None | Some(Value::Null) => Ok(()),
            v => T::own(v, field, owned),
        }
    }
    fn from_json(
        v: Option<&'a Value>,
        field: &'static str,
        owned: &mut std::slice::Iter<'a, Vec<u8>>,
    ) -> Result<Self, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            v => T::from_json(v, field, owned).map(Some),
        }
    }
    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::to_json)
    }
}

/// Fields only answers have.
macro_rules! output_field {
    ($($t:ty => |$s:ident| $body:expr),* $(,)?) => {$(
        impl<'a> JsonField<'a> for $t {
            fn from_json(
                _: Option<&'a Value>,
                field: &'static str,
                _: &mut std::slice::Iter<'a, Vec<u8>>,
            ) -> Result<Self, String> {
                Err(output_only(field))
            }
            fn to_json(&self) -> Value {
                let $s = self;
                $body
            }
        }
    )*};
}

output_field! {
    MethodRows => |rows| Value::from(rows.0.iter().map(|m| serde_json::json!({
        "id": m.id,
        "kind": crate::MethodKind::from_code(m.kind).map_or("unknown", crate::MethodKind::as_str),
        "active": m.active,
    })).collect::<Vec<_>>()),
    AppPasswordRows<'a> => |rows| Value::from(rows.0.iter().map(|a| serde_json::json!({
        "id": a.id,
        "label": a.label,
        "created_ms": a.created_ms,
    })).collect::<Vec<_>>()),
    DeviceRows => |rows| Value::from(rows.0.iter().map(|d| serde_json::json!({
        "id": d.id,
        "expires_ms": d.expires_ms,
    })).collect::<Vec<_>>()),
    SignInRows<'a> => |rows| Value::from(rows.0.iter().map(|r| serde_json::json!({
        "at_ms": r.at_ms,
        "tenant": r.tenant,
        "user": r.user,
        "ip": r.ip.to_string(),
        "purpose": crate::Purpose::from_code(r.purpose).map_or("unknown", crate::Purpose::as_str),
        "outcome": crate::Outcome::from_code(r.outcome).map_or("unknown", crate::Outcome::as_str),
        "reason": r.reason,
        "method": r.method.map(|m| crate::MethodKind::from_code(m).map_or("unknown", crate::MethodKind::as_str)),
        "location": r.location,
        "rule": r.rule,
        "frontend": crate::admin::Frontend::from_code(r.frontend).map_or("unknown", crate::admin::Frontend::as_str),
    })).collect::<Vec<_>>()),
    crate::device::ApprovalRows<'a> => |rows| Value::from(rows.0.iter().map(|a| serde_json::json!({
        "id": data_encoding::HEXLOWER.encode(&a.id),
        "issued_ms": a.issued_ms,
        "expires_ms": a.expires_ms,
        "purpose": crate::Purpose::from_code(a.purpose).map_or("unknown", crate::Purpose::as_str),
        "location": a.location,
    })).collect::<Vec<_>>()),
    // Audit events are the server's own encoding: base64 here, as bytes are elsewhere
    // in JSON; `portvakt admin audit --json` reads them for people.
    AuditEvents<'a> => |events| Value::from(events.0.iter().map(|e| data_encoding::BASE64.encode(e)).collect::<Vec<_>>()),
}

/// A variant's name as JSON and the HTTP routes have it: `AddUser` → `add_user`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `v` as an object whose keys are all among `fields`.
pub(crate) fn object<'v>(v: &'v Value, fields: &[&str]) -> Result<&'v Map<String, Value>, String> {
    let map = v
        .as_object()
        .ok_or_else(|| "the request is not a JSON object".to_owned())?;
    if let Some(stray) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(format!("{stray}: not a field of this operation"));
    }
    Ok(map)
}
