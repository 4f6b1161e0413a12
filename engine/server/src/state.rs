//! Keeping the store while the server runs. The durable store: snapshots as its log grows,
//! and a line and a gauge when the log starts or stops failing. The shared store: the
//! directory followed, snapshots of it as its log grows, and a line and a gauge when the
//! store stops or starts answering, or turns out to be a different process.

use std::sync::Arc;

use portvakt_store::Engine;

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

/// Shared-directory batches past the last snapshot after which a node writes a new one.
pub const SHARED_SNAPSHOT_AFTER: u64 = 10_000;

/// Keeps the shared store: `redis` raises `engine`'s replay fence (said once per raise),
/// the directory log is followed, a snapshot of the directory is written when its log has
/// grown by [`SHARED_SNAPSHOT_AFTER`] batches past `snapshot_at` (the one loaded) or the
/// last this node wrote, and a line (and a gauge) says when the
/// store stops or starts answering. Call after the directory is loaded, before serving.
pub fn keep_shared(
    engine: Arc<Engine>,
    redis: Arc<portvakt_store::redis::Redis>,
    snapshot_at: u64,
) {
    use crate::metrics as m;
    let fenced = engine.clone();
    redis.set_fence(Box::new(move |ms| {
        let at = portvakt_core::Timestamp::from_millis(ms);
        if fenced.fence().is_none_or(|f| f < at) {
            fenced.raise_fence(at);
            crate::warn(format_args!(
                "the shared store may have lost writes (a different Redis process answers: a restart or a failover); no TOTP code that could have been accepted before {} ms is accepted",
                ms
            ));
            metrics::counter!(m::SHARED_STORE_EPOCHS).increment(1);
        }
    }));
    if let Err(e) = redis.follow(engine.clone(), |e| {
        crate::warn(format_args!(
            "the shared directory cannot be followed for now (changes made on other nodes wait): {e}"
        ));
    }) {
        crate::warn(format_args!(
            "no thread to follow the shared directory: {e}"
        ));
    }
    let spawned = std::thread::Builder::new()
        .name("portvakt-shared".into())
        .spawn(move || {
            let mut down = false;
            let mut snapshot_at = snapshot_at;
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let (commands, _) = redis.traffic();
                metrics::counter!(m::SHARED_STORE_COMMANDS).absolute(commands);
                // Read before the head: the head is at least this unless the store lost
                // batches.
                let known = redis.followed();
                let head = match redis.log_head() {
                    Ok(head) => {
                        if down {
                            crate::warn(format_args!("the shared store answers again; serving"));
                            metrics::gauge!(m::SHARED_STORE_DOWN).set(0.0);
                        }
                        down = false;
                        head
                    }
                    Err(e) => {
                        if !down {
                            crate::warn(format_args!(
                                "the shared store does not answer, decisions that need it fail closed until it does: {e}"
                            ));
                            metrics::gauge!(m::SHARED_STORE_DOWN).set(1.0);
                        }
                        down = true;
                        continue;
                    }
                };
                // An error here is said just below, as `lost`.
                let _ = redis.check_head(head, known);
                let lag = head.saturating_sub(redis.followed());
                metrics::gauge!(m::SHARED_DIRECTORY_LAG).set(lag as f64);
                if let Some(why) = redis.lost() {
                    crate::warn(format_args!(
                        "this node no longer follows the shared directory and refuses changes to it; restart it: {why}"
                    ));
                    return;
                }
                if head.saturating_sub(snapshot_at) >= SHARED_SNAPSHOT_AFTER && lag == 0 {
                    match redis.snapshot_directory(&engine) {
                        Ok(at) => snapshot_at = at,
                        Err(e) => crate::warn(format_args!(
                            "no snapshot of the shared directory (its log keeps everything): {e}"
                        )),
                    }
                }
            }
        });
    if let Err(e) = spawned {
        crate::warn(format_args!("no thread to keep the shared store: {e}"));
    }
}
