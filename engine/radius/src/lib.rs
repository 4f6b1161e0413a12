//! RADIUS packets (RFC 2865), with the parts of RFC 2869 and RFC 3579 an authentication
//! server needs: bytes in, typed packets out, and nothing else. No sockets, no clients
//! table, no policy.
//!
//! - [`Packet::decode`] reads one datagram. The length field must equal the datagram's
//!   length and lie within 20 to 4,096 bytes, and attributes must end exactly where the
//!   packet does. Every length is checked before it is used, and a failure is a
//!   [`DecodeError`] value, never a panic.
//! - [`Packet::encode`] writes a packet, refusing one over 4,096 bytes or with an
//!   attribute value over 253 bytes.
//! - [`hide_password`] and [`reveal_password`] are User-Password's hiding (§5.2), for
//!   passwords of at most 128 bytes.
//! - [`Packet::verify_request`] checks an Access-Request's Message-Authenticator
//!   (RFC 2869 §5.14, RFC 3579 §3.2) in constant time. [`Packet::sign_reply`] writes a
//!   reply's Message-Authenticator (placed first, with the request's authenticator) and
//!   then its Response Authenticator, in that order.
//!
//! Which packets to trust, answer or drop is the server's business.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// The shortest packet: code, identifier, length and authenticator.
pub const MIN_PACKET: usize = 20;
/// The longest packet (RFC 2865 §3).
pub const MAX_PACKET: usize = 4096;
/// The longest attribute value (its length octet counts type and length too).
pub const MAX_VALUE: usize = 253;
/// The longest User-Password (RFC 2865 §5.2).
pub const MAX_PASSWORD: usize = 128;

/// Packet codes.
pub mod code {
    /// Access-Request.
    pub const ACCESS_REQUEST: u8 = 1;
    /// Access-Accept.
    pub const ACCESS_ACCEPT: u8 = 2;
    /// Access-Reject.
    pub const ACCESS_REJECT: u8 = 3;
    /// Accounting-Request.
    pub const ACCOUNTING_REQUEST: u8 = 4;
    /// Access-Challenge.
    pub const ACCESS_CHALLENGE: u8 = 11;
    /// Status-Server (RFC 5997).
    pub const STATUS_SERVER: u8 = 12;
}

/// Attribute types this server reads or writes.
pub mod attr {
    /// User-Name.
    pub const USER_NAME: u8 = 1;
    /// User-Password (hidden, §5.2).
    pub const USER_PASSWORD: u8 = 2;
    /// CHAP-Password.
    pub const CHAP_PASSWORD: u8 = 3;
    /// NAS-IP-Address.
    pub const NAS_IP_ADDRESS: u8 = 4;
    /// Service-Type.
    pub const SERVICE_TYPE: u8 = 6;
    /// Framed-IP-Address.
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    /// Reply-Message.
    pub const REPLY_MESSAGE: u8 = 18;
    /// State.
    pub const STATE: u8 = 24;
    /// Calling-Station-Id.
    pub const CALLING_STATION_ID: u8 = 31;
    /// NAS-Identifier.
    pub const NAS_IDENTIFIER: u8 = 32;
    /// Proxy-State.
    pub const PROXY_STATE: u8 = 33;
    /// EAP-Message (RFC 3579).
    pub const EAP_MESSAGE: u8 = 79;
    /// Message-Authenticator (RFC 2869 §5.14): 16 octets.
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

/// Why bytes are not a RADIUS packet, or a packet cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than 20 or more than 4,096 bytes.
    #[error("a datagram of {0} bytes: a packet has 20 to 4096")]
    Size(usize),
    /// The length field does not say the datagram's length.
    #[error("the length field says {field}, the datagram has {datagram}")]
    Length {
        /// The length field.
        field: usize,
        /// The datagram's length.
        datagram: usize,
    },
    /// An attribute's length is under 2 or runs past the packet.
    #[error("an attribute at offset {0} does not fit the packet")]
    Attribute(usize),
    /// A Message-Authenticator is not 16 bytes, or appears twice.
    #[error("a malformed Message-Authenticator")]
    MessageAuthenticator,
    /// A User-Password is empty, over 128 bytes or not a multiple of 16.
    #[error("a User-Password of {0} bytes (a multiple of 16, at most 128)")]
    Password(usize),
    /// A value over 253 bytes, or a packet over 4,096, cannot be written.
    #[error("{0} does not fit a packet")]
    TooLong(&'static str),
}

/// One attribute: its type and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The type.
    pub kind: u8,
    /// The value (at most 253 bytes).
    pub value: &'a [u8],
}

/// One packet. Its attributes borrow from the datagram it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The code (`code::ACCESS_REQUEST`, ...).
    pub code: u8,
    /// The identifier that matches a reply to its request.
    pub identifier: u8,
    /// The Request or Response Authenticator.
    pub authenticator: [u8; 16],
    /// The attributes, in order.
    pub attributes: Vec<Attribute<'a>>,
}

