//! The HTTP frontend's configuration: where it listens, who may call it without a
//! credential, the API keys, and the privacyIDEA realms.
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! unauthenticated_frontends = []            # networks whose callers need no credential
//! trusted_proxies = ["192.0.2.80/32"]       # whose `client` parameter is believed
//!
//! [[api_keys]]
//! name = "keycloak"
//! key_file = "http/keycloak.key"            # relative to the data directory; made if missing
//! role = "frontend"                         # or "admin"
//!
//! [[realms]]
//! name = "kommune"                          # privacyIDEA's realm
//! tenant = "kommune"
//! default = true
//!
//! [security_info]                           # the self-service pages (optional)
//! public_url = "https://login.kommune.no"
//! outbox = "http/outbox.jsonl"              # confirmation codes, for a delivery gateway
//! push_server = "192.0.2.10:4433"           # where push devices pair (QUIC)
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use portvakt_core::net::Cidr;
use serde::Deserialize;

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyRole {
    /// Decisions and sent codes (`/validate/check`, `/v1/decide`, `/v1/send-code`).
    Frontend,
    /// Everything, administrator operations included.
    Admin,
}

/// An API key: the SHA-256 of the key a caller presents as `Authorization: Bearer KEY`.
#[derive(Debug)]
pub struct ApiKey {
    /// Its name, in the audit trail (`api-key:NAME`) and metrics.
    pub name: String,
    /// SHA-256 of the key.
    pub digest: [u8; 32],
    /// What it allows.
    pub role: KeyRole,
}

/// A privacyIDEA realm, and the tenant it is.
#[derive(Debug)]
pub struct Realm {
    /// The realm's name, as callers send it.
    pub name: String,
    /// The tenant.
    pub tenant: String,
    /// Who checks the password: the caller (`pass` is the code alone), or, when set, this
    /// upstream RADIUS server (`pass` is the password followed by the code).
    pub upstream: Option<crate::frontend::radius::config::Upstream>,
    /// How many digits the code after the password has (with an upstream server).
    pub code_digits: usize,
}

/// The frontend's configuration.
#[derive(Debug)]
pub struct Config {
    /// The TCP address to listen on (HTTPS).
    pub listen: SocketAddr,
    /// Networks whose callers are frontends without presenting anything.
    pub unauthenticated_frontends: Vec<Cidr>,
    /// Proxies whose `client` parameter (the user's address) is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// The API keys.
    pub api_keys: Vec<ApiKey>,
    /// The realms; the first is the default unless another says `default = true`.
    pub realms: Vec<Realm>,
    /// The realm a request without one is in.
    pub default_realm: usize,
    /// Connections held at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a TLS handshake, a request's headers, or its body may take.
    pub slow_client: std::time::Duration,
    /// The security-info pages, when served.
    pub security_info: Option<SecurityInfo>,
}

