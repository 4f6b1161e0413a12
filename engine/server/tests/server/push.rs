//! Push notifications through the webhook: a relay on loopback is told of each approval a
//! decision issues, and never of its number.

use std::sync::Arc;

use bytes::BytesMut;
use portvakt_core::admin::TotpSpec;
use portvakt_core::push::{self, Pairing};
use portvakt_core::secret::Pepper;
use portvakt_core::testing::SeededEntropy;
use portvakt_core::{FirstFactor, MemoryStore, Purpose, Request, Timestamp, config};
use portvakt_server::app::App;
use portvakt_server::push::Webhook;
use portvakt_store::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn engine() -> Engine {
    let policy = config::load(include_str!("../../../../examples/kommune.toml")).unwrap();
    let engine = Engine::new(
        policy,
        MemoryStore::default().into(),
        Pepper::new([4; 32]),
        Box::new(SeededEntropy::new(5)),
    );
    engine.add_user("kommune", "kari", &[], false).unwrap();
    engine
        .import_totp(
            "kommune",
            "kari",
            b"kari-app-secret-0000",
            TotpSpec::default(),
            true,
        )
        .unwrap();
    let key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
    let started = engine
        .enroll_push("kommune", "kari", Timestamp::from_secs(1_700_000_000))
        .unwrap();
    let public = ring::signature::KeyPair::public_key(&key).as_ref().to_vec();
    let token = started.token.expose().to_owned();
    let message = push::enrol_message("kommune", "kari", started.method, &token, &public);
    engine
        .pair_push(
            &Pairing {
                tenant: "kommune",
                user: "kari",
                method: started.method,
                token: &token,
                key: &public,
                signature: key.sign(&message).as_ref(),
            },
            Timestamp::from_secs(1_700_000_001),
        )
        .unwrap();
    engine
        .set_default_method("kommune", "kari", started.method)
        .unwrap();
    engine
}

#[tokio::test]
async fn the_relay_is_told_of_each_approval_but_not_its_number() {
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", relay.local_addr().unwrap());
    let webhook = Webhook::new(&url, Some("s3cret".into())).unwrap();
    let app = App::new(Arc::new(engine()), None).with_notifier(Box::new(webhook));
    let request = Request {
        tenant: "kommune",
        user: "kari",
        ip: "203.0.113.9".parse().unwrap(),
        purpose: Purpose::SignIn,
        first_factor: FirstFactor::Ok,
        proof: None,
        device_token: None,
        remember_device: false,
    };
    let d = app.decide(
        portvakt_server::app::Frontend::Quic,
        &request,
        Timestamp::from_secs(1_700_000_010),
        &mut BytesMut::new(),
    );
    let approval = d.approval.expect("an approval");
    let (mut conn, _) = relay.accept().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // Read until the body is whole (the request says its length).
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "the request ended early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            if body.len() >= len {
                break;
            }
        }
    }
    conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
    let text = String::from_utf8(got).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("POST /push HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nAuthorization: Bearer s3cret"), "{head}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["tenant"], "kommune");
    assert_eq!(json["user"], "kari");
    assert_eq!(json["approval"], approval.id.to_hex());
    assert_eq!(json["method"], approval.method.0);
    assert_eq!(json["expires_ms"], approval.expires.as_millis());
    assert_eq!(json.as_object().unwrap().len(), 5, "{json}");
    assert!(json.get("number").is_none());
}

#[test]
fn a_relay_url_is_checked_before_it_is_used() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in = rt.enter();
    for bad in [
        "https://relay:443/x",
        "http:///x",
        "http://relay/x",
        "http://r:1/a b",
    ] {
        assert!(Webhook::new(bad, None).is_err(), "{bad}");
    }
    assert!(Webhook::new("http://127.0.0.1:9/x", Some("a b".into())).is_err());
    assert!(Webhook::new("http://127.0.0.1:9/x", None).is_ok());
}
