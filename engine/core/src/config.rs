//! The policy file: a versioned TOML format, validated into a [`Policy`].
//!
//! Two layers: the serde structures below mirror the file exactly (unknown fields are
//! errors), and [`PolicyFile::compile`] turns them into the policy types, where invalid
//! states cannot be expressed. Every error names the place in the file it comes from.

use std::collections::HashSet;

use serde::Deserialize;

use crate::lockout::LockoutConfig;
use crate::name::Name;
use crate::net::{Cidr, PrefixTable};
use crate::policy::{
    Location, PhoneSettings, Place, Policy, Purpose, PushSettings, Requirement, Rule, Settings,
    TenantPolicy,
};
use crate::time::Duration;
use crate::window::Rate;

/// The format version this build reads.
pub const VERSION: u32 = 1;

/// A configuration error with the path of the offending field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid TOML, or a field has the wrong type or is unknown.
    #[error("{0}")]
    Syntax(String),
    /// The file declares a version this build does not read.
    #[error("unsupported policy version {found}; this build reads version {VERSION}")]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// A value is out of range or inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// Where, such as `tenants[0].rules[2].locations[1]`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(path: impl Into<String>, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.to_string(),
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Must be [`VERSION`].
    pub version: u32,
    /// Engine-wide settings.
    #[serde(default)]
    pub settings: SettingsFile,
    /// The tenants.
    #[serde(default)]
    pub tenants: Vec<TenantFile>,
}

/// `[settings]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    /// TOTP steps either side (default 1).
    pub totp_window: Option<u32>,
    /// Largest learned drift in steps (default 2).
    pub totp_max_drift: Option<u32>,
    /// HOTP look-ahead (default 10).
    pub hotp_look_ahead: Option<u32>,
    /// HOTP resynchronisation reach (default 1000).
    pub hotp_resync_limit: Option<u32>,
    /// `[settings.lockout]`.
    #[serde(default)]
    pub lockout: LockoutFile,
    /// `[settings.source_limit]`.
    pub source_limit: Option<RateFile>,
}

/// `[settings.lockout]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutFile {
    /// Failures before a lock (default 10).
    pub threshold: Option<u32>,
    /// First wait in seconds (default 60).
    pub base_wait_s: Option<u64>,
    /// Growth factor of the wait (default 2).
    pub multiplier: Option<u32>,
    /// Longest wait in seconds (default 3600).
    pub max_wait_s: Option<u64>,
    /// Quiet seconds after which counts reset (default 3600).
    pub reset_after_s: Option<u64>,
}

/// A rate: `max` events per `per_s` seconds.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateFile {
    /// Events allowed per window.
    pub max: u32,
    /// Window length in seconds.
    pub per_s: u64,
}

/// `[[tenants]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    /// Tenant name.
    pub name: String,
    /// Two-step verification required for everyone (default true).
    pub require_mfa: Option<bool>,
    /// Methods each user must register (default 1).
    pub required_methods: Option<u8>,
    /// Days a remembered device skips the second factor; 0 disables (default 14).
    pub trusted_device_days: Option<u32>,
    /// Whether app passwords are allowed (default true).
    pub app_passwords: Option<bool>,
    /// What a decision answers when the state store cannot be reached: `"deny"` (the
    /// default: everything that needs state fails closed) or `"allow-single-factor"`
    /// (single-factor sign-ins on trusted networks are allowed without their lockout
    /// check; see [`TenantPolicy::single_factor_without_store`]).
    pub when_store_fails: Option<String>,
    /// `[tenants.phone]`.
    #[serde(default)]
    pub phone: PhoneFile,
    /// `[tenants.push]`.
    #[serde(default)]
    pub push: PushFile,
    /// `[tenants.webauthn]`.
    #[serde(default)]
    pub webauthn: Option<WebAuthnFile>,
    /// `[[tenants.locations]]`.
    #[serde(default)]
    pub locations: Vec<LocationFile>,
    /// `[[tenants.rules]]`, first match wins.
    #[serde(default)]
    pub rules: Vec<RuleFile>,
    /// `[tenants.default_rule]`.
    pub default_rule: DefaultRuleFile,
}

