//! privacyIDEA's `/validate/check` and `/validate/polltransaction`, answered as privacyIDEA
//! 3.14 answers them, so that its plugins (Keycloak, SimpleSAMLphp, ADFS, Windows logon,
//! PAM, FreeRADIUS, LDAP proxy) work against Portvakt unchanged.
//!
//! Parameters come from the query string, a form body and a JSON body, merged as
//! privacyIDEA merges them: form and query values are URL-decoded once more unless the
//! User-Agent is one of privacyIDEA's own plugins that do not encode twice, and JSON
//! values are taken as they are, over the others. `docs/http.md` lists where Portvakt
//! differs on purpose.

use std::net::IpAddr;

use bytes::BytesMut;
use hyper::StatusCode;
use portvakt_core::{Decision, FirstFactor, MethodId, Outcome, Proof, Purpose};
use serde_json::{Map, Value, json};

use super::Reply;
use super::config::Realm;
use super::endpoint::{Asked, Shared};
use crate::app::{App, Frontend};
use crate::frontend::challenge::{self, Bound, Pending};
use crate::frontend::upstream::Verdict;

/// The longest `pass` taken; a longer one is refused before any work, and counts as
/// nothing.
pub const MAX_PASS: usize = 256;
/// The longest user name, as over QUIC and in the sign-in log.
pub const MAX_USER: usize = 128;
/// The API level answered, as privacyIDEA's `versionnumber`.
pub const API_LEVEL: &str = "3.14";
/// User-Agents that encode parameters once (privacyIDEA's `NO_UNQUOTE_USER_AGENTS`).
const ENCODE_ONCE: &[&str] = &["privacyidea-cp", "privacyidea-ldap-proxy", "simplesamlphp"];

/// The message of a refusal: any wrong code, a name nobody has, a blocking rule.
pub const WRONG: &str = "wrong otp value";
/// The message of a locked or throttled attempt.
pub const LATER: &str = "Too many attempts. Try again later.";
/// The message for someone with no methods.
pub const NO_TOKENS: &str = "The user has no tokens assigned";
/// The message when the upstream server that checks passwords did not answer.
pub const UNAVAILABLE: &str = "The sign-in cannot be completed now. Try again later.";
/// The message when a transaction is not one of this deployment's, or another user's.
pub const NOT_THE_CHALLENGE: &str = "Response did not match the challenge.";

fn version() -> String {
    format!("Portvakt {}", env!("CARGO_PKG_VERSION"))
}

fn time() -> f64 {
    crate::clock::now().as_millis() as f64 / 1000.0
}

/// A result document (`rid` 2 adds `authentication`, as privacyIDEA's does for
/// `/validate/check`).
fn result(value: bool, authentication: Option<&str>, detail: Value) -> Reply {
    let mut result = json!({ "status": true, "value": value });
    if let Some(a) = authentication {
        result["authentication"] = Value::from(a);
    }
    Reply::ok(json!({
        "jsonrpc": "2.0",
        "result": result,
        "detail": detail,
        "id": if authentication.is_some() { 2 } else { 1 },
        "version": version(),
        "versionnumber": API_LEVEL,
        "time": time(),
    }))
}

/// privacyIDEA's error document: `code` is its error number (905 a parameter, 904 a user
/// or realm, 4033 authentication), the message `ERR<code>: ...`.
pub fn error_code(status: StatusCode, code: u32, message: &str) -> Reply {
    Reply {
        status,
        body: json!({
            "jsonrpc": "2.0",
            "detail": null,
            "result": {
                "status": false,
                "error": { "code": code, "message": format!("ERR{code}: {message}") },
            },
            "id": 1,
            "version": version(),
            "versionnumber": API_LEVEL,
            "time": time(),
        }),
    }
}

/// An error document for an HTTP-level refusal (authentication, size, time, route).
pub fn error(status: StatusCode, message: &str) -> Reply {
    let code = match status {
        StatusCode::UNAUTHORIZED => 4033,
        StatusCode::NOT_FOUND => 601,
        _ => 905,
    };
    error_code(status, code, message)
}

fn parameter(message: &str) -> Reply {
    error_code(StatusCode::BAD_REQUEST, 905, message)
}

