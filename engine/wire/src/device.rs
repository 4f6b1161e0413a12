//! Push-device frames: what the authenticator app sends and is answered.
//!
//! A device pairs once (`DeviceEnrol`, with the token an administrator's enrolment gave
//! it). On each connection it then proves its key over a nonce the server chose
//! (`DeviceNonce`, `DeviceSignIn`), after which it may list the approvals waiting for it
//! (`DeviceList`, which can wait for one) and answer them (`DeviceAnswer`, signed over the
//! approval's id, the verdict and the number typed). `docs/protocol.md` has the byte
//! layout and the signed messages.

use crate::admin::{Field, Name, Str, too_long};
use crate::codec::{DecodeError, Reader, Writer};
use crate::frame::EncodeError;

/// An approval as the device is shown it (never the number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovalRow<'a> {
    /// The approval's id, to answer it.
    pub id: [u8; 16],
    /// When the sign-in asked, in milliseconds since the Unix epoch.
    pub issued_ms: u64,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
    /// What for (a purpose code).
    pub purpose: u8,
    /// The named location of the sign-in's address (`elsewhere` for none).
    pub location: &'a str,
}

/// The most approvals one answer lists.
pub const MAX_APPROVALS: usize = 5;

/// At most [`MAX_APPROVALS`] approval rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRows<'a>(pub Vec<ApprovalRow<'a>>);

impl<'a> Field<'a> for ApprovalRows<'a> {
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        r.list(field, MAX_APPROVALS, |r| {
            Ok(ApprovalRow {
                id: r.array(field)?,
                issued_ms: r.u64(field)?,
                expires_ms: r.u64(field)?,
                purpose: r.u8(field)?,
                location: r.str8(field, 128)?,
            })
        })
        .map(ApprovalRows)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.list(&self.0, |w, a| {
            w.raw(&a.id);
            w.u64(a.issued_ms);
            w.u64(a.expires_ms);
            w.u8(a.purpose);
            w.str8(a.location);
        });
    }
    fn check(&self, field: &'static str) -> Result<(), EncodeError> {
        too_long(field, self.0.len(), MAX_APPROVALS)?;
        self.0
            .iter()
            .try_for_each(|a| too_long(field, a.location.len(), 128))
    }
}

messages! {
    /// Push-device requests (client → server). A connection without a client certificate
    /// may send only these.
    Device {
        /// Pairs a push device: its Ed25519 public key, signed by that key over the
        /// enrolment message (which includes the one-time token).
        0x30 DeviceEnrol { tenant: Name<'a>, user: Name<'a>, method: u32, token: Str<'a, 64>, key: [u8; 32], signature: [u8; 64] }
        /// Asks for a nonce to sign (one per connection at a time; it expires in a minute).
        0x31 DeviceNonce {}
        /// Proves the device's key over the nonce: the connection then acts as this device.
        0x32 DeviceSignIn { tenant: Name<'a>, user: Name<'a>, method: u32, signature: [u8; 64] }
        /// Lists the approvals waiting for this device; with `wait_ms` above 0, waits (up
        /// to 30 s) until there is one.
        0x33 DeviceList { wait_ms: u32 }
        /// Answers an approval: verdict 1 approve (with the number typed), 2 deny, 3 report
        /// suspicious; signed over the approval id, verdict and number.
        0x34 DeviceAnswer { approval: [u8; 16], verdict: u8, number: u8, signature: [u8; 64] }
    }
}

messages! {
    /// Answers to push-device requests (server → client).
    DeviceReply {
        /// Done: paired, or signed in.
        0xb0 DeviceDone {}
        /// The nonce to sign.
        0xb1 Nonce { nonce: [u8; 32] }
        /// The approvals waiting, oldest first.
        0xb2 Approvals { approvals: ApprovalRows<'a> }
        /// What the answer did: 1 approved, 2 denied, 3 wrong number (counted as a failed
        /// sign-in), 4 reported (the account is locked away from trusted networks).
        0xb3 Answered { result: u8 }
    }
}
