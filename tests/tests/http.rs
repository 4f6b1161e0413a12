//! The HTTP frontend over real HTTPS: privacyIDEA's `/validate/check` as its plugins
//! send it, Portvakt's JSON API, who may call, and hostile requests.

mod common;

use std::time::Duration;

use common::http::{ADMIN_KEY, CLOSED, Cert, FRONTEND_KEY, OPEN, fixture};
use common::{code_now, enrol};
use serde_json::json;

const HOME: &str = "203.0.113.9";
const OFFICE: &str = "10.20.1.5";

async fn with_users(name: &str, users: &[&str]) -> common::http::Fixture {
    let f = fixture(name, 64).await;
    let admin = f.admin().await;
    for u in users {
        enrol(&admin, u).await.unwrap();
    }
    f
}

/// The parts of a privacyIDEA answer that do not change from call to call.
fn stable(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove("time");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_check_accepts_rejects_and_refuses_a_replay() {
    let f = with_users("pi-accept", &["kari@kommune.no"]).await;
    let code = code_now("kari@kommune.no");
    let r = f
        .validate(&[
            ("user", "kari@kommune.no"),
            ("pass", &code),
            ("client", HOME),
        ])
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .contains(&("content-type".into(), "application/json".into()))
    );
    let v = r.json();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 2);
    assert_eq!(
        v["result"],
        json!({"status": true, "value": true, "authentication": "ACCEPT"})
    );
    assert_eq!(v["detail"]["type"], "totp");
    assert!(v["time"].is_f64());
    // Replayed, and wrong: the same refusal.
    for pass in [code.as_str(), "000000"] {
        let v = f
            .validate(&[
                ("user", "kari@kommune.no"),
                ("pass", pass),
                ("client", HOME),
            ])
            .await
            .json();
        assert_eq!(
            v["result"],
            json!({"status": true, "value": false, "authentication": "REJECT"})
        );
        assert_eq!(v["detail"]["message"], "wrong otp value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_answered_as_a_known_user_with_a_wrong_code() {
    // An unknown name is decided as a phantom user (docs/design.md): like kari, who has
    // an app, or like ny, who has registered nothing yet. Every unknown name's answer is
    // one of those two known users' answers, byte for byte but the time.
    let f = with_users("pi-enumerate", &["kari@kommune.no"]).await;
    f.admin()
        .await
        .admin(portvakt_wire::Admin::AddUser {
            tenant: portvakt_wire::admin::Str("kommune"),
            user: portvakt_wire::admin::Str("ny@kommune.no"),
            groups: portvakt_wire::admin::StrList(vec![]),
            passwordless: false,
        })
        .await
        .unwrap();
    let ask = |user: String| {
        let f = &f;
        async move {
            f.validate(&[("user", &user), ("pass", "123456"), ("client", HOME)])
                .await
        }
    };
    let known = [
        ask("kari@kommune.no".into()).await,
        ask("ny@kommune.no".into()).await,
    ];
    let shapes: Vec<_> = known
        .iter()
        .map(|a| (a.status, stable(&a.json())))
        .collect();
    assert_ne!(shapes[0], shapes[1], "the two known kinds of user differ");
    for i in 0..32 {
        let unknown = ask(format!("nobody-{i}@kommune.no")).await;
        let shape = (unknown.status, stable(&unknown.json()));
        assert!(shapes.contains(&shape), "{shape:?}");
        // Even the body's length (the time aside, which has a fixed shape).
        let like = &known[shapes.iter().position(|s| *s == shape).unwrap()];
        assert!(like.body.len().abs_diff(unknown.body.len()) <= 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_pass_gets_a_challenge_and_its_transaction_completes_it() {
    let f = with_users("pi-challenge", &["kari@kommune.no"]).await;
    let v = f
        .validate(&[("user", "kari@kommune.no"), ("pass", ""), ("client", HOME)])
        .await
        .json();
    assert_eq!(v["result"]["authentication"], "CHALLENGE", "{v}");
    assert_eq!(v["result"]["value"], false);
    let t = v["detail"]["transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(v["detail"]["multi_challenge"][0]["transaction_id"], t);
    assert_eq!(
        v["detail"]["multi_challenge"][0]["client_mode"],
        "interactive"
    );
    assert!(v["detail"]["message"].as_str().unwrap().contains("code"));
    // The transaction is kari's: not ola's, and not with a byte changed.
    let code = code_now("kari@kommune.no");
    let mut forged = t.clone().into_bytes();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for (user, transaction) in [
        ("ola@kommune.no", t.as_str()),
        ("kari@kommune.no", forged.as_str()),
    ] {
        let v = f
            .validate(&[
                ("user", user),
                ("pass", &code),
                ("transaction_id", transaction),
                ("client", HOME),
            ])
            .await
            .json();
        assert_eq!(v["result"]["authentication"], "REJECT", "{v}");
    }
    // `state` is its other name.
    let v = f
        .validate(&[
            ("user", "kari@kommune.no"),
            ("pass", &code),
            ("state", &t),
            ("client", HOME),
        ])
        .await
        .json();
    assert_eq!(v["result"]["authentication"], "ACCEPT", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_merge_and_decode_as_privacyidea_s() {
    let f = with_users("pi-params", &["kari@kommune.no", "ola"]).await;
    // The query string (a GET), and a JSON body.
    let code = code_now("kari@kommune.no");
    let v = f
        .send(
            "GET",
            &format!("/validate/check?user=kari%40kommune.no&pass={code}&client={HOME}"),
            &[],
            b"",
        )
        .await
        .json();
    assert_eq!(v["result"]["authentication"], "ACCEPT", "{v}");
    let ola = code_now("ola");
    let v = f
        .send(
            "POST",
            "/validate/check",
            &["Content-Type: application/json"],
            json!({"user": "ola@kommune", "pass": ola, "client": HOME})
                .to_string()
                .as_bytes(),
        )
        .await
        .json();
    assert_eq!(
        v["result"]["authentication"], "ACCEPT",
        "user@realm splits at a realm: {v}"
    );
    // Form values are decoded once more, as privacyIDEA does, except for its own
    // plugins that encode once: "kari%2540kommune.no" is kari for one and nobody for
    // the other.
    let twice = "user=kari%2540kommune.no&pass=123456&client=203.0.113.9";
    for (agent, expect) in [
        ("privacyidea-cp/2.0", "nobody"),
        ("curl/8.0", "kari@kommune.no"),
    ] {
        let _ = f
            .send(
                "POST",
                "/validate/check",
                &[
                    "Content-Type: application/x-www-form-urlencoded",
                    &format!("User-Agent: {agent}"),
                ],
                twice.as_bytes(),
            )
            .await;
        let rows = common::sign_ins(&f.admin().await, "").await;
        let last = rows.last().unwrap();
        match expect {
            "nobody" => assert_eq!(last["user"], "kari%40kommune.no", "{agent}"),
            user => assert_eq!(last["user"], user, "{agent}"),
        }
        assert_eq!(last["frontend"], "http");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_clear_errors_and_count_nothing() {
    let f = with_users("pi-errors", &["kari@kommune.no"]).await;
    let missing = f.validate(&[("user", "kari@kommune.no")]).await;
    assert_eq!(missing.status, 400);
    let v = missing.json();
    assert_eq!(v["result"]["status"], false);
    assert_eq!(
        v["result"]["error"],
        json!({"code": 905, "message": "ERR905: Missing parameter: 'pass'"})
    );
    assert_eq!(f.validate(&[("pass", "123456")]).await.status, 400);
    let long = "1".repeat(257);
    let v = f
        .validate(&[("user", "kari@kommune.no"), ("pass", &long)])
        .await;
    assert_eq!(v.status, 400);
    assert!(
        v.json()["result"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than 256")
    );
    let long_user = "k".repeat(129);
    let v = f.validate(&[("user", &long_user), ("pass", "1")]).await;
    assert_eq!(v.status, 400);
    let v = f
        .validate(&[
            ("user", "kari@kommune.no"),
            ("pass", "1"),
            ("realm", "nowhere"),
        ])
        .await;
    assert_eq!(
        (v.status, v.json()["result"]["error"]["code"].clone()),
        (400, json!(904))
    );
    let v = f
        .send(
            "POST",
            "/validate/check",
            &["Content-Type: application/json"],
            b"{\"user\": \"kari\", \"pass\": ",
        )
        .await;
    assert_eq!(v.status, 400);
    let v = f
        .send(
            "POST",
            "/validate/check",
            &["Content-Type: application/json"],
            b"{\"user\": \"kari\", \"pass\": 123456}",
        )
        .await;
    assert_eq!(v.status, 400, "a number is not a pass");
    // None of it was decided: the log is empty.
    assert!(common::sign_ins(&f.admin().await, "").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_parameter_is_believed_from_trusted_proxies_only() {
    let f = with_users("pi-client", &["kari@kommune.no"]).await;
    // From the trusted proxy: the office network, no code needed.
    let v = f
        .validate(&[
            ("user", "kari@kommune.no"),
            ("pass", ""),
            ("client", OFFICE),
        ])
        .await
        .json();
    assert_eq!(v["result"]["authentication"], "ACCEPT", "{v}");
    // From elsewhere (with the frontend key): ignored, the caller's own address counts.
    let body = format!("user=kari%40kommune.no&pass=&client={OFFICE}");
    let v = f
        .send_as(
            CLOSED,
            Cert::None,
            "POST",
            "/validate/check",
            &[
                "Content-Type: application/x-www-form-urlencoded",
                &format!("Authorization: Bearer {FRONTEND_KEY}"),
            ],
            body.as_bytes(),
        )
        .await
        .json();
    assert_eq!(v["result"]["authentication"], "CHALLENGE", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_known_by_address_certificate_or_key() {
    let f = with_users("callers", &["kari@kommune.no"]).await;
    let decide = json!({"tenant": "kommune", "user": "kari@kommune.no", "ip": OFFICE});
    let body = decide.to_string();
    let ask = |source: &'static str, cert: Cert, auth: Option<String>| {
        let f = &f;
        let body = body.clone();
        async move {
            let mut headers = vec!["Content-Type: application/json".to_owned()];
            headers.extend(auth.map(|a| format!("Authorization: {a}")));
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            f.send_as(
                source,
                cert,
                "POST",
                "/v1/decide",
                &headers,
                body.as_bytes(),
            )
            .await
        }
    };
    assert_eq!(ask(OPEN, Cert::None, None).await.status, 200);
    let r = ask(CLOSED, Cert::None, None).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("unauthenticated"))
    );
    assert_eq!(ask(CLOSED, Cert::Frontend, None).await.status, 200);
    assert_eq!(
        ask(CLOSED, Cert::None, Some(format!("Bearer {FRONTEND_KEY}")))
            .await
            .status,
        200
    );
    assert_eq!(
        ask(CLOSED, Cert::None, Some("Bearer not-a-key".into()))
            .await
            .status,
        401
    );
    assert_eq!(
        ask(OPEN, Cert::None, Some("Basic a2FyaQ==".into()))
            .await
            .status,
        401,
        "a credential that is not one is refused, even from an open network"
    );
    // privacyIDEA's route answers in its own error shape.
    let r = f
        .send_as(CLOSED, Cert::None, "POST", "/validate/check", &[], b"")
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["result"]["error"]["code"], 4033);
    // Administrator routes: the admin certificate or an admin key; never a frontend.
    let add =
        json!({"tenant": "kommune", "user": "ny@kommune.no", "groups": [], "passwordless": false});
    let r = f
        .post_json(Cert::Frontend, "/v1/admin/add_user", &add)
        .await;
    assert_eq!(r.status, 403);
    let r = f.post_json(Cert::Admin, "/v1/admin/add_user", &add).await;
    assert_eq!(
        (r.status, r.json()["reply"].clone()),
        (200, json!("user_added")),
        "{:?}",
        r.json()
    );
    let r = f
        .send_as(
            CLOSED,
            Cert::None,
            "POST",
            "/v1/admin/user_info",
            &[
                "Content-Type: application/json",
                &format!("Authorization: Bearer {ADMIN_KEY}"),
            ],
            json!({"tenant": "kommune", "user": "ny@kommune.no"})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["reply"], "user_described");
    // Refusals keep the operation's own reason: a second add is refused, 409.
    let r = f.post_json(Cert::Admin, "/v1/admin/add_user", &add).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (409, json!("refused"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_api_decides_sends_codes_and_refuses_bad_bodies() {
    let f = with_users("api", &["kari@kommune.no"]).await;
    let code = code_now("kari@kommune.no");
    let r = f
        .post_json(
            Cert::None,
            "/v1/decide",
            &json!({"tenant": "kommune", "user": "kari@kommune.no", "ip": HOME, "proof": {"kind": "totp", "code": code}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        (v["outcome"].clone(), v["reason"].clone()),
        (json!("allow"), json!("second_factor_verified"))
    );
    assert_eq!(v["method"], "authenticator_app");
    let v = f
        .post_json(
            Cert::None,
            "/v1/decide",
            &json!({"tenant": "kommune", "user": "kari@kommune.no", "ip": HOME}),
        )
        .await
        .json();
    assert_eq!(v["outcome"], "challenge");
    assert!(!v["methods"].as_array().unwrap().is_empty());
    let v = f
        .post_json(
            Cert::None,
            "/v1/send-code",
            &json!({"tenant": "kommune", "user": "kari@kommune.no", "ip": HOME}),
        )
        .await
        .json();
    assert!(v["outcome"].is_string(), "{v}");
    for (body, why) in [
        (
            json!({"tenant": "kommune", "user": "kari", "ip": "not an address"}),
            "IP address",
        ),
        (
            json!({"tenant": "kommune", "user": "kari", "ip": HOME, "extra": 1}),
            "extra",
        ),
        (
            json!({"tenant": "kommune", "user": "kari", "ip": HOME, "proof": {"kind": "magic"}}),
            "magic",
        ),
        (
            json!({"tenant": "kommune", "user": "k".repeat(129), "ip": HOME}),
            "user",
        ),
        (
            json!({"tenant": "kommune", "user": "kari", "ip": HOME, "proof": {"kind": "push", "approval": "00", "wait_ms": 60000}}),
            "wait_ms",
        ),
    ] {
        let r = f.post_json(Cert::None, "/v1/decide", &body).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(
            r.json()["message"].as_str().unwrap().contains(why),
            "{:?}",
            r.json()
        );
    }
    let r = f
        .send(
            "POST",
            "/v1/decide",
            &["Content-Type: application/json"],
            b"{\"tenant\": \"\xff\"}",
        )
        .await;
    assert_eq!(r.status, 400, "bad UTF-8");
    let r = f
        .send("POST", "/v1/decide", &["Content-Type: text/plain"], b"{}")
        .await;
    assert_eq!(r.status, 415);
    let r = f.send("GET", "/v1/decide", &[], b"").await;
    assert_eq!(r.status, 405);
    let r = f.send("GET", "/nothing/here", &[], b"").await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sizes_and_slow_clients_get_errors_and_serving_goes_on() {
    let f = with_users("hostile", &["kari@kommune.no"]).await;
    // A body declared too large: refused before it is read.
    let r = f
        .raw(OPEN, Cert::None, b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{")
        .await;
    assert_eq!(r.status, 413);
    // A body too large sent in chunks: refused when it passes the limit.
    let mut chunked = b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..80 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b' '; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(f.raw(OPEN, Cert::None, &chunked).await.status, 413);
    // Headers too large.
    let mut huge =
        b"GET /validate/check HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Junk: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 32 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let mut stream = f.connect(OPEN, Cert::None).await;
    use tokio::io::AsyncWriteExt as _;
    let _ = stream.write_all(&huge).await;
    let r = common::http::read_answer(&mut stream).await;
    assert_eq!(r.status, 431);
    // A client that sends half its headers and stops is cut off after the limit (a
    // second here), and one that stops in its body gets 408.
    let mut slow = f.connect(OPEN, Cert::None).await;
    slow.write_all(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    use tokio::io::AsyncReadExt as _;
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was closed");
    let mut stalled = f.connect(OPEN, Cert::None).await;
    stalled
        .write_all(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    assert_eq!(common::http::read_answer(&mut stalled).await.status, 408);
    // A connection that sends nothing at all, before a first request or after one, is
    // closed too: an idle connection holds no place for long.
    let mut idle = f.connect(OPEN, Cert::None).await;
    let read = tokio::time::timeout(Duration::from_secs(30), idle.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "an idle new connection was closed");
    let mut kept = f.connect(OPEN, Cert::None).await;
    kept.write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), kept.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "an idle kept-alive connection was closed");
    assert!(
        got.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // And the server goes on.
    let v = f
        .post_json(
            Cert::None,
            "/v1/decide",
            &json!({"tenant": "kommune", "user": "kari@kommune.no", "ip": OFFICE}),
        )
        .await
        .json();
    assert_eq!(v["outcome"], "allow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_for_a_place() {
    let f = fixture("places", 2).await;
    let a = f.connect(OPEN, Cert::None).await;
    let b = f.connect(OPEN, Cert::None).await;
    // A third is not taken while two are held.
    let attempt = tokio::time::timeout(
        Duration::from_millis(500),
        f.send("GET", "/v1/decide", &[], b""),
    )
    .await;
    assert!(attempt.is_err(), "no place for a third");
    drop(a);
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        f.send("GET", "/v1/decide", &[], b""),
    )
    .await;
    assert_eq!(r.expect("served once a place was free").status, 405);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_is_a_poll_challenge_polled_then_completed_once() {
    let f = with_users("pi-push", &["pia@kommune.no"]).await;
    let admin = f.admin().await;
    let (phone, conn, method) =
        common::pair_phone(&admin, f.quic, &f.files.ca, "pia@kommune.no").await;
    admin
        .admin(portvakt_wire::Admin::SetDefaultMethod {
            tenant: portvakt_wire::admin::Str("kommune"),
            user: portvakt_wire::admin::Str("pia@kommune.no"),
            method,
        })
        .await
        .unwrap();
    let v = f
        .validate(&[("user", "pia@kommune.no"), ("pass", ""), ("client", HOME)])
        .await
        .json();
    assert_eq!(v["result"]["authentication"], "CHALLENGE", "{v}");
    let challenge = &v["detail"]["multi_challenge"][0];
    assert_eq!(
        (challenge["type"].clone(), challenge["client_mode"].clone()),
        (json!("push"), json!("poll"))
    );
    let t = v["detail"]["transaction_id"].as_str().unwrap().to_owned();
    let poll = || {
        let f = &f;
        let t = t.clone();
        async move {
            let target = format!("/validate/polltransaction?transaction_id={t}");
            f.send("GET", &target, &[], b"").await.json()
        }
    };
    let p = poll().await;
    assert_eq!(
        (
            p["result"]["value"].clone(),
            p["detail"]["challenge_status"].clone()
        ),
        (json!(false), json!("pending"))
    );
    // Completing it before the phone answers signs nobody in, and spends nothing.
    let v = f
        .validate(&[
            ("user", "pia@kommune.no"),
            ("pass", ""),
            ("transaction_id", &t),
            ("client", HOME),
        ])
        .await
        .json();
    assert_ne!(v["result"]["authentication"], "ACCEPT", "{v}");
    let number: u8 = v["detail"]["message"]
        .as_str()
        .or(challenge["message"].as_str())
        .and_then(|m| {
            m.split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
        })
        .and_then(|s| s.parse().ok())
        .expect("the number to choose");
    let listed = phone.pending(&conn, Duration::from_secs(5)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        phone
            .answer(
                &conn,
                listed[0].id,
                portvakt_client::device::Verdict::Approve(number)
            )
            .await
            .unwrap(),
        portvakt_client::device::Outcome::Approved
    );
    let p = poll().await;
    assert_eq!(
        (
            p["result"]["value"].clone(),
            p["detail"]["challenge_status"].clone()
        ),
        (json!(true), json!("accept"))
    );
    let complete = || {
        let f = &f;
        let t = t.clone();
        async move {
            f.validate(&[
                ("user", "pia@kommune.no"),
                ("pass", ""),
                ("transaction_id", &t),
                ("client", HOME),
            ])
            .await
            .json()
        }
    };
    assert_eq!(complete().await["result"]["authentication"], "ACCEPT");
    assert_eq!(
        complete().await["result"]["authentication"],
        "REJECT",
        "once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realm_whose_passwords_an_upstream_server_checks() {
    use common::radius::PASSWORD;
    let (upstream, asked, _task) = common::radius::upstream().await;
    let more = format!(
        "[[realms]]\nname = \"vpn\"\ntenant = \"kommune\"\nupstream = {{ address = \"{upstream}\", secret_file = \"http/upstream.secret\" }}\n"
    );
    let f = common::http::fixture_with("pi-upstream", 64, &more).await;
    let admin = f.admin().await;
    for u in ["kari@kommune.no", "ola@kommune.no"] {
        enrol(&admin, u).await.unwrap();
    }
    let password = std::str::from_utf8(PASSWORD).unwrap();
    let ask = |user: &'static str, pass: String, transaction: Option<String>| {
        let f = &f;
        async move {
            let mut form = vec![
                ("user", user.to_owned()),
                ("realm", "vpn".into()),
                ("pass", pass),
                ("client", HOME.into()),
            ];
            form.extend(transaction.map(|t| ("transaction_id", t)));
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            f.validate(&form).await.json()
        }
    };
    // The password and the code together.
    let v = ask(
        "kari@kommune.no",
        format!("{password}{}", code_now("kari@kommune.no")),
        None,
    )
    .await;
    assert_eq!(v["result"]["authentication"], "ACCEPT", "{v}");
    // A wrong password: refused, and the code after it not spent.
    let ola = code_now("ola@kommune.no");
    let v = ask("ola@kommune.no", format!("wrong horse{ola}"), None).await;
    assert_eq!(v["result"]["authentication"], "REJECT", "{v}");
    // The password alone: a challenge, which the code completes.
    let v = ask("ola@kommune.no", password.to_owned(), None).await;
    assert_eq!(v["result"]["authentication"], "CHALLENGE", "{v}");
    let t = v["detail"]["transaction_id"].as_str().unwrap().to_owned();
    let v = ask("ola@kommune.no", ola, Some(t)).await;
    assert_eq!(v["result"]["authentication"], "ACCEPT", "{v}");
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "one check per password"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrator_operations_over_http_are_audited_under_the_key_s_name() {
    use tokio::io::AsyncWriteExt as _;
    // A real server on its durable store (which keeps the audit trail), HTTPS as a file
    // names it: no open networks, one admin key.
    let dir = std::env::temp_dir().join(format!("portvakt-http-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("http")).unwrap();
    std::fs::write(dir.join("http/admin.key"), ADMIN_KEY).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("http.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[[api_keys]]\nname = \"scripts\"\nkey_file = \"http/admin.key\"\nrole = \"admin\"\n[[realms]]\nname = \"kommune\"\ntenant = \"kommune\"\n"
        ),
    )
    .unwrap();
    let quic = std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let (_server, _) = common::start_with(&dir, quic, &["--http", config.to_str().unwrap()]);
    let files = portvakt_server::pki::PkiFiles::in_dir(&dir.join("certs"));
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let body = json!({"tenant": "kommune", "user": "audit@kommune.no", "groups": [], "passwordless": false}).to_string();
    let request = format!(
        "POST /v1/admin/add_user HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = common::http::connect_to(http, &files, OPEN, Cert::None).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = common::http::read_answer(&mut stream).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    // Without the key, from loopback (not an open network here): refused.
    let mut stream = common::http::connect_to(http, &files, OPEN, Cert::None).await;
    stream
        .write_all(request.replace(ADMIN_KEY, "no").as_bytes())
        .await
        .unwrap();
    assert_eq!(common::http::read_answer(&mut stream).await.status, 401);
    // The trail names the key, and the operation.
    let admin = common::connect(quic, &files, true).await;
    let answer = admin
        .admin(portvakt_wire::Admin::Audit {
            tenant: portvakt_wire::admin::Str("kommune"),
            user: portvakt_wire::admin::Str("audit@kommune.no"),
            from_ms: 0,
            to_ms: u64::MAX,
            cursor: 0,
            limit: 24,
        })
        .await
        .unwrap();
    let portvakt_wire::Frame::AdminReply(_, portvakt_wire::AdminReply::AuditFound { events, .. }) =
        answer.frame().unwrap()
    else {
        panic!("{answer:?}")
    };
    let found: Vec<(String, String)> = events
        .0
        .iter()
        .map(|b| portvakt_server::audit::Event::decode(b).unwrap())
        .map(|e| (e.op, e.actor))
        .collect();
    assert!(
        found
            .iter()
            .any(|(op, actor)| op == "add-user" && actor == "api-key:scripts"),
        "{found:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