type HmacMd5 = Hmac<Md5>;

impl<'a> Packet<'a> {
    /// Reads one datagram.
    pub fn decode(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        let n = datagram.len();
        if !(MIN_PACKET..=MAX_PACKET).contains(&n) {
            return Err(DecodeError::Size(n));
        }
        let (head, mut rest) = datagram
            .split_first_chunk::<20>()
            .ok_or(DecodeError::Size(n))?;
        let [code, identifier, l0, l1, authenticator @ ..] = *head;
        let field = usize::from(u16::from_be_bytes([l0, l1]));
        if field != n {
            return Err(DecodeError::Length { field, datagram: n });
        }
        let mut attributes = Vec::new();
        let mut seen_ma = false;
        while let Some((&[kind, len], after)) = rest.split_first_chunk::<2>() {
            let at = n - rest.len();
            let value_len = usize::from(len)
                .checked_sub(2)
                .ok_or(DecodeError::Attribute(at))?;
            let value = after.get(..value_len).ok_or(DecodeError::Attribute(at))?;
            if kind == attr::MESSAGE_AUTHENTICATOR {
                if value.len() != 16 || seen_ma {
                    return Err(DecodeError::MessageAuthenticator);
                }
                seen_ma = true;
            }
            attributes.push(Attribute { kind, value });
            rest = after.get(value_len..).unwrap_or_default();
        }
        if !rest.is_empty() {
            return Err(DecodeError::Attribute(n - rest.len()));
        }
        Ok(Self {
            code,
            identifier,
            authenticator,
            attributes,
        })
    }

    /// Appends the packet's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let len = MIN_PACKET
            + self
                .attributes
                .iter()
                .map(|a| 2 + a.value.len())
                .sum::<usize>();
        if len > MAX_PACKET {
            return Err(DecodeError::TooLong("the packet"));
        }
        if self.attributes.iter().any(|a| a.value.len() > MAX_VALUE) {
            return Err(DecodeError::TooLong("an attribute value"));
        }
        out.push(self.code);
        out.push(self.identifier);
        out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(&self.authenticator);
        for a in &self.attributes {
            out.push(a.kind);
            out.push(u8::try_from(2 + a.value.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(a.value);
        }
        Ok(())
    }

    /// The first value of attribute `kind`.
    pub fn get(&self, kind: u8) -> Option<&'a [u8]> {
        self.attributes
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.value)
    }

    /// Every value of attribute `kind`, in order (Proxy-State repeats).
    pub fn all(&self, kind: u8) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.attributes
            .iter()
            .filter(move |a| a.kind == kind)
            .map(|a| a.value)
    }

    /// Whether the request's Message-Authenticator is present and right for `secret`
    /// (HMAC-MD5 over the packet with the attribute's value zeroed), compared in constant
    /// time. `datagram` is the packet's own bytes.
    pub fn verify_request(datagram: &[u8], secret: &[u8]) -> Result<bool, DecodeError> {
        let packet = Packet::decode(datagram)?;
        let Some(given) = packet.get(attr::MESSAGE_AUTHENTICATOR) else {
            return Ok(false);
        };
        let mut zeroed = datagram.to_vec();
        let at = ma_offset(&packet).ok_or(DecodeError::MessageAuthenticator)?;
        if let Some(field) = zeroed.get_mut(at..at + 16) {
            field.fill(0);
        }
        let expected = hmac_md5(secret, &zeroed);
        Ok(expected.ct_eq(given).into())
    }

    /// The bytes of a request, signed for `secret`: a Message-Authenticator first among
    /// the attributes, computed over the packet with its own Request Authenticator (which
    /// the caller chose at random). Any Message-Authenticator in `self` is replaced. For
    /// a server that forwards requests, and for tests.
    pub fn sign_request(&self, secret: &[u8]) -> Result<Vec<u8>, DecodeError> {
        self.with_message_authenticator(&self.authenticator, secret)
    }

    /// The bytes of a reply to `request_authenticator`, signed for `secret`: a
    /// Message-Authenticator first among the attributes (BlastRADIUS), computed with the
    /// request's authenticator in the header, then the Response Authenticator (MD5 over
    /// code, identifier, length, the request's authenticator, the attributes and the
    /// secret). Any Message-Authenticator in `self` is replaced.
    pub fn sign_reply(
        &self,
        request_authenticator: &[u8; 16],
        secret: &[u8],
    ) -> Result<Vec<u8>, DecodeError> {
        let mut bytes = self.with_message_authenticator(request_authenticator, secret)?;
        let mut md5 = Md5::new();
        md5.update(&bytes);
        md5.update(secret);
        let response: [u8; 16] = md5.finalize().into();
        if let Some(field) = bytes.get_mut(4..20) {
            field.copy_from_slice(&response);
        }
        Ok(bytes)
    }

    /// The packet's bytes with `authenticator` in the header and a Message-Authenticator
    /// for `secret` first among the attributes (replacing any other).
    fn with_message_authenticator(
        &self,
        authenticator: &[u8; 16],
        secret: &[u8],
    ) -> Result<Vec<u8>, DecodeError> {
        let zero = [0u8; 16];
        let mut attributes = vec![Attribute {
            kind: attr::MESSAGE_AUTHENTICATOR,
            value: &zero,
        }];
        attributes.extend(
            self.attributes
                .iter()
                .filter(|a| a.kind != attr::MESSAGE_AUTHENTICATOR),
        );
        let unsigned = Packet {
            code: self.code,
            identifier: self.identifier,
            authenticator: *authenticator,
            attributes,
        };
        let mut bytes = Vec::with_capacity(MIN_PACKET + 18);
        unsigned.encode(&mut bytes)?;
        // The Message-Authenticator's value sits right after the header and its own
        // type and length octets.
        let ma = hmac_md5(secret, &bytes);
        if let Some(field) = bytes.get_mut(22..38) {
            field.copy_from_slice(&ma);
        }
        Ok(bytes)
    }

    /// Whether `reply` (bytes) is a reply to the request with `request_authenticator`,
    /// signed for `secret`: its Response Authenticator, and its Message-Authenticator if
    /// it has one. For clients and tests.
    pub fn verify_reply(
        reply: &[u8],
        request_authenticator: &[u8; 16],
        secret: &[u8],
    ) -> Result<bool, DecodeError> {
        let packet = Packet::decode(reply)?;
        let mut with_request = reply.to_vec();
        if let Some(field) = with_request.get_mut(4..20) {
            field.copy_from_slice(request_authenticator);
        }
        let mut md5 = Md5::new();
        md5.update(&with_request);
        md5.update(secret);
        let response: [u8; 16] = md5.finalize().into();
        if !bool::from(response.ct_eq(&packet.authenticator)) {
            return Ok(false);
        }
        let Some(given) = packet.get(attr::MESSAGE_AUTHENTICATOR) else {
            return Ok(true);
        };
        let at = ma_offset(&packet).ok_or(DecodeError::MessageAuthenticator)?;
        if let Some(field) = with_request.get_mut(at..at + 16) {
            field.fill(0);
        }
        Ok(hmac_md5(secret, &with_request).ct_eq(given).into())
    }
}

