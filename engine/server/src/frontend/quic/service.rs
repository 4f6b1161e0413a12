//! One frame in, one frame out: decoding, the caller's role, the engine, encoding.
//!
//! Nothing here does I/O; the connection code feeds frames in and writes what comes out.
//! A frame that cannot be decoded is answered with an error frame naming the problem.
//! Decisions and refused frames are counted, and decisions timed, for [`crate::metrics`].

use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use portvakt_core::admin::TotpSpec;
use portvakt_core::directory::{DirectoryError, MethodKind};
use portvakt_core::otp::{Algorithm, Digits};
use portvakt_core::{MethodId, Timestamp};
use portvakt_store::Engine;
use portvakt_wire::admin::{
    AppPasswordRow, AppPasswordRows, AuditEvents, DeviceRow, DeviceRows, LongStr, MAX_AUDIT_EVENTS,
    MethodRow, MethodRows, SignInRow, SignInRows, Str, StrList,
};
use portvakt_wire::{Admin, AdminReply, ErrorCode, Frame};

use crate::app::{App, Clock, Frontend};
use crate::audit::{Event, Summary};
use crate::signin::{self, SignInLog};

/// What a connection's client certificate allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Decisions and sent codes.
    Frontend,
    /// Everything, administrator operations included, recorded in the audit trail under
    /// the certificate's SHA-256 fingerprint (hex).
    Admin(Arc<str>),
    /// A connection without a client certificate: push-device frames only, each proved
    /// by the device's key (`device.rs`).
    Device(Arc<super::device::Session>),
}

impl PartialEq for super::device::Session {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for super::device::Session {}

impl Role {
    /// The administrator role for the certificate with `fingerprint`.
    pub fn admin(fingerprint: &str) -> Self {
        Self::Admin(fingerprint.into())
    }
}

/// Why an administrator operation failed: `refused` with the directory's reason, or
/// `internal` when the state store failed (the operation may be retried). The flag says
/// a shared directory log refused it because another node's change came first.
struct AdminError(ErrorCode, String, bool);

impl From<DirectoryError> for AdminError {
    fn from(d: DirectoryError) -> Self {
        match d {
            DirectoryError::Store(e) => {
                let conflict = e.is_conflict();
                Self(ErrorCode::Internal, e.to_string(), conflict)
            }
            other => Self(ErrorCode::Refused, other.to_string(), false),
        }
    }
}

impl From<String> for AdminError {
    fn from(message: String) -> Self {
        Self(ErrorCode::Refused, message, false)
    }
}

impl From<&str> for AdminError {
    fn from(message: &str) -> Self {
        Self(ErrorCode::Refused, message.to_owned(), false)
    }
}

/// Times an administrator operation is made again after a shared directory log refused
/// it because another node's change came first (each time after catching up).
const CONFLICT_RETRIES: usize = 16;

/// The request handler shared by all connections: the frames of Portvakt's protocol over
/// the frontend-neutral [`App`].
pub struct Service {
    app: App,
    /// Sign-in log and audit queries running at once: each reads files, and
    /// administrators paging in parallel must not take the disk from decisions.
    queries: tokio::sync::Semaphore,
}

impl AsRef<App> for Service {
    fn as_ref(&self) -> &App {
        &self.app
    }
}

/// How many sign-in log and audit queries run at once; more wait their turn.
pub const QUERIES_AT_ONCE: usize = 2;

impl Service {
    /// A service over `engine` on the system clock; `policy_file` is what `reload policy`
    /// reads.
    pub fn new(engine: Arc<Engine>, policy_file: Option<PathBuf>) -> Self {
        Self {
            app: App::new(engine, policy_file),
            queries: tokio::sync::Semaphore::new(QUERIES_AT_ONCE),
        }
    }

    /// The same service reading time from `clock` (tests use a manual clock to let locks
    /// expire without waiting).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.app = self.app.with_clock(clock);
        self
    }

    /// The same service recording every decision in `log`.
    pub fn with_sign_in_log(mut self, log: SignInLog) -> Self {
        self.app = self.app.with_sign_in_log(log);
        self
    }

    /// What every frontend shares: engine, clock, policy file, sign-in log.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The time now, as the service's clock tells it.
    pub fn now(&self) -> Timestamp {
        self.app.now()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.app.engine()
    }

    /// Reads the policy file again ([`App::reload_policy`]).
    pub fn reload_policy(&self) -> Result<u16, String> {
        self.app.reload_policy()
    }

    /// The sign-in log, if the service keeps one.
    pub fn sign_in_log(&self) -> Option<&SignInLog> {
        self.app.sign_in_log()
    }

    /// The same service with its engine's changes going to the durable store's `log`.
    pub fn with_state_log(mut self, log: std::sync::Arc<portvakt_store::durable::Wal>) -> Self {
        self.app = self.app.with_state_log(log);
        self
    }

    /// The same service telling push devices of approvals through `notifier`.
    pub fn with_notifier(mut self, notifier: Box<dyn crate::push::Notifier>) -> Self {
        self.app = self.app.with_notifier(notifier);
        self
    }

