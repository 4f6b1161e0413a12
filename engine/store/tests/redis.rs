//! The shared store passes the contract against a real `redis-server`, and keeps its
//! promises across nodes: one directory, one replay state, and the fence after a restart
//! that may have lost writes. Each test's nodes are engines in this process, each with its
//! own connection, as separate processes would have.

mod contract;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};

use contract::{T0, code, secret_for};
use portvakt_core::directory::change::ChangeLog;
use portvakt_core::otp::{Algorithm, OtpKey};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{Engine, Outcome, Proof, Reason, Request, Timestamp, config};
use portvakt_store::cas::CasStore;
use portvakt_store::redis::local::Local;
use portvakt_store::redis::{Options, Redis, RedisStore, SharedLog, record_key};
use portvakt_store::sealed::MasterKey;

/// One server for the whole binary; each store gets a prefix of its own.
fn server() -> Option<&'static Local> {
    static SERVER: OnceLock<Option<Local>> = OnceLock::new();
    SERVER
        .get_or_init(|| Local::start(&scratch("shared"), &[]))
        .as_ref()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portvakt-redis-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

fn fresh_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn master() -> Arc<MasterKey> {
    Arc::new(MasterKey::new(&[9; 32]))
}

fn connect(addr: &str, prefix: &str) -> Arc<Redis> {
    connect_to(&format!("redis://{addr}/{prefix}?timeout_ms=2000"))
}

fn connect_to(url: &str) -> Arc<Redis> {
    Redis::connect(
        Options::from_url(url).expect("a valid url"),
        master(),
        Box::new(|| (T0 + 60) * 1000),
    )
    .expect("connects")
}

fn store() -> RedisStore {
    let s = server().expect("checked by the test");
    CasStore::new(connect(&s.addr(), &fresh_prefix()))
}

contract_tests!(store(), if server().is_some());

/// The tests of several nodes, each made a test (`name => body`) against the server
/// `$server` gives (`None`: not installed here).
macro_rules! across_nodes {
    ($server:expr, $($name:ident => $body:path),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                if let Some(addr) = $server {
                    $body(&addr);
                }
            }
        )*
    };
}

across_nodes!(
    server().map(Local::addr),
    a_change_made_on_one_node_is_used_on_the_other_and_by_a_node_started_later =>
        a_change_made_on_one_node_is_used_on_the_other_and_by_a_node_started_later_on,
    the_same_code_through_two_nodes_is_allowed_once_every_round =>
        the_same_code_through_two_nodes_is_allowed_once_every_round_on,
    guesses_split_over_two_nodes_lock_once_for_both =>
        guesses_split_over_two_nodes_lock_once_for_both_on,
    a_lock_made_through_one_node_holds_on_another_that_remembered_the_record_unlocked =>
        a_lock_made_through_one_node_holds_on_another_that_remembered_the_record_unlocked_on,
    a_nodes_own_changes_from_many_threads_never_conflict_with_each_other =>
        a_nodes_own_changes_from_many_threads_never_conflict_with_each_other_on,
    a_code_sent_through_one_node_and_a_device_remembered_there_work_through_the_other =>
        a_code_sent_through_one_node_and_a_device_remembered_there_work_through_the_other_on,
);

/// The same contract and the same tests of several nodes against a Redis Cluster of
/// three primaries: every record, the directory and the fence routed to their slots'
/// nodes by the same code.
mod on_a_cluster {
    use super::*;
    use portvakt_store::redis::local::LocalCluster;

