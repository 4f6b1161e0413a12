//! Push devices on the QUIC endpoint, and frontends waiting on their answers.
//!
//! A connection without a client certificate is a device's: it may pair (with the token an
//! administrator's enrolment gave it), and then prove its key over a nonce this connection
//! chose, once, after which it acts as that device. Every answer is signed again over the
//! approval it answers, so a connection that proved one device can answer only that
//! device's approvals, and only as the device's key says. The rules are the core's
//! (`portvakt_core::push`).

use std::net::IpAddr;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;
use portvakt_core::push::{self, Answered, DeviceRef, PendingApproval, PushError, Verdict};
use portvakt_core::{ChallengeId, MethodId, Timestamp};
use portvakt_wire::device::{ApprovalRow, ApprovalRows};
use portvakt_wire::{Device, DeviceReply, ErrorCode};

use super::service::{Owned, Query, Role, Service};
use crate::audit::Event;

/// How long a nonce may be signed.
const NONCE_TTL: portvakt_core::Duration = portvakt_core::Duration::from_secs(60);
/// The longest a device's list request waits.
const MAX_LIST_WAIT: Duration = Duration::from_secs(30);

/// A device connection's state: the nonce it was given, and the device it proved to be.
#[derive(Debug, Default)]
pub struct Session {
    state: Mutex<SessionState>,
}

#[derive(Debug, Default)]
struct SessionState {
    nonce: Option<([u8; push::NONCE_LEN], Timestamp)>,
    device: Option<DeviceRef>,
}

/// A frontend's request for an approval's outcome, owned so it can wait.
#[derive(Debug)]
pub struct AwaitApproval {
    tenant: String,
    user: String,
    ip: IpAddr,
    purpose: portvakt_wire::Purpose,
    first_factor: portvakt_wire::FirstFactor,
    device_token: Option<String>,
    remember_device: bool,
    approval: [u8; 16],
    wait: Duration,
}

impl AwaitApproval {
    pub(super) fn new(d: &portvakt_wire::Decide<'_>, approval: [u8; 16], wait_ms: u32) -> Self {
        Self {
            tenant: d.tenant.to_owned(),
            user: d.user.to_owned(),
            ip: d.ip,
            purpose: d.purpose,
            first_factor: d.first_factor,
            device_token: d.device_token.map(str::to_owned),
            remember_device: d.remember_device,
            approval,
            wait: Duration::from_millis(wait_ms.into()),
        }
    }
}

/// An answer to a device, owned.
#[derive(Debug)]
pub(super) enum Reply {
    /// Paired, or signed in.
    Done,
    /// The nonce to sign.
    Nonce([u8; push::NONCE_LEN]),
    /// The approvals waiting.
    Approvals(Vec<PendingApproval>),
    /// What an answer did.
    Answered(Answered),
}

impl Reply {
    pub(super) fn to_wire(&self) -> DeviceReply<'_> {
        match self {
            Self::Done => DeviceReply::DeviceDone {},
            Self::Nonce(nonce) => DeviceReply::Nonce { nonce: *nonce },
            Self::Approvals(list) => DeviceReply::Approvals {
                approvals: ApprovalRows(
                    list.iter()
                        .take(portvakt_wire::device::MAX_APPROVALS)
                        .map(|a| ApprovalRow {
                            id: a.id.0,
                            issued_ms: a.issued.as_millis(),
                            expires_ms: a.expires.as_millis(),
                            purpose: portvakt_wire::Purpose::from(a.purpose) as u8,
                            location: &a.location,
                        })
                        .collect(),
                ),
            },
            Self::Answered(a) => DeviceReply::Answered {
                result: match a {
                    Answered::Approved => 1,
                    Answered::Denied => 2,
                    Answered::WrongNumber => 3,
                    Answered::Reported => 4,
                },
            },
        }
    }
}

fn refused(id: u32, e: &PushError) -> Owned {
    let code = match e {
        PushError::Store(_) => ErrorCode::Internal,
        PushError::Malformed(_) => ErrorCode::Malformed,
        _ => ErrorCode::Refused,
    };
    Owned::Error(id, code, e.to_string())
}

