//! Prometheus metrics: what is recorded and how it is exported.
//!
//! Label values come from fixed sets (outcomes, reason codes, error codes, table names),
//! never from user names or addresses, so the number of series is bounded.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Decision latency buckets in seconds: tens of microseconds to a second.
pub const DECISION_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Decisions answered, by `outcome` and `reason`.
pub const DECISIONS: &str = "portvakt_decisions_total";
/// Time to decide, in seconds (a histogram).
pub const DECISION_SECONDS: &str = "portvakt_decision_seconds";
/// Frames answered with an error, by `code`.
pub const FRAMES_REFUSED: &str = "portvakt_frames_refused_total";
/// Open QUIC connections.
pub const CONNECTIONS: &str = "portvakt_connections";
/// Connections refused by a connection limit, by `limit` (`total`, `address`,
/// `certificate`).
pub const CONNECTIONS_REFUSED: &str = "portvakt_connections_refused_total";
/// Entries in the state store's tables, by `table`.
pub const TABLE_ENTRIES: &str = "portvakt_table_entries";
/// Entries evicted from bounded tables since start.
pub const EVICTIONS: &str = "portvakt_table_evictions";
/// Users in the directory.
pub const USERS: &str = "portvakt_users";
/// Store calls that failed since start (each decision answered `deny`/`internal_error`).
pub const STORE_ERRORS: &str = "portvakt_store_errors_total";
/// Subjects (users and unknown names) locked out now.
pub const LOCKOUTS_ACTIVE: &str = "portvakt_lockouts_active";

/// Sign-in records written to the log.
pub const SIGNIN_RECORDS: &str = "portvakt_signin_records_total";
/// Bytes the sign-in log holds on disk.
pub const SIGNIN_BYTES: &str = "portvakt_signin_log_bytes";
/// Failed writes or syncs of the sign-in log (each write is retried until it succeeds).
pub const SIGNIN_WRITE_ERRORS: &str = "portvakt_signin_write_errors_total";
/// Segments of the sign-in log removed by retention.
pub const SIGNIN_SEGMENTS_REMOVED: &str = "portvakt_signin_segments_removed_total";

/// Rounds of answers withdrawn (answered `internal`) because the state they depended on
/// could not be made durable.
pub const STATE_LOG_FAILURES: &str = "portvakt_state_log_failures_total";
/// 1 while the durable store's log cannot be written (decisions fail closed), else 0.
pub const STATE_LOG_FAILING: &str = "portvakt_state_log_failing";
/// Bytes in the durable store's log not yet covered by a snapshot.
pub const STATE_LOG_BYTES: &str = "portvakt_state_log_bytes";
/// Snapshots of the durable store written since start.
pub const STATE_SNAPSHOTS: &str = "portvakt_state_snapshots_total";
/// 1 while the shared store (Redis) does not answer (decisions that need it fail
/// closed), else 0.
pub const SHARED_STORE_DOWN: &str = "portvakt_shared_store_unavailable";
/// Times a new connection found a different Redis process than the last one (a restart or
/// a failover), each raising the replay fence.
pub const SHARED_STORE_EPOCHS: &str = "portvakt_shared_store_epoch_changes_total";
/// Batches of the shared directory log this node has not applied yet.
pub const SHARED_DIRECTORY_LAG: &str = "portvakt_shared_directory_lag";
/// Commands this node sent to the shared store since start.
pub const SHARED_STORE_COMMANDS: &str = "portvakt_shared_store_commands_total";
/// Push notifications handed to the webhook relay, by result (`sent`, `failed`, `timeout`,
/// `dropped`).
pub const PUSH_NOTIFICATIONS: &str = "portvakt_push_notifications_total";

/// RADIUS replies sent, by `client` and `reply` (`accept`, `reject`, `challenge`).
pub const RADIUS_REPLIES: &str = "portvakt_radius_replies_total";
/// RADIUS datagrams dropped unanswered, by `client` (`unknown` for no configured client)
/// and `reason`.
pub const RADIUS_DROPPED: &str = "portvakt_radius_dropped_total";
/// RADIUS retransmits answered from the duplicates cache, by `client`.
pub const RADIUS_RETRANSMITS: &str = "portvakt_radius_retransmits_total";
/// Password checks the upstream RADIUS server did not answer, by `client` (each request
/// refused).
pub const RADIUS_UPSTREAM_FAILURES: &str = "portvakt_radius_upstream_failures_total";