    /// The same service on a shared store (`App::with_shared_store`).
    pub fn with_shared_store(
        mut self,
        redis: std::sync::Arc<portvakt_store::redis::Redis>,
    ) -> Self {
        self.app = self.app.with_shared_store(redis);
        self
    }

    /// Answers one whole frame (length prefix included), appending the answer to `out`
    /// and, for a decision, its sign-in record to `records` (for [`SignInLog::submit`]).
    /// A sign-in log query is not answered here, since it reads files: it is returned for
    /// [`Service::answer_query`].
    pub fn handle(
        &self,
        role: &Role,
        frame: &[u8],
        now: Timestamp,
        out: &mut BytesMut,
        records: &mut BytesMut,
    ) -> Handled {
        let reply = match Frame::decode(frame) {
            Ok(request) => self.answer(role, request, now, records),
            Err(e) => {
                // The id, if the frame is long enough to hold one, so the client can match.
                let id = frame
                    .get(5..9)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_be_bytes);
                Owned::Error(id, ErrorCode::of(&e), e.to_string())
            }
        };
        if let Owned::Query(id, q) = reply {
            return Handled::Query(id, q);
        }
        reply.encode(out);
        Handled::Answered
    }

    /// Answers a request [`Service::handle`] left to the connection because it reads or
    /// writes files: runs it off the async runtime's threads, records it in the audit
    /// trail, and appends the answer. Every answer already sent had its sign-in record
    /// written first, so a sign-in page holds them.
    pub async fn answer_query(
        &self,
        id: u32,
        query: Query,
        out: &mut BytesMut,
        records: &mut BytesMut,
    ) {
        // Waits for a push device hold no disk and take no turn.
        let query = match query {
            Query::AwaitApproval(wait) => {
                return self.await_approval(id, *wait, records).await.encode(out);
            }
            Query::DeviceList(device, wait) => {
                return self.device_list(id, &device, wait).await.encode(out);
            }
            q => q,
        };
        // Never closed, so a permit always comes.
        let _turn = self.queries.acquire().await.ok();
        let (event, reply) = match query {
            Query::SignIns(actor, q) => {
                let mut event = Event::about(&actor, "sign-ins", &q.tenant, &q.user, self.now());
                let reply = match self.app.sign_in_log() {
                    None => Owned::Error(
                        id,
                        ErrorCode::Refused,
                        "this server keeps no sign-in log".into(),
                    ),
                    Some(log) => {
                        let log = log.clone();
                        let page = tokio::task::spawn_blocking(move || log.query(&q))
                            .await
                            .map_err(|_| signin::LogError::Closed)
                            .and_then(|page| page);
                        match page {
                            Ok(page) => Owned::Reply(id, OwnedReply::SignIns(page)),
                            Err(e) => Owned::Error(id, ErrorCode::Internal, e.to_string()),
                        }
                    }
                };
                settle(&mut event, &reply);
                (event, reply)
            }
            Query::Audit(actor, q) => {
                let mut event = Event::about(&actor, "audit", &q.tenant, &q.user, self.now());
                let reply = match self.app.audit_trail() {
                    None => Owned::Error(id, ErrorCode::Refused, NO_STORE.into()),
                    Some(trail) => {
                        match tokio::task::spawn_blocking(move || audit_page(&trail, &q)).await {
                            Ok(Ok(page)) => Owned::Reply(id, OwnedReply::Audit(page)),
                            Ok(Err(e)) => Owned::Error(id, ErrorCode::Internal, e.to_string()),
                            Err(_) => Owned::Error(id, ErrorCode::Internal, "stopped".into()),
                        }
                    }
                };
                settle(&mut event, &reply);
                (event, reply)
            }
            Query::Backup(actor, path) => {
                let mut event = Event::about(&actor, "backup", "", "", self.now());
                let reply = match self.app.state_log() {
                    None if self.app.engine().store().is_remote() => {
                        Owned::Error(id, ErrorCode::Refused, SHARED_BACKUP.into())
                    }
                    None => Owned::Error(id, ErrorCode::Refused, NO_STORE.into()),
                    Some(_) if !path.is_absolute() => Owned::Error(
                        id,
                        ErrorCode::Refused,
                        "a backup's path is on the server's machine: give it whole (absolute)"
                            .into(),
                    ),
                    Some(wal) => {
                        let (wal, engine) = (wal.clone(), self.app.engine_handle());
                        let dest = path.clone();
                        let made = tokio::task::spawn_blocking(move || {
                            portvakt_store::durable::backup(&engine, &wal, &dest)
                        })
                        .await;
                        match made {
                            Ok(Ok(b)) => Owned::Reply(id, OwnedReply::BackedUp(b)),
                            Ok(Err(e)) => Owned::Error(id, ErrorCode::Internal, e.to_string()),
                            Err(_) => Owned::Error(id, ErrorCode::Internal, "stopped".into()),
                        }
                    }
                };
                settle(&mut event, &reply);
                if let Owned::Reply(_, OwnedReply::BackedUp(b)) = &reply {
                    event.detail = format!("{} ({} bytes)", path.display(), b.bytes);
                } else {
                    event.detail = format!("{}: {}", path.display(), event.detail);
                }
                (event, reply)
            }
            Query::AwaitApproval(_) | Query::DeviceList(..) => return,
        };
        self.app.audit(&event);
        reply.encode(out);
    }

    fn answer(
        &self,
        role: &Role,
        request: Frame<'_>,
        now: Timestamp,
        records: &mut BytesMut,
    ) -> Owned {
        match request {
            Frame::Decide(id, _) | Frame::SendCode(id, _) if matches!(role, Role::Device(_)) => {
                forbidden(id)
            }
            Frame::Device(id, request) => self.device(id, role, request, now),
            Frame::Decide(id, d) => {
                let answers: Vec<&str> = match &d.proof {
                    Some(portvakt_wire::Proof::SecurityAnswers(a)) => a.clone(),
                    _ => Vec::new(),
                };
                let challenge_hex;
                let proof = match &d.proof {
                    None => None,
                    Some(portvakt_wire::Proof::Totp(c)) => Some(portvakt_core::Proof::Totp(c)),
                    Some(portvakt_wire::Proof::Hotp { code, next }) => {
                        Some(portvakt_core::Proof::Hotp { code, next: *next })
                    }
                    Some(portvakt_wire::Proof::Sent { challenge, code }) => {
                        challenge_hex = portvakt_core::ChallengeId(*challenge).to_hex();
                        Some(portvakt_core::Proof::Sent {
                            challenge: &challenge_hex,
                            code,
                        })
                    }
                    Some(portvakt_wire::Proof::AppPassword(p)) => {
                        Some(portvakt_core::Proof::AppPassword(p))
                    }
                    Some(portvakt_wire::Proof::SecurityAnswers(_)) => {
                        Some(portvakt_core::Proof::SecurityAnswers(&answers))
                    }
                    Some(portvakt_wire::Proof::SecurityKey(json)) => {
                        Some(portvakt_core::Proof::SecurityKey(json))
                    }
                    Some(portvakt_wire::Proof::Push { approval, wait_ms }) => {
                        if *wait_ms > 0 {
                            let wait = super::device::AwaitApproval::new(&d, *approval, *wait_ms);
                            return Owned::Query(id, Query::AwaitApproval(Box::new(wait)));
                        }
                        challenge_hex = portvakt_core::ChallengeId(*approval).to_hex();
                        Some(portvakt_core::Proof::Push(&challenge_hex))
                    }
                };
                let request = portvakt_core::Request {
                    tenant: d.tenant,
                    user: d.user,
                    ip: d.ip,
                    purpose: d.purpose.into(),
                    first_factor: match d.first_factor {
                        portvakt_wire::FirstFactor::Ok => portvakt_core::FirstFactor::Ok,
                        portvakt_wire::FirstFactor::Failed => portvakt_core::FirstFactor::Failed,
                        portvakt_wire::FirstFactor::None => portvakt_core::FirstFactor::None,
                    },
                    proof,
                    device_token: d.device_token,
                    remember_device: d.remember_device,
                };
                let decision = self.app.decide(Frontend::Quic, &request, now, records);
                Owned::Decision(id, decision, None)
            }
            Frame::SendCode(id, s) => {
                let request = portvakt_core::SendRequest {
                    tenant: s.tenant,
                    user: s.user,
                    ip: s.ip,
                    purpose: s.purpose.into(),
                    method: s.method.map(MethodId),
                };
                let sent = self.app.send_code(Frontend::Quic, &request, now, records);
                Owned::Decision(
                    id,
                    sent.decision,
                    Some((sent.challenge.map(|c| c.0), sent.delivery)),
                )
            }
            Frame::Admin(id, a) => match role {
                Role::Admin(actor) => match a {
                    Admin::SignIns {
                        tenant,
                        user,
                        from_ms,
                        to_ms,
                        cursor,
                        limit,
                    } => Owned::Query(
                        id,
                        Query::SignIns(
                            actor.clone(),
                            signin::Query {
                                tenant: tenant.0.to_owned(),
                                user: user.0.to_owned(),
                                from_ms,
                                to_ms,
                                cursor,
                                limit: usize::from(limit),
                            },
                        ),
                    ),
                    Admin::Audit {
                        tenant,
                        user,
                        from_ms,
                        to_ms,
                        cursor,
                        limit,
                    } => Owned::Query(
                        id,
                        Query::Audit(
                            actor.clone(),
                            AuditQuery {
                                tenant: tenant.0.to_owned(),
                                user: user.0.to_owned(),
                                from_ms,
                                to_ms,
                                cursor,
                                limit: usize::from(limit).clamp(1, MAX_AUDIT_EVENTS),
                            },
                        ),
                    ),
                    Admin::Backup { path } => {
                        Owned::Query(id, Query::Backup(actor.clone(), PathBuf::from(path.0)))
                    }
                    a => self.administer(id, a, now, actor),
                },
                Role::Frontend | Role::Device(_) => Owned::Error(
                    id,
                    ErrorCode::Forbidden,
                    "administrator operations need the administrator certificate".into(),
                ),
            },
            other => Owned::Error(
                other.id(),
                ErrorCode::Malformed,
                "this frame is sent by servers, not clients".into(),
            ),
        }
    }

    /// Runs one administrator operation and records it in the audit trail: under a hold
    /// on the state log, so its change and its event are written together, with the
    /// user as the administrator sees it before and after.
    fn administer(&self, id: u32, a: Admin<'_>, now: Timestamp, actor: &str) -> Owned {
        let (op, tenant, user, method) = target(&a);
        let e = self.app.engine();
        let summary = |tenant: &str, user: &str| match (tenant, user) {
            ("", "") => Summary::default(),
            _ => Summary::of(e.user_info(tenant, user).ok().as_ref()),
        };
        let _hold = self.app.state_log().map(|w| w.hold());
        let before = summary(tenant, user);
        let mut event = Event::about(actor, op, tenant, user, now);
        event.method = method;
        let mut result = self.admin(a.clone(), now);
        for _ in 0..CONFLICT_RETRIES {
            match &result {
                // Checked again on the directory as it is once this node has caught up.
                Err(AdminError(_, _, true)) if e.settle_log() => {
                    result = self.admin(a.clone(), now);
                }
                _ => break,
            }
        }
        let reply = match result {
            Ok(reply) => Owned::Reply(id, reply),
            Err(AdminError(code, message, _)) => Owned::Error(id, code, message),
        };
        event.changes = before.changes(&summary(tenant, user));
        settle(&mut event, &reply);
        if let Owned::Reply(_, OwnedReply::PolicyReloaded(t)) = &reply {
            event.detail = format!("{t} tenants");
        }
        self.app.audit(&event);
        reply
    }

    fn admin(&self, a: Admin<'_>, now: Timestamp) -> Result<OwnedReply, AdminError> {
        let e = self.app.engine();
        let err = AdminError::from;
        let done = Ok(OwnedReply::Done);
        match a {
            Admin::AddUser {
                tenant,
                user,
                groups,
                passwordless,
            } => {
                let id = e
                    .add_user(tenant.0, user.0, &groups.0, passwordless)
                    .map_err(err)?;
                Ok(OwnedReply::UserAdded(id.0))
            }
            Admin::RemoveUser { tenant, user } => {
                e.remove_user(tenant.0, user.0).map_err(err).and(done)
            }
            Admin::SetGroups {
                tenant,
                user,
                groups,
            } => e
                .set_groups(tenant.0, user.0, &groups.0)
                .map_err(err)
                .and(done),
            Admin::SetPasswordless {
                tenant,
                user,
                passwordless,
            } => e
                .set_passwordless(tenant.0, user.0, passwordless)
                .map_err(err)
                .and(done),
            Admin::SetMfaOptOut {
                tenant,
                user,
                opt_out,
            } => e
                .set_mfa_opt_out(tenant.0, user.0, opt_out)
                .map_err(err)
                .and(done),
            Admin::EnrollTotp {
                tenant,
                user,
                algorithm,
                digits,
                period,
            } => {
                let spec = totp_spec(algorithm, digits, period)?;
                let en = e.enroll_totp(tenant.0, user.0, spec).map_err(err)?;
                Ok(OwnedReply::Enrolled(
                    en.method.0,
                    en.secret_base32.expose().to_owned(),
                    en.uri.expose().to_owned(),
                ))
            }
            Admin::ImportTotp {
                tenant,
                user,
                secret,
                algorithm,
                digits,
                period,
                active,
            } => {
                let spec = totp_spec(algorithm, digits, period)?;
                let m = e
                    .import_totp(tenant.0, user.0, secret.0, spec, active)
                    .map_err(err)?;
                Ok(OwnedReply::MethodAdded(m.0))
            }
            Admin::AddHotp {
                tenant,
                user,
                secret,
                digits,
                counter,
            } => {
                let digits = Digits::new(digits).ok_or("digits must be 6, 7 or 8")?;
                let m = e
                    .add_hotp(tenant.0, user.0, secret.0, digits, counter)
                    .map_err(err)?;
                Ok(OwnedReply::MethodAdded(m.0))
            }
            Admin::AddPhone {
                tenant,
                user,
                kind,
                number,
            } => {
                let kind = match kind {
                    3 => MethodKind::Sms,
                    4 => MethodKind::Voice,
                    _ => return Err("phone kind must be 3 (SMS) or 4 (voice)".into()),
                };
                let m = e.add_phone(tenant.0, user.0, kind, number.0).map_err(err)?;
                Ok(OwnedReply::MethodAdded(m.0))
            }
            Admin::AddEmail {
                tenant,
                user,
                address,
            } => Ok(OwnedReply::MethodAdded(
                e.add_email(tenant.0, user.0, address.0).map_err(err)?.0,
            )),
            Admin::AddSecurityKey { tenant, user } => Ok(OwnedReply::MethodAdded(
                e.add_security_key(tenant.0, user.0).map_err(err)?.0,
            )),
            Admin::SetSecurityQuestions {
                tenant,
                user,
                answers,
            } => {
                let m = e
                    .set_security_questions(tenant.0, user.0, &answers.0)
                    .map_err(err)?;
                Ok(OwnedReply::MethodAdded(m.0))
            }
            Admin::ConfirmOtp {
                tenant,
                user,
                method,
                code,
            } => e
                .confirm_otp(tenant.0, user.0, MethodId(method), code.0, now)
                .map_err(err)
                .and(done),
            Admin::StartConfirmation {
                tenant,
                user,
                method,
            } => {
                match e
                    .start_confirmation(tenant.0, user.0, MethodId(method), now)
                    .map_err(err)?
                {
                    Ok((challenge, d)) => Ok(OwnedReply::ConfirmationSent(
                        challenge.0,
                        portvakt_wire::MethodKind::from(d.channel) as u8,
                        d.destination,
                        d.code.expose().to_owned(),
                        d.expires.as_millis(),
                    )),
                    Err(wait) => Ok(OwnedReply::Throttled(
                        u32::try_from(wait.as_secs_ceil()).unwrap_or(u32::MAX),
                    )),
                }
            }
            Admin::ConfirmSent {
                tenant,
                user,
                method,
                challenge,
                code,
            } => e
                .confirm_sent(
                    tenant.0,
                    user.0,
                    MethodId(method),
                    portvakt_core::ChallengeId(challenge),
                    code.0,
                    now,
                )
                .map_err(err)
                .and(done),
            Admin::RemoveMethod {
                tenant,
                user,
                method,
            } => e
                .remove_method(tenant.0, user.0, MethodId(method))
                .map_err(err)
                .and(done),
            Admin::RemoveAllMethods { tenant, user } => e
                .remove_all_methods(tenant.0, user.0)
                .map_err(err)
                .and(done),
            Admin::SetDefaultMethod {
                tenant,
                user,
                method,
            } => e
                .set_default_method(tenant.0, user.0, MethodId(method))
                .map_err(err)
                .and(done),
            Admin::Unlock { tenant, user } => e.unlock(tenant.0, user.0).map_err(err).and(done),
            Admin::ResetDrift {
                tenant,
                user,
                method,
            } => e
                .reset_drift(tenant.0, user.0, MethodId(method))
                .map_err(err)
                .and(done),
            Admin::CreateAppPassword {
                tenant,
                user,
                label,
            } => {
                let (id, pw) = e
                    .create_app_password(tenant.0, user.0, label.0, now)
                    .map_err(err)?;
                Ok(OwnedReply::AppPassword(id, pw.expose().to_owned()))
            }
            Admin::RevokeAppPassword { tenant, user, id } => e
                .revoke_app_password(tenant.0, user.0, id)
                .map_err(err)
                .and(done),
            Admin::RevokeDevices { tenant, user, id } => e
                .revoke_devices(tenant.0, user.0, id)
                .map_err(err)
                .and(done),
            Admin::UserInfo { tenant, user } => {
                let info = e.user_info(tenant.0, user.0).map_err(err)?;
                Ok(OwnedReply::Described(info))
            }
            Admin::ReloadPolicy {} => self
                .reload_policy()
                .map(OwnedReply::PolicyReloaded)
                .map_err(AdminError::from),
            Admin::EnrollPush { tenant, user } => {
                let started = e.enroll_push(tenant.0, user.0, now).map_err(err)?;
                Ok(OwnedReply::PushEnrolled(
                    started.method.0,
                    started.token.expose().to_owned(),
                    started.expires.as_millis(),
                ))
            }
            Admin::SecurityKeyStart { tenant, user } => {
                let started = e.security_key_start(tenant.0, user.0, now).map_err(err)?;
                Ok(OwnedReply::KeyOptions(
                    started.options,
                    started.expires.as_millis(),
                ))
            }
            Admin::SecurityKeyFinish {
                tenant,
                user,
                response,
            } => {
                let id = e
                    .security_key_finish(tenant.0, user.0, response.0, now)
                    .map_err(err)?;
                Ok(OwnedReply::MethodAdded(id.0))
            }
            Admin::SignIns { .. } | Admin::Audit { .. } | Admin::Backup { .. } => {
                Err("this is answered by the connection".into())
            }
        }
    }
}

