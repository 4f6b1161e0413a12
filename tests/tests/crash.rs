//! `kill -9` under load, again and again: a real `portvakt serve` on its durable store,
//! frontends signing in with codes, an attacker guessing until the user is locked out and
//! an administrator adding users, all at once; the server is killed at a random moment
//! and started again on the same data directory. After every restart: no code that was
//! answered `allow` is accepted again, every user answered `locked` still is, every user
//! whose addition was acknowledged exists, and the sign-in log holds a row for every
//! decision that was answered, and the audit trail holds every acknowledged addition.
//!
//! The server is the `portvakt` binary the workspace's test run builds (beside this test's
//! own executable). `PORTVAKT_CRASH_KILLS` sets the number of kills (20 by default; the
//! longer run in `docs/operations.md` uses 200), `PORTVAKT_CRASH_SEED` the randomness.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{attempt, audited, code_now, connect, enrol, free_port, server_binary, start};
use portvakt_client::{Client, ClientError};
use portvakt_server::pki::ensure_dev_pki;
use portvakt_wire::admin::{Str, StrList};
use portvakt_wire::*;

const USERS_PER_ROUND: usize = 4;

/// A small deterministic generator (xorshift), seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn exists(admin: &Client, user: &str) -> bool {
    match admin
        .admin(Admin::UserInfo {
            tenant: Str("kommune"),
            user: Str(user),
        })
        .await
    {
        Ok(_) => true,
        Err(ClientError::Refused { .. }) => false,
        Err(e) => panic!("asking for {user}: {e}"),
    }
}

async fn sign_in_rows(admin: &Client, user: &str) -> usize {
    let mut rows = 0;
    let mut cursor = 0;
    loop {
        let answer = admin
            .admin(Admin::SignIns {
                tenant: Str("kommune"),
                user: Str(user),
                from_ms: 0,
                to_ms: u64::MAX,
                cursor,
                limit: 24,
            })
            .await
            .unwrap();
        let Frame::AdminReply(_, AdminReply::SignInsFound { rows: found, next }) =
            answer.frame().unwrap()
        else {
            panic!("{answer:?}")
        };
        rows += found.0.len();
        match next {
            Some(n) => cursor = n,
            None => return rows,
        }
    }
}

