//! The security-info pages: tickets, sessions, CSRF and the second factor, request by
//! request over HTTPS (the fixture's server, in this process); and the whole walk in a
//! real browser (`tests/web/walk.py`: Debian's Chromium through chromedriver) against a
//! `portvakt serve` process, which then restarts and still has everything.
//!
//! The browser walk runs when `PORTVAKT_BROWSER_PYTHON` names a Python with Selenium
//! (`.ci/run` makes one, and sets `PORTVAKT_REQUIRE_BROWSER=1`, which fails the test
//! without it); it needs `chromium`, `chromedriver`, `oathtool` and `zbarimg`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::http::{ADMIN_KEY, Answer, CLOSED, Cert, Fixture, OPEN, fixture_with};
use portvakt_core::otp::{Algorithm, Digits, OtpKey};
use serde_json::{Value, json};

const ORIGIN: &str = "https://portvakt.test";

async fn pages(name: &str) -> Fixture {
    fixture_with(
        name,
        64,
        &format!(
            "\n[security_info]\npublic_url = \"{ORIGIN}\"\noutbox = \"http/outbox.jsonl\"\npush_server = \"127.0.0.1:4433\"\n"
        ),
    )
    .await
}

impl Fixture {
    async fn ticket(&self, user: &str) -> String {
        let a = self
            .post_json(
                Cert::None,
                "/v1/security-info/ticket",
                &json!({"tenant": "kommune", "user": user}),
            )
            .await;
        assert_eq!(a.status, 200, "{:?}", a.json());
        let url = a.json()["url"].as_str().unwrap().to_owned();
        let prefix = format!("{ORIGIN}/security-info/start?ticket=");
        assert!(url.starts_with(&prefix), "{url}");
        url[prefix.len()..].to_owned()
    }