fn totp_spec(algorithm: u8, digits: u8, period: u16) -> Result<TotpSpec, String> {
    Ok(TotpSpec {
        algorithm: match algorithm {
            1 => Algorithm::Sha1,
            2 => Algorithm::Sha256,
            3 => Algorithm::Sha512,
            _ => return Err("algorithm must be 1 (SHA-1), 2 (SHA-256) or 3 (SHA-512)".into()),
        },
        digits: Digits::new(digits).ok_or("digits must be 6, 7 or 8")?,
        period: u32::from(period),
    })
}

fn forbidden(id: u32) -> Owned {
    Owned::Error(
        id,
        ErrorCode::Forbidden,
        "decisions need a frontend certificate".into(),
    )
}

const NO_STORE: &str = "this server keeps its state in memory: there is no durable store (and no audit trail) to read or back up";
const SHARED_BACKUP: &str = "this server keeps its state in the shared store: back up Redis with its own persistence (and keep the master key apart from it)";

/// What an operation names: its name for the audit trail, tenant, user and method.
fn target<'a>(a: &Admin<'a>) -> (&'static str, &'a str, &'a str, Option<u32>) {
    use Admin as A;
    use portvakt_wire::admin::Name;
    let tu = |op, t: &Name<'a>, u: &Name<'a>| (op, t.0, u.0, None);
    let tum = |op, t: &Name<'a>, u: &Name<'a>, m: &u32| (op, t.0, u.0, Some(*m));
    match a {
        A::AddUser { tenant, user, .. } => tu("add-user", tenant, user),
        A::RemoveUser { tenant, user } => tu("remove-user", tenant, user),
        A::SetGroups { tenant, user, .. } => tu("set-groups", tenant, user),
        A::SetPasswordless { tenant, user, .. } => tu("set-passwordless", tenant, user),
        A::SetMfaOptOut { tenant, user, .. } => tu("set-mfa-opt-out", tenant, user),
        A::EnrollTotp { tenant, user, .. } => tu("enroll-totp", tenant, user),
        A::ImportTotp { tenant, user, .. } => tu("import-totp", tenant, user),
        A::AddHotp { tenant, user, .. } => tu("add-hotp", tenant, user),
        A::AddPhone { tenant, user, .. } => tu("add-phone", tenant, user),
        A::AddEmail { tenant, user, .. } => tu("add-email", tenant, user),
        A::AddSecurityKey { tenant, user } => tu("add-security-key", tenant, user),
        A::EnrollPush { tenant, user } => tu("enroll-push", tenant, user),
        A::SecurityKeyStart { tenant, user } => tu("security-key-start", tenant, user),
        A::SecurityKeyFinish { tenant, user, .. } => tu("security-key-finish", tenant, user),
        A::SetSecurityQuestions { tenant, user, .. } => tu("set-security-questions", tenant, user),
        A::ConfirmOtp {
            tenant,
            user,
            method,
            ..
        } => tum("confirm-otp", tenant, user, method),
        A::StartConfirmation {
            tenant,
            user,
            method,
        } => tum("start-confirmation", tenant, user, method),
        A::ConfirmSent {
            tenant,
            user,
            method,
            ..
        } => tum("confirm-sent", tenant, user, method),
        A::RemoveMethod {
            tenant,
            user,
            method,
        } => tum("remove-method", tenant, user, method),
        A::RemoveAllMethods { tenant, user } => tu("remove-all-methods", tenant, user),
        A::SetDefaultMethod {
            tenant,
            user,
            method,
        } => tum("set-default-method", tenant, user, method),
        A::Unlock { tenant, user } => tu("unlock", tenant, user),
        A::ResetDrift {
            tenant,
            user,
            method,
        } => tum("reset-drift", tenant, user, method),
        A::CreateAppPassword { tenant, user, .. } => tu("create-app-password", tenant, user),
        A::RevokeAppPassword { tenant, user, .. } => tu("revoke-app-password", tenant, user),
        A::RevokeDevices { tenant, user, .. } => tu("revoke-devices", tenant, user),
        A::UserInfo { tenant, user } => tu("user-info", tenant, user),
        A::ReloadPolicy {} => ("reload-policy", "", "", None),
        A::SignIns { tenant, user, .. } => ("sign-ins", tenant.0, user.0, None),
        A::Audit { tenant, user, .. } => ("audit", tenant.0, user.0, None),
        A::Backup { .. } => ("backup", "", "", None),
    }
}

