//! The security-info pages: where people see, add and remove their own sign-in methods,
//! served as HTML (askama templates, no script except to register a security key) on the
//! HTTP frontend's listener under `/security-info`.
//!
//! How a person gets in: a frontend that has checked their password asks for a ticket
//! (`POST /v1/security-info/ticket`) and sends the browser to the link it answers with.
//! The link shows a button; pressing it spends the ticket (once, in the state store) and
//! opens a session ([`session`]). A user who already has an active method must then prove
//! one of them before anything else (a code, or the default method's approval or security
//! key); one who has none (a first registration) needs only the ticket.
//!
//! Every change is an administrator operation made through the same handler as over
//! QUIC ([`super::api::operate`]): the directory's own limits and checks, durable before
//! the page answers, in the audit trail as `self-service:USER@TENANT from ADDRESS`, and
//! seen by the next sign-in decision. Every form carries the session's CSRF token, and
//! a form whose `Origin` is not the configured public address is refused.

mod session;
mod text;

use std::net::IpAddr;

use askama::Template;
use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use portvakt_core::admin::OwnMethod;
use portvakt_core::directory::MethodKind;
use portvakt_core::{MethodId, Purpose};
use portvakt_wire::Admin;
use portvakt_wire::admin::{LongStr, Name, Str, StrList};
use serde_json::{Map, Value};

use super::config::SecurityInfo;
use super::endpoint::Shared;
use crate::app::Frontend;
pub(crate) use session::Sessions;
use session::{Asked, Pending, Session};
use text::{Lang, Text};

/// A line for the next page, in whatever language that page is in.
type Line = fn(&'static Text) -> &'static str;

/// The [`Line`] that is `Text`'s field `$field`.
macro_rules! line {
    ($field:ident) => {
        (|t: &'static Text| t.$field) as Line
    };
}

/// The pages' state on this node.
pub(crate) struct Pages {
    pub(crate) config: SecurityInfo,
    sessions: Sessions,
}

impl Pages {
    pub(crate) fn new(config: SecurityInfo) -> Self {
        let sessions = Sessions::new(config.session_idle, config.session_max);
        Self { config, sessions }
    }
}

/// The session cookie's name (`__Host-`: only ever set over HTTPS, for this host, path /).
const COOKIE: &str = "__Host-portvakt-session";

const STYLE: &str = include_str!("../../../../templates/security_info/style.css");
const KEY_JS: &str = include_str!("../../../../templates/security_info/key.js");

/// What every page shows around its content.
struct Chrome {
    t: &'static Text,
    lang: &'static str,
    user: Option<String>,
    csrf: String,
    notice: Option<&'static str>,
    problem: Option<&'static str>,
}

impl Chrome {
    fn bare(lang: Lang) -> Self {
        Self {
            t: lang.text(),
            lang: lang.code(),
            user: None,
            csrf: String::new(),
            notice: None,
            problem: None,
        }
    }

    /// The chrome of `s`'s next page, taking its pending lines.
    fn of(s: &mut Session) -> Self {
        Self {
            t: s.lang.text(),
            lang: s.lang.code(),
            user: Some(s.user.clone()),
            csrf: s.csrf.clone(),
            notice: s.notice.take().map(|l| l(s.lang.text())),
            problem: s.problem.take().map(|l| l(s.lang.text())),
        }
    }
}

#[derive(Template)]
#[template(path = "security_info/message.html")]
struct MessagePage {
    c: Chrome,
    heading: &'static str,
    more: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "security_info/start.html")]
struct StartPage {
    c: Chrome,
    ticket: String,
}

#[derive(Template)]
#[template(path = "security_info/verify.html")]
struct VerifyPage {
    c: Chrome,
    has_codes: bool,
    phones: Vec<(u32, String)>,
    sent_to: Option<String>,
    /// The default method is the app's notification or a security key: the button that
    /// asks for it.
    ask: Option<&'static str>,
    /// The number to choose in the app, once an approval was sent.
    number: Option<u8>,
    /// A security key's options, once asked for.
    key_options: Option<String>,
}

struct Row {
    id: u32,
    kind: &'static str,
    hint: Option<String>,
    used_for: &'static str,
    active: bool,
    default: bool,
}

#[derive(Template)]
#[template(path = "security_info/list.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<Row>,
    /// Active methods, and how many the tenant requires before a sign-in.
    active: usize,
    required: usize,
    default_label: Option<String>,
    can_change_default: bool,
}

