//! `portvakt-load` against a real server on loopback: it enrols its users, drives both
//! loops, and its JSON report adds up.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;

use portvakt::pki::{ensure_dev_pki, fingerprint, load_certs, server_tls};
use portvakt::service::Service;
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{Engine, MemoryStore, config};

fn load(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_portvakt-load"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_enrols_and_reports() {
    let dir = std::env::temp_dir().join(format!("portvakt-load-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (files, _) = ensure_dev_pki(&dir.join("certs")).unwrap();
    let policy = config::load(include_str!("../../examples/kommune.toml")).unwrap();
    let engine = Engine::new(
        policy,
        MemoryStore::default(),
        Pepper::new([1; 32]),
        Box::new(SeededEntropy::new(1)),
    );
    let engine = Arc::new(engine);
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).unwrap();
    let admins = HashSet::from([fingerprint(&load_certs(&files.admin.0).unwrap()[0])]);
    let service = Arc::new(Service::new(engine.clone(), None));
    let (endpoint, _task) =
        portvakt::server::start("127.0.0.1:0".parse().unwrap(), tls, admins, service).unwrap();
    let addr = endpoint.local_addr().unwrap().to_string();
    let data = dir.to_str().unwrap().to_owned();
    let common = [
        "run",
        "--server",
        &addr,
        "--data",
        &data,
        "--users",
        "50",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--json",
        "--quiet",
    ];

    // Closed loop, office sign-ins: the users are enrolled, and every answer is an allow.
    let report = tokio::task::spawn_blocking({
        let args: Vec<String> = common.iter().map(|s| s.to_string()).collect();
        move || {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.extend([
                "--enroll",
                "--connections",
                "1",
                "--streams",
                "2",
                "--depth",
                "4",
            ]);
            load(&args)
        }
    })
    .await
    .unwrap();
    assert_eq!(engine.directory().len(), 50);
    let answers = report["answers"].as_u64().unwrap();
    assert!(answers > 0);
    assert_eq!(report["mode"], "closed");
    assert_eq!(report["outcomes"]["allow"].as_u64(), Some(answers));
    assert_eq!(report["errors"], serde_json::json!({}));
    let l = &report["latency_us"];
    assert!(l["p50"].as_f64().unwrap() <= l["p99"].as_f64().unwrap());
    assert!(l["p99"].as_f64().unwrap() <= l["max"].as_f64().unwrap());

    // Open loop, wrong codes: denials and then locks, at the offered rate's count.
    let report = tokio::task::spawn_blocking({
        let args: Vec<String> = common.iter().map(|s| s.to_string()).collect();
        move || {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.extend(["--scenario", "wrong", "--rate", "2000"]);
            load(&args)
        }
    })
    .await
    .unwrap();
    assert_eq!(report["mode"], "open");
    let answers = report["answers"].as_u64().unwrap();
    // 2000/s for 0.5 s is 1000 requests due in the measured window (fewer only if the
    // pacer started late on a busy machine); every one is answered.
    assert!((500..=1000).contains(&answers), "{answers}");
    let o = &report["outcomes"];
    let deny = o["deny"].as_u64().unwrap_or(0);
    let locked = o["locked"].as_u64().unwrap_or(0);
    assert_eq!(deny + locked, answers, "{o}");
    assert!(
        locked > 0,
        "50 users and 1000 wrong codes must lock some: {o}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
