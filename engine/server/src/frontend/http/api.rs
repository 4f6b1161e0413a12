//! Portvakt's own JSON API: `POST /v1/decide`, `POST /v1/send-code`, and the
//! administrator operations as `POST /v1/admin/<operation>` (administrators only). The
//! fields mirror the QUIC protocol's (`docs/protocol.md`); `docs/openapi.yaml` describes
//! every route. Errors are `{"error": CODE, "message": ...}` with a 4xx or 5xx status.

use std::net::IpAddr;

use bytes::BytesMut;
use hyper::StatusCode;
use portvakt_core::{Decision, MethodId, Purpose};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Reply;
use super::endpoint::{Asked, Shared};
use crate::app::Frontend;
use crate::frontend::quic::service::{Handled, Role};

/// The longest wait a push redemption may ask for, as over QUIC.
pub const MAX_WAIT_MS: u32 = portvakt_wire::MAX_WAIT_MS;

/// The longest tenant and user names, as over QUIC.
const MAX_NAME: usize = 128;

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FirstFactorBody {
    Ok,
    Failed,
    None,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ProofBody {
    Totp {
        code: String,
    },
    Hotp {
        code: String,
        #[serde(default)]
        next: Option<String>,
    },
    Code {
        code: String,
    },
    Sent {
        challenge: String,
        code: String,
    },
    AppPassword {
        password: String,
    },
    SecurityAnswers {
        answers: Vec<String>,
    },
    Push {
        approval: String,
        #[serde(default)]
        wait_ms: u32,
    },
    SecurityKey {
        response: Value,
    },
}

fn sign_in() -> Purpose {
    Purpose::SignIn
}

fn ok() -> FirstFactorBody {
    FirstFactorBody::Ok
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    tenant: String,
    user: String,
    ip: IpAddr,
    #[serde(default = "sign_in")]
    purpose: Purpose,
    #[serde(default = "ok")]
    first_factor: FirstFactorBody,
    #[serde(default)]
    proof: Option<ProofBody>,
    #[serde(default)]
    device_token: Option<String>,
    #[serde(default)]
    remember_device: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendCodeBody {
    tenant: String,
    user: String,
    ip: IpAddr,
    #[serde(default = "sign_in")]
    purpose: Purpose,
    #[serde(default)]
    method: Option<u32>,
}

fn bad(message: impl Into<String>) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// The body as `T`, its names within their limits.
fn body<T: for<'de> Deserialize<'de>>(asked: &Asked<'_>) -> Result<T, Reply> {
    let media = asked.content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(Reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ));
    }
    serde_json::from_slice(asked.body).map_err(|e| bad(format!("the body: {e}")))
}

fn names(tenant: &str, user: &str) -> Result<(), Reply> {
    for (what, s) in [("tenant", tenant), ("user", user)] {
        if s.len() > MAX_NAME {
            return Err(bad(format!(
                "{what}: {} bytes, at most {MAX_NAME}",
                s.len()
            )));
        }
    }
    Ok(())
}