    /// A form POST from the browser's side: `Origin` and the session cookie as given.
    async fn form(
        &self,
        path: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Answer {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut headers = vec!["Content-Type: application/x-www-form-urlencoded".to_owned()];
        if let Some(o) = origin {
            headers.push(format!("Origin: {o}"));
        }
        if let Some(c) = cookie {
            headers.push(format!("Cookie: {c}"));
        }
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        self.send_as(
            "127.0.0.9",
            Cert::None,
            "POST",
            path,
            &headers,
            body.as_bytes(),
        )
        .await
    }

    /// Spends `ticket` from the pages' own origin.
    async fn start(&self, ticket: &str) -> Answer {
        self.form(
            "/security-info/start",
            None,
            Some(ORIGIN),
            &[("ticket", ticket)],
        )
        .await
    }

    /// A form from the pages, in `session`.
    async fn post(&self, path: &str, session: &str, fields: &[(&str, &str)]) -> Answer {
        self.form(path, Some(session), Some(ORIGIN), fields).await
    }

    async fn page(&self, path: &str, cookie: &str) -> Answer {
        self.send_as(
            "127.0.0.9",
            Cert::None,
            "GET",
            path,
            &[&format!("Cookie: {cookie}")],
            b"",
        )
        .await
    }

    /// Spends `ticket` and returns the session's cookie (`name=value`).
    async fn open(&self, ticket: &str) -> String {
        let a = self.start(ticket).await;
        assert_eq!(a.status, 303, "{}", text(&a));
        assert_eq!(header(&a, "location"), Some("/security-info"));
        let set = header(&a, "set-cookie").unwrap();
        set.split(';').next().unwrap().to_owned()
    }

    async fn admin_json(&self, op: &str, body: Value) -> Value {
        let a = self
            .send_as(
                OPEN,
                Cert::None,
                "POST",
                &format!("/v1/admin/{op}"),
                &[
                    "Content-Type: application/json",
                    &format!("Authorization: Bearer {ADMIN_KEY}"),
                ],
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(a.status, 200, "{op}: {}", text(&a));
        a.json()
    }

    async fn add_user(&self, user: &str) {
        self.admin_json(
            "add_user",
            json!({"tenant": "kommune", "user": user, "groups": [], "passwordless": false}),
        )
        .await;
    }

    async fn methods(&self, user: &str) -> Vec<Value> {
        let info = self
            .admin_json("user_info", json!({"tenant": "kommune", "user": user}))
            .await;
        info["methods"].as_array().unwrap().clone()
    }
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn text(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

/// The CSRF token a page's forms carry.
fn csrf(a: &Answer) -> String {
    let t = text(a);
    let at = t
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    t[at..at + 43].to_owned()
}

fn totp(secret: &[u8]) -> String {
    let secs = portvakt_server::clock::now().as_secs();
    format!(
        "{:06}",
        OtpKey::new(Algorithm::Sha1, secret).hotp(secs / 30, Digits::SIX)
    )
}

#[tokio::test]
async fn a_ticket_opens_one_session_once_with_a_strict_cookie() {
    let f = pages("once").await;
    let ticket = f.ticket("kari@kommune.no").await;
    // The link shows a button; a GET spends nothing (link scanners follow links).
    for _ in 0..2 {
        let a = f
            .send(
                "GET",
                &format!("/security-info/start?ticket={ticket}"),
                &[],
                b"",
            )
            .await;
        assert_eq!(a.status, 200);
        assert!(text(&a).contains(&ticket));
        assert_eq!(header(&a, "cache-control"), Some("no-store"));
        assert!(
            header(&a, "content-security-policy")
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
    }
    let a = f.start(&ticket).await;
    assert_eq!(a.status, 303, "{}", text(&a));
    let cookie = header(&a, "set-cookie").unwrap();
    assert!(cookie.starts_with("__Host-portvakt-session="), "{cookie}");
    for attribute in [
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=1800",
    ] {
        assert!(
            cookie.split("; ").any(|p| p == attribute),
            "{attribute}: {cookie}"
        );
    }
    let session = cookie.split(';').next().unwrap();
    let list = f.page("/security-info", session).await;
    assert_eq!(list.status, 200);
    assert!(text(&list).contains("kari@kommune.no"));

    // The same ticket again: refused, no cookie.
    let again = f.start(&ticket).await;
    assert_eq!(again.status, 403);
    assert!(header(&again, "set-cookie").is_none());
    assert!(text(&again).contains("does not open your security info"));
}

#[tokio::test]
async fn tickets_that_are_not_one_are_refused_and_nothing_is_opened() {
    let f = pages("forged").await;
    let good = f.ticket("kari@kommune.no").await;
    let mut bytes = data_encoding::BASE64URL_NOPAD
        .decode(good.as_bytes())
        .unwrap();
    // Another user's name in a real ticket.
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let renamed = data_encoding::BASE64URL_NOPAD.encode(&bytes);
    let hostile = [
        renamed.as_str(),
        "",
        "AAAA",
        "%00%ff",
        "ticket with spaces",
        &"A".repeat(4000),
        "\u{202e}kari",
    ];
    for t in hostile {
        let a = f.start(t).await;
        assert_eq!(a.status, 403, "{t:?}: {}", text(&a));
        assert!(header(&a, "set-cookie").is_none());
    }
    // The renamed one spent the real one: a wrong try is its only try.
    let a = f.start(&good).await;
    assert_eq!(a.status, 403);
    // A ticket is asked for by frontends only, for a tenant of the policy.
    let a = f
        .send_as(
            CLOSED,
            Cert::None,
            "POST",
            "/v1/security-info/ticket",
            &["Content-Type: application/json"],
            br#"{"tenant":"kommune","user":"kari@kommune.no"}"#,
        )
        .await;
    assert_eq!(a.status, 401);
    for body in [
        json!({"tenant": "nowhere", "user": "kari"}),
        json!({"tenant": "kommune", "user": ""}),
        json!({"tenant": "kommune", "user": "a\u{7}b"}),
        json!({"tenant": "kommune", "user": "x".repeat(129)}),
        json!({"tenant": "kommune"}),
    ] {
        let a = f
            .post_json(Cert::None, "/v1/security-info/ticket", &body)
            .await;
        assert_eq!(a.status, 400, "{body}: {}", text(&a));
    }
}

#[tokio::test]
async fn a_ticket_answers_alike_for_known_and_unknown_names() {
    let f = pages("alike").await;
    f.add_user("kari@kommune.no").await;
    let shape = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let known = f
        .post_json(
            Cert::None,
            "/v1/security-info/ticket",
            &json!({"tenant": "kommune", "user": "kari@kommune.no"}),
        )
        .await;
    let unknown = f
        .post_json(
            Cert::None,
            "/v1/security-info/ticket",
            &json!({"tenant": "kommune", "user": "nobody@kommune.no"}),
        )
        .await;
    assert_eq!((known.status, unknown.status), (200, 200));
    assert_eq!(shape(&known.json()), shape(&unknown.json()));
}

#[tokio::test]
async fn forms_need_the_pages_origin_and_the_session_s_token() {
    let f = pages("csrf").await;
    // A form from elsewhere may not even open a session (login CSRF).
    let ticket = f.ticket("kari@kommune.no").await;
    for origin in [None, Some("https://evil.example"), Some("null")] {
        let a = f
            .form("/security-info/start", None, origin, &[("ticket", &ticket)])
            .await;
        assert_eq!(a.status, 403, "{origin:?}");
    }
    let session = f.open(&ticket).await;
    let add = f.page("/security-info/add", &session).await;
    let token = csrf(&add);
    // No token, a wrong one, another origin: refused, nothing begun.
    for (fields, origin) in [
        (vec![("kind", "app")], ORIGIN),
        (vec![("kind", "app"), ("csrf", "forged")], ORIGIN),
        (vec![("kind", "app"), ("csrf", &token[..42])], ORIGIN),
        (
            vec![("kind", "app"), ("csrf", &token)],
            "https://evil.example",
        ),
    ] {
        let a = f
            .form("/security-info/add", Some(&session), Some(origin), &fields)
            .await;
        assert_eq!(a.status, 403, "{fields:?} {origin}");
        assert!(text(&a).contains("was not sent from your own security info page"));
    }
    let info = f
        .send_as(
            OPEN,
            Cert::None,
            "POST",
            "/v1/admin/user_info",
            &[
                "Content-Type: application/json",
                &format!("Authorization: Bearer {ADMIN_KEY}"),
            ],
            br#"{"tenant":"kommune","user":"kari@kommune.no"}"#,
        )
        .await;
    assert_eq!(info.status, 409, "no user was made: {}", text(&info));
    // With the token: the app is begun.
    let a = f
        .post(
            "/security-info/add",
            &session,
            &[("kind", "app"), ("csrf", &token)],
        )
        .await;
    assert_eq!(a.status, 303);
    assert_eq!(header(&a, "location"), Some("/security-info/add/app"));
    assert_eq!(f.methods("kari@kommune.no").await.len(), 1);
    // A session id that is not one.
    let a = f
        .page("/security-info", "__Host-portvakt-session=made-up")
        .await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn a_user_with_methods_shows_one_before_any_change() {
    let f = pages("second").await;
    let secret = b"kari's-app-secret-20";
    f.add_user("kari@kommune.no").await;
    let added = f
        .admin_json(
            "import_totp",
            json!({"tenant": "kommune", "user": "kari@kommune.no",
                   "secret": data_encoding::BASE32_NOPAD.encode(secret),
                   "algorithm": 1, "digits": 6, "period": 30, "active": true}),
        )
        .await;
    let method = added["method"].as_u64().unwrap().to_string();
    let session = f.open(&f.ticket("kari@kommune.no").await).await;
    for path in [
        "/security-info",
        "/security-info/add",
        "/security-info/default",
    ] {
        let a = f.page(path, &session).await;
        assert_eq!(a.status, 303, "{path}");
        assert_eq!(
            header(&a, "location"),
            Some("/security-info/verify"),
            "{path}"
        );
    }
    let verify = f.page("/security-info/verify", &session).await;
    assert_eq!(verify.status, 200);
    let token = csrf(&verify);
    // A change before the second factor: refused, and the method is still there.
    let a = f
        .post(
            "/security-info/delete",
            &session,
            &[("csrf", &token), ("method", &method)],
        )
        .await;
    assert_eq!(header(&a, "location"), Some("/security-info/verify"));
    assert_eq!(f.methods("kari@kommune.no").await.len(), 1);
    // A wrong code, then the right one.
    let a = f
        .post(
            "/security-info/verify",
            &session,
            &[("csrf", &token), ("code", "000000")],
        )
        .await;
    assert_eq!(header(&a, "location"), Some("/security-info/verify"));
    let page = f.page("/security-info/verify", &session).await;
    assert!(text(&page).contains("That code did not work"));
    let a = f
        .post(
            "/security-info/verify",
            &session,
            &[("csrf", &token), ("code", &totp(secret))],
        )
        .await;
    assert_eq!(header(&a, "location"), Some("/security-info"));
    // Now the change goes through. (The audit trail, which needs the durable store, is
    // checked by the browser walk against `portvakt serve`.)
    let a = f
        .post(
            "/security-info/delete",
            &session,
            &[("csrf", &token), ("method", &method)],
        )
        .await;
    assert_eq!(header(&a, "location"), Some("/security-info"));
    assert!(f.methods("kari@kommune.no").await.is_empty());
    // The second factor is decided by the core: its sign-in log has both attempts.
    let rows = common::sign_ins(&f.admin().await, "kari@kommune.no").await;
    let reasons: Vec<&str> = rows.iter().filter_map(|r| r["reason"].as_str()).collect();
    assert!(
        reasons.contains(&"invalid_code") && reasons.contains(&"reset_verified"),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_at_the_second_factor_lock_it_as_sign_in_does() {
    let f = pages("lock").await;
    let secret = b"ola's-app-secret-20!";
    f.add_user("ola@kommune.no").await;
    f.admin_json(
        "import_totp",
        json!({"tenant": "kommune", "user": "ola@kommune.no",
               "secret": data_encoding::BASE32_NOPAD.encode(secret),
               "algorithm": 1, "digits": 6, "period": 30, "active": true}),
    )
    .await;
    let session = f.open(&f.ticket("ola@kommune.no").await).await;
    let token = csrf(&f.page("/security-info/verify", &session).await);
    // Guesses in parallel, as an attacker with the session would make them.
    let f = std::sync::Arc::new(f);
    let guesses: Vec<_> = (0..12)
        .map(|i| {
            let (f, session, token) = (f.clone(), session.clone(), token.clone());
            tokio::spawn(async move {
                let code = format!("{:06}", 100_000 + i);
                f.post(
                    "/security-info/verify",
                    &session,
                    &[("csrf", &token), ("code", &code)],
                )
                .await
                .status
            })
        })
        .collect();
    for g in guesses {
        assert_eq!(g.await.unwrap(), 303);
    }
    // Then the right code: still locked.
    let a = f
        .post(
            "/security-info/verify",
            &session,
            &[("csrf", &token), ("code", &totp(secret))],
        )
        .await;
    assert_eq!(header(&a, "location"), Some("/security-info/verify"));
    let page = f.page("/security-info/verify", &session).await;
    assert!(
        text(&page).contains("Too many wrong attempts"),
        "{}",
        text(&page)
    );
    let list = f.page("/security-info", &session).await;
    assert_eq!(header(&list, "location"), Some("/security-info/verify"));
}

#[tokio::test]
async fn the_pages_say_how_many_apps_are_too_many_and_what_to_do() {
    let f = pages("sixth").await;
    f.add_user("per@kommune.no").await;
    // Five pending apps fill the five places too.
    let session = f.open(&f.ticket("per@kommune.no").await).await;
    let token = csrf(&f.page("/security-info/add", &session).await);
    for _ in 0..5 {
        let a = f
            .post(
                "/security-info/add",
                &session,
                &[("kind", "app"), ("csrf", &token)],
            )
            .await;
        assert_eq!(header(&a, "location"), Some("/security-info/add/app"));
    }
    let a = f
        .post(
            "/security-info/add",
            &session,
            &[("kind", "app"), ("csrf", &token)],
        )
        .await;
    assert_eq!(header(&a, "location"), Some("/security-info/add"));
    let page = f.page("/security-info/add?lang=nb", &session).await;
    assert!(
        text(&page)
            .contains("Du kan ikke sette opp en autentiseringsapp til, fordi du allerede har fem"),
        "{}",
        text(&page)
    );
    assert_eq!(f.methods("per@kommune.no").await.len(), 5);
}

#[tokio::test]
async fn hostile_requests_get_an_answer_and_change_nothing() {
    let f = pages("hostile").await;
    let session = f.open(&f.ticket("eve@kommune.no").await).await;
    let token = csrf(&f.page("/security-info", &session).await);
    for (path, fields) in [
        ("/security-info/add", vec![("kind", "sudo")]),
        ("/security-info/delete", vec![("method", "-1")]),
        ("/security-info/delete", vec![("method", "99999999999")]),
        ("/security-info/default", vec![("method", "1")]),
        ("/security-info/add/app", vec![("code", "123456")]),
        ("/security-info/add/confirm", vec![("code", "123456")]),
        (
            "/security-info/add/phone",
            vec![("number", "+47\u{202e}12345678")],
        ),
        (
            "/security-info/add/phone",
            vec![("number", &"9".repeat(5000))],
        ),
        (
            "/security-info/add/email",
            vec![("address", "not an address")],
        ),
        ("/security-info/add/key", vec![("response", "{\"id\":")]),
        ("/security-info/nowhere", vec![]),
    ] {
        let mut fields = fields.clone();
        fields.push(("csrf", &token));
        let a = f.post(path, &session, &fields).await;
        assert!(
            matches!(a.status, 303 | 404),
            "{path}: {} {}",
            a.status,
            text(&a)
        );
    }
    // Nothing stood: at most a user with no active method.
    for m in f
        .admin_json(
            "user_info",
            json!({"tenant": "kommune", "user": "eve@kommune.no"}),
        )
        .await["methods"]
        .as_array()
        .unwrap()
    {
        assert_eq!(m["active"], false, "{m}");
    }
    // Other methods than GET and POST; a body over the limit.
    let a = f
        .send_as(
            "127.0.0.9",
            Cert::None,
            "DELETE",
            "/security-info",
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 405);
    let big = vec![b'a'; 70_000];
    let a = f
        .send_as(
            "127.0.0.9",
            Cert::None,
            "POST",
            "/security-info/add",
            &[&format!("Cookie: {session}"), &format!("Origin: {ORIGIN}")],
            &big,
        )
        .await;
    assert_eq!(a.status, 413);
}

/// The walk in Chromium, against `portvakt serve` on its durable store; then the server
/// restarts and the sign-in decision still sees what was registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_walk_in_a_real_browser() {
    let Some(python) = std::env::var_os("PORTVAKT_BROWSER_PYTHON") else {
        assert!(
            std::env::var_os("PORTVAKT_REQUIRE_BROWSER").is_none(),
            "PORTVAKT_BROWSER_PYTHON is not set, and the test is required"
        );
        eprintln!("no PORTVAKT_BROWSER_PYTHON: skipped");
        return;
    };
    let dir = std::env::temp_dir().join(format!("portvakt-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let https = common::free_port();
    let config = dir.join("http.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{https}"
unauthenticated_frontends = ["127.0.0.0/8"]

[[api_keys]]
name = "admin-scripts"
key_file = "http/admin.key"
role = "admin"

[[realms]]
name = "kommune"
tenant = "kommune"

[security_info]
public_url = "https://localhost:{https}"
ticket_ttl_s = 30
outbox = "http/outbox.jsonl"
"#
        ),
    )
    .unwrap();
    // The municipality's policy, with this server as the security keys' relying party.
    let policy = dir.join("kommune.toml");
    std::fs::write(
        &policy,
        include_str!("../../examples/kommune.toml")
            .replace("rp_id = \"kommune.no\"", "rp_id = \"localhost\"")
            .replace(
                "origins = [\"https://login.kommune.no\"]",
                &format!("origins = [\"https://localhost:{https}\"]"),
            ),
    )
    .unwrap();
    let data = dir.join("data");
    let quic: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let config_arg = config.to_str().unwrap();
    let policy_arg = policy.to_str().unwrap();
    let args = ["--http", config_arg, "--policy", policy_arg];
    let (server, _) = common::start_with(&data, quic, &args);
    let shots = std::env::var_os("PORTVAKT_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.join("shots"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/walk.py");
    let status = Command::new(&python)
        .arg(&script)
        .args(["--base", &format!("https://localhost:{https}")])
        .arg("--outbox")
        .arg(data.join("http/outbox.jsonl"))
        .arg("--admin-key")
        .arg(data.join("http/admin.key"))
        .arg("--shots")
        .arg(&shots)
        .arg("--server-cert")
        .arg(data.join("certs/server.pem"))
        .arg("--portvakt")
        .arg(common::server_binary())
        .arg("--data")
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success(), "the browser walk failed: {status}");

    // Everything the pages did is durable: a restart, and the decision still sees it.
    drop(server);
    let (_server, _) = common::start_with(&data, quic, &args);
    let files = portvakt_server::pki::ensure_dev_pki(&data.join("certs"))
        .unwrap()
        .0;
    let admin = common::connect(quic, &files, true).await;
    let info = admin
        .admin(portvakt_wire::Admin::UserInfo {
            tenant: portvakt_wire::admin::Str("kommune"),
            user: portvakt_wire::admin::Str("kari@kommune.no"),
        })
        .await
        .unwrap();
    let portvakt_wire::Frame::AdminReply(
        _,
        portvakt_wire::AdminReply::UserDescribed {
            methods,
            default_method,
            ..
        },
    ) = info.frame().unwrap()
    else {
        panic!("{info:?}")
    };
    let kinds: Vec<(u8, bool)> = methods.0.iter().map(|m| (m.kind, m.active)).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.iter().all(|(_, active)| *active), "{kinds:?}");
    let sms = methods.0.iter().find(|m| m.kind == 3).unwrap();
    assert_eq!(default_method, Some(sms.id));
    let _ = std::fs::remove_dir_all(&dir);
}