    fn cluster() -> Option<&'static LocalCluster> {
        static CLUSTER: OnceLock<Option<LocalCluster>> = OnceLock::new();
        CLUSTER
            .get_or_init(|| LocalCluster::start(&scratch("cluster"), 3))
            .as_ref()
    }

    fn store() -> RedisStore {
        let c = cluster().expect("checked by the test");
        CasStore::new(connect(&c.addr(), &fresh_prefix()))
    }

    contract_tests!(store(), if cluster().is_some());

    across_nodes!(
        cluster().map(LocalCluster::addr),
        a_change_made_on_one_node_is_used_on_the_other_and_by_a_node_started_later =>
            super::a_change_made_on_one_node_is_used_on_the_other_and_by_a_node_started_later_on,
        the_same_code_through_two_nodes_is_allowed_once_every_round =>
            super::the_same_code_through_two_nodes_is_allowed_once_every_round_on,
        guesses_split_over_two_nodes_lock_once_for_both =>
            super::guesses_split_over_two_nodes_lock_once_for_both_on,
        a_lock_made_through_one_node_holds_on_another_that_remembered_the_record_unlocked =>
            super::a_lock_made_through_one_node_holds_on_another_that_remembered_the_record_unlocked_on,
        a_nodes_own_changes_from_many_threads_never_conflict_with_each_other =>
            super::a_nodes_own_changes_from_many_threads_never_conflict_with_each_other_on,
        a_code_sent_through_one_node_and_a_device_remembered_there_work_through_the_other =>
            super::a_code_sent_through_one_node_and_a_device_remembered_there_work_through_the_other_on,
    );

    #[test]
    fn the_keys_are_spread_over_every_primary() {
        let Some(c) = cluster() else { return };
        let prefix = fresh_prefix();
        let node = Node::start(&c.addr(), &prefix);
        for i in 0..30 {
            enrol(&node, &format!("spread{i}"));
        }
        // Each primary holds some of this deployment's records.
        let mut holding = 0;
        for n in &c.addrs() {
            let keys = raw(n, &[b"KEYS", format!("{prefix}:r:*").as_bytes()]);
            if keys.items().is_some_and(|k| !k.is_empty()) {
                holding += 1;
            }
        }
        assert_eq!(holding, 3);
    }
}
const KOMMUNE: &str = include_str!("../../../examples/kommune.toml");

/// A node: an engine on the shared store, following the shared directory.
struct Node {
    engine: Arc<Engine<RedisStore>>,
    redis: Arc<Redis>,
}

impl Node {
    fn start(addr: &str, prefix: &str) -> Self {
        Self::on(connect(addr, prefix))
    }

    fn on(redis: Arc<Redis>) -> Self {
        let engine = Engine::new(
            config::load(KOMMUNE).expect("policy compiles"),
            CasStore::new(redis.clone()),
            Pepper::new([42; 32]),
            Box::new(SeededEntropy::new(rand_seed())),
        )
        .with_change_log(Box::new(SharedLog(redis.clone())));
        let engine = Arc::new(engine);
        let fence = engine.clone();
        redis.set_fence(Box::new(move |ms| {
            fence.raise_fence(Timestamp::from_millis(ms));
        }));
        redis.load_directory(&engine).expect("the directory loads");
        redis
            .follow(engine.clone(), |e| eprintln!("follower: {e}"))
            .expect("a follower thread");
        Self { engine, redis }
    }