/// Sets the event's outcome (and a refusal's reason) from the answer.
fn settle(event: &mut Event, reply: &Owned) {
    use crate::audit::Outcome;
    match reply {
        Owned::Error(_, ErrorCode::Refused | ErrorCode::Forbidden, why) => {
            event.outcome = Outcome::Refused;
            event.detail = why.clone();
        }
        Owned::Error(_, _, why) => {
            event.outcome = Outcome::Failed;
            event.detail = why.clone();
        }
        _ => event.outcome = Outcome::Done,
    }
}

/// A page of the audit trail.
#[derive(Debug, Default)]
pub struct AuditPage {
    /// The events, in the store's bytes.
    pub events: Vec<Vec<u8>>,
    /// The cursor for the next page, if the trail may hold more.
    pub next: Option<u64>,
}

/// An audit trail query.
#[derive(Clone, Debug)]
pub struct AuditQuery {
    /// Only this organisation's events (all when empty).
    pub tenant: String,
    /// Only this user's events (all when empty).
    pub user: String,
    /// From this time (inclusive), in milliseconds since the Unix epoch.
    pub from_ms: u64,
    /// To this time (exclusive).
    pub to_ms: u64,
    /// Skip the events before this one (0: the first).
    pub cursor: u64,
    /// At most this many events.
    pub limit: usize,
}

