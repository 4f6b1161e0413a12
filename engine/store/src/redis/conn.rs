//! One connection to a Redis server, shared by every thread that asks something of it.
//!
//! Callers write their commands one after another on the same socket (pipelining) and
//! wait for their own reply; a reader thread hands replies out in order. A caller that
//! waits past the timeout gets an error, and the connection is dropped (its reader fails
//! everyone still waiting), so a server that stalls is treated like one that is gone. The
//! next command connects again, after a short pause so a server that is down is not
//! hammered; each new connection is first shown to [`Handshake`], which is where the
//! store notices that it reached a different server process (a restart or a failover).

use super::resp::{self, Reply};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why a command got no reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// Connecting, writing or reading failed.
    #[error("redis at {0}: {1}")]
    Io(String, String),
    /// No reply within the timeout.
    #[error("redis at {0}: no reply within {1} ms")]
    Timeout(String, u128),
    /// The server answered something that is not RESP.
    #[error("redis at {0}: {1}")]
    Protocol(String, String),
    /// A reconnection was attempted too recently.
    #[error("redis at {0} is unreachable (last error: {1})")]
    Down(String, String),
}

/// Runs on every new connection before any command is sent on it.
pub(super) trait Handshake: Send + Sync {
    /// Checks the server behind `conn` (one command at a time, before the reader starts).
    fn greet(&self, conn: &mut Greeting<'_>) -> Result<(), ConnError>;
}

/// A fresh connection, for [`Handshake::greet`] only: one command, one reply.
pub(super) struct Greeting<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
    addr: &'a str,
}

impl Greeting<'_> {
    /// The server's address.
    pub(super) fn addr(&self) -> &str {
        self.addr
    }

    /// Sends `args` and reads its reply.
    pub(super) fn call(&mut self, args: &[&[u8]]) -> Result<Reply, ConnError> {
        let mut out = Vec::new();
        resp::encode(args, &mut out);
        self.stream.write_all(&out).map_err(|e| io(self.addr, &e))?;
        read_one(self.stream, &mut self.buf, self.addr)
    }
}

/// Locks `m`; a panic elsewhere while it was held leaves nothing half-done here (each
/// critical section is a push, a pop or a swap), so its data is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn io(addr: &str, e: &dyn std::fmt::Display) -> ConnError {
    ConnError::Io(addr.to_owned(), e.to_string())
}