/// `POST /v1/decide`.
pub(crate) async fn decide(shared: &Shared, asked: &Asked<'_>) -> Reply {
    let b: DecideBody = match body(asked) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    if let Err(reply) = names(&b.tenant, &b.user) {
        return reply;
    }
    let app = shared.service.app();
    let answers: Vec<&str>;
    let key_json: String;
    let mut wait = None;
    let proof = match &b.proof {
        None => None,
        Some(ProofBody::Totp { code }) => Some(portvakt_core::Proof::Totp(code)),
        Some(ProofBody::Hotp { code, next }) => Some(portvakt_core::Proof::Hotp {
            code,
            next: next.as_deref(),
        }),
        Some(ProofBody::Code { code }) => Some(portvakt_core::Proof::Code(code)),
        Some(ProofBody::Sent { challenge, code }) => {
            Some(portvakt_core::Proof::Sent { challenge, code })
        }
        Some(ProofBody::AppPassword { password }) => {
            Some(portvakt_core::Proof::AppPassword(password))
        }
        Some(ProofBody::SecurityAnswers { answers: a }) => {
            answers = a.iter().map(String::as_str).collect();
            Some(portvakt_core::Proof::SecurityAnswers(&answers))
        }
        Some(ProofBody::Push { approval, wait_ms }) => {
            if *wait_ms > MAX_WAIT_MS {
                return bad(format!("proof.wait_ms: at most {MAX_WAIT_MS}"));
            }
            if *wait_ms > 0 {
                let Some(id) = portvakt_core::ChallengeId::from_hex(approval) else {
                    return bad("proof.approval: not 32 hex digits");
                };
                wait = Some((id, *wait_ms));
            }
            Some(portvakt_core::Proof::Push(approval))
        }
        Some(ProofBody::SecurityKey { response }) => {
            key_json = match response {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(portvakt_core::Proof::SecurityKey(&key_json))
        }
    };
    if let Some((id, ms)) = wait {
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_millis(u64::from(ms));
        app.approvals()
            .until_answered(app.engine(), id, || app.now(), deadline)
            .await;
    }
    let request = portvakt_core::Request {
        tenant: &b.tenant,
        user: &b.user,
        ip: b.ip,
        purpose: b.purpose,
        first_factor: match b.first_factor {
            FirstFactorBody::Ok => portvakt_core::FirstFactor::Ok,
            FirstFactorBody::Failed => portvakt_core::FirstFactor::Failed,
            FirstFactorBody::None => portvakt_core::FirstFactor::None,
        },
        proof,
        device_token: b.device_token.as_deref(),
        remember_device: b.remember_device,
    };
    let mut records = BytesMut::new();
    let d = app.decide_now(Frontend::Http, &request, &mut records);
    match app.settle(&mut records).await {
        Ok(()) => Reply::ok(decision(&d)),
        Err(e) => withheld(&e),
    }
}

/// `POST /v1/send-code`.
pub(crate) async fn send_code(shared: &Shared, asked: &Asked<'_>) -> Reply {
    let b: SendCodeBody = match body(asked) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    if let Err(reply) = names(&b.tenant, &b.user) {
        return reply;
    }
    let app = shared.service.app();
    let request = portvakt_core::SendRequest {
        tenant: &b.tenant,
        user: &b.user,
        ip: b.ip,
        purpose: b.purpose,
        method: b.method.map(MethodId),
    };
    let mut records = BytesMut::new();
    let now = app.now();
    let sent = crate::app::blocking(app.engine(), || {
        app.send_code(Frontend::Http, &request, now, &mut records)
    });
    if let Err(e) = app.settle(&mut records).await {
        return withheld(&e);
    }
    let mut out = decision(&sent.decision);
    out["challenge"] = json!(sent.challenge.map(|c| c.to_hex()));
    out["delivery"] = json!(sent.delivery.as_ref().map(|d| json!({
        "channel": d.channel.as_str(),
        "destination": d.destination,
        "code": d.code.expose(),
        "expires_ms": d.expires.as_millis(),
    })));
    Reply::ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketBody {
    tenant: String,
    user: String,
}

/// `POST /v1/security-info/ticket`: a single-use link to the user's security-info pages,
/// for a frontend that has just checked their password.
pub(crate) async fn ticket(shared: &Shared, asked: &Asked<'_>) -> Reply {
    let Some(pages) = &shared.pages else {
        return Reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this server does not serve the security-info pages ([security_info] is not configured)",
        );
    };
    let b: TicketBody = match body(asked) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    if let Err(reply) = names(&b.tenant, &b.user) {
        return reply;
    }
    if b.user.is_empty() || b.user.chars().any(char::is_control) {
        return bad("user: a name, without control characters");
    }
    let app = shared.service.app();
    let engine = app.engine();
    if engine.policy().tenant(&b.tenant).is_none() {
        return bad(format!("tenant: {:?} is not in the policy", b.tenant));
    }
    let ttl = portvakt_core::Duration::from_secs(pages.config.ticket_ttl.as_secs());
    let now = app.now();
    let issued = crate::app::blocking(engine, || engine.issue_ticket(&b.tenant, &b.user, ttl, now));
    match issued {
        Ok(t) => Reply::ok(json!({
            "url": format!(
                "{}/security-info/start?ticket={}",
                pages.config.public_url,
                super::security_info::ticket_text(&t, &b.tenant, &b.user)
            ),
            "expires_ms": t.expires.as_millis(),
        })),
        Err(e) => {
            crate::warn(format_args!("http: a ticket could not be stored: {e}"));
            Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the state store did not take the ticket",
            )
        }
    }
}

fn withheld(e: &str) -> Reply {
    crate::warn(format_args!("http: an answer was withheld: {e}"));
    Reply::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the answer could not be made durable",
    )
}

