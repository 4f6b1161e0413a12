//! Randomness from the operating system, for codes, tokens, secrets and ids.

use portvakt_core::secret::Entropy;

/// The operating system's generator (`getrandom`).
#[derive(Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        if let Err(e) = getrandom::fill(buf) {
            // Without randomness no secret, code or token may be made at all: stopping is
            // the only safe answer, and the operator must see why.
            eprintln!("portvakt: the operating system's random generator failed: {e}");
            std::process::abort();
        }
    }
}
