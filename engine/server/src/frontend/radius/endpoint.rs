//! The UDP socket: which datagrams are answered, dropped or answered again.
//!
//! A datagram is dropped, silently and counted by reason, when it comes from no
//! configured client, does not decode, is not an Access-Request or Status-Server, or
//! fails its Message-Authenticator. Requests are answered by tasks of their own, so a
//! request waiting for a push device or an upstream server holds up no other.
//!
//! **Duplicates** (RFC 5080 §2.2.2): a request is known by its source address and port,
//! identifier and Request Authenticator. A retransmit while its answer is being decided
//! is dropped; one after gets the answer sent, byte for byte, for the configured time
//! (`reply_cache_s`, 5 s by default, as FreeRADIUS's `cleanup_delay`). At most
//! [`MAX_ENTRIES`] requests are remembered (about 200 bytes each); past it, new ones are
//! dropped (counted as `busy`) until old answers age out. Answers age out in the order
//! they were sent, so forgetting them costs nothing per request kept.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;
use portvakt_radius::{Attribute, MAX_PACKET, Packet, attr, code};
use tokio::net::UdpSocket;

use super::config::{Client, Config};
use super::dialogue::{self, Answer};
use crate::app::App;

/// How many requests are remembered at once (pending and answered).
pub const MAX_ENTRIES: usize = 1 << 20;

/// A request as the duplicates cache knows it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    from: SocketAddr,
    identifier: u8,
    authenticator: [u8; 16],
}

enum Entry {
    /// Being decided.
    Pending,
    /// Answered with these bytes.
    Answered(Arc<[u8]>),
}

/// The requests seen lately, and the answered ones in the order they were answered.
struct Seen {
    keep: Duration,
    inner: Mutex<SeenInner>,
}

#[derive(Default)]
struct SeenInner {
    entries: HashMap<Key, Entry>,
    answered: VecDeque<(Instant, Key)>,
}

/// What to do with a request, by what the cache holds.
enum Fresh {
    /// New: decide it.
    New,
    /// Being decided: drop the retransmit.
    Pending,
    /// Answered: send these bytes again.
    Again(Arc<[u8]>),
    /// The cache is full.
    Busy,
}

impl Seen {
    fn new(keep: Duration) -> Self {
        Self {
            keep,
            inner: Mutex::default(),
        }
    }

    fn admit(&self, key: Key) -> Fresh {
        let mut inner = self.inner.lock();
        match inner.entries.get(&key) {
            Some(Entry::Pending) => Fresh::Pending,
            Some(Entry::Answered(bytes)) => Fresh::Again(bytes.clone()),
            None if inner.entries.len() >= MAX_ENTRIES => Fresh::Busy,
            None => {
                inner.entries.insert(key, Entry::Pending);
                Fresh::New
            }
        }
    }

    /// Forgets a request that will not be answered.
    fn forget(&self, key: Key) {
        self.inner.lock().entries.remove(&key);
    }

    fn answered(&self, key: Key, bytes: Arc<[u8]>) {
        let now = crate::clock::instant();
        let mut inner = self.inner.lock();
        inner.entries.insert(key, Entry::Answered(bytes));
        inner.answered.push_back((now, key));
    }

    /// Forgets the answers older than the cache keeps them, oldest first.
    fn sweep(&self) {
        let now = crate::clock::instant();
        let mut inner = self.inner.lock();
        while let Some(&(at, key)) = inner.answered.front() {
            if now.duration_since(at) < self.keep {
                break;
            }
            inner.answered.pop_front();
            inner.entries.remove(&key);
        }
    }
}

/// What the answering tasks share.
struct Shared<A> {
    app: Arc<A>,
    config: Config,
    socket: UdpSocket,
    seen: Seen,
}

/// Binds `config.listen` and answers RADIUS requests there with `app` until the task is
/// aborted. Returns the bound address and the task.
pub async fn start<A>(
    config: Config,
    app: Arc<A>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    A: AsRef<App> + Send + Sync + 'static,
{
    let socket = UdpSocket::bind(config.listen).await?;
    let local = socket.local_addr()?;
    let shared = Arc::new(Shared {
        app,
        seen: Seen::new(config.reply_cache),
        config,
        socket,
    });
    let task = tokio::spawn(async move {
        let sweeper = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    shared.seen.sweep();
                }
            })
        };
        serve(shared).await;
        sweeper.abort();
    });
    Ok((local, task))
}

/// Why a datagram was dropped, for the metrics.
fn dropped(client: &str, reason: &'static str) {
    metrics::counter!(crate::metrics::RADIUS_DROPPED, "client" => client.to_owned(), "reason" => reason)
        .increment(1);
}