/// `[tenants.phone]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneFile {
    /// Code lifetime in seconds (default 300).
    pub code_ttl_s: Option<u64>,
    /// Code digits, 6-8 (default 6).
    pub digits: Option<u8>,
    /// Wrong tries per challenge (default 3).
    pub max_attempts: Option<u8>,
    /// Codes per user (default 5 per 900 s).
    pub per_user: Option<RateFile>,
    /// Codes per number (default 5 per 900 s).
    pub per_number: Option<RateFile>,
    /// Codes per tenant (default 10000 per 3600 s).
    pub per_tenant: Option<RateFile>,
    /// Failed verifications before phone methods are blocked (default 5 per 3600 s).
    pub failures: Option<RateFile>,
    /// Seconds phone methods stay blocked (default 3600).
    pub block_for_s: Option<u64>,
}

/// `[tenants.webauthn]`: the security keys' relying party.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebAuthnFile {
    /// The relying party id: the domain the sign-in pages are under.
    pub rp_id: String,
    /// The name browsers show (default: the tenant's).
    pub rp_name: Option<String>,
    /// The origins the sign-in pages are served from (`https://login.example.org`).
    pub origins: Vec<String>,
}

/// `[tenants.push]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushFile {
    /// Seconds an approval waits for its answer (default 120).
    pub ttl_s: Option<u64>,
    /// Approvals waiting at once per user, 1-5 (default 3).
    pub max_pending: Option<u8>,
    /// Approvals sent per user (default 10 per 900 s).
    pub per_user: Option<RateFile>,
}

/// `[[tenants.locations]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationFile {
    /// Location name; `elsewhere` is reserved.
    pub name: String,
    /// Trusted network: failures here count as familiar (default false).
    #[serde(default)]
    pub trusted: bool,
    /// CIDR ranges.
    pub ranges: Vec<String>,
}

/// `[[tenants.rules]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Rule name.
    pub name: String,
    /// Groups matched (any of); absent matches everyone.
    pub groups: Option<Vec<String>>,
    /// Locations matched (any of, `elsewhere` for none); absent matches everywhere.
    pub locations: Option<Vec<String>>,
    /// Purposes matched; absent matches all.
    pub purposes: Option<Vec<Purpose>>,
    /// What the rule requires.
    pub require: Requirement,
    /// Whether a remembered device may stand in for the second factor (default true).
    pub trusted_devices: Option<bool>,
}

/// `[tenants.default_rule]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultRuleFile {
    /// Rule name.
    pub name: String,
    /// What it requires.
    pub require: Requirement,
    /// Whether a remembered device may stand in for the second factor (default true).
    pub trusted_devices: Option<bool>,
}

/// The longest policy text accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 4 << 20;

impl PolicyFile {
    /// Parses the TOML text (without validating meaning).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(invalid(
                "(file)",
                format!("larger than {MAX_POLICY_BYTES} bytes"),
            ));
        }
        let file: Self = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        if file.version != VERSION {
            return Err(ConfigError::Version {
                found: file.version,
            });
        }
        Ok(file)
    }

    /// Validates and compiles.
    pub fn compile(&self) -> Result<Policy, ConfigError> {
        let settings = compile_settings(&self.settings)?;
        let mut seen = HashSet::new();
        let mut tenants = Vec::with_capacity(self.tenants.len());
        for (i, t) in self.tenants.iter().enumerate() {
            let path = format!("tenants[{i}]");
            let tenant = compile_tenant(t, &path)?;
            if !seen.insert(tenant.name) {
                return Err(invalid(
                    format!("{path}.name"),
                    format!("tenant {:?} is defined twice", t.name),
                ));
            }
            tenants.push(tenant);
        }
        Ok(Policy::new(settings, tenants))
    }
}

/// Parses and compiles policy text in one step.
pub fn load(text: &str) -> Result<Policy, ConfigError> {
    PolicyFile::parse(text)?.compile()
}

fn secs(path: &str, s: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    if !(min..=max).contains(&s) {
        return Err(invalid(
            path,
            format!("must be between {min} and {max} seconds"),
        ));
    }
    Ok(Duration::from_secs(s))
}

fn rate(path: &str, r: Option<RateFile>, default: Rate) -> Result<Rate, ConfigError> {
    let Some(r) = r else { return Ok(default) };
    if r.max == 0 {
        return Err(invalid(format!("{path}.max"), "must be at least 1"));
    }
    Ok(Rate {
        max: r.max,
        per: secs(&format!("{path}.per_s"), r.per_s, 1, 31 * 86_400)?,
    })
}

fn ranged(path: &str, v: Option<u32>, default: u32, max: u32) -> Result<u32, ConfigError> {
    let v = v.unwrap_or(default);
    if v > max {
        return Err(invalid(path, format!("must be at most {max}")));
    }
    Ok(v)
}

