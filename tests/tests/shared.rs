//! Several `portvakt serve` processes on one Redis are one deployment: the same replay
//! state, lockouts and directory through every node, closed while Redis is away, no code
//! accepted twice across a `kill -9` of Redis, and a security-info ticket spent once.
//!
//! Redis is a `redis-server` of the test's own on a free loopback port
//! (`portvakt_store::redis::local`); without one installed the tests say so and pass,
//! unless `PORTVAKT_REQUIRE_REDIS` is set, as `.ci/run` sets it.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{
    Running, all_at_once, attempt, code_now, connect, enrol, free_port, start_with,
    wrong_codes_at_once,
};
use portvakt_client::{Client, ClientError, Decision, Outcome};
use portvakt_server::pki::{PkiFiles, ensure_dev_pki};
use portvakt_store::redis::local::{Local, LocalCluster};
use portvakt_wire::admin::Str;
use portvakt_wire::{Admin, AdminReply, Frame};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portvakt-shared-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One deployment: a Redis and the data directories of its nodes (the first node's
/// certificates and master key copied to every other, as an operator would).
struct Deployment {
    dir: PathBuf,
    url: String,
    files: PkiFiles,
}

/// A node and its address.
struct Node {
    _process: Running,
    addr: SocketAddr,
}

impl Deployment {
    /// A deployment in `dir` on the Redis (or any node of the cluster) at `addr`.
    fn new(dir: PathBuf, addr: &str) -> Self {
        let first = dir.join("node-0");
        let (files, _) = ensure_dev_pki(&first.join("certs")).unwrap();
        Self {
            dir,
            // A loaded test machine can take long to answer; the tests are about what is
            // answered, and a slow store must not turn a guess into an internal error.
            url: format!("redis://{addr}/it?timeout_ms=5000"),
            files,
        }
    }

    fn start(&self, n: usize) -> Node {
        self.start_with(n, &[])
    }

    /// [`start`](Self::start) with more arguments to `serve`.
    fn start_with(&self, n: usize, extra: &[&str]) -> Node {
        let data = self.dir.join(format!("node-{n}"));
        if n > 0 && !data.exists() {
            let first = self.dir.join("node-0");
            std::fs::create_dir_all(data.join("certs")).unwrap();
            for f in std::fs::read_dir(first.join("certs")).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, data.join("certs").join(f.file_name().unwrap())).unwrap();
            }
            std::fs::copy(first.join("master.key"), data.join("master.key")).unwrap();
        }
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut args = vec!["--store", self.url.as_str()];
        args.extend_from_slice(extra);
        let (process, _) = start_with(&data, addr, &args);
        Node {
            _process: process,
            addr,
        }
    }

    async fn frontend(&self, node: &Node) -> Client {
        connect(node.addr, &self.files, false).await
    }

    async fn admin(&self, node: &Node) -> Client {
        connect(node.addr, &self.files, true).await
    }
}

/// The methods `admin`'s node knows `user` to have (`None`: no such user there).
async fn methods(admin: &Client, user: &str) -> Option<usize> {
    match admin
        .admin(Admin::UserInfo {
            tenant: Str("kommune"),
            user: Str(user),
        })
        .await
    {
        Ok(answer) => match answer.frame().unwrap() {
            Frame::AdminReply(_, AdminReply::UserDescribed { methods, .. }) => {
                Some(methods.0.len())
            }
            other => panic!("{other:?}"),
        },
        Err(ClientError::Refused { .. }) => None,
        Err(e) => panic!("asking for {user}: {e}"),
    }
}

