//! Keeping the durable store while the server runs: snapshots as its log grows, and a
//! line and a gauge when the log starts or stops failing.

use std::sync::Arc;

use portvakt_core::Engine;

/// The log's bytes past which a snapshot is written.
pub const SNAPSHOT_AFTER: u64 = 64 << 20;

/// Keeps the durable store: a snapshot whenever the log has grown past
/// [`SNAPSHOT_AFTER`] since the last, and a line (and a gauge) when the log starts or
/// stops failing.
pub fn keep(engine: Arc<Engine>, wal: Arc<portvakt_store::durable::Wal>) {
    use crate::metrics as m;
    let watched = wal.clone();
    tokio::spawn(async move {
        let mut rx = watched.watch();
        let mut failing = false;
        while rx.changed().await.is_ok() {
            let error = rx.borrow_and_update().error.clone();
            match (&error, failing) {
                (Some(e), false) => {
                    crate::warn(format_args!(
                        "the state log cannot be written, decisions fail closed until it can: {e}"
                    ));
                    metrics::gauge!(m::STATE_LOG_FAILING).set(1.0);
                }
                (None, true) => {
                    crate::warn(format_args!("the state log is written again; serving"));
                    metrics::gauge!(m::STATE_LOG_FAILING).set(0.0);
                }
                _ => {}
            }
            failing = error.is_some();
        }
    });
    let spawned = std::thread::Builder::new()
        .name("portvakt-snapshots".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(10));
                let bytes = wal.unsnapshotted();
                metrics::gauge!(m::STATE_LOG_BYTES).set(bytes as f64);
                if bytes < SNAPSHOT_AFTER {
                    continue;
                }
                match portvakt_store::durable::snapshot(&engine, &wal) {
                    Ok(_) => metrics::counter!(m::STATE_SNAPSHOTS).increment(1),
                    Err(e) => crate::warn(format_args!(
                        "snapshot failed (the log keeps everything): {e}"
                    )),
                }
            }
        });
    if let Err(e) = spawned {
        crate::warn(format_args!(
            "no snapshot thread (the log keeps everything): {e}"
        ));
    }
}
