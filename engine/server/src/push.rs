//! Push approvals in the server: telling devices an approval is waiting, and waking the
//! requests that wait on one.
//!
//! The rules (who may answer, what an answer does, how often a user may be prompted) are
//! in the core (`portvakt_core::push`); here is only the waiting. Two kinds of request
//! wait: a device asking for its list, until an approval is issued for it, and a frontend
//! asking for an approval's outcome, until the device answers. Both are woken at once by
//! what happens on this node, and look at the store again every [`POLL`] for what
//! happens on other nodes of a shared store.
//!
//! How the device hears of an approval is the [`Notifier`]'s business. The default,
//! [`LongPoll`], sends nothing: the app keeps a list request open and is answered when an
//! approval arrives. A deployment whose phones sleep between sign-ins plugs in one that
//! tells a relay (APNs, FCM) to wake the app.

use std::sync::Arc;
use std::time::Duration;

use portvakt_core::push::{ApprovalState, DeviceRef, PendingApproval, PushError};
use portvakt_core::{ChallengeId, MethodId, Timestamp};
use portvakt_store::Engine;
use tokio::sync::Notify;

/// How often a waiting request looks at the store again for changes made on other nodes.
pub const POLL: Duration = Duration::from_millis(250);

/// An approval was issued for a push device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The tenant.
    pub tenant: String,
    /// The user.
    pub user: String,
    /// The push device (method) it waits on.
    pub method: MethodId,
    /// The approval's id.
    pub approval: ChallengeId,
    /// When it expires.
    pub expires: Timestamp,
}

/// Tells a push device that an approval waits for it. Called after the approval is stored,
/// on the thread that decided: an implementation that talks to the network hands the
/// work to a task of its own and returns at once. It is told nothing the device is not
/// shown itself (never the number), and a failure to tell changes no decision: the app
/// finds the approval when it next asks.
pub trait Notifier: Send + Sync {
    /// `approval` was issued.
    fn issued(&self, approval: &Issued);
}

/// The default notifier: nothing is sent; the device's open list request is answered.
#[derive(Clone, Copy, Debug, Default)]
pub struct LongPoll;

impl Notifier for LongPoll {
    fn issued(&self, _: &Issued) {}
}

/// Tells a relay (one that speaks to APNs or FCM) of every approval, by an HTTP POST of
/// a small JSON object: `{"tenant", "user", "method", "approval", "expires_ms"}`, never
/// the number. Plain HTTP: the relay is meant to listen on loopback or the deployment's
/// own network; with a token, the request carries `Authorization: Bearer TOKEN`.
///
/// Each POST runs on a task of its own, at most [`WEBHOOK_IN_FLIGHT`] at once (past that,
/// a notification is dropped and counted: the device still finds the approval when it
/// next lists), and is given [`WEBHOOK_TIMEOUT`]. Outcomes are counted in
/// `portvakt_push_notifications_total{result}`.
pub struct Webhook {
    target: Arc<WebhookTarget>,
    runtime: tokio::runtime::Handle,
    slots: Arc<tokio::sync::Semaphore>,
}

struct WebhookTarget {
    host: String,
    path: String,
    token: Option<String>,
}

/// POSTs at once, at most.
pub const WEBHOOK_IN_FLIGHT: usize = 64;
/// How long one POST may take, connection included.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

impl Webhook {
    /// A webhook to `url` (`http://HOST:PORT/PATH`), run on the current tokio runtime.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: the relay's URL starts with http://"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if host.is_empty() || !host.contains(':') {
            return Err(format!("{url:?}: give the relay's host and port"));
        }
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "{url:?}: the path has spaces or control characters"
            ));
        }
        if token
            .as_deref()
            .is_some_and(|t| t.is_empty() || t.bytes().any(|b| !b.is_ascii_graphic()))
        {
            return Err("the relay's token must be printable ASCII without spaces".into());
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "a webhook needs the server's runtime".to_owned())?;
        Ok(Self {
            target: Arc::new(WebhookTarget {
                host: host.to_owned(),
                path: path.to_owned(),
                token,
            }),
            runtime,
            slots: Arc::new(tokio::sync::Semaphore::new(WEBHOOK_IN_FLIGHT)),
        })
    }
}