/// HTTP requests answered, by `route` (`validate_check`, `polltransaction`, `decide`,
/// `send_code`, `admin`, `other`) and `status`.
pub const HTTP_REQUESTS: &str = "portvakt_http_requests_total";

/// Serves `/metrics` on `addr` with real histogram buckets. Needs a Tokio runtime.
pub fn install(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(DECISION_SECONDS.to_owned()), DECISION_BUCKETS)
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| format!("metrics on {addr}: {e}"))?;
    metrics::describe_counter!(DECISIONS, "Decisions answered, by outcome and reason");
    metrics::describe_histogram!(
        DECISION_SECONDS,
        metrics::Unit::Seconds,
        "Time to decide one request"
    );
    metrics::describe_counter!(
        FRAMES_REFUSED,
        "Frames answered with an error, by error code"
    );
    metrics::describe_gauge!(CONNECTIONS, "Open QUIC connections");
    metrics::describe_counter!(
        PUSH_NOTIFICATIONS,
        "Push notifications handed to the webhook relay, by result"
    );
    metrics::describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections refused by a connection limit, by limit"
    );
    metrics::describe_gauge!(TABLE_ENTRIES, "Entries in the state store's tables");
    metrics::describe_gauge!(EVICTIONS, "Entries evicted from bounded tables since start");
    metrics::describe_gauge!(USERS, "Users in the directory");
    metrics::describe_gauge!(
        LOCKOUTS_ACTIVE,
        "Users and unknown names locked out at the last count"
    );
    metrics::describe_counter!(
        STORE_ERRORS,
        "State store calls that failed (decisions answered deny/internal_error)"
    );
    metrics::describe_counter!(SIGNIN_RECORDS, "Sign-in records written to the log");
    metrics::describe_gauge!(
        SIGNIN_BYTES,
        metrics::Unit::Bytes,
        "Bytes the sign-in log holds on disk"
    );
    metrics::describe_counter!(
        SIGNIN_WRITE_ERRORS,
        "Failed sign-in log writes or syncs (writes are retried until they succeed)"
    );
    metrics::describe_counter!(
        SIGNIN_SEGMENTS_REMOVED,
        "Sign-in log segments removed by retention"
    );
    metrics::describe_counter!(
        STATE_LOG_FAILURES,
        "Rounds of answers withdrawn because their state could not be made durable"
    );
    metrics::describe_gauge!(
        STATE_LOG_FAILING,
        "1 while the durable store's log cannot be written (decisions fail closed)"
    );
    metrics::describe_gauge!(
        STATE_LOG_BYTES,
        metrics::Unit::Bytes,
        "Bytes of the durable store's log not yet covered by a snapshot"
    );
    metrics::describe_counter!(STATE_SNAPSHOTS, "Snapshots of the durable store written");
    metrics::describe_gauge!(
        SHARED_STORE_DOWN,
        "1 while the shared store does not answer (decisions that need it fail closed)"
    );
    metrics::describe_counter!(
        SHARED_STORE_EPOCHS,
        "Different Redis processes found behind a new connection (each raised the replay fence)"
    );
    metrics::describe_gauge!(
        SHARED_DIRECTORY_LAG,
        "Batches of the shared directory log not yet applied on this node"
    );
    metrics::describe_counter!(SHARED_STORE_COMMANDS, "Commands sent to the shared store");
    Ok(())
}

/// Records the sizes of the engine's tables, the lockouts in force at `now` and the store
/// errors so far (a scan of the store: call it every few seconds, not per request). Sizes
/// the store cannot give now keep their last values. A shared store is not scanned (that
/// would read all of Redis from every node every few seconds): only the users and the
/// errors are recorded.
pub fn record_sizes(engine: &portvakt_store::Engine, now: portvakt_core::Timestamp) {
    use portvakt_core::StateStore;
    metrics::gauge!(USERS).set(engine.directory().len() as f64);
    metrics::counter!(STORE_ERRORS).absolute(engine.store_errors());
    if engine.store().is_remote() {
        return;
    }
    if let Ok(s) = engine.store().sizes() {
        for (table, n) in [
            ("unknown_names", s.unknown),
            ("sources", s.sources),
            ("phone_numbers", s.numbers),
            ("challenges", s.challenges),
            ("user_state_slots", s.users),
        ] {
            metrics::gauge!(TABLE_ENTRIES, "table" => table).set(n as f64);
        }
        metrics::gauge!(EVICTIONS).set(s.evictions as f64);
    }
    if let Ok(n) = engine.store().locked_subjects(now) {
        metrics::gauge!(LOCKOUTS_ACTIVE).set(n as f64);
    }
}