fn compile_settings(s: &SettingsFile) -> Result<Settings, ConfigError> {
    let d = Settings::default();
    let l = &s.lockout;
    let dl = LockoutConfig::default();
    let threshold = ranged(
        "settings.lockout.threshold",
        l.threshold,
        u32::from(dl.threshold),
        255,
    )?;
    if threshold == 0 {
        return Err(invalid("settings.lockout.threshold", "must be at least 1"));
    }
    let lockout = LockoutConfig {
        threshold: u8::try_from(threshold).unwrap_or(u8::MAX),
        base_wait: secs(
            "settings.lockout.base_wait_s",
            l.base_wait_s.unwrap_or(60),
            1,
            86_400,
        )?,
        multiplier: ranged(
            "settings.lockout.multiplier",
            l.multiplier,
            dl.multiplier,
            16,
        )?
        .max(1),
        max_wait: secs(
            "settings.lockout.max_wait_s",
            l.max_wait_s.unwrap_or(3600),
            1,
            30 * 86_400,
        )?,
        reset_after: secs(
            "settings.lockout.reset_after_s",
            l.reset_after_s.unwrap_or(3600),
            1,
            30 * 86_400,
        )?,
    };
    if lockout.max_wait < lockout.base_wait {
        return Err(invalid(
            "settings.lockout.max_wait_s",
            "must not be shorter than base_wait_s",
        ));
    }
    Ok(Settings {
        totp_window: ranged("settings.totp_window", s.totp_window, d.totp_window, 10)?,
        totp_max_drift: ranged(
            "settings.totp_max_drift",
            s.totp_max_drift,
            d.totp_max_drift,
            20,
        )?,
        hotp_look_ahead: ranged(
            "settings.hotp_look_ahead",
            s.hotp_look_ahead,
            d.hotp_look_ahead,
            100,
        )?,
        hotp_resync_limit: ranged(
            "settings.hotp_resync_limit",
            s.hotp_resync_limit,
            d.hotp_resync_limit,
            10_000,
        )?,
        lockout,
        source_failures: rate("settings.source_limit", s.source_limit, d.source_failures)?,
    })
}

fn name(path: &str, s: &str) -> Result<Name, ConfigError> {
    Name::intern(s).map_err(|e| invalid(path, e))
}