/// Waits until `admin`'s node knows `user` enrolled (an app and a security key, the last
/// of `enrol`'s changes); how long that took.
async fn known_within(admin: &Client, user: &str) -> Duration {
    let started = portvakt_server::clock::instant();
    while methods(admin, user).await != Some(2) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{user} did not reach the other node"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

fn count(ds: &[Decision], reason: &str) -> usize {
    ds.iter().filter(|d| d.reason == reason).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_are_one_deployment() {
    let dir = scratch("one");
    let Some(redis) = Local::start(&dir.join("redis"), &[]) else {
        return;
    };
    one_deployment(Deployment::new(dir, &redis.addr())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_a_three_primary_cluster_are_one_deployment() {
    let dir = scratch("cluster");
    let Some(cluster) = LocalCluster::start(&dir.join("redis"), 3) else {
        return;
    };
    one_deployment(Deployment::new(dir, &cluster.addr())).await;
}

/// Races, guesses, unknown names, changes and a node started later, through two nodes.
async fn one_deployment(d: Deployment) {
    let (a, b) = (d.start(0), d.start(1));
    let (admin_a, admin_b) = (d.admin(&a).await, d.admin(&b).await);
    // Frontends on both nodes, two connections each, alternating.
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(d.frontend(&a).await);
        clients.push(d.frontend(&b).await);
    }
    // An administrator change on A is used by B, after a bounded delay.
    let mut delays = Vec::new();
    let mut first_code = String::new();
    for round in 0..20 {
        let user = format!("racer{round}");
        enrol(&admin_a, &user).await.unwrap();
        delays.push(known_within(&admin_b, &user).await);
        // The same right code 64 times at once, half through each node: one allow.
        let code = code_now(&user);
        if round == 0 {
            first_code = code.clone();
        }
        let ip = format!("203.0.113.{}", 10 + round);
        let requests = (0..64)
            .map(|_| (user.clone(), ip.clone(), code.clone()))
            .collect();
        let answers = all_at_once(&clients, requests).await;
        let allowed = answers
            .iter()
            .filter(|d| d.outcome == Outcome::Allow)
            .count();
        assert_eq!(allowed, 1, "round {round}: {answers:?}");
        assert_eq!(count(&answers, "replayed_code"), 63, "round {round}");
    }
    delays.sort();
    println!(
        "an addition on A known on B after: median {:?}, most {:?}",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    // 64 different wrong codes at once through both nodes, against a user and against a
    // name nobody has, after one each: eight more are evaluated, the tenth failure locks,
    // the rest are refused, alike;
    // so neither guessing nor probing for names gains from the number of nodes.
    enrol(&admin_b, "victim").await.unwrap();
    known_within(&admin_a, "victim").await;
    let right: u32 = code_now("victim").parse().unwrap();
    // An unknown name is decided as a phantom user; a few phantoms, like a few real users,
    // have not finished registering and answer `register` to any code. The name taken is
    // the first whose phantom answers a first wrong code as a registered user would; the
    // user gets the same first wrong code, so both start from one counted failure.
    let first_wrong = |user: String, ip: &'static str| {
        let c = clients[0].clone();
        let wrong = format!("{:06}", (right + 500_000) % 1_000_000);
        async move { c.decide(attempt(&user, ip, Some(&wrong))).await.unwrap() }
    };
    let first = first_wrong("victim".to_owned(), "203.0.113.200").await;
    assert_eq!(first.reason, "invalid_code", "{first:?}");
    let mut nobody = None;
    for i in 0..64 {
        let name = format!("nobody-{i}");
        if first_wrong(name.clone(), "203.0.113.201").await.reason == "invalid_code" {
            nobody = Some(name);
            break;
        }
    }
    let nobody = nobody.expect("a phantom with its methods registered among 64 names");
    for (user, ip) in [
        ("victim", "203.0.113.200"),
        (nobody.as_str(), "203.0.113.201"),
    ] {
        let answers = wrong_codes_at_once(&clients, user, ip, right).await;
        assert_eq!(count(&answers, "invalid_code"), 8, "{user}: {answers:?}");
        let locked = answers
            .iter()
            .filter(|d| d.outcome == Outcome::Locked)
            .count();
        assert_eq!(locked, 56, "{user}");
        // Locked through both nodes' guesses: the right code is refused through either.
        let code = code_now("victim");
        for c in &clients[..2] {
            let d = c.decide(attempt(user, ip, Some(&code))).await.unwrap();
            assert_eq!(d.outcome, Outcome::Locked, "{user}: {d:?}");
        }
    }
    // One audit trail for the deployment: what was done through A is read through B.
    let trail = common::audited(&admin_b).await;
    for op in ["add-user", "import-totp", "add-security-key"] {
        assert!(
            trail.contains(&(op.to_owned(), "racer0".to_owned())),
            "{op} of racer0 missing from {trail:?}"
        );
    }
    assert!(trail.contains(&("add-user".to_owned(), "victim".to_owned())));
    // A node started after all this has every user, and the same replay state.
    let c = d.start(2);
    let admin_c = d.admin(&c).await;
    for round in 0..20 {
        assert_eq!(methods(&admin_c, &format!("racer{round}")).await, Some(2));
    }
    let frontend_c = d.frontend(&c).await;
    let again = frontend_c
        .decide(attempt("racer0", "203.0.113.10", Some(&first_code)))
        .await
        .unwrap();
    assert_eq!(again.reason, "replayed_code", "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_nothing_is_allowed_and_after_a_kill_nothing_allowed_is_allowed_again() {
    let dir = scratch("kill");
    let Some(mut redis) = Local::start(&dir.join("redis"), &[]) else {
        return;
    };
    let d = Deployment::new(dir, &redis.addr());
    let (a, b) = (d.start(0), d.start(1));
    let admin = d.admin(&a).await;
    let clients = [d.frontend(&a).await, d.frontend(&b).await];
    let users: Vec<String> = (0..16).map(|i| format!("user{i}")).collect();
    for u in &users {
        enrol(&admin, u).await.unwrap();
    }
    let admin_b = d.admin(&b).await;
    known_within(&admin_b, &users[15]).await;
    // Each user signs in once, through either node: every code is answered allow.
    let mut allowed = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let code = code_now(u);
        let d = clients[i % 2]
            .decide(attempt(u, "203.0.113.9", Some(&code)))
            .await
            .unwrap();
        assert_eq!(d.outcome, Outcome::Allow, "{u}: {d:?}");
        allowed.push((u.clone(), code));
    }
    // Redis killed at once (what it had not yet written to its file is lost): while it is
    // away, nothing is allowed, not even a code never used, and nothing else either.
    redis.kill();
    // Under load: every user's fresh code four times at once through both nodes, and
    // every user from the office, all sent after the kill: none allowed.
    let requests = (0..4)
        .flat_map(|_| {
            users
                .iter()
                .map(|u| (u.clone(), "203.0.113.9".to_owned(), code_now(u)))
        })
        .collect();
    let answers = all_at_once(&clients, requests).await;
    assert_eq!(answers.len(), 64);
    assert!(
        answers
            .iter()
            .all(|d| (d.outcome, d.reason.as_str()) == (Outcome::Deny, "internal_error")),
        "{answers:?}"
    );
    for (i, u) in users.iter().enumerate() {
        let fresh = code_now(u);
        let d = clients[i % 2]
            .decide(attempt(u, "203.0.113.9", Some(&fresh)))
            .await
            .unwrap();
        assert_eq!(
            (d.outcome, d.reason.as_str()),
            (Outcome::Deny, "internal_error"),
            "{u}"
        );
        let office = clients[i % 2]
            .decide(attempt(u, "10.20.1.5", None))
            .await
            .unwrap();
        assert_eq!(office.outcome, Outcome::Deny, "{u}: {office:?}");
    }
    // Back: service resumes by itself, and no code answered allow before the kill is
    // accepted, through either node, whatever Redis lost.
    redis.restart();
    let started = portvakt_server::clock::instant();
    loop {
        let d = clients[0]
            .decide(attempt(&users[0], "10.20.1.5", None))
            .await
            .unwrap();
        if d.outcome == Outcome::Allow {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{d:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, (u, code)) in allowed.iter().enumerate() {
        for c in &clients {
            let d = c
                .decide(attempt(u, "203.0.113.9", Some(code)))
                .await
                .unwrap();
            assert_ne!(d.outcome, Outcome::Allow, "{u} ({i}): {d:?}");
            assert_eq!(d.reason, "replayed_code", "{u}: {d:?}");
        }
    }
}

/// A push approval across nodes: issued through A, paired and answered on B, waited for
/// through both at once: one `allow` in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_approval_is_one_across_nodes() {
    use portvakt_client::device::{self, Authenticator, Enrolment, Verdict};
    let dir = scratch("push");
    let Some(redis) = Local::start(&dir.join("redis"), &[]) else {
        return;
    };
    let d = Deployment::new(dir, &redis.addr());
    let (a, b) = (d.start(0), d.start(1));
    let (admin_a, admin_b) = (d.admin(&a).await, d.admin(&b).await);
    enrol(&admin_a, "kari").await.unwrap();
    let answer = admin_a
        .admin(Admin::EnrollPush {
            tenant: Str("kommune"),
            user: Str("kari"),
        })
        .await
        .unwrap();
    let Frame::AdminReply(_, AdminReply::PushEnrolled { method, token, .. }) =
        answer.frame().unwrap()
    else {
        panic!("{answer:?}")
    };
    // B learns of the pending device, and the phone pairs there.
    let started = portvakt_server::clock::instant();
    while methods(&admin_b, "kari").await != Some(3) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "B never saw the device"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let enrolment = Enrolment {
        server: b.addr,
        tenant: "kommune".into(),
        user: "kari".into(),
        method,
        token: token.0.to_owned(),
    };
    let conn = device::connect(b.addr, &d.files.ca).await.unwrap();
    let phone = Authenticator::enrol(&conn, &enrolment).await.unwrap();
    phone.sign_in(&conn).await.unwrap();
    // A makes it the default once it knows it paired (the pairing is B's change).
    let started = portvakt_server::clock::instant();
    loop {
        match admin_a
            .admin(Admin::SetDefaultMethod {
                tenant: Str("kommune"),
                user: Str("kari"),
                method,
            })
            .await
        {
            Ok(_) => break,
            Err(ClientError::Refused { .. }) => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "A never saw the pairing"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (front_a, front_b) = (d.frontend(&a).await, d.frontend(&b).await);
    let decided = front_a
        .decide(attempt("kari", "203.0.113.9", None))
        .await
        .unwrap();
    assert_eq!(decided.reason, "approval_sent", "{decided:?}");
    let approval = decided.approval.unwrap();
    let mut waits = tokio::task::JoinSet::new();
    for i in 0..32 {
        let c = if i % 2 == 0 {
            front_a.clone()
        } else {
            front_b.clone()
        };
        waits.spawn(async move {
            c.await_approval(
                attempt("kari", "203.0.113.9", None),
                approval.id,
                Duration::from_secs(20),
            )
            .await
            .unwrap()
        });
    }
    let listed = phone.pending(&conn, Duration::from_secs(10)).await.unwrap();
    assert!(listed.iter().any(|p| p.id == approval.id), "{listed:?}");
    phone
        .answer(&conn, approval.id, Verdict::Approve(approval.number))
        .await
        .unwrap();
    let mut outcomes = Vec::new();
    while let Some(d) = waits.join_next().await {
        outcomes.push(d.unwrap().outcome);
    }
    let allowed = outcomes.iter().filter(|o| **o == Outcome::Allow).count();
    assert_eq!(allowed, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Allow | Outcome::Deny))
    );
}

/// A ticket to the security-info pages opens one session in the whole deployment: issued
/// on one node and spent on the other, refused on the first after that, and of two
/// presses at once on two nodes, exactly one opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_info_ticket_opens_once_across_nodes() {
    use common::http::{Cert, connect_to, read_answer};
    use tokio::io::AsyncWriteExt;
    let dir = scratch("ticket");
    let Some(redis) = Local::start(&dir.join("redis"), &[]) else {
        return;
    };
    let d = Deployment::new(dir.clone(), &redis.addr());
    let https: Vec<SocketAddr> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
        .collect();
    let configs: Vec<String> = https
        .iter()
        .enumerate()
        .map(|(n, addr)| {
            let file = dir.join(format!("http-{n}.toml"));
            std::fs::write(
                &file,
                format!(
                    "listen = \"{addr}\"\nunauthenticated_frontends = [\"127.0.0.0/8\"]\n\n[[realms]]\nname = \"kommune\"\ntenant = \"kommune\"\n\n[security_info]\npublic_url = \"https://portvakt.test\"\n"
                ),
            )
            .unwrap();
            file.to_str().unwrap().to_owned()
        })
        .collect();
    let _a = d.start_with(0, &["--http", &configs[0]]);
    let _b = d.start_with(1, &["--http", &configs[1]]);
    let files = d.files.clone();
    let send = |node: usize, raw: String| {
        let (addr, files) = (https[node], files.clone());
        async move {
            let mut stream = connect_to(addr, &files, "127.0.0.1", Cert::None).await;
            stream.write_all(raw.as_bytes()).await.unwrap();
            read_answer(&mut stream).await
        }
    };
    let ticket = |node: usize| {
        let body = r#"{"tenant":"kommune","user":"kari@kommune.no"}"#;
        let raw = format!(
            "POST /v1/security-info/ticket HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = send(node, raw);
        async move {
            let a = answer.await;
            assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
            let url = a.json()["url"].as_str().unwrap().to_owned();
            url.split_once("ticket=").unwrap().1.to_owned()
        }
    };
    let press = |node: usize, ticket: &str| {
        let body = format!("ticket={ticket}");
        send(
            node,
            format!(
                "POST /security-info/start HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: https://portvakt.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let t = ticket(0).await;
    assert_eq!(press(1, &t).await.status, 303);
    assert_eq!(press(0, &t).await.status, 403);
    assert_eq!(press(1, &t).await.status, 403);
    for round in 0..10 {
        let t = ticket(round % 2).await;
        let (x, y) = tokio::join!(press(0, &t), press(1, &t));
        let mut statuses = [x.status, y.status];
        statuses.sort();
        assert_eq!(statuses, [303, 403], "round {round}");
    }
}
