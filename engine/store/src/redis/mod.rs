//! The shared store: every node of a deployment keeps its state and its directory in one
//! Redis.
//!
//! - **Records** (a subject's replay and lockout state, budgets, sent-code challenges) are
//!   Redis hashes of a version and the record's bytes. [`Redis`] is a
//!   [`VersionedRecords`]: an update runs the core's function on the record it read and
//!   swaps the result in with one function call (`portvakt_swap`, `portvakt.lua`) that
//!   compares the version first. A record this node wrote last is remembered with its
//!   version, so the common update is one round trip; a stale one costs a second.
//! - **The directory** is a log of sealed change batches (a Redis stream) and a snapshot.
//!   A node appends a batch only if it has applied every earlier one (`portvakt_append`
//!   compares positions), so every batch was checked against the directory it applies to;
//!   otherwise the operation gets a conflict, waits until this node has caught up, and is
//!   made again. Every node follows the log and applies the other nodes' batches
//!   ([`Redis::follow`]).
//! - **Losses.** Redis acknowledges a write before it is on disk or on a replica, so a
//!   restart or a failover can lose acknowledged writes, among them a replay watermark.
//!   Every new connection first reads the server's `run_id`: a different process than the
//!   one this node (or the deployment, as recorded on that server) last talked to may
//!   have lost writes, and the replay fence is raised ([`Redis::set_fence`]) before
//!   anything is sent on it.
//! - **Clusters.** Keys that belong together share a hash tag (`{…}`), so a command never
//!   spans two slots; each command goes to the primary that owns its key's slot
//!   (`cluster.rs`), and a single Redis is a cluster of one.
//!
//! Every command waits at most the configured timeout; a store that does not answer in
//! time is an error, and decisions that need it fail closed.

mod cluster;
mod conn;
pub mod resp;

use crate::cas::{CasStore, Versioned, VersionedRecords};
use crate::sealed::{MasterKey, Purpose};
pub use conn::ConnError;
use conn::{Conn, Greeting, Handshake};
use dashmap::DashMap;
use parking_lot::{Condvar, Mutex};
use portvakt_core::directory::change::{Change, ChangeLog};
use portvakt_core::state::{StateStore, StoreError};
use resp::Reply;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The store over Redis: the core's records by compare-and-set.
pub type RedisStore = CasStore<Arc<Redis>>;

/// The function library, loaded by every node as it connects.
const LIBRARY: &str = include_str!("portvakt.lua");

/// How a node reaches the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `host:port`.
    pub addr: String,
    /// What every key starts with: one Redis can hold several deployments.
    pub prefix: String,
    /// How long any command may take before the store counts as unavailable.
    pub timeout: Duration,
    /// Replicas that must have every write before its decision is answered (`WAIT`
    /// after the write, on the same connection); 0: none.
    pub replicas: u32,
}

impl Options {
    /// From `redis://HOST:PORT[/PREFIX][?timeout_ms=N&replicas=R]` (prefix `portvakt`,
    /// 250 ms, no replicas waited for).
    pub fn from_url(url: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("{url}: {why} (expected redis://HOST:PORT[/PREFIX][?timeout_ms=N&replicas=R])")
        };
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| bad("not a redis:// address"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (addr, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if addr.is_empty() || !addr.contains(':') {
            return Err(bad("no host and port"));
        }
        let prefix = match prefix.trim_end_matches('/') {
            "" => "portvakt",
            p if p.len() <= 64
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                p
            }
            _ => {
                return Err(bad(
                    "a prefix of at most 64 letters, digits, '-', '_' or '.'",
                ));
            }
        };
        let mut timeout = Duration::from_millis(250);
        let mut replicas = 0;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("replicas", n)) => {
                    replicas = n.parse().map_err(|_| bad("replicas is not a number"))?;
                    if replicas > 16 {
                        return Err(bad("replicas above 16"));
                    }
                }
                Some(("timeout_ms", n)) => {
                    let ms: u64 = n.parse().map_err(|_| bad("timeout_ms is not a number"))?;
                    if !(1..=60_000).contains(&ms) {
                        return Err(bad("timeout_ms outside 1..=60000"));
                    }
                    timeout = Duration::from_millis(ms);
                }
                _ => return Err(bad(&format!("unknown parameter {pair:?}"))),
            }
        }
        Ok(Self {
            addr: addr.to_owned(),
            prefix: prefix.to_owned(),
            timeout,
            replicas,
        })
    }
}

/// The monotonic clock, for I/O deadlines only (decisions take their time as an argument).
#[allow(clippy::disallowed_methods)]
fn monotonic() -> Instant {
    Instant::now()
}

/// The node's clock: milliseconds since the Unix epoch.
pub type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

/// Raises the node's replay fence to an instant (ms); see [`Redis::set_fence`].
pub type RaiseFence = Box<dyn Fn(u64) + Send + Sync>;

/// The Redis key of the record at `key` (`RecordKey::encode`) in the deployment with
/// `prefix`: `<prefix>:r:{<hex of the record key>}`, the whole record key its hash tag.
pub fn record_key(prefix: &str, key: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut k = Vec::with_capacity(prefix.len() + 5 + 2 * key.len());
    k.extend_from_slice(prefix.as_bytes());
    k.extend_from_slice(b":r:{");
    for b in key {
        k.push(HEX[usize::from(b >> 4)]);
        k.push(HEX[usize::from(b & 15)]);
    }
    k.push(b'}');
    k
}

