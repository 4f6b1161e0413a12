//! The QUIC endpoint: connections, roles, streams, frames.
//!
//! One task per connection accepts bidirectional streams; one task per stream reads
//! frames, answers every complete frame it holds, hands the decisions' sign-in records to
//! the log, and then writes the answers in one go, so a client that pipelines requests
//! gets its answers pipelined too, and no answer leaves before its record is handed
//! over. Limits: the number of concurrent streams per connection, an idle timeout, the
//! frame size (an oversized length prefix closes the connection with the protocol's
//! `too_large` code, since the stream cannot be resynchronised; every other bad frame is
//! answered with an error frame and the stream goes on), and QUIC's flow control, which
//! stops reading from a client that does not read its answers.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;
use portvakt_wire::{ErrorCode, Frame, frame_len};
use rustls::pki_types::CertificateDer;

use super::service::{Handled, Role, Service};
use crate::pki::fingerprint;

/// Streams a client may have open at once on one connection.
pub const MAX_STREAMS: u32 = 16;
/// How long a framing violation's error frame may take to reach the client before the
/// connection is closed anyway.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// A connection with no traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most request bytes read from a stream at once; the frames among them are answered
/// before the next read.
const READ: usize = 8192;
/// How long a client may take over its handshake before its place is given back.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Request bytes a client may have in flight on one stream before the server reads them
/// (four frames of the largest size, or hundreds of ordinary ones).
pub const STREAM_WINDOW: u32 = 64 * 1024;
/// Request bytes a client may have in flight on a connection, and answer bytes the
/// server keeps for a connection that does not read them.
pub const CONNECTION_WINDOW: u32 = 256 * 1024;

/// How many connections the server holds at once: in all, from one address, and with one
/// client certificate. A connection costs memory for its streams' windows and partial
/// frames whether or not it sends anything, so each bound is on connections, counted from
/// the moment the client's address is validated (a handshake in progress counts, for at
/// most [`HANDSHAKE_TIMEOUT`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections in all.
    pub total: usize,
    /// Connections from one IP address (IPv6: one /64).
    pub per_address: usize,
    /// Connections presenting one client certificate.
    pub per_certificate: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        // A connection that never reads its answers holds about 1.4 MiB here, one that
        // leaves every stream with a partial frame about 0.6 MiB (`docs/benchmarks.md`):
        // about 1.4 GiB at most in all, 90 MiB per address.
        Self {
            total: 1024,
            per_address: 64,
            per_certificate: 256,
        }
    }
}

/// Connection counts against [`ConnectionLimits`]; a [`Slot`] holds one place.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// By source: an IPv4 address or an IPv6 /64 (`portvakt_core::net::source_key`),
    /// as the decisions' source budgets count them.
    by_address: HashMap<u128, usize>,
    by_certificate: HashMap<String, usize>,
}

/// What a connection holds in [`Counts`]; given back when dropped.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    address: u128,
    certificate: Option<String>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        c.total -= 1;
        release(&mut c.by_address, &self.address);
        if let Some(cert) = &self.certificate {
            release(&mut c.by_certificate, cert);
        }
    }
}

fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// Takes a place for a connection from `addr`, or says which limit is full.
fn admit(
    counts: &Arc<Mutex<Counts>>,
    limits: &ConnectionLimits,
    addr: SocketAddr,
) -> Result<Slot, &'static str> {
    let address = portvakt_core::net::source_key(addr.ip());
    let mut c = counts.lock();
    if c.total >= limits.total {
        return Err("total");
    }
    let from_here = c.by_address.entry(address).or_default();
    if *from_here >= limits.per_address {
        return Err("address");
    }
    *from_here += 1;
    c.total += 1;
    Ok(Slot {
        counts: counts.clone(),
        address,
        certificate: None,
    })
}