impl Notifier for Webhook {
    fn issued(&self, a: &Issued) {
        let counted = |result: &'static str| {
            metrics::counter!(crate::metrics::PUSH_NOTIFICATIONS, "result" => result).increment(1);
        };
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            counted("dropped");
            return;
        };
        let body = serde_json::json!({
            "tenant": a.tenant,
            "user": a.user,
            "method": a.method.0,
            "approval": a.approval.to_hex(),
            "expires_ms": a.expires.as_millis(),
        })
        .to_string();
        let target = self.target.clone();
        self.runtime.spawn(async move {
            let _slot = slot;
            let sent = tokio::time::timeout(WEBHOOK_TIMEOUT, post(&target, &body)).await;
            counted(match sent {
                Ok(Ok(())) => "sent",
                Ok(Err(_)) => "failed",
                Err(_) => "timeout",
            });
        });
    }
}

/// One HTTP/1.1 POST; Ok for a 2xx answer.
async fn post(t: &WebhookTarget, body: &str) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&t.host).await?;
    let auth = t
        .token
        .as_ref()
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n",
        t.path,
        t.host,
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    // The status line is all that is read: `HTTP/1.1 204 ...`.
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).await?;
    match status.get(9) {
        Some(b'2') if status.starts_with(b"HTTP/1.") => Ok(()),
        _ => Err(std::io::Error::other("the relay did not answer 2xx")),
    }
}

/// Who waits on approvals on this node, and the notifier.
pub struct Approvals {
    issued: Notify,
    answered: Notify,
    notifier: Box<dyn Notifier>,
}

impl Default for Approvals {
    fn default() -> Self {
        Self::new(Box::new(LongPoll))
    }
}

impl Approvals {
    /// Approvals told to devices through `notifier`.
    pub fn new(notifier: Box<dyn Notifier>) -> Self {
        Self {
            issued: Notify::new(),
            answered: Notify::new(),
            notifier,
        }
    }

    /// An approval was issued here: wakes the devices' list requests and tells the
    /// notifier.
    pub fn issued(&self, approval: &Issued) {
        self.issued.notify_waiters();
        self.notifier.issued(approval);
    }

    /// A device answered here: wakes the requests waiting for outcomes.
    pub fn answered(&self) {
        self.answered.notify_waiters();
    }

    /// Waits until approval `id` is no longer pending (answered, expired or spent), or
    /// until `deadline`. Store errors end the wait: the decision that follows reads the
    /// store again and fails closed itself.
    pub async fn until_answered(
        &self,
        engine: &Engine,
        id: ChallengeId,
        now: impl Fn() -> Timestamp,
        deadline: tokio::time::Instant,
    ) {
        loop {
            let woken = self.answered.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let state = crate::app::blocking(engine, || engine.approval_state(id, now()));
            if !matches!(state, Ok(Some(ApprovalState::Pending))) {
                return;
            }
            if !rest(woken, deadline).await {
                return;
            }
        }
    }

    /// The approvals waiting for `device`; if there are none, waits until one is issued
    /// or until `deadline`.
    pub async fn until_listed(
        &self,
        engine: &Engine,
        device: &DeviceRef,
        now: impl Fn() -> Timestamp,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<PendingApproval>, PushError> {
        loop {
            let woken = self.issued.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let listed = crate::app::blocking(engine, || engine.pending_approvals(device, now()))?;
            if !listed.is_empty() || !rest(woken, deadline).await {
                return Ok(listed);
            }
        }
    }
}

/// Waits for `woken`, [`POLL`] or `deadline`, whichever comes first; false at the
/// deadline.
async fn rest(
    woken: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    deadline: tokio::time::Instant,
) -> bool {
    let now = tokio::time::Instant::now();
    if now >= deadline {
        return false;
    }
    let nap = (deadline - now).min(POLL);
    let _ = tokio::time::timeout(nap, woken).await;
    true
}
