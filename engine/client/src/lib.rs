//! Portvakt's client for frontends: one QUIC connection with mutual TLS, a few long-lived
//! streams, and many requests pipelined on each.
//!
//! A [`Client`] is cheap to clone and safe to share between tasks: every clone uses the
//! same connection. Requests are spread over the connection's streams in turn; on each
//! stream they are written back to back and the server answers them in order, so a
//! request costs neither a round trip of its own nor a stream of its own. A broken
//! connection fails the requests it carried and the next request connects again.
//!
//! Requests are never retried behind the caller's back: a decision with a one-time code
//! may have been made (and the code used up) before the connection broke, so whether to
//! ask again is the frontend's choice.
//!
//! ```no_run
//! use portvakt_client::{Client, Decide, FirstFactor, Outcome, Proof, Purpose};
//!
//! # async fn sign_in() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = portvakt_client::tls::from_pem_files(
//!     "portvakt-data/certs/ca.pem".as_ref(),
//!     "portvakt-data/certs/frontend.pem".as_ref(),
//!     "portvakt-data/certs/frontend.key".as_ref(),
//! )?;
//! let client = Client::builder("127.0.0.1:4433".parse()?, tls)
//!     .streams(4)
//!     .connect()
//!     .await?;
//!
//! // The password was right; the person typed 123456 from their authenticator app.
//! let decision = client
//!     .decide(Decide {
//!         tenant: "kommune",
//!         user: "kari@kommune.no",
//!         ip: "203.0.113.9".parse()?,
//!         purpose: Purpose::SignIn,
//!         first_factor: FirstFactor::Ok,
//!         proof: Some(Proof::Totp("123456")),
//!         device_token: None,
//!         remember_device: false,
//!     })
//!     .await?;
//! match decision.outcome {
//!     Outcome::Allow => println!("welcome"),
//!     Outcome::Challenge => println!("ask for one of {:?}", decision.methods),
//!     Outcome::Locked | Outcome::Throttled => {
//!         println!("try again in {:?}", decision.retry_after)
//!     }
//!     other => println!("{other:?}: {}", decision.reason),
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod answer;
#[cfg(feature = "device")]
pub mod device;
mod lane;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use tokio::sync::{Semaphore, oneshot};

pub use answer::{Answer, Decision, Delivery, DeviceToken, Method, Sent};
pub use portvakt_wire::{
    Admin, AdminReply, Decide, ErrorCode, FirstFactor, Frame, MethodKind, Outcome, Proof, Purpose,
    SendCode,
};

use lane::{Job, Lane};

