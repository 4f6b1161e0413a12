//! What a verified (or verifying) visit does: the second factor, the list, adding,
//! proving, making default and deleting methods, each an administrator operation for
//! this user alone.

use std::net::IpAddr;

use askama::Template;
use bytes::BytesMut;
use hyper::StatusCode;
use portvakt_core::admin::OwnMethod;
use portvakt_core::directory::MethodKind;
use portvakt_core::{MethodId, Purpose};
use portvakt_wire::Admin;
use portvakt_wire::admin::{LongStr, Name, Str, StrList};
use serde_json::{Map, Value};

use super::pages::{
    AddPage, Answer, AppPage, Chrome, ConfirmPage, ContactPage, DefaultPage, DeletePage, KeyPage,
    ListPage, PushPage, Row, VerifyPage, failed, kind_word, label, qr_svg, script_json,
    session_over,
};
use super::session::{Asked, Pending, Session};
use super::text::{Lang, Text};
use super::{Line, Pages, Visit};
use crate::app::Frontend;
use crate::frontend::http::endpoint::Shared;

/// One visit's user, and what acts for them.
pub(super) struct Who<'a> {
    pub(super) shared: &'a Shared,
    pub(super) pages: &'a Pages,
    pub(super) id: &'a str,
    pub(super) tenant: &'a str,
    pub(super) user: &'a str,
    pub(super) actor: String,
    pub(super) peer: IpAddr,
}

