//! RESP2, the Redis protocol: commands out as arrays of bulk strings, replies in.
//!
//! Only what the store sends and receives: a reply is read whole from a buffer or not at
//! all ([`decode`] says how many bytes it took, or that more are needed), and every length
//! is checked against a limit before anything is allocated for it, so a broken or hostile
//! peer gets an error, never a huge allocation or a panic.

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and the like.
    Status(String),
    /// `-ERR ...`: the command failed; the connection is fine.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$n` bytes, or `$-1` (`None`).
    Bulk(Option<Vec<u8>>),
    /// `*n` replies, or `*-1` (`None`).
    Array(Option<Vec<Reply>>),
}

/// The largest bulk string accepted (a directory snapshot is the largest thing read).
pub const MAX_BULK: usize = 512 << 20;
/// The most elements in one array.
pub const MAX_ARRAY: usize = 1 << 20;
/// How deeply arrays may nest.
pub const MAX_DEPTH: usize = 8;
/// The longest line (status, error, length).
const MAX_LINE: usize = 64 << 10;

/// Why bytes are not a reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a Redis reply: {0}")]
pub struct Malformed(pub &'static str);

/// Appends `args` as one command.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// The first reply in `buf` and the bytes it took; `Ok(None)` if `buf` holds only part
/// of one.
pub fn decode(buf: &[u8]) -> Result<Option<(Reply, usize)>, Malformed> {
    let mut at = 0;
    match reply(buf, &mut at, 0)? {
        Some(r) => Ok(Some((r, at))),
        None => Ok(None),
    }
}

fn line<'a>(buf: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, Malformed> {
    let rest = &buf[*at..];
    let Some(end) = rest.windows(2).take(MAX_LINE).position(|w| w == b"\r\n") else {
        return if rest.len() > MAX_LINE {
            Err(Malformed("a line without an end"))
        } else {
            Ok(None)
        };
    };
    *at += end + 2;
    Ok(Some(&rest[..end]))
}

fn int(text: &[u8]) -> Result<i64, Malformed> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(Malformed("not an integer"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn reply(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Reply>, Malformed> {
    let Some(&kind) = buf.get(*at) else {
        return Ok(None);
    };
    *at += 1;
    let Some(head) = line(buf, at)? else {
        return Ok(None);
    };
    Ok(Some(match kind {
        b'+' => Reply::Status(text(head)),
        b'-' => Reply::Error(text(head)),
        b':' => Reply::Int(int(head)?),
        b'$' => match int(head)? {
            -1 => Reply::Bulk(None),
            n => {
                let n = usize::try_from(n).map_err(|_| Malformed("a negative length"))?;
                if n > MAX_BULK {
                    return Err(Malformed("a bulk string over the limit"));
                }
                let Some(end) = at.checked_add(n).filter(|e| e + 2 <= buf.len()) else {
                    return Ok(None);
                };
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(Malformed("a bulk string without its end"));
                }
                let bytes = buf[*at..end].to_vec();
                *at = end + 2;
                Reply::Bulk(Some(bytes))
            }
        },
        b'*' => match int(head)? {
            -1 => Reply::Array(None),
            n => {
                let n = usize::try_from(n).map_err(|_| Malformed("a negative length"))?;
                if n > MAX_ARRAY {
                    return Err(Malformed("an array over the limit"));
                }
                if depth >= MAX_DEPTH {
                    return Err(Malformed("arrays nested too deeply"));
                }
                // Each element takes at least three bytes: never reserve more than the
                // buffer could hold.
                let mut items = Vec::with_capacity(n.min((buf.len() - *at) / 3));
                for _ in 0..n {
                    match reply(buf, at, depth + 1)? {
                        Some(r) => items.push(r),
                        None => return Ok(None),
                    }
                }
                Reply::Array(Some(items))
            }
        },
        _ => return Err(Malformed("an unknown reply type")),
    }))
}

impl Reply {
    /// The bytes of a bulk string (`None` for nil or another type).
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(Some(b)) => Some(b),
            Reply::Status(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// An integer, or a bulk string holding one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            Reply::Bulk(Some(b)) => int(b).ok(),
            _ => None,
        }
    }

    /// The elements of an array (empty for nil).
    pub fn items(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(a)) => Some(a),
            Reply::Array(None) => Some(&[]),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&[b"GET", b"k\r\n"], &mut out);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n");
    }

    #[test]
    fn replies_decode_whole_or_wait_for_more() {
        let all = b"*3\r\n:1\r\n$3\r\nabc\r\n$-1\r\n+OK\r\n";
        let (r, n) = decode(all).unwrap().unwrap();
        assert_eq!(
            r,
            Reply::Array(Some(vec![
                Reply::Int(1),
                Reply::Bulk(Some(b"abc".to_vec())),
                Reply::Bulk(None)
            ]))
        );
        assert_eq!(&all[n..], b"+OK\r\n");
        for cut in 0..n {
            assert_eq!(decode(&all[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocating() {
        assert!(decode(b"$99999999999\r\n").is_err());
        assert!(decode(b"*99999999999\r\n").is_err());
        assert!(decode(b"$-5\r\n").is_err());
        assert!(decode(b"$3\r\nabcXY").is_err());
        assert!(decode(b"?x\r\n").is_err());
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(decode(&deep).is_err());
        let long = vec![b'+'; MAX_LINE + 10];
        assert!(decode(&long).is_err());
    }
}