#[derive(Template)]
#[template(path = "security_info/add.html")]
struct AddPage {
    c: Chrome,
    choices: Vec<(&'static str, &'static str, Option<&'static str>)>,
}

#[derive(Template)]
#[template(path = "security_info/app.html")]
struct AppPage {
    c: Chrome,
    qr: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "security_info/contact.html")]
struct ContactPage {
    c: Chrome,
    email: bool,
    /// A call rather than a text message was chosen.
    voice: bool,
}

#[derive(Template)]
#[template(path = "security_info/confirm.html")]
struct ConfirmPage {
    c: Chrome,
    destination: String,
}

#[derive(Template)]
#[template(path = "security_info/key.html")]
struct KeyPage {
    c: Chrome,
    options: String,
}

#[derive(Template)]
#[template(path = "security_info/push.html")]
struct PushPage {
    c: Chrome,
    qr: String,
    uri: String,
}

#[derive(Template)]
#[template(path = "security_info/default.html")]
struct DefaultPage {
    c: Chrome,
    choices: Vec<(u32, String, bool)>,
}

#[derive(Template)]
#[template(path = "security_info/delete.html")]
struct DeletePage {
    c: Chrome,
    method: u32,
    label: String,
    app: bool,
}

/// A request to the pages, as read.
pub(crate) struct Visit<'r> {
    pub(crate) method: &'r Method,
    pub(crate) path: &'r str,
    pub(crate) query: &'r str,
    pub(crate) headers: &'r hyper::HeaderMap,
    pub(crate) body: &'r [u8],
    pub(crate) peer: IpAddr,
}

impl Visit<'_> {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn cookie(&self) -> Option<&str> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
    }

    fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn field(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The language asked for by `?lang=`, else by `Accept-Language`.
    fn lang(&self) -> Lang {
        self.query_param("lang")
            .and_then(|l| Lang::from_code(&l))
            .unwrap_or_else(|| Lang::from_accept(self.header(header::ACCEPT_LANGUAGE)))
    }
}

/// An answer: a status, a body, and the headers that go with it.
struct Answer {
    status: StatusCode,
    body: Bytes,
    content_type: &'static str,
    location: Option<&'static str>,
    cookie: Option<String>,
}

impl Answer {
    fn page(status: StatusCode, page: &impl Template) -> Self {
        match page.render() {
            Ok(html) => Self {
                status,
                body: Bytes::from(html),
                content_type: "text/html; charset=utf-8",
                location: None,
                cookie: None,
            },
            Err(e) => {
                crate::warn(format_args!("security info: a page failed to render: {e}"));
                Self::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }

    fn text(status: StatusCode, text: &'static str) -> Self {
        Self {
            status,
            body: Bytes::from_static(text.as_bytes()),
            content_type: "text/plain; charset=utf-8",
            location: None,
            cookie: None,
        }
    }

    /// 303 See Other to `to`: every form's answer, so a reload never sends it again.
    fn see(to: &'static str) -> Self {
        Self {
            status: StatusCode::SEE_OTHER,
            body: Bytes::new(),
            content_type: "text/plain; charset=utf-8",
            location: Some(to),
            cookie: None,
        }
    }

    fn with_cookie(mut self, cookie: String) -> Self {
        self.cookie = Some(cookie);
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(self.body));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        if let Some(to) = self.location {
            h.insert(header::LOCATION, HeaderValue::from_static(to));
        }
        if let Some(c) = self.cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::SET_COOKIE, c);
        }
        r
    }
}

