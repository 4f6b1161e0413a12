//! The RADIUS frontend, end to end over UDP: a NAS's Access-Requests answered with
//! Accept, Reject or Challenge through the same core as QUIC; BlastRADIUS's rules; the
//! duplicates cache; the three ways the first factor is known; push approval through a
//! challenge; and nothing that tells an unknown name from a known one.

mod common;

use std::time::Duration;

use common::radius::{
    APPENDED, CHALLENGE, DOWN, Extra, Fixture, LEGACY, NAS, PASSWORD, SLOW, STRANGER, fixture,
    fixture_of,
};
use common::{code_now, enrol};
use portvakt_client::device::Verdict;
use portvakt_radius::code;
use portvakt_wire::Admin;
use portvakt_wire::admin::Str;

const HOME: &str = "203.0.113.9";
const OFFICE: &str = "10.20.1.5";
const REFUSED: &str = "The sign-in was refused.";
const NO_REPLY: Duration = Duration::from_millis(700);

async fn with_users(name: &str, users: &[&str]) -> Fixture {
    let f = fixture(name).await;
    let admin = f.client(true).await;
    for u in users {
        enrol(&admin, u).await.unwrap();
    }
    f
}

fn code(user: &str) -> Vec<u8> {
    code_now(user).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_in_the_password_is_accepted_once() {
    let f = with_users("accept", &["kari@kommune.no"]).await;
    let nas = f.nas(NAS).await;
    let right = code("kari@kommune.no");
    let home = Extra {
        password: Some(&right),
        calling_station: Some(HOME),
        ..Extra::default()
    };
    let r = nas.ask("kari@kommune.no", &home).await;
    assert_eq!((r.code, r.message.as_str()), (code::ACCESS_ACCEPT, ""));
    // The same code again: replayed, refused in the words any refusal has.
    let r = nas.ask("kari@kommune.no", &home).await;
    assert_eq!((r.code, r.message.as_str()), (code::ACCESS_REJECT, REFUSED));
    let wrong = b"000000".to_vec();
    let r = nas
        .ask(
            "kari@kommune.no",
            &Extra {
                password: Some(&wrong),
                ..home.clone()
            },
        )
        .await;
    assert_eq!((r.code, r.message.as_str()), (code::ACCESS_REJECT, REFUSED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_code_gets_a_challenge_and_the_code_in_answer_gets_in() {
    let f = with_users("challenge", &["kari@kommune.no"]).await;
    let nas = f.nas(NAS).await;
    let home = Extra {
        calling_station: Some(HOME),
        ..Extra::default()
    };
    let c = nas.ask("kari@kommune.no", &home).await;
    assert_eq!(c.code, code::ACCESS_CHALLENGE);
    assert!(c.message.contains("code"), "{c:?}");
    let state = c.state.clone().expect("a challenge carries State");
    let right = code("kari@kommune.no");
    let answer = Extra {
        password: Some(&right),
        state: Some(&state),
        ..home.clone()
    };
    // Another user cannot answer it, nor can a State with a byte changed.
    let r = nas.ask("ola@kommune.no", &answer).await;
    assert_eq!((r.code, r.message.as_str()), (code::ACCESS_REJECT, REFUSED));
    let mut forged = state.clone();
    forged[20] ^= 1;
    let r = nas
        .ask(
            "kari@kommune.no",
            &Extra {
                state: Some(&forged),
                ..answer.clone()
            },
        )
        .await;
    assert_eq!(r.code, code::ACCESS_REJECT);
    let r = nas.ask("kari@kommune.no", &answer).await;
    assert_eq!(r.code, code::ACCESS_ACCEPT, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_office_network_needs_no_code_when_the_client_reports_it() {
    let f = with_users("office", &["kari@kommune.no"]).await;
    // The NAS reports the user's address: the municipal network is single-factor.
    let nas = f.nas(NAS).await;
    let office = Extra {
        calling_station: Some(OFFICE),
        ..Extra::default()
    };
    let r = nas.ask("kari@kommune.no", &office).await;
    assert_eq!(r.code, code::ACCESS_ACCEPT, "{r:?}");
    // A client not configured to report it: its own address counts (loopback is
    // elsewhere), whatever the attribute says.
    let legacy = f.nas(LEGACY).await;
    let r = legacy.ask("kari@kommune.no", &office).await;
    assert_eq!(r.code, code::ACCESS_CHALLENGE, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_locks_the_user_and_the_right_code_then_waits() {
    let f = with_users("lockout", &["kari@kommune.no"]).await;
    let nas = f.nas(NAS).await;
    let right = code_now("kari@kommune.no");
    let right_n: u32 = right.parse().unwrap();
    // Ten wrong codes at once, from ten sockets.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10u32 {
        let nas = f.nas(NAS).await;
        tasks.spawn(async move {
            let wrong = format!("{:06}", (right_n + 1 + i) % 1_000_000).into_bytes();
            nas.ask(
                "kari@kommune.no",
                &Extra {
                    password: Some(&wrong),
                    calling_station: Some(HOME),
                    ..Extra::default()
                },
            )
            .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().code, code::ACCESS_REJECT);
    }
    let r = nas
        .ask(
            "kari@kommune.no",
            &Extra {
                password: Some(right.as_bytes()),
                calling_station: Some(HOME),
                ..Extra::default()
            },
        )
        .await;
    assert_eq!(
        (r.code, r.message.as_str()),
        (code::ACCESS_REJECT, "Too many attempts. Try again later.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_name_is_answered_as_a_user_is() {
    // Whoever has no password the NAS or the upstream server accepted cannot tell a
    // name that exists from one that does not: a wrong code, a wrong password and a
    // forged State are answered alike, to the byte count. (A name whose password was
    // accepted is someone the directory knows; the core then says "register" for one
    // Portvakt does not know, as it does over QUIC.)
    let f = with_users("enumeration", &["kari@kommune.no"]).await;
    let wrong = b"123456".to_vec();
    let mut wrong_both = b"wrong horse".to_vec();
    wrong_both.extend(&wrong);
    let forged = [1u8; 43];
    let cases = [
        (NAS, Some(&wrong[..]), None),
        (CHALLENGE, Some(&b"wrong horse"[..]), None),
        (APPENDED, Some(&wrong_both[..]), None),
        (NAS, Some(&wrong[..]), Some(&forged[..])),
        (CHALLENGE, None, None),
    ];
    for (client, password, state) in cases {
        let nas = f.nas(client).await;
        let extra = Extra {
            password,
            state,
            calling_station: Some(HOME),
            ..Extra::default()
        };
        let known = nas.ask("kari@kommune.no", &extra).await;
        let unknown = nas.ask("nobody@kommune.no", &extra).await;
        assert_eq!(known.code, code::ACCESS_REJECT);
        // Replies carry no user name, so even their lengths match.
        assert_eq!(
            (known.code, &known.message, known.bytes.len()),
            (unknown.code, &unknown.message, unknown.bytes.len()),
            "{client}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blastradius_requests_without_a_right_message_authenticator_are_dropped() {
    let f = with_users("blast", &["kari@kommune.no"]).await;
    let nas = f.nas(NAS).await;
    let home = Extra {
        calling_station: Some(HOME),
        ..Extra::default()
    };
    // Missing.
    let unsigned = Extra {
        unsigned: true,
        ..home.clone()
    };
    assert_eq!(
        nas.ask_within("kari@kommune.no", &unsigned, NO_REPLY).await,
        None
    );
    // Wrong: another secret.
    let other = common::radius::Nas::new(NAS, f.radius, b"not the secret at all, no").await;
    let (bytes, _) = other.request("kari@kommune.no", &home);
    nas.send(&bytes).await;
    let (probe, authenticator) = nas.request("kari@kommune.no", &home);
    nas.send(&probe).await;
    let r = nas
        .receive(&authenticator, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        r.code,
        code::ACCESS_CHALLENGE,
        "only the right one is answered"
    );
    // Tampered after signing.
    let (mut bytes, authenticator) = nas.request("kari@kommune.no", &home);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    nas.send(&bytes).await;
    assert_eq!(nas.receive(&authenticator, NO_REPLY).await, None);
    // A legacy client may leave it out, but never beside a Proxy-State.
    let legacy = f.nas(LEGACY).await;
    let r = legacy.ask("kari@kommune.no", &unsigned).await;
    assert_eq!(r.code, code::ACCESS_CHALLENGE);
    let proxied = Extra {
        proxy_states: &[b"hop"],
        ..unsigned.clone()
    };
    assert_eq!(
        legacy
            .ask_within("kari@kommune.no", &proxied, NO_REPLY)
            .await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_states_come_back_in_order() {
    let f = with_users("proxy", &["kari@kommune.no"]).await;
    let nas = f.nas(NAS).await;
    let r = nas
        .ask(
            "kari@kommune.no",
            &Extra {
                calling_station: Some(HOME),
                proxy_states: &[b"first hop", b"second", b"third"],
                ..Extra::default()
            },
        )
        .await;
    assert_eq!(
        r.proxy_states,
        vec![b"first hop".to_vec(), b"second".to_vec(), b"third".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_oversized_and_malformed_datagrams_are_dropped_and_serving_goes_on() {
    let f = with_users("drops", &["kari@kommune.no"]).await;
    let home = Extra {
        calling_station: Some(HOME),
        ..Extra::default()
    };
    let stranger = f.nas(STRANGER).await;
    assert_eq!(
        stranger
            .ask_within("kari@kommune.no", &home, NO_REPLY)
            .await,
        None
    );
    let nas = f.nas(NAS).await;
    let (good, _) = nas.request("kari@kommune.no", &home);
    let mut oversized = good.clone();
    oversized.resize(5000, 0);
    let mut wrong_length = good.clone();
    wrong_length.push(0);
    let mut cut_attribute = good.clone();
    cut_attribute[21] = 255;
    let mut accounting = good.clone();
    accounting[0] = code::ACCOUNTING_REQUEST;
    for bad in [
        &oversized[..],
        &wrong_length[..],
        &cut_attribute[..],
        &good[..19],
        &[][..],
        &accounting[..],
    ] {
        nas.send(bad).await;
    }
    // Nothing comes back (anything would fail the reply check or be returned).
    assert_eq!(nas.receive(&[0; 16], NO_REPLY).await, None);
    let r = nas.ask("kari@kommune.no", &home).await;
    assert_eq!(r.code, code::ACCESS_CHALLENGE, "still serving");
    // A Status-Server is answered with an Accept, and only with a Message-Authenticator.
    let status = portvakt_radius::Packet {
        code: code::STATUS_SERVER,
        identifier: 7,
        authenticator: [7; 16],
        attributes: vec![],
    };
    let mut unsigned = Vec::new();
    status.encode(&mut unsigned).unwrap();
    nas.send(&unsigned).await;
    assert_eq!(nas.receive(&[7; 16], NO_REPLY).await, None);
    nas.send(&status.sign_request(common::radius::SECRET).unwrap())
        .await;
    let alive = nas.receive(&[7; 16], Duration::from_secs(5)).await.unwrap();
    assert_eq!(alive.code, code::ACCESS_ACCEPT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmit_is_dropped_while_pending_and_answered_byte_for_byte_after() {
    let f = with_users("duplicates", &[SLOW]).await;
    let nas = f.nas(CHALLENGE).await;
    let (bytes, authenticator) = nas.request(
        SLOW,
        &Extra {
            password: Some(PASSWORD),
            ..Extra::default()
        },
    );
    // The upstream takes a second: three sends while it thinks.
    for _ in 0..3 {
        nas.send(&bytes).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = nas
        .receive(&authenticator, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.code, code::ACCESS_CHALLENGE, "{first:?}");
    assert_eq!(
        nas.receive(&authenticator, NO_REPLY).await,
        None,
        "one reply"
    );
    assert_eq!(
        f.upstream_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "decided once"
    );
    nas.send(&bytes).await;
    let again = nas
        .receive(&authenticator, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.bytes, first.bytes, "the cached reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmit_after_the_cache_forgot_is_decided_again_and_replays_nothing() {
    let f = with_users("late", &["kari@kommune.no"]).await;
    let nas = f.nas(NAS).await;
    let right = code("kari@kommune.no");
    let (bytes, authenticator) = nas.request(
        "kari@kommune.no",
        &Extra {
            password: Some(&right),
            calling_station: Some(HOME),
            ..Extra::default()
        },
    );
    nas.send(&bytes).await;
    let first = nas
        .receive(&authenticator, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.code, code::ACCESS_ACCEPT);
    // Sent again until the answer is no longer the cached one (the fixture keeps answers
    // 3 s): then it was decided anew, and the code, spent, is refused.
    let mut again = first.clone();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        nas.send(&bytes).await;
        again = nas
            .receive(&authenticator, Duration::from_secs(5))
            .await
            .unwrap();
        if again.bytes != first.bytes {
            break;
        }
    }
    assert_eq!(
        (again.code, again.message.as_str()),
        (code::ACCESS_REJECT, REFUSED)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_then_challenge_with_an_upstream_server() {
    let f = with_users("upstream", &["kari@kommune.no"]).await;
    let nas = f.nas(CHALLENGE).await;
    // A wrong password is refused as anything is.
    let r = nas
        .ask(
            "kari@kommune.no",
            &Extra {
                password: Some(b"wrong horse"),
                ..Extra::default()
            },
        )
        .await;
    assert_eq!((r.code, r.message.as_str()), (code::ACCESS_REJECT, REFUSED));
    let c = nas
        .ask(
            "kari@kommune.no",
            &Extra {
                password: Some(PASSWORD),
                ..Extra::default()
            },
        )
        .await;
    assert_eq!(c.code, code::ACCESS_CHALLENGE);
    let right = code("kari@kommune.no");
    let r = nas
        .ask(
            "kari@kommune.no",
            &Extra {
                password: Some(&right),
                state: c.state.as_deref(),
                ..Extra::default()
            },
        )
        .await;
    assert_eq!(r.code, code::ACCESS_ACCEPT, "{r:?}");
    // An upstream that never answers: refused, closed.
    let down = f.nas(DOWN).await;
    let r = down
        .ask(
            "kari@kommune.no",
            &Extra {
                password: Some(PASSWORD),
                ..Extra::default()
            },
        )
        .await;
    assert_eq!(
        (r.code, r.message.as_str()),
        (
            code::ACCESS_REJECT,
            "The sign-in cannot be completed now. Try again later."
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chap_and_eap_are_refused_before_anything_is_asked() {
    let f = with_users("chap", &["kari@kommune.no"]).await;
    let nas = f.nas(CHALLENGE).await;
    for kind in [
        portvakt_radius::attr::CHAP_PASSWORD,
        portvakt_radius::attr::EAP_MESSAGE,
    ] {
        let value = [1u8; 17];
        let r = nas
            .ask(
                "kari@kommune.no",
                &Extra {
                    more: &[(kind, &value)],
                    ..Extra::default()
                },
            )
            .await;
        assert_eq!((r.code, r.message.as_str()), (code::ACCESS_REJECT, REFUSED));
    }
    assert_eq!(
        f.upstream_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no password was sent on"
    );
    // Nor was anything decided: the sign-in log holds only the next, ordinary request.
    let c = nas
        .ask(
            "kari@kommune.no",
            &Extra {
                password: Some(PASSWORD),
                ..Extra::default()
            },
        )
        .await;
    assert_eq!(c.code, code::ACCESS_CHALLENGE);
    let rows = common::sign_ins(&f.client(true).await, "kari@kommune.no").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "challenge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_code_in_one_field_with_an_upstream_server() {
    let f = with_users("appended", &["kari@kommune.no", "ola@kommune.no"]).await;
    let nas = f.nas(APPENDED).await;
    let mut typed = PASSWORD.to_vec();
    typed.extend(code("kari@kommune.no"));
    let r = nas
        .ask(
            "kari@kommune.no",
            &Extra {
                password: Some(&typed),
                ..Extra::default()
            },
        )
        .await;
    assert_eq!(r.code, code::ACCESS_ACCEPT, "{r:?}");
    // The password alone: a challenge for the code.
    let r = nas
        .ask(
            "kari@kommune.no",
            &Extra {
                password: Some(PASSWORD),
                ..Extra::default()
            },
        )
        .await;
    assert_eq!(r.code, code::ACCESS_CHALLENGE, "{r:?}");
    // A wrong password with a right code: refused, and the code is not spent (ola's, not
    // yet used, then gets ola in).
    let ola = code("ola@kommune.no");
    let mut wrong = b"wrong horse".to_vec();
    wrong.extend(&ola);
    let r = nas
        .ask(
            "ola@kommune.no",
            &Extra {
                password: Some(&wrong),
                ..Extra::default()
            },
        )
        .await;
    assert_eq!(r.code, code::ACCESS_REJECT);
    let mut right = PASSWORD.to_vec();
    right.extend(&ola);
    let r = nas
        .ask(
            "ola@kommune.no",
            &Extra {
                password: Some(&right),
                ..Extra::default()
            },
        )
        .await;
    assert_eq!(r.code, code::ACCESS_ACCEPT, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_through_a_challenge_survives_retransmits() {
    let f = with_users("push", &["pia@kommune.no"]).await;
    let admin = f.client(true).await;
    let (phone, conn, method) =
        common::pair_phone(&admin, f.quic, &f.files.ca, "pia@kommune.no").await;
    admin
        .admin(Admin::SetDefaultMethod {
            tenant: Str("kommune"),
            user: Str("pia@kommune.no"),
            method,
        })
        .await
        .unwrap();
    let nas = f.nas(NAS).await;
    let home = Extra {
        calling_station: Some(HOME),
        ..Extra::default()
    };
    let c = nas.ask("pia@kommune.no", &home).await;
    assert_eq!(c.code, code::ACCESS_CHALLENGE);
    let listed = phone.pending(&conn, Duration::from_secs(5)).await.unwrap();
    assert_eq!(listed.len(), 1);
    let number: u8 = c
        .message
        .split(|ch: char| !ch.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .expect("the number to choose is in the message");
    // The user presses Enter: the request waits for the phone, and the NAS retransmits.
    let (bytes, authenticator) = nas.request(
        "pia@kommune.no",
        &Extra {
            password: Some(b""),
            state: c.state.as_deref(),
            ..home.clone()
        },
    );
    nas.send(&bytes).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        nas.send(&bytes).await;
    }
    assert_eq!(
        phone
            .answer(&conn, listed[0].id, Verdict::Approve(number))
            .await
            .unwrap(),
        portvakt_client::device::Outcome::Approved
    );
    let r = nas
        .receive(&authenticator, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.code, code::ACCESS_ACCEPT, "{r:?}");
    assert_eq!(
        nas.receive(&authenticator, NO_REPLY).await,
        None,
        "one reply"
    );
    nas.send(&bytes).await;
    let again = nas
        .receive(&authenticator, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.bytes, r.bytes);
    // The sign-in log names the frontend.
    let rows = common::sign_ins(&admin, "pia@kommune.no").await;
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["frontend"] == "radius"), "{rows:?}");
    assert_eq!(rows.last().unwrap()["outcome"], "allow", "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_from_one_node_is_answered_on_another_of_the_deployment_only() {
    // Two nodes of one deployment share the pepper, so a NAS that fails over between
    // them mid-challenge is still answered; a node of another deployment refuses it.
    let a = with_users("node-a", &["kari@kommune.no"]).await;
    let b = with_users("node-b", &["kari@kommune.no"]).await;
    let other = fixture_of("node-other", "", [10; 32]).await;
    enrol(&other.client(true).await, "kari@kommune.no")
        .await
        .unwrap();
    let home = Extra {
        calling_station: Some(HOME),
        ..Extra::default()
    };
    let c = a.nas(NAS).await.ask("kari@kommune.no", &home).await;
    assert_eq!(c.code, code::ACCESS_CHALLENGE);
    let right = code("kari@kommune.no");
    let answer = Extra {
        password: Some(&right),
        state: c.state.as_deref(),
        ..home.clone()
    };
    let r = other.nas(NAS).await.ask("kari@kommune.no", &answer).await;
    assert_eq!((r.code, r.message.as_str()), (code::ACCESS_REJECT, REFUSED));
    let r = b.nas(NAS).await.ask("kari@kommune.no", &answer).await;
    assert_eq!(r.code, code::ACCESS_ACCEPT, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_names_are_refused_or_decided_and_never_stop_the_server() {
    let f = with_users("names", &["kari@kommune.no"]).await;
    let nas = f.nas(NAS).await;
    let home = Extra {
        calling_station: Some(HOME),
        ..Extra::default()
    };
    // Not UTF-8: no one's name, refused as anyone's wrong code would be.
    let packet = portvakt_radius::Packet {
        code: code::ACCESS_REQUEST,
        identifier: 1,
        authenticator: [3; 16],
        attributes: vec![portvakt_radius::Attribute {
            kind: portvakt_radius::attr::USER_NAME,
            value: &[0xff, 0xfe, b'k'],
        }],
    };
    let (bytes, authenticator) = (
        packet.sign_request(common::radius::SECRET).unwrap(),
        packet.authenticator,
    );
    nas.send(&bytes).await;
    let r = nas
        .receive(&authenticator, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((r.code, r.message.as_str()), (code::ACCESS_REJECT, REFUSED));
    // Longer than any name can be (the longest a User-Name can be): refused undecided.
    let r = nas.ask(&"k".repeat(253), &home).await;
    assert_eq!((r.code, r.message.as_str()), (code::ACCESS_REJECT, REFUSED));
    // A name that folds to kari's is kari (RFC 8265); the longest name there is, a
    // right-to-left override and a name with a combining accent are nobody here, vouched
    // for by the NAS: "register", as over QUIC. The server goes on after each.
    let r = nas.ask("KARI@KOMMUNE.NO", &home).await;
    assert_eq!(r.code, code::ACCESS_CHALLENGE, "{r:?}");
    let long = "k".repeat(128);
    for name in [
        long.as_str(),
        "\u{202e}kari@kommune.no",
        "ka\u{0301}ri@kommune.no",
    ] {
        let r = nas.ask(name, &home).await;
        assert_eq!(
            (r.code, r.message.as_str()),
            (
                code::ACCESS_REJECT,
                "Register your sign-in methods (Security info) before signing in here."
            ),
            "{name:?}"
        );
    }
    let r = nas.ask("kari@kommune.no", &home).await;
    assert_eq!(r.code, code::ACCESS_CHALLENGE);
}