/// Where the Message-Authenticator's value starts in the packet's bytes: past the header
/// and every attribute before it, and its own type and length octets.
fn ma_offset(packet: &Packet<'_>) -> Option<usize> {
    let mut at = MIN_PACKET;
    for a in &packet.attributes {
        if a.kind == attr::MESSAGE_AUTHENTICATOR {
            return Some(at + 2);
        }
        at += 2 + a.value.len();
    }
    None
}

fn hmac_md5(secret: &[u8], bytes: &[u8]) -> [u8; 16] {
    let Ok(mut mac) = HmacMd5::new_from_slice(secret) else {
        // HMAC takes keys of any length; this cannot happen.
        return [0; 16];
    };
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

/// User-Password's hiding (RFC 2865 §5.2): `password` (at most 128 bytes) padded with
/// zeros to a multiple of 16, each block XORed with MD5 of the secret and the previous
/// hidden block (the request authenticator for the first).
pub fn hide_password(
    password: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
) -> Result<Vec<u8>, DecodeError> {
    if password.len() > MAX_PASSWORD {
        return Err(DecodeError::Password(password.len()));
    }
    let blocks = password.len().div_ceil(16).max(1);
    let mut out = password.to_vec();
    out.resize(blocks * 16, 0);
    let mut previous = *authenticator;
    for block in out.chunks_exact_mut(16) {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(previous);
        let pad: [u8; 16] = md5.finalize().into();
        for (b, p) in block.iter_mut().zip(pad) {
            *b ^= p;
        }
        previous.copy_from_slice(block);
    }
    Ok(out)
}

/// The password a User-Password hides, trailing zero padding removed.
pub fn reveal_password(
    hidden: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
) -> Result<Vec<u8>, DecodeError> {
    if hidden.is_empty() || hidden.len() > MAX_PASSWORD || !hidden.len().is_multiple_of(16) {
        return Err(DecodeError::Password(hidden.len()));
    }
    let mut out = Vec::with_capacity(hidden.len());
    let mut previous: &[u8] = authenticator;
    for block in hidden.chunks_exact(16) {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(previous);
        let pad: [u8; 16] = md5.finalize().into();
        out.extend(block.iter().zip(pad).map(|(b, p)| b ^ p));
        previous = block;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}