/// The keys of one deployment.
struct Keys {
    prefix: String,
    head: Vec<u8>,
    log: Vec<u8>,
    snapshot: Vec<u8>,
    pepper: Vec<u8>,
    audit: Vec<u8>,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        // The directory's keys share one hash tag, so its functions run on one node.
        let dir = |name: &str| format!("{prefix}:{{dir}}:{name}").into_bytes();
        Self {
            prefix: prefix.to_owned(),
            head: dir("head"),
            log: dir("log"),
            snapshot: dir("snapshot"),
            pepper: dir("pepper"),
            audit: format!("{prefix}:{{audit}}:log").into_bytes(),
        }
    }

    fn record(&self, key: &[u8]) -> Vec<u8> {
        record_key(&self.prefix, key)
    }
}

/// Notices a different server process behind a new connection (see the module's notes):
/// what all of a node's connections share.
struct Epoch {
    clock: Clock,
    /// The `run_id` last seen at each address.
    runs: Mutex<std::collections::HashMap<String, String>>,
    /// The highest fence found or raised, held until the node's hook is set.
    fence: AtomicU64,
    hook: OnceLock<RaiseFence>,
    /// Server processes found to differ from the last one seen (each raised the fence).
    changes: AtomicU64,
    /// The deployment had no directory when this node started: a server that has not
    /// seen it yet has nothing of it to lose.
    fresh: AtomicBool,
}

impl Epoch {
    fn raise(&self, at: u64) {
        self.fence.fetch_max(at, Ordering::AcqRel);
        if let Some(hook) = self.hook.get() {
            hook(at);
        }
    }
}

fn status(addr: &str, r: Reply) -> Result<Reply, ConnError> {
    match r {
        Reply::Error(e) => Err(ConnError::Protocol(addr.to_owned(), e)),
        r => Ok(r),
    }
}

/// The check every new connection to one Redis node makes first, with the keys that node
/// keeps about itself (a hash tag in its own slots): the `run_id` the deployment last saw
/// there, and the fence raised for it.
struct Hello {
    epoch: Arc<Epoch>,
    seen: Vec<u8>,
    fence: Vec<u8>,
}

impl Handshake for Hello {
    fn greet(&self, c: &mut Greeting<'_>) -> Result<(), ConnError> {
        let addr = c.addr().to_owned();
        let info = status(&addr, c.call(&[b"INFO", b"server"])?)?;
        let run = info
            .bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("run_id:")))
            .map(|r| r.trim().to_owned())
            .ok_or_else(|| ConnError::Protocol(addr.clone(), "INFO without a run_id".into()))?;
        status(
            &addr,
            c.call(&[b"FUNCTION", b"LOAD", b"REPLACE", LIBRARY.as_bytes()])?,
        )?;
        let mut runs = self.epoch.runs.lock();
        let last = runs.get(&addr).cloned();
        let changed = match last.as_deref() {
            Some(r) => r != run,
            None => {
                // This node's first connection here: compare with what the deployment saw.
                let seen = status(&addr, c.call(&[b"GET", &self.seen])?)?;
                match seen.bytes() {
                    Some(s) => s != run.as_bytes(),
                    // Nothing seen yet: in a new deployment (no directory when this node
                    // started) there is nothing to lose; otherwise the server forgot what
                    // it saw, and with it whatever else it lost.
                    None => !self.epoch.fresh.load(Ordering::Acquire),
                }
            }
        };
        if changed {
            let at = (self.epoch.clock)().to_string();
            status(
                &addr,
                c.call(&[
                    b"FCALL",
                    b"portvakt_raise",
                    b"1",
                    &self.fence,
                    at.as_bytes(),
                ])?,
            )?;
            self.epoch.changes.fetch_add(1, Ordering::Relaxed);
        }
        if changed || last.is_none() {
            status(&addr, c.call(&[b"SET", &self.seen, run.as_bytes()])?)?;
        }
        // The fence raised for this server, here or by any node before: in force here too.
        let fence = status(&addr, c.call(&[b"GET", &self.fence])?)?;
        if let Some(at) = fence.int().and_then(|t| u64::try_from(t).ok()) {
            self.epoch.raise(at);
        }
        runs.insert(addr, run);
        Ok(())
    }
}

/// A handshake that checks nothing: for the first look at the seed address.
struct Probe;

impl Handshake for Probe {
    fn greet(&self, _: &mut Greeting<'_>) -> Result<(), ConnError> {
        Ok(())
    }
}

/// One Redis primary and this node's connections to it.
struct Node {
    addr: String,
    conns: Box<[Conn]>,
}

/// The primaries and which owns each slot (one node owning all, for a single Redis).
struct Topology {
    map: cluster::SlotMap,
    nodes: Vec<Arc<Node>>,
}

/// Remembered records and their versions, so an update usually needs no read first.
struct Cache {
    map: DashMap<Vec<u8>, Versioned, ahash::RandomState>,
    cap: usize,
}

impl Cache {
    fn put(&self, key: &[u8], value: Option<Versioned>) {
        match value {
            Some(v) => {
                if self.map.len() >= self.cap {
                    // Crude but bounded: a full cache starts over (each entry is only a
                    // guess that saves a read).
                    self.map.clear();
                }
                self.map.insert(key.to_vec(), v);
            }
            None => {
                self.map.remove(key);
            }
        }
    }
}

/// What this node knows about the shared directory log.
#[derive(Default)]
struct Position {
    /// Every batch up to here is applied, or is this node's own and being applied under
    /// the log's hold: the position a new batch is made on.
    known: AtomicU64,
    /// The last batch this node appended.
    own: AtomicU64,
    /// The head a refused append found: [`ChangeLog::settle`] waits for `known` to reach it.
    wanted: AtomicU64,
    moved: (Mutex<()>, Condvar),
    /// Held by an operation from its checks until its batch is applied
    /// ([`ChangeLog::hold`]), and by the follower while it applies another node's batch:
    /// no batch of another node lands between an operation's checks and its append, and
    /// this node's own appends go one at a time, each on top of the last.
    changing: Mutex<()>,
    /// Set when this node can no longer follow the log (a batch it cannot apply, or one
    /// trimmed before it read it): every directory change is refused from then on.
    lost: Mutex<Option<String>>,
}