impl Who<'_> {
    /// Runs `f` on the session (which was live when the request began).
    pub(super) fn session<R>(&self, f: impl FnOnce(&mut Session) -> R) -> Option<R> {
        self.pages
            .sessions
            .with(self.id, crate::clock::instant(), f)
    }

    pub(super) fn lang(&self) -> Lang {
        self.session(|s| s.lang).unwrap_or(Lang::En)
    }

    /// A line for the next page, and where to see it.
    pub(super) fn then(
        &self,
        notice: Option<Line>,
        problem: Option<Line>,
        to: &'static str,
    ) -> Answer {
        self.session(|s| {
            s.notice = notice;
            s.problem = problem;
        });
        Answer::see(to)
    }

    pub(super) fn words(&self) -> &'static Text {
        self.lang().text()
    }

    /// Renders a page with the session's chrome.
    pub(super) fn page<P: Template>(&self, make: impl FnOnce(Chrome, &mut Session) -> P) -> Answer {
        match self.session(|s| make(Chrome::of(s), s)) {
            Some(p) => Answer::page(StatusCode::OK, &p),
            None => session_over(Lang::En),
        }
    }

    pub(super) fn methods(&self) -> (Vec<OwnMethod>, Option<MethodId>) {
        self.shared
            .service
            .app()
            .engine()
            .own_methods(self.tenant, self.user)
            .unwrap_or_default()
    }

    /// Makes the administrator operation `make(tenant, user)` for this user.
    pub(super) async fn operate<'s>(
        &'s self,
        make: impl FnOnce(Name<'s>, Name<'s>) -> Admin<'s>,
    ) -> Result<Map<String, Value>, (portvakt_wire::ErrorCode, String)> {
        let request = make(Str(self.tenant), Str(self.user));
        crate::frontend::http::api::operate(&self.shared.service, &self.actor, request)
            .await
            .map(|(_, fields)| fields)
    }

    /// Adds the user to the directory if this is their first method.
    pub(super) async fn ensure_user(&self) -> Result<(), Line> {
        let engine = self.shared.service.app().engine();
        if engine.own_methods(self.tenant, self.user).is_ok() {
            return Ok(());
        }
        match self
            .operate(|tenant, user| Admin::AddUser {
                tenant,
                user,
                groups: StrList(Vec::new()),
                passwordless: false,
            })
            .await
        {
            Ok(_) => Ok(()),
            // Another request of the same person made it first.
            Err(_) if engine.own_methods(self.tenant, self.user).is_ok() => Ok(()),
            Err(_) => Err(line!(failed)),
        }
    }

    /// Makes `method` the default if the user has no default yet and it can sign in.
    pub(super) async fn default_if_none(&self, method: u32) {
        let (methods, default) = self.methods();
        let usable = methods
            .iter()
            .any(|m| m.id.0 == method && m.active && m.kind.serves(Purpose::SignIn));
        if default.is_none() && usable {
            let _ = self
                .operate(|tenant, user| Admin::SetDefaultMethod {
                    tenant,
                    user,
                    method,
                })
                .await;
        }
    }

    pub(super) fn verify_page(&self) -> Answer {
        let (methods, default) = self.methods();
        let t = self.words();
        let has_codes = methods.iter().any(|m| {
            m.active
                && matches!(
                    m.kind,
                    MethodKind::AuthenticatorApp | MethodKind::HardwareToken
                )
        });
        let phones = methods
            .iter()
            .filter(|m| m.active && matches!(m.kind, MethodKind::Sms | MethodKind::Voice))
            .map(|m| (m.id.0, label(t, m)))
            .collect();
        let ask = match first_to_ask(&methods, default) {
            Some(MethodKind::Push) => Some(t.ask_push),
            Some(MethodKind::SecurityKey) => Some(t.ask_key),
            _ => None,
        };
        self.page(|c, s| VerifyPage {
            c,
            has_codes,
            phones,
            sent_to: s.verify_sent.as_ref().map(|(_, to)| to.clone()),
            ask,
            number: match &s.verify_asked {
                Some(Asked::Push { number, .. }) => Some(*number),
                _ => None,
            },
            key_options: match &s.verify_asked {
                Some(Asked::Key { options }) => Some(script_json(options)),
                _ => None,
            },
        })
    }

    /// The second-factor request `proof` (none: ask the default method), decided as a
    /// password reset is, and logged.
    pub(super) async fn decide(
        &self,
        proof: Option<portvakt_core::Proof<'_>>,
    ) -> Option<portvakt_core::Decision> {
        let request = portvakt_core::Request {
            tenant: self.tenant,
            user: self.user,
            ip: self.peer,
            purpose: Purpose::PasswordReset,
            first_factor: portvakt_core::FirstFactor::Ok,
            proof,
            device_token: None,
            remember_device: false,
        };
        let app = self.shared.service.app();
        let mut records = BytesMut::new();
        let d = app.decide_now(Frontend::Http, &request, &mut records);
        app.settle(&mut records).await.ok()?;
        Some(d)
    }

    /// Whether `d` is a second factor proved with a method that serves sign-in; the
    /// session is verified if so.
    pub(super) fn proved(&self, d: &portvakt_core::Decision) -> bool {
        let proved = d.outcome == portvakt_core::Outcome::Allow
            && d.reason == portvakt_core::Reason::ResetVerified
            && d.method.is_some_and(|k| k.serves(Purpose::SignIn));
        if proved {
            self.session(|s| {
                s.verified = true;
                s.verify_sent = None;
                s.verify_asked = None;
            });
        }
        proved
    }

    /// `POST /verify/ask`: sends the app an approval, or asks for the security key.
    pub(super) async fn verify_ask(&self) -> Answer {
        let Some(d) = self.decide(None).await else {
            return self.then(None, Some(line!(failed)), "/security-info/verify");
        };
        let asked = match (&d.approval, &d.security_key) {
            (Some(a), _) => Asked::Push {
                approval: a.id,
                number: a.number,
            },
            (None, Some(options)) => Asked::Key {
                options: options.clone(),
            },
            _ => {
                let problem = match d.outcome {
                    portvakt_core::Outcome::Locked => line!(locked),
                    portvakt_core::Outcome::Throttled => line!(send_throttled),
                    _ => line!(failed),
                };
                return self.then(None, Some(problem), "/security-info/verify");
            }
        };
        self.session(|s| s.verify_asked = Some(asked));
        Answer::see("/security-info/verify")
    }

    /// `POST /verify/asked`: the app's answer (waited for a few seconds), or the
    /// browser's security key response.
    pub(super) async fn verify_asked(&self, v: &Visit<'_>) -> Answer {
        let asked = self.session(|s| s.verify_asked.clone()).flatten();
        let d = match asked {
            Some(Asked::Push { approval, .. }) => {
                let app = self.shared.service.app();
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
                app.approvals()
                    .until_answered(app.engine(), approval, || app.now(), deadline)
                    .await;
                self.decide(Some(portvakt_core::Proof::Push(&approval.to_hex())))
                    .await
            }
            Some(Asked::Key { .. }) => {
                let response = v.field("response").unwrap_or_default();
                if response.is_empty() || response.len() > 12_288 {
                    return self.then(None, Some(line!(key_refused)), "/security-info/verify");
                }
                self.decide(Some(portvakt_core::Proof::SecurityKey(&response)))
                    .await
            }
            None => return Answer::see("/security-info/verify"),
        };
        self.session(|s| s.verify_asked = None);
        match d {
            Some(d) if self.proved(&d) => Answer::see("/security-info"),
            Some(d) if d.outcome == portvakt_core::Outcome::Locked => {
                self.then(None, Some(line!(locked)), "/security-info/verify")
            }
            Some(_) => self.then(None, Some(line!(not_approved)), "/security-info/verify"),
            None => self.then(None, Some(line!(failed)), "/security-info/verify"),
        }
    }

    /// `POST /verify/send`: sends a code to one of the user's phones.
    pub(super) async fn verify_send(&self, v: &Visit<'_>) -> Answer {
        let t = self.words();
        let (methods, _) = self.methods();
        let Some(m) = v
            .field("method")
            .and_then(|m| m.parse::<u32>().ok())
            .and_then(|id| {
                methods.into_iter().find(|m| {
                    m.id.0 == id
                        && m.active
                        && matches!(m.kind, MethodKind::Sms | MethodKind::Voice)
                })
            })
        else {
            return self.then(None, Some(line!(failed)), "/security-info/verify");
        };
        let app = self.shared.service.app();
        let request = portvakt_core::SendRequest {
            tenant: self.tenant,
            user: self.user,
            ip: self.peer,
            purpose: Purpose::PasswordReset,
            method: Some(m.id),
        };
        let mut records = BytesMut::new();
        let now = app.now();
        let sent = crate::app::blocking(app.engine(), || {
            app.send_code(Frontend::Http, &request, now, &mut records)
        });
        if app.settle(&mut records).await.is_err() {
            return self.then(None, Some(line!(failed)), "/security-info/verify");
        }
        let (Some(challenge), Some(delivery)) = (sent.challenge, sent.delivery) else {
            let problem = match sent.decision.outcome {
                portvakt_core::Outcome::Locked => line!(locked),
                _ => line!(send_throttled),
            };
            return self.then(None, Some(problem), "/security-info/verify");
        };
        if self
            .deliver(
                delivery.channel,
                &delivery.destination,
                delivery.code.expose(),
            )
            .is_err()
        {
            return self.then(None, Some(line!(failed)), "/security-info/verify");
        }
        let to = label(t, &m);
        self.session(|s| s.verify_sent = Some((challenge, to)));
        Answer::see("/security-info/verify")
    }

    /// `POST /verify`: a code as the second factor, decided by the core as a password
    /// reset is (always a second factor, wherever the person is), counted toward lockout,
    /// and logged in the sign-in log. Only a method that serves sign-in verifies.
    pub(super) async fn verify(&self, v: &Visit<'_>) -> Answer {
        let Some(code) = typed_code(v) else {
            return self.then(None, Some(line!(code_wrong)), "/security-info/verify");
        };
        let sent = self
            .session(|s| s.verify_sent.as_ref().map(|(c, _)| c.to_hex()))
            .flatten();
        let proof = match &sent {
            Some(challenge) => portvakt_core::Proof::Sent {
                challenge,
                code: &code,
            },
            None => portvakt_core::Proof::Code(&code),
        };
        match self.decide(Some(proof)).await {
            Some(d) if self.proved(&d) => Answer::see("/security-info"),
            Some(d) if d.outcome == portvakt_core::Outcome::Locked => {
                self.then(None, Some(line!(locked)), "/security-info/verify")
            }
            Some(_) => self.then(None, Some(line!(code_wrong)), "/security-info/verify"),
            None => self.then(None, Some(line!(failed)), "/security-info/verify"),
        }
    }

    pub(super) fn list(&self) -> Answer {
        let (methods, default) = self.methods();
        let t = self.words();
        let rows = methods
            .iter()
            .map(|m| Row {
                id: m.id.0,
                kind: kind_word(t, m.kind),
                hint: m.hint.clone(),
                used_for: if m.kind.serves(Purpose::SignIn) {
                    t.for_sign_in_and_reset
                } else {
                    t.for_reset_only
                },
                active: m.active,
                default: Some(m.id) == default,
            })
            .collect();
        let default_label = methods
            .iter()
            .find(|m| Some(m.id) == default)
            .map(|m| label(t, m));
        let can_change_default = methods
            .iter()
            .any(|m| m.active && m.kind.serves(Purpose::SignIn));
        let active = methods.iter().filter(|m| m.active).count();
        let required = self
            .shared
            .service
            .app()
            .engine()
            .policy()
            .tenant(self.tenant)
            .map_or(0, |p| usize::from(p.required_methods));
        self.page(|c, _| ListPage {
            c,
            rows,
            active,
            required,
            default_label,
            can_change_default,
        })
    }

    /// What may be added here: what the server can deliver and check.
    pub(super) fn choices(&self) -> Vec<(&'static str, &'static str, Option<&'static str>)> {
        let t = self.words();
        let config = &self.pages.config;
        let mut out = vec![("app", t.kind_app, None)];
        if config.push_server.is_some() {
            out.push(("push", t.kind_push, None));
        }
        if config.outbox.is_some() {
            out.push(("phone", t.kind_sms, None));
            out.push(("voice", t.kind_voice, None));
        }
        let key_here = self
            .shared
            .service
            .app()
            .engine()
            .policy()
            .tenant(self.tenant)
            .is_some_and(|p| {
                p.webauthn
                    .origins
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(&config.public_url))
            });
        if key_here {
            out.push(("key", t.kind_key, None));
        }
        if config.outbox.is_some() {
            out.push(("email", t.kind_email, Some(t.for_reset_only)));
        }
        out
    }

    pub(super) fn add_page(&self) -> Answer {
        let choices = self.choices();
        self.page(|c, _| AddPage { c, choices })
    }

    /// `POST /add`: begins adding the chosen kind.
    pub(super) async fn add(&self, v: &Visit<'_>) -> Answer {
        let kind = v.field("kind").unwrap_or_default();
        if !self.choices().iter().any(|(k, _, _)| *k == kind) {
            return self.then(None, Some(line!(failed)), "/security-info/add");
        }
        match kind.as_str() {
            "phone" => {
                self.session(|s| s.pending = None);
                return Answer::see("/security-info/add/phone");
            }
            "voice" => {
                self.session(|s| s.pending = None);
                return Answer::see("/security-info/add/phone?by=voice");
            }
            "email" => return Answer::see("/security-info/add/email"),
            _ => {}
        }
        if let Err(problem) = self.ensure_user().await {
            return self.then(None, Some(problem), "/security-info/add");
        }
        let begun = match kind.as_str() {
            "app" => self
                .operate(|tenant, user| Admin::EnrollTotp {
                    tenant,
                    user,
                    algorithm: 1,
                    digits: 6,
                    period: 30,
                })
                .await
                .map(|f| {
                    (
                        Pending::App {
                            method: json_u32(&f, "method"),
                            secret: json_str(&f, "secret_base32"),
                            uri: json_str(&f, "uri"),
                        },
                        "/security-info/add/app",
                    )
                }),
            "key" => self
                .operate(|tenant, user| Admin::SecurityKeyStart { tenant, user })
                .await
                .map(|f| {
                    (
                        Pending::Key {
                            options: json_str(&f, "options"),
                        },
                        "/security-info/add/key",
                    )
                }),
            _ => {
                self.operate(|tenant, user| Admin::EnrollPush { tenant, user })
                    .await
                    .map(|f| {
                        let method = json_u32(&f, "method");
                        let uri = portvakt_client::device::Enrolment {
                            server: self.pages.config.push_server.unwrap_or_else(|| {
                                std::net::SocketAddr::from(([127, 0, 0, 1], 4433))
                            }),
                            tenant: self.tenant.to_owned(),
                            user: self.user.to_owned(),
                            method,
                            token: json_str(&f, "token"),
                        }
                        .to_uri();
                        (Pending::Push { method, uri }, "/security-info/add/push")
                    })
            }
        };
        match begun {
            Ok((pending, to)) => {
                self.session(|s| s.pending = Some(pending));
                Answer::see(to)
            }
            Err((_, message)) => self.then(None, Some(refusal(&message)), "/security-info/add"),
        }
    }

    pub(super) fn app_page(&self) -> Answer {
        let pending = self.session(|s| s.pending.clone()).flatten();
        let Some(Pending::App { secret, uri, .. }) = pending else {
            return Answer::see("/security-info/add");
        };
        let Some(qr) = qr_svg(&uri) else {
            return failed(self.lang());
        };
        // Groups of four, as people type it.
        let grouped = secret
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        self.page(|c, _| AppPage {
            c,
            qr,
            secret: grouped,
        })
    }

    /// `POST /add/app`: the app's first code proves it.
    pub(super) async fn app_confirm(&self, v: &Visit<'_>) -> Answer {
        let pending = self.session(|s| s.pending.clone()).flatten();
        let Some(Pending::App { method, .. }) = pending else {
            return Answer::see("/security-info/add");
        };
        let Some(code) = typed_code(v) else {
            return self.then(None, Some(line!(code_wrong)), "/security-info/add/app");
        };
        let proved = self
            .operate(|tenant, user| Admin::ConfirmOtp {
                tenant,
                user,
                method,
                code: Str(&code),
            })
            .await;
        self.after_proof(method, proved, line!(app_added), "/security-info/add/app")
            .await
    }

    /// After a pending method's proof: done (and made the default if there is none),
    /// or the refusal in plain words on the page it came from.
    async fn after_proof(
        &self,
        method: u32,
        proved: Result<Map<String, Value>, (portvakt_wire::ErrorCode, String)>,
        added: Line,
        back: &'static str,
    ) -> Answer {
        match proved {
            Ok(_) => {
                self.session(|s| s.pending = None);
                self.default_if_none(method).await;
                self.then(Some(added), None, "/security-info")
            }
            Err((_, message)) => self.then(None, Some(refusal(&message)), back),
        }
    }

    pub(super) fn contact_page(&self, email: bool, v: &Visit<'_>) -> Answer {
        if self.pages.config.outbox.is_none() {
            return Answer::see("/security-info/add");
        }
        let voice = v.query_param("by").as_deref() == Some("voice");
        self.page(|c, _| ContactPage { c, email, voice })
    }

    /// `POST /add/phone` or `/add/email`: adds it, pending, and sends it a code.
    pub(super) async fn add_contact(&self, v: &Visit<'_>, email: bool) -> Answer {
        let back = if email {
            "/security-info/add/email"
        } else {
            "/security-info/add/phone"
        };
        if self.pages.config.outbox.is_none() {
            return Answer::see("/security-info/add");
        }
        let value = if email {
            v.field("address").unwrap_or_default().trim().to_owned()
        } else {
            v.field("number")
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .collect()
        };
        let kind = match v.field("channel").as_deref() {
            Some("voice") => 4,
            _ => 3,
        };
        if value.is_empty() || value.len() > if email { 254 } else { 32 } {
            let bad = if email {
                line!(email_bad)
            } else {
                line!(phone_bad)
            };
            return self.then(None, Some(bad), back);
        }
        if let Err(problem) = self.ensure_user().await {
            return self.then(None, Some(problem), back);
        }
        let added = if email {
            self.operate(|tenant, user| Admin::AddEmail {
                tenant,
                user,
                address: Str(&value),
            })
            .await
        } else {
            self.operate(|tenant, user| Admin::AddPhone {
                tenant,
                user,
                kind,
                number: Str(&value),
            })
            .await
        };
        let method = match added {
            Ok(f) => json_u32(&f, "method"),
            Err((_, message)) => return self.then(None, Some(refusal(&message)), back),
        };
        self.send_confirmation(method).await
    }

    /// Sends a pending phone or email its confirmation code.
    pub(super) async fn send_confirmation(&self, method: u32) -> Answer {
        let t = self.words();
        let f = match self
            .operate(|tenant, user| Admin::StartConfirmation {
                tenant,
                user,
                method,
            })
            .await
        {
            Ok(f) => f,
            Err((_, message)) => {
                return self.then(None, Some(refusal(&message)), "/security-info");
            }
        };
        if f.contains_key("retry_after_s") {
            return self.then(None, Some(line!(send_throttled)), "/security-info");
        }
        let channel = match f.get("channel").and_then(Value::as_u64) {
            Some(4) => MethodKind::Voice,
            Some(6) => MethodKind::Email,
            _ => MethodKind::Sms,
        };
        let destination = json_str(&f, "destination");
        let mut challenge = [0u8; 16];
        let hex = json_str(&f, "challenge");
        if data_encoding::HEXLOWER_PERMISSIVE
            .decode_mut(hex.as_bytes(), &mut challenge)
            .is_err()
            || hex.len() != 32
        {
            return self.then(None, Some(line!(failed)), "/security-info");
        }
        if self
            .deliver(channel, &destination, &json_str(&f, "code"))
            .is_err()
        {
            return self.then(None, Some(line!(failed)), "/security-info");
        }
        let shown = self
            .methods()
            .0
            .iter()
            .find(|m| m.id.0 == method)
            .map(|m| label(t, m))
            .unwrap_or_default();
        self.session(|s| {
            s.pending = Some(Pending::Sent {
                method,
                challenge,
                destination: shown,
            })
        });
        Answer::see("/security-info/add/confirm")
    }

    /// Hands a code to the delivery gateway: one JSON line in the outbox.
    pub(super) fn deliver(
        &self,
        channel: MethodKind,
        destination: &str,
        code: &str,
    ) -> std::io::Result<()> {
        use std::io::Write as _;
        let Some(path) = &self.pages.config.outbox else {
            return Err(std::io::Error::other("no outbox"));
        };
        let line = serde_json::json!({
            "at_ms": self.shared.service.now().as_millis(),
            "channel": channel.as_str(),
            "destination": destination,
            "code": code,
            "tenant": self.tenant,
            "user": self.user,
        });
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        file.write_all(&bytes).map_err(|e| {
            crate::warn(format_args!(
                "security info: the outbox {} could not be written: {e}",
                path.display()
            ));
            e
        })
    }

    pub(super) fn confirm_page(&self) -> Answer {
        let pending = self.session(|s| s.pending.clone()).flatten();
        let Some(Pending::Sent { destination, .. }) = pending else {
            return Answer::see("/security-info/add");
        };
        self.page(|c, _| ConfirmPage { c, destination })
    }

    /// `POST /add/confirm`: the code sent proves the phone or address.
    pub(super) async fn confirm(&self, v: &Visit<'_>) -> Answer {
        let pending = self.session(|s| s.pending.clone()).flatten();
        let Some(Pending::Sent {
            method, challenge, ..
        }) = pending
        else {
            return Answer::see("/security-info/add");
        };
        let Some(code) = typed_code(v) else {
            return self.then(None, Some(line!(code_wrong)), "/security-info/add/confirm");
        };
        let proved = self
            .operate(|tenant, user| Admin::ConfirmSent {
                tenant,
                user,
                method,
                challenge,
                code: Str(&code),
            })
            .await;
        self.after_proof(
            method,
            proved,
            line!(confirm_added),
            "/security-info/add/confirm",
        )
        .await
    }

    pub(super) fn key_page(&self) -> Answer {
        let pending = self.session(|s| s.pending.clone()).flatten();
        let Some(Pending::Key { options }) = pending else {
            return Answer::see("/security-info/add");
        };
        let options = script_json(&options);
        self.page(|c, _| KeyPage { c, options })
    }

    /// `POST /add/key`: the browser's answer, checked by the core.
    pub(super) async fn key_finish(&self, v: &Visit<'_>) -> Answer {
        let response = v.field("response").unwrap_or_default();
        if response.is_empty() || response.len() > 12_288 {
            return self.then(None, Some(line!(key_refused)), "/security-info/add");
        }
        self.session(|s| s.pending = None);
        match self
            .operate(|tenant, user| Admin::SecurityKeyFinish {
                tenant,
                user,
                response: LongStr(&response),
            })
            .await
        {
            Ok(f) => {
                self.default_if_none(json_u32(&f, "method")).await;
                self.then(Some(line!(key_added)), None, "/security-info")
            }
            Err(_) => self.then(None, Some(line!(key_refused)), "/security-info/add"),
        }
    }

    pub(super) fn push_page(&self) -> Answer {
        let pending = self.session(|s| s.pending.clone()).flatten();
        let Some(Pending::Push { uri, .. }) = pending else {
            return Answer::see("/security-info/add");
        };
        let Some(qr) = qr_svg(&uri) else {
            return failed(self.lang());
        };
        self.page(|c, _| PushPage { c, qr, uri })
    }

    /// `POST /add/push`: whether the device has paired.
    pub(super) async fn push_check(&self) -> Answer {
        let pending = self.session(|s| s.pending.clone()).flatten();
        let Some(Pending::Push { method, .. }) = pending else {
            return Answer::see("/security-info/add");
        };
        let paired = self
            .methods()
            .0
            .iter()
            .any(|m| m.id.0 == method && m.active);
        if !paired {
            return self.then(None, Some(line!(push_waiting)), "/security-info/add/push");
        }
        self.session(|s| s.pending = None);
        self.default_if_none(method).await;
        self.then(Some(line!(push_added)), None, "/security-info")
    }

    pub(super) fn default_page(&self) -> Answer {
        let (methods, default) = self.methods();
        let t = self.words();
        let choices: Vec<(u32, String, bool)> = methods
            .iter()
            .filter(|m| m.active && m.kind.serves(Purpose::SignIn))
            .map(|m| (m.id.0, label(t, m), Some(m.id) == default))
            .collect();
        if choices.is_empty() {
            return Answer::see("/security-info");
        }
        self.page(|c, _| DefaultPage { c, choices })
    }

    /// `POST /default`.
    pub(super) async fn set_default(&self, v: &Visit<'_>) -> Answer {
        let Some(method) = v.field("method").and_then(|m| m.parse::<u32>().ok()) else {
            return self.then(None, Some(line!(failed)), "/security-info/default");
        };
        match self
            .operate(|tenant, user| Admin::SetDefaultMethod {
                tenant,
                user,
                method,
            })
            .await
        {
            Ok(_) => self.then(Some(line!(default_changed)), None, "/security-info"),
            Err((_, message)) => self.then(None, Some(refusal(&message)), "/security-info/default"),
        }
    }

    pub(super) fn delete_page(&self, v: &Visit<'_>) -> Answer {
        let (methods, _) = self.methods();
        let t = self.words();
        let Some(m) = v
            .query_param("method")
            .and_then(|m| m.parse::<u32>().ok())
            .and_then(|id| methods.into_iter().find(|m| m.id.0 == id))
        else {
            return Answer::see("/security-info");
        };
        let label = label(t, &m);
        let app = matches!(m.kind, MethodKind::AuthenticatorApp | MethodKind::Push);
        self.page(|c, _| DeletePage {
            c,
            method: m.id.0,
            label,
            app,
        })
    }

    /// `POST /delete`.
    pub(super) async fn delete(&self, v: &Visit<'_>) -> Answer {
        let Some(method) = v.field("method").and_then(|m| m.parse::<u32>().ok()) else {
            return self.then(None, Some(line!(failed)), "/security-info");
        };
        match self
            .operate(|tenant, user| Admin::RemoveMethod {
                tenant,
                user,
                method,
            })
            .await
        {
            Ok(_) => {
                self.session(|s| {
                    let ours = match &s.pending {
                        Some(Pending::App { method: m, .. })
                        | Some(Pending::Sent { method: m, .. })
                        | Some(Pending::Push { method: m, .. }) => *m == method,
                        _ => false,
                    };
                    if ours {
                        s.pending = None;
                    }
                });
                self.then(Some(line!(deleted)), None, "/security-info")
            }
            Err((_, message)) => self.then(None, Some(refusal(&message)), "/security-info"),
        }
    }
}

