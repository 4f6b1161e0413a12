//! Real RADIUS peers of the RADIUS frontend: FreeRADIUS's `radclient`, PyPI's pyrad,
//! Linux PAM's `pam_radius_auth` driven by `pamtester` through a password, a challenge
//! and a code, and FreeRADIUS itself, as the upstream server that checks passwords and
//! as a proxy in front of Portvakt (which adds a Proxy-State to what it forwards).
//!
//! Each test looks for its peer and is skipped (saying so) when it is missing, unless
//! `PORTVAKT_REQUIRE_RADIUS_PEERS=1` (radclient, pamtester, freeradius) or
//! `PORTVAKT_REQUIRE_PYRAD=1`
//! (pyrad, through the Python named by `PORTVAKT_PYRAD`) asks for it; `.ci/run` installs
//! them all. The PAM test writes a service to `/etc/pam.d`, so it needs root.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::radius::{
    FreeRadius, OLD_PAM, PASSWORD, PROXY, Role, SECRET, UPSTREAM_SECRET, fixture, fixture_with,
};
use common::{code_now, enrol};

/// Whether `tool` is on the PATH; panics if it is missing and required.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("PORTVAKT_REQUIRE_RADIUS_PEERS").is_none(),
            "{tool} is missing, and PORTVAKT_REQUIRE_RADIUS_PEERS asks for it"
        );
        eprintln!("no {tool}: skipped");
    }
    found
}

/// Runs `command` with `input` on its standard input: whether it succeeded, and what it
/// wrote to both outputs.
fn run(mut command: Command, input: &str) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// radclient's verdict and output for `lines` (attribute lines) sent to `server`.
fn radclient(server: std::net::SocketAddr, lines: &str) -> (bool, String) {
    let mut command = Command::new("radclient");
    command
        .args(["-x", "-r", "1", "-t", "5"])
        .arg(server.to_string())
        .arg("auth")
        .arg(std::str::from_utf8(SECRET).unwrap());
    run(command, lines)
}

