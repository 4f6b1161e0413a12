//! Reading the server's own byte formats (sign-in records, audit events) from the front:
//! each read gives `None` when the bytes run out, a length is over its limit, or text is
//! not UTF-8, and the caller says which field it was.

/// Bytes being read from the front.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn text(&mut self, len: usize, max: usize) -> Option<&'a str> {
        if len > max {
            return None;
        }
        std::str::from_utf8(self.take(len)?).ok()
    }

    /// Text after a `u8` length of at most `max`.
    pub(crate) fn str8(&mut self, max: usize) -> Option<&'a str> {
        let len = usize::from(self.u8()?);
        self.text(len, max)
    }

    /// Text after a big-endian `u16` length of at most `max`.
    pub(crate) fn str16(&mut self, max: usize) -> Option<&'a str> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        self.text(len, max)
    }

    /// Whether every byte was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