/// One deployment's Redis, as this node reaches it.
pub struct Redis {
    /// The primaries and this node's connections to each: calls take a node's
    /// connections in turn (a `WAIT` holds up what follows it on its connection, so the
    /// writes that wait for replicas spread over several).
    topology: parking_lot::RwLock<Arc<Topology>>,
    /// Whether the store is a Redis Cluster (whose map may change: `MOVED`).
    cluster: bool,
    next_conn: std::sync::atomic::AtomicUsize,
    /// The follower's own connection (to the node of the directory log): its blocking
    /// reads hold up no decision.
    follower: Mutex<Option<(String, Arc<Conn>)>>,
    keys: Keys,
    cache: Cache,
    epoch: Arc<Epoch>,
    next_version: AtomicU64,
    master: Arc<MasterKey>,
    options: Options,
    /// A random id, so the log's follower can tell this node's batches from the others'.
    origin: [u8; 16],
    dir: Position,
    failures: AtomicU64,
    stop: AtomicBool,
}

/// Connections a node keeps to each primary when it waits for replicas (a `WAIT` holds
/// up what follows it on its connection); without, one connection pipelines best.
const CONNECTIONS_WAITING: usize = 4;
/// Records and their versions a node keeps in memory at most.
const CACHED: usize = 1 << 20;
/// Log batches kept before the newest snapshot, for nodes still reading them.
const LOG_MARGIN: u64 = 100_000;
/// Audit events the deployment's trail keeps, about (older ones are trimmed as new ones
/// come; Redis trims in whole blocks, so a few more may stay).
pub const AUDIT_KEPT: u64 = 10_000_000;
/// How long the follower waits on the log per read.
const FOLLOW_BLOCK_MS: u64 = 1_000;

/// The key a command is about, which decides the node it goes to: `FCALL`'s first key,
/// `XREAD`'s stream, else the first argument; none for `PING` and the like.
fn key_of<'a>(args: &[&'a [u8]]) -> Option<&'a [u8]> {
    match args {
        [c, ..] if c.eq_ignore_ascii_case(b"FCALL") => args.get(3).copied(),
        [c, ..] if c.eq_ignore_ascii_case(b"XREAD") => args
            .iter()
            .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))
            .and_then(|i| args.get(i + 1).copied()),
        [c, ..] if c.eq_ignore_ascii_case(b"PING") || c.eq_ignore_ascii_case(b"INFO") => None,
        [_, key, ..] => Some(key),
        _ => None,
    }
}

fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut b = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| StoreError::new("no randomness from the system"))?;
    Ok(b)
}

fn failed(e: ConnError) -> StoreError {
    StoreError::new(e.to_string())
}

impl Redis {
    /// Reaches the store (its first connection raises the fence if the server behind it
    /// may have lost writes since the deployment last saw it). `master` seals the
    /// directory's batches and the pepper, as on disk.
    pub fn connect(
        options: Options,
        master: Arc<MasterKey>,
        clock: Clock,
    ) -> Result<Arc<Self>, StoreError> {
        let keys = Keys::new(&options.prefix);
        let epoch = Arc::new(Epoch {
            clock,
            runs: Mutex::new(std::collections::HashMap::new()),
            fence: AtomicU64::new(0),
            hook: OnceLock::new(),
            changes: AtomicU64::new(0),
            fresh: AtomicBool::new(false),
        });
        // A first look at the seed address: a cluster's map, or a single Redis.
        let probe = Conn::new(&options.addr, options.timeout, Arc::new(Probe));
        let (map, cluster) = match probe.call(&[b"CLUSTER", b"SLOTS"]).map_err(failed)? {
            Reply::Error(_) => (cluster::SlotMap::single(&options.addr), false),
            r => (
                cluster::SlotMap::from_reply(&r).map_err(StoreError::new)?,
                true,
            ),
        };
        drop(probe);
        // Whether the deployment is new, asked of the node that would hold its directory
        // before any connection is checked (the check depends on it).
        let head = map.nodes[map.node_of(&keys.head)].clone();
        let probe = Conn::new(&head, options.timeout, Arc::new(Probe));
        let exists = probe.call(&[b"EXISTS", &keys.head]).map_err(failed)?;
        epoch
            .fresh
            .store(exists.int() == Some(0), Ordering::Release);
        drop(probe);
        let topology = Self::topology(map, &[], &epoch, &options);
        let this = Arc::new(Self {
            topology: parking_lot::RwLock::new(Arc::new(topology)),
            cluster,
            next_conn: std::sync::atomic::AtomicUsize::new(0),
            follower: Mutex::new(None),
            keys,
            cache: Cache {
                map: DashMap::with_hasher(ahash::RandomState::new()),
                cap: CACHED,
            },
            epoch,
            next_version: AtomicU64::new(u64::from_le_bytes(random()?) >> 1),
            master,
            origin: random()?,
            options,
            dir: Position::default(),
            failures: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        Ok(this)
    }

    /// The nodes of `map`, keeping the connections of those already in `old`.
    fn topology(
        map: cluster::SlotMap,
        old: &[Arc<Node>],
        epoch: &Arc<Epoch>,
        options: &Options,
    ) -> Topology {
        let prefix = &options.prefix;
        let nodes = map
            .nodes
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                if let Some(n) = old.iter().find(|n| n.addr == *addr) {
                    return n.clone();
                }
                let tag = map.tag_on(i, "node");
                let hello = Arc::new(Hello {
                    epoch: epoch.clone(),
                    seen: format!("{prefix}:{tag}:seen").into_bytes(),
                    fence: format!("{prefix}:{tag}:fence").into_bytes(),
                });
                Arc::new(Node {
                    addr: addr.clone(),
                    conns: (0..if options.replicas > 0 {
                        CONNECTIONS_WAITING
                    } else {
                        1
                    })
                        .map(|_| Conn::new(addr, options.timeout, hello.clone()))
                        .collect(),
                })
            })
            .collect();
        Topology { map, nodes }
    }

