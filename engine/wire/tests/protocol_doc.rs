//! `docs/protocol.md` against the codec: its worked examples byte for byte, its code
//! tables value for value, its administrator kinds one for one. The page is read at
//! compile time, so a change to either side that the other does not follow fails here.

use std::collections::BTreeSet;

use bytes::BytesMut;
use portvakt_wire::admin::{Admin, AdminReply};
use portvakt_wire::*;

const DOC: &str = include_str!("../../../docs/protocol.md");

/// The text under the heading `title` (a whole heading line), up to the next heading of
/// the same or a higher level.
fn section(title: &str) -> &'static str {
    let level = title.chars().take_while(|c| *c == '#').count();
    let start = DOC
        .lines()
        .position(|l| l == title)
        .unwrap_or_else(|| panic!("no heading {title:?} in docs/protocol.md"));
    let lines: Vec<&str> = DOC.lines().collect();
    let end = lines[start + 1..]
        .iter()
        .position(|l| {
            let hashes = l.chars().take_while(|c| *c == '#').count();
            hashes > 0 && hashes <= level && l.chars().nth(hashes) == Some(' ')
        })
        .map_or(lines.len(), |n| start + 1 + n);
    let from = lines[..=start].iter().map(|l| l.len() + 1).sum::<usize>();
    let to = lines[..end].iter().map(|l| l.len() + 1).sum::<usize>();
    &DOC[from..to.min(DOC.len())]
}

/// The rows of every table in `text` (header and separator rows left out), as cells.
fn rows(text: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let Some(inner) = line.strip_prefix('|').and_then(|l| l.strip_suffix('|')) else {
            in_table = false;
            continue;
        };
        let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
        if !in_table {
            // The header row.
            in_table = true;
            continue;
        }
        if cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        out.push(cells);
    }
    out
}

/// The worked examples: the bytes of every `text` block, and the length its first line
/// announces.
fn examples() -> Vec<(Vec<u8>, usize)> {
    let text = section("## Examples");
    let mut out = Vec::new();
    let mut block: Option<(Vec<u8>, Option<usize>)> = None;
    for line in text.lines() {
        if line == "```text" {
            block = Some((Vec::new(), None));
            continue;
        }
        if line == "```" {
            let (bytes, announced) = block.take().expect("a block ends that never began");
            out.push((bytes, announced.expect("the first line names the length")));
            continue;
        }
        let Some((bytes, announced)) = block.as_mut() else {
            continue;
        };
        let (hex, comment) = line.split_once("  ").unwrap_or((line, ""));
        for token in hex.split(' ') {
            assert_eq!(token.len(), 2, "not a byte: {token:?} in {line:?}");
            bytes.push(u8::from_str_radix(token, 16).unwrap());
        }
        if announced.is_none() {
            let n = comment.trim().strip_prefix("length ").expect(line);
            *announced = Some(n.parse().unwrap());
        }
    }
    out
}

#[test]
fn the_worked_examples_are_the_codec_s_bytes() {
    let frames = [
        Frame::Decide(
            7,
            Decide {
                tenant: "k",
                user: "kari",
                ip: "203.0.113.9".parse().unwrap(),
                purpose: Purpose::SignIn,
                first_factor: FirstFactor::Ok,
                proof: Some(Proof::Totp("492039")),
                device_token: None,
                remember_device: false,
            },
        ),
        Frame::SendCode(
            8,
            SendCode {
                tenant: "k",
                user: "kari",
                ip: "2001:db8::5".parse().unwrap(),
                purpose: Purpose::PasswordReset,
                method: Some(2),
            },
        ),
        Frame::Decision(
            7,
            Decision {
                outcome: Outcome::Challenge,
                reason: "second_factor_required",
                rule: "home",
                location: "elsewhere",
                methods: vec![
                    MethodInfo {
                        id: 1,
                        kind: MethodKind::AuthenticatorApp,
                        hint: None,
                    },
                    MethodInfo {
                        id: 2,
                        kind: MethodKind::Sms,
                        hint: Some("•• 67"),
                    },
                ],
                retry_after_s: None,
                method: None,
                device_token: None,
                approval: None,
                security_key: None,
            },
        ),
        Frame::Error {
            id: 9,
            code: ErrorCode::UnknownKind,
            message: "unknown frame kind 0x42",
        },
    ];
    let examples = examples();
    assert_eq!(examples.len(), frames.len(), "one frame per example");
    for ((bytes, announced), frame) in examples.iter().zip(&frames) {
        assert_eq!(
            bytes.len(),
            4 + announced,
            "{frame:?}: the announced length"
        );
        assert_eq!(Frame::decode(bytes).as_ref(), Ok(frame));
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded).unwrap();
        assert_eq!(&encoded[..], &bytes[..], "{frame:?}");
    }
}

