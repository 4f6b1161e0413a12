//! What every frontend shares: the engine, the one clock it reads, the policy file, the
//! sign-in log. A decision or a sent code is made, timed, counted and recorded here the
//! same way whichever frontend asked; a frontend only turns its protocol into a core
//! request and the answer back into its protocol.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use portvakt_core::{Decision, Request, SendRequest, Sent, Timestamp, config};
use portvakt_store::Engine;

use portvakt_store::durable::Wal;

use crate::signin::{self, SignInLog};

pub use portvakt_wire::admin::Frontend;

/// Where the server reads the time.
pub type Clock = Box<dyn Fn() -> Timestamp + Send + Sync>;

/// The engine and what goes with it, shared by every frontend and connection.
pub struct App {
    engine: Arc<Engine>,
    policy_file: Option<PathBuf>,
    clock: Clock,
    log: Option<SignInLog>,
    state_log: Option<Arc<Wal>>,
    shared: Option<Arc<portvakt_store::redis::Redis>>,
    approvals: crate::push::Approvals,
}

/// Where the audit trail is kept: in the durable store's log, or in the shared store.
#[derive(Clone)]
pub enum AuditTrail {
    /// The durable store's log (and its archives).
    Durable(Arc<Wal>),
    /// The deployment's stream in Redis.
    Shared(Arc<portvakt_store::redis::Redis>),
}

impl AuditTrail {
    /// Appends an event's bytes. In the durable store's log it is written with the
    /// operation's changes (under the operation's hold); in the shared store it is a write
    /// of its own after the operation, so a node that stops between the two keeps the
    /// change without its event (docs/operations.md).
    pub fn append(&self, event: &[u8]) -> Result<(), String> {
        match self {
            Self::Durable(wal) => wal
                .append_audit(event)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Self::Shared(redis) => redis.append_audit(event).map_err(|e| e.to_string()),
        }
    }

    /// Calls `f` with each event's bytes, oldest first, until it returns false.
    pub fn read(&self, f: &mut dyn FnMut(&[u8]) -> bool) -> Result<(), String> {
        match self {
            Self::Durable(wal) => wal.read_audit(|b| f(b)).map_err(|e| e.to_string()),
            Self::Shared(redis) => redis.read_audit(f).map_err(|e| e.to_string()),
        }
    }
}

impl App {
    /// An app over `engine` on the system clock; `policy_file` is what a policy reload
    /// reads.
    pub fn new(engine: Arc<Engine>, policy_file: Option<PathBuf>) -> Self {
        Self {
            engine,
            policy_file,
            clock: Box::new(crate::clock::now),
            log: None,
            state_log: None,
            shared: None,
            approvals: Default::default(),
        }
    }

    /// The same app telling push devices of approvals through `notifier` (the default,
    /// [`crate::push::LongPoll`], sends nothing: devices wait on a list request).
    pub fn with_notifier(mut self, notifier: Box<dyn crate::push::Notifier>) -> Self {
        self.approvals = crate::push::Approvals::new(notifier);
        self
    }

    /// Who waits on push approvals here.
    pub fn approvals(&self) -> &crate::push::Approvals {
        &self.approvals
    }

    /// The same app on a shared store: its audit trail is kept there.
    pub fn with_shared_store(mut self, redis: Arc<portvakt_store::redis::Redis>) -> Self {
        self.shared = Some(redis);
        self
    }

    /// Where the audit trail is kept, if anywhere (a server on the memory store keeps
    /// none).
    pub fn audit_trail(&self) -> Option<AuditTrail> {
        match (&self.state_log, &self.shared) {
            (Some(wal), _) => Some(AuditTrail::Durable(wal.clone())),
            (None, Some(redis)) => Some(AuditTrail::Shared(redis.clone())),
            (None, None) => None,
        }
    }

    /// The same app with its engine's changes going to `log` (the durable store): an
    /// answer leaves only once what it depends on is durable ([`App::durable_until`]).
    pub fn with_state_log(mut self, log: Arc<Wal>) -> Self {
        self.state_log = Some(log);
        self
    }

    /// How far the state log must be durable for the answers decided so far (read after
    /// deciding, before the answers leave); `None` without a durable store.
    pub fn durable_position(&self) -> Option<u64> {
        self.state_log.as_ref().map(|log| log.end())
    }

    /// Waits until the state log is durable up to `position` ([`App::durable_position`]).
    /// An error means it may never be: the answers must not leave as they are (the caller
    /// answers `internal` instead).
    pub async fn durable_until(&self, position: u64) -> Result<(), String> {
        match &self.state_log {
            None => Ok(()),
            Some(log) if log.synced().position >= position => Ok(()),
            Some(log) => log.durable(position).await,
        }
    }

    /// The durable store's log, if the app has one.
    pub fn state_log(&self) -> Option<&Arc<Wal>> {
        self.state_log.as_ref()
    }

    /// Records an administrator operation in the audit trail ([`App::audit_trail`]; a
    /// server on the memory store keeps none). On the durable store the answer then waits
    /// for it like for any change ([`App::durable_position`]). An event that cannot be
    /// appended is said in the server's log (the durable store's answer is withheld
    /// anyway: its log is failing).
    pub fn audit(&self, event: &crate::audit::Event) {
        let Some(trail) = self.audit_trail() else {
            return;
        };
        let mut bytes = Vec::new();
        event.encode(&mut bytes);
        if let Err(e) = trail.append(&bytes) {
            crate::warn(format_args!(
                "audit trail: the event of {} by {} on {}/{} could not be written: {e}",
                event.op, event.actor, event.tenant, event.user
            ));
        }
    }

