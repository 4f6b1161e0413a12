//! The device's side of push approval: a reference authenticator.
//!
//! A push device is an Ed25519 key pair. [`Enrolment`] is what an administrator's
//! `enroll-push` hands the device (as a `portvakt-push://enrol?...` URI or QR code);
//! [`Authenticator::enrol`] makes a key pair and pairs it with the server. Afterwards an
//! [`Authenticator`] signs in on a connection of its own (no client certificate: the
//! device's key is its credential), lists the approvals waiting for it and answers them,
//! each answer signed over the approval, the verdict and the number typed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use portvakt_wire::device::{Device, DeviceReply};
use portvakt_wire::{Frame, Purpose};
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::{Client, ClientError};

/// The URI scheme of an enrolment.
pub const SCHEME: &str = "portvakt-push://enrol?";

/// What a device needs to pair: where the server is, whose device it becomes, and the
/// one-time token.
#[derive(Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The server's address.
    pub server: SocketAddr,
    /// The tenant.
    pub tenant: String,
    /// The user.
    pub user: String,
    /// The pending push method.
    pub method: u32,
    /// The one-time token.
    pub token: String,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment")
            .field("server", &self.server)
            .field("tenant", &self.tenant)
            .field("user", &self.user)
            .field("method", &self.method)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Enrolment {
    /// The enrolment as a URI (for a QR code).
    pub fn to_uri(&self) -> String {
        format!(
            "{SCHEME}server={}&tenant={}&user={}&method={}&token={}",
            escape(&self.server.to_string()),
            escape(&self.tenant),
            escape(&self.user),
            self.method,
            escape(&self.token),
        )
    }

    /// Reads a URI made by [`to_uri`](Self::to_uri).
    pub fn from_uri(uri: &str) -> Result<Self, String> {
        let query = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| format!("an enrolment URI starts with {SCHEME}"))?;
        let (mut server, mut tenant, mut user, mut method, mut token) =
            (None, None, None, None, None);
        for pair in query.split('&') {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            let v = unescape(v)?;
            let slot = match k {
                "server" => &mut server,
                "tenant" => &mut tenant,
                "user" => &mut user,
                "method" => &mut method,
                "token" => &mut token,
                _ => return Err(format!("unknown field {k:?}")),
            };
            if slot.replace(v).is_some() {
                return Err(format!("{k} appears twice"));
            }
        }
        let need = |v: Option<String>, k: &str| v.ok_or_else(|| format!("{k} is missing"));
        Ok(Self {
            server: need(server, "server")?
                .parse()
                .map_err(|e| format!("server: {e}"))?,
            tenant: need(tenant, "tenant")?,
            user: need(user, "user")?,
            method: need(method, "method")?
                .parse()
                .map_err(|e| format!("method: {e}"))?,
            token: need(token, "token")?,
        })
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|c| char::from(c).to_digit(16));
            let lo = bytes.next().and_then(|c| char::from(c).to_digit(16));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(u8::try_from(h * 16 + l).unwrap_or(0)),
                _ => return Err(format!("{s:?}: a % without two hex digits")),
            }
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8"))
}

/// An approval as the device is shown it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The approval's id.
    pub id: [u8; 16],
    /// When the sign-in asked, in milliseconds since the Unix epoch.
    pub issued_ms: u64,
    /// When it expires.
    pub expires_ms: u64,
    /// What for.
    pub purpose: Option<Purpose>,
    /// The named location of the sign-in's address.
    pub location: String,
}

/// What the user answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Approve, with the number the sign-in screen shows.
    Approve(u8),
    /// Refuse.
    Deny,
    /// Refuse, and say the sign-in was not the user's.
    Report,
}

/// What the server made of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Approved: the sign-in goes through.
    Approved,
    /// Refused.
    Denied,
    /// The number was not the one shown: refused and counted as a failed sign-in.
    WrongNumber,
    /// Reported: refused, and the account is locked away from trusted networks.
    Reported,
}

