//! The command line as scripts use it: `portvakt serve` on its defaults in a fresh
//! directory, and `portvakt check --json` against it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn portvakt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portvakt"))
}

#[test]
fn serve_then_check_json() {
    let dir = std::env::temp_dir().join(format!("portvakt-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A metrics port unlikely to be taken by another test run.
    let metrics_addr = format!("127.0.0.1:{}", 20_000 + std::process::id() % 20_000);
    let running = serve_in(&dir, &["--metrics", &metrics_addr]);
    let (server, addr) = (running.server, running.addr);

    let out = portvakt()
        .args([
            "check",
            "--tenant",
            "kommune",
            "--user",
            "kari@kommune.no",
            "--ip",
            "10.20.3.4",
            "--json",
            "--server",
            &addr,
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    // check exits by outcome: 5 for register.
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["outcome"], "register");
    assert_eq!(v["reason"], "no_methods");
    assert_eq!(v["rule"], "municipal-network-single-factor");
    assert_eq!(v["location"], "municipal-network");
    assert!(v["methods"].is_array());
    assert!(v["retry_after_s"].is_null());

    // The administrator path: add kari, enrol an app, prove it, add a second method.
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--server", &addr];
        all.extend_from_slice(args);
        let out = portvakt().args(&all).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let who = ["--tenant", "kommune", "--user", "kari@kommune.no"];
    assert!(admin(&[&["add-user"][..], &who].concat()).starts_with("user added"));
    let enrolled = admin(&[&["enroll-totp", "--qr-svg", "kari-qr.svg"][..], &who].concat());
    assert!(
        enrolled.contains('▀') || enrolled.contains('▄'),
        "a QR code is drawn in the terminal"
    );
    let svg = std::fs::read_to_string(dir.join("kari-qr.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("kari-qr.svg"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the QR code holds the secret");
    }
    let uri = enrolled
        .lines()
        .find_map(|l| l.strip_prefix("uri: "))
        .unwrap();
    assert!(
        uri.starts_with("otpauth://totp/kommune:kari%40kommune.no?secret="),
        "{uri}"
    );
    let secret = enrolled
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap();
    let method = enrolled.split_whitespace().nth(1).unwrap().to_owned();
    let key = portvakt_core::otp::OtpKey::new(
        portvakt_core::otp::Algorithm::Sha1,
        &data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .unwrap(),
    );
    let step = portvakt_server::clock::now().as_secs() / 30;
    let code = format!("{:06}", key.hotp(step, portvakt_core::otp::Digits::SIX));
    assert_eq!(
        admin(&[&["confirm", "--method", &method, "--code", &code][..], &who].concat()).trim(),
        "done"
    );
    admin(&[&["add-security-key"][..], &who].concat());
    let info = admin(&[&["user-info"][..], &who].concat());
    assert!(
        info.contains("authenticator_app, active (default)"),
        "{info}"
    );
    // A phone is proved with a code the administrator's tooling delivers.
    let added = admin(&[&["add-phone", "--number", "+4791234567"][..], &who].concat());
    let phone = added.split_whitespace().nth(1).unwrap().to_owned();
    let sent = admin(&[&["send-confirmation", "--method", &phone][..], &who].concat());
    // The first word after `prefix` on the line that starts with it.
    let word_after = |prefix: &str| {
        sent.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .to_owned()
    };
    let sms_code = word_after("deliver code ");
    let challenge = word_after("challenge: ");
    assert_eq!(challenge.len(), 32, "{sent}");
    let confirm_sent = |code: &str| {
        let args = [
            &[
                "admin",
                "--server",
                &addr,
                "confirm-sent",
                "--method",
                &phone,
            ][..],
            &["--challenge", &challenge, "--code", code],
            &who,
        ]
        .concat();
        portvakt().args(args).current_dir(&dir).output().unwrap()
    };
    let wrong = if sms_code == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert!(
        !confirm_sent(wrong).status.success(),
        "a wrong code is refused"
    );
    let right = confirm_sent(&sms_code);
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    let info = admin(&[&["user-info"][..], &who].concat());
    assert!(
        info.contains(&format!("method {phone}: sms, active")),
        "{info}"
    );
    // A malformed challenge is refused before anything is sent.
    let out = portvakt()
        .args(
            [
                &[
                    "admin",
                    "--server",
                    &addr,
                    "confirm-sent",
                    "--method",
                    &phone,
                ][..],
                &["--challenge", "xyz", "--code", "123456"],
                &who,
            ]
            .concat(),
        )
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--challenge is not hex"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        admin(&[&["set-groups", "--group", "legekontor"][..], &who].concat()).trim(),
        "done"
    );
    let info = admin(&[&["user-info"][..], &who].concat());
    assert!(info.contains("groups: legekontor"), "{info}");
    assert_eq!(admin(&[&["set-groups"][..], &who].concat()).trim(), "done");
    assert_eq!(
        admin(&[&["revoke-devices"][..], &who].concat()).trim(),
        "done"
    );
    assert_eq!(
        admin(&[&["remove-method", "--method", &phone][..], &who].concat()).trim(),
        "done"
    );
    let check = |ip: &str, code: Option<&str>| {
        let mut args = vec![
            "check",
            "--tenant",
            "kommune",
            "--user",
            "kari@kommune.no",
            "--ip",
            ip,
            "--json",
            "--server",
            &addr,
        ];
        if let Some(c) = code {
            args.extend_from_slice(&["--code", c]);
        }
        let out = portvakt().args(&args).current_dir(&dir).output().unwrap();
        let v = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check failed ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        // The exit status follows the outcome.
        let expected = match v["outcome"].as_str().unwrap() {
            "allow" => 0,
            "deny" => 2,
            "challenge" => 3,
            "locked" => 4,
            "register" => 5,
            "throttled" => 6,
            other => panic!("outcome {other}"),
        };
        assert_eq!(out.status.code(), Some(expected), "{v}");
        v
    };
    assert_eq!(
        check("10.20.3.4", None)["outcome"],
        "allow",
        "single factor on the municipal network"
    );
    let home = check("203.0.113.7", None);
    assert_eq!(home["outcome"], "challenge");
    assert_eq!(home["methods"][0]["kind"], "authenticator_app");
    // The code that proved the app is spent: it cannot sign in (if its step ended in the
    // meantime it is simply out of the window; either way it is refused).
    let replay = check("203.0.113.7", Some(&code));
    assert_eq!(replay["outcome"], "deny");
    assert!(
        replay["reason"] == "replayed_code" || replay["reason"] == "invalid_code",
        "{replay}"
    );
    // Without the administrator's key, administrator commands fail before anything is
    // sent (the server's refusal of frontend certificates is tested in tests/quic.rs).
    std::fs::rename(
        dir.join("portvakt-data/certs/admin.key"),
        dir.join("admin.key.away"),
    )
    .unwrap();
    let out = portvakt()
        .args([&["admin", "--server", &addr, "unlock"][..], &who].concat())
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::rename(
        dir.join("admin.key.away"),
        dir.join("portvakt-data/certs/admin.key"),
    )
    .unwrap();
    let out = portvakt()
        .args([&["admin", "--server", &addr, "add-user"][..], &who].concat())
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "portvakt: user exists already"
    );

    // Metrics: decisions by outcome and reason, a latency histogram with real buckets,
    // refused frames by code; no user names or addresses as labels.
    let body = {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&metrics_addr).unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).unwrap();
        body
    };
    assert!(
        body.contains(
            r#"portvakt_decisions_total{outcome="allow",reason="single_factor_allowed"} 1"#
        ),
        "{body}"
    );
    assert!(
        body.contains(
            r#"portvakt_decisions_total{outcome="challenge",reason="second_factor_required"} 1"#
        ),
        "{body}"
    );
    assert!(
        body.contains("portvakt_decision_seconds_bucket{le="),
        "{body}"
    );
    // Two refusals: the wrong confirmation code and the user added twice.
    assert!(
        body.contains(r#"portvakt_frames_refused_total{code="refused"} 2"#),
        "{body}"
    );
    // Counted at start (and every ten seconds): nobody is locked out yet.
    assert!(body.contains("portvakt_lockouts_active 0"), "{body}");
    assert!(!body.contains("kari"), "no user names in metrics");
    assert!(!body.contains("203.0.113"), "no addresses in metrics");

    // A bad argument and an unreachable server: one clear line, a non-zero exit.
    let out = portvakt()
        .args(["check", "--tenant", "t", "--user", "u", "--ip", "not-an-ip"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'not-an-ip'"));
    let out = portvakt()
        .args([
            "check",
            "--tenant",
            "t",
            "--user",
            "u",
            "--ip",
            "10.0.0.1",
            "--data",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("portvakt: /nonexistent/certs/ca.pem"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn sighup_reloads_the_policy_and_a_broken_file_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("portvakt-hup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let original = include_str!("../../../examples/kommune.toml");
    std::fs::write(dir.join("policy.toml"), original).unwrap();
    let Running {
        server: _server,
        addr,
        pid,
        out: out_rx,
        err: err_rx,
    } = serve_in(&dir, &["--metrics", "off", "--policy", "policy.toml"]);
    let wait = std::time::Duration::from_secs(30);
    let rule = || {
        let out = portvakt()
            .args([
                "check",
                "--tenant",
                "kommune",
                "--user",
                "nobody",
                "--ip",
                "10.20.3.4",
                "--json",
                "--server",
                &addr,
            ])
            .current_dir(&dir)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["rule"].as_str().unwrap().to_owned()
    };
    assert_eq!(rule(), "municipal-network-single-factor");
    let hup = || {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        )
    };

    std::fs::write(
        dir.join("policy.toml"),
        original.replace("municipal-network-single-factor", "office-renamed"),
    )
    .unwrap();
    hup();
    let line = out_rx
        .iter()
        .find(|l| l.starts_with("policy reloaded"))
        .unwrap();
    assert_eq!(line, "policy reloaded on SIGHUP (tenants: 1)");
    assert_eq!(rule(), "office-renamed");

    std::fs::write(
        dir.join("policy.toml"),
        "version = 1\n[[tenants]]\nname = 'x'\nsurprise = true\n",
    )
    .unwrap();
    hup();
    let err = err_rx.recv_timeout(wait).unwrap();
    assert!(
        err.starts_with(
            "portvakt: policy not reloaded, the running one stays in force: policy.toml:"
        ),
        "{err}"
    );
    assert_eq!(rule(), "office-renamed", "the running policy stays");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `portvakt serve` started by a test, with its output lines as they come.
struct Running {
    server: Server,
    /// The address it bound (named on its first line).
    addr: String,
    pid: String,
    out: Receiver<String>,
    err: Receiver<String>,
}

/// Starts `portvakt serve --listen 127.0.0.1:0 ARGS` in `dir`. Both outputs are drained
/// into channels, so the server never writes into a full or closed pipe.
fn serve_in(dir: &std::path::Path, args: &[&str]) -> Running {
    let mut child = portvakt()
        .args(["serve", "--listen", "127.0.0.1:0"])
        // The embedded RADIUS and HTTP examples' fixed ports would be taken by the first
        // of the tests' servers only: they are off unless a test names its own.
        .args(match args.contains(&"--radius") {
            true => &[][..],
            false => &["--radius", "off"][..],
        })
        .args(match args.contains(&"--http") {
            true => &[][..],
            false => &["--http", "off"][..],
        })
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |pipe: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            BufReader::new(pipe)
                .lines()
                .map_while(Result::ok)
                .for_each(|l| drop(tx.send(l)))
        });
        rx
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id().to_string();
    let server = Server(child);
    let first = out
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("serve printed nothing");
    assert!(first.starts_with("portvakt serving QUIC"), "{first}");
    Running {
        server,
        addr: first.rsplit(' ').next().unwrap().to_owned(),
        pid,
        out,
        err,
    }
}

/// Starts `portvakt serve` in `dir` without metrics; returns it and the address it bound.
fn start_in(dir: &std::path::Path) -> (Server, String) {
    let running = serve_in(dir, &["--metrics", "off"]);
    (running.server, running.addr)
}

#[test]
fn answered_sign_ins_survive_the_server_being_killed() {
    let dir = std::env::temp_dir().join(format!("portvakt-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        let out = portvakt().args(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let (server, addr) = start_in(&dir);
    for (user, ip) in [("kari@kommune.no", "10.20.3.4"), ("nobody", "203.0.113.9")] {
        let check = [
            "check", "--tenant", "kommune", "--user", user, "--ip", ip, "--server", &addr,
        ];
        // Both unknown, with a vouched-for password and no code: register, exit 5.
        let out = portvakt().args(check).current_dir(&dir).output().unwrap();
        assert_eq!(out.status.code(), Some(5), "{check:?}");
    }
    let sign_ins = |addr: &str| {
        run(&[
            "admin", "sign-ins", "--tenant", "kommune", "--json", "--server", addr,
        ])
    };
    let before = sign_ins(&addr);
    // SIGKILL: no chance to flush anything. Answers left only after their records were
    // written, so both must be there after a restart.
    drop(server);
    let (_server, addr) = start_in(&dir);
    let after = sign_ins(&addr);
    assert_eq!(before, after);
    let rows: Vec<serde_json::Value> = after
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{after}");
    assert_eq!(rows[0]["user"], "kari@kommune.no");
    assert_eq!(rows[0]["ip"], "10.20.3.4");
    assert_eq!(rows[0]["location"], "municipal-network");
    assert_eq!(rows[0]["rule"], "municipal-network-single-factor");
    assert_eq!(rows[0]["outcome"], "register");
    assert_eq!(rows[0]["purpose"], "sign_in");
    assert_eq!(rows[0]["frontend"], "quic");
    assert_eq!(rows[1]["user"], "nobody");
    assert_eq!(rows[1]["location"], "elsewhere");
    assert!(rows[1]["time"].as_str().unwrap().ends_with('Z'));
    // One user only; and the line format for people.
    let kari = run(&[
        "admin", "sign-ins", "--tenant", "kommune", "--user", "nobody", "--server", &addr,
    ]);
    assert_eq!(kari.lines().count(), 1, "{kari}");
    assert!(kari.contains("\"nobody\" 203.0.113.9 sign_in"), "{kari}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn import_checks_the_whole_file_then_adds_users_and_runs_again_safely() {
    let dir = std::env::temp_dir().join(format!("portvakt-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_server, addr) = start_in(&dir);
    let run = |args: &[&str]| {
        let mut all = vec!["admin", "--server", &addr];
        all.extend_from_slice(args);
        portvakt().args(&all).current_dir(&dir).output().unwrap()
    };
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    // One bad line: nothing is imported, and the line is named.
    std::fs::write(
        dir.join("bad.txt"),
        format!(
            "otpauth://totp/kommune:per?secret={secret}\notpauth://totp/kommune:pål?secret=XYZ\n"
        ),
    )
    .unwrap();
    let out = run(&["import", "bad.txt"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing imported") && err.contains("line 2:"),
        "{err}"
    );
    let out = run(&["user-info", "--tenant", "kommune", "--user", "per"]);
    assert!(!out.status.success(), "per was not added");

    std::fs::write(
        dir.join("users.csv"),
        format!(
            "user,groups,secret,type,counter\n\
             kari@kommune.no,legekontor,{secret},,\n\
             kari@kommune.no,,{secret},hotp,5\n\
             ola@kommune.no,,{secret},,\n\
             pål@kommune.no,,,,\n"
        ),
    )
    .unwrap();
    let out = run(&["import", "users.csv", "--tenant", "kommune"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "imported 3 users with 2 authenticator apps (active) and 1 hardware tokens (pending their first code)"
    );
    let info = run(&[
        "user-info",
        "--tenant",
        "kommune",
        "--user",
        "kari@kommune.no",
    ]);
    let info = String::from_utf8(info.stdout).unwrap();
    assert!(info.contains("groups: legekontor"), "{info}");
    assert!(info.contains("authenticator_app, active"), "{info}");
    assert!(info.contains("hardware_token, pending"), "{info}");
    // Again: everyone exists, nobody gets a second copy of a secret.
    let out = run(&["import", "users.csv", "--tenant", "kommune"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("imported 0 users"), "{text}");
    assert!(
        text.contains("3 users existed already and were skipped"),
        "{text}"
    );
    // With --add-methods the same file adds nothing either: every secret is there.
    let out = run(&[
        "import",
        "users.csv",
        "--tenant",
        "kommune",
        "--add-methods",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("3 secrets were registered for their users already"),
        "{text}"
    );
    let methods = |user: &str| {
        let out = run(&["--json", "user-info", "--tenant", "kommune", "--user", user]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["methods"].as_array().unwrap().len()
    };
    assert_eq!(
        (methods("kari@kommune.no"), methods("ola@kommune.no")),
        (2, 1)
    );

    // All or nothing: a second app for kari is fine, but ola's fifth new one is his sixth,
    // so nothing of the file stays (kari's app is undone, and so are ola's first four, and
    // the new user).
    let secrets: Vec<String> = (0..6)
        .map(|i| data_encoding::BASE32_NOPAD.encode(format!("another secret {i}").as_bytes()))
        .collect();
    let mut more = format!(
        "user,secret\nkari@kommune.no,{}\nnew@kommune.no,\n",
        secrets[0]
    );
    for s in &secrets[1..] {
        more.push_str(&format!("ola@kommune.no,{s}\n"));
    }
    std::fs::write(dir.join("more.csv"), more).unwrap();
    for parallel in ["1", "8"] {
        let out = run(&[
            "import",
            "more.csv",
            "--tenant",
            "kommune",
            "--add-methods",
            "--parallel",
            parallel,
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("nothing imported")
                && err.contains("line 8 (ola@kommune.no): a user may register at most 5")
                && err.contains("everything this import had done was undone"),
            "{err}"
        );
        assert_eq!(
            (methods("kari@kommune.no"), methods("ola@kommune.no")),
            (2, 1)
        );
        let out = run(&[
            "user-info",
            "--tenant",
            "kommune",
            "--user",
            "new@kommune.no",
        ]);
        assert!(!out.status.success(), "the new user was removed again");
    }
    // Without ola's extra apps it goes through, and says what it did.
    std::fs::write(
        dir.join("more.csv"),
        format!(
            "user,secret\nkari@kommune.no,{}\nnew@kommune.no,\n",
            secrets[0]
        ),
    )
    .unwrap();
    let out = run(&["import", "more.csv", "--tenant", "kommune", "--add-methods"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("imported 1 users with 0 authenticator apps"),
        "{text}"
    );
    assert!(
        text.contains(
            "added 1 authenticator apps (active) and 0 hardware tokens to 1 existing users"
        ),
        "{text}"
    );
    assert_eq!(methods("kari@kommune.no"), 3);
    let out = run(&[
        "--json",
        "import",
        "more.csv",
        "--tenant",
        "kommune",
        "--add-methods",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reply"], "imported");
    assert_eq!(
        (v["users"].as_u64(), v["already_registered"].as_u64()),
        (Some(0), Some(1))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_sends_and_answers_codes_and_admin_speaks_json() {
    let dir = std::env::temp_dir().join(format!("portvakt-codes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_server, addr) = start_in(&dir);
    let who = ["--tenant", "kommune", "--user", "ola@kommune.no"];
    // Every administrator command here answers one JSON object.
    let admin = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["admin", "--server", &addr, "--json"];
        all.extend_from_slice(args);
        all.extend_from_slice(&who);
        let out = portvakt().args(&all).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // `check --json` with extra arguments; the exit status is returned beside the answer.
    let check = |args: &[&str]| -> (Option<i32>, serde_json::Value) {
        let mut all = vec!["check", "--server", &addr, "--json", "--ip", "203.0.113.7"];
        all.extend_from_slice(args);
        all.extend_from_slice(&who);
        let out = portvakt().args(&all).current_dir(&dir).output().unwrap();
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), v)
    };

    assert_eq!(admin(&["add-user"])["reply"], "user_added");
    let enrolled = admin(&["enroll-totp", "--no-qr"]);
    assert_eq!(enrolled["reply"], "totp_enrolled");
    let key = portvakt_core::otp::OtpKey::new(
        portvakt_core::otp::Algorithm::Sha1,
        &data_encoding::BASE32_NOPAD
            .decode(enrolled["secret"].as_str().unwrap().as_bytes())
            .unwrap(),
    );
    let step = portvakt_server::clock::now().as_secs() / 30;
    let code = format!("{:06}", key.hotp(step, portvakt_core::otp::Digits::SIX));
    let app = enrolled["method"].to_string();
    assert_eq!(
        admin(&["confirm", "--method", &app, "--code", &code])["reply"],
        "done"
    );
    let phone = admin(&["add-phone", "--number", "+4791234567"])["method"].to_string();
    let sent = admin(&["send-confirmation", "--method", &phone]);
    assert_eq!(sent["reply"], "confirmation_sent");
    assert_eq!(sent["channel"], "sms");
    assert_eq!(sent["destination"], "+4791234567");
    let confirmed = admin(&[
        "confirm-sent",
        "--method",
        &phone,
        "--challenge",
        sent["challenge"].as_str().unwrap(),
        "--code",
        sent["code"].as_str().unwrap(),
    ]);
    assert_eq!(confirmed["reply"], "done");

    // From home, a second factor: ask for a text message, then answer it.
    let (status, asked) = check(&["--send-code", "--method", &phone]);
    assert_eq!(status, Some(3), "{asked}");
    assert_eq!(asked["outcome"], "challenge");
    assert_eq!(asked["reason"], "code_sent");
    assert_eq!(asked["delivery"]["channel"], "sms");
    assert_eq!(asked["delivery"]["destination"], "+4791234567");
    let challenge = asked["challenge"].as_str().unwrap().to_owned();
    let sms = asked["delivery"]["code"].as_str().unwrap().to_owned();
    assert_eq!(challenge.len(), 32);
    let wrong = if sms == "000000" { "111111" } else { "000000" };
    let (status, refused) = check(&["--challenge", &challenge, "--sent-code", wrong]);
    assert_eq!((status, &refused["outcome"]), (Some(2), &"deny".into()));
    let (status, allowed) = check(&["--challenge", &challenge, "--sent-code", &sms, "--remember"]);
    assert_eq!(status, Some(0), "{allowed}");
    assert_eq!(allowed["method"], "sms");
    assert!(allowed["device_token"]["token"].is_string(), "{allowed}");
    // The sent code is spent.
    let (status, _) = check(&["--challenge", &challenge, "--sent-code", &sms]);
    assert_eq!(status, Some(2));

    // An unknown name is answered as some user would be (a phantom's methods decide
    // whether that is a code sent or no phone to send to), and nothing is ever delivered.
    let mut nobody = vec![
        "check",
        "--server",
        &addr,
        "--json",
        "--ip",
        "203.0.113.7",
        "--send-code",
    ];
    nobody.extend_from_slice(&["--tenant", "kommune", "--user", "nobody@kommune.no"]);
    let out = portvakt().args(&nobody).current_dir(&dir).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["delivery"].is_null(), "{v}");
    match (out.status.code(), v["reason"].as_str()) {
        (Some(3), Some("code_sent")) => assert!(v["challenge"].is_string(), "{v}"),
        (Some(2), Some("method_not_allowed")) => assert!(v["challenge"].is_null(), "{v}"),
        other => panic!("{other:?}: {v}"),
    }

    // Security answers, for a password reset.
    assert_eq!(
        admin(&[
            "set-security-answers",
            "--answer",
            "Bodø",
            "--answer",
            "Rex"
        ])["reply"],
        "method_added"
    );
    let reset = ["--purpose", "password-reset"];
    let (status, v) = check(&[&reset[..], &["--answer", "bodø", "--answer", "rex"]].concat());
    assert_eq!(
        (status, &v["reason"]),
        (Some(0), &"reset_verified".into()),
        "{v}"
    );
    assert_eq!(v["method"], "security_questions");
    let (status, v) = check(&[&reset[..], &["--answer", "Oslo", "--answer", "Rex"]].concat());
    assert_eq!(status, Some(2), "{v}");
    // The arguments that cannot go together are refused before anything is sent.
    let out = portvakt()
        .args([
            "check",
            "--server",
            &addr,
            "--ip",
            "203.0.113.7",
            "--code",
            "123456",
        ])
        .args(["--answer", "x", "--tenant", "kommune", "--user", "ola"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));

    // user-info names app passwords and remembered devices by the ids that revoke them.
    let made = admin(&["app-password", "--label", "Outlook 2010"]);
    assert_eq!(made["reply"], "app_password_created");
    let info = admin(&["user-info"]);
    assert_eq!(info["reply"], "user");
    assert_eq!(info["methods"].as_array().unwrap().len(), 3, "{info}");
    assert_eq!(info["methods"][1]["kind"], "sms");
    assert_eq!(info["app_passwords"][0]["id"], made["id"]);
    assert_eq!(info["app_passwords"][0]["label"], "Outlook 2010");
    let devices = info["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{info}");
    let device = devices[0]["id"].to_string();
    assert!(devices[0]["expires_ms"].as_u64().unwrap() > 0);
    assert_eq!(admin(&["revoke-devices", "--id", &device])["reply"], "done");
    let app_password = made["id"].to_string();
    assert_eq!(
        admin(&["revoke-app-password", "--id", &app_password])["reply"],
        "done"
    );
    let info = admin(&["user-info"]);
    assert!(info["devices"].as_array().unwrap().is_empty(), "{info}");
    assert!(
        info["app_passwords"].as_array().unwrap().is_empty(),
        "{info}"
    );

    // A frontend presenting a certificate the server refuses is told so, and which.
    let other = dir.join("other-data");
    std::fs::create_dir_all(other.join("certs")).unwrap();
    for (from, to) in [
        ("ca.pem", "ca.pem"),
        ("server.pem", "frontend.pem"),
        ("server.key", "frontend.key"),
    ] {
        std::fs::copy(
            dir.join("portvakt-data/certs").join(from),
            other.join("certs").join(to),
        )
        .unwrap();
    }
    let out = portvakt()
        .args(["check", "--server", &addr, "--ip", "203.0.113.7", "--data"])
        .arg(&other)
        .args(who)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("portvakt: the server refused the certificate with SHA-256 fingerprint")
            && err.contains("certs/frontend.pem"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn secrets_are_sealed_with_the_master_key_and_another_key_refuses_to_start() {
    let dir = std::env::temp_dir().join(format!("portvakt-cli-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("portvakt-data");
    std::fs::create_dir_all(&data).unwrap();
    // A pepper kept in the clear, as an earlier version kept it.
    std::fs::write(data.join("pepper"), [9u8; 32]).unwrap();
    let running = serve_in(&dir, &["--metrics", "off"]);
    drop(running);
    let pepper = std::fs::read(data.join("pepper")).unwrap();
    assert!(
        pepper.starts_with(b"PVPEP"),
        "the pepper is sealed in its place"
    );
    assert!(!pepper.windows(32).any(|w| w == [9u8; 32]));
    let key = std::fs::read(data.join("master.key")).unwrap();
    assert_eq!(key.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The same key starts again; another one stops the start with a clear message, and the
    // key itself appears nowhere in it.
    drop(serve_in(&dir, &["--metrics", "off"]));
    let other = dir.join("other.key");
    std::fs::write(&other, [1u8; 32]).unwrap();
    let out = portvakt()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "off",
            "--radius",
            "off",
            "--http",
            "off",
            "--master-key",
        ])
        .arg(&other)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pepper") && err.contains("master key"),
        "{err}"
    );
    let missing = portvakt()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "off",
            "--radius",
            "off",
            "--http",
            "off",
            "--master-key",
            "nope.key",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.key"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_runs_the_radius_frontend_its_file_names_and_refuses_a_file_that_does_not_fit() {
    let dir = std::env::temp_dir().join(format!("portvakt-radius-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = |tenant: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\n[[clients]]\nname = \"vpn\"\nranges = [\"127.0.0.0/8\"]\nsecret_file = \"radius/vpn.secret\"\ntenant = \"{tenant}\"\nfirst_factor = \"nas\"\n"
        )
    };
    std::fs::write(dir.join("radius.toml"), config("kommune")).unwrap();
    let running = serve_in(&dir, &["--metrics", "off", "--radius", "radius.toml"]);
    let line = std::iter::from_fn(|| {
        running
            .out
            .recv_timeout(std::time::Duration::from_secs(30))
            .ok()
    })
    .find(|l| l.contains("RADIUS"))
    .expect("a line about RADIUS");
    assert!(
        line.contains("RADIUS on udp 127.0.0.1:") && line.contains("clients: vpn"),
        "{line}"
    );
    // The secret was made, in the data directory, for the administrator to copy.
    let secret = std::fs::read(dir.join("portvakt-data/radius/vpn.secret")).unwrap();
    assert_eq!(secret.len(), 32);
    drop(running);
    // A client of a tenant the policy lacks: the start is refused, naming both.
    std::fs::write(dir.join("radius.toml"), config("elsewhere")).unwrap();
    let out = portvakt()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "off",
            "--radius",
            "radius.toml",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"vpn\"") && err.contains("\"elsewhere\""),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