fn read_one(stream: &mut TcpStream, buf: &mut Vec<u8>, addr: &str) -> Result<Reply, ConnError> {
    let mut chunk = [0u8; 16 << 10];
    loop {
        match resp::decode(buf) {
            Ok(Some((r, n))) => {
                buf.drain(..n);
                return Ok(r);
            }
            Ok(None) => {}
            Err(e) => return Err(ConnError::Protocol(addr.to_owned(), e.to_string())),
        }
        let n = stream.read(&mut chunk).map_err(|e| io(addr, &e))?;
        if n == 0 {
            return Err(io(addr, &"the server closed the connection"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Where one caller's reply lands.
#[derive(Default)]
struct Slot {
    reply: Mutex<Option<Result<Reply, ConnError>>>,
    ready: Condvar,
}

impl Slot {
    fn fill(&self, r: Result<Reply, ConnError>) {
        *lock(&self.reply) = Some(r);
        self.ready.notify_one();
    }
}

/// A connection in use: the socket's writing side and the callers waiting, in order.
struct Live {
    stream: TcpStream,
    waiting: Arc<Mutex<VecDeque<Arc<Slot>>>>,
    broken: Arc<AtomicBool>,
}

impl Live {
    fn shut(&self) {
        self.broken.store(true, Ordering::Release);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A shared, reconnecting, pipelined connection to one server.
pub(super) struct Conn {
    addr: String,
    timeout: Duration,
    handshake: Arc<dyn Handshake>,
    live: Mutex<Option<Live>>,
    /// When connecting last failed, and why: no new attempt for a short while.
    failed: Mutex<Option<(Instant, String)>>,
    /// Bytes written and replies read (for the metrics and the benchmarks).
    pub(super) sent: AtomicU64,
    /// Commands sent.
    pub(super) commands: AtomicU64,
}

/// How long after a failed connection no new one is attempted (calls fail at once).
const RETRY_AFTER: Duration = Duration::from_millis(100);

impl Conn {
    /// A connection to `addr` (host:port), made on first use.
    pub(super) fn new(addr: &str, timeout: Duration, handshake: Arc<dyn Handshake>) -> Self {
        Self {
            addr: addr.to_owned(),
            timeout,
            handshake,
            live: Mutex::new(None),
            failed: Mutex::new(None),
            sent: AtomicU64::new(0),
            commands: AtomicU64::new(0),
        }
    }

    /// Sends `args` and waits for the reply (an error reply is `Ok(Reply::Error)`).
    pub(super) fn call(&self, args: &[&[u8]]) -> Result<Reply, ConnError> {
        let mut out = Vec::with_capacity(64 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        resp::encode(args, &mut out);
        self.call_encoded(&out, 1).map(|mut v| v.remove(0))
    }

    /// Sends `first` and `then` back to back (nothing of another caller between them on
    /// this connection) and waits for both replies.
    pub(super) fn call_two(
        &self,
        first: &[&[u8]],
        then: &[&[u8]],
    ) -> Result<(Reply, Reply), ConnError> {
        let mut out = Vec::new();
        resp::encode(first, &mut out);
        resp::encode(then, &mut out);
        let mut r = self.call_encoded(&out, 2)?;
        let second = r.pop();
        match (r.pop(), second) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => unreachable!("two commands, two replies"),
        }
    }

    /// What every new connection here is shown first.
    pub(super) fn handshake(&self) -> Arc<dyn Handshake> {
        self.handshake.clone()
    }

    fn call_encoded(&self, out: &[u8], count: usize) -> Result<Vec<Reply>, ConnError> {
        let slots: Vec<Arc<Slot>> = (0..count).map(|_| Arc::default()).collect();
        {
            let mut live = lock(&self.live);
            if live
                .as_ref()
                .is_none_or(|l| l.broken.load(Ordering::Acquire))
            {
                *live = Some(self.connect()?);
            }
            let Some(l) = live.as_mut() else {
                unreachable!("just connected")
            };
            // The slots queue in the order the commands go out: under this lock.
            lock(&l.waiting).extend(slots.iter().cloned());
            if let Err(e) = l.stream.write_all(out) {
                l.shut();
                *live = None;
                return Err(io(&self.addr, &e));
            }
        }
        self.sent.fetch_add(out.len() as u64, Ordering::Relaxed);
        self.commands.fetch_add(count as u64, Ordering::Relaxed);
        let deadline = super::monotonic() + self.timeout;
        let mut replies = Vec::with_capacity(count);
        for slot in slots {
            let mut reply = lock(&slot.reply);
            while reply.is_none() {
                let left = deadline.saturating_duration_since(super::monotonic());
                let (r, _) = slot
                    .ready
                    .wait_timeout(reply, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                reply = r;
                if reply.is_none() && left.is_zero() {
                    drop(reply);
                    // A server that does not answer in time is treated as gone: drop the
                    // connection, so everyone behind this call learns it now.
                    if let Some(l) = lock(&self.live).take() {
                        l.shut();
                    }
                    return Err(ConnError::Timeout(
                        self.addr.clone(),
                        self.timeout.as_millis(),
                    ));
                }
            }
            match reply.take() {
                Some(r) => replies.push(r?),
                None => unreachable!("the loop waits for a reply"),
            }
        }
        Ok(replies)
    }

    fn connect(&self) -> Result<Live, ConnError> {
        if let Some((at, why)) = &*lock(&self.failed)
            && at.elapsed() < RETRY_AFTER
        {
            return Err(ConnError::Down(self.addr.clone(), why.clone()));
        }
        let r = self.try_connect();
        *lock(&self.failed) = match &r {
            Ok(_) => None,
            Err(e) => Some((super::monotonic(), e.to_string())),
        };
        r
    }

    fn try_connect(&self) -> Result<Live, ConnError> {
        let addr: SocketAddr = self
            .addr
            .to_socket_addrs()
            .map_err(|e| io(&self.addr, &e))?
            .next()
            .ok_or_else(|| io(&self.addr, &"no address"))?;
        let mut stream =
            TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| io(&self.addr, &e))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| io(&self.addr, &e))?;
        self.handshake.greet(&mut Greeting {
            stream: &mut stream,
            buf: Vec::new(),
            addr: &self.addr,
        })?;
        // The reader blocks without a timeout: a caller's own deadline catches a stall.
        stream
            .set_read_timeout(None)
            .map_err(|e| io(&self.addr, &e))?;
        let reading = stream.try_clone().map_err(|e| io(&self.addr, &e))?;
        let waiting: Arc<Mutex<VecDeque<Arc<Slot>>>> = Arc::default();
        let broken = Arc::new(AtomicBool::new(false));
        let (w, b, a) = (waiting.clone(), broken.clone(), self.addr.clone());
        std::thread::Builder::new()
            .name("redis-reader".into())
            .spawn(move || read_replies(reading, &w, &b, &a))
            .map_err(|e| io(&self.addr, &e))?;
        Ok(Live {
            stream,
            waiting,
            broken,
        })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(l) = lock(&self.live).take() {
            l.shut();
        }
    }
}

/// Hands each reply to the caller that waits first; on any error, fails every caller
/// waiting now or later on this connection.
fn read_replies(
    mut stream: TcpStream,
    waiting: &Mutex<VecDeque<Arc<Slot>>>,
    broken: &AtomicBool,
    addr: &str,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    let error = 'read: loop {
        loop {
            match resp::decode(&buf) {
                Ok(Some((reply, n))) => {
                    buf.drain(..n);
                    match lock(waiting).pop_front() {
                        Some(slot) => slot.fill(Ok(reply)),
                        None => {
                            break 'read ConnError::Protocol(
                                addr.to_owned(),
                                "a reply nobody asked for".into(),
                            );
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => break 'read ConnError::Protocol(addr.to_owned(), e.to_string()),
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => break io(addr, &"the server closed the connection"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break io(addr, &e),
        }
    };
    broken.store(true, Ordering::Release);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    // Whoever queued after the break sees `broken` on the next call; those already
    // queued are failed here.
    for slot in lock(waiting).drain(..) {
        slot.fill(Err(error.clone()));
    }
}