/// What the server answered before it was killed.
#[derive(Default)]
struct Ledger {
    /// Codes answered `allow`: (user, code).
    allowed: Vec<(String, String)>,
    /// Users answered `locked` (too many failures).
    locked: Vec<String>,
    /// Users whose addition was acknowledged.
    added: Vec<String>,
    /// Decisions answered, per user.
    answered: std::collections::HashMap<String, usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_under_load_forgets_nothing_that_was_answered() {
    let kills: usize = std::env::var("PORTVAKT_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("PORTVAKT_CRASH_SEED")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| portvakt_server::clock::now().as_millis() | 1);
    println!("kills {kills}, seed {seed} (PORTVAKT_CRASH_SEED={seed} repeats this run)");
    let mut rng = Rng(seed);
    let data = std::env::temp_dir().join(format!("portvakt-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (mut server, _) = start(&data, addr);
    let (files, _) = ensure_dev_pki(&data.join("certs")).unwrap();
    // Everyone who will sign in or be locked out, enrolled before the first kill.
    {
        let admin = connect(addr, &files, true).await;
        for round in 0..kills {
            for j in 0..=USERS_PER_ROUND {
                enrol(&admin, &format!("r{round}-u{j}")).await.unwrap();
            }
        }
        admin.close().await;
    }
    let mut checked = (0, 0, 0, 0);
    for round in 0..kills {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (front, admin) = (
            connect(addr, &files, false).await,
            connect(addr, &files, true).await,
        );
        let (front, admin) = (Arc::new(front), Arc::new(admin));
        // Sign-ins with the right code, each user once.
        let signing = {
            let (front, ledger) = (front.clone(), ledger.clone());
            tokio::spawn(async move {
                for j in 0..USERS_PER_ROUND {
                    let user = format!("r{round}-u{j}");
                    let code = code_now(&user);
                    let Ok(d) = front
                        .decide(attempt(&user, "198.51.100.7", Some(&code)))
                        .await
                    else {
                        return;
                    };
                    let mut l = ledger.lock().unwrap();
                    *l.answered.entry(user.clone()).or_default() += 1;
                    if d.outcome == Outcome::Allow {
                        l.allowed.push((user, code));
                    }
                }
            })
        };
        // Guessing until the user is locked out, from an address of its own.
        let guessing = {
            let (front, ledger) = (front.clone(), ledger.clone());
            let ip = format!("203.0.113.{}", round % 250 + 1);
            tokio::spawn(async move {
                let user = format!("r{round}-u{USERS_PER_ROUND}");
                for i in 0..15u32 {
                    let wrong = format!("{:06}", (i * 7919 + round as u32 * 104_729) % 1_000_000);
                    let Ok(d) = front.decide(attempt(&user, &ip, Some(&wrong))).await else {
                        return;
                    };
                    let mut l = ledger.lock().unwrap();
                    *l.answered.entry(user.clone()).or_default() += 1;
                    if d.outcome == Outcome::Locked && d.reason.as_str() == "too_many_failures" {
                        l.locked.push(user.clone());
                        return;
                    }
                }
            })
        };
        // An administrator adding users.
        let adding = {
            let (admin, ledger) = (admin.clone(), ledger.clone());
            tokio::spawn(async move {
                for j in 0..50 {
                    let user = format!("added-r{round}-{j}");
                    let ok = admin
                        .admin(Admin::AddUser {
                            tenant: Str("kommune"),
                            user: Str(&user),
                            groups: StrList(vec![]),
                            passwordless: false,
                        })
                        .await
                        .is_ok();
                    if !ok {
                        return;
                    }
                    ledger.lock().unwrap().added.push(user);
                }
            })
        };
        // The kill, at a random moment of the load.
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        // A request in flight when the server died has no answer and never will: it is
        // not in the ledger, and its task is stopped rather than left to time out.
        for t in [signing, guessing, adding] {
            t.abort();
            let _ = t.await;
        }
        drop((front, admin));

        let (restarted, found) = start(&data, addr);
        server = restarted;
        let (front, admin) = (
            connect(addr, &files, false).await,
            connect(addr, &files, true).await,
        );
        let l = std::mem::take(&mut *ledger.lock().unwrap());
        for (user, code) in &l.allowed {
            let d = front
                .decide(attempt(user, "198.51.100.7", Some(code)))
                .await
                .unwrap();
            assert_ne!(
                d.outcome,
                Outcome::Allow,
                "round {round}: {user}'s code {code} was allowed before the kill and again after ({found})"
            );
        }
        for user in &l.locked {
            let d = front
                .decide(attempt(user, "203.0.113.251", Some("000000")))
                .await
                .unwrap();
            assert_eq!(
                (d.outcome, d.reason.as_str()),
                (Outcome::Locked, "too_many_failures"),
                "round {round}: {user} was answered locked before the kill ({found})"
            );
        }
        let trail = audited(&admin).await;
        for user in &l.added {
            assert!(
                exists(&admin, user).await,
                "round {round}: adding {user} was acknowledged before the kill ({found})"
            );
            assert!(
                trail.contains(&("add-user".to_owned(), user.clone())),
                "round {round}: adding {user} was acknowledged, the audit trail does not have it"
            );
        }
        for (user, n) in &l.answered {
            let rows = sign_in_rows(&admin, user).await;
            assert!(
                rows >= *n,
                "round {round}: {n} decisions for {user} were answered, the sign-in log has {rows}"
            );
        }
        checked.0 += l.allowed.len();
        checked.1 += l.locked.len();
        checked.2 += l.added.len();
        checked.3 += l.answered.values().sum::<usize>();
        front.close().await;
        admin.close().await;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    println!(
        "after {kills} kills: {} allowed codes stayed spent, {} lockouts stayed, {} added users stayed, {} answered decisions were in the sign-in log",
        checked.0, checked.1, checked.2, checked.3
    );
    // The load must have got somewhere, or the test proved nothing.
    assert!(
        checked.0 > 0 && checked.2 > 0 && checked.3 > 0,
        "{checked:?}"
    );
}

/// Runs the `portvakt` binary with `args`; its exit status and output.
fn portvakt(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(server_binary()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `portvakt admin backup` while the server serves and is being changed, then the server
/// gone and `portvakt restore` into its data directory: everything acknowledged before the
/// backup is back (users, a spent code, a lockout, their audit events), what came after
/// it is not, and a restore is refused while a server holds the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_made_while_serving_is_restored_whole() {
    let data = std::env::temp_dir().join(format!("portvakt-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (server, _) = start(&data, addr);
    let (files, _) = ensure_dev_pki(&data.join("certs")).unwrap();
    let (front, admin) = (
        connect(addr, &files, false).await,
        connect(addr, &files, true).await,
    );
    for user in ["kari", "ola", "per"] {
        enrol(&admin, user).await.unwrap();
    }
    let code = code_now("kari");
    let d = front
        .decide(attempt("kari", "198.51.100.7", Some(&code)))
        .await
        .unwrap();
    assert_eq!(d.outcome, Outcome::Allow);
    let mut locked = false;
    for i in 0..15u32 {
        let wrong = format!("{:06}", (i * 7919 + 17) % 1_000_000);
        let d = front
            .decide(attempt("ola", "203.0.113.5", Some(&wrong)))
            .await
            .unwrap();
        if d.outcome == Outcome::Locked {
            locked = true;
            break;
        }
    }
    assert!(locked, "ola was never locked out");

    // Load while the backup is made: sign-ins for per.
    let front = Arc::new(front);
    let load = {
        let front = front.clone();
        tokio::spawn(async move {
            loop {
                let _ = front
                    .decide(attempt("per", "198.51.100.8", Some("123456")))
                    .await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let file = data.join("kommune.pvbackup");
    let addr_s = addr.to_string();
    let (ok, said) = tokio::task::spawn_blocking({
        let (file, data) = (file.clone(), data.clone());
        move || {
            portvakt(&[
                "admin".as_ref(),
                "--server".as_ref(),
                addr_s.as_ref(),
                "--data".as_ref(),
                data.as_os_str(),
                "backup".as_ref(),
                file.as_os_str(),
            ])
        }
    })
    .await
    .unwrap();
    load.abort();
    assert!(ok, "{said}");
    assert!(said.contains("backup written"), "{said}");
    // After the backup: a user the restored store must not have.
    enrol(&admin, "after").await.unwrap();

    // A restore while the server holds the directory is refused.
    let (ok, said) = portvakt(&[
        "restore".as_ref(),
        file.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    assert!(!ok && said.contains("in use by a running server"), "{said}");

    admin.close().await;
    drop(server);
    let (ok, said) = portvakt(&[
        "restore".as_ref(),
        file.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    assert!(ok, "{said}");
    assert!(said.contains("kept in"), "{said}");

    let (_server, _) = start(&data, addr);
    let (front, admin) = (
        connect(addr, &files, false).await,
        connect(addr, &files, true).await,
    );
    for user in ["kari", "ola", "per"] {
        assert!(
            exists(&admin, user).await,
            "{user} was added before the backup"
        );
    }
    assert!(
        !exists(&admin, "after").await,
        "after was added after the backup"
    );
    let d = front
        .decide(attempt("kari", "198.51.100.7", Some(&code)))
        .await
        .unwrap();
    assert_ne!(
        d.outcome,
        Outcome::Allow,
        "kari's spent code is spent again"
    );
    let d = front
        .decide(attempt("ola", "203.0.113.6", Some("000000")))
        .await
        .unwrap();
    assert_eq!(d.outcome, Outcome::Locked, "ola's lockout came back");
    let trail = audited(&admin).await;
    for user in ["kari", "ola", "per"] {
        for op in ["add-user", "import-totp", "add-security-key"] {
            assert!(
                trail.contains(&(op.to_owned(), user.to_owned())),
                "{op} {user} is missing from the restored audit trail"
            );
        }
    }
    assert!(!trail.contains(&("add-user".to_owned(), "after".to_owned())));
    // The trail as administrators read it: JSON lines naming the certificate.
    let (ok, said) = portvakt(&[
        "admin".as_ref(),
        "--server".as_ref(),
        addr.to_string().as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--json".as_ref(),
        "audit".as_ref(),
        "--user".as_ref(),
        "kari".as_ref(),
    ]);
    assert!(ok, "{said}");
    let fingerprint = portvakt_server::pki::fingerprint(
        &portvakt_client::tls::load_certs(&files.admin.0).unwrap()[0],
    );
    let lines: Vec<&str> = said.lines().collect();
    assert!(lines.len() >= 3, "{said}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["actor"], fingerprint.as_str(), "{line}");
        assert_eq!(v["user"], "kari", "{line}");
    }
    // The secret imported for kari appears nowhere in the trail.
    assert!(!said.contains("kari####"), "{said}");
    front.close().await;
    admin.close().await;
    let _ = std::fs::remove_dir_all(&data);
}