    /// Waits until this node has applied everything in the log (bounded).
    fn caught_up(&self) {
        let head = self.redis.log_head().expect("the log's head");
        for _ in 0..500 {
            if self.redis.followed() >= head {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the node did not catch up with the log");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.redis.stop();
    }
}

fn rand_seed() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

fn enrol(node: &Node, user: &str) -> OtpKey {
    contract::user(&node.engine, user)
}

fn attempt<'a>(user: &'a str, code: &'a str) -> Request<'a> {
    contract::req(user, Some(Proof::Totp(code)))
}

fn a_change_made_on_one_node_is_used_on_the_other_and_by_a_node_started_later_on(addr: &str) {
    let prefix = fresh_prefix();
    let (a, b) = (Node::start(addr, &prefix), Node::start(addr, &prefix));
    let key = enrol(&a, "kari");
    b.caught_up();
    let now = Timestamp::from_secs(T0 + 60);
    let c = code(&key, now.as_secs());
    let d = b.engine.decide(&attempt("kari", &c), now);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    // The code B accepted is spent for A too.
    let d = a.engine.decide(&attempt("kari", &c), now);
    assert_eq!(d.reason, Reason::ReplayedCode, "{d:?}");
    // Both nodes change the directory at once: every change lands, none twice.
    let barrier = Arc::new(Barrier::new(2));
    std::thread::scope(|scope| {
        for (n, node) in [&a, &b].into_iter().enumerate() {
            let barrier = barrier.clone();
            scope.spawn(move || {
                barrier.wait();
                for i in 0..25 {
                    let user = format!("user-{n}-{i}");
                    let mut tries = 0;
                    loop {
                        match node.engine.add_user("kommune", &user, &["staff"], false) {
                            Ok(_) => break,
                            Err(portvakt_core::directory::DirectoryError::Store(e))
                                if e.is_conflict() && tries < 50 =>
                            {
                                tries += 1;
                                assert!(SharedLog(node.redis.clone()).settle());
                            }
                            Err(e) => panic!("{user}: {e}"),
                        }
                    }
                }
            });
        }
    });
    a.caught_up();
    b.caught_up();
    // Neither follower met a batch that did not apply (a user or an id given out twice).
    assert_eq!((a.redis.lost(), b.redis.lost()), (None, None));
    assert_eq!(a.engine.directory().len(), 51);
    assert_eq!(b.engine.directory().len(), 51);
    // Every user has the same id on both nodes.
    for n in 0..2 {
        for i in 0..25 {
            let user = format!("user-{n}-{i}");
            let ia = a.engine.user_info("kommune", &user).expect("on a").id;
            let ib = b.engine.user_info("kommune", &user).expect("on b").id;
            assert_eq!(ia, ib, "{user}");
        }
    }
    // A node started now loads the same directory; with a snapshot, from it.
    let at = a.redis.snapshot_directory(&a.engine).expect("a snapshot");
    assert!(at >= 52, "{at}");
    enrol(&b, "ola");
    let c2 = Node::start(addr, &prefix);
    assert_eq!(c2.engine.directory().len(), 52);
    let later = Timestamp::from_secs(T0 + 90);
    let ola = OtpKey::new(Algorithm::Sha1, &secret_for("ola"));
    let d = c2
        .engine
        .decide(&attempt("ola", &code(&ola, later.as_secs())), later);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
}

fn the_same_code_through_two_nodes_is_allowed_once_every_round_on(addr: &str) {
    let prefix = fresh_prefix();
    let (a, b) = (Node::start(addr, &prefix), Node::start(addr, &prefix));
    for round in 0..20u64 {
        let name = format!("racer{round}");
        let key = enrol(&a, &name);
        b.caught_up();
        let now = Timestamp::from_secs(T0 + 60);
        let c = code(&key, now.as_secs());
        let barrier = Barrier::new(64);
        let allowed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..64)
                .map(|i| {
                    let node = if i % 2 == 0 { &a } else { &b };
                    let (barrier, name, c) = (&barrier, &name, &c);
                    scope.spawn(move || {
                        barrier.wait();
                        node.engine.decide(&attempt(name, c), now).outcome
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a decision"))
                .filter(|o| *o == Outcome::Allow)
                .count()
        });
        assert_eq!(allowed, 1, "round {round}");
    }
}

fn guesses_split_over_two_nodes_lock_once_for_both_on(addr: &str) {
    let prefix = fresh_prefix();
    let (a, b) = (Node::start(addr, &prefix), Node::start(addr, &prefix));
    let key = enrol(&a, "victim");
    b.caught_up();
    let now = Timestamp::from_secs(T0 + 60);
    let right = code(&key, now.as_secs());
    // 64 distinct wrong codes at once, half through each node.
    let barrier = Barrier::new(64);
    let reasons: Vec<Reason> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..64u32)
            .map(|i| {
                let node = if i % 2 == 0 { &a } else { &b };
                let barrier = &barrier;
                let right = &right;
                scope.spawn(move || {
                    let mut wrong = format!("{:06}", 100_000 + i * 7919 % 900_000);
                    if &wrong == right {
                        wrong = format!("{:06}", 999_999 - i);
                    }
                    barrier.wait();
                    node.engine.decide(&attempt("victim", &wrong), now).reason
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a decision"))
            .collect()
    });
    // The municipality's threshold is ten: nine are evaluated and answered invalid, the
    // tenth locks, and every later guess is refused unevaluated, whichever node it reached.
    let invalid = reasons
        .iter()
        .filter(|r| **r == Reason::InvalidCode)
        .count();
    let locked = reasons
        .iter()
        .filter(|r| **r == Reason::TooManyFailures)
        .count();
    assert_eq!((invalid, locked), (9, 55), "{reasons:?}");
    // Locked through A's and B's guesses: the right code is refused through either.
    for node in [&a, &b] {
        let d = node.engine.decide(&attempt("victim", &right), now);
        assert_eq!(d.outcome, Outcome::Locked, "{d:?}");
    }
}

fn a_code_sent_through_one_node_and_a_device_remembered_there_work_through_the_other_on(
    addr: &str,
) {
    let prefix = fresh_prefix();
    let (a, b) = (Node::start(addr, &prefix), Node::start(addr, &prefix));
    let key = enrol(&a, "kari");
    b.caught_up();
    let now = Timestamp::from_secs(T0 + 60);
    // A code sent by text through A is redeemed through B, once.
    let send = portvakt_core::SendRequest {
        tenant: "kommune",
        user: "kari",
        ip: "203.0.113.9".parse().expect("an address"),
        purpose: portvakt_core::Purpose::SignIn,
        method: None,
    };
    let sent = a.engine.send_code(&send, now);
    let id = sent.challenge.expect("a challenge").to_hex();
    let code_sent = sent.delivery.expect("a delivery").code.expose().to_owned();
    let proof = || Proof::Sent {
        challenge: &id,
        code: &code_sent,
    };
    let d = b.engine.decide(&contract::req("kari", Some(proof())), now);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    let d = a.engine.decide(&contract::req("kari", Some(proof())), now);
    assert_eq!(d.outcome, Outcome::Deny, "spent: {d:?}");
    // A device remembered on a sign-in through A stands in for the code through B.
    let later = Timestamp::from_secs(T0 + 90);
    let c = code(&key, later.as_secs());
    let remember = portvakt_core::Request {
        remember_device: true,
        ..attempt("kari", &c)
    };
    let d = a.engine.decide(&remember, later);
    let token = d.device_token.expect("remembered").token;
    b.caught_up();
    let with_token = portvakt_core::Request {
        device_token: Some(token.expose()),
        ..contract::req("kari", None)
    };
    let d = b.engine.decide(&with_token, later);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Allow, Reason::TrustedDevice),
        "{d:?}"
    );
}

/// A node on a server of its own, which the test kills.
fn own_server(name: &str) -> Option<Local> {
    server()?;
    Local::start(&scratch(name), &[])
}

#[test]
fn a_store_that_restarts_raises_the_fence_so_no_accepted_code_is_accepted_again() {
    let Some(mut s) = own_server("fence") else {
        return;
    };
    let prefix = fresh_prefix();
    let a = Node::start(&s.addr(), &prefix);
    let key = enrol(&a, "kari");
    let now = Timestamp::from_secs(T0 + 60);
    let c = code(&key, now.as_secs());
    assert_eq!(
        a.engine.decide(&attempt("kari", &c), now).outcome,
        Outcome::Allow
    );
    assert_eq!(a.engine.fence(), None);
    // The restart loses the write that spent the code (as `everysec` may): the record is
    // removed before the kill.
    let id = a.engine.user_info("kommune", "kari").expect("kari").id;
    let record = portvakt_store::cas::subject_key(portvakt_core::Subject::Known(id));
    raw(&s.addr(), &[b"DEL", &record_key(&prefix, &record)]);
    s.kill();
    s.restart();
    // The next command reconnects, sees a new server process and raises the fence first
    // (the first tries may find the server still loading its file: internal errors).
    let d = until_answered(|| a.engine.decide(&attempt("kari", &c), now));
    assert_eq!(d.reason, Reason::ReplayedCode, "{d:?}");
    assert_eq!(a.redis.epoch_changes(), 1);
    assert_eq!(a.engine.fence(), Some(now));
    // A node started after the restart is behind the same fence.
    let b = Node::start(&s.addr(), &prefix);
    assert_eq!(b.engine.fence(), Some(now));
    assert_eq!(
        b.engine.decide(&attempt("kari", &c), now).reason,
        Reason::ReplayedCode
    );
    // Past the fence (its window and drift), codes are accepted again, once.
    let later = Timestamp::from_secs(T0 + 60 + 4 * 30);
    let c = code(&key, later.as_secs());
    assert_eq!(
        b.engine.decide(&attempt("kari", &c), later).outcome,
        Outcome::Allow
    );
    assert_eq!(
        a.engine.decide(&attempt("kari", &c), later).reason,
        Reason::ReplayedCode
    );
}

#[test]
fn decisions_fail_closed_while_the_store_is_down_and_resume_when_it_returns() {
    let Some(mut s) = own_server("down") else {
        return;
    };
    let prefix = fresh_prefix();
    let a = Node::start(&s.addr(), &prefix);
    let key = enrol(&a, "kari");
    s.kill();
    let now = Timestamp::from_secs(T0 + 60);
    let c = code(&key, now.as_secs());
    let before = a.engine.store_errors();
    for _ in 0..3 {
        let d = a.engine.decide(&attempt("kari", &c), now);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Deny, Reason::InternalError)
        );
    }
    assert!(a.engine.store_errors() >= before + 3);
    // An administrator change is refused, not half made.
    assert!(a.engine.add_user("kommune", "ola", &[], false).is_err());
    s.restart();
    let later = Timestamp::from_secs(T0 + 60 + 4 * 30);
    let c = code(&key, later.as_secs());
    let d = until_answered(|| a.engine.decide(&attempt("kari", &c), later));
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
}