/// Answers a request under `/security-info`.
pub(crate) async fn serve(shared: &Shared, pages: &Pages, v: &Visit<'_>) -> Response<Full<Bytes>> {
    answer(shared, pages, v).await.into_response()
}

async fn answer(shared: &Shared, pages: &Pages, v: &Visit<'_>) -> Answer {
    let post = *v.method == Method::POST;
    if !post && *v.method != Method::GET {
        return Answer::text(StatusCode::METHOD_NOT_ALLOWED, "GET or POST only");
    }
    match (post, v.path) {
        (false, "/security-info/style.css") => {
            return Answer {
                content_type: "text/css; charset=utf-8",
                ..Answer::text(StatusCode::OK, STYLE)
            };
        }
        (false, "/security-info/key.js") => {
            return Answer {
                content_type: "text/javascript; charset=utf-8",
                ..Answer::text(StatusCode::OK, KEY_JS)
            };
        }
        (false, "/security-info/start") => {
            let c = Chrome::bare(v.lang());
            return match v.query_param("ticket") {
                Some(ticket) => Answer::page(StatusCode::OK, &StartPage { c, ticket }),
                None => refused_ticket(c),
            };
        }
        _ => {}
    }
    if post && !same_origin(&pages.config, v) {
        return Answer::page(
            StatusCode::FORBIDDEN,
            &MessagePage {
                c: Chrome::bare(v.lang()),
                heading: v.lang().text().form_refused,
                more: None,
            },
        );
    }
    if post && v.path == "/security-info/start" {
        return start(shared, pages, v).await;
    }
    let Some(id) = v.cookie().map(str::to_owned) else {
        return session_over(v.lang());
    };
    let now = crate::clock::instant();
    // The session's state as this request begins: who, whether verified, and whether
    // the form (if any) carries its CSRF token.
    let lang = v.query_param("lang").and_then(|l| Lang::from_code(&l));
    let form_csrf = v.field("csrf");
    let Some((tenant, user, verified, csrf_ok)) = pages.sessions.with(&id, now, |s| {
        if let Some(l) = lang {
            s.lang = l;
        }
        let ok = form_csrf.as_deref().is_some_and(|f| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                f.as_bytes(),
                s.csrf.as_bytes(),
            ))
        });
        (s.tenant.clone(), s.user.clone(), s.verified, ok)
    }) else {
        return session_over(v.lang());
    };
    if post && !csrf_ok {
        let heading = pages
            .sessions
            .with(&id, now, |s| s.lang.text().form_refused)
            .unwrap_or(v.lang().text().form_refused);
        return Answer::page(
            StatusCode::FORBIDDEN,
            &MessagePage {
                c: Chrome::bare(v.lang()),
                heading,
                more: None,
            },
        );
    }
    let who = Who {
        shared,
        pages,
        id: &id,
        tenant: &tenant,
        user: &user,
        actor: format!("self-service:{user}@{tenant} from {}", v.peer),
        peer: v.peer,
    };
    match (post, v.path) {
        (true, "/security-info/sign-out") => {
            pages.sessions.end(&id);
            let lang = v.lang();
            return Answer::page(
                StatusCode::OK,
                &MessagePage {
                    c: Chrome::bare(lang),
                    heading: lang.text().signed_out,
                    more: None,
                },
            )
            .with_cookie(format!(
                "{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
            ));
        }
        (false, "/security-info/verify") => return who.verify_page(),
        (true, "/security-info/verify/send") => return who.verify_send(v).await,
        (true, "/security-info/verify") => return who.verify(v).await,
        (true, "/security-info/verify/ask") => return who.verify_ask().await,
        (true, "/security-info/verify/asked") => return who.verify_asked(v).await,
        _ => {}
    }
    if !verified {
        return Answer::see("/security-info/verify");
    }
    match (post, v.path) {
        (false, "/security-info") => who.list(),
        (false, "/security-info/add") => who.add_page(),
        (true, "/security-info/add") => who.add(v).await,
        (false, "/security-info/add/app") => who.app_page(),
        (true, "/security-info/add/app") => who.app_confirm(v).await,
        (false, "/security-info/add/phone") => who.contact_page(false, v),
        (false, "/security-info/add/email") => who.contact_page(true, v),
        (true, "/security-info/add/phone") => who.add_contact(v, false).await,
        (true, "/security-info/add/email") => who.add_contact(v, true).await,
        (false, "/security-info/add/confirm") => who.confirm_page(),
        (true, "/security-info/add/confirm") => who.confirm(v).await,
        (false, "/security-info/add/key") => who.key_page(),
        (true, "/security-info/add/key") => who.key_finish(v).await,
        (false, "/security-info/add/push") => who.push_page(),
        (true, "/security-info/add/push") => who.push_check().await,
        (false, "/security-info/default") => who.default_page(),
        (true, "/security-info/default") => who.set_default(v).await,
        (false, "/security-info/delete") => who.delete_page(v),
        (true, "/security-info/delete") => who.delete(v).await,
        _ => Answer::text(StatusCode::NOT_FOUND, "no such page"),
    }
}

