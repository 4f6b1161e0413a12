//! The security-info pages: where people see, add and remove their own sign-in methods,
//! served as HTML (askama templates; no script but the one the browser's WebAuthn needs for
//! a security key) on the HTTP frontend's listener under `/security-info`.
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
//!
//! Here: routing, tickets, and who the visit is. `pages`: what the pages look like.
//! `who`: what a visit does. `session`, `text`: sessions, and the words in two languages.

/// A line for the next page, in whatever language that page is in.
type Line = fn(&'static Text) -> &'static str;

/// The [`Line`] that is `Text`'s field `$field`.
macro_rules! line {
    ($field:ident) => {
        (|t: &'static Text| t.$field) as Line
    };
}

mod pages;
mod session;
mod text;
mod who;

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header;
use hyper::{Method, Response, StatusCode};

use super::config::SecurityInfo;
use super::endpoint::Shared;
use pages::{Answer, Chrome, MessagePage, StartPage, failed, refused_ticket, session_over};
use session::{Session, Sessions};
use text::{Lang, Text};
use who::Who;

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
    let switch_to = v.query_param("lang").and_then(|l| Lang::from_code(&l));
    let form_csrf = v.field("csrf");
    let Some((tenant, user, verified, csrf_ok, lang)) = pages.sessions.with(&id, now, |s| {
        if let Some(l) = switch_to {
            s.lang = l;
        }
        let ok = form_csrf.as_deref().is_some_and(|f| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                f.as_bytes(),
                s.csrf.as_bytes(),
            ))
        });
        (s.tenant.clone(), s.user.clone(), s.verified, ok, s.lang)
    }) else {
        return session_over(v.lang());
    };
    if post && !csrf_ok {
        return Answer::page(
            StatusCode::FORBIDDEN,
            &MessagePage {
                c: Chrome::bare(lang),
                heading: lang.text().form_refused,
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
}
