//! A client for frontends and tools: one connection, one stream, requests in order.
//!
//! Work in progress: requests on a stream are sent one at a time; pipelining over a few
//! long-lived streams, reconnection and typed results come next.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::{Bytes, BytesMut};
use portvakt_wire::{Frame, frame_len};
use tokio::sync::Mutex;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS configuration is unusable for QUIC.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(String),
    /// The connection could not be made or broke.
    #[error("connection: {0}")]
    Connection(String),
    /// The request could not be encoded.
    #[error("request: {0}")]
    Encode(#[from] portvakt_wire::EncodeError),
    /// The server's answer could not be decoded.
    #[error("answer: {0}")]
    Decode(#[from] portvakt_wire::DecodeError),
}

/// A connection to a Portvakt server.
pub struct Client {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    stream: Mutex<(quinn::SendStream, quinn::RecvStream, BytesMut)>,
    next_id: AtomicU32,
}

impl Client {
    /// Connects to `addr`, expecting the server's certificate to name `server_name`.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        tls: rustls::ClientConfig,
    ) -> Result<Self, ClientError> {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(|e: std::net::AddrParseError| ClientError::Connection(e.to_string()))?;
        let mut endpoint =
            quinn::Endpoint::client(bind).map_err(|e| ClientError::Connection(e.to_string()))?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = endpoint
            .connect(addr, server_name)
            .map_err(|e| ClientError::Connection(e.to_string()))?
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        Ok(Self {
            _endpoint: endpoint,
            conn,
            stream: Mutex::new((send, recv, BytesMut::new())),
            next_id: AtomicU32::new(1),
        })
    }

    /// A fresh request id.
    pub fn next_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends one frame and returns the answer's bytes (decode them with [`Frame::decode`]).
    pub async fn call(&self, frame: &Frame<'_>) -> Result<Bytes, ClientError> {
        let mut out = BytesMut::new();
        frame.encode(&mut out)?;
        self.call_raw(&out).await
    }

    /// Sends raw bytes (which should hold one frame) and returns the next answer's bytes.
    pub async fn call_raw(&self, bytes: &[u8]) -> Result<Bytes, ClientError> {
        let mut guard = self.stream.lock().await;
        let (send, recv, inbox) = &mut *guard;
        send.write_all(bytes)
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(n) = frame_len(inbox)? {
                return Ok(inbox.split_to(n).freeze());
            }
            match recv.read(&mut chunk).await {
                Ok(Some(n)) => inbox.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Ok(None) => {
                    return Err(ClientError::Connection(
                        "the server closed the stream".into(),
                    ));
                }
                Err(e) => return Err(ClientError::Connection(e.to_string())),
            }
        }
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.conn.close(0u32.into(), b"done");
    }
}