/// The first decision that is not an internal error (a restarted server may still be
/// loading its file for a moment), within five seconds.
fn until_answered(decide: impl Fn() -> portvakt_core::Decision) -> portvakt_core::Decision {
    for _ in 0..50 {
        let d = decide();
        if d.reason != Reason::InternalError {
            return d;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    decide()
}

/// One command on a connection of its own.
fn raw(addr: &str, args: &[&[u8]]) -> portvakt_store::redis::resp::Reply {
    use std::io::{Read, Write};
    let mut out = Vec::new();
    portvakt_store::redis::resp::encode(args, &mut out);
    let mut c = std::net::TcpStream::connect(addr).expect("connects");
    c.write_all(&out).expect("writes");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((r, _)) = portvakt_store::redis::resp::decode(&buf).expect("a reply") {
            return r;
        }
        let n = c.read(&mut chunk).expect("reads");
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn a_lock_made_through_one_node_holds_on_another_that_remembered_the_record_unlocked_on(
    addr: &str,
) {
    let prefix = fresh_prefix();
    let (a, b) = (Node::start(addr, &prefix), Node::start(addr, &prefix));
    enrol(&a, "kari");
    b.caught_up();
    let now = Timestamp::from_secs(T0 + 60);
    let office = |first_factor| portvakt_core::Request {
        ip: "10.20.1.5".parse().expect("an address"),
        first_factor,
        ..contract::req("kari", None)
    };
    // A reads (and remembers) kari's record: single-factor at the office.
    let d = a
        .engine
        .decide(&office(portvakt_core::FirstFactor::Ok), now);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    // Wrong passwords at the office, reported through B, until kari is locked.
    let mut locked = false;
    for _ in 0..20 {
        let d = b
            .engine
            .decide(&office(portvakt_core::FirstFactor::Failed), now);
        if d.outcome == Outcome::Locked {
            locked = true;
            break;
        }
    }
    assert!(locked, "no lock after 20 failures");
    // A's remembered copy says unlocked; the store says locked, and the store is right.
    let d = a
        .engine
        .decide(&office(portvakt_core::FirstFactor::Ok), now);
    assert_eq!(d.outcome, Outcome::Locked, "{d:?}");
}

fn a_nodes_own_changes_from_many_threads_never_conflict_with_each_other_on(addr: &str) {
    let prefix = fresh_prefix();
    let a = Node::start(addr, &prefix);
    let barrier = Barrier::new(8);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (a, barrier) = (&a, &barrier);
            scope.spawn(move || {
                barrier.wait();
                for i in 0..20 {
                    a.engine
                        .add_user("kommune", &format!("u{t}-{i}"), &[], false)
                        .expect("no conflict with itself");
                }
            });
        }
    });
    assert_eq!(a.engine.directory().len(), 160);
    assert_eq!(a.redis.log_head().expect("the head"), 160);
}

