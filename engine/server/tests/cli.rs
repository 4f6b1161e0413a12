//! The command line as scripts use it: `portvakt serve` on its defaults in a fresh
//! directory, and `portvakt check --json` against it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

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
    let mut child = portvakt()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    // The first line names the address actually bound.
    let first = BufReader::new(stdout)
        .lines()
        .next()
        .expect("serve printed nothing")
        .unwrap();
    let addr = first.rsplit(' ').next().unwrap().to_owned();
    assert!(first.starts_with("portvakt serving QUIC"), "{first}");

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
    assert!(
        out.status.success(),
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