/// A paired push device: its identity and key.
pub struct Authenticator {
    /// The server's address.
    pub server: SocketAddr,
    /// The tenant.
    pub tenant: String,
    /// The user.
    pub user: String,
    /// The push method.
    pub method: u32,
    key: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("server", &self.server)
            .field("tenant", &self.tenant)
            .field("user", &self.user)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// A client configuration trusting the CA in `ca`, presenting no certificate (a device).
pub fn device_tls(ca: &Path) -> Result<rustls::ClientConfig, ClientError> {
    let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(crate::tls::roots(ca).map_err(|e| ClientError::Tls(e.to_string()))?)
        .with_no_client_auth();
    config.alpn_protocols = vec![portvakt_wire::ALPN.to_vec()];
    Ok(config)
}

fn refused(frame: Frame<'_>) -> ClientError {
    crate::unexpected(frame)
}

impl Authenticator {
    /// A device from its saved key (PKCS#8, as [`pkcs8`](Self::pkcs8) gives it).
    pub fn from_parts(
        server: SocketAddr,
        tenant: &str,
        user: &str,
        method: u32,
        pkcs8: &[u8],
    ) -> Result<Self, ClientError> {
        let key = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| ClientError::Tls(format!("the device key: {e}")))?;
        Ok(Self {
            server,
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            method,
            key,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// Makes a key pair and pairs it with the server (`client` has no certificate).
    pub async fn enrol(client: &Client, e: &Enrolment) -> Result<Self, ClientError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| ClientError::Tls("no key pair could be made".into()))?;
        let me = Self::from_parts(e.server, &e.tenant, &e.user, e.method, pkcs8.as_ref())?;
        let public: [u8; 32] = me
            .key
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| ClientError::Tls("an Ed25519 key of the wrong size".into()))?;
        let message = portvakt_core::push::enrol_message(
            &e.tenant,
            &e.user,
            portvakt_core::MethodId(e.method),
            &e.token,
            &public,
        );
        let request = Device::DeviceEnrol {
            tenant: portvakt_wire::admin::Str(&e.tenant),
            user: portvakt_wire::admin::Str(&e.user),
            method: e.method,
            token: portvakt_wire::admin::Str(&e.token),
            key: public,
            signature: me.sign(&message),
        };
        let answer = client.call(&Frame::Device(0, request)).await?;
        match answer.frame()? {
            Frame::DeviceReply(_, DeviceReply::DeviceDone {}) => Ok(me),
            other => Err(refused(other)),
        }
    }

    /// The key, PKCS#8: keep it where only the device's user can read it.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.key.sign(message).as_ref());
        out
    }

    /// Proves the key on `client`'s connection, which then acts as this device.
    pub async fn sign_in(&self, client: &Client) -> Result<(), ClientError> {
        let answer = client
            .call(&Frame::Device(0, Device::DeviceNonce {}))
            .await?;
        let nonce = match answer.frame()? {
            Frame::DeviceReply(_, DeviceReply::Nonce { nonce }) => nonce,
            other => return Err(refused(other)),
        };
        let message = portvakt_core::push::sign_in_message(
            &nonce,
            &self.tenant,
            &self.user,
            portvakt_core::MethodId(self.method),
        );
        let request = Device::DeviceSignIn {
            tenant: portvakt_wire::admin::Str(&self.tenant),
            user: portvakt_wire::admin::Str(&self.user),
            method: self.method,
            signature: self.sign(&message),
        };
        let answer = client.call(&Frame::Device(0, request)).await?;
        match answer.frame()? {
            Frame::DeviceReply(_, DeviceReply::DeviceDone {}) => Ok(()),
            other => Err(refused(other)),
        }
    }

    /// The approvals waiting; with `wait` above zero, waits (up to 30 s) for one.
    pub async fn pending(
        &self,
        client: &Client,
        wait: Duration,
    ) -> Result<Vec<Pending>, ClientError> {
        let wait_ms = u32::try_from(wait.as_millis())
            .unwrap_or(u32::MAX)
            .min(30_000);
        let frame = Frame::Device(0, Device::DeviceList { wait_ms });
        let answer = if wait_ms == 0 {
            client.call(&frame).await?
        } else {
            client
                .call_alone(&frame, Duration::from_millis(wait_ms.into()))
                .await?
        };
        match answer.frame()? {
            Frame::DeviceReply(_, DeviceReply::Approvals { approvals }) => Ok(approvals
                .0
                .iter()
                .map(|a| Pending {
                    id: a.id,
                    issued_ms: a.issued_ms,
                    expires_ms: a.expires_ms,
                    purpose: Purpose::from_code(a.purpose),
                    location: a.location.to_owned(),
                })
                .collect()),
            other => Err(refused(other)),
        }
    }

    /// Answers approval `id`.
    pub async fn answer(
        &self,
        client: &Client,
        id: [u8; 16],
        verdict: Verdict,
    ) -> Result<Outcome, ClientError> {
        let (v, number) = match verdict {
            Verdict::Approve(n) => (portvakt_core::push::Verdict::Approve, n),
            Verdict::Deny => (portvakt_core::push::Verdict::Deny, 0),
            Verdict::Report => (portvakt_core::push::Verdict::Report, 0),
        };
        let message =
            portvakt_core::push::answer_message(&portvakt_core::ChallengeId(id), v, number);
        let request = Device::DeviceAnswer {
            approval: id,
            verdict: v.code(),
            number,
            signature: self.sign(&message),
        };
        let answer = client.call(&Frame::Device(0, request)).await?;
        match answer.frame()? {
            Frame::DeviceReply(_, DeviceReply::Answered { result }) => Ok(match result {
                1 => Outcome::Approved,
                3 => Outcome::WrongNumber,
                4 => Outcome::Reported,
                _ => Outcome::Denied,
            }),
            other => Err(refused(other)),
        }
    }
}

/// Connects to `server` as a device (no client certificate), trusting the CA in `ca`.
pub async fn connect(server: SocketAddr, ca: &Path) -> Result<Client, ClientError> {
    Client::builder(server, device_tls(ca)?)
        .streams(1)
        .connect()
        .await
}
