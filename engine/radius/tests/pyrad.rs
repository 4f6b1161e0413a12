//! The codec against another implementation, PyPI's pyrad 2.6, through
//! `tests/radius/pyrad_peer.py`: pyrad's Access-Request (Message-Authenticator first,
//! User-Password hidden) verifies and reveals here, and a reply signed here passes
//! pyrad's own checks with a Message-Authenticator required. `PORTVAKT_PYRAD` names a
//! Python with pyrad installed (`.ci/run` makes one); without it the test says so and
//! passes, unless `PORTVAKT_REQUIRE_PYRAD` is set, as `.ci/run` sets it.

use portvakt_radius::{Attribute, Packet, attr, code, reveal_password};

fn peer(args: &[&str]) -> Option<String> {
    let Some(python) = std::env::var_os("PORTVAKT_PYRAD") else {
        assert!(
            std::env::var_os("PORTVAKT_REQUIRE_PYRAD").is_none(),
            "PORTVAKT_PYRAD is not set, and the test is required"
        );
        eprintln!("no PORTVAKT_PYRAD: the differential RADIUS test is skipped");
        return None;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/radius/pyrad_peer.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyrad_peer.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn pyrad_and_this_codec_agree() {
    let secret = "a shared secret";
    for password in [
        "arctangent",
        "",
        "a password that is longer than sixteen bytes, ø",
    ] {
        let Some(request) = peer(&["request", secret, "nemo", password]) else {
            return;
        };
        let raw = unhex(&request);
        let p = Packet::decode(&raw).unwrap();
        assert_eq!(p.code, code::ACCESS_REQUEST);
        assert_eq!(p.attributes[0].kind, attr::MESSAGE_AUTHENTICATOR);
        assert_eq!(Packet::verify_request(&raw, secret.as_bytes()), Ok(true));
        assert_eq!(Packet::verify_request(&raw, b"another secret"), Ok(false));
        let hidden = p.get(attr::USER_PASSWORD).unwrap();
        assert_eq!(
            reveal_password(hidden, secret.as_bytes(), &p.authenticator).unwrap(),
            password.as_bytes()
        );
        // Replies signed here, as pyrad checks them.
        for reply_code in [
            code::ACCESS_ACCEPT,
            code::ACCESS_REJECT,
            code::ACCESS_CHALLENGE,
        ] {
            let reply = Packet {
                code: reply_code,
                identifier: p.identifier,
                authenticator: [0; 16],
                attributes: vec![
                    Attribute {
                        kind: attr::REPLY_MESSAGE,
                        value: b"Enter the code from your app",
                    },
                    Attribute {
                        kind: attr::STATE,
                        value: &[9; 16],
                    },
                ],
            };
            let signed = reply
                .sign_reply(&p.authenticator, secret.as_bytes())
                .unwrap();
            let verdict = peer(&["verify", secret, &request, &hex(&signed)]).unwrap();
            assert_eq!(verdict, "ok", "code {reply_code}");
            // Signed with another secret, pyrad refuses it.
            let wrong = reply.sign_reply(&p.authenticator, b"not it").unwrap();
            let verdict = peer(&["verify", secret, &request, &hex(&wrong)]).unwrap();
            assert_eq!(verdict, "bad", "code {reply_code}");
        }
    }
}