#[test]
fn a_node_whose_directory_is_ahead_of_the_log_stops_taking_changes() {
    let Some(s) = server() else { return };
    let prefix = fresh_prefix();
    let a = Node::start(&s.addr(), &prefix);
    a.engine
        .add_user("kommune", "kari", &[], false)
        .expect("added");
    a.engine
        .add_user("kommune", "ola", &[], false)
        .expect("added");
    assert_eq!(a.redis.log_head().expect("the head"), 2);
    // The store loses the last batch it acknowledged (as a failover may).
    let head = format!("{prefix}:{{dir}}:head").into_bytes();
    let log = format!("{prefix}:{{dir}}:log").into_bytes();
    raw(&s.addr(), &[b"XDEL", &log, b"2-0"]);
    raw(&s.addr(), &[b"SET", &head, b"1"]);
    // This node applied batch 2, which no node starting now would see: it refuses every
    // change from here on, rather than build on a directory no other node has.
    let e = a
        .engine
        .add_user("kommune", "per", &[], false)
        .expect_err("refused");
    assert!(
        matches!(&e, portvakt_core::directory::DirectoryError::Store(s) if !s.is_conflict()),
        "{e}"
    );
    assert!(a.redis.lost().is_some());
    assert!(a.engine.add_user("kommune", "pål", &[], false).is_err());
    // A node started now has the directory as the store has it.
    let b = Node::start(&s.addr(), &prefix);
    assert_eq!(b.engine.directory().len(), 1);
}