/// The request's parameters, merged as privacyIDEA merges them.
fn params(asked: &Asked<'_>) -> Result<Map<String, Value>, Reply> {
    let once = user_agent_encodes_once(asked.user_agent);
    let mut out = Map::new();
    let mut add_form = |bytes: &[u8]| {
        for (k, v) in form_urlencoded::parse(bytes) {
            let v = match once {
                true => v.into_owned(),
                false => percent_encoding::percent_decode_str(&v)
                    .decode_utf8_lossy()
                    .into_owned(),
            };
            out.entry(k.into_owned()).or_insert(Value::from(v));
        }
    };
    add_form(asked.query.as_bytes());
    let media = asked
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_form = media == "application/x-www-form-urlencoded";
    if is_form && asked.method == hyper::Method::POST {
        add_form(asked.body);
    } else if !asked.body.is_empty() && asked.method == hyper::Method::POST {
        match serde_json::from_slice::<Value>(asked.body) {
            Ok(Value::Object(map)) => out.extend(map),
            // privacyIDEA reads a body that is not JSON as no parameters, unless the
            // request said it was JSON.
            Ok(_) | Err(_) if media != "application/json" => {}
            Ok(_) => return Err(parameter("the JSON body is not an object")),
            Err(e) => return Err(parameter(&format!("the JSON body does not parse: {e}"))),
        }
    }
    Ok(out)
}

/// Whether `agent` names one of the plugins that encode parameters only once.
fn user_agent_encodes_once(agent: &str) -> bool {
    let name = agent
        .split(['/', ' '])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    ENCODE_ONCE.contains(&name.as_str())
}

/// A string parameter, if present; a present one that is not a string is an error.
fn text<'m>(params: &'m Map<String, Value>, key: &str) -> Result<Option<&'m str>, Reply> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(parameter(&format!("'{key}' must be a string"))),
    }
}

/// The user and tenant a request names: `realm` if given, else the part after the last
/// `@` of `user` when that is a realm (the user then the part before), else the default
/// realm and the whole name.
fn who<'p>(
    shared: &'p Shared,
    user: &'p str,
    realm: Option<&str>,
) -> Result<(&'p str, &'p Realm), Reply> {
    let config = &shared.config;
    if let Some(name) = realm.filter(|r| !r.is_empty()) {
        return match config.realm(name) {
            Some(r) => Ok((user, r)),
            None => Err(error_code(
                StatusCode::BAD_REQUEST,
                904,
                &format!("There is no realm '{name}'"),
            )),
        };
    }
    if let Some((name, suffix)) = user.rsplit_once('@')
        && let Some(r) = config.realm(suffix)
    {
        return Ok((name, r));
    }
    Ok((user, config.default_realm()))
}

/// `POST|GET /validate/check`.
pub(crate) async fn check(shared: &Shared, asked: &Asked<'_>) -> Reply {
    match checked(shared, asked).await {
        Ok(reply) | Err(reply) => reply,
    }
}

async fn checked(shared: &Shared, asked: &Asked<'_>) -> Result<Reply, Reply> {
    let params = params(asked)?;
    let Some(user) = text(&params, "user")?.filter(|u| !u.is_empty()) else {
        return Err(match params.contains_key("serial") {
            true => parameter("Portvakt decides for users, not for token serials: send 'user'"),
            false => parameter("Missing parameter: 'user'"),
        });
    };
    if user.len() > MAX_USER {
        return Err(parameter(&format!(
            "'user' is longer than {MAX_USER} bytes"
        )));
    }
    let Some(pass) = text(&params, "pass")? else {
        return Err(parameter("Missing parameter: 'pass'"));
    };
    if pass.len() > MAX_PASS {
        return Err(parameter(&format!(
            "'pass' is longer than {MAX_PASS} bytes"
        )));
    }
    let (user, realm) = who(shared, user, text(&params, "realm")?)?;
    let tenant = realm.tenant.as_str();
    let ip = match text(&params, "client")? {
        Some(c) if shared.config.trusted_proxy(asked.peer) => c
            .trim()
            .parse::<IpAddr>()
            .map_err(|_| parameter("'client' is not an IP address"))?,
        _ => asked.peer,
    };
    let transaction = match text(&params, "transaction_id")? {
        Some(t) => Some(t),
        None => text(&params, "state")?,
    };
    let app = shared.service.app();
    let mut records = BytesMut::new();
    let ask = Ask {
        app,
        tenant,
        user,
        ip,
    };
    let (d, waiting) = match transaction.filter(|t| !t.is_empty()) {
        Some(token) => {
            let now = app.now();
            let pending = match open(app, token, now) {
                Some((t, u, pending)) if t == tenant && u == user => pending,
                _ => {
                    return Ok(result(
                        false,
                        Some("REJECT"),
                        json!({ "message": NOT_THE_CHALLENGE }),
                    ));
                }
            };
            // The transaction stands for the first factor checked when it was made.
            let ok = FirstFactor::Ok;
            match pending {
                Pending::Push { id, number } if pass.is_empty() => {
                    let hex = id.to_hex();
                    let d = ask.decide(ok, Some(Proof::Push(&hex)), &mut records);
                    (d, Some((id, number)))
                }
                Pending::Push { id, number } => {
                    let d = ask.decide(ok, Some(Proof::Code(pass)), &mut records);
                    (d, Some((id, number)))
                }
                Pending::Code => (ask.decide(ok, Some(Proof::Code(pass)), &mut records), None),
            }
        }
        None => {
            let (first, code) = match &realm.upstream {
                // The caller checked the password: `pass` is the code.
                None => (FirstFactor::Ok, pass),
                Some(upstream) => match password_then_code(realm, upstream, user, pass).await {
                    Some(checked) => checked,
                    None => {
                        return Ok(result(
                            false,
                            Some("REJECT"),
                            json!({ "message": UNAVAILABLE }),
                        ));
                    }
                },
            };
            let proof = (!code.is_empty()).then_some(Proof::Code(code));
            (ask.decide(first, proof, &mut records), None)
        }
    };
    if let Err(e) = app.settle(&mut records).await {
        crate::warn(format_args!("http: an answer was withheld: {e}"));
        return Err(error_code(
            StatusCode::INTERNAL_SERVER_ERROR,
            903,
            "the answer could not be made durable",
        ));
    }
    Ok(ask.reply(&d, waiting))
}