fn compile_tenant(t: &TenantFile, path: &str) -> Result<TenantPolicy, ConfigError> {
    let tenant_name = name(&format!("{path}.name"), &t.name)?;
    let mut locations: Vec<Location> = Vec::new();
    let mut prefixes = Vec::new();
    for (i, l) in t.locations.iter().enumerate() {
        let lp = format!("{path}.locations[{i}]");
        if l.name == "elsewhere" {
            return Err(invalid(
                format!("{lp}.name"),
                "`elsewhere` is reserved for addresses in no location",
            ));
        }
        let n = name(&format!("{lp}.name"), &l.name)?;
        if locations.iter().any(|x| x.name == n) {
            return Err(invalid(
                format!("{lp}.name"),
                format!("location {:?} is defined twice", l.name),
            ));
        }
        if l.ranges.is_empty() {
            return Err(invalid(
                format!("{lp}.ranges"),
                "a location needs at least one range",
            ));
        }
        let idx = u16::try_from(i).map_err(|_| invalid(&lp, "too many locations"))?;
        for (j, r) in l.ranges.iter().enumerate() {
            let cidr: Cidr = r
                .parse()
                .map_err(|e| invalid(format!("{lp}.ranges[{j}]"), e))?;
            prefixes.push((cidr, idx));
        }
        locations.push(Location {
            name: n,
            trusted: l.trusted,
        });
    }
    let table =
        PrefixTable::build(prefixes).map_err(|e| invalid(format!("{path}.locations"), e))?;

    let mut rules = Vec::with_capacity(t.rules.len());
    for (i, r) in t.rules.iter().enumerate() {
        let rp = format!("{path}.rules[{i}]");
        let rule_name = name(&format!("{rp}.name"), &r.name)?;
        if rules.iter().any(|x: &Rule| x.name == rule_name) || t.default_rule.name == r.name {
            return Err(invalid(
                format!("{rp}.name"),
                format!("rule {:?} is defined twice", r.name),
            ));
        }
        let groups = match &r.groups {
            None => None,
            Some(g) if g.is_empty() => {
                return Err(invalid(
                    format!("{rp}.groups"),
                    "an empty list matches nobody; leave it out to match everyone",
                ));
            }
            Some(g) => Some(
                g.iter()
                    .enumerate()
                    .map(|(j, s)| {
                        Name::group(s).map_err(|e| invalid(format!("{rp}.groups[{j}]"), e))
                    })
                    .collect::<Result<Box<[_]>, _>>()?,
            ),
        };
        let places = match &r.locations {
            None => None,
            Some(l) if l.is_empty() => {
                return Err(invalid(
                    format!("{rp}.locations"),
                    "an empty list matches nowhere; leave it out to match everywhere",
                ));
            }
            Some(l) => Some(
                l.iter()
                    .enumerate()
                    .map(|(j, s)| {
                        if s == "elsewhere" {
                            return Ok(Place::Elsewhere);
                        }
                        locations
                            .iter()
                            .position(|x| x.name.as_str() == s)
                            .and_then(|p| u16::try_from(p).ok())
                            .map(Place::Named)
                            .ok_or_else(|| {
                                invalid(
                                    format!("{rp}.locations[{j}]"),
                                    format!("no location is called {s:?}"),
                                )
                            })
                    })
                    .collect::<Result<Box<[_]>, _>>()?,
            ),
        };
        let purposes = match &r.purposes {
            None => Purpose::ALL.iter().fold(0, |m, p| m | p.bit()),
            Some(p) if p.is_empty() => {
                return Err(invalid(
                    format!("{rp}.purposes"),
                    "an empty list matches nothing; leave it out to match all",
                ));
            }
            Some(p) => p.iter().fold(0, |m, p| m | p.bit()),
        };
        rules.push(Rule {
            name: rule_name,
            groups,
            places,
            purposes,
            require: r.require,
            trusted_devices: r.trusted_devices.unwrap_or(true),
        });
    }
    let d = &t.default_rule;
    let default_rule = Rule {
        name: name(&format!("{path}.default_rule.name"), &d.name)?,
        groups: None,
        places: None,
        purposes: Purpose::ALL.iter().fold(0, |m, p| m | p.bit()),
        require: d.require,
        trusted_devices: d.trusted_devices.unwrap_or(true),
    };

    let p = &t.phone;
    let dp = PhoneSettings::default();
    let pp = format!("{path}.phone");
    let digits = p.digits.unwrap_or(dp.digits);
    if !(6..=8).contains(&digits) {
        return Err(invalid(format!("{pp}.digits"), "must be 6, 7 or 8"));
    }
    let max_attempts = p.max_attempts.unwrap_or(dp.max_attempts);
    if max_attempts == 0 {
        return Err(invalid(format!("{pp}.max_attempts"), "must be at least 1"));
    }
    let phone = PhoneSettings {
        code_ttl: secs(
            &format!("{pp}.code_ttl_s"),
            p.code_ttl_s.unwrap_or(300),
            30,
            3600,
        )?,
        digits,
        max_attempts,
        per_user: rate(&format!("{pp}.per_user"), p.per_user, dp.per_user)?,
        per_number: rate(&format!("{pp}.per_number"), p.per_number, dp.per_number)?,
        per_tenant: rate(&format!("{pp}.per_tenant"), p.per_tenant, dp.per_tenant)?,
        failures: rate(&format!("{pp}.failures"), p.failures, dp.failures)?,
        block_for: secs(
            &format!("{pp}.block_for_s"),
            p.block_for_s.unwrap_or(3600),
            1,
            30 * 86_400,
        )?,
    };
    let dp = PushSettings::default();
    let pp = format!("{path}.push");
    let max_pending = t.push.max_pending.unwrap_or(dp.max_pending);
    if !(1..=5).contains(&max_pending) {
        return Err(invalid(format!("{pp}.max_pending"), "must be 1 to 5"));
    }
    let push = PushSettings {
        ttl: secs(&format!("{pp}.ttl_s"), t.push.ttl_s.unwrap_or(120), 15, 600)?,
        max_pending,
        per_user: rate(&format!("{pp}.per_user"), t.push.per_user, dp.per_user)?,
    };
    let days = t.trusted_device_days.unwrap_or(14);
    if days > 365 {
        return Err(invalid(
            format!("{path}.trusted_device_days"),
            "must be at most 365",
        ));
    }
    let required_methods = t.required_methods.unwrap_or(1);
    if required_methods > 5 {
        return Err(invalid(
            format!("{path}.required_methods"),
            "must be at most 5",
        ));
    }
    let single_factor_without_store = match t.when_store_fails.as_deref() {
        None | Some("deny") => false,
        Some("allow-single-factor") => true,
        Some(_) => {
            return Err(invalid(
                format!("{path}.when_store_fails"),
                "must be \"deny\" or \"allow-single-factor\"",
            ));
        }
    };
    let mut tenant = TenantPolicy::new(
        tenant_name,
        t.require_mfa.unwrap_or(true),
        required_methods,
        Duration::from_secs(u64::from(days) * 86_400),
        t.app_passwords.unwrap_or(true),
        phone,
        locations,
        table,
        rules,
        default_rule,
    );
    tenant.single_factor_without_store = single_factor_without_store;
    tenant.push = push;
    if let Some(w) = &t.webauthn {
        let wp = format!("{path}.webauthn");
        let domain = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if !domain(&w.rp_id) {
            return Err(invalid(format!("{wp}.rp_id"), "must be a domain name"));
        }
        if w.origins.is_empty() {
            return Err(invalid(
                format!("{wp}.origins"),
                "must name at least one origin",
            ));
        }
        for o in &w.origins {
            let host = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://localhost").map(|_| "localhost"));
            let host = host.map(|h| h.split(':').next().unwrap_or_default());
            let fits = host.is_some_and(|h| h == w.rp_id || h.ends_with(&format!(".{}", w.rp_id)));
            if !fits || o.ends_with('/') {
                return Err(invalid(
                    format!("{wp}.origins"),
                    "each must be https://HOST[:PORT] with HOST the rp_id or under it",
                ));
            }
        }
        tenant.webauthn = crate::webauthn::RelyingParty {
            id: w.rp_id.clone(),
            name: w.rp_name.clone().unwrap_or_else(|| t.name.clone()),
            origins: w.origins.clone(),
        };
    }
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
version = 1
[[tenants]]
name = "t"
[tenants.default_rule]
name = "d"
require = "second_factor"
"#;

    #[test]
    fn minimal_file_uses_defaults() {
        let p = load(MINIMAL).unwrap();
        assert_eq!(p.settings, Settings::default());
        let t = p.tenant("t").unwrap();
        assert!(t.require_mfa);
        assert_eq!(t.default_rule.require, Requirement::SecondFactor);
        assert!(!t.single_factor_without_store, "fails closed unless told");
        assert!(p.tenant("other").is_none());
    }

    fn err(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_place() {
        assert!(err("version = 2").contains("unsupported policy version 2"));
        assert!(
            err("version = \"one\"").contains("invalid type"),
            "{}",
            err("version = \"one\"")
        );
        assert!(err(&format!("{MINIMAL}\nsurprise = 1")).contains("unknown field"));
        let bad_range = MINIMAL.replace(
            "[tenants.default_rule]",
            "[[tenants.locations]]\nname = \"x\"\nranges = [\"10.0.0.1/8\"]\n[tenants.default_rule]",
        );
        let e = err(&bad_range);
        assert!(e.starts_with("tenants[0].locations[0].ranges[0]: "), "{e}");
        assert!(e.contains("did you mean `10.0.0.0/8`"), "{e}");
        let bad_rule = MINIMAL.replace(
            "[tenants.default_rule]",
            "[[tenants.rules]]\nname = \"r\"\nlocations = [\"nowhere\"]\nrequire = \"block\"\n[tenants.default_rule]",
        );
        assert_eq!(
            err(&bad_rule),
            "tenants[0].rules[0].locations[0]: no location is called \"nowhere\""
        );
        let bad_require = MINIMAL.replace("second_factor", "maybe");
        assert!(
            err(&bad_require).contains("unknown variant `maybe`"),
            "{}",
            err(&bad_require)
        );
        let reserved = MINIMAL.replace(
            "[tenants.default_rule]",
            "[[tenants.locations]]\nname = \"elsewhere\"\nranges = [\"10.0.0.0/8\"]\n[tenants.default_rule]",
        );
        assert!(err(&reserved).contains("reserved"));
        let zero = MINIMAL.replace(
            "version = 1",
            "version = 1\n[settings.lockout]\nthreshold = 0",
        );
        assert_eq!(err(&zero), "settings.lockout.threshold: must be at least 1");
        let dup = format!("{MINIMAL}{}", MINIMAL.replace("version = 1", ""));
        assert!(err(&dup).contains("defined twice"), "{}", err(&dup));
        let negative = MINIMAL.replace("version = 1", "version = 1\n[settings]\ntotp_window = -1");
        assert!(
            err(&negative).contains("invalid value"),
            "{}",
            err(&negative)
        );
    }

    #[test]
    fn kommune_example_compiles() {
        let text = include_str!("../../../examples/kommune.toml");
        let p = load(text).unwrap();
        let t = p.tenant("kommune").unwrap();
        assert_eq!(t.locations.len(), 1);
        assert!(t.rules.len() >= 2);
    }
}
