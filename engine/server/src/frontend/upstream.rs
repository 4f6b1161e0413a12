//! Asking the upstream RADIUS server (FreeRADIUS, NPS) whether a password is right:
//! Portvakt keeps no passwords, so for the `upstream-*` clients another server checks
//! them.
//!
//! Each check is an Access-Request of its own, from a socket of its own, signed with a
//! Message-Authenticator; the answer must come from the upstream's address, carry the
//! request's identifier and a Response Authenticator right for the secret, and a
//! Message-Authenticator (right, if present; required unless the upstream is configured
//! with the dangerous switch for servers that send none). Anything else is ignored until
//! the timeout, and the request is sent again up to the configured number of attempts.

use portvakt_radius::{Attribute, Packet, attr, code, hide_password};
use tokio::net::UdpSocket;

use super::radius::config::Upstream;

/// The upstream server's verdict on a password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Access-Accept.
    Right,
    /// Access-Reject.
    Wrong,
}

/// Asks `upstream` whether `password` is `user`'s. An error means no trustworthy answer
/// came (the caller fails closed).
pub(crate) async fn check(
    upstream: &Upstream,
    user: &[u8],
    password: &[u8],
) -> Result<Verdict, String> {
    let mut authenticator = [0u8; 16];
    let mut identifier = [0u8; 1];
    portvakt_core::secret::Entropy::fill(&crate::entropy::OsEntropy, &mut authenticator);
    portvakt_core::secret::Entropy::fill(&crate::entropy::OsEntropy, &mut identifier);
    let hidden = hide_password(password, &upstream.secret, &authenticator)
        .map_err(|e| format!("the password: {e}"))?;
    let request = Packet {
        code: code::ACCESS_REQUEST,
        identifier: identifier[0],
        authenticator,
        attributes: vec![
            Attribute {
                kind: attr::USER_NAME,
                value: user,
            },
            Attribute {
                kind: attr::USER_PASSWORD,
                value: &hidden,
            },
            Attribute {
                kind: attr::NAS_IDENTIFIER,
                value: b"portvakt",
            },
        ],
    };
    let bytes = request
        .sign_request(&upstream.secret)
        .map_err(|e| format!("the request: {e}"))?;
    let local: std::net::SocketAddr = match upstream.address {
        std::net::SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        std::net::SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket
        .connect(upstream.address)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; portvakt_radius::MAX_PACKET];
    for _ in 0..upstream.attempts {
        socket.send(&bytes).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + upstream.timeout;
        loop {
            let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await
            else {
                break; // this attempt timed out
            };
            // A refused port (ICMP) ends this attempt early; a retry may find it up.
            let Ok(n) = received else { break };
            let reply = &buf[..n];
            if let Some(verdict) = verdict(reply, identifier[0], &authenticator, upstream) {
                return verdict;
            }
        }
    }
    Err(format!(
        "no answer from {} after {} attempts",
        upstream.address, upstream.attempts
    ))
}

/// The verdict in `reply`, if it is a signed answer to this request.
fn verdict(
    reply: &[u8],
    identifier: u8,
    authenticator: &[u8; 16],
    upstream: &Upstream,
) -> Option<Result<Verdict, String>> {
    let packet = Packet::decode(reply).ok()?;
    let missing = packet.get(attr::MESSAGE_AUTHENTICATOR).is_none();
    if packet.identifier != identifier
        || (missing && upstream.require_message_authenticator)
        || !Packet::verify_reply(reply, authenticator, &upstream.secret).ok()?
    {
        return None;
    }
    Some(match packet.code {
        code::ACCESS_ACCEPT => Ok(Verdict::Right),
        code::ACCESS_REJECT => Ok(Verdict::Wrong),
        // A challenge from upstream (its own second factor) cannot be relayed through
        // this dialogue: the password is not known to be right or wrong.
        other => Err(format!("{} answered with code {other}", upstream.address)),
    })
}

/// Splits `password` + code: the last `digits` characters are the code when they are all
/// digits and something comes before them; otherwise it is all password.
pub(crate) fn split_code(typed: &[u8], digits: usize) -> (&[u8], Option<&[u8]>) {
    match typed.len().checked_sub(digits) {
        Some(at) if at > 0 && typed[at..].iter().all(u8::is_ascii_digit) => {
            (&typed[..at], Some(&typed[at..]))
        }
        _ => (typed, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_split_off_only_when_it_is_all_digits() {
        assert_eq!(
            split_code(b"hunter2123456", 6),
            (&b"hunter2"[..], Some(&b"123456"[..]))
        );
        assert_eq!(split_code(b"hunter2", 6), (&b"hunter2"[..], None));
        assert_eq!(
            split_code(b"123456", 6),
            (&b"123456"[..], None),
            "no password left"
        );
        assert_eq!(split_code(b"pass12345x", 6), (&b"pass12345x"[..], None));
        assert_eq!(split_code(b"", 6), (&b""[..], None));
    }
}