/// The method the core asks first for a second factor (the default, if it is active;
/// otherwise the first active one), as `Engine::decide` orders them.
fn first_to_ask(methods: &[OwnMethod], default: Option<MethodId>) -> Option<MethodKind> {
    let usable = |m: &&OwnMethod| m.active && m.kind.serves(Purpose::PasswordReset);
    methods
        .iter()
        .filter(usable)
        .find(|m| Some(m.id) == default)
        .or_else(|| methods.iter().find(usable))
        .map(|m| m.kind)
}

/// What a refused change says, in the page's words: the directory's refusal
/// (`DirectoryError`'s text, which the administrator operation answers with) in plain
/// words, or that nothing was changed.
fn refusal(message: &str) -> Line {
    if message.contains("authenticator apps or hardware tokens") {
        line!(too_many_apps)
    } else if message.contains("at most") && message.contains("methods") {
        line!(too_many_methods)
    } else if message.contains("E.164") {
        line!(phone_bad)
    } else if message.contains("email address") {
        line!(email_bad)
    } else if message.contains("does not prove") {
        line!(code_wrong)
    } else {
        line!(failed)
    }
}

/// The code a form carries, without the spaces people type in it; `None` when empty or
/// longer than any code.
fn typed_code(v: &Visit<'_>) -> Option<String> {
    let code: String = v
        .field("code")?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    (!code.is_empty() && code.len() <= 16).then_some(code)
}

fn json_u32(f: &Map<String, Value>, name: &str) -> u32 {
    f.get(name)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

fn json_str(f: &Map<String, Value>, name: &str) -> String {
    f.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portvakt_core::directory::DirectoryError as E;

    #[test]
    fn each_refusal_people_can_mend_has_its_own_words() {
        let t = &super::super::text::EN;
        for (e, words) in [
            (E::TooManyOtpDevices, t.too_many_apps),
            (E::TooManyMethods, t.too_many_methods),
            (E::InvalidPhone, t.phone_bad),
            (E::InvalidEmail, t.email_bad),
            (E::WrongCode, t.code_wrong),
            (E::UnknownMethod, t.failed),
            (E::UnknownUser, t.failed),
        ] {
            assert_eq!(refusal(&e.to_string())(t), words, "{e}");
        }
    }
}