/// For a realm whose passwords an upstream RADIUS server checks: `pass` is the password
/// and then the code. The password's verdict and the code (empty if none follows); `None`
/// if the upstream server gave no answer (the request fails closed, nothing decided).
async fn password_then_code<'p>(
    realm: &Realm,
    upstream: &crate::frontend::radius::config::Upstream,
    user: &str,
    pass: &'p str,
) -> Option<(FirstFactor, &'p str)> {
    let (password, code) =
        crate::frontend::upstream::split_code(pass.as_bytes(), realm.code_digits);
    // The code is ASCII digits, so the split falls between characters.
    let code = code.map_or("", |c| &pass[pass.len() - c.len()..]);
    if password.is_empty() {
        return Some((FirstFactor::Failed, code));
    }
    match crate::frontend::upstream::check(upstream, user.as_bytes(), password).await {
        Ok(Verdict::Right) => Some((FirstFactor::Ok, code)),
        Ok(Verdict::Wrong) => Some((FirstFactor::Failed, code)),
        Err(e) => {
            crate::warn(format_args!(
                "http: realm {}: the upstream password check failed: {e}",
                realm.name
            ));
            None
        }
    }
}

/// A request's parts the decision needs.
struct Ask<'a> {
    app: &'a App,
    tenant: &'a str,
    user: &'a str,
    ip: IpAddr,
}

impl Ask<'_> {
    fn decide(
        &self,
        first_factor: FirstFactor,
        proof: Option<Proof<'_>>,
        records: &mut BytesMut,
    ) -> Decision {
        let request = portvakt_core::Request {
            tenant: self.tenant,
            user: self.user,
            ip: self.ip,
            purpose: Purpose::SignIn,
            first_factor,
            proof,
            device_token: None,
            remember_device: false,
        };
        self.app.decide_now(Frontend::Http, &request, records)
    }

    /// The decision as privacyIDEA says it.
    fn reply(&self, d: &Decision, waiting: Option<(portvakt_core::ChallengeId, u8)>) -> Reply {
        match d.outcome {
            Outcome::Allow => {
                let mut detail = json!({ "message": "matching 1 tokens" });
                match d.method {
                    Some(kind) => detail["type"] = Value::from(token_type(kind)),
                    None => {
                        detail["message"] = Value::from("accepted: no second factor is needed here")
                    }
                }
                result(true, Some("ACCEPT"), detail)
            }
            Outcome::Challenge => {
                let now = self.app.now();
                let pending = challenge::after(d, waiting);
                let (message, kind, mode, method) = match pending {
                    // A waiting approval found pending again has no method at hand: 0.
                    Pending::Push { number, .. } => (
                        format!(
                            "Approve the sign-in in the app on your phone by choosing {number}."
                        ),
                        "push",
                        "poll",
                        d.approval.as_ref().map_or(MethodId(0), |a| a.method),
                    ),
                    Pending::Code => (
                        "Enter the code from your authenticator app or security token.".to_owned(),
                        "totp",
                        "interactive",
                        d.methods.first().map_or(MethodId(0), |m| m.id),
                    ),
                };
                let transaction = seal(self.app, self.tenant, self.user, pending, now);
                let serial = format!("PV{:08}", method.0);
                result(
                    false,
                    Some("CHALLENGE"),
                    json!({
                        "transaction_id": transaction,
                        "transaction_ids": [transaction],
                        "message": message,
                        "messages": [message],
                        "serial": serial,
                        "type": kind,
                        "preferred_client_mode": mode,
                        "multi_challenge": [{
                            "transaction_id": transaction,
                            "serial": serial,
                            "type": kind,
                            "client_mode": mode,
                            "message": message,
                            "attributes": null,
                        }],
                    }),
                )
            }
            Outcome::Locked | Outcome::Throttled => {
                result(false, Some("REJECT"), json!({ "message": LATER }))
            }
            Outcome::Register => result(false, Some("REJECT"), json!({ "message": NO_TOKENS })),
            Outcome::Deny => result(false, Some("REJECT"), json!({ "message": WRONG })),
        }
    }
}