    /// The same app reading time from `clock` (tests use a manual clock to let locks
    /// expire without waiting).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same app recording every decision in `log`.
    pub fn with_sign_in_log(mut self, log: SignInLog) -> Self {
        self.log = Some(log);
        self
    }

    /// The time now, as the app's clock tells it.
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, shared (for work run off the async runtime's threads).
    pub fn engine_handle(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// The sign-in log, if the app keeps one.
    pub fn sign_in_log(&self) -> Option<&SignInLog> {
        self.log.as_ref()
    }

    /// Reads the policy file again and swaps the new policy in atomically (decisions in
    /// flight finish on the old one). A file that does not compile changes nothing.
    /// Returns the number of tenants.
    pub fn reload_policy(&self) -> Result<u16, String> {
        let path = self
            .policy_file
            .as_ref()
            .ok_or("the server runs on its embedded policy; there is no file to reload")?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let policy = config::load(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let tenants = u16::try_from(policy.tenants().len()).unwrap_or(u16::MAX);
        self.engine.set_policy(policy);
        Ok(tenants)
    }

    /// Decides `request` at `now`: timed and counted for the metrics, and its sign-in
    /// record appended to `records` (for [`SignInLog::submit`], before the answer leaves).
    pub fn decide(
        &self,
        via: Frontend,
        request: &Request<'_>,
        now: Timestamp,
        records: &mut BytesMut,
    ) -> Decision {
        let started = crate::clock::instant();
        let decision = self.engine.decide(request, now);
        let who = (
            request.tenant,
            request.user,
            request.ip,
            request.purpose,
            via,
        );
        account(records, now, started, who, &decision);
        self.tell(request.tenant, request.user, &decision);
        decision
    }

    /// [`decide`](Self::decide) at the app's time now, off the async runtime's workers when
    /// the store answers over the network ([`blocking`]).
    pub fn decide_now(
        &self,
        via: Frontend,
        request: &Request<'_>,
        records: &mut BytesMut,
    ) -> Decision {
        let now = self.now();
        blocking(&self.engine, || self.decide(via, request, now, records))
    }

    /// Sends a code (or refuses to) as [`decide`](Self::decide) decides: timed, counted and
    /// recorded.
    pub fn send_code(
        &self,
        via: Frontend,
        request: &SendRequest<'_>,
        now: Timestamp,
        records: &mut BytesMut,
    ) -> Sent {
        let started = crate::clock::instant();
        let sent = self.engine.send_code(request, now);
        let who = (
            request.tenant,
            request.user,
            request.ip,
            request.purpose,
            via,
        );
        account(records, now, started, who, &sent.decision);
        self.tell(request.tenant, request.user, &sent.decision);
        sent
    }

    /// Hands `records` to the sign-in log and waits until the state the decisions depend
    /// on is durable: after it returns `Ok`, their answers may leave. For frontends that
    /// answer one request at a time (the QUIC endpoint does this by rounds).
    pub async fn settle(&self, records: &mut BytesMut) -> Result<(), String> {
        let position = self.durable_position();
        if !records.is_empty() {
            if let Some(log) = &self.log {
                log.submit(records).await.map_err(|e| e.to_string())?;
            }
            records.clear();
        }
        match position {
            Some(p) => self.durable_until(p).await,
            None => Ok(()),
        }
    }

    /// Tells the user's push device of an approval the decision issued.
    fn tell(&self, tenant: &str, user: &str, d: &Decision) {
        if let Some(a) = &d.approval {
            self.approvals.issued(&crate::push::Issued {
                tenant: tenant.to_owned(),
                user: user.to_owned(),
                method: a.method,
                approval: a.id,
                expires: a.expires,
            });
        }
    }
}

impl AsRef<App> for App {
    fn as_ref(&self) -> &App {
        self
    }
}

/// Who asked: tenant, user, address, purpose, and through which frontend.
type Who<'a> = (
    &'a str,
    &'a str,
    std::net::IpAddr,
    portvakt_core::Purpose,
    Frontend,
);

/// Times and counts one decision for the metrics, and appends its sign-in record.
fn account(
    records: &mut BytesMut,
    now: Timestamp,
    started: std::time::Instant,
    who: Who<'_>,
    d: &Decision,
) {
    metrics::histogram!(crate::metrics::DECISION_SECONDS).record(started.elapsed().as_secs_f64());
    metrics::counter!(crate::metrics::DECISIONS, "outcome" => d.outcome.as_str(), "reason" => d.reason.as_str()).increment(1);
    let (tenant, user, ip, purpose, via) = who;
    let row = signin::Record {
        at_ms: now.as_millis(),
        tenant,
        user,
        ip,
        purpose: portvakt_wire::Purpose::from(purpose) as u8,
        outcome: portvakt_wire::Outcome::from(d.outcome) as u8,
        reason: d.reason.as_str(),
        method: d.method.map(|m| portvakt_wire::MethodKind::from(m) as u8),
        location: d.location.as_str(),
        rule: d.rule.as_str(),
        frontend: via as u8,
    };
    if !signin::append(records, &row) {
        metrics::counter!(crate::metrics::SIGNIN_WRITE_ERRORS).increment(1);
        crate::warn(format_args!(
            "sign-in log: a record over the format's limits was not written ({row:?})"
        ));
    }
}

/// Runs work that calls the store from async code: a shared store answers over the
/// network, so the work waits on a thread the runtime can spare, not on one of its
/// workers; a store in memory or on local disk answers at once, in place.
pub(crate) fn blocking<R>(engine: &Engine, f: impl FnOnce() -> R) -> R {
    if engine.store().is_remote() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}
