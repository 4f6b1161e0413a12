//! Shared by the wire tests.

/// With `PORTVAKT_FUZZ_SEEDS=DIR` set, writes an encoded frame into `DIR` as a seed for
/// the fuzz targets (named by a hash of its bytes, so reruns do not pile up copies).
/// `docs/fuzzing.md` says how the committed corpus was made this way.
pub(crate) fn seed(frame: &[u8]) {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let Some(dir) = std::env::var_os("PORTVAKT_FUZZ_SEEDS") else {
        return;
    };
    let mut h = DefaultHasher::new();
    frame.hash(&mut h);
    let path = std::path::Path::new(&dir).join(format!("{:016x}", h.finish()));
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, frame))
        .unwrap();
}
