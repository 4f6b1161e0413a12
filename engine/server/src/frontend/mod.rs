//! The ways frontends reach the engine, one folder each: QUIC with Portvakt's own
//! protocol ([`quic`]), RADIUS for VPN gateways and network gear ([`radius`]), and HTTPS
//! for privacyIDEA's clients and Portvakt's JSON API ([`http`]).

mod challenge;
pub mod http;
pub mod quic;
pub mod radius;
mod upstream;

use std::net::IpAddr;
use std::path::Path;

use zeroize::Zeroizing;

/// Reads a shared secret or key (trailing line breaks dropped) of a length in `len`, or
/// makes one if the file is missing (32 random letters and digits, readable by the
/// server's user only, for the administrator to copy to the other side).
pub(crate) fn secret_file(
    path: &Path,
    len: std::ops::RangeInclusive<usize>,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut bytes = match std::fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| at(&e))?;
            }
            let made = Zeroizing::new(made_secret());
            portvakt_store::sealed::write_private(path, &made).map_err(|e| at(&e))?;
            made
        }
        Err(e) => return Err(at(&e)),
    };
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    if !len.contains(&bytes.len()) {
        return Err(at(&format!(
            "a shared secret must be {} to {} bytes (this one is {})",
            len.start(),
            len.end(),
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// 32 random letters and digits (about 190 bits), which any NAS's configuration takes.
fn made_secret() -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut raw = [0u8; 64];
    portvakt_core::secret::Entropy::fill(&crate::entropy::OsEntropy, &mut raw);
    let n = ALPHABET.len();
    // Rejection sampling: bytes at or past the largest multiple of the alphabet are
    // skipped, so every letter is equally likely.
    let limit = 256 - 256 % n;
    let mut out: Vec<u8> = raw
        .iter()
        .filter(|&&b| usize::from(b) < limit)
        .map(|&b| ALPHABET[usize::from(b) % n])
        .take(32)
        .collect();
    while out.len() < 32 {
        let mut one = [0u8; 1];
        portvakt_core::secret::Entropy::fill(&crate::entropy::OsEntropy, &mut one);
        if usize::from(one[0]) < limit {
            out.push(ALPHABET[usize::from(one[0]) % n]);
        }
    }
    raw.fill(0);
    out
}

/// An IPv4 address as itself even when it came as IPv4-mapped IPv6 (a dual-stack socket's
/// view), so that ranges written for IPv4 match it.
pub(crate) fn plain_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
