//! `portvakt-load` against a real server on loopback: it enrols its users, drives both
//! loops, and its JSON report adds up.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;

use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{MemoryStore, config};
use portvakt_server::frontend::quic::service::Service;
use portvakt_server::pki::{ensure_dev_pki, fingerprint, load_certs, server_tls};
use portvakt_store::Engine;

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
        MemoryStore::default().into(),
        Pepper::new([1; 32]),
        Box::new(SeededEntropy::new(1)),
    );
    let engine = Arc::new(engine);
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).unwrap();
    let admins = HashSet::from([fingerprint(&load_certs(&files.admin.0).unwrap()[0])]);
    let service = Arc::new(Service::new(engine.clone(), None));
    let (endpoint, _task) = portvakt_server::frontend::quic::endpoint::start(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        admins,
        service,
        Default::default(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap().to_string();
    let data = dir.to_str().unwrap().to_owned();
    let common = [
        "run",
        "--server",
        &addr,
        "--data",
        &data,
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--json",
        "--quiet",
    ];

    // Fifty users, unless a run names its own.
    let run = |extra: &[&str]| {
        let users: &[&str] = if extra.contains(&"--users") {
            &[]
        } else {
            &["--users", "50"]
        };
        let args: Vec<String> = common
            .iter()
            .chain(users)
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        tokio::task::spawn_blocking(move || {
            load(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };

    // Closed loop, office sign-ins: the users are enrolled, and every answer is an allow.
    let report = run(&[
        "--enroll",
        "--connections",
        "1",
        "--streams",
        "2",
        "--depth",
        "4",
    ])
    .await
    .unwrap();
    assert_eq!(engine.directory().len(), 50);
    let answers = report["answers"].as_u64().unwrap();
    assert!(answers > 0);
    assert_eq!(report["mode"], "closed");
    assert_eq!(report["outcomes"]["allow"].as_u64(), Some(answers));
    assert_eq!(report["errors"], serde_json::json!({}));
    assert_eq!(report["generator_saturated"], 0);
    let l = &report["latency_us"];
    assert!(l["p50"].as_f64().unwrap() <= l["p99"].as_f64().unwrap());
    assert!(l["p99"].as_f64().unwrap() <= l["max"].as_f64().unwrap());
    // The distribution rises with the percentile and ends at the maximum.
    let points = report["distribution"].as_array().unwrap();
    assert!(points.len() >= 2);
    let latency = |p: &serde_json::Value| p["latency_us"].as_f64().unwrap();
    assert!(points.windows(2).all(|w| latency(&w[0]) <= latency(&w[1])));
    assert_eq!(latency(points.last().unwrap()), l["max"].as_f64().unwrap());
    let closed = dir.join("closed.json");
    std::fs::write(&closed, report.to_string()).unwrap();

    // Replays, with a plot: each code is sent twice in a row, and a code is accepted once
    // per user and step, so at least every second answer is a replay refusal and the
    // rest are allows. (The warm-up already spent most codes of this step.)
    let plot = dir.join("replay.svg");
    let report = run(&[
        "--scenario",
        "replay",
        "--rate",
        "1000",
        "--plot",
        plot.to_str().unwrap(),
    ])
    .await
    .unwrap();
    let answers = report["answers"].as_u64().unwrap();
    let r = &report["reasons"];
    let replays = r["replayed_code"].as_u64().unwrap_or(0);
    let verified = r["second_factor_verified"].as_u64().unwrap_or(0);
    assert!(replays >= answers / 2, "{r}");
    assert_eq!(replays + verified, answers, "{r}");
    assert_eq!(report["outcomes"]["deny"].as_u64(), Some(replays));
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 1);
    let replay = dir.join("replay.json");
    std::fs::write(&replay, report.to_string()).unwrap();

    // Both runs in one plot, one of them labelled.
    let both = dir.join("both.svg");
    let status = Command::new(env!("CARGO_BIN_EXE_portvakt-load"))
        .args(["plot", "--out", both.to_str().unwrap()])
        .arg(&closed)
        .arg(format!("replays={}", replay.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let svg = std::fs::read_to_string(&both).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2);
    assert!(svg.contains(">replays<") && svg.contains("office, closed loop"));

    // Open loop, wrong codes: denials and then locks, at the offered rate's count.
    let report = run(&["--scenario", "wrong", "--rate", "2000"])
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

    // A brute-force burst on eight users: they are locked, whatever the guesses.
    let report = run(&["--scenario", "brute-force", "--rate", "1000"])
        .await
        .unwrap();
    let o = &report["outcomes"];
    let locked = o["locked"].as_u64().unwrap_or(0);
    assert!(locked > 0, "{o}");
    assert_eq!(o["allow"], serde_json::Value::Null, "{o}");

    // Password spraying from one address over 1000 users: the measured half second tries
    // users 100 to 599, none of whom exists. The address's failure limit (100 in the
    // policy) locks it out, whichever user it tries. (The warm-up's 100 requests use up
    // most or all of the limit; requests race over the connections, so a few may still
    // be counted.)
    let spray = ["--scenario", "spray", "--rate", "1000", "--users", "1000"];
    let report = run(&spray).await.unwrap();
    let r = &report["reasons"];
    let count = |k: &str| r[k].as_u64().unwrap_or(0);
    let answers = report["answers"].as_u64().unwrap();
    assert!(count("first_factor_failed") <= 100, "{report}");
    assert!(count("source_limited") >= answers - 100, "{report}");
    assert_eq!(
        count("first_factor_failed") + count("source_limited"),
        answers
    );

    // Offered far more than one request in flight can carry: the generator says it was
    // saturated instead of queueing without bound, and still reports what was answered.
    let report = run(&[
        "--scenario",
        "office",
        "--rate",
        "200000",
        "--max-in-flight",
        "1",
    ])
    .await
    .unwrap();
    let saturated = report["generator_saturated"].as_u64().unwrap();
    assert!(saturated > 0, "{report}");
    assert_eq!(
        report["errors"]["not sent: generator saturated"].as_u64(),
        Some(saturated)
    );
    assert!(report["answers"].as_u64().unwrap() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