/// Adds the connection's certificate to its place, unless that certificate has all the
/// connections it may have.
fn admit_certificate(slot: &mut Slot, limits: &ConnectionLimits, cert: String) -> bool {
    let counts = slot.counts.clone();
    let mut c = counts.lock();
    let with_this = c.by_certificate.entry(cert.clone()).or_default();
    if *with_this >= limits.per_certificate {
        if *with_this == 0 {
            c.by_certificate.remove(&cert);
        }
        return false;
    }
    *with_this += 1;
    slot.certificate = Some(cert);
    true
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

/// The server's QUIC transport limits: streams, idle timeout, and flow-control windows.
pub fn transport() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(MAX_STREAMS.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    // What one connection can make the server hold: requests it has sent and the server
    // has not read (per stream, and in all), and answers it has not read.
    transport.stream_receive_window(STREAM_WINDOW.into());
    transport.receive_window(CONNECTION_WINDOW.into());
    transport.send_window(u64::from(CONNECTION_WINDOW));
    transport
}

/// Binds a QUIC endpoint on `addr` serving `service`; clients whose certificate's SHA-256
/// fingerprint is in `admins` get the administrator role.
pub fn start(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    admins: HashSet<String>,
    service: Arc<Service>,
    limits: ConnectionLimits,
) -> Result<(quinn::Endpoint, tokio::task::JoinHandle<()>), StartError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport()));
    let endpoint = quinn::Endpoint::server(config, addr)
        .map_err(|source| StartError::Bind { addr, source })?;
    let admins = Arc::new(admins);
    let counts = Arc::new(Mutex::new(Counts::default()));
    let accepting = endpoint.clone();
    let task = tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            // Only an address that has shown it receives the server's packets may hold a
            // place (a QUIC retry costs a client one round trip): a spoofed address could
            // otherwise fill the table with handshakes that never finish.
            if !incoming.remote_address_validated() {
                if incoming.may_retry() {
                    let _ = incoming.retry();
                } else {
                    incoming.ignore();
                }
                continue;
            }
            // Refused before the handshake: a full server spends nothing on it.
            let mut slot = match admit(&counts, &limits, incoming.remote_address()) {
                Ok(slot) => slot,
                Err(limit) => {
                    metrics::counter!(crate::metrics::CONNECTIONS_REFUSED, "limit" => limit)
                        .increment(1);
                    incoming.refuse();
                    continue;
                }
            };
            let (service, admins) = (service.clone(), admins.clone());
            tokio::spawn(async move {
                let Ok(connecting) = incoming.accept() else {
                    return;
                };
                let Ok(Ok(conn)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await else {
                    return;
                };
                let leaf = peer_fingerprint(&conn);
                if let Some(leaf) = &leaf
                    && !admit_certificate(&mut slot, &limits, leaf.clone())
                {
                    metrics::counter!(crate::metrics::CONNECTIONS_REFUSED, "limit" => "certificate")
                        .increment(1);
                    conn.close(
                        (ErrorCode::Overloaded as u32).into(),
                        b"too many connections with this certificate",
                    );
                    return;
                }
                let role = match leaf {
                    Some(leaf) if admins.contains(&leaf) => Role::admin(&leaf),
                    Some(_) => Role::Frontend,
                    None => Role::Device(Default::default()),
                };
                serve_connection(conn, service, role).await;
                drop(slot);
            });
        }
    });
    Ok((endpoint, task))
}

/// The SHA-256 fingerprint of the client's certificate (the handshake required one).
fn peer_fingerprint(conn: &quinn::Connection) -> Option<String> {
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())?;
    certs.first().map(fingerprint)
}

async fn serve_connection(conn: quinn::Connection, service: Arc<Service>, role: Role) {
    metrics::gauge!(crate::metrics::CONNECTIONS).increment(1.0);
    let _open = OnDrop(|| metrics::gauge!(crate::metrics::CONNECTIONS).decrement(1.0));
    while let Ok((send, recv)) = conn.accept_bi().await {
        let (service, conn) = (service.clone(), conn.clone());
        let role = role.clone();
        tokio::spawn(async move { serve_stream(conn, send, recv, service, role).await });
    }
}

/// Rounds of answers a stream holds while they wait to be made durable; past it, the
/// stream stops reading (backpressure).
const ROUNDS_WAITING: usize = 64;

/// One round of answers: decided, their sign-in records handed over, waiting until the
/// state they depend on is durable.
struct Round {
    answers: BytesMut,
    /// The ids answered, in case the answers must be withdrawn.
    ids: Vec<u32>,
    /// How far the state log must be durable first (`None`: no durable store).
    position: Option<u64>,
    /// After these answers, close the connection with this error.
    close: Option<(ErrorCode, String)>,
}