/// The hex after `State = 0x` in radclient's output.
fn state_in(out: &str) -> Option<String> {
    let at = out.find("State = 0x")? + "State = 0x".len();
    Some(
        out[at..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_gets_accept_reject_and_challenge() {
    if !have("radclient") {
        return;
    }
    let f = fixture("radclient").await;
    enrol(&f.client(true).await, "kari@kommune.no")
        .await
        .unwrap();
    let server = f.radius;
    let ask = move |lines: String| tokio::task::spawn_blocking(move || radclient(server, &lines));
    let home = "Calling-Station-Id = \"203.0.113.9\"\nMessage-Authenticator = 0x00\n";
    // No code: a challenge (radclient exits non-zero on one) with State and Reply-Message.
    let (ok, out) = ask(format!("User-Name = \"kari@kommune.no\"\n{home}"))
        .await
        .unwrap();
    assert!(!ok && out.contains("Received Access-Challenge"), "{out}");
    assert!(out.contains("Reply-Message = \"Enter the code"), "{out}");
    let state = state_in(&out).expect("a State");
    // The code in answer, with the State: in.
    let code = code_now("kari@kommune.no");
    let (ok, out) = ask(format!(
        "User-Name = \"kari@kommune.no\"\nUser-Password = \"{code}\"\nState = 0x{state}\n{home}"
    ))
    .await
    .unwrap();
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    // The same code again: replayed, refused.
    let (ok, out) = ask(format!(
        "User-Name = \"kari@kommune.no\"\nUser-Password = \"{code}\"\n{home}"
    ))
    .await
    .unwrap();
    assert!(!ok && out.contains("Received Access-Reject"), "{out}");
    assert!(out.contains("The sign-in was refused."), "{out}");
    // Without the Message-Authenticator line radclient sends none: no answer at all.
    let (ok, out) = ask(format!(
        "User-Name = \"kari@kommune.no\"\nUser-Password = \"{code}\"\nCalling-Station-Id = \"203.0.113.9\"\n"
    ))
    .await
    .unwrap();
    assert!(!ok && !out.contains("Received"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyrad_requires_and_checks_our_message_authenticator() {
    let Some(python) = std::env::var_os("PORTVAKT_PYRAD") else {
        assert!(
            std::env::var_os("PORTVAKT_REQUIRE_PYRAD").is_none(),
            "PORTVAKT_PYRAD is not set, and the test is required"
        );
        eprintln!("no PORTVAKT_PYRAD: skipped");
        return;
    };
    let f = fixture("pyrad").await;
    enrol(&f.client(true).await, "kari@kommune.no")
        .await
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("radius/pyrad_peer.py");
    let port = f.radius.port().to_string();
    let ask = move |user: &str, password: String, state: Option<String>| {
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .args(["ask", "127.0.0.1", &port])
            .arg(std::str::from_utf8(SECRET).unwrap())
            .args([user, &password]);
        if let Some(s) = state {
            cmd.arg(s);
        }
        tokio::task::spawn_blocking(move || {
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
    };
    let challenge = ask("kari@kommune.no", String::new(), None).await.unwrap();
    let mut parts = challenge.trim().splitn(3, ' ');
    assert_eq!(parts.next(), Some("11"), "{challenge}");
    let state = parts.next().unwrap().to_owned();
    assert_eq!(state.len(), 86, "{challenge}");
    assert!(parts.next().unwrap().starts_with("Enter the code"));
    let accepted = ask("kari@kommune.no", code_now("kari@kommune.no"), Some(state))
        .await
        .unwrap();
    assert!(accepted.starts_with("2 - "), "{accepted}");
    let refused = ask("nobody@kommune.no", "123456".into(), None)
        .await
        .unwrap();
    assert_eq!(refused.trim(), "3 - The sign-in was refused.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pam_radius_auth_signs_in_through_password_challenge_and_code() {
    if !have("pamtester") {
        return;
    }
    let module = [
        "/lib/x86_64-linux-gnu/security/pam_radius_auth.so",
        "/lib/security/pam_radius_auth.so",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    let Some(module) = module else {
        assert!(
            std::env::var_os("PORTVAKT_REQUIRE_RADIUS_PEERS").is_none(),
            "pam_radius_auth.so is missing, and PORTVAKT_REQUIRE_RADIUS_PEERS asks for it"
        );
        eprintln!("no pam_radius_auth: skipped");
        return;
    };
    let service = format!("portvakt-radius-test-{}", std::process::id());
    let pam_file = Path::new("/etc/pam.d").join(&service);
    let conf = std::env::temp_dir().join(format!("{service}.conf"));
    if std::fs::write(&pam_file, "").is_err() {
        assert!(
            std::env::var_os("PORTVAKT_REQUIRE_RADIUS_PEERS").is_none(),
            "/etc/pam.d is not writable, and PORTVAKT_REQUIRE_RADIUS_PEERS asks for the PAM test"
        );
        eprintln!("/etc/pam.d is not writable: skipped");
        return;
    }
    struct Cleanup(Vec<std::path::PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let _cleanup = Cleanup(vec![pam_file.clone(), conf.clone()]);
    let f = fixture("pam").await;
    enrol(&f.client(true).await, "kari@kommune.no")
        .await
        .unwrap();
    std::fs::write(
        &pam_file,
        format!(
            "auth required {module} conf={}\naccount required pam_permit.so\n",
            conf.display()
        ),
    )
    .unwrap();
    // server secret timeout source: the module sends from the old-pam client's address.
    std::fs::write(
        &conf,
        format!(
            "127.0.0.1:{} {} 10 {OLD_PAM}\n",
            f.radius.port(),
            std::str::from_utf8(SECRET).unwrap()
        ),
    )
    .unwrap();
    let pamtester = |answers: String| {
        let service = service.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new("pamtester");
            command.args(["-v", &service, "kari@kommune.no", "authenticate"]);
            run(command, &answers)
        })
    };
    let password = std::str::from_utf8(PASSWORD).unwrap();
    let (ok, out) = pamtester(format!("{password}\n{}\n", code_now("kari@kommune.no")))
        .await
        .unwrap();
    assert!(ok && out.contains("successfully authenticated"), "{out}");
    assert!(
        out.contains("Enter the code"),
        "the challenge's message was shown: {out}"
    );
    // A wrong code after the right password: refused.
    let (ok, out) = pamtester(format!("{password}\n000000\n")).await.unwrap();
    assert!(!ok, "{out}");
    // A wrong password: refused before any challenge.
    let (ok, out) = pamtester("wrong horse\n".into()).await.unwrap();
    assert!(!ok && !out.contains("Enter the code"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeradius_checks_the_passwords_upstream() {
    if !have("freeradius") || !have("radclient") {
        return;
    }
    let upstream_secret = std::str::from_utf8(UPSTREAM_SECRET).unwrap();
    let password = std::str::from_utf8(PASSWORD).unwrap();
    let users = format!("kari@kommune.no Cleartext-Password := \"{password}\"\n");
    let upstream = FreeRadius::start("upstream", upstream_secret, Role::Users(&users));
    // Debian 12's FreeRADIUS (3.2.1) sends no Message-Authenticator in its replies: one
    // client as configured by default, which refuses such replies, and one with the switch.
    let more = format!(
        r#"
[[clients]]
name = "freeradius-strict"
ranges = ["127.0.0.10/32"]
secret_file = "radius/clients.secret"
tenant = "kommune"
first_factor = "upstream-then-challenge"
upstream = {{ address = "{0}", secret_file = "radius/upstream.secret", timeout_ms = 300, attempts = 1 }}

[[clients]]
name = "freeradius-old"
ranges = ["127.0.0.11/32"]
secret_file = "radius/clients.secret"
tenant = "kommune"
first_factor = "upstream-then-challenge"
upstream = {{ address = "{0}", secret_file = "radius/upstream.secret", dangerous_accept_replies_without_message_authenticator = true }}
"#,
        upstream.addr
    );
    let f = fixture_with("freeradius-upstream", &more).await;
    enrol(&f.client(true).await, "kari@kommune.no")
        .await
        .unwrap();
    let strict = f.nas("127.0.0.10").await;
    let old = f.nas("127.0.0.11").await;
    let with = |password: &'static [u8]| common::radius::Extra {
        password: Some(password),
        ..Default::default()
    };
    let r = strict.ask("kari@kommune.no", &with(PASSWORD)).await;
    assert_eq!(
        (r.code, r.message.as_str()),
        (
            portvakt_radius::code::ACCESS_REJECT,
            "The sign-in cannot be completed now. Try again later."
        ),
        "a reply without a Message-Authenticator is not trusted"
    );
    let r = old.ask("kari@kommune.no", &with(b"wrong horse")).await;
    assert_eq!(r.code, portvakt_radius::code::ACCESS_REJECT, "{r:?}");
    let c = old.ask("kari@kommune.no", &with(PASSWORD)).await;
    assert_eq!(c.code, portvakt_radius::code::ACCESS_CHALLENGE, "{c:?}");
    let code = code_now("kari@kommune.no");
    let r = old
        .ask(
            "kari@kommune.no",
            &common::radius::Extra {
                password: Some(code.as_bytes()),
                state: c.state.as_deref(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(r.code, portvakt_radius::code::ACCESS_ACCEPT, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_freeradius_proxy_its_proxy_state_and_all() {
    if !have("freeradius") || !have("radclient") {
        return;
    }
    let f = fixture("freeradius-proxy").await;
    enrol(&f.client(true).await, "kari@kommune.no")
        .await
        .unwrap();
    let proxy = FreeRadius::start(
        "proxy",
        std::str::from_utf8(SECRET).unwrap(),
        Role::Proxy {
            home: f.radius,
            secret: std::str::from_utf8(SECRET).unwrap(),
            source: PROXY,
        },
    );
    let addr = proxy.addr;
    let ask = move |lines: String| tokio::task::spawn_blocking(move || radclient(addr, &lines));
    let home = "Calling-Station-Id = \"203.0.113.9\"\nMessage-Authenticator = 0x00\n";
    let (ok, out) = ask(format!("User-Name = \"kari@kommune.no\"\n{home}"))
        .await
        .unwrap();
    assert!(!ok && out.contains("Received Access-Challenge"), "{out}");
    let state = state_in(&out).expect("a State");
    let code = code_now("kari@kommune.no");
    let (ok, out) = ask(format!(
        "User-Name = \"kari@kommune.no\"\nUser-Password = \"{code}\"\nState = 0x{state}\n{home}"
    ))
    .await
    .unwrap();
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    // From the office network, as the NAS behind the proxy reports it: no code.
    let (ok, out) = ask(
        "User-Name = \"kari@kommune.no\"\nCalling-Station-Id = \"10.20.1.5\"\nMessage-Authenticator = 0x00\n".into(),
    )
    .await
    .unwrap();
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
    // The proxy signs its own hop: even for a NAS that sent no Message-Authenticator,
    // what reaches Portvakt carries one beside the Proxy-State, and is answered.
    let (ok, out) =
        ask("User-Name = \"kari@kommune.no\"\nCalling-Station-Id = \"10.20.1.5\"\n".into())
            .await
            .unwrap();
    assert!(ok && out.contains("Received Access-Accept"), "{out}");
}
