//! The QUIC endpoint: connections, roles, streams, frames.
//!
//! One task per connection accepts bidirectional streams; one task per stream reads
//! frames, answers every complete frame it holds, hands the decisions' sign-in records to
//! the log, and then writes the answers in one go, so a client that pipelines requests
//! gets its answers pipelined too, and no answer leaves before its record is handed over. Limits: the number of
//! concurrent streams per connection, an idle timeout, the frame size (an oversized
//! length prefix closes the connection with the protocol's `too_large` code, since the
//! stream cannot be resynchronised), and QUIC's flow control, which stops reading from a
//! client that does not read its answers.
#![allow(clippy::disallowed_methods)] // the server owns the clock

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use portvakt_core::Timestamp;
use portvakt_wire::{ErrorCode, Frame, frame_len};
use rustls::pki_types::CertificateDer;

use crate::pki::fingerprint;
use crate::service::{Handled, Role, Service};

/// Streams a client may have open at once on one connection.
pub const MAX_STREAMS: u32 = 16;
/// How long a framing violation's error frame may take to reach the client before the
/// connection is closed anyway.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// A connection with no traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The wall-clock time, as the core takes it.
pub fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The TLS configuration has no cipher suite QUIC can use.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Binds a QUIC endpoint on `addr` serving `service`; clients whose certificate's SHA-256
/// fingerprint is in `admins` get the administrator role.
pub fn start(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    admins: HashSet<String>,
    service: Arc<Service>,
) -> Result<(quinn::Endpoint, tokio::task::JoinHandle<()>), StartError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(MAX_STREAMS.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(config, addr)
        .map_err(|source| StartError::Bind { addr, source })?;
    let admins = Arc::new(admins);
    let accepting = endpoint.clone();
    let task = tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            let (service, admins) = (service.clone(), admins.clone());
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    serve_connection(conn, service, &admins).await;
                }
            });
        }
    });
    Ok((endpoint, task))
}

fn role(conn: &quinn::Connection, admins: &HashSet<String>) -> Role {
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
    match certs.as_deref().and_then(|c| c.first()) {
        Some(leaf) if admins.contains(&fingerprint(leaf)) => Role::Admin,
        _ => Role::Frontend,
    }
}

async fn serve_connection(
    conn: quinn::Connection,
    service: Arc<Service>,
    admins: &HashSet<String>,
) {
    let role = role(&conn, admins);
    metrics::gauge!(crate::metrics::CONNECTIONS).increment(1.0);
    let _open = OnDrop(|| metrics::gauge!(crate::metrics::CONNECTIONS).decrement(1.0));
    while let Ok((send, recv)) = conn.accept_bi().await {
        let (service, conn) = (service.clone(), conn.clone());
        tokio::spawn(async move { serve_stream(conn, send, recv, service, role).await });
    }
}

async fn serve_stream(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    service: Arc<Service>,
    role: Role,
) {
    let mut inbox = BytesMut::with_capacity(4096);
    let mut outbox = BytesMut::with_capacity(4096);
    let mut records = BytesMut::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        // Answer every complete frame already received, hand their sign-in records to the
        // log, then write the answers at once.
        loop {
            match frame_len(&inbox) {
                Ok(Some(n)) => {
                    let frame = inbox.split_to(n);
                    let now = service.now();
                    if let Handled::Query(id, query) =
                        service.handle(role, &frame, now, &mut outbox, &mut records)
                    {
                        // The query must see the decisions answered before it on this stream.
                        if !hand_over(&service, &mut records).await {
                            break;
                        }
                        service.answer_query(id, query, &mut outbox).await;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let code = ErrorCode::of(&e);
                    let _ = Frame::Error {
                        id: 0,
                        code,
                        message: &e.to_string(),
                    }
                    .encode(&mut outbox);
                    // Closing drops undelivered stream data, so let the client read the
                    // answers and the error first (for a bounded time), then close. The
                    // answers' records go first, as always.
                    if hand_over(&service, &mut records).await {
                        let _ = send.write_all(&outbox).await;
                    }
                    let _ = send.finish();
                    let _ = tokio::time::timeout(CLOSE_GRACE, send.stopped()).await;
                    conn.close((code as u32).into(), e.to_string().as_bytes());
                    return;
                }
            }
        }
        if !hand_over(&service, &mut records).await {
            // The log is closed: the server is stopping, and answers without records
            // must not leave.
            conn.close(0u32.into(), b"shutting down");
            return;
        }
        if !outbox.is_empty() {
            if send.write_all(&outbox).await.is_err() {
                return;
            }
            outbox.clear();
        }
        match recv.read(&mut chunk).await {
            Ok(Some(n)) => inbox.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            // The client finished its side, or the stream broke: nothing more to answer.
            Ok(None) | Err(_) => {
                let _ = send.finish();
                return;
            }
        }
    }
}

/// Hands the records gathered so far to the sign-in log (if the service keeps one);
/// false if the log is closed.
async fn hand_over(service: &Service, records: &mut BytesMut) -> bool {
    if records.is_empty() {
        return true;
    }
    let written = match service.sign_in_log() {
        Some(log) => log.submit(records).await.is_ok(),
        None => true,
    };
    records.clear();
    written
}

/// Runs a closure when dropped (so a gauge is decremented however a task ends).
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