/// The security-info pages' settings (`[security_info]`).
#[derive(Debug)]
pub struct SecurityInfo {
    /// The address people open, `https://host[:port]`, without a path: ticket links are
    /// made with it, and a form is taken only from this origin.
    pub public_url: String,
    /// How long a ticket opens the pages.
    pub ticket_ttl: std::time::Duration,
    /// How long a session lasts without a request.
    pub session_idle: std::time::Duration,
    /// How long a session lasts at most.
    pub session_max: std::time::Duration,
    /// Where confirmation codes for phones and email addresses are written, one JSON line
    /// each, for a delivery gateway to send; without it, phones and email addresses
    /// cannot be added on the pages.
    pub outbox: Option<PathBuf>,
    /// The QUIC address push devices pair with; without it, push devices cannot be
    /// registered on the pages.
    pub push_server: Option<SocketAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityInfoFile {
    public_url: String,
    #[serde(default = "five_minutes")]
    ticket_ttl_s: u64,
    #[serde(default = "ten_minutes")]
    session_idle_s: u64,
    #[serde(default = "half_an_hour")]
    session_max_s: u64,
    #[serde(default)]
    outbox: Option<PathBuf>,
    #[serde(default)]
    push_server: Option<SocketAddr>,
}

fn five_minutes() -> u64 {
    300
}

fn ten_minutes() -> u64 {
    600
}

fn half_an_hour() -> u64 {
    1800
}

impl SecurityInfoFile {
    fn read(self, dir: &Path) -> Result<SecurityInfo, String> {
        let url = self.public_url.trim_end_matches('/');
        let host = url
            .strip_prefix("https://")
            .ok_or("security_info.public_url: must start with https://")?;
        if host.is_empty()
            || host.contains(['/', '?', '#', '@'])
            || !host.is_ascii()
            || host
                .chars()
                .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
        {
            return Err(
                "security_info.public_url: https:// and a host (and port), nothing more".into(),
            );
        }
        if !(30..=900).contains(&self.ticket_ttl_s) {
            return Err("security_info.ticket_ttl_s must be 30 to 900".into());
        }
        if !(60..=3600).contains(&self.session_idle_s)
            || !(self.session_idle_s..=8 * 3600).contains(&self.session_max_s)
        {
            return Err(
                "security_info: session_idle_s must be 60 to 3600, session_max_s at least that and at most 28800".into(),
            );
        }
        Ok(SecurityInfo {
            public_url: url.to_ascii_lowercase(),
            ticket_ttl: std::time::Duration::from_secs(self.ticket_ttl_s),
            session_idle: std::time::Duration::from_secs(self.session_idle_s),
            session_max: std::time::Duration::from_secs(self.session_max_s),
            outbox: self.outbox.map(|p| dir.join(p)),
            push_server: self.push_server,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: SocketAddr,
    #[serde(default)]
    unauthenticated_frontends: Vec<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    api_keys: Vec<KeyFile>,
    #[serde(default)]
    realms: Vec<RealmFile>,
    #[serde(default = "connections")]
    max_connections: usize,
    #[serde(default = "ten")]
    slow_client_s: u64,
    #[serde(default)]
    security_info: Option<SecurityInfoFile>,
}

fn ten() -> u64 {
    10
}

fn connections() -> usize {
    1024
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    name: String,
    key_file: PathBuf,
    role: KeyRole,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RealmFile {
    name: String,
    tenant: String,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    upstream: Option<crate::frontend::radius::config::UpstreamFile>,
    #[serde(default = "six")]
    code_digits: usize,
}

fn six() -> usize {
    6
}

impl Config {
    /// Reads a configuration; key files are relative to `dir` (the data directory), and
    /// one that does not exist yet is made with a random key, readable by the server's
    /// user only.
    pub fn parse(text: &str, dir: &Path) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let ranges = |list: &[String], what: &str| {
            list.iter()
                .map(|r| r.parse::<Cidr>().map_err(|e| format!("{what}: {r:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut api_keys = Vec::new();
        for k in file.api_keys {
            if k.name.is_empty()
                || k.name.len() > 64
                || api_keys.iter().any(|a: &ApiKey| a.name == k.name)
            {
                return Err(format!(
                    "api key {:?}: a name of 1 to 64 bytes, used once",
                    k.name
                ));
            }
            let key = crate::frontend::secret_file(&dir.join(&k.key_file), 32..=256)
                .map_err(|e| format!("api key {:?}: {e}", k.name))?;
            api_keys.push(ApiKey {
                name: k.name,
                digest: digest(&key),
                role: k.role,
            });
        }
        if file.realms.is_empty() {
            return Err("no realms: name at least one, with its tenant".into());
        }
        let defaults = file.realms.iter().filter(|r| r.default).count();
        if defaults > 1 {
            return Err("more than one default realm".into());
        }
        let default_realm = file.realms.iter().position(|r| r.default).unwrap_or(0);
        if !(1..=65_536).contains(&file.max_connections) {
            return Err("max_connections must be 1 to 65536".into());
        }
        if !(1..=300).contains(&file.slow_client_s) {
            return Err("slow_client_s must be 1 to 300".into());
        }
        let mut realms = Vec::with_capacity(file.realms.len());
        for r in file.realms {
            if !(1..=10).contains(&r.code_digits) {
                return Err(format!("realm {:?}: code_digits must be 1 to 10", r.name));
            }
            let upstream = match r.upstream {
                Some(u) => Some(
                    u.read(dir)
                        .map_err(|e| format!("realm {:?}: {e}", r.name))?,
                ),
                None => None,
            };
            realms.push(Realm {
                name: r.name,
                tenant: r.tenant,
                upstream,
                code_digits: r.code_digits,
            });
        }
        Ok(Self {
            listen: file.listen,
            unauthenticated_frontends: ranges(
                &file.unauthenticated_frontends,
                "unauthenticated_frontends",
            )?,
            trusted_proxies: ranges(&file.trusted_proxies, "trusted_proxies")?,
            api_keys,
            realms,
            default_realm,
            max_connections: file.max_connections,
            slow_client: std::time::Duration::from_secs(file.slow_client_s),
            security_info: match file.security_info {
                Some(s) => Some(s.read(dir)?),
                None => None,
            },
        })
    }

    /// The realm called `name` (case-insensitively, as privacyIDEA's are).
    pub fn realm(&self, name: &str) -> Option<&Realm> {
        self.realms
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }

    /// The realm a request that names none is in.
    pub fn default_realm(&self) -> &Realm {
        &self.realms[self.default_realm]
    }

    /// The API key `presented` is, compared in constant time with every one.
    pub fn api_key(&self, presented: &[u8]) -> Option<&ApiKey> {
        let d = digest(presented);
        let mut found = None;
        for k in &self.api_keys {
            if bool::from(subtle::ConstantTimeEq::ct_eq(&k.digest[..], &d[..])) {
                found = Some(k);
            }
        }
        found
    }

    /// Whether a caller at `ip` is a frontend without presenting anything.
    pub fn unauthenticated(&self, ip: IpAddr) -> bool {
        self.unauthenticated_frontends
            .iter()
            .any(|r| r.contains(ip))
    }

    /// Whether `ip` is a proxy whose `client` parameter is believed.
    pub fn trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|r| r.contains(ip))
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(key).into()
}