/// What the events of one answer may take together, below the frame limit.
const AUDIT_PAGE_BYTES: usize = 12 * 1024;

/// Reads one page of the audit trail. An event that cannot be read is given as it is
/// (the reader says so), never skipped.
pub fn audit_page(trail: &crate::app::AuditTrail, q: &AuditQuery) -> Result<AuditPage, String> {
    let mut page = AuditPage::default();
    let (mut index, mut bytes) = (0u64, 0usize);
    trail.read(&mut |body| {
        let this = index;
        index += 1;
        if this < q.cursor {
            return true;
        }
        let wanted = match Event::decode(body) {
            Ok(e) => {
                (q.from_ms..q.to_ms).contains(&e.at_ms)
                    && (q.tenant.is_empty() || q.tenant == e.tenant)
                    && (q.user.is_empty() || q.user == e.user)
            }
            Err(_) => true,
        };
        if !wanted {
            return true;
        }
        if page.events.len() == q.limit || bytes + body.len() > AUDIT_PAGE_BYTES {
            page.next = Some(this);
            return false;
        }
        bytes += body.len();
        page.events.push(body.to_vec());
        true
    })?;
    Ok(page)
}

/// A request [`Service::handle`] leaves to the connection, because it reads or writes
/// files; each carries the administrator's fingerprint for the audit trail.
#[derive(Debug)]
pub enum Query {
    /// A page of the sign-in log.
    SignIns(Arc<str>, signin::Query),
    /// A page of the audit trail.
    Audit(Arc<str>, AuditQuery),
    /// A backup to this file.
    Backup(Arc<str>, PathBuf),
    /// A decision on a push approval, once the device answered (or the wait is over).
    AwaitApproval(Box<super::device::AwaitApproval>),
    /// A device's list of approvals, once there is one (or the wait is over).
    DeviceList(portvakt_core::push::DeviceRef, std::time::Duration),
}

