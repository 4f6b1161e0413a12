//! Conversions between the core's types and the protocol's, in one place (feature
//! `core`): the protocol's codes are its own, so a change in either crate shows here.

use portvakt_core::directory::MethodKind as CoreKind;

use crate::{MethodKind, Outcome, Purpose};

impl From<Purpose> for portvakt_core::Purpose {
    fn from(p: Purpose) -> Self {
        match p {
            Purpose::SignIn => Self::SignIn,
            Purpose::PasswordReset => Self::PasswordReset,
            Purpose::LegacyProtocol => Self::LegacyProtocol,
        }
    }
}

impl From<portvakt_core::Purpose> for Purpose {
    fn from(p: portvakt_core::Purpose) -> Self {
        match p {
            portvakt_core::Purpose::SignIn => Self::SignIn,
            portvakt_core::Purpose::PasswordReset => Self::PasswordReset,
            portvakt_core::Purpose::LegacyProtocol => Self::LegacyProtocol,
        }
    }
}

impl From<crate::FirstFactor> for portvakt_core::FirstFactor {
    fn from(f: crate::FirstFactor) -> Self {
        match f {
            crate::FirstFactor::Ok => Self::Ok,
            crate::FirstFactor::Failed => Self::Failed,
            crate::FirstFactor::None => Self::None,
        }
    }
}

impl From<CoreKind> for MethodKind {
    fn from(k: CoreKind) -> Self {
        match k {
            CoreKind::AuthenticatorApp => Self::AuthenticatorApp,
            CoreKind::HardwareToken => Self::HardwareToken,
            CoreKind::Sms => Self::Sms,
            CoreKind::Voice => Self::Voice,
            CoreKind::SecurityKey => Self::SecurityKey,
            CoreKind::Email => Self::Email,
            CoreKind::SecurityQuestions => Self::SecurityQuestions,
            CoreKind::Push => Self::Push,
        }
    }
}

impl From<portvakt_core::Outcome> for Outcome {
    fn from(o: portvakt_core::Outcome) -> Self {
        match o {
            portvakt_core::Outcome::Allow => Self::Allow,
            portvakt_core::Outcome::Deny => Self::Deny,
            portvakt_core::Outcome::Challenge => Self::Challenge,
            portvakt_core::Outcome::Locked => Self::Locked,
            portvakt_core::Outcome::Register => Self::Register,
            portvakt_core::Outcome::Throttled => Self::Throttled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_maps_to_the_one_of_the_same_name() {
        for p in portvakt_core::Purpose::ALL {
            let w = Purpose::from(p);
            assert_eq!(w.as_str(), p.as_str());
            assert_eq!(portvakt_core::Purpose::from(w), p);
        }
        for w in MethodKind::ALL {
            let k = [
                CoreKind::AuthenticatorApp,
                CoreKind::HardwareToken,
                CoreKind::Sms,
                CoreKind::Voice,
                CoreKind::SecurityKey,
                CoreKind::Email,
                CoreKind::SecurityQuestions,
                CoreKind::Push,
            ]
            .iter()
            .find(|k| MethodKind::from(**k) == *w)
            .unwrap_or_else(|| panic!("no core kind for {w:?}"));
            assert_eq!(w.as_str(), k.as_str());
        }
        for w in Outcome::ALL {
            let o = [
                portvakt_core::Outcome::Allow,
                portvakt_core::Outcome::Deny,
                portvakt_core::Outcome::Challenge,
                portvakt_core::Outcome::Locked,
                portvakt_core::Outcome::Register,
                portvakt_core::Outcome::Throttled,
            ]
            .into_iter()
            .find(|o| Outcome::from(*o) == *w)
            .unwrap_or_else(|| panic!("no core outcome for {w:?}"));
            assert_eq!(w.as_str(), o.as_str());
        }
    }
}