#[test]
fn the_code_table_is_the_codec_s() {
    let table = rows(section("### Codes"));
    // Four pairs of columns: purpose, first factor, outcome, method kind.
    let column = |pair: usize| -> BTreeSet<(u8, String)> {
        table
            .iter()
            .filter(|r| !r[2 * pair].is_empty())
            .map(|r| (r[2 * pair].parse().unwrap(), r[2 * pair + 1].to_owned()))
            .collect()
    };
    let codec = |all: &mut dyn Iterator<Item = (u8, &'static str)>| -> BTreeSet<(u8, String)> {
        all.map(|(c, n)| (c, n.to_owned())).collect()
    };
    assert_eq!(
        column(0),
        codec(&mut Purpose::ALL.iter().map(|p| (*p as u8, p.as_str())))
    );
    assert_eq!(
        column(1),
        codec(&mut FirstFactor::ALL.iter().map(|p| (*p as u8, p.as_str())))
    );
    assert_eq!(
        column(2),
        codec(&mut Outcome::ALL.iter().map(|p| (*p as u8, p.as_str())))
    );
    assert_eq!(
        column(3),
        codec(&mut MethodKind::ALL.iter().map(|p| (*p as u8, p.as_str())))
    );
}

#[test]
fn the_error_codes_are_the_codec_s() {
    let documented: BTreeSet<(u16, String)> = rows(section("### `0xff` error (server → client)"))
        .iter()
        .filter_map(|r| Some((r[0].parse().ok()?, r[1].to_owned())))
        .collect();
    let codec: BTreeSet<(u16, String)> = (0..=u16::MAX)
        .filter_map(|v| ErrorCode::from_u16(v).map(|c| (v, c.as_str().to_owned())))
        .collect();
    assert_eq!(documented, codec);
}

#[test]
fn the_proof_kinds_are_the_codec_s() {
    // The proof's kind byte follows tenant, user, ip, purpose, first factor and the
    // `present` byte of a decide frame.
    let challenge = [0u8; 16];
    let proofs = [
        (Proof::Totp("123456"), "authenticator code"),
        (
            Proof::Hotp {
                code: "123456",
                next: None,
            },
            "hardware-token code",
        ),
        (
            Proof::Sent {
                challenge,
                code: "123456",
            },
            "sent code",
        ),
        (Proof::AppPassword("abcd"), "app password"),
        (Proof::SecurityAnswers(vec!["a"]), "security answers"),
        (
            Proof::Push {
                approval: challenge,
                wait_ms: 0,
            },
            "push approval",
        ),
        (Proof::SecurityKey("{}"), "security key"),
    ];
    let table = rows(section("### `0x01` decide (client → server)"));
    for (proof, name) in proofs {
        let mut buf = BytesMut::new();
        Frame::Decide(
            1,
            Decide {
                tenant: "k",
                user: "u",
                ip: "192.0.2.1".parse().unwrap(),
                purpose: Purpose::SignIn,
                first_factor: FirstFactor::Ok,
                proof: Some(proof),
                device_token: None,
                remember_device: false,
            },
        )
        .encode(&mut buf)
        .unwrap();
        // length 4, kind 1, id 4, tenant 2, user 2, ip 5, purpose 1, first factor 1, present 1
        let kind = buf[21];
        let row = table
            .iter()
            .find(|r| r[1] == name)
            .unwrap_or_else(|| panic!("no proof row {name:?}"));
        assert_eq!(row[0], kind.to_string(), "{name}");
    }
}

#[test]
fn the_administrator_kinds_are_the_codec_s() {
    let documented: BTreeSet<u8> = rows(section("### Administrator frames"))
        .iter()
        .filter_map(|r| {
            let hex = r[0].strip_prefix("`0x")?.strip_suffix('`')?;
            u8::from_str_radix(hex, 16).ok()
        })
        .collect();
    let codec: BTreeSet<u8> = Admin::KINDS
        .iter()
        .chain(AdminReply::KINDS)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(documented, codec);
}

#[test]
fn the_device_kinds_are_the_codec_s() {
    let documented: BTreeSet<u8> = rows(section("### Push-device frames"))
        .iter()
        .filter_map(|r| {
            let hex = r[0].strip_prefix("`0x")?.strip_suffix('`')?;
            u8::from_str_radix(hex, 16).ok()
        })
        .collect();
    let codec: BTreeSet<u8> = portvakt_wire::Device::KINDS
        .iter()
        .chain(portvakt_wire::DeviceReply::KINDS)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(documented, codec);
}
