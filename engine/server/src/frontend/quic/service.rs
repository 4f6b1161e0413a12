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
use portvakt_core::{Engine, MethodId, Timestamp};
use portvakt_wire::admin::{
    AppPasswordRow, AppPasswordRows, DeviceRow, DeviceRows, LongStr, MethodRow, MethodRows,
    SignInRow, SignInRows, Str, StrList,
};
use portvakt_wire::{Admin, AdminReply, ErrorCode, Frame};

use crate::app::{App, Clock};
use crate::signin::{self, SignInLog};

/// What a connection's client certificate allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Decisions and sent codes.
    Frontend,
    /// Everything, administrator operations included.
    Admin,
}

/// Why an administrator operation failed: `refused` with the directory's reason, or
/// `internal` when the state store failed (the operation may be retried).
struct AdminError(ErrorCode, String);

impl From<DirectoryError> for AdminError {
    fn from(d: DirectoryError) -> Self {
        match d {
            DirectoryError::Store(e) => Self(ErrorCode::Internal, e.to_string()),
            other => Self(ErrorCode::Refused, other.to_string()),
        }
    }
}

impl From<String> for AdminError {
    fn from(message: String) -> Self {
        Self(ErrorCode::Refused, message)
    }
}

impl From<&str> for AdminError {
    fn from(message: &str) -> Self {
        Self(ErrorCode::Refused, message.to_owned())
    }
}

/// The request handler shared by all connections: the frames of Portvakt's protocol over
/// the frontend-neutral [`App`].
pub struct Service {
    app: App,
}

impl Service {
    /// A service over `engine` on the system clock; `policy_file` is what `reload policy`
    /// reads.
    pub fn new(engine: Arc<Engine>, policy_file: Option<PathBuf>) -> Self {
        Self {
            app: App::new(engine, policy_file),
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

    /// Answers one whole frame (length prefix included), appending the answer to `out`
    /// and, for a decision, its sign-in record to `records` (for [`SignInLog::submit`]).
    /// A sign-in log query is not answered here, since it reads files: it is returned for
    /// [`Service::answer_query`].
    pub fn handle(
        &self,
        role: Role,
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

    /// Answers a sign-in log query returned by [`Service::handle`]: reads the page (off
    /// the async runtime's threads) and appends the answer. Every answer already sent had
    /// its record written first, so the page holds them.
    pub async fn answer_query(&self, id: u32, query: signin::Query, out: &mut BytesMut) {
        let reply = match self.app.sign_in_log() {
            None => Owned::Error(
                id,
                ErrorCode::Refused,
                "this server keeps no sign-in log".into(),
            ),
            Some(log) => {
                let log = log.clone();
                let page = tokio::task::spawn_blocking(move || log.query(&query))
                    .await
                    .map_err(|_| signin::LogError::Closed)
                    .and_then(|page| page);
                match page {
                    Ok(page) => Owned::Reply(id, OwnedReply::SignIns(page)),
                    Err(e) => Owned::Error(id, ErrorCode::Internal, e.to_string()),
                }
            }
        };
        reply.encode(out);
    }

    fn answer(
        &self,
        role: Role,
        request: Frame<'_>,
        now: Timestamp,
        records: &mut BytesMut,
    ) -> Owned {
        match request {
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
                let decision = self.app.decide(&request, now, records);
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
                let sent = self.app.send_code(&request, now, records);
                Owned::Decision(
                    id,
                    sent.decision,
                    Some((sent.challenge.map(|c| c.0), sent.delivery)),
                )
            }
            Frame::Admin(id, a) => match role {
                Role::Admin => match a {
                    Admin::SignIns {
                        tenant,
                        user,
                        from_ms,
                        to_ms,
                        cursor,
                        limit,
                    } => Owned::Query(
                        id,
                        signin::Query {
                            tenant: tenant.0.to_owned(),
                            user: user.0.to_owned(),
                            from_ms,
                            to_ms,
                            cursor,
                            limit: usize::from(limit),
                        },
                    ),
                    a => match self.admin(a, now) {
                        Ok(reply) => Owned::Reply(id, reply),
                        Err(AdminError(code, message)) => Owned::Error(id, code, message),
                    },
                },
                Role::Frontend => Owned::Error(
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
            Admin::SignIns { .. } => Err("the sign-in log is read by the connection".into()),
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

/// An answer, owning its data until it is encoded.
enum Owned {
    Decision(
        u32,
        portvakt_core::Decision,
        Option<(Option<[u8; 16]>, Option<portvakt_core::Delivery>)>,
    ),
    Reply(u32, OwnedReply),
    Error(u32, ErrorCode, String),
    /// Not an answer: a query for the connection to run.
    Query(u32, signin::Query),
}

/// What [`Service::handle`] left for the connection to do.
#[derive(Debug)]
pub enum Handled {
    /// The answer is in the output buffer.
    Answered,
    /// A sign-in log query with this id: run it with [`Service::answer_query`].
    Query(u32, signin::Query),
}

enum OwnedReply {
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
                };
                Frame::AdminReply(*id, reply).encode(out)
            }
            Self::Query(..) => Ok(()),
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