/// Consecutive requests sent on one stream before the next stream's turn.
const RUN: usize = 16;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS configuration cannot be used for QUIC.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(String),
    /// No connection could be made.
    #[error("connecting to {addr}: {message}")]
    Connect {
        /// The server's address.
        addr: SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// The connection broke before the answer came; the server may or may not have acted
    /// on the request.
    #[error("connection lost: {0}")]
    Closed(String),
    /// The server refused the client's certificate (or wanted one and got none), so it
    /// acted on nothing.
    #[error("the server refused {presented}: {why}")]
    CertificateRefused {
        /// The certificate presented, by its SHA-256 fingerprint, or that none was.
        presented: String,
        /// The TLS alert the server sent, in words.
        why: String,
    },
    /// No answer within the request timeout; the server may or may not have acted on it.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request has a field over the protocol's limits.
    #[error("request: {0}")]
    Encode(#[from] portvakt_wire::EncodeError),
    /// The server's answer could not be decoded.
    #[error("the server's answer: {0}")]
    Decode(#[from] portvakt_wire::DecodeError),
    /// The server refused the request with an error frame.
    #[error("the server refused the request ({}): {message}", code.as_str())]
    Refused {
        /// The protocol's error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server answered with a frame of the wrong kind.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The same failure, for another request that waited on the stream that failed.
    pub(crate) fn for_another(&self) -> Self {
        match self {
            Self::CertificateRefused { presented, why } => Self::CertificateRefused {
                presented: presented.clone(),
                why: why.clone(),
            },
            Self::Closed(why) => Self::Closed(why.clone()),
            other => Self::Closed(other.to_string()),
        }
    }
}

/// Settings for a [`Client`]; made by [`Client::builder`].
#[derive(Debug)]
pub struct Builder {
    addr: SocketAddr,
    server_name: String,
    tls: rustls::ClientConfig,
    streams: usize,
    max_in_flight: usize,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
}

impl Builder {
    /// The name the server's certificate must carry (default `localhost`, which the
    /// development certificates are made for).
    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = name.to_owned();
        self
    }

    /// How many long-lived streams to spread requests over (default 4; the server allows
    /// 16 per connection). More streams let the server answer on more cores at once.
    pub fn streams(mut self, n: usize) -> Self {
        self.streams = n.max(1);
        self
    }

    /// How many requests may wait for answers at once (default 1024); further requests
    /// wait for a free slot.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How long connecting may take (default 5 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// How long to wait for an answer (default 10 s; `None` waits as long as the
    /// connection lives).
    pub fn request_timeout(mut self, t: Option<Duration>) -> Self {
        self.request_timeout = t;
        self
    }

    /// Makes the client and connects it, so a wrong address or certificate shows at once.
    pub async fn connect(self) -> Result<Client, ClientError> {
        let mut tls = self.tls;
        if tls.alpn_protocols.is_empty() {
            tls.alpn_protocols = vec![portvakt_wire::ALPN.to_vec()];
        }
        let presented: Arc<str> = presented(&tls).into();
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let bind = if self.addr.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0u8; 4], 0))
        };
        let connect_error = |message: String| ClientError::Connect {
            addr: self.addr,
            message,
        };
        let mut endpoint =
            quinn::Endpoint::client(bind).map_err(|e| connect_error(e.to_string()))?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let client = Client {
            shared: Arc::new(Shared {
                endpoint,
                addr: self.addr,
                server_name: self.server_name,
                streams: self.streams,
                max_in_flight: self.max_in_flight,
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                session: ArcSwapOption::empty(),
                connecting: tokio::sync::Mutex::new(()),
                next_id: AtomicU32::new(1),
                presented,
            }),
        };
        client.session().await?;
        Ok(client)
    }
}

/// A connection to a Portvakt server, shared by clones; see the [crate documentation](crate).
#[derive(Clone, Debug)]
pub struct Client {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    server_name: String,
    streams: usize,
    max_in_flight: usize,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
    /// The live connection, if any.
    session: ArcSwapOption<Session>,
    /// Held while connecting, so a broken connection is replaced once, not once per
    /// waiting request.
    connecting: tokio::sync::Mutex<()>,
    next_id: AtomicU32,
    /// The client certificate, described for errors.
    presented: Arc<str>,
}

/// One connection and its streams.
#[derive(Debug)]
struct Session {
    conn: quinn::Connection,
    lanes: Vec<Lane>,
    next_lane: AtomicUsize,
    in_flight: Arc<Semaphore>,
}

impl Session {
    fn is_open(&self) -> bool {
        self.conn.close_reason().is_none()
    }
}