/// Whether a form came from the pages themselves: its `Origin` (which browsers send with
/// every form) must be the configured public address, and `Sec-Fetch-Site`, where sent,
/// must say the same origin.
fn same_origin(config: &SecurityInfo, v: &Visit<'_>) -> bool {
    let site = v.header(header::HeaderName::from_static("sec-fetch-site"));
    let origin = v.header(header::ORIGIN);
    (site.is_empty() || site == "same-origin") && origin.eq_ignore_ascii_case(&config.public_url)
}

fn refused_ticket(c: Chrome) -> Answer {
    let t = c.t;
    Answer::page(
        StatusCode::FORBIDDEN,
        &MessagePage {
            c,
            heading: t.ticket_refused,
            more: Some(t.ticket_refused_help),
        },
    )
}

fn session_over(lang: Lang) -> Answer {
    Answer::page(
        StatusCode::UNAUTHORIZED,
        &MessagePage {
            c: Chrome::bare(lang),
            heading: lang.text().session_over,
            more: None,
        },
    )
}

/// A ticket's text: base64url of id (16 bytes), secret (16), and the tenant's and user's
/// names, each after its length as one byte.
pub(crate) fn ticket_text(t: &portvakt_core::ticket::Ticket, tenant: &str, user: &str) -> String {
    let mut b = Vec::with_capacity(34 + tenant.len() + user.len());
    b.extend_from_slice(&t.id.0);
    b.extend_from_slice(&t.secret);
    for part in [tenant, user] {
        b.push(u8::try_from(part.len()).unwrap_or(u8::MAX));
        b.extend_from_slice(part.as_bytes());
    }
    data_encoding::BASE64URL_NOPAD.encode(&b)
}

/// Reads [`ticket_text`]: id, secret, tenant, user.
fn read_ticket(text: &str) -> Option<([u8; 16], [u8; 16], String, String)> {
    if text.len() > 1024 {
        return None;
    }
    let b = data_encoding::BASE64URL_NOPAD
        .decode(text.as_bytes())
        .ok()?;
    let id: [u8; 16] = b.get(..16)?.try_into().ok()?;
    let secret: [u8; 16] = b.get(16..32)?.try_into().ok()?;
    let mut rest = b.get(32..)?;
    let mut names = Vec::with_capacity(2);
    for _ in 0..2 {
        let (&n, tail) = rest.split_first()?;
        let n = usize::from(n);
        names.push(std::str::from_utf8(tail.get(..n)?).ok()?.to_owned());
        rest = tail.get(n..)?;
    }
    let user = names.pop()?;
    let tenant = names.pop()?;
    (rest.is_empty() && !tenant.is_empty() && !user.is_empty())
        .then_some((id, secret, tenant, user))
}

