//! The RADIUS frontend's configuration: where it listens, and the clients (NAS) it
//! answers, each with its address ranges, shared secret and way of knowing the first
//! factor.
//!
//! ```toml
//! listen = "127.0.0.1:1812"
//!
//! [[clients]]
//! name = "vpn"
//! ranges = ["192.0.2.10/32"]
//! secret_file = "radius/vpn.secret"       # relative to the data directory
//! tenant = "kommune"
//! first_factor = "upstream-then-challenge"
//! upstream = { address = "192.0.2.53:1812", secret_file = "radius/upstream.secret" }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use portvakt_core::net::Cidr;
use serde::Deserialize;
use zeroize::Zeroizing;

/// The shortest shared secret accepted (RFC 2865 §3 asks for at least 16 octets, and an
/// offline guess at a short one reads every password the NAS sends).
pub const MIN_SECRET: usize = 16;
/// The longest shared secret accepted.
pub const MAX_SECRET: usize = 128;

/// How a client knows the first factor (the password): Portvakt keeps none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirstFactor {
    /// The NAS checked the password itself and asks only for the second factor: its
    /// User-Password, if any, is the code (a second-factor-only client).
    Nas,
    /// The User-Password is the password with the code typed right after it; the password
    /// is checked by the upstream RADIUS server, and the code here.
    UpstreamWithCode,
    /// The User-Password is the password, checked by the upstream RADIUS server; the code
    /// is asked for with an Access-Challenge.
    UpstreamThenChallenge,
}

/// Which attribute names the user's own address, for a client that reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserAddress {
    /// Calling-Station-Id, when it holds an IP address (VPN gateways put the client's
    /// public address there).
    CallingStationId,
    /// Framed-IP-Address.
    FramedIpAddress,
}

/// The RADIUS server that checks passwords for a client.
#[derive(Debug)]
pub struct Upstream {
    /// Its address.
    pub address: SocketAddr,
    /// The secret Portvakt shares with it.
    pub secret: Zeroizing<Vec<u8>>,
    /// How long to wait for each answer.
    pub timeout: Duration,
    /// How many times to send a request before giving up.
    pub attempts: u8,
    /// Whether its replies must carry a Message-Authenticator (true unless the dangerous
    /// switch is set, for servers that do not send one, such as FreeRADIUS before 3.2.5).
    pub require_message_authenticator: bool,
}

/// One NAS, or a range of them sharing a secret.
#[derive(Debug)]
pub struct Client {
    /// Its name, in metrics and logs.
    pub name: String,
    /// The addresses its requests come from.
    pub ranges: Vec<Cidr>,
    /// The secret it shares with Portvakt.
    pub secret: Zeroizing<Vec<u8>>,
    /// The organisation its users belong to.
    pub tenant: String,
    /// How the first factor is known.
    pub first_factor: FirstFactor,
    /// The server that checks passwords (for the `upstream-*` ways).
    pub upstream: Option<Upstream>,
    /// Where the user's own address is read from; without it, the NAS's address stands
    /// for the user's.
    pub user_address: Option<UserAddress>,
    /// Whether an Access-Request must carry a Message-Authenticator (true unless the
    /// dangerous legacy switch is set: without one, CVE-2024-3596 lets a man in the middle
    /// forge an Accept).
    pub require_message_authenticator: bool,
    /// How many digits the code after the password has (`upstream-with-code`).
    pub code_digits: usize,
    /// How long a request answering a push challenge waits for the device (the NAS's
    /// own timeout must be longer).
    pub push_wait: Duration,
}

/// The frontend's configuration.
#[derive(Debug)]
pub struct Config {
    /// The UDP address to listen on.
    pub listen: SocketAddr,
    /// The clients answered; requests from any other address are dropped.
    pub clients: Vec<Client>,
    /// How long an answer is kept to be sent again to a retransmit.
    pub reply_cache: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: SocketAddr,
    #[serde(default = "five")]
    reply_cache_s: u64,
    #[serde(default)]
    clients: Vec<ClientFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    name: String,
    ranges: Vec<String>,
    secret_file: PathBuf,
    tenant: String,
    first_factor: FirstFactor,
    upstream: Option<UpstreamFile>,
    user_address: Option<UserAddress>,
    #[serde(default)]
    dangerous_accept_requests_without_message_authenticator: bool,
    #[serde(default = "six")]
    code_digits: usize,
    #[serde(default = "twenty")]
    push_wait_s: u64,
}