impl Service {
    /// Answers one device frame.
    pub(super) fn device(
        &self,
        id: u32,
        role: &Role,
        request: Device<'_>,
        now: Timestamp,
    ) -> Owned {
        let Role::Device(session) = role else {
            return Owned::Error(
                id,
                ErrorCode::Forbidden,
                "device frames come from connections without a certificate".into(),
            );
        };
        let engine = self.app().engine();
        match request {
            Device::DeviceEnrol {
                tenant,
                user,
                method,
                token,
                key,
                signature,
            } => {
                let pairing = push::Pairing {
                    tenant: tenant.0,
                    user: user.0,
                    method: MethodId(method),
                    token: token.0,
                    key: &key,
                    signature: &signature,
                };
                let paired = engine.pair_push(&pairing, now);
                let mut event = Event::about("push-device", "pair-push", tenant.0, user.0, now);
                event.method = Some(method);
                match paired {
                    Ok(()) => {
                        self.app().audit(&event);
                        Owned::Device(id, Reply::Done)
                    }
                    Err(e) => refused(id, &e),
                }
            }
            Device::DeviceNonce {} => {
                let mut nonce = [0u8; push::NONCE_LEN];
                portvakt_core::secret::Entropy::fill(&crate::entropy::OsEntropy, &mut nonce);
                session.state.lock().nonce = Some((nonce, now + NONCE_TTL));
                Owned::Device(id, Reply::Nonce(nonce))
            }
            Device::DeviceSignIn {
                tenant,
                user,
                method,
                signature,
            } => {
                // A nonce is signed once: taken whether the signature holds or not.
                let nonce = session.state.lock().nonce.take();
                let Some((nonce, _)) = nonce.filter(|(_, until)| now < *until) else {
                    return refused(id, &PushError::NotPaired);
                };
                match engine.device_sign_in(tenant.0, user.0, MethodId(method), &nonce, &signature)
                {
                    Ok(device) => {
                        session.state.lock().device = Some(device);
                        Owned::Device(id, Reply::Done)
                    }
                    Err(e) => refused(id, &e),
                }
            }
            Device::DeviceList { wait_ms } => {
                let Some(device) = session.state.lock().device.clone() else {
                    return not_signed_in(id);
                };
                let wait = Duration::from_millis(wait_ms.into()).min(MAX_LIST_WAIT);
                if wait.is_zero() {
                    return match engine.pending_approvals(&device, now) {
                        Ok(list) => Owned::Device(id, Reply::Approvals(list)),
                        Err(e) => refused(id, &e),
                    };
                }
                Owned::Query(id, Query::DeviceList(device, wait))
            }
            Device::DeviceAnswer {
                approval,
                verdict,
                number,
                signature,
            } => {
                let Some(device) = session.state.lock().device.clone() else {
                    return not_signed_in(id);
                };
                let Some(verdict) = Verdict::from_code(verdict) else {
                    return refused(id, &PushError::Malformed("verdict must be 1, 2 or 3"));
                };
                let approval = ChallengeId(approval);
                let answered =
                    engine.answer_approval(&device, approval, verdict, number, &signature, now);
                if answered.is_ok() {
                    self.app().approvals().answered();
                }
                if let Ok(Answered::Reported) = answered {
                    let mut event = Event::about(
                        "push-device",
                        "report-suspicious",
                        &device.tenant,
                        &device.user,
                        now,
                    );
                    event.method = Some(device.method.0);
                    event.detail = format!(
                        "approval {} reported as not started by the user; locked away from trusted networks",
                        approval.to_hex()
                    );
                    self.app().audit(&event);
                }
                match answered {
                    Ok(a) => Owned::Device(id, Reply::Answered(a)),
                    Err(e) => refused(id, &e),
                }
            }
        }
    }

    /// Waits for a device's list to have an approval, then answers it.
    pub(super) async fn device_list(&self, id: u32, device: &DeviceRef, wait: Duration) -> Owned {
        let deadline = tokio::time::Instant::now() + wait;
        let app = self.app();
        let listed = app
            .approvals()
            .until_listed(app.engine(), device, || app.now(), deadline)
            .await;
        match listed {
            Ok(list) => Owned::Device(id, Reply::Approvals(list)),
            Err(e) => refused(id, &e),
        }
    }

    /// Waits for the device to answer an approval, then decides the sign-in with it.
    pub(super) async fn await_approval(
        &self,
        id: u32,
        w: AwaitApproval,
        records: &mut BytesMut,
    ) -> Owned {
        let app = self.app();
        let deadline = tokio::time::Instant::now() + w.wait;
        let approval = ChallengeId(w.approval);
        app.approvals()
            .until_answered(app.engine(), approval, || app.now(), deadline)
            .await;
        let hex = approval.to_hex();
        let request = portvakt_core::Request {
            tenant: &w.tenant,
            user: &w.user,
            ip: w.ip,
            purpose: w.purpose.into(),
            first_factor: w.first_factor.into(),
            proof: Some(portvakt_core::Proof::Push(&hex)),
            device_token: w.device_token.as_deref(),
            remember_device: w.remember_device,
        };
        let decision = app.decide_now(crate::app::Frontend::Quic, &request, records);
        Owned::Decision(id, decision, None)
    }
}

fn not_signed_in(id: u32) -> Owned {
    Owned::Error(
        id,
        ErrorCode::Refused,
        "sign the device in first (device_nonce, then device_sign_in)".into(),
    )
}