/// `POST /security-info/start`: spends the ticket and opens a session.
async fn start(shared: &Shared, pages: &Pages, v: &Visit<'_>) -> Answer {
    let lang = v
        .field("lang")
        .and_then(|l| Lang::from_code(&l))
        .unwrap_or_else(|| v.lang());
    let Some((id, secret, tenant, user)) = v.field("ticket").as_deref().and_then(read_ticket)
    else {
        return refused_ticket(Chrome::bare(lang));
    };
    let app = shared.service.app();
    let engine = app.engine();
    let now = app.now();
    let redeemed = crate::app::blocking(engine, || {
        engine.redeem_ticket(&tenant, &user, portvakt_core::ChallengeId(id), &secret, now)
    });
    match redeemed {
        Ok(true) => {}
        Ok(false) => return refused_ticket(Chrome::bare(lang)),
        Err(e) => {
            crate::warn(format_args!(
                "security info: a ticket could not be spent: {e}"
            ));
            return failed(lang);
        }
    }
    // Someone with a method to prove must prove it; someone with none has only the ticket.
    let has_active = engine
        .own_methods(&tenant, &user)
        .is_ok_and(|(m, _)| m.iter().any(|m| m.active));
    let session = Session::new(tenant, user, !has_active, lang, crate::clock::instant());
    let sid = pages.sessions.open(session, crate::clock::instant());
    Answer::see("/security-info").with_cookie(format!(
        "{COOKIE}={sid}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        pages.sessions.max().as_secs()
    ))
}

fn failed(lang: Lang) -> Answer {
    Answer::page(
        StatusCode::SERVICE_UNAVAILABLE,
        &MessagePage {
            c: Chrome::bare(lang),
            heading: lang.text().failed,
            more: None,
        },
    )
}

fn kind_word(t: &Text, k: MethodKind) -> &'static str {
    match k {
        MethodKind::AuthenticatorApp => t.kind_app,
        MethodKind::HardwareToken => t.kind_token,
        MethodKind::Sms => t.kind_sms,
        MethodKind::Voice => t.kind_voice,
        MethodKind::SecurityKey => t.kind_key,
        MethodKind::Email => t.kind_email,
        MethodKind::SecurityQuestions => t.kind_questions,
        MethodKind::Push => t.kind_push,
    }
}

fn label(t: &Text, m: &OwnMethod) -> String {
    match &m.hint {
        Some(h) => format!("{} {h}", kind_word(t, m.kind)),
        None => kind_word(t, m.kind).to_owned(),
    }
}

/// An SVG QR code of `text`, base64 for a `data:` image.
fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(232, 232)
        .quiet_zone(true)
        .build();
    Some(data_encoding::BASE64.encode(svg.as_bytes()))
}

/// One visit's user, and what acts for them.
struct Who<'a> {
    shared: &'a Shared,
    pages: &'a Pages,
    id: &'a str,
    tenant: &'a str,
    user: &'a str,
    actor: String,
    peer: IpAddr,
}