    /// Reads the cluster's map again (after a `MOVED`), from any node that answers.
    fn refresh(&self) -> Result<(), StoreError> {
        let now = self.topology.read().clone();
        let mut last = StoreError::new("no cluster node answers");
        for node in &now.nodes {
            match node.conns[0].call(&[b"CLUSTER", b"SLOTS"]) {
                Ok(r @ Reply::Array(_)) => {
                    let map = cluster::SlotMap::from_reply(&r).map_err(StoreError::new)?;
                    let next = Self::topology(map, &now.nodes, &self.epoch, &self.options);
                    *self.topology.write() = Arc::new(next);
                    return Ok(());
                }
                Ok(other) => last = StoreError::new(format!("CLUSTER SLOTS: {other:?}")),
                Err(e) => last = failed(e),
            }
        }
        Err(last)
    }

    /// Tells the store how to raise this node's replay fence (its engine's), and raises it
    /// at once to the highest fence found so far: call it before the engine decides.
    /// Every new connection then raises it before anything is sent on it.
    pub fn set_fence(&self, raise: RaiseFence) {
        if self.epoch.hook.set(raise).is_ok() {
            let at = self.epoch.fence.load(Ordering::Acquire);
            if at > 0 {
                self.epoch.raise(at);
            }
        }
    }

    /// Server processes found to differ from the last one seen since start (each raised
    /// the fence).
    pub fn epoch_changes(&self) -> u64 {
        self.epoch.changes.load(Ordering::Relaxed)
    }

    /// Commands sent and bytes written since start.
    pub fn traffic(&self) -> (u64, u64) {
        let nodes = self.topology.read().nodes.clone();
        let conns = nodes.iter().flat_map(|n| n.conns.iter());
        conns.fold((0, 0), |(c, b), conn| {
            (
                c + conn.commands.load(Ordering::Relaxed),
                b + conn.sent.load(Ordering::Relaxed),
            )
        })
    }

    /// Calls that failed since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// A connection to the node that owns `key` (any node for `None`).
    fn conn(&self, key: Option<&[u8]>) -> (Arc<Node>, usize) {
        let t = self.topology.read();
        let node = key.map_or(0, |k| t.map.node_of(k));
        let i = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let node = t.nodes[node].clone();
        let i = i % node.conns.len();
        (node, i)
    }

    /// Runs `send` on a connection to `key`'s node; after a `MOVED` (a cluster whose map
    /// changed), reads the map again and sends once more: the command did nothing on the
    /// node that refused it.
    fn routed<T>(
        &self,
        key: Option<&[u8]>,
        send: impl Fn(&Conn) -> Result<T, ConnError>,
        error: impl Fn(&T) -> Option<&str>,
    ) -> Result<T, ConnError> {
        let (node, i) = self.conn(key);
        let r = send(&node.conns[i])?;
        match error(&r) {
            Some(e) if self.cluster && e.starts_with("MOVED ") => {
                if let Err(e) = self.refresh() {
                    return Err(ConnError::Down(node.addr.clone(), e.to_string()));
                }
                let (node, i) = self.conn(key);
                send(&node.conns[i])
            }
            _ => Ok(r),
        }
    }

