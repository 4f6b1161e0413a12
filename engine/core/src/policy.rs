//! Policy: tenants, named network locations and ordered rules, compiled and immutable.
//!
//! A [`Policy`] is built from a configuration file ([`crate::config`]) and never changes;
//! a reload builds a new one and swaps it in whole, so a decision in flight sees exactly
//! one policy from start to end.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::lockout::LockoutConfig;
use crate::name::Name;
use crate::net::PrefixTable;
use crate::time::Duration;
use crate::window::Rate;

/// Why a sign-in is attempted; methods and rules are chosen by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// An interactive sign-in.
    SignIn,
    /// Self-service password reset.
    PasswordReset,
    /// A legacy client (IMAP/POP, old Office) that cannot do two-step verification.
    LegacyProtocol,
}

impl Purpose {
    /// All purposes.
    pub const ALL: [Self; 3] = [Self::SignIn, Self::PasswordReset, Self::LegacyProtocol];

    pub(crate) fn bit(self) -> u8 {
        match self {
            Self::SignIn => 1,
            Self::PasswordReset => 2,
            Self::LegacyProtocol => 4,
        }
    }

    /// The name used in configuration and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::PasswordReset => "password_reset",
            Self::LegacyProtocol => "legacy_protocol",
        }
    }
}

/// What a matching rule requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// The first factor is enough.
    SingleFactor,
    /// A second factor is required.
    SecondFactor,
    /// The attempt is refused.
    Block,
}

/// The location an address falls in: a named one, or none of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// In the tenant's location with this index.
    Named(u16),
    /// In no named location.
    Elsewhere,
}

/// A named network location.
#[derive(Clone, Debug)]
pub struct Location {
    /// Its name.
    pub name: Name,
    /// Whether failures from here are counted as familiar (a trusted network).
    pub trusted: bool,
}

/// One policy rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its name, reported in every decision it makes.
    pub name: Name,
    /// Matches users in any of these groups; `None` matches everyone.
    pub groups: Option<Box<[Name]>>,
    /// Matches addresses in any of these places; `None` matches everywhere.
    pub places: Option<Box<[Place]>>,
    /// Bit set of [`Purpose`]s matched.
    pub(crate) purposes: u8,
    /// What the rule requires.
    pub require: Requirement,
    /// Whether a remembered device may stand in for the second factor.
    pub trusted_devices: bool,
}

impl Rule {
    fn matches(&self, groups: &[Name], place: Place, purpose: Purpose) -> bool {
        self.purposes & purpose.bit() != 0
            && self.places.as_ref().is_none_or(|p| p.contains(&place))
            && self
                .groups
                .as_ref()
                .is_none_or(|g| g.iter().any(|x| groups.contains(x)))
    }

    /// Whether the rule applies to `purpose`.
    pub fn covers(&self, purpose: Purpose) -> bool {
        self.purposes & purpose.bit() != 0
    }
}

/// Push approval settings of a tenant: how long an approval waits for its answer, and
/// how many a user can be sent (fatigue protection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushSettings {
    /// How long an approval waits for the device's answer.
    pub ttl: Duration,
    /// Approvals waiting for an answer at once, per user.
    pub max_pending: u8,
    /// Approvals sent to one user.
    pub per_user: Rate,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(120),
            max_pending: 3,
            per_user: Rate {
                max: 10,
                per: Duration::from_secs(900),
            },
        }
    }
}

/// SMS and voice settings of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhoneSettings {
    /// How long an issued code is valid.
    pub code_ttl: Duration,
    /// Code length.
    pub digits: u8,
    /// Wrong codes one challenge tolerates before it is spent.
    pub max_attempts: u8,
    /// Codes sent to one user.
    pub per_user: Rate,
    /// Codes sent to one phone number.
    pub per_number: Rate,
    /// Codes sent for the whole tenant.
    pub per_tenant: Rate,
    /// Failed phone-code verifications by one user before phone methods are blocked.
    pub failures: Rate,
    /// How long phone methods stay blocked after that.
    pub block_for: Duration,
}

impl Default for PhoneSettings {
    fn default() -> Self {
        Self {
            code_ttl: Duration::from_secs(300),
            digits: 6,
            max_attempts: 3,
            per_user: Rate {
                max: 5,
                per: Duration::from_secs(900),
            },
            per_number: Rate {
                max: 5,
                per: Duration::from_secs(900),
            },
            per_tenant: Rate {
                max: 10_000,
                per: Duration::from_secs(3600),
            },
            failures: Rate {
                max: 5,
                per: Duration::from_secs(3600),
            },
            block_for: Duration::from_secs(3600),
        }
    }
}

