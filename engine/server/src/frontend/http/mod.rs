//! HTTPS for frontends that ask over HTTP (TLS 1.3, HTTP/1.1): a drop-in for privacyIDEA's
//! `/validate/check` ([`privacyidea`]), and Portvakt's own JSON API (`/v1/decide`,
//! `/v1/send-code`, `/v1/admin/<operation>`; [`api`]), deciding through the same core as
//! the QUIC and RADIUS frontends. `docs/http.md` says what each answers and where the
//! privacyIDEA drop-in deliberately differs; `docs/openapi.yaml` describes the JSON API.
//!
//! - [`config`]: where it listens, who may call without a credential, API keys, realms.
//! - `endpoint`: connections, TLS, limits (connections, header and body sizes, slow
//!   clients), who the caller is, and routing.
//! - `security_info`: the self-service pages under `/security-info`, where people add and
//!   remove their own methods, and `POST /v1/security-info/ticket`, which opens them.

pub mod api;
pub mod config;
mod endpoint;
pub mod privacyidea;
mod security_info;

pub use config::Config;
pub use endpoint::{MAX_BODY, MAX_HEADERS, start};

use hyper::StatusCode;
use serde_json::Value;

/// An answer: a status and a JSON body.
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: Value,
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
        }
    }

    /// Portvakt's own error shape: `{"error": CODE, "message": ...}`.
    pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: serde_json::json!({ "error": code, "message": message.into() }),
        }
    }
}

/// Who is calling, as the connection and request showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A frontend: decisions and sent codes.
    Frontend,
    /// An administrator, named for the audit trail (a certificate's fingerprint, or
    /// `api-key:NAME`).
    Admin(String),
}
