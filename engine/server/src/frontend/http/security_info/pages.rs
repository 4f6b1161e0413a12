//! What the pages look like: the templates' structs (`engine/server/templates/
//! security_info/`), what every page shows around its content, and the answer's headers.

use askama::Template;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use portvakt_core::admin::OwnMethod;
use portvakt_core::directory::MethodKind;

use super::session::Session;
use super::text::{Lang, Text};

/// What every page shows around its content.
pub(super) struct Chrome {
    pub(super) t: &'static Text,
    pub(super) lang: &'static str,
    pub(super) user: Option<String>,
    pub(super) csrf: String,
    pub(super) notice: Option<&'static str>,
    pub(super) problem: Option<&'static str>,
}

impl Chrome {
    pub(super) fn bare(lang: Lang) -> Self {
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
    pub(super) fn of(s: &mut Session) -> Self {
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
pub(super) struct MessagePage {
    pub(super) c: Chrome,
    pub(super) heading: &'static str,
    pub(super) more: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "security_info/start.html")]
pub(super) struct StartPage {
    pub(super) c: Chrome,
    pub(super) ticket: String,
}

#[derive(Template)]
#[template(path = "security_info/verify.html")]
pub(super) struct VerifyPage {
    pub(super) c: Chrome,
    pub(super) has_codes: bool,
    pub(super) phones: Vec<(u32, String)>,
    pub(super) sent_to: Option<String>,
    /// The default method is the app's notification or a security key: the button that
    /// asks for it.
    pub(super) ask: Option<&'static str>,
    /// The number to choose in the app, once an approval was sent.
    pub(super) number: Option<u8>,
    /// A security key's options, once asked for.
    pub(super) key_options: Option<String>,
}

pub(super) struct Row {
    pub(super) id: u32,
    pub(super) kind: &'static str,
    pub(super) hint: Option<String>,
    pub(super) used_for: &'static str,
    pub(super) active: bool,
    pub(super) default: bool,
}

#[derive(Template)]
#[template(path = "security_info/list.html")]
pub(super) struct ListPage {
    pub(super) c: Chrome,
    pub(super) rows: Vec<Row>,
    /// Active methods, and how many the tenant requires before a sign-in.
    pub(super) active: usize,
    pub(super) required: usize,
    pub(super) default_label: Option<String>,
    pub(super) can_change_default: bool,
}

#[derive(Template)]
#[template(path = "security_info/add.html")]
pub(super) struct AddPage {
    pub(super) c: Chrome,
    pub(super) choices: Vec<(&'static str, &'static str, Option<&'static str>)>,
}

#[derive(Template)]
#[template(path = "security_info/app.html")]
pub(super) struct AppPage {
    pub(super) c: Chrome,
    pub(super) qr: String,
    pub(super) secret: String,
}

#[derive(Template)]
#[template(path = "security_info/contact.html")]
pub(super) struct ContactPage {
    pub(super) c: Chrome,
    pub(super) email: bool,
    /// A call rather than a text message was chosen.
    pub(super) voice: bool,
}

#[derive(Template)]
#[template(path = "security_info/confirm.html")]
pub(super) struct ConfirmPage {
    pub(super) c: Chrome,
    pub(super) destination: String,
}

#[derive(Template)]
#[template(path = "security_info/key.html")]
pub(super) struct KeyPage {
    pub(super) c: Chrome,
    pub(super) options: String,
}

#[derive(Template)]
#[template(path = "security_info/push.html")]
pub(super) struct PushPage {
    pub(super) c: Chrome,
    pub(super) qr: String,
    pub(super) uri: String,
}

#[derive(Template)]
#[template(path = "security_info/default.html")]
pub(super) struct DefaultPage {
    pub(super) c: Chrome,
    pub(super) choices: Vec<(u32, String, bool)>,
}

#[derive(Template)]
#[template(path = "security_info/delete.html")]
pub(super) struct DeletePage {
    pub(super) c: Chrome,
    pub(super) method: u32,
    pub(super) label: String,
    pub(super) app: bool,
}

/// An answer: a status, a body, and the headers that go with it.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
    pub(super) content_type: &'static str,
    pub(super) location: Option<&'static str>,
    pub(super) cookie: Option<String>,
}

impl Answer {
    pub(super) fn page(status: StatusCode, page: &impl Template) -> Self {
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

    pub(super) fn text(status: StatusCode, text: &'static str) -> Self {
        Self {
            status,
            body: Bytes::from_static(text.as_bytes()),
            content_type: "text/plain; charset=utf-8",
            location: None,
            cookie: None,
        }
    }

    /// 303 See Other to `to`: every form's answer, so a reload never sends it again.
    pub(super) fn see(to: &'static str) -> Self {
        Self {
            status: StatusCode::SEE_OTHER,
            body: Bytes::new(),
            content_type: "text/plain; charset=utf-8",
            location: Some(to),
            cookie: None,
        }
    }

    pub(super) fn with_cookie(mut self, cookie: String) -> Self {
        self.cookie = Some(cookie);
        self
    }

    pub(super) fn into_response(self) -> Response<Full<Bytes>> {
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

pub(super) fn failed(lang: Lang) -> Answer {
    Answer::page(
        StatusCode::SERVICE_UNAVAILABLE,
        &MessagePage {
            c: Chrome::bare(lang),
            heading: lang.text().failed,
            more: None,
        },
    )
}

pub(super) fn kind_word(t: &Text, k: MethodKind) -> &'static str {
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

pub(super) fn label(t: &Text, m: &OwnMethod) -> String {
    match &m.hint {
        Some(h) => format!("{} {h}", kind_word(t, m.kind)),
        None => kind_word(t, m.kind).to_owned(),
    }
}

/// JSON for a `<script type="application/json">` data block, with `<` escaped so that no
/// text in it can close the block.
pub(super) fn script_json(json: &str) -> String {
    json.replace('<', "\\u003c")
}

/// An SVG QR code of `text`, base64 for a `data:` image.
pub(super) fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(232, 232)
        .quiet_zone(true)
        .build();
    Some(data_encoding::BASE64.encode(svg.as_bytes()))
}

pub(super) fn refused_ticket(c: Chrome) -> Answer {
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

pub(super) fn session_over(lang: Lang) -> Answer {
    Answer::page(
        StatusCode::UNAUTHORIZED,
        &MessagePage {
            c: Chrome::bare(lang),
            heading: lang.text().session_over,
            more: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qr_code_is_an_svg() {
        let svg = data_encoding::BASE64
            .decode(qr_svg("otpauth://totp/x?secret=AAAA").unwrap().as_bytes())
            .unwrap();
        assert!(String::from_utf8(svg).unwrap().contains("<svg"));
    }
}