/// Engine-wide settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// TOTP steps accepted either side of the (drift-corrected) current step.
    pub totp_window: u32,
    /// The largest clock drift, in steps, that is learned and followed.
    pub totp_max_drift: u32,
    /// HOTP counters accepted past the expected one.
    pub hotp_look_ahead: u32,
    /// How far past the expected counter two consecutive codes may resynchronise a token.
    pub hotp_resync_limit: u32,
    /// Lockout parameters.
    pub lockout: LockoutConfig,
    /// Failures from one unfamiliar source (IPv4 address or IPv6 /64) over any user.
    pub source_failures: Rate,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            totp_window: 1,
            totp_max_drift: 2,
            hotp_look_ahead: 10,
            hotp_resync_limit: 1000,
            lockout: LockoutConfig::default(),
            source_failures: Rate {
                max: 100,
                per: Duration::from_secs(600),
            },
        }
    }
}

/// One tenant's policy.
#[derive(Clone, Debug)]
pub struct TenantPolicy {
    /// The tenant's name.
    pub name: Name,
    /// Security defaults: two-step verification is required and users cannot opt out.
    pub require_mfa: bool,
    /// How many active methods each user must register (0 = none required).
    pub required_methods: u8,
    /// How long a remembered device skips the second factor; zero disables remembering.
    pub trusted_device_ttl: Duration,
    /// Whether users may create app passwords for legacy clients.
    pub app_passwords: bool,
    /// SMS and voice settings.
    pub phone: PhoneSettings,
    /// Push approval settings.
    pub push: PushSettings,
    /// The security keys' relying party.
    pub webauthn: crate::webauthn::RelyingParty,
    /// Named locations; [`Place::Named`] indexes this.
    pub locations: Vec<Location>,
    table: PrefixTable<u16>,
    /// Rules in order; the first match wins.
    pub rules: Vec<Rule>,
    /// The rule that applies when none matches.
    pub default_rule: Rule,
    /// Off by default. When on, a sign-in the rule allows with the password alone, on a
    /// trusted network, by a known user with every required method registered, is allowed
    /// while the state store cannot be reached (reason `allowed_without_store`), without
    /// its lockout check: a user locked out for wrong passwords could then sign in there.
    /// Everything else still fails closed.
    pub single_factor_without_store: bool,
}

impl TenantPolicy {
    /// Builds a tenant policy from parts already validated by [`crate::config`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: Name,
        require_mfa: bool,
        required_methods: u8,
        trusted_device_ttl: Duration,
        app_passwords: bool,
        phone: PhoneSettings,
        locations: Vec<Location>,
        table: PrefixTable<u16>,
        rules: Vec<Rule>,
        default_rule: Rule,
    ) -> Self {
        Self {
            name,
            require_mfa,
            required_methods,
            trusted_device_ttl,
            app_passwords,
            phone,
            push: PushSettings::default(),
            webauthn: crate::webauthn::RelyingParty {
                id: "localhost".into(),
                name: name.as_str().into(),
                origins: vec!["https://localhost".into()],
            },
            locations,
            table,
            rules,
            default_rule,
            single_factor_without_store: false,
        }
    }

    /// Where `ip` is.
    pub fn place(&self, ip: IpAddr) -> Place {
        self.table.get(ip).map_or(Place::Elsewhere, Place::Named)
    }

    /// The name of a place (`"elsewhere"` for none).
    pub fn place_name(&self, place: Place) -> Name {
        match place {
            Place::Named(i) => self
                .locations
                .get(usize::from(i))
                .map_or_else(elsewhere, |l| l.name),
            Place::Elsewhere => elsewhere(),
        }
    }

    /// Whether failures from `place` count as familiar.
    pub fn is_familiar(&self, place: Place) -> bool {
        match place {
            Place::Named(i) => self
                .locations
                .get(usize::from(i))
                .is_some_and(|l| l.trusted),
            Place::Elsewhere => false,
        }
    }

    /// The first rule matching, or the default rule.
    pub fn rule_for(&self, groups: &[Name], place: Place, purpose: Purpose) -> &Rule {
        self.rules
            .iter()
            .find(|r| r.matches(groups, place, purpose))
            .unwrap_or(&self.default_rule)
    }
}

/// The name reported for an address in no named location.
pub fn elsewhere() -> Name {
    static ELSEWHERE: std::sync::OnceLock<Name> = std::sync::OnceLock::new();
    *ELSEWHERE.get_or_init(|| Name::builtin("elsewhere"))
}

/// A complete, validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Engine-wide settings.
    pub settings: Settings,
    tenants: Vec<TenantPolicy>,
    by_name: HashMap<Box<str>, usize, ahash::RandomState>,
}

impl Policy {
    pub(crate) fn new(settings: Settings, tenants: Vec<TenantPolicy>) -> Self {
        let by_name = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (Box::from(t.name.as_str()), i))
            .collect();
        Self {
            settings,
            tenants,
            by_name,
        }
    }

    /// The tenant called `name`, looked up without interning (request input is untrusted).
    pub fn tenant(&self, name: &str) -> Option<&TenantPolicy> {
        self.by_name.get(name).and_then(|&i| self.tenants.get(i))
    }

    /// All tenants.
    pub fn tenants(&self) -> &[TenantPolicy] {
        &self.tenants
    }
}