    fn replied(&self, r: Result<Reply, ConnError>) -> Result<Reply, StoreError> {
        match r {
            Ok(Reply::Error(e)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::new(format!(
                    "redis at {}: {e}",
                    self.options.addr
                )))
            }
            Ok(r) => Ok(r),
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(failed(e))
            }
        }
    }

    fn call(&self, args: &[&[u8]]) -> Result<Reply, StoreError> {
        let r = self.routed(
            key_of(args),
            |c| c.call(args),
            |r| match r {
                Reply::Error(e) => Some(e.as_str()),
                _ => None,
            },
        );
        self.replied(r)
    }

    /// Calls `args`, a write; with replicas to wait for, `WAIT` follows it on the same
    /// connection, and a write fewer replicas acknowledged within half the timeout is an
    /// error (it is on the primary, but a failover could lose it: the decision that
    /// depended on it fails closed).
    fn write(&self, args: &[&[u8]]) -> Result<Reply, StoreError> {
        if self.options.replicas == 0 {
            return self.call(args);
        }
        let n = self.options.replicas.to_string();
        let ms = (self.options.timeout.as_millis() / 2).max(1).to_string();
        let wait: [&[u8]; 3] = [b"WAIT", n.as_bytes(), ms.as_bytes()];
        let r = self.routed(
            key_of(args),
            |c| c.call_two(args, &wait),
            |(r, _)| match r {
                Reply::Error(e) => Some(e.as_str()),
                _ => None,
            },
        );
        let (reply, acked) = match r {
            Ok(r) => r,
            Err(e) => return self.replied(Err(e)),
        };
        let reply = self.replied(Ok(reply))?;
        match self.replied(Ok(acked))?.int() {
            Some(k) if k >= i64::from(self.options.replicas) => Ok(reply),
            k => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::new(format!(
                    "redis at {}: the write reached {} of {} replicas in time",
                    self.options.addr,
                    k.unwrap_or(0),
                    self.options.replicas
                )))
            }
        }
    }

    /// Checks every node of the store answers (and so has been checked for a new
    /// process, and has the functions).
    pub fn ping(&self) -> Result<(), StoreError> {
        let nodes = self.topology.read().nodes.clone();
        for node in nodes {
            self.replied(node.conns[0].call(&[b"PING"]))?;
        }
        Ok(())
    }

    /// The deployment's pepper: the one in the store, or `made` if the store has none yet
    /// (the first node puts it there). Sealed with the master key in the store, so every
    /// node needs the same master key.
    pub fn pepper(&self, made: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let sealed = self
            .master
            .seal(Purpose::Pepper, &made)
            .map_err(|e| StoreError::new(format!("sealing the pepper: {e}")))?;
        self.call(&[b"SET", &self.keys.pepper, &sealed, b"NX"])?;
        let kept = self.call(&[b"GET", &self.keys.pepper])?;
        let kept = kept
            .bytes()
            .ok_or_else(|| StoreError::new("the store lost the pepper it just kept"))?;
        let plain = self.master.open(Purpose::Pepper, kept).map_err(|e| {
            StoreError::new(format!(
                "the store's pepper {e} (is this node's master key the deployment's?)"
            ))
        })?;
        plain
            .try_into()
            .map_err(|_| StoreError::new("the store's pepper is not 32 bytes"))
    }

    /// Appends an audit event (its bytes, `audit::Event::encode`) to the deployment's
    /// audit trail, a Redis stream every node appends to; the oldest go past
    /// [`AUDIT_KEPT`] events.
    pub fn append_audit(&self, event: &[u8]) -> Result<(), StoreError> {
        let kept = AUDIT_KEPT.to_string();
        self.call(&[
            b"XADD",
            &self.keys.audit,
            b"MAXLEN",
            b"~",
            kept.as_bytes(),
            b"*",
            b"e",
            event,
        ])
        .map(|_| ())
    }

    /// Calls `f` with each audit event, oldest first, until it returns false.
    pub fn read_audit(&self, f: &mut dyn FnMut(&[u8]) -> bool) -> Result<(), StoreError> {
        let mut from = b"-".to_vec();
        loop {
            let r = self.call(&[b"XRANGE", &self.keys.audit, &from, b"+", b"COUNT", b"1000"])?;
            let bad = || StoreError::new("reading the audit trail: unexpected reply");
            let entries = r.items().ok_or_else(bad)?;
            for e in entries {
                let [id, fields] = e.items().ok_or_else(bad)? else {
                    return Err(bad());
                };
                let body = match fields.items().ok_or_else(bad)? {
                    [k, v] if k.bytes() == Some(b"e") => v.bytes().ok_or_else(bad)?,
                    _ => return Err(bad()),
                };
                if !f(body) {
                    return Ok(());
                }
                // The next read starts after this entry (an exclusive range).
                from = [b"(".as_slice(), id.bytes().ok_or_else(bad)?].concat();
            }
            if entries.len() < 1000 {
                return Ok(());
            }
        }
    }

    fn version(&self) -> u64 {
        self.next_version.fetch_add(1, Ordering::Relaxed)
    }
}

fn versioned(key: &[u8], r: &Reply) -> Result<Option<Versioned>, StoreError> {
    let bad = || StoreError::new(format!("record {key:02x?}: not a version and bytes"));
    let items = r.items().ok_or_else(bad)?;
    match items {
        [] => Ok(None),
        [Reply::Bulk(None), ..] => Ok(None),
        [v, b] => Ok(Some(Versioned {
            version: v
                .int()
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(bad)?,
            bytes: b.bytes().ok_or_else(bad)?.to_vec(),
        })),
        _ => Err(bad()),
    }
}

impl VersionedRecords for Arc<Redis> {
    fn load(&self, key: &[u8]) -> Result<Option<Versioned>, StoreError> {
        let k = self.keys.record(key);
        let r = self.call(&[b"HMGET", &k, b"v", b"b"])?;
        let v = versioned(key, &r)?;
        self.cache.put(key, v.clone());
        Ok(v)
    }

    fn load_for_update(&self, key: &[u8]) -> Result<(Option<Versioned>, bool), StoreError> {
        match self.cache.map.get(key) {
            Some(v) => Ok((Some(v.clone()), true)),
            None => self.load(key).map(|v| (v, false)),
        }
    }

    fn swap(
        &self,
        key: &[u8],
        expected: Option<u64>,
        value: Option<&[u8]>,
        keep: Option<Duration>,
    ) -> Result<Result<(), Option<Versioned>>, StoreError> {
        let k = self.keys.record(key);
        let expected = expected.map(|v| v.to_string()).unwrap_or_default();
        let version = self.version();
        let new = if value.is_some() {
            version.to_string()
        } else {
            String::new()
        };
        let ttl = keep.map_or(0, |d| d.as_millis().max(1)).to_string();
        let r = self.write(&[
            b"FCALL",
            b"portvakt_swap",
            b"1",
            &k,
            expected.as_bytes(),
            new.as_bytes(),
            value.unwrap_or_default(),
            ttl.as_bytes(),
        ]);
        match r {
            Ok(Reply::Int(1)) => {
                self.cache.put(
                    key,
                    value.map(|b| Versioned {
                        version,
                        bytes: b.to_vec(),
                    }),
                );
                Ok(Ok(()))
            }
            Ok(r @ Reply::Array(_)) => {
                let now = versioned(key, &r)?;
                self.cache.put(key, now.clone());
                Ok(Err(now))
            }
            Ok(other) => Err(StoreError::new(format!(
                "record {key:02x?}: unexpected reply {other:?}"
            ))),
            Err(e) => {
                // The swap may or may not have happened: forget what was cached.
                self.cache.put(key, None);
                Err(e)
            }
        }
    }

