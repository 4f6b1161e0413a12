//! The HTTPS listener: connections, TLS, limits, who the caller is, and routing.
//!
//! Limits, each answered with a JSON error rather than a dropped connection where HTTP
//! allows: at most `max_connections` connections at once (more wait to be accepted), a
//! TLS handshake and then each request's headers within `slow_client_s` (10 s by
//! default) and at most [`MAX_HEADERS`] bytes of them (431), a body of at most
//! [`MAX_BODY`] bytes (413, before it is read when its length is declared) within
//! `slow_client_s` of the headers (408).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{Caller, Config, Reply};
use crate::frontend::quic::service::Service;

/// The largest request body read.
pub const MAX_BODY: usize = 64 * 1024;
/// The most bytes of request line and headers buffered.
pub const MAX_HEADERS: usize = 16 * 1024;

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) service: Arc<Service>,
    pub(crate) config: Config,
    admins: HashSet<String>,
    /// The security-info pages, when configured.
    pub(crate) pages: Option<super::security_info::Pages>,
}

/// A request as the routes see it.
pub(crate) struct Asked<'r> {
    pub(crate) method: &'r Method,
    pub(crate) query: &'r str,
    pub(crate) content_type: &'r str,
    pub(crate) user_agent: &'r str,
    pub(crate) body: &'r [u8],
    /// The connection's peer (IPv4-mapped addresses as IPv4).
    pub(crate) peer: IpAddr,
}

