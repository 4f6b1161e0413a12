//! The codec layer: a reader over a byte slice and a writer into a buffer.
//!
//! Every length read from the wire is checked against its limit and against the bytes
//! actually present before anything is allocated. Reading never panics: every failure is a
//! [`DecodeError`] naming the field it was reading.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};

/// Why bytes are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside `field`.
    #[error("truncated: input ends inside {field}")]
    Truncated {
        /// What was being read.
        field: &'static str,
    },
    /// A length is over its limit.
    #[error("{field} is {len} long, over the limit of {max}")]
    TooLong {
        /// What was being read.
        field: &'static str,
        /// The length on the wire.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A tag or code has no meaning.
    #[error("{field} has unknown value {value}")]
    BadValue {
        /// What was being read.
        field: &'static str,
        /// The value on the wire.
        value: u32,
    },
    /// A string is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    Utf8 {
        /// What was being read.
        field: &'static str,
    },
    /// A frame kind this version does not know.
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    /// Bytes are left over after the frame's last field.
    #[error("{0} trailing bytes after the frame")]
    Trailing(usize),
}

/// A cursor over received bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless everything was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.buf.len()))
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// A fixed number of raw bytes.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Sixteen raw bytes.
    pub fn bytes16(&mut self, field: &'static str) -> Result<[u8; 16], DecodeError> {
        self.array(field)
    }

    /// A boolean: 0 or 1.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::BadValue {
                field,
                value: u32::from(v),
            }),
        }
    }

    /// An optional value: tag 0 (absent) or 1 followed by the value.
    pub fn opt<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.bool(field)? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A string of at most `max` bytes with a one-byte length.
    pub fn str8(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u8(field)?);
        self.utf8(len, max, field)
    }

    /// A string of at most `max` bytes with a two-byte length.
    pub fn str16(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u16(field)?);
        self.utf8(len, max, field)
    }

    fn utf8(
        &mut self,
        len: usize,
        max: usize,
        field: &'static str,
    ) -> Result<&'a str, DecodeError> {
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        std::str::from_utf8(self.take(len, field)?).map_err(|_| DecodeError::Utf8 { field })
    }

    /// An IP address: family 4 or 6, then 4 or 16 bytes.
    pub fn ip(&mut self, field: &'static str) -> Result<IpAddr, DecodeError> {
        match self.u8(field)? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>(field)?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>(field)?))),
            v => Err(DecodeError::BadValue {
                field,
                value: u32::from(v),
            }),
        }
    }

    /// A list with a one-byte count of at most `max` items.
    pub fn list<T>(
        &mut self,
        field: &'static str,
        max: usize,
        mut read: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = usize::from(self.u8(field)?);
        if n > max {
            return Err(DecodeError::TooLong { field, len: n, max });
        }
        // Each item is at least one byte, so a count beyond what is left is a lie: refuse it
        // before reserving room for it.
        if n > self.remaining() {
            return Err(DecodeError::Truncated { field });
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(read(self)?);
        }
        Ok(out)
    }
}

/// Appends encoded values to a buffer. Lengths are the caller's to keep within limits;
/// [`crate::Frame::encode`] checks them before writing.
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut BytesMut,
}

impl<'b> Writer<'b> {
    /// A writer appending to `buf`.
    pub fn new(buf: &'b mut BytesMut) -> Self {
        Self { buf }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.put_u64(v);
    }

    /// Raw bytes.
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
    }

    /// A boolean.
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// An optional value.
    pub fn opt<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) {
        self.bool(v.is_some());
        if let Some(v) = v {
            write(self, v);
        }
    }

    /// A string with a one-byte length (at most 255 bytes; checked by the caller).
    pub fn str8(&mut self, s: &str) {
        self.u8(u8::try_from(s.len()).unwrap_or(u8::MAX));
        self.raw(s.as_bytes().get(..255).unwrap_or(s.as_bytes()));
    }

    /// A string with a two-byte length (at most 65,535 bytes; checked by the caller).
    pub fn str16(&mut self, s: &str) {
        self.u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
        self.raw(s.as_bytes().get(..65_535).unwrap_or(s.as_bytes()));
    }

    /// An IP address.
    pub fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.u8(4);
                self.raw(&a.octets());
            }
            IpAddr::V6(a) => {
                self.u8(6);
                self.raw(&a.octets());
            }
        }
    }

    /// A list with a one-byte count (at most 255 items; checked by the caller).
    pub fn list<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        self.u8(u8::try_from(items.len()).unwrap_or(u8::MAX));
        for item in items.iter().take(255) {
            write(self, item);
        }
    }
}