/// An answer, owning its data until it is encoded.
pub(super) enum Owned {
    Decision(
        u32,
        portvakt_core::Decision,
        Option<(Option<[u8; 16]>, Option<portvakt_core::Delivery>)>,
    ),
    Reply(u32, OwnedReply),
    Error(u32, ErrorCode, String),
    /// Not an answer: a query for the connection to run.
    Query(u32, Query),
    /// An answer to a push device.
    Device(u32, super::device::Reply),
}

/// What [`Service::handle`] left for the connection to do.
#[derive(Debug)]
pub enum Handled {
    /// The answer is in the output buffer.
    Answered,
    /// A request with this id that reads or writes files: run it with
    /// [`Service::answer_query`].
    Query(u32, Query),
}

pub(super) enum OwnedReply {
    Done,
    UserAdded(u32),
    MethodAdded(u32),
    Enrolled(u32, String, String),
    AppPassword(u32, String),
    ConfirmationSent([u8; 16], u8, String, String, u64),
    Throttled(u32),
    Described(portvakt_core::admin::UserInfo),
    PolicyReloaded(u16),
    SignIns(signin::Page),
    Audit(AuditPage),
    BackedUp(portvakt_store::durable::BackedUp),
    PushEnrolled(u32, String, u64),
    KeyOptions(String, u64),
}