/// Binds `config.listen` and serves HTTPS with `tls` (its client certificates optional;
/// those in `admins`, by SHA-256 fingerprint, are administrators'). Returns the bound
/// address and the task.
pub async fn start(
    mut config: Config,
    mut tls: rustls::ServerConfig,
    admins: HashSet<String>,
    service: Arc<Service>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    let places = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let slow = config.slow_client;
    let pages = config
        .security_info
        .take()
        .map(super::security_info::Pages::new);
    let shared = Arc::new(Shared {
        service,
        config,
        admins,
        pages,
    });
    let task = tokio::spawn(async move {
        loop {
            let Ok(place) = places.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, shared) = (acceptor.clone(), shared.clone());
            tokio::spawn(async move {
                let _place = place;
                let Ok(Ok(stream)) = tokio::time::timeout(slow, acceptor.accept(tcp)).await else {
                    return;
                };
                let certificate = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(crate::pki::fingerprint);
                let peer = crate::frontend::plain_ip(peer.ip());
                let service = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    let certificate = certificate.clone();
                    async move { Ok::<_, Infallible>(serve(&shared, peer, certificate, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(slow)
                    .max_buf_size(MAX_HEADERS)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((local, task))
}

/// Answers one request.
async fn serve(
    shared: &Shared,
    peer: IpAddr,
    certificate: Option<String>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    // Which methods a path takes, for a 405's Allow header (RFC 9110), and its name in
    // the metrics (a fixed set, never the path itself).
    let (allow, route) = match req.uri().path() {
        "/validate/check" => ("GET, POST", "validate_check"),
        "/validate/polltransaction" => ("GET", "polltransaction"),
        "/v1/decide" => ("POST", "decide"),
        "/v1/send-code" => ("POST", "send_code"),
        "/v1/security-info/ticket" => ("POST", "ticket"),
        p if p == "/security-info" || p.starts_with("/security-info/") => {
            ("GET, POST", "security_info")
        }
        p if p.starts_with("/v1/admin/") => ("POST", "admin"),
        _ => ("POST", "other"),
    };
    if let (Some(pages), "security_info") = (&shared.pages, route) {
        let response = pages_answer(shared, pages, peer, req).await;
        metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => route, "status" => response.status().as_str().to_owned())
            .increment(1);
        return response;
    }
    let reply = answer(shared, peer, certificate, req).await;
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => route, "status" => reply.status.as_str().to_owned())
        .increment(1);
    let body = serde_json::to_vec(&reply.body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if reply.status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static(allow),
        );
    }
    response
}

async fn answer(
    shared: &Shared,
    peer: IpAddr,
    certificate: Option<String>,
    req: Request<Incoming>,
) -> Reply {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let privacyidea = path.starts_with("/validate/");
    let refuse = |status, code: &str, message: &str| match privacyidea {
        true => super::privacyidea::error(status, message),
        false => Reply::error(status, code, message),
    };
    let caller = match caller(shared, peer, certificate.as_deref(), &parts.headers) {
        Ok(c) => c,
        Err(message) => return refuse(StatusCode::UNAUTHORIZED, "unauthenticated", message),
    };
    let body = match read_body(shared, &parts, body).await {
        Ok(b) => b,
        Err((status, code, message)) => return refuse(status, code, message),
    };
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
            .unwrap_or("")
    };
    let asked = Asked {
        method: &parts.method,
        query: parts.uri.query().unwrap_or(""),
        content_type: header(CONTENT_TYPE),
        user_agent: header(USER_AGENT),
        body: &body,
        peer,
    };
    match (parts.method.clone(), path.as_str()) {
        (Method::GET | Method::POST, "/validate/check") => {
            super::privacyidea::check(shared, &asked).await
        }
        (Method::GET, "/validate/polltransaction") => super::privacyidea::poll(shared, &asked),
        (_, "/validate/check" | "/validate/polltransaction") => refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "not with this method",
        ),
        (Method::POST, "/v1/decide") => super::api::decide(shared, &asked).await,
        (Method::POST, "/v1/send-code") => super::api::send_code(shared, &asked).await,
        (Method::POST, "/v1/security-info/ticket") => super::api::ticket(shared, &asked).await,
        (Method::POST, admin) if admin.starts_with("/v1/admin/") => match caller {
            Caller::Admin(actor) => {
                super::api::admin(shared, &admin["/v1/admin/".len()..], &actor, &asked).await
            }
            Caller::Frontend => Reply::error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "administrator operations need the administrator's certificate or an admin API key",
            ),
        },
        (_, "/v1/decide" | "/v1/send-code" | "/v1/security-info/ticket") => Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "POST only",
        ),
        _ => refuse(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

/// The request's body, within [`MAX_BODY`] bytes and `slow_client`; or why not.
async fn read_body(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: Incoming,
) -> Result<Bytes, (StatusCode, &'static str, &'static str)> {
    const TOO_LARGE: &str = "the body is over 65536 bytes";
    const _: () = assert!(MAX_BODY == 65_536, "TOO_LARGE names MAX_BODY");
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "too_large", TOO_LARGE));
    }
    match tokio::time::timeout(
        shared.config.slow_client,
        Limited::new(body, MAX_BODY).collect(),
    )
    .await
    {
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the body did not arrive in time",
        )),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err((StatusCode::PAYLOAD_TOO_LARGE, "too_large", TOO_LARGE))
        }
        Ok(Err(_)) => Err((
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body could not be read",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// A request under `/security-info`: no caller credential (people's own browsers), the
/// same body limits.
async fn pages_answer(
    shared: &Shared,
    pages: &super::security_info::Pages,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match read_body(shared, &parts, body).await {
        Ok(b) => b,
        Err((status, _, message)) => {
            let mut r = Response::new(Full::new(Bytes::from_static(message.as_bytes())));
            *r.status_mut() = status;
            return r;
        }
    };
    let visit = super::security_info::Visit {
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &body,
        peer,
    };
    super::security_info::serve(shared, pages, &visit).await
}

/// Who the caller is: an API key's holder (`Authorization: Bearer KEY`; a key that is
/// not one is refused, not passed over), a client certificate's, or a frontend on a
/// network configured to need nothing.
fn caller(
    shared: &Shared,
    peer: IpAddr,
    certificate: Option<&str>,
    headers: &hyper::HeaderMap,
) -> Result<Caller, &'static str> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let key = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .ok_or("Authorization must be Bearer with an API key")?;
        let key = shared
            .config
            .api_key(key)
            .ok_or("not an API key of this server")?;
        return Ok(match key.role {
            super::config::KeyRole::Admin => Caller::Admin(format!("api-key:{}", key.name)),
            super::config::KeyRole::Frontend => Caller::Frontend,
        });
    }
    match certificate {
        Some(fp) if shared.admins.contains(fp) => Ok(Caller::Admin(fp.to_owned())),
        Some(_) => Ok(Caller::Frontend),
        None if shared.config.unauthenticated(peer) => Ok(Caller::Frontend),
        None => Err("present the frontend certificate or an API key"),
    }
}