fn twenty() -> u64 {
    20
}

fn five() -> u64 {
    5
}

fn six() -> usize {
    6
}

/// An `upstream` table as a configuration file has it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamFile {
    address: SocketAddr,
    secret_file: PathBuf,
    #[serde(default = "three_seconds")]
    timeout_ms: u64,
    #[serde(default = "two")]
    attempts: u8,
    #[serde(default)]
    dangerous_accept_replies_without_message_authenticator: bool,
}

impl UpstreamFile {
    /// The upstream server this table describes, its secret read from (or made in) `dir`.
    pub(crate) fn read(self, dir: &Path) -> Result<Upstream, String> {
        if self.attempts == 0 || self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err("upstream: attempts at least 1, timeout_ms 1 to 60000".into());
        }
        Ok(Upstream {
            address: self.address,
            secret: crate::frontend::secret_file(
                &dir.join(&self.secret_file),
                MIN_SECRET..=MAX_SECRET,
            )?,
            timeout: Duration::from_millis(self.timeout_ms),
            attempts: self.attempts,
            require_message_authenticator: !self
                .dangerous_accept_replies_without_message_authenticator,
        })
    }
}

fn three_seconds() -> u64 {
    3000
}

fn two() -> u8 {
    2
}

impl Config {
    /// Reads a configuration. Secret files are relative to `dir` (the data directory);
    /// one that does not exist yet is made with a random secret, readable by the server's
    /// user only, for the administrator to copy into the NAS.
    pub fn parse(text: &str, dir: &Path) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut clients = Vec::with_capacity(file.clients.len());
        for c in file.clients {
            let at = |e: &dyn std::fmt::Display| format!("client {:?}: {e}", c.name);
            if c.name.is_empty() || c.name.len() > 64 {
                return Err(at(&"a name of 1 to 64 bytes"));
            }
            if clients.iter().any(|d: &Client| d.name == c.name) {
                return Err(at(&"a second client of that name"));
            }
            let ranges = c
                .ranges
                .iter()
                .map(|r| {
                    r.parse::<Cidr>()
                        .map_err(|e| at(&format!("range {r:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if ranges.is_empty() {
                return Err(at(&"no address ranges"));
            }
            if !(1..=10).contains(&c.code_digits) {
                return Err(at(&"code_digits must be 1 to 10"));
            }
            if !(1..=30).contains(&c.push_wait_s) {
                return Err(at(&"push_wait_s must be 1 to 30"));
            }
            let upstream = match (c.first_factor, c.upstream) {
                (FirstFactor::Nas, Some(_)) => {
                    return Err(at(
                        &"first_factor = \"nas\" checks no password, so it has no upstream",
                    ));
                }
                (FirstFactor::Nas, None) => None,
                (_, None) => {
                    return Err(at(&"an upstream server must check the passwords"));
                }
                (_, Some(u)) => Some(u.read(dir).map_err(|e| at(&e))?),
            };
            clients.push(Client {
                secret: crate::frontend::secret_file(
                    &dir.join(&c.secret_file),
                    MIN_SECRET..=MAX_SECRET,
                )
                .map_err(|e| at(&e))?,
                name: c.name,
                ranges,
                tenant: c.tenant,
                first_factor: c.first_factor,
                upstream,
                user_address: c.user_address,
                require_message_authenticator: !c
                    .dangerous_accept_requests_without_message_authenticator,
                code_digits: c.code_digits,
                push_wait: Duration::from_secs(c.push_wait_s),
            });
        }
        // The same range twice would leave which secret applies to chance.
        for (i, a) in clients.iter().enumerate() {
            for b in clients.iter().skip(i + 1) {
                if let Some(r) = a.ranges.iter().find(|r| b.ranges.contains(r)) {
                    return Err(format!(
                        "clients {:?} and {:?} both claim {}/{}",
                        a.name,
                        b.name,
                        r.network(),
                        r.len()
                    ));
                }
            }
        }
        if !(1..=60).contains(&file.reply_cache_s) {
            return Err("reply_cache_s must be 1 to 60".into());
        }
        Ok(Self {
            listen: file.listen,
            clients,
            reply_cache: Duration::from_secs(file.reply_cache_s),
        })
    }

    /// The client a request from `ip` comes from: the one whose range holding it is the
    /// narrowest.
    pub fn client(&self, ip: IpAddr) -> Option<&Client> {
        let ip = crate::frontend::plain_ip(ip);
        self.clients
            .iter()
            .filter_map(|c| {
                c.ranges
                    .iter()
                    .filter(|r| r.contains(ip))
                    .map(Cidr::len)
                    .max()
                    .map(|len| (len, c))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "portvakt-radius-config-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const ONE: &str = r#"
listen = "127.0.0.1:1812"
[[clients]]
name = "vpn"
ranges = ["192.0.2.0/24", "192.0.2.10/32"]
secret_file = "vpn.secret"
tenant = "kommune"
first_factor = "nas"
"#;

    #[test]
    fn a_missing_secret_is_made_private_and_read_back_the_same() {
        let d = dir("made");
        let first = Config::parse(ONE, &d).unwrap();
        let made = std::fs::read(d.join("vpn.secret")).unwrap();
        assert_eq!(made.len(), 32);
        assert!(made.iter().all(u8::is_ascii_alphanumeric));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.join("vpn.secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Config::parse(ONE, &d).unwrap();
        assert_eq!(&first.clients[0].secret[..], &again.clients[0].secret[..]);
        assert_eq!(&again.clients[0].secret[..], &made[..]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_narrowest_range_decides_which_client_asks() {
        let d = dir("narrow");
        let text = format!(
            "{ONE}\n[[clients]]\nname = \"one\"\nranges = [\"192.0.2.7/32\"]\nsecret_file = \"one.secret\"\ntenant = \"kommune\"\nfirst_factor = \"nas\"\n"
        );
        let c = Config::parse(&text, &d).unwrap();
        let name = |ip: &str| c.client(ip.parse().unwrap()).map(|c| c.name.as_str());
        assert_eq!(name("192.0.2.7"), Some("one"));
        assert_eq!(name("192.0.2.8"), Some("vpn"));
        assert_eq!(name("::ffff:192.0.2.7"), Some("one"), "IPv4 mapped");
        assert_eq!(name("198.51.100.1"), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn mistakes_are_named() {
        let d = dir("mistakes");
        std::fs::write(d.join("short.secret"), "testing123\n").unwrap();
        let short = ONE.replace("vpn.secret", "short.secret");
        assert!(
            Config::parse(&short, &d)
                .unwrap_err()
                .contains("16 to 128 bytes")
        );
        let upstream = ONE.replace("\"nas\"", "\"upstream-then-challenge\"");
        assert!(
            Config::parse(&upstream, &d)
                .unwrap_err()
                .contains("upstream")
        );
        let twice = format!(
            "{ONE}\n[[clients]]\nname = \"again\"\nranges = [\"192.0.2.0/24\"]\nsecret_file = \"vpn.secret\"\ntenant = \"kommune\"\nfirst_factor = \"nas\"\n"
        );
        assert!(
            Config::parse(&twice, &d)
                .unwrap_err()
                .contains("both claim")
        );
        let unknown = ONE.replace("first_factor", "first_factr");
        assert!(Config::parse(&unknown, &d).is_err());
        let range = ONE.replace("192.0.2.10/32", "192.0.2.10/33");
        assert!(
            Config::parse(&range, &d)
                .unwrap_err()
                .contains("192.0.2.10/33")
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