    fn scan(&self, prefix: u8, f: &mut dyn FnMut(&[u8])) -> Result<(), StoreError> {
        let pattern = format!("{}:r:{{{prefix:02x}*", self.keys.prefix);
        let nodes = self.topology.read().nodes.clone();
        let bad = || StoreError::new("SCAN: unexpected reply");
        for node in nodes {
            let mut cursor = b"0".to_vec();
            loop {
                let r = self.replied(node.conns[0].call(&[
                    b"SCAN",
                    &cursor,
                    b"MATCH",
                    pattern.as_bytes(),
                    b"COUNT",
                    b"1000",
                ]))?;
                let [next, keys] = r.items().ok_or_else(bad)? else {
                    return Err(bad());
                };
                for k in keys.items().ok_or_else(bad)? {
                    let k = k.bytes().ok_or_else(bad)?;
                    if let Some(b) = self.call(&[b"HGET", k, b"b"])?.bytes() {
                        f(b);
                    }
                }
                cursor = next.bytes().ok_or_else(bad)?.to_vec();
                if cursor == b"0" {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The directory's change log in the store, for [`Engine::with_change_log`].
///
/// [`Engine::with_change_log`]: portvakt_core::Engine::with_change_log
pub struct SharedLog(pub Arc<Redis>);

impl ChangeLog for SharedLog {
    fn append(&self, changes: &[Change]) -> Result<(), StoreError> {
        let r = &self.0;
        if let Some(why) = &*r.dir.lost.lock() {
            return Err(StoreError::new(format!(
                "this node no longer follows the shared directory ({why}); restart it"
            )));
        }
        let mut plain = Vec::new();
        Change::encode_batch(changes, &mut plain);
        let sealed = r
            .master
            .seal(Purpose::Changes, &plain)
            .map_err(|e| StoreError::new(format!("sealing directory changes: {e}")))?;
        // The engine appends under the log's hold (`hold`, taken before its checks), so no
        // other append of this node and no other node's batch moves `known` meanwhile.
        let at_known = r.dir.known.load(Ordering::Acquire);
        let known = at_known.to_string();
        // Not a `write`: a batch appended but not confirmed by the replicas could not be
        // taken back, and this node must apply what it appended. A batch a failover loses
        // is caught instead (`check_head`).
        let reply = r.call(&[
            b"FCALL",
            b"portvakt_append",
            b"2",
            &r.keys.head,
            &r.keys.log,
            known.as_bytes(),
            &r.origin,
            &sealed,
        ])?;
        let bad = || StoreError::new(format!("directory append: unexpected reply {reply:?}"));
        let (ok, at) = match reply.items() {
            Some([ok, at]) => (ok.int().ok_or_else(bad)?, at.int().ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        let at = u64::try_from(at).map_err(|_| bad())?;
        if ok == 1 {
            r.dir.known.fetch_max(at, Ordering::AcqRel);
            r.dir.own.fetch_max(at, Ordering::AcqRel);
            Ok(())
        } else {
            r.check_head(at, at_known)?;
            r.dir.wanted.fetch_max(at, Ordering::AcqRel);
            Err(StoreError::conflict(format!(
                "another node changed the directory first (log at {at}, this node at {known})"
            )))
        }
    }

    fn hold(&self) -> Option<parking_lot::MutexGuard<'_, ()>> {
        Some(self.0.dir.changing.lock())
    }

    fn settle(&self) -> bool {
        let dir = &self.0.dir;
        let deadline = monotonic() + Duration::from_secs(2);
        let mut g = dir.moved.0.lock();
        while dir.known.load(Ordering::Acquire) < dir.wanted.load(Ordering::Acquire) {
            if dir.lost.lock().is_some() || dir.moved.1.wait_until(&mut g, deadline).timed_out() {
                return dir.known.load(Ordering::Acquire) >= dir.wanted.load(Ordering::Acquire);
            }
        }
        true
    }
}

/// What loading the directory found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The snapshot's position (0: none).
    pub snapshot: u64,
    /// Batches applied from the log after it.
    pub batches: u64,
}

impl Redis {
    fn open_batch(&self, sealed: &[u8]) -> Result<Vec<Change>, StoreError> {
        let plain = self
            .master
            .open(Purpose::Changes, sealed)
            .map_err(|e| StoreError::new(format!("a directory batch {e}")))?;
        Change::decode_batch(&plain).map_err(|e| StoreError::new(format!("a directory batch: {e}")))
    }

    /// Loads the whole directory into `engine` (the snapshot, then the log after it) and
    /// marks where this node is; call once, before [`follow`](Self::follow).
    pub fn load_directory<S: StateStore>(
        &self,
        engine: &portvakt_core::Engine<S>,
    ) -> Result<Loaded, StoreError> {
        let snap = self.call(&[b"HMGET", &self.keys.snapshot, b"p", b"b"])?;
        let mut loaded = Loaded::default();
        if let Some([p, b]) = snap.items()
            && let (Some(p), Some(b)) = (p.int(), b.bytes())
        {
            let p = u64::try_from(p).map_err(|_| StoreError::new("a snapshot position below 0"))?;
            let changes = self.open_batch(b)?;
            engine.apply_changes_at(p, &changes).map_err(|e| {
                StoreError::new(format!("the directory snapshot does not apply: {e}"))
            })?;
            loaded.snapshot = p;
        }
        let mut at = loaded.snapshot;
        self.dir.known.store(at, Ordering::Release);
        loop {
            let n = self.read_log(engine, at, false)?;
            if n == at {
                break;
            }
            loaded.batches += n - at;
            at = n;
        }
        Ok(loaded)
    }

    /// Reads and applies the log's batches after `at` (waiting up to a second for one if
    /// `wait`); returns the position reached.
    fn read_log<S: StateStore>(
        &self,
        engine: &portvakt_core::Engine<S>,
        at: u64,
        wait: bool,
    ) -> Result<u64, StoreError> {
        let from = format!("{at}-0");
        let block = FOLLOW_BLOCK_MS.to_string();
        let mut args: Vec<&[u8]> = vec![b"XREAD", b"COUNT", b"1000"];
        if wait {
            args.extend([b"BLOCK".as_slice(), block.as_bytes()]);
        }
        args.extend([b"STREAMS".as_slice(), &self.keys.log, from.as_bytes()]);
        let reply = if wait {
            match self.follower_conn().call(&args) {
                Ok(Reply::Error(e)) => {
                    if self.cluster && e.starts_with("MOVED ") {
                        self.refresh()?;
                    }
                    return Err(StoreError::new(e));
                }
                r => r.map_err(failed)?,
            }
        } else {
            self.call(&args)?
        };
        let bad = || StoreError::new("reading the directory log: unexpected reply");
        let entries = match reply.items().ok_or_else(bad)? {
            [] => return Ok(at),
            [stream] => match stream.items().ok_or_else(bad)? {
                [_, entries] => entries.items().ok_or_else(bad)?.to_vec(),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        let mut at = at;
        for e in entries {
            let [id, fields] = e.items().ok_or_else(bad)? else {
                return Err(bad());
            };
            let id = id.bytes().ok_or_else(bad)?;
            let seq: u64 = std::str::from_utf8(id)
                .ok()
                .and_then(|s| s.strip_suffix("-0"))
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            if seq != at + 1 {
                return Err(self.lose(format!(
                    "the log's batch {} was trimmed before this node read it (next is {seq})",
                    at + 1
                )));
            }
            let (mut origin, mut body) = (None, None);
            for pair in fields.items().ok_or_else(bad)?.chunks(2) {
                match pair {
                    [k, v] if k.bytes() == Some(b"o") => origin = v.bytes(),
                    [k, v] if k.bytes() == Some(b"b") => body = v.bytes(),
                    _ => {}
                }
            }
            let body = body.ok_or_else(bad)?;
            // Between operations of this node, never inside one (see `changing`).
            let _changing = self.dir.changing.lock();
            if origin != Some(self.origin.as_slice()) {
                let changes = self
                    .open_batch(body)
                    .map_err(|e| self.lose(e.to_string()))?;
                engine
                    .apply_changes_at(seq, &changes)
                    .map_err(|e| self.lose(format!("batch {seq} does not apply: {e}")))?;
            }
            at = seq;
            self.dir.known.fetch_max(seq, Ordering::AcqRel);
            let _g = self.dir.moved.0.lock();
            self.dir.moved.1.notify_all();
        }
        Ok(at)
    }

    fn lose(&self, why: String) -> StoreError {
        *self.dir.lost.lock() = Some(why.clone());
        self.dir.moved.1.notify_all();
        StoreError::new(why)
    }

    /// The position of the directory log's last batch.
    pub fn log_head(&self) -> Result<u64, StoreError> {
        let r = self.call(&[b"GET", &self.keys.head])?;
        Ok(r.int().and_then(|i| u64::try_from(i).ok()).unwrap_or(0))
    }

    /// How far this node has followed the directory log: every batch up to here is in
    /// its directory (or is its own, being applied).
    pub fn followed(&self) -> u64 {
        self.dir.known.load(Ordering::Acquire)
    }

    /// The follower's connection, to the node that owns the directory log now.
    fn follower_conn(&self) -> Arc<Conn> {
        let (node, _) = self.conn(Some(&self.keys.log));
        let mut f = self.follower.lock();
        match &*f {
            Some((addr, c)) if *addr == node.addr => c.clone(),
            _ => {
                let hello = node.conns[0].handshake();
                let c = Arc::new(Conn::new(
                    &node.addr,
                    self.options.timeout + Duration::from_millis(FOLLOW_BLOCK_MS),
                    hello,
                ));
                *f = Some((node.addr.clone(), c.clone()));
                c
            }
        }
    }

    /// Checks the directory log's `head` against `known`, what this node had applied
    /// ([`followed`](Self::followed)) before the head was read: a log that ends before
    /// that lost batches it had acknowledged (Redis restarted or failed over without
    /// them), and this node's directory no longer matches any node that starts from the
    /// log, so it stops taking directory changes (and says why).
    pub fn check_head(&self, head: u64, known: u64) -> Result<(), StoreError> {
        if head < known {
            return Err(self.lose(format!(
                "the directory log ends at batch {head} but this node applied {known}: the store lost acknowledged directory changes"
            )));
        }
        Ok(())
    }

    /// Why this node stopped following the directory log, if it did.
    pub fn lost(&self) -> Option<String> {
        self.dir.lost.lock().clone()
    }

    /// Follows the log from where [`load_directory`](Self::load_directory) left it, on a
    /// thread of its own, applying other nodes' batches as they come; `said` hears of
    /// each error (the store unreachable, say) once per run of them.
    pub fn follow<S: StateStore + 'static>(
        self: &Arc<Self>,
        engine: Arc<portvakt_core::Engine<S>>,
        said: impl Fn(&str) + Send + 'static,
    ) -> std::io::Result<()> {
        let this = self.clone();
        std::thread::Builder::new()
            .name("directory-follower".into())
            .spawn(move || {
                let mut at = this.dir.known.load(Ordering::Acquire);
                let mut failing = false;
                while !this.stop.load(Ordering::Acquire) && this.lost().is_none() {
                    match this.read_log(&engine, at, true) {
                        Ok(n) => {
                            at = n;
                            failing = false;
                        }
                        Err(e) => {
                            if !failing {
                                said(&e.to_string());
                            }
                            failing = true;
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map(|_| ())
    }

    /// Stops the follower (at its next read).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Keeps a snapshot of `engine`'s directory in the store and trims the log it covers
    /// (less a margin); returns its position.
    pub fn snapshot_directory<S: StateStore>(
        &self,
        engine: &portvakt_core::Engine<S>,
    ) -> Result<u64, StoreError> {
        let mut at = 0;
        let mut plain = Vec::new();
        let mut changes = Vec::new();
        engine
            .snapshot_each::<std::convert::Infallible>(
                || {
                    // Under the snapshot's gate nothing is being applied: everything up to
                    // here is in the directory.
                    at = engine
                        .directory_position()
                        .max(self.dir.own.load(Ordering::Acquire));
                    Ok(())
                },
                |batch| changes.extend_from_slice(batch),
            )
            .map_err(|e| match e {})?;
        Change::encode_batch(&changes, &mut plain);
        let sealed = self
            .master
            .seal(Purpose::Changes, &plain)
            .map_err(|e| StoreError::new(format!("sealing the directory: {e}")))?;
        let (p, keep) = (
            at.to_string(),
            at.saturating_sub(LOG_MARGIN).max(1).to_string(),
        );
        self.call(&[
            b"FCALL",
            b"portvakt_snapshot",
            b"2",
            &self.keys.snapshot,
            &self.keys.log,
            p.as_bytes(),
            &sealed,
            keep.as_bytes(),
        ])?;
        Ok(at)
    }
}

pub mod local {
    //! A `redis-server` of its own on a free loopback port, for tests and benchmarks.
    //!
    //! [`Local::start`] gives `None` when `redis-server` is not installed, unless
    //! `PORTVAKT_REQUIRE_REDIS` is set (as `.ci/run` sets it): then a missing server is a
    //! failure, so the shared-store tests cannot pass by not running.

    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    /// A running (or stopped) server; killed when dropped, and when this process ends
    /// however it ends (the server runs under a shell that kills it with `SIGKILL` when its
    /// standard input, held here, closes), so a test never leaves one behind.
    pub struct Local {
        child: Option<Child>,
        port: u16,
        dir: PathBuf,
        args: Vec<String>,
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0)
    }

    impl Local {
        /// Starts a server keeping its files in `dir`, with its append-only file synced
        /// every second (Redis's `everysec`, the usual production setting), plus `extra`
        /// arguments.
        pub fn start(dir: &Path, extra: &[&str]) -> Option<Self> {
            let found = Command::new("redis-server")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok();
            if !found {
                assert!(
                    std::env::var_os("PORTVAKT_REQUIRE_REDIS").is_none(),
                    "PORTVAKT_REQUIRE_REDIS is set but redis-server is not installed"
                );
                eprintln!("redis-server is not installed: shared-store tests skipped");
                return None;
            }
            let mut args: Vec<String> = [
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--protected-mode",
                "yes",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            args.extend(extra.iter().map(|s| (*s).to_owned()));
            let mut this = Self {
                child: None,
                port: free_port(),
                dir: dir.to_owned(),
                args,
            };
            this.restart();
            Some(this)
        }

        /// `host:port`.
        pub fn addr(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        /// `redis://host:port/prefix`.
        pub fn url(&self, prefix: &str) -> String {
            format!("redis://{}/{prefix}", self.addr())
        }

        /// Kills the server at once (`SIGKILL`: nothing more is written).
        pub fn kill(&mut self) {
            if let Some(mut c) = self.child.take() {
                drop(c.stdin.take());
                let _ = c.wait();
            }
        }

        /// Starts the server again on the same port and files (after [`kill`](Self::kill)),
        /// and waits until it answers.
        pub fn restart(&mut self) {
            self.kill();
            std::fs::create_dir_all(&self.dir).expect("the server's directory");
            let log = std::fs::File::create(self.dir.join("redis.log")).expect("a log file");
            let child = Command::new("sh")
                .arg("-c")
                .arg(r#"redis-server "$@" & server=$!; read _; kill -9 $server; wait $server"#)
                .arg("redis-server")
                .arg("--port")
                .arg(self.port.to_string())
                .arg("--dir")
                .arg(&self.dir)
                .args(&self.args)
                .stdin(Stdio::piped())
                .stdout(log)
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            self.child = Some(child);
            for _ in 0..500 {
                if std::net::TcpStream::connect(self.addr()).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("redis-server on port {} did not start", self.port);
        }
    }

    impl Drop for Local {
        fn drop(&mut self) {
            self.kill();
        }
    }

    /// A Redis Cluster of `redis-server`s of its own (primaries only), made with
    /// `redis-cli --cluster create`; stopped like [`Local`].
    pub struct LocalCluster {
        nodes: Vec<Local>,
    }

    impl LocalCluster {
        /// Starts `n` servers in directories under `dir`, joins them into one cluster with
        /// the slots split evenly, and waits until it serves (`None` as for [`Local`]).
        pub fn start(dir: &Path, n: usize) -> Option<Self> {
            let mut nodes = Vec::new();
            for i in 0..n {
                // The bus port is given: its default, the port plus 10,000, is past 65,535
                // for a fifth of the ports the system hands out.
                let bus = free_port().to_string();
                let flags = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-port",
                    &bus,
                ];
                nodes.push(Local::start(&dir.join(format!("node-{i}")), &flags)?);
            }
            let made = Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(nodes.iter().map(Local::addr))
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
                .expect("redis-cli runs");
            assert!(
                made.status.success(),
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&made.stdout)
            );
            for node in &nodes {
                let port = node.port.to_string();
                let ok = (0..500).any(|_| {
                    let info = Command::new("redis-cli")
                        .args(["-p", &port, "cluster", "info"])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                    let ready = info.contains("cluster_state:ok")
                        && info.contains(&format!("cluster_known_nodes:{n}"));
                    if !ready {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    ready
                });
                assert!(ok, "the cluster did not come up on port {port}");
            }
            Some(Self { nodes })
        }

        /// One node's `host:port` (any node leads to the others).
        pub fn addr(&self) -> String {
            self.nodes[0].addr()
        }

        /// Every node's `host:port`.
        pub fn addrs(&self) -> Vec<String> {
            self.nodes.iter().map(Local::addr).collect()
        }
    }
}