async fn serve_stream(
    conn: quinn::Connection,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    service: Arc<Service>,
    role: Role,
) {
    // The stream reads and decides on while earlier answers wait for the state log: a
    // writer sends each round, in order, once it is durable. Without that, a stream would
    // sit idle for a sync per read.
    let (rounds, waiting) = tokio::sync::mpsc::channel::<Round>(ROUNDS_WAITING);
    let writer = tokio::spawn(write_rounds(conn, send, waiting, service.clone()));
    // Buffers grow with use: a stream that only ever holds a partial frame costs that
    // frame, not the buffers of a busy one.
    let mut inbox = BytesMut::new();
    let mut outbox = BytesMut::new();
    let mut records = BytesMut::new();
    let mut ids: Vec<u32> = Vec::new();
    'stream: loop {
        // Answer every complete frame already received and hand their sign-in records to
        // the log; the writer sends the answers when their state is durable.
        let mut close = None;
        loop {
            match frame_len(&inbox) {
                Ok(Some(n)) => {
                    let frame = inbox.split_to(n);
                    ids.push(frame_id(&frame));
                    let now = service.now();
                    let handled = crate::app::blocking(service.app().engine(), || {
                        service.handle(&role, &frame, now, &mut outbox, &mut records)
                    });
                    if let Handled::Query(id, query) = handled {
                        // The query must see the decisions answered before it on this stream.
                        if !hand_over(&service, &mut records).await {
                            break 'stream;
                        }
                        service
                            .answer_query(id, query, &mut outbox, &mut records)
                            .await;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let code = ErrorCode::of(&e);
                    metrics::counter!(crate::metrics::FRAMES_REFUSED, "code" => code.as_str())
                        .increment(1);
                    let _ = Frame::Error {
                        id: 0,
                        code,
                        message: &e.to_string(),
                    }
                    .encode(&mut outbox);
                    close = Some((code, e.to_string()));
                    break;
                }
            }
        }
        if !hand_over(&service, &mut records).await {
            // The log is closed: the server is stopping, and answers without records
            // must not leave.
            break;
        }
        if !outbox.is_empty() || close.is_some() {
            let round = Round {
                answers: outbox.split(),
                ids: std::mem::take(&mut ids),
                position: service.app().durable_position(),
                close: close.clone(),
            };
            if rounds.send(round).await.is_err() {
                break; // the writer stopped: the stream is broken
            }
        }
        if close.is_some() {
            break;
        }
        match recv.read_chunk(READ, true).await {
            Ok(Some(chunk)) => inbox.extend_from_slice(&chunk.bytes),
            // The client finished its side, or the stream broke: nothing more to answer.
            Ok(None) | Err(_) => break,
        }
    }
    drop(rounds);
    let _ = writer.await;
}

/// Sends each round of answers, in order, once the state it depends on is durable;
/// rounds already waiting go out together. Finishes the stream when the reader is done,
/// and closes the connection after a round that says so.
async fn write_rounds(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut waiting: tokio::sync::mpsc::Receiver<Round>,
    service: Arc<Service>,
) {
    let mut out = BytesMut::new();
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        while batch.last().is_some_and(|r| r.close.is_none())
            && let Ok(more) = waiting.try_recv()
        {
            batch.push(more);
        }
        let position = batch.iter().filter_map(|r| r.position).max();
        let durable = match position {
            Some(p) => service.app().durable_until(p).await,
            None => Ok(()),
        };
        out.clear();
        let mut close = None;
        for round in batch {
            match &durable {
                Ok(()) => out.extend_from_slice(&round.answers),
                Err(why) => withdraw(&mut out, &round.ids, why),
            }
            close = close.or(round.close);
        }
        if durable.is_err() {
            metrics::counter!(crate::metrics::STATE_LOG_FAILURES).increment(1);
        }
        if !out.is_empty() && send.write_all(&out).await.is_err() {
            return;
        }
        if let Some((code, message)) = close {
            // Closing drops undelivered stream data, so let the client read the answers
            // and the error first (for a bounded time), then close.
            let _ = send.finish();
            let _ = tokio::time::timeout(CLOSE_GRACE, send.stopped()).await;
            conn.close((code as u32).into(), message.as_bytes());
            return;
        }
    }
    let _ = send.finish();
}

/// The id of a whole frame (0 if it is too short to hold one).
fn frame_id(frame: &[u8]) -> u32 {
    frame
        .get(5..9)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// Answers `internal` to each of `ids`, in place of answers whose state could not be made
/// durable: an answer must never promise what a crash could take back.
fn withdraw(out: &mut BytesMut, ids: &[u32], why: &str) {
    let message = format!("the answer could not be made durable: {why}");
    for &id in ids {
        let _ = Frame::Error {
            id,
            code: ErrorCode::Internal,
            message: &message,
        }
        .encode(out);
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