impl Client {
    /// Settings for a client of the server at `addr`, authenticating with `tls` (see
    /// [`tls::from_pem_files`]).
    pub fn builder(addr: SocketAddr, tls: rustls::ClientConfig) -> Builder {
        Builder {
            addr,
            server_name: "localhost".into(),
            tls,
            streams: 4,
            max_in_flight: 1024,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(10)),
        }
    }

    /// Asks for a decision on one sign-in attempt.
    pub async fn decide(&self, request: Decide<'_>) -> Result<Decision, ClientError> {
        let answer = self.exchange(&Frame::Decide(0, request)).await?;
        match answer.frame()? {
            Frame::Decision(_, d) => Ok(Decision::from_wire(&d)),
            other => Err(unexpected(other)),
        }
    }

    /// Asks for an SMS, voice or email code to be made for a person.
    pub async fn send_code(&self, request: SendCode<'_>) -> Result<Sent, ClientError> {
        let answer = self.exchange(&Frame::SendCode(0, request)).await?;
        match answer.frame()? {
            Frame::Sent {
                decision,
                challenge,
                delivery,
                ..
            } => Ok(Sent {
                decision: Decision::from_wire(&decision),
                challenge,
                delivery: delivery.map(|d| Delivery {
                    channel: d.channel,
                    destination: d.destination.to_owned(),
                    code: d.code.to_owned(),
                    expires_ms: d.expires_ms,
                }),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Runs an administrator operation (the connection needs the administrator
    /// certificate). The answer holds an [`AdminReply`]: `answer.frame()` gives
    /// `Frame::AdminReply(id, reply)`.
    pub async fn admin(&self, request: Admin<'_>) -> Result<Answer, ClientError> {
        let answer = self.exchange(&Frame::Admin(0, request)).await?;
        match answer.frame()? {
            Frame::AdminReply(..) => Ok(answer),
            other => Err(unexpected(other)),
        }
    }

    /// Sends any frame and returns the answer; an error frame becomes
    /// [`ClientError::Refused`]. The frame's id is replaced by one of the client's own,
    /// so requests never share an id.
    pub async fn call(&self, frame: &Frame<'_>) -> Result<Answer, ClientError> {
        let answer = self.exchange(frame).await?;
        if let error @ Frame::Error { .. } = answer.frame()? {
            return Err(unexpected(error));
        }
        Ok(answer)
    }

    /// Waits up to `wait` for the push approval `approval` to be answered, then asks for
    /// the decision: `request` is the sign-in as first asked (the same tenant, user,
    /// address, purpose and first factor), whose proof becomes the approval. The answer is
    /// `allow` once the device approved (to one caller only: the approval is spent),
    /// `challenge` with reason `approval_pending` if it is still waiting, or `deny`.
    pub async fn await_approval(
        &self,
        request: Decide<'_>,
        approval: [u8; 16],
        wait: Duration,
    ) -> Result<Decision, ClientError> {
        let wait_ms = u32::try_from(wait.as_millis())
            .unwrap_or(u32::MAX)
            .min(portvakt_wire::MAX_WAIT_MS);
        let request = Decide {
            proof: Some(portvakt_wire::Proof::Push { approval, wait_ms }),
            ..request
        };
        let answer = self
            .call_alone(
                &Frame::Decide(0, request),
                Duration::from_millis(wait_ms.into()),
            )
            .await?;
        match answer.frame()? {
            Frame::Decision(_, d) => Ok(Decision::from_wire(&d)),
            other => Err(unexpected(other)),
        }
    }

    /// Sends one frame on a stream of its own and returns its answer (an error frame
    /// becomes [`ClientError::Refused`]). For a request that waits on the server (an
    /// approval's outcome, a device's list): on a shared stream it would hold up the
    /// requests behind it. `wait` is how long the server may wait, on top of the usual
    /// request timeout.
    pub async fn call_alone(
        &self,
        frame: &Frame<'_>,
        wait: Duration,
    ) -> Result<Answer, ClientError> {
        let (bytes, id) = self.stamped(frame)?;
        let session = self.session().await?;
        let exchange = async {
            let lost = |_| lost(&session.conn, &self.shared.presented);
            let (mut send, mut recv) = session.conn.open_bi().await.map_err(lost)?;
            send.write_all(&bytes).await.map_err(|_| {
                ClientError::Closed("the stream closed before the request was sent".into())
            })?;
            let _ = send.finish();
            let data = recv
                .read_to_end(portvakt_wire::MAX_FRAME + 4)
                .await
                .map_err(|e| ClientError::Closed(format!("no answer: {e}")))?;
            let answer = Answer(Bytes::from(data));
            let frame = answer.frame()?;
            if frame.id() != id && frame.id() != 0 {
                return Err(ClientError::Unexpected(format!(
                    "an answer with id {} where {id} was due",
                    frame.id()
                )));
            }
            if let error @ Frame::Error { .. } = frame {
                return Err(unexpected(error));
            }
            Ok(answer)
        };
        match self.shared.request_timeout {
            None => exchange.await,
            Some(limit) => tokio::time::timeout(limit + wait, exchange)
                .await
                .map_err(|_| ClientError::Timeout(limit + wait))?,
        }
    }

    /// Sends a frame under a fresh id and returns the answer undecoded (the typed calls
    /// decode it once, themselves).
    async fn exchange(&self, frame: &Frame<'_>) -> Result<Answer, ClientError> {
        let (bytes, id) = self.stamped(frame)?;
        self.send(bytes, Some(id)).await
    }

    /// The frame's bytes under a fresh id of the client's own, and the id.
    fn stamped(&self, frame: &Frame<'_>) -> Result<(Bytes, u32), ClientError> {
        let mut bytes = BytesMut::with_capacity(128);
        frame.encode(&mut bytes)?;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = bytes.get_mut(5..9) {
            slot.copy_from_slice(&id.to_be_bytes());
        }
        Ok((bytes.freeze(), id))
    }

    /// Sends bytes as they are (one whole frame, or something that is not one) and
    /// returns the next answer on that stream, error frames included. Meant for tests of
    /// the server's handling of bad input.
    pub async fn call_raw(&self, bytes: &[u8]) -> Result<Answer, ClientError> {
        self.send(Bytes::copy_from_slice(bytes), None).await
    }

    async fn send(&self, bytes: Bytes, id: Option<u32>) -> Result<Answer, ClientError> {
        let session = self.session().await?;
        let permit = session
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Closed("the client is closed".into()))?;
        let (reply, answer) = oneshot::channel();
        // Runs of requests share a stream, so they share its writes and packets; the runs
        // go round the streams, so the server can answer on several cores.
        let lane = session.next_lane.fetch_add(1, Ordering::Relaxed) / RUN % session.lanes.len();
        let job = Job {
            bytes,
            id,
            reply,
            permit,
        };
        if let Some(lane) = session.lanes.get(lane) {
            lane.submit(job)?;
        }
        let lost = |_| lost(&session.conn, &self.shared.presented);
        match self.shared.request_timeout {
            None => answer.await.map_err(lost)?,
            Some(limit) => tokio::time::timeout(limit, answer)
                .await
                .map_err(|_| ClientError::Timeout(limit))?
                .map_err(lost)?,
        }
    }

    /// The live connection, connecting first if there is none.
    async fn session(&self) -> Result<Arc<Session>, ClientError> {
        if let Some(s) = self.shared.session.load_full().filter(|s| s.is_open()) {
            return Ok(s);
        }
        let _connecting = self.shared.connecting.lock().await;
        if let Some(s) = self.shared.session.load_full().filter(|s| s.is_open()) {
            return Ok(s);
        }
        let s = Arc::new(self.connect_once().await?);
        self.shared.session.store(Some(s.clone()));
        Ok(s)
    }

    async fn connect_once(&self) -> Result<Session, ClientError> {
        let shared = &self.shared;
        let error = |message: String| ClientError::Connect {
            addr: shared.addr,
            message,
        };
        let connecting = shared
            .endpoint
            .connect(shared.addr, &shared.server_name)
            .map_err(|e| error(e.to_string()))?;
        let conn = tokio::time::timeout(shared.connect_timeout, connecting)
            .await
            .map_err(|_| error(format!("no handshake within {:?}", shared.connect_timeout)))?
            .map_err(|e| {
                certificate_refused(&e, &shared.presented).unwrap_or(error(describe_close(&e)))
            })?;
        let mut lanes = Vec::with_capacity(shared.streams);
        for _ in 0..shared.streams {
            let (send, recv) = conn.open_bi().await.map_err(|e| {
                certificate_refused(&e, &shared.presented).unwrap_or(error(describe_close(&e)))
            })?;
            lanes.push(Lane::start(
                conn.clone(),
                send,
                recv,
                shared.presented.clone(),
            ));
        }
        Ok(Session {
            conn,
            lanes,
            next_lane: AtomicUsize::new(0),
            in_flight: Arc::new(Semaphore::new(shared.max_in_flight)),
        })
    }

    /// QUIC's counters for the live connection (packets, bytes, round-trip time), if any.
    pub fn connection_stats(&self) -> Option<quinn::ConnectionStats> {
        self.shared.session.load().as_ref().map(|s| s.conn.stats())
    }

    /// Whether the client holds a live connection (it connects again on the next request
    /// if not).
    pub fn is_connected(&self) -> bool {
        self.shared
            .session
            .load()
            .as_ref()
            .is_some_and(|s| s.is_open())
    }

    /// Closes the connection, telling the server, and waits (briefly) for the server to
    /// acknowledge. Requests still waiting fail with [`ClientError::Closed`].
    pub async fn close(&self) {
        if let Some(s) = self.shared.session.swap(None) {
            s.in_flight.close();
            s.conn.close(0u32.into(), b"done");
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(1), self.shared.endpoint.wait_idle()).await;
    }
}

/// Why a request on `conn` can have no answer: the connection's close reason, told as a
/// refused certificate where it is one.
fn lost(conn: &quinn::Connection, presented: &str) -> ClientError {
    match conn.close_reason() {
        Some(e) => certificate_refused(&e, presented)
            .unwrap_or_else(|| ClientError::Closed(describe_close(&e))),
        None => ClientError::Closed("the stream broke".into()),
    }
}

/// The connection's end in words, with the peer's reason where it gave one (quinn's own
/// wording of a lost connection says only that it was lost).
fn describe_close(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) if !c.reason.is_empty() => format!(
            "the server closed the connection (code {}): {}",
            c.error_code,
            String::from_utf8_lossy(&c.reason)
        ),
        other => other.to_string(),
    }
}

/// TLS alerts a server sends when it refuses a client certificate, and what each says.
const CERTIFICATE_ALERTS: &[(u8, &str)] = &[
    (42, "bad certificate"),
    (43, "the certificate is not made for this use"),
    (44, "the certificate is revoked"),
    (45, "the certificate has expired or is not valid yet"),
    (46, "the certificate was not accepted"),
    (
        48,
        "the certificate is not signed by a CA the server trusts",
    ),
    (49, "access denied"),
    (116, "the server requires a client certificate"),
];

/// A connection the server closed during or right after the handshake with one of the
/// certificate alerts (QUIC carries a TLS alert as the transport error 0x100 + alert).
/// Only the peer's close counts: the same alert raised here means this client refused
/// the server's certificate, which is another matter.
fn certificate_refused(e: &quinn::ConnectionError, presented: &str) -> Option<ClientError> {
    let quinn::ConnectionError::ConnectionClosed(c) = e else {
        return None;
    };
    let code = u64::from(c.error_code);
    let alert = u8::try_from(code.checked_sub(0x100)?).ok()?;
    let (_, why) = CERTIFICATE_ALERTS.iter().find(|(a, _)| *a == alert)?;
    Some(ClientError::CertificateRefused {
        presented: presented.to_owned(),
        why: (*why).to_owned(),
    })
}

/// The client certificate a configuration presents, by the SHA-256 fingerprint of its
/// DER encoding (as `openssl x509 -noout -fingerprint -sha256` prints it).
fn presented(tls: &rustls::ClientConfig) -> String {
    use rustls::SignatureScheme as S;
    use sha2::Digest as _;
    let schemes = [
        S::ECDSA_NISTP256_SHA256,
        S::ECDSA_NISTP384_SHA384,
        S::ED25519,
        S::RSA_PSS_SHA256,
        S::RSA_PKCS1_SHA256,
    ];
    let Some(key) = tls.client_auth_cert_resolver.resolve(&[], &schemes) else {
        return "no client certificate".into();
    };
    let Some(cert) = key.cert.first() else {
        return "no client certificate".into();
    };
    let digest = sha2::Sha256::digest(cert.as_ref());
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    format!("the certificate with SHA-256 fingerprint {}", hex.join(":"))
}

/// The error for an answer that is not the one the request wanted: the server's refusal
/// for an error frame, otherwise the kind of answer it was (its fields may hold secrets,
/// so they are not shown).
pub(crate) fn unexpected(frame: Frame<'_>) -> ClientError {
    let kind = match frame {
        Frame::Error { code, message, .. } => {
            return ClientError::Refused {
                code,
                message: message.to_owned(),
            };
        }
        Frame::Decision(..) => "a decision",
        Frame::Sent { .. } => "a send-code answer",
        Frame::AdminReply(..) => "an administrator reply",
        Frame::DeviceReply(..) => "a device reply",
        Frame::Decide(..) | Frame::SendCode(..) | Frame::Admin(..) | Frame::Device(..) => {
            "a request"
        }
    };
    ClientError::Unexpected(format!("the server answered with {kind}"))
}