async fn serve<A: AsRef<App> + Send + Sync + 'static>(shared: Arc<Shared<A>>) {
    // One byte more than a packet may have, so an oversized datagram is seen as one.
    let mut buf = vec![0u8; MAX_PACKET + 1];
    loop {
        let (n, from) = match shared.socket.recv_from(&mut buf).await {
            Ok(got) => got,
            // An ICMP error from an earlier send: the next datagram is fine.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            // A shortage (buffers, descriptors): keep serving, without spinning on it.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let datagram = &buf[..n];
        let Some(client) = shared.config.client(from.ip()) else {
            dropped("unknown", "unknown_client");
            continue;
        };
        let Ok(packet) = Packet::decode(datagram) else {
            dropped(&client.name, "malformed");
            continue;
        };
        if packet.code != code::ACCESS_REQUEST && packet.code != code::STATUS_SERVER {
            dropped(&client.name, "unsupported_code");
            continue;
        }
        if let Err(reason) = authentic(client, &packet, datagram) {
            dropped(&client.name, reason);
            continue;
        }
        let key = Key {
            from,
            identifier: packet.identifier,
            authenticator: packet.authenticator,
        };
        match shared.seen.admit(key) {
            Fresh::New => {}
            Fresh::Pending => {
                dropped(&client.name, "duplicate_pending");
                continue;
            }
            Fresh::Again(bytes) => {
                metrics::counter!(crate::metrics::RADIUS_RETRANSMITS, "client" => client.name.clone())
                    .increment(1);
                let _ = shared.socket.send_to(&bytes, from).await;
                continue;
            }
            Fresh::Busy => {
                dropped(&client.name, "busy");
                continue;
            }
        }
        let owned = datagram.to_vec();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(packet) = Packet::decode(&owned) else {
                return; // decoded above; cannot happen
            };
            let Some(client) = shared.config.client(from.ip()) else {
                return;
            };
            let answer = respond((*shared.app).as_ref(), client, &packet, from).await;
            metrics::counter!(crate::metrics::RADIUS_REPLIES, "client" => client.name.clone(), "reply" => answer.name())
                .increment(1);
            let Some(bytes) = encode(&answer, &packet, client) else {
                shared.seen.forget(key);
                return;
            };
            let bytes: Arc<[u8]> = bytes.into();
            shared.seen.answered(key, bytes.clone());
            let _ = shared.socket.send_to(&bytes, from).await;
        });
    }
}

/// Whether a request may be trusted to come from `client`: its Message-Authenticator
/// right for the client's secret, or (for a client with the legacy switch) absent, but
/// never absent beside a Proxy-State (BlastRADIUS) or on a Status-Server.
fn authentic(client: &Client, packet: &Packet<'_>, datagram: &[u8]) -> Result<(), &'static str> {
    if packet.get(attr::MESSAGE_AUTHENTICATOR).is_some() {
        return match Packet::verify_request(datagram, &client.secret) {
            Ok(true) => Ok(()),
            _ => Err("bad_authenticator"),
        };
    }
    if packet.get(attr::PROXY_STATE).is_some() {
        return Err("proxy_state_without_message_authenticator");
    }
    if client.require_message_authenticator || packet.code == code::STATUS_SERVER {
        return Err("missing_message_authenticator");
    }
    Ok(())
}

/// Answers one authentic request, its records in the sign-in log and the state it
/// depends on durable before the answer is returned.
async fn respond(app: &App, client: &Client, packet: &Packet<'_>, from: SocketAddr) -> Answer {
    if packet.code == code::STATUS_SERVER {
        // RFC 5997: alive, and the secret is right.
        return Answer {
            code: code::ACCESS_ACCEPT,
            message: None,
            state: None,
        };
    }
    let mut records = BytesMut::new();
    let answer = dialogue::answer(app, client, packet, from.ip(), &mut records).await;
    match app.settle(&mut records).await {
        Ok(()) => answer,
        Err(e) => {
            crate::warn(format_args!(
                "radius: client {}: an answer was withheld: {e}",
                client.name
            ));
            Answer::reject(dialogue::UNAVAILABLE)
        }
    }
}

/// The reply's bytes: Message-Authenticator first, Reply-Message and State, then every
/// Proxy-State of the request in its order.
fn encode(answer: &Answer, request: &Packet<'_>, client: &Client) -> Option<Vec<u8>> {
    let mut attributes = Vec::with_capacity(4);
    // A Reply-Message longer than one attribute is split over several (RFC 2865 §5.18).
    if let Some(message) = &answer.message {
        for chunk in message.as_bytes().chunks(portvakt_radius::MAX_VALUE) {
            attributes.push(Attribute {
                kind: attr::REPLY_MESSAGE,
                value: chunk,
            });
        }
    }
    if let Some(state) = &answer.state {
        attributes.push(Attribute {
            kind: attr::STATE,
            value: state,
        });
    }
    attributes.extend(
        request
            .attributes
            .iter()
            .filter(|a| a.kind == attr::PROXY_STATE),
    );
    let reply = Packet {
        code: answer.code,
        identifier: request.identifier,
        authenticator: [0; 16],
        attributes,
    };
    match reply.sign_reply(&request.authenticator, &client.secret) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            // Only a request with Proxy-States filling the packet could do this.
            dropped(&client.name, "reply_too_long");
            crate::warn(format_args!(
                "radius: client {}: no reply: {e}",
                client.name
            ));
            None
        }
    }
}