#[test]
fn with_replicas_required_a_write_no_replica_took_fails_closed() {
    let Some(primary) = own_server("primary") else {
        return;
    };
    let port = primary
        .addr()
        .rsplit(':')
        .next()
        .expect("a port")
        .to_owned();
    let mut replica =
        Local::start(&scratch("replica"), &["--replicaof", "127.0.0.1", &port]).expect("starts");
    let prefix = fresh_prefix();
    let url = format!(
        "redis://{}/{prefix}?timeout_ms=2000&replicas=1",
        primary.addr()
    );
    let node = Node::on(connect_to(&url));
    let (engine, redis) = (&node.engine, &node.redis);
    // The replica must have synchronised before a write can reach it.
    let mut linked = false;
    for _ in 0..100 {
        let info = raw(&replica.addr(), &[b"INFO", b"replication"]);
        if info
            .bytes()
            .is_some_and(|b| String::from_utf8_lossy(b).contains("master_link_status:up"))
        {
            linked = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(linked, "the replica did not synchronise");
    let key = contract::user(engine, "kari");
    let now = Timestamp::from_secs(T0 + 60);
    let d = engine.decide(&attempt("kari", &code(&key, now.as_secs())), now);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    // Without the replica, a decision that writes (a code spent) is not answered allow.
    replica.kill();
    let later = Timestamp::from_secs(T0 + 90);
    let d = engine.decide(&attempt("kari", &code(&key, later.as_secs())), later);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::InternalError)
    );
    assert!(redis.failures() > 0);
}