/// A decision as JSON: the fields of the QUIC protocol's decision frame, by name.
pub fn decision(d: &Decision) -> Value {
    let methods: Vec<Value> = d
        .methods
        .iter()
        .map(|m| json!({ "id": m.id.0, "kind": m.kind.as_str(), "hint": m.hint }))
        .collect();
    let mut out = json!({
        "outcome": d.outcome.as_str(),
        "reason": d.reason.as_str(),
        "rule": d.rule.as_str(),
        "location": d.location.as_str(),
        "methods": methods,
        "retry_after_s": d.retry_after.map(|r| r.as_secs_ceil()),
        "method": d.method.map(|m| m.as_str()),
    });
    if let Some(t) = &d.device_token {
        out["device_token"] =
            json!({ "token": t.token.expose(), "expires_ms": t.expires.as_millis() });
    }
    if let Some(a) = &d.approval {
        out["approval"] = json!({
            "id": a.id.to_hex(),
            "number": a.number,
            "expires_ms": a.expires.as_millis(),
        });
    }
    if let Some(options) = &d.security_key {
        out["security_key"] =
            serde_json::from_str(options).unwrap_or_else(|_| Value::from(options.clone()));
    }
    out
}

/// `POST /v1/admin/<operation>`: the operation's frame, made from the JSON body and
/// answered by the same handler as over QUIC (recorded in the audit trail under `actor`).
pub(crate) async fn admin(
    shared: &Shared,
    operation: &str,
    actor: &str,
    asked: &Asked<'_>,
) -> Reply {
    use portvakt_wire::Admin;
    if !Admin::json_names().iter().any(|n| n == operation) {
        return Reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no administrator operation {operation:?}"),
        );
    }
    let value: Value = match asked.body {
        [] => json!({}),
        _ => match body(asked) {
            Ok(v) => v,
            Err(reply) => return reply,
        },
    };
    let owned = match Admin::json_owned(operation, &value) {
        Ok(o) => o,
        Err(e) => return bad(e),
    };
    let request = match Admin::from_json(operation, &value, &owned) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    match operate(&shared.service, actor, request).await {
        Ok((name, mut fields)) => {
            if name == "audit_found" {
                readable_events(&mut fields);
            }
            fields.insert("reply".into(), Value::from(name));
            Reply::ok(Value::Object(fields))
        }
        Err((code, message)) => {
            use portvakt_wire::ErrorCode as E;
            let status = match code {
                E::Refused => StatusCode::CONFLICT,
                E::Forbidden => StatusCode::FORBIDDEN,
                E::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                E::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
                E::Malformed | E::TooLarge | E::UnknownKind => StatusCode::BAD_REQUEST,
            };
            Reply::error(status, code.as_str(), message)
        }
    }
}

/// The audit trail's events as JSON objects (`crate::audit::Event::to_json`) rather
/// than the wire's base64 bytes.
fn readable_events(fields: &mut serde_json::Map<String, Value>) {
    let Some(Value::Array(events)) = fields.get_mut("events") else {
        return;
    };
    for e in events.iter_mut() {
        let decoded = e
            .as_str()
            .and_then(|b| data_encoding::BASE64.decode(b.as_bytes()).ok())
            .and_then(|b| crate::audit::Event::decode(&b).ok())
            .and_then(|ev| serde_json::from_str::<Value>(&ev.to_json()).ok());
        if let Some(d) = decoded {
            *e = d;
        }
    }
}

/// Makes the administrator operation `request` as `actor`, through the same handler as
/// over QUIC: audited, durable before it answers, and applied to the directory at once.
/// The answer's kind and fields as JSON, or the error's code and message.
pub(crate) async fn operate(
    service: &crate::frontend::quic::service::Service,
    actor: &str,
    request: portvakt_wire::Admin<'_>,
) -> Result<(String, serde_json::Map<String, Value>), (portvakt_wire::ErrorCode, String)> {
    use portvakt_wire::{ErrorCode, Frame};
    let mut frame = BytesMut::new();
    if let Err(e) = Frame::Admin(1, request).encode(&mut frame) {
        return Err((ErrorCode::Malformed, e.to_string()));
    }
    let role = Role::admin(actor);
    let (mut out, mut records) = (BytesMut::new(), BytesMut::new());
    let now = service.now();
    let handled = crate::app::blocking(service.engine(), || {
        service.handle(&role, &frame, now, &mut out, &mut records)
    });
    if let Handled::Query(id, query) = handled {
        service
            .answer_query(id, query, &mut out, &mut records)
            .await;
    }
    if let Err(e) = service.app().settle(&mut records).await {
        crate::warn(format_args!("http: an answer was withheld: {e}"));
        return Err((
            ErrorCode::Internal,
            "the answer could not be made durable".into(),
        ));
    }
    match Frame::decode(&out) {
        Ok(Frame::AdminReply(_, reply)) => Ok(reply.to_json()),
        Ok(Frame::Error { code, message, .. }) => Err((code, message.to_owned())),
        _ => Err((
            ErrorCode::Internal,
            "the operation answered with an unexpected frame".into(),
        )),
    }
}