impl Owned {
    fn encode(&self, out: &mut BytesMut) {
        let written = match self {
            Self::Decision(id, d, sent) => {
                let decision = portvakt_wire::Decision {
                    outcome: d.outcome.into(),
                    reason: d.reason.as_str(),
                    rule: d.rule.as_str(),
                    location: d.location.as_str(),
                    methods: d
                        .methods
                        .iter()
                        .map(|m| portvakt_wire::MethodInfo {
                            id: m.id.0,
                            kind: m.kind.into(),
                            hint: m.hint.as_deref(),
                        })
                        .collect(),
                    retry_after_s: d
                        .retry_after
                        .map(|r| u32::try_from(r.as_secs_ceil()).unwrap_or(u32::MAX)),
                    method: d.method.map(portvakt_wire::MethodKind::from),
                    device_token: d.device_token.as_ref().map(|t| portvakt_wire::DeviceToken {
                        token: t.token.expose(),
                        expires_ms: t.expires.as_millis(),
                    }),
                    approval: d.approval.map(|a| portvakt_wire::Approval {
                        id: a.id.0,
                        number: a.number,
                        expires_ms: a.expires.as_millis(),
                    }),
                    security_key: d.security_key.as_deref(),
                };
                let frame = match sent {
                    None => Frame::Decision(*id, decision),
                    Some((challenge, delivery)) => Frame::Sent {
                        id: *id,
                        decision,
                        challenge: *challenge,
                        delivery: delivery.as_ref().map(|x| portvakt_wire::Delivery {
                            channel: x.channel.into(),
                            destination: &x.destination,
                            code: x.code.expose(),
                            expires_ms: x.expires.as_millis(),
                        }),
                    },
                };
                frame.encode(out)
            }
            Self::Reply(id, r) => {
                let groups;
                let reply = match r {
                    OwnedReply::Done => AdminReply::Done {},
                    OwnedReply::UserAdded(u) => AdminReply::UserAdded { user_id: *u },
                    OwnedReply::MethodAdded(m) => AdminReply::MethodAdded { method: *m },
                    OwnedReply::Enrolled(m, s, uri) => AdminReply::TotpEnrolled {
                        method: *m,
                        secret_base32: Str(s),
                        uri: LongStr(uri),
                    },
                    OwnedReply::AppPassword(id, pw) => AdminReply::AppPasswordCreated {
                        id: *id,
                        password: Str(pw),
                    },
                    OwnedReply::ConfirmationSent(c, ch, dest, code, exp) => {
                        AdminReply::ConfirmationSent {
                            challenge: *c,
                            channel: *ch,
                            destination: Str(dest),
                            code: Str(code),
                            expires_ms: *exp,
                        }
                    }
                    OwnedReply::Throttled(s) => {
                        AdminReply::ConfirmationThrottled { retry_after_s: *s }
                    }
                    OwnedReply::Described(info) => {
                        groups = info.groups.iter().map(String::as_str).collect::<Vec<_>>();

                        AdminReply::UserDescribed {
                            user_id: info.id.0,
                            groups: StrList(groups),
                            passwordless: info.passwordless,
                            mfa_opt_out: info.mfa_opt_out,
                            default_method: info.default_method.map(|m| m.0),
                            methods: MethodRows(
                                info.methods
                                    .iter()
                                    .map(|(id, kind, active)| MethodRow {
                                        id: id.0,
                                        kind: portvakt_wire::MethodKind::from(*kind) as u8,
                                        active: *active,
                                    })
                                    .collect(),
                            ),
                            app_passwords: AppPasswordRows(
                                info.app_passwords
                                    .iter()
                                    .map(|(id, label, created)| AppPasswordRow {
                                        id: *id,
                                        label,
                                        created_ms: created.as_millis(),
                                    })
                                    .collect(),
                            ),
                            devices: DeviceRows(
                                info.devices
                                    .iter()
                                    .map(|(id, expires)| DeviceRow {
                                        id: *id,
                                        expires_ms: expires.as_millis(),
                                    })
                                    .collect(),
                            ),
                        }
                    }
                    OwnedReply::PolicyReloaded(t) => AdminReply::PolicyReloaded { tenants: *t },
                    OwnedReply::SignIns(page) => AdminReply::SignInsFound {
                        // Bodies were checked when they were written or recovered.
                        rows: SignInRows(
                            page.rows
                                .iter()
                                .filter_map(|b| signin::decode(b).map(SignInRow::from))
                                .collect(),
                        ),
                        next: page.next,
                    },
                    OwnedReply::Audit(page) => AdminReply::AuditFound {
                        events: AuditEvents(page.events.iter().map(Vec::as_slice).collect()),
                        next: page.next,
                    },
                    OwnedReply::KeyOptions(options, expires) => AdminReply::SecurityKeyOptions {
                        options: LongStr(options),
                        expires_ms: *expires,
                    },
                    OwnedReply::PushEnrolled(method, token, expires) => AdminReply::PushEnrolled {
                        method: *method,
                        token: Str(token),
                        expires_ms: *expires,
                    },
                    OwnedReply::BackedUp(b) => AdminReply::BackedUp {
                        bytes: b.bytes,
                        files: u32::try_from(b.files).unwrap_or(u32::MAX),
                    },
                };
                Frame::AdminReply(*id, reply).encode(out)
            }
            Self::Query(..) => Ok(()),
            Self::Device(id, reply) => Frame::DeviceReply(*id, reply.to_wire()).encode(out),
            Self::Error(id, code, message) => {
                metrics::counter!(crate::metrics::FRAMES_REFUSED, "code" => code.as_str())
                    .increment(1);
                let mut end = message.len().min(portvakt_wire::MAX_MESSAGE);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                let message = message.get(..end).unwrap_or_default();
                Frame::Error {
                    id: *id,
                    code: *code,
                    message,
                }
                .encode(out)
            }
        };
        if written.is_err() {
            // A field over a wire limit (only possible for data the core produced, such as
            // a long hint): answer with an error rather than a truncated frame.
            let id = match self {
                Self::Decision(id, ..)
                | Self::Reply(id, _)
                | Self::Error(id, ..)
                | Self::Device(id, _)
                | Self::Query(id, _) => *id,
            };
            let _ = Frame::Error {
                id,
                code: ErrorCode::Internal,
                message: "the answer does not fit the protocol's limits",
            }
            .encode(out);
        }
    }
}
