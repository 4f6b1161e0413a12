//! `portvakt check`: one decision (or one code sent), asked as a frontend asks.

use super::*;

/// `check`'s exit status by outcome, for scripts: 0 allow, 1 an error (no answer),
/// 2 deny, 3 challenge, 4 locked, 5 register, 6 throttled.
pub(crate) fn check_exit(outcome: portvakt_wire::Outcome) -> ExitCode {
    use portvakt_wire::Outcome;
    ExitCode::from(match outcome {
        Outcome::Allow => 0,
        Outcome::Deny => 2,
        Outcome::Challenge => 3,
        Outcome::Locked => 4,
        Outcome::Register => 5,
        Outcome::Throttled => 6,
    })
}

/// What `check` asks the server.
pub(crate) enum Ask<'a> {
    Decide(Decide<'a>),
    SendCode(SendCode<'a>),
    /// The sign-in as first asked, the approval to wait on, and for how long.
    Await(Decide<'a>, [u8; 16], std::time::Duration),
}

/// A challenge id as the CLI prints it: 32 hex digits.
pub(crate) fn parse_challenge(hex: &str) -> Result<[u8; 16], String> {
    parse_id("--challenge", hex)
}

/// A challenge or approval id given as `what`: 32 hex digits.
pub(crate) fn parse_id(what: &str, hex: &str) -> Result<[u8; 16], String> {
    let raw = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .map_err(|e| format!("{what} is not hex: {e}"))?;
    raw.try_into()
        .map_err(|_| format!("{what} must be 32 hex digits"))
}

/// A file's text, or standard input's for `-` (at most 64 KiB).
pub(crate) fn read_input(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().take(64 << 10).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(64 << 10).read_to_string(&mut text))
    };
    read.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

pub(crate) async fn check(
    server: SocketAddr,
    data: &Path,
    ask: Ask<'_>,
    json: bool,
) -> Result<portvakt_wire::Outcome, String> {
    let files = PkiFiles::in_dir(&data.join("certs"));
    let client = connect(server, &files.ca, &files.frontend).await?;
    let answer = match ask {
        Ask::Decide(request) => client.decide(request).await.map(|d| (d, None)),
        Ask::Await(request, approval, wait) => client
            .await_approval(request, approval, wait)
            .await
            .map(|d| (d, None)),
        Ask::SendCode(request) => client.send_code(request).await.map(|s| {
            let decision = s.decision.clone();
            (decision, Some(s))
        }),
    };
    client.close().await;
    let (d, sent) = answer.map_err(|e| presented(e, &files.frontend.0))?;
    if json {
        let methods: Vec<serde_json::Value> = d
            .methods
            .iter()
            .map(|m| serde_json::json!({ "id": m.id, "kind": m.kind.as_str(), "hint": m.hint }))
            .collect();
        let mut object = serde_json::json!({
            "outcome": d.outcome.as_str(),
            "reason": d.reason,
            "rule": d.rule,
            "location": d.location,
            "methods": methods,
            "retry_after_s": d.retry_after.map(|r| r.as_secs()),
            "method": d.method.map(|m| m.as_str()),
        });
        if let Some(t) = &d.device_token {
            object["device_token"] =
                serde_json::json!({ "token": t.token, "expires_ms": t.expires_ms });
        }
        if let Some(o) = &d.security_key {
            object["security_key"] =
                serde_json::from_str(o).unwrap_or(serde_json::Value::String(o.clone()));
        }
        if let Some(a) = &d.approval {
            object["approval"] = serde_json::json!({
                "id": hex(&a.id),
                "number": a.number,
                "expires_ms": a.expires_ms,
            });
        }
        if let Some(s) = &sent {
            object["challenge"] = serde_json::json!(s.challenge.map(|c| hex(&c)));
            object["delivery"] =
                serde_json::json!(s.delivery.as_ref().map(|d| serde_json::json!({
                    "channel": d.channel.as_str(),
                    "destination": d.destination,
                    "code": d.code,
                    "expires_ms": d.expires_ms,
                })));
        }
        println!("{object}");
    } else {
        let mut line = format!(
            "{} ({}) rule={} location={}",
            d.outcome.as_str(),
            d.reason,
            d.rule,
            d.location
        );
        if !d.methods.is_empty() {
            let names: Vec<String> = d
                .methods
                .iter()
                .map(|m| format!("{}:{}", m.id, m.kind.as_str()))
                .collect();
            line.push_str(&format!(" methods={}", names.join(",")));
        }
        if let Some(r) = d.retry_after {
            line.push_str(&format!(" retry_after={}s", r.as_secs()));
        }
        if let Some(m) = d.method {
            line.push_str(&format!(" method={}", m.as_str()));
        }
        println!("{line}");
        if let Some(t) = &d.device_token {
            println!("device token: {}", t.token);
        }
        if let Some(o) = &d.security_key {
            println!("security key options (for navigator.credentials.get): {o}");
        }
        if let Some(a) = &d.approval {
            println!(
                "approval: {} (show the number {}; wait with --approval)",
                hex(&a.id),
                a.number
            );
        }
        if let Some(s) = &sent {
            match &s.delivery {
                // What a frontend hands to its SMS, voice or mail gateway.
                Some(d) => println!(
                    "deliver {} code {} to {}",
                    d.channel.as_str(),
                    d.code,
                    d.destination
                ),
                // An unknown name gets a challenge too; nothing goes anywhere.
                None if s.challenge.is_some() => println!("nothing to deliver"),
                None => {}
            }
            if let Some(c) = s.challenge {
                println!(
                    "challenge: {} (answer with --challenge and --sent-code)",
                    hex(&c)
                );
            }
        }
    }
    Ok(d.outcome)
}