/// privacyIDEA's token type for a method kind.
fn token_type(kind: portvakt_core::directory::MethodKind) -> &'static str {
    use portvakt_core::directory::MethodKind as K;
    match kind {
        K::AuthenticatorApp => "totp",
        K::HardwareToken => "hotp",
        K::Sms | K::Voice => "sms",
        K::Email => "email",
        K::SecurityKey => "webauthn",
        K::SecurityQuestions => "question",
        K::Push => "push",
    }
}

/// A transaction id: the sealed challenge (`frontend::challenge`, bound to this frontend,
/// the tenant and the user), then the tenant and user themselves, so that
/// `/validate/polltransaction` can open it from the id alone; base64url.
fn seal(
    app: &App,
    tenant: &str,
    user: &str,
    pending: Pending,
    now: portvakt_core::Timestamp,
) -> String {
    let bound = Bound {
        client: "http",
        tenant,
        user: user.as_bytes(),
    };
    let mut bytes = challenge::seal(app.engine(), &bound, pending, now);
    bytes.push(u8::try_from(tenant.len()).unwrap_or(u8::MAX));
    bytes.extend_from_slice(tenant.as_bytes());
    bytes.extend_from_slice(user.as_bytes());
    data_encoding::BASE64URL_NOPAD.encode(&bytes)
}

/// The tenant, user and pending challenge of a transaction id this deployment made, if it
/// has not expired.
fn open(
    app: &App,
    token: &str,
    now: portvakt_core::Timestamp,
) -> Option<(String, String, Pending)> {
    if token.len() > 1024 {
        return None;
    }
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(token.as_bytes())
        .ok()?;
    let (sealed, rest) = bytes.split_at_checked(challenge::LEN)?;
    let (&len, rest) = rest.split_first()?;
    let (tenant, user) = rest.split_at_checked(usize::from(len))?;
    let (tenant, user) = (
        std::str::from_utf8(tenant).ok()?,
        std::str::from_utf8(user).ok()?,
    );
    let bound = Bound {
        client: "http",
        tenant,
        user: user.as_bytes(),
    };
    let pending = challenge::open(app.engine(), &bound, sealed, now).ok()?;
    Some((tenant.to_owned(), user.to_owned(), pending))
}

/// `GET /validate/polltransaction?transaction_id=...`: whether a push challenge was
/// approved (`value` true, `challenge_status` `accept`), is still waiting (`pending`), or
/// was refused (`declined`). It spends nothing: `/validate/check` with the transaction id
/// and an empty `pass` then signs the user in.
pub(crate) fn poll(shared: &Shared, asked: &Asked<'_>) -> Reply {
    let params = match params(asked) {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    let token = match text(&params, "transaction_id") {
        Ok(Some(t)) => t,
        Ok(None) => return parameter("Missing parameter: 'transaction_id'"),
        Err(reply) => return reply,
    };
    let app = shared.service.app();
    let now = app.now();
    let status = match open(app, token, now) {
        Some((_, _, Pending::Push { id, .. })) => {
            use portvakt_core::push::ApprovalState as S;
            match crate::app::blocking(app.engine(), || app.engine().approval_state(id, now)) {
                Ok(Some(S::Approved)) => "accept",
                Ok(Some(S::Pending)) => "pending",
                Ok(Some(S::Denied | S::WrongNumber | S::Reported)) => "declined",
                Ok(None) | Err(_) => "none",
            }
        }
        Some((_, _, Pending::Code)) => "pending",
        None => "none",
    };
    result(
        status == "accept",
        None,
        json!({ "challenge_status": status }),
    )
}