impl Who<'_> {
    /// Runs `f` on the session (which was live when the request began).
    fn session<R>(&self, f: impl FnOnce(&mut Session) -> R) -> Option<R> {
        self.pages
            .sessions
            .with(self.id, crate::clock::instant(), f)
    }

    fn lang(&self) -> Lang {
        self.session(|s| s.lang).unwrap_or(Lang::En)
    }

    /// A line for the next page, and where to see it.
    fn then(&self, notice: Option<Line>, problem: Option<Line>, to: &'static str) -> Answer {
        self.session(|s| {
            s.notice = notice;
            s.problem = problem;
        });
        Answer::see(to)
    }

    fn words(&self) -> &'static Text {
        self.lang().text()
    }

    /// Renders a page with the session's chrome.
    fn page<P: Template>(&self, make: impl FnOnce(Chrome, &mut Session) -> P) -> Answer {
        match self.session(|s| make(Chrome::of(s), s)) {
            Some(p) => Answer::page(StatusCode::OK, &p),
            None => session_over(Lang::En),
        }
    }

    fn methods(&self) -> (Vec<OwnMethod>, Option<MethodId>) {
        self.shared
            .service
            .app()
            .engine()
            .own_methods(self.tenant, self.user)
            .unwrap_or_default()
    }

    /// Makes the administrator operation `make(tenant, user)` for this user.
    async fn operate<'s>(
        &'s self,
        make: impl FnOnce(Name<'s>, Name<'s>) -> Admin<'s>,
    ) -> Result<Map<String, Value>, (portvakt_wire::ErrorCode, String)> {
        let request = make(Str(self.tenant), Str(self.user));
        super::api::operate(&self.shared.service, &self.actor, request)
            .await
            .map(|(_, fields)| fields)
    }

    /// Adds the user to the directory if this is their first method.
    async fn ensure_user(&self) -> Result<(), Line> {
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

    /// What a refused change says, in the page's words.
    fn refusal(&self, message: &str) -> Line {
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

    /// Makes `method` the default if the user has no default yet and it can sign in.
    async fn default_if_none(&self, method: u32) {
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

    fn verify_page(&self) -> Answer {
        let (methods, _) = self.methods();
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
        let ask = match self.first_to_ask(&methods) {
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
                Some(Asked::Key { options }) => Some(options.replace('<', "\\u003c")),
                _ => None,
            },
        })
    }

    /// The method the core asks first for a second factor (the default, if it is active;
    /// otherwise the first active one), as `Engine::decide` orders them.
    fn first_to_ask(&self, methods: &[OwnMethod]) -> Option<MethodKind> {
        let (_, default) = self.methods();
        let usable = |m: &&OwnMethod| m.active && m.kind.serves(Purpose::PasswordReset);
        methods
            .iter()
            .filter(usable)
            .find(|m| Some(m.id) == default)
            .or_else(|| methods.iter().find(usable))
            .map(|m| m.kind)
    }

    /// The second-factor request `proof` (none: ask the default method), decided as a
    /// password reset is, and logged.
    async fn decide(
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
    fn proved(&self, d: &portvakt_core::Decision) -> bool {
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
    async fn verify_ask(&self) -> Answer {
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
    async fn verify_asked(&self, v: &Visit<'_>) -> Answer {
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
    async fn verify_send(&self, v: &Visit<'_>) -> Answer {
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
    async fn verify(&self, v: &Visit<'_>) -> Answer {
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

    fn list(&self) -> Answer {
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
    fn choices(&self) -> Vec<(&'static str, &'static str, Option<&'static str>)> {
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

    fn add_page(&self) -> Answer {
        let choices = self.choices();
        self.page(|c, _| AddPage { c, choices })
    }

    /// `POST /add`: begins adding the chosen kind.
    async fn add(&self, v: &Visit<'_>) -> Answer {
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
            Err((_, message)) => {
                self.then(None, Some(self.refusal(&message)), "/security-info/add")
            }
        }
    }

    fn app_page(&self) -> Answer {
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
    async fn app_confirm(&self, v: &Visit<'_>) -> Answer {
        let pending = self.session(|s| s.pending.clone()).flatten();
        let Some(Pending::App { method, .. }) = pending else {
            return Answer::see("/security-info/add");
        };
        let Some(code) = typed_code(v) else {
            return self.then(None, Some(line!(code_wrong)), "/security-info/add/app");
        };
        match self
            .operate(|tenant, user| Admin::ConfirmOtp {
                tenant,
                user,
                method,
                code: Str(&code),
            })
            .await
        {
            Ok(_) => {
                self.session(|s| s.pending = None);
                self.default_if_none(method).await;
                self.then(Some(line!(app_added)), None, "/security-info")
            }
            Err((_, message)) => {
                self.then(None, Some(self.refusal(&message)), "/security-info/add/app")
            }
        }
    }

    fn contact_page(&self, email: bool, v: &Visit<'_>) -> Answer {
        if self.pages.config.outbox.is_none() {
            return Answer::see("/security-info/add");
        }
        let voice = v.query_param("by").as_deref() == Some("voice");
        self.page(|c, _| ContactPage { c, email, voice })
    }

    /// `POST /add/phone` or `/add/email`: adds it, pending, and sends it a code.
    async fn add_contact(&self, v: &Visit<'_>, email: bool) -> Answer {
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
            Err((_, message)) => return self.then(None, Some(self.refusal(&message)), back),
        };
        self.send_confirmation(method).await
    }

    /// Sends a pending phone or email its confirmation code.
    async fn send_confirmation(&self, method: u32) -> Answer {
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
                return self.then(None, Some(self.refusal(&message)), "/security-info");
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
    fn deliver(&self, channel: MethodKind, destination: &str, code: &str) -> std::io::Result<()> {
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

    fn confirm_page(&self) -> Answer {
        let pending = self.session(|s| s.pending.clone()).flatten();
        let Some(Pending::Sent { destination, .. }) = pending else {
            return Answer::see("/security-info/add");
        };
        self.page(|c, _| ConfirmPage { c, destination })
    }

    /// `POST /add/confirm`: the code sent proves the phone or address.
    async fn confirm(&self, v: &Visit<'_>) -> Answer {
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
        match self
            .operate(|tenant, user| Admin::ConfirmSent {
                tenant,
                user,
                method,
                challenge,
                code: Str(&code),
            })
            .await
        {
            Ok(_) => {
                self.session(|s| s.pending = None);
                self.default_if_none(method).await;
                self.then(Some(line!(confirm_added)), None, "/security-info")
            }
            Err((_, message)) => self.then(
                None,
                Some(self.refusal(&message)),
                "/security-info/add/confirm",
            ),
        }
    }

    fn key_page(&self) -> Answer {
        let pending = self.session(|s| s.pending.clone()).flatten();
        let Some(Pending::Key { options }) = pending else {
            return Answer::see("/security-info/add");
        };
        // The options sit in a JSON data block: `<` is escaped so that no text in them
        // can close it.
        let options = options.replace('<', "\\u003c");
        self.page(|c, _| KeyPage { c, options })
    }

    /// `POST /add/key`: the browser's answer, checked by the core.
    async fn key_finish(&self, v: &Visit<'_>) -> Answer {
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

    fn push_page(&self) -> Answer {
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
    async fn push_check(&self) -> Answer {
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

    fn default_page(&self) -> Answer {
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
    async fn set_default(&self, v: &Visit<'_>) -> Answer {
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
            Err((_, message)) => {
                self.then(None, Some(self.refusal(&message)), "/security-info/default")
            }
        }
    }

    fn delete_page(&self, v: &Visit<'_>) -> Answer {
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
    async fn delete(&self, v: &Visit<'_>) -> Answer {
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
            Err((_, message)) => self.then(None, Some(self.refusal(&message)), "/security-info"),
        }
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

    #[test]
    fn a_ticket_reads_back_and_nothing_else_does() {
        let t = portvakt_core::ticket::Ticket {
            id: portvakt_core::ChallengeId([1; 16]),
            secret: [2; 16],
            expires: portvakt_core::Timestamp::from_secs(1),
        };
        let text = ticket_text(&t, "kommune", "kåri@kommune.no");
        let (id, secret, tenant, user) = read_ticket(&text).unwrap();
        assert_eq!((id, secret), ([1; 16], [2; 16]));
        assert_eq!(
            (tenant.as_str(), user.as_str()),
            ("kommune", "kåri@kommune.no")
        );
        for bad in [
            "",
            "AAAA",
            &text[..text.len() - 2],
            &format!("{text}AA"),
            "!!!!",
            &"A".repeat(2000),
        ] {
            assert!(read_ticket(bad).is_none(), "{bad:?}");
        }
        // Empty names.
        let empty = ticket_text(&t, "", "");
        assert!(read_ticket(&empty).is_none());
    }

    #[test]
    fn a_qr_code_is_an_svg() {
        let svg = data_encoding::BASE64
            .decode(qr_svg("otpauth://totp/x?secret=AAAA").unwrap().as_bytes())
            .unwrap();
        assert!(String::from_utf8(svg).unwrap().contains("<svg"));
    }
}
