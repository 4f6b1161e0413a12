//! `portvakt`: the command that serves decisions (`serve`), asks for one (`check`) and
//! administers users (`admin`), on the `portvakt-server` library.
#![allow(clippy::disallowed_methods)] // a command-line program reads the clock

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use portvakt_client::Client;
use portvakt_core::secret::Pepper;
use portvakt_core::{Engine, MemoryStore, config};
use portvakt_server::entropy::OsEntropy;
use portvakt_server::pki::{
    PkiFiles, client_tls, ensure_dev_pki, fingerprint, load_certs, server_tls,
};
use portvakt_server::server::ConnectionLimits;
use portvakt_server::service::Service;
use portvakt_server::signin::{LogConfig, SignInLog};
use portvakt_wire::{Decide, Frame, Proof, SendCode};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes a line to standard output, ignoring failure: a server must not stop because
/// whoever started it closed its output.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// The same for standard error.
macro_rules! esay {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// The policy `serve` uses when no file is given: the municipality's example.
const EMBEDDED_POLICY: &str = include_str!("../../../examples/kommune.toml");

#[derive(Parser)]
#[command(
    name = "portvakt",
    version,
    about = "Portvakt: may this person in now?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve decisions over QUIC (defaults: 127.0.0.1:4433, ./portvakt-data, the embedded
    /// municipality policy, development certificates made on first start).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4433")]
        listen: SocketAddr,
        /// Data directory (certificates, pepper).
        #[arg(long, default_value = "portvakt-data")]
        data: PathBuf,
        /// Policy file (TOML); without it, the embedded example policy.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Address for Prometheus metrics (`/metrics`), or `off`.
        #[arg(long, default_value = "127.0.0.1:9464")]
        metrics: String,
        /// Sign-in log kept on disk, in MiB (the oldest records are removed past it).
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
        sign_in_log_mib: u64,
        /// How often the sign-in log is synced to disk, in milliseconds (what a power loss
        /// can cost; records outlive the process as soon as they are written).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        sign_in_sync_ms: u64,
        /// Connections held at once, in all (more are refused before their handshake).
        #[arg(long, default_value_t = ConnectionLimits::default().total, value_parser = at_least_one)]
        max_connections: usize,
        /// Connections from one address (IPv6: one /64).
        #[arg(long, default_value_t = ConnectionLimits::default().per_address, value_parser = at_least_one)]
        max_connections_per_address: usize,
        /// Connections with one client certificate.
        #[arg(long, default_value_t = ConnectionLimits::default().per_certificate, value_parser = at_least_one)]
        max_connections_per_certificate: usize,
    },
    /// Ask for one decision, as a frontend does (or, with --send-code, for a code to be
    /// sent). Exits by outcome: 0 allow, 2 deny, 3 challenge, 4 locked, 5 register,
    /// 6 throttled, 1 no answer.
    Check {
        /// Organisation.
        #[arg(long)]
        tenant: String,
        /// User name.
        #[arg(long)]
        user: String,
        /// The client's address.
        #[arg(long)]
        ip: IpAddr,
        /// Why the user signs in.
        #[arg(long, value_enum, default_value = "sign-in")]
        purpose: PurposeArg,
        /// What the frontend's password check found.
        #[arg(long, value_enum, default_value = "ok")]
        first_factor: FirstFactorArg,
        /// An authenticator app's code.
        #[arg(long, group = "proof")]
        code: Option<String>,
        /// A hardware token's code.
        #[arg(long, group = "proof")]
        hotp: Option<String>,
        /// The token's next code, to resynchronise it.
        #[arg(long, requires = "hotp")]
        next: Option<String>,
        /// A code that was sent by SMS, voice or email (with --challenge).
        #[arg(long, group = "proof", requires = "challenge")]
        sent_code: Option<String>,
        /// The challenge the sent code answers, as --send-code printed it (32 hex digits).
        #[arg(long, requires = "sent_code")]
        challenge: Option<String>,
        /// An answer to a security question (repeat, in the questions' order).
        #[arg(long = "answer", group = "proof")]
        answers: Vec<String>,
        /// An app password (legacy protocols).
        #[arg(long, group = "proof")]
        app_password: Option<String>,
        /// A remembered-device token.
        #[arg(long)]
        device_token: Option<String>,
        /// Remember this device after a successful second factor.
        #[arg(long)]
        remember: bool,
        /// Ask for an SMS, voice or email code instead of a decision; prints what to
        /// deliver and the challenge to answer it with.
        #[arg(long, group = "proof", conflicts_with_all = ["first_factor", "device_token", "remember"])]
        send_code: bool,
        /// With --send-code: the method to send through (its id from a challenge);
        /// without it, the default phone or email.
        #[arg(long, requires = "send_code")]
        method: Option<u32>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Server address.
        #[arg(long, default_value = "127.0.0.1:4433")]
        server: SocketAddr,
        /// Data directory holding the CA and the frontend certificate.
        #[arg(long, default_value = "portvakt-data")]
        data: PathBuf,
    },
    /// Administrator operations (with the administrator certificate).
    Admin {
        /// Server address.
        #[arg(long, default_value = "127.0.0.1:4433", global = true)]
        server: SocketAddr,
        /// Data directory holding the CA and the administrator certificate.
        #[arg(long, default_value = "portvakt-data", global = true)]
        data: PathBuf,
        /// Print the answer as JSON (one object; for sign-ins, one per line).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        op: AdminOp,
    },
}

/// Who an administrator operation is about.
#[derive(clap::Args)]
struct Who {
    /// Organisation.
    #[arg(long)]
    tenant: String,
    /// User name.
    #[arg(long)]
    user: String,
}

#[derive(Subcommand)]
enum AdminOp {
    /// Add a user.
    AddUser {
        #[command(flatten)]
        who: Who,
        /// A group (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A passwordless account.
        #[arg(long)]
        passwordless: bool,
    },
    /// Remove a user and all its state.
    RemoveUser {
        #[command(flatten)]
        who: Who,
    },
    /// Start enrolling an authenticator app: prints the otpauth:// URI and the secret.
    EnrollTotp {
        #[command(flatten)]
        who: Who,
        /// sha1, sha256 or sha512.
        #[arg(long, default_value = "sha1")]
        algorithm: String,
        /// Code length.
        #[arg(long, default_value_t = 6)]
        digits: u8,
        /// Step in seconds.
        #[arg(long, default_value_t = 30)]
        period: u16,
        /// Also write the QR code as an SVG file (readable by its owner only: it holds the secret).
        #[arg(long)]
        qr_svg: Option<PathBuf>,
        /// Do not draw the QR code in the terminal.
        #[arg(long)]
        no_qr: bool,
    },
    /// Prove a pending authenticator app or token with its first code.
    Confirm {
        #[command(flatten)]
        who: Who,
        /// Method id (printed when the method was added).
        #[arg(long)]
        method: u32,
        /// The code the app or token shows now.
        #[arg(long)]
        code: String,
    },
    /// Add a phone for SMS (or voice with --voice) codes.
    AddPhone {
        #[command(flatten)]
        who: Who,
        /// E.164 number, such as +4791234567.
        #[arg(long)]
        number: String,
        /// Voice calls instead of text messages.
        #[arg(long)]
        voice: bool,
    },
    /// Record a security key the frontend registered.
    AddSecurityKey {
        #[command(flatten)]
        who: Who,
    },
    /// Remove every method and remembered device (a lost or stolen phone).
    RemoveAllMethods {
        #[command(flatten)]
        who: Who,
    },
    /// Clear a user's lockout.
    Unlock {
        #[command(flatten)]
        who: Who,
    },
    /// Create an app password for a legacy client (shown once).
    AppPassword {
        #[command(flatten)]
        who: Who,
        /// What it is for, such as "Outlook 2010".
        #[arg(long)]
        label: String,
    },
    /// Replace a user's groups (none given: no groups).
    SetGroups {
        #[command(flatten)]
        who: Who,
        /// A group (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Make an account passwordless (or, with --off, not).
    SetPasswordless {
        #[command(flatten)]
        who: Who,
        /// Turn it off.
        #[arg(long)]
        off: bool,
    },
    /// Let a user opt out of two-step verification (or, with --off, not). Refused where
    /// the tenant requires it.
    SetOptOut {
        #[command(flatten)]
        who: Who,
        /// Turn it off.
        #[arg(long)]
        off: bool,
    },
    /// Add a hardware token (HOTP, SHA-1) with its secret in base32.
    AddHotp {
        #[command(flatten)]
        who: Who,
        /// The token's secret, base32.
        #[arg(long)]
        secret: String,
        /// Code length.
        #[arg(long, default_value_t = 6)]
        digits: u8,
        /// The token's counter now.
        #[arg(long, default_value_t = 0)]
        counter: u64,
    },
    /// Add an email address for password reset.
    AddEmail {
        #[command(flatten)]
        who: Who,
        /// The address.
        #[arg(long)]
        address: String,
    },
    /// Set the security answers used for password reset (repeat --answer).
    SetSecurityAnswers {
        #[command(flatten)]
        who: Who,
        /// An answer (repeat for several, in the questions' order).
        #[arg(long = "answer", required = true)]
        answers: Vec<String>,
    },
    /// Make a code to confirm a newly added phone or email; prints what to deliver.
    SendConfirmation {
        #[command(flatten)]
        who: Who,
        /// Method id.
        #[arg(long)]
        method: u32,
    },
    /// Confirm a phone or email with the code that was delivered.
    ConfirmSent {
        #[command(flatten)]
        who: Who,
        /// Method id.
        #[arg(long)]
        method: u32,
        /// The challenge printed by send-confirmation (32 hex digits).
        #[arg(long)]
        challenge: String,
        /// The code the person received.
        #[arg(long)]
        code: String,
    },
    /// Remove one method.
    RemoveMethod {
        #[command(flatten)]
        who: Who,
        /// Method id.
        #[arg(long)]
        method: u32,
    },
    /// Make a method the default.
    SetDefaultMethod {
        #[command(flatten)]
        who: Who,
        /// Method id.
        #[arg(long)]
        method: u32,
    },
    /// Forget the clock drift learned for an authenticator app.
    ResetDrift {
        #[command(flatten)]
        who: Who,
        /// Method id.
        #[arg(long)]
        method: u32,
    },
    /// Revoke an app password.
    RevokeAppPassword {
        #[command(flatten)]
        who: Who,
        /// The app password's id.
        #[arg(long)]
        id: u32,
    },
    /// Forget remembered devices: one (--id) or all.
    RevokeDevices {
        #[command(flatten)]
        who: Who,
        /// The device's id; all devices if absent.
        #[arg(long)]
        id: Option<u32>,
    },
    /// Describe a user.
    UserInfo {
        #[command(flatten)]
        who: Who,
    },
    /// Reload the policy from the server's policy file.
    ReloadPolicy,
    /// Import users and their authenticator secrets from a file of otpauth:// URIs (one
    /// per line) or CSV (columns: user, tenant, groups, passwordless, and uri or secret
    /// with type, algorithm, digits, period, counter). All or nothing: the whole file is
    /// checked first, and if the server refuses any of it, what was done is undone.
    /// Existing users are skipped unless --add-methods is given.
    Import {
        /// The file.
        file: PathBuf,
        /// Tenant of every user (else a tenant column, or the URI's issuer).
        #[arg(long)]
        tenant: Option<String>,
        /// What the file holds.
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatArg,
        /// Leave imported authenticator apps pending until each user proves theirs.
        #[arg(long)]
        pending: bool,
        /// Add the file's apps and tokens to users that exist already (their groups and
        /// flags stay as they are); without it such users are skipped. A secret the user
        /// has registered already is skipped either way, so a file can be run again.
        #[arg(long)]
        add_methods: bool,
        /// Users imported at once.
        #[arg(long, default_value_t = 32)]
        parallel: usize,
    },
    /// Read the sign-in log: a user's decisions (all the tenant's without --user),
    /// oldest first.
    SignIns {
        /// Organisation.
        #[arg(long)]
        tenant: String,
        /// User name.
        #[arg(long)]
        user: Option<String>,
        /// From this many seconds ago.
        #[arg(long, default_value_t = 86_400)]
        since: u64,
        /// At most this many records.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// Decide by the first line.
    Auto,
    /// One otpauth:// URI per line.
    Uris,
    /// CSV with a header row.
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
enum PurposeArg {
    SignIn,
    PasswordReset,
    LegacyProtocol,
}

#[derive(Clone, Copy, ValueEnum)]
enum FirstFactorArg {
    Ok,
    Failed,
    None,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("starting the runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve {
                listen,
                data,
                policy,
                metrics,
                sign_in_log_mib,
                sign_in_sync_ms,
                max_connections,
                max_connections_per_address,
                max_connections_per_certificate,
            } => {
                let limits = ConnectionLimits {
                    total: max_connections,
                    per_address: max_connections_per_address,
                    per_certificate: max_connections_per_certificate,
                };
                let log = LogConfig {
                    retain_bytes: sign_in_log_mib << 20,
                    sync_every: std::time::Duration::from_millis(sign_in_sync_ms),
                    ..LogConfig::in_dir(data.join("sign-ins"))
                };
                serve(listen, &data, policy, &metrics, log, limits).await
            }
            Command::Check {
                tenant,
                user,
                ip,
                purpose,
                first_factor,
                code,
                hotp,
                next,
                sent_code,
                challenge,
                answers,
                app_password,
                device_token,
                remember,
                send_code,
                method,
                json,
                server,
                data,
            } => {
                let purpose = match purpose {
                    PurposeArg::SignIn => portvakt_wire::Purpose::SignIn,
                    PurposeArg::PasswordReset => portvakt_wire::Purpose::PasswordReset,
                    PurposeArg::LegacyProtocol => portvakt_wire::Purpose::LegacyProtocol,
                };
                let ask = if send_code {
                    Ask::SendCode(SendCode {
                        tenant: &tenant,
                        user: &user,
                        ip,
                        purpose,
                        method,
                    })
                } else {
                    let challenge = challenge.as_deref().map(parse_challenge).transpose()?;
                    let proof = if let Some(c) = &code {
                        Some(Proof::Totp(c))
                    } else if let Some(h) = &hotp {
                        Some(Proof::Hotp {
                            code: h,
                            next: next.as_deref(),
                        })
                    } else if let (Some(c), Some(challenge)) = (&sent_code, challenge) {
                        Some(Proof::Sent { challenge, code: c })
                    } else if !answers.is_empty() {
                        Some(Proof::SecurityAnswers(
                            answers.iter().map(String::as_str).collect(),
                        ))
                    } else {
                        app_password.as_deref().map(Proof::AppPassword)
                    };
                    Ask::Decide(Decide {
                        tenant: &tenant,
                        user: &user,
                        ip,
                        purpose,
                        first_factor: match first_factor {
                            FirstFactorArg::Ok => portvakt_wire::FirstFactor::Ok,
                            FirstFactorArg::Failed => portvakt_wire::FirstFactor::Failed,
                            FirstFactorArg::None => portvakt_wire::FirstFactor::None,
                        },
                        proof,
                        device_token: device_token.as_deref(),
                        remember_device: remember,
                    })
                };
                return check(server, &data, ask, json).await.map(check_exit);
            }
            Command::Admin {
                server,
                data,
                json,
                op,
            } => admin(server, &data, op, json).await,
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

/// `check`'s exit status by outcome, for scripts: 0 allow, 1 an error (no answer),
/// 2 deny, 3 challenge, 4 locked, 5 register, 6 throttled.
fn check_exit(outcome: portvakt_wire::Outcome) -> ExitCode {
    use portvakt_wire::Outcome;
    ExitCode::from(match outcome {
        Outcome::Allow => 0,
        Outcome::Deny => 2,
        Outcome::Challenge => 3,
        Outcome::Locked => 4,
        Outcome::Register => 5,
        Outcome::Throttled => 6,
    })
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number of at least 1".into()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("portvakt: {message}");
    ExitCode::FAILURE
}

/// The pepper that keys every stored digest: made once, kept in the data directory.
fn pepper(path: &Path) -> Result<Pepper, String> {
    if let Ok(bytes) = std::fs::read(path) {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("{}: must hold exactly 32 bytes", path.display()))?;
        return Ok(Pepper::new(key));
    }
    let mut key = [0u8; 32];
    portvakt_core::secret::Entropy::fill(&OsEntropy, &mut key);
    std::fs::write(path, key).map_err(|e| format!("{}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Pepper::new(key))
}

async fn serve(
    listen: SocketAddr,
    data: &Path,
    policy_file: Option<PathBuf>,
    metrics: &str,
    log_config: LogConfig,
    limits: ConnectionLimits,
) -> Result<(), String> {
    let metrics_addr = match metrics {
        "off" => None,
        addr => Some(
            addr.parse::<SocketAddr>()
                .map_err(|e| format!("--metrics {addr}: {e}"))?,
        ),
    };
    let (files, made) = ensure_dev_pki(&data.join("certs")).map_err(|e| e.to_string())?;
    let pepper = pepper(&data.join("pepper"))?;
    let policy_text = match &policy_file {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => EMBEDDED_POLICY.to_owned(),
    };
    let policy = config::load(&policy_text).map_err(|e| match &policy_file {
        Some(p) => format!("{}: {e}", p.display()),
        None => format!("embedded policy: {e}"),
    })?;
    let tenants: Vec<&str> = policy.tenants().iter().map(|t| t.name.as_str()).collect();
    let first_tenant = tenants.first().copied().unwrap_or("kommune").to_owned();
    let tenants = tenants.join(", ");
    let engine = Engine::new(policy, MemoryStore::default(), pepper, Box::new(OsEntropy));
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).map_err(|e| e.to_string())?;
    let admin = load_certs(&files.admin.0).map_err(|e| e.to_string())?;
    let admins: HashSet<String> = admin.first().map(fingerprint).into_iter().collect();
    let engine = Arc::new(engine);
    if let Some(addr) = metrics_addr {
        portvakt_server::metrics::install(addr)?;
    }
    // Every ten seconds: drop idle entries from the bounded tables, and count for the
    // metrics what the store holds.
    let housekeeping = engine.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            let now = portvakt_server::server::now();
            housekeeping.store().sweep(now);
            if metrics_addr.is_some() {
                portvakt_server::metrics::record_sizes(&housekeeping, now);
            }
        }
    });
    let (log_dir, kept) = (log_config.dir.clone(), log_config.retain_bytes);
    let log = SignInLog::open(log_config).map_err(|e| e.to_string())?;
    let service = Arc::new(Service::new(engine, policy_file.clone()).with_sign_in_log(log.clone()));
    if policy_file.is_some() {
        reload_on_hangup(service.clone())?;
    }
    let (endpoint, _task) = portvakt_server::server::start(listen, tls, admins, service, limits)
        .map_err(|e| e.to_string())?;
    let addr = endpoint.local_addr().map_err(|e| e.to_string())?;
    say!("portvakt serving QUIC (ALPN portvakt/1) on {addr}");
    say!(
        "  policy: {} (tenants: {tenants})",
        policy_file
            .as_ref()
            .map_or("embedded example".into(), |p| p.display().to_string())
    );
    say!(
        "  certificates in {}{}",
        files
            .ca
            .parent()
            .map_or(String::new(), |p| p.display().to_string()),
        if made {
            " (made now: a development CA, not for production)"
        } else {
            ""
        }
    );
    say!(
        "  frontends present {} and {}",
        files.frontend.0.display(),
        files.frontend.1.display()
    );
    say!("  administrators present {}", files.admin.0.display());
    match metrics_addr {
        Some(a) => say!("  metrics: http://{a}/metrics"),
        None => say!("  metrics: off"),
    }
    say!(
        "  sign-in log: {} (kept up to {} MiB)",
        log_dir.display(),
        kept >> 20
    );
    say!("  users are held in memory only in this version: a restart forgets them");
    say!("try, from another terminal:");
    // The address a client on this machine reaches the server at.
    let reach = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::from(([127, 0, 0, 1], listen.port()))
        }
        ip if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    };
    say!(
        "  portvakt check --server {reach} --tenant {first_tenant} --user someone@example.org --ip 203.0.113.9 --json --data {}",
        data.display()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("waiting for Ctrl-C: {e}"))?;
    endpoint.close(0u32.into(), b"shutting down");
    endpoint.wait_idle().await;
    // Every answer's record was handed over before the answer left: write and sync them.
    tokio::task::spawn_blocking(move || log.close())
        .await
        .map_err(|e| format!("closing the sign-in log: {e}"))?;
    Ok(())
}

/// Reloads the policy file on SIGHUP; a file that does not compile leaves the running
/// policy in force and says why on standard error.
#[cfg(unix)]
fn reload_on_hangup(service: Arc<Service>) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups =
        signal(SignalKind::hangup()).map_err(|e| format!("listening for SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match service.reload_policy() {
                Ok(tenants) => say!("policy reloaded on SIGHUP (tenants: {tenants})"),
                Err(e) => {
                    esay!("portvakt: policy not reloaded, the running one stays in force: {e}")
                }
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn reload_on_hangup(_: Arc<Service>) -> Result<(), String> {
    Ok(())
}

/// Draws the otpauth URI as a QR code in the terminal and/or writes it as SVG.
fn show_qr(uri: &str, svg: Option<&Path>, terminal: bool) -> Result<(), String> {
    use qrcode::render::{svg as qr_svg, unicode};
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| format!("QR code: {e}"))?;
    if terminal {
        // Light modules drawn dark and dark ones light: most terminals are dark.
        let text = code
            .render::<unicode::Dense1x2>()
            .dark_color(unicode::Dense1x2::Light)
            .light_color(unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build();
        println!("{text}");
    }
    if let Some(path) = svg {
        let image = code
            .render::<qr_svg::Color<'_>>()
            .min_dimensions(256, 256)
            .build();
        std::fs::write(path, image).map_err(|e| format!("{}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        println!("QR code written to {}", path.display());
    }
    Ok(())
}

/// What `check` asks the server.
enum Ask<'a> {
    Decide(Decide<'a>),
    SendCode(SendCode<'a>),
}

/// A challenge id as the CLI prints it: 32 hex digits.
fn parse_challenge(hex: &str) -> Result<[u8; 16], String> {
    let raw = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .map_err(|e| format!("--challenge is not hex: {e}"))?;
    raw.try_into()
        .map_err(|_| "--challenge must be 32 hex digits".to_owned())
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Connects with the certificate in `cert`, saying which file was presented if the
/// server refuses it.
async fn connect(
    server: SocketAddr,
    ca: &Path,
    (cert, key): &(PathBuf, PathBuf),
) -> Result<Client, String> {
    let tls = client_tls(ca, cert, key).map_err(|e| e.to_string())?;
    Client::builder(server, tls)
        .streams(1)
        .connect()
        .await
        .map_err(|e| presented(e, cert))
}

/// A client error in words, naming the certificate file when the server refused it.
fn presented(e: portvakt_client::ClientError, cert: &Path) -> String {
    match e {
        e @ portvakt_client::ClientError::CertificateRefused { .. } => {
            format!("{e} (from {})", cert.display())
        }
        other => other.to_string(),
    }
}

async fn check(
    server: SocketAddr,
    data: &Path,
    ask: Ask<'_>,
    json: bool,
) -> Result<portvakt_wire::Outcome, String> {
    let files = PkiFiles::in_dir(&data.join("certs"));
    let client = connect(server, &files.ca, &files.frontend).await?;
    let answer = match ask {
        Ask::Decide(request) => client.decide(request).await.map(|d| (d, None)),
        Ask::SendCode(request) => client.send_code(request).await.map(|s| {
            let decision = s.decision.clone();
            (decision, Some(s))
        }),
    };
    client.close().await;
    let (d, sent) = answer.map_err(|e| presented(e, &files.frontend.0))?;
    if json {
        let methods: Vec<serde_json::Value> = d
            .methods
            .iter()
            .map(|m| serde_json::json!({ "id": m.id, "kind": m.kind.as_str(), "hint": m.hint }))
            .collect();
        let mut object = serde_json::json!({
            "outcome": d.outcome.as_str(),
            "reason": d.reason,
            "rule": d.rule,
            "location": d.location,
            "methods": methods,
            "retry_after_s": d.retry_after.map(|r| r.as_secs()),
            "method": d.method.map(|m| m.as_str()),
        });
        if let Some(t) = &d.device_token {
            object["device_token"] =
                serde_json::json!({ "token": t.token, "expires_ms": t.expires_ms });
        }
        if let Some(s) = &sent {
            object["challenge"] = serde_json::json!(s.challenge.map(|c| hex(&c)));
            object["delivery"] =
                serde_json::json!(s.delivery.as_ref().map(|d| serde_json::json!({
                    "channel": d.channel.as_str(),
                    "destination": d.destination,
                    "code": d.code,
                    "expires_ms": d.expires_ms,
                })));
        }
        println!("{object}");
    } else {
        let mut line = format!(
            "{} ({}) rule={} location={}",
            d.outcome.as_str(),
            d.reason,
            d.rule,
            d.location
        );
        if !d.methods.is_empty() {
            let names: Vec<String> = d
                .methods
                .iter()
                .map(|m| format!("{}:{}", m.id, m.kind.as_str()))
                .collect();
            line.push_str(&format!(" methods={}", names.join(",")));
        }
        if let Some(r) = d.retry_after {
            line.push_str(&format!(" retry_after={}s", r.as_secs()));
        }
        if let Some(m) = d.method {
            line.push_str(&format!(" method={}", m.as_str()));
        }
        println!("{line}");
        if let Some(t) = &d.device_token {
            println!("device token: {}", t.token);
        }
        if let Some(s) = &sent {
            match &s.delivery {
                // What a frontend hands to its SMS, voice or mail gateway.
                Some(d) => println!(
                    "deliver {} code {} to {}",
                    d.channel.as_str(),
                    d.code,
                    d.destination
                ),
                // An unknown name gets a challenge too; nothing goes anywhere.
                None if s.challenge.is_some() => println!("nothing to deliver"),
                None => {}
            }
            if let Some(c) = s.challenge {
                println!(
                    "challenge: {} (answer with --challenge and --sent-code)",
                    hex(&c)
                );
            }
        }
    }
    Ok(d.outcome)
}

async fn admin(server: SocketAddr, data: &Path, op: AdminOp, json: bool) -> Result<(), String> {
    use portvakt_wire::admin::{Str, StrList};
    use portvakt_wire::{Admin, AdminReply};
    let files = PkiFiles::in_dir(&data.join("certs"));
    let client = connect(server, &files.ca, &files.admin).await?;
    if let AdminOp::SignIns {
        tenant,
        user,
        since,
        limit,
    } = &op
    {
        let result = sign_ins(&client, tenant, user.as_deref(), *since, *limit, json).await;
        client.close().await;
        return result;
    }
    if let AdminOp::Import {
        file,
        tenant,
        format,
        pending,
        add_methods,
        parallel,
    } = &op
    {
        let how = ImportHow {
            pending: *pending,
            add_methods: *add_methods,
            parallel: *parallel,
            json,
        };
        let result = import(&client, file, tenant.as_deref(), *format, how).await;
        client.close().await;
        return result;
    }
    let who = |w: &Who| (w.tenant.clone(), w.user.clone());
    let names: (String, String);
    let groups: Vec<String>;
    let extra: String;
    let bytes: Vec<u8>;
    let request = match &op {
        AdminOp::AddUser {
            who: w,
            groups: g,
            passwordless,
        } => {
            names = who(w);
            groups = g.clone();
            Admin::AddUser {
                tenant: Str(&names.0),
                user: Str(&names.1),
                groups: StrList(groups.iter().map(String::as_str).collect()),
                passwordless: *passwordless,
            }
        }
        AdminOp::RemoveUser { who: w } => {
            names = who(w);
            Admin::RemoveUser {
                tenant: Str(&names.0),
                user: Str(&names.1),
            }
        }
        AdminOp::EnrollTotp {
            who: w,
            algorithm,
            digits,
            period,
            ..
        } => {
            names = who(w);
            let algorithm = match algorithm.to_ascii_lowercase().as_str() {
                "sha1" => 1,
                "sha256" => 2,
                "sha512" => 3,
                other => {
                    return Err(format!(
                        "unknown algorithm {other:?}: use sha1, sha256 or sha512"
                    ));
                }
            };
            Admin::EnrollTotp {
                tenant: Str(&names.0),
                user: Str(&names.1),
                algorithm,
                digits: *digits,
                period: *period,
            }
        }
        AdminOp::Confirm {
            who: w,
            method,
            code,
        } => {
            names = who(w);
            extra = code.clone();
            Admin::ConfirmOtp {
                tenant: Str(&names.0),
                user: Str(&names.1),
                method: *method,
                code: Str(&extra),
            }
        }
        AdminOp::AddPhone {
            who: w,
            number,
            voice,
        } => {
            names = who(w);
            extra = number.clone();
            Admin::AddPhone {
                tenant: Str(&names.0),
                user: Str(&names.1),
                kind: if *voice { 4 } else { 3 },
                number: Str(&extra),
            }
        }
        AdminOp::AddSecurityKey { who: w } => {
            names = who(w);
            Admin::AddSecurityKey {
                tenant: Str(&names.0),
                user: Str(&names.1),
            }
        }
        AdminOp::RemoveAllMethods { who: w } => {
            names = who(w);
            Admin::RemoveAllMethods {
                tenant: Str(&names.0),
                user: Str(&names.1),
            }
        }
        AdminOp::Unlock { who: w } => {
            names = who(w);
            Admin::Unlock {
                tenant: Str(&names.0),
                user: Str(&names.1),
            }
        }
        AdminOp::AppPassword { who: w, label } => {
            names = who(w);
            extra = label.clone();
            Admin::CreateAppPassword {
                tenant: Str(&names.0),
                user: Str(&names.1),
                label: Str(&extra),
            }
        }
        AdminOp::SetGroups { who: w, groups: g } => {
            names = who(w);
            groups = g.clone();
            Admin::SetGroups {
                tenant: Str(&names.0),
                user: Str(&names.1),
                groups: StrList(groups.iter().map(String::as_str).collect()),
            }
        }
        AdminOp::SetPasswordless { who: w, off } => {
            names = who(w);
            Admin::SetPasswordless {
                tenant: Str(&names.0),
                user: Str(&names.1),
                passwordless: !off,
            }
        }
        AdminOp::SetOptOut { who: w, off } => {
            names = who(w);
            Admin::SetMfaOptOut {
                tenant: Str(&names.0),
                user: Str(&names.1),
                opt_out: !off,
            }
        }
        AdminOp::AddHotp {
            who: w,
            secret,
            digits,
            counter,
        } => {
            names = who(w);
            let cleaned: String = secret
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '=')
                .collect::<String>()
                .to_ascii_uppercase();
            bytes = data_encoding::BASE32_NOPAD
                .decode(cleaned.as_bytes())
                .map_err(|e| format!("--secret is not base32: {e}"))?;
            Admin::AddHotp {
                tenant: Str(&names.0),
                user: Str(&names.1),
                secret: portvakt_wire::admin::Bytes(&bytes),
                digits: *digits,
                counter: *counter,
            }
        }
        AdminOp::AddEmail { who: w, address } => {
            names = who(w);
            extra = address.clone();
            Admin::AddEmail {
                tenant: Str(&names.0),
                user: Str(&names.1),
                address: Str(&extra),
            }
        }
        AdminOp::SetSecurityAnswers { who: w, answers } => {
            names = who(w);
            groups = answers.clone();
            Admin::SetSecurityQuestions {
                tenant: Str(&names.0),
                user: Str(&names.1),
                answers: StrList(groups.iter().map(String::as_str).collect()),
            }
        }
        AdminOp::SendConfirmation { who: w, method } => {
            names = who(w);
            Admin::StartConfirmation {
                tenant: Str(&names.0),
                user: Str(&names.1),
                method: *method,
            }
        }
        AdminOp::ConfirmSent {
            who: w,
            method,
            challenge,
            code,
        } => {
            names = who(w);
            extra = code.clone();
            let challenge = parse_challenge(challenge)?;
            Admin::ConfirmSent {
                tenant: Str(&names.0),
                user: Str(&names.1),
                method: *method,
                challenge,
                code: Str(&extra),
            }
        }
        AdminOp::RemoveMethod { who: w, method } => {
            names = who(w);
            Admin::RemoveMethod {
                tenant: Str(&names.0),
                user: Str(&names.1),
                method: *method,
            }
        }
        AdminOp::SetDefaultMethod { who: w, method } => {
            names = who(w);
            Admin::SetDefaultMethod {
                tenant: Str(&names.0),
                user: Str(&names.1),
                method: *method,
            }
        }
        AdminOp::ResetDrift { who: w, method } => {
            names = who(w);
            Admin::ResetDrift {
                tenant: Str(&names.0),
                user: Str(&names.1),
                method: *method,
            }
        }
        AdminOp::RevokeAppPassword { who: w, id } => {
            names = who(w);
            Admin::RevokeAppPassword {
                tenant: Str(&names.0),
                user: Str(&names.1),
                id: *id,
            }
        }
        AdminOp::RevokeDevices { who: w, id } => {
            names = who(w);
            Admin::RevokeDevices {
                tenant: Str(&names.0),
                user: Str(&names.1),
                id: *id,
            }
        }
        AdminOp::UserInfo { who: w } => {
            names = who(w);
            Admin::UserInfo {
                tenant: Str(&names.0),
                user: Str(&names.1),
            }
        }
        AdminOp::ReloadPolicy => Admin::ReloadPolicy {},
        AdminOp::SignIns { .. } | AdminOp::Import { .. } => unreachable!("answered above"),
    };
    let answer = client.admin(request).await;
    client.close().await;
    let answer = answer.map_err(refusal_with(&files.admin.0))?;
    match answer
        .frame()
        .map_err(|e| format!("the server's answer: {e}"))?
    {
        Frame::AdminReply(_, reply) => {
            if json {
                println!("{}", reply_json(&reply)?);
                return Ok(());
            }
            match reply {
                AdminReply::Done {} => println!("done"),
                AdminReply::UserAdded { user_id } => println!("user added (id {user_id})"),
                AdminReply::MethodAdded { method } => println!("method {method} added"),
                AdminReply::TotpEnrolled {
                    method,
                    secret_base32,
                    uri,
                } => {
                    println!(
                        "method {method} pending: scan the URI (or type the secret), then confirm with the first code"
                    );
                    println!("uri: {}", uri.0);
                    println!("secret: {}", secret_base32.0);
                    if let AdminOp::EnrollTotp { qr_svg, no_qr, .. } = &op {
                        show_qr(uri.0, qr_svg.as_deref(), !no_qr)?;
                    }
                }
                AdminReply::AppPasswordCreated { id, password } => {
                    println!("app password {id}: {} (shown once)", password.0)
                }
                AdminReply::ConfirmationSent {
                    challenge,
                    destination,
                    code,
                    ..
                } => {
                    println!("deliver code {} to {}", code.0, destination.0);
                    println!("challenge: {} (for confirm-sent)", hex(&challenge));
                }
                AdminReply::ConfirmationThrottled { retry_after_s } => {
                    println!("throttled: retry in {retry_after_s} s")
                }
                AdminReply::UserDescribed {
                    user_id,
                    groups,
                    passwordless,
                    mfa_opt_out,
                    default_method,
                    methods,
                    app_passwords,
                    devices,
                } => {
                    println!("user id {user_id}; groups: {}", groups.0.join(", "));
                    println!("passwordless: {passwordless}; two-step opt-out: {mfa_opt_out}");
                    for m in methods.0 {
                        let default = if Some(m.id) == default_method {
                            " (default)"
                        } else {
                            ""
                        };
                        println!(
                            "method {}: {}, {}{default}",
                            m.id,
                            kind_name(m.kind),
                            if m.active { "active" } else { "pending" }
                        );
                    }
                    for a in app_passwords.0 {
                        println!(
                            "app password {}: {:?}, made {}",
                            a.id,
                            a.label,
                            portvakt_server::signin::rfc3339(a.created_ms)
                        );
                    }
                    for d in devices.0 {
                        println!(
                            "remembered device {}: until {}",
                            d.id,
                            portvakt_server::signin::rfc3339(d.expires_ms)
                        );
                    }
                }
                AdminReply::PolicyReloaded { tenants } => {
                    println!("policy reloaded ({tenants} tenants)")
                }
                AdminReply::SignInsFound { .. } => {
                    return Err("the server answered with a frame of the wrong kind".into());
                }
            }
            Ok(())
        }
        _ => Err("the server answered with a frame of the wrong kind".into()),
    }
}

fn kind_name(code: u8) -> &'static str {
    portvakt_wire::MethodKind::from_code(code).map_or("unknown", portvakt_wire::MethodKind::as_str)
}

/// An administrator reply as one JSON object: `reply` names its kind, the other fields
/// are the reply's own (times in milliseconds since the Unix epoch).
fn reply_json(reply: &portvakt_wire::AdminReply<'_>) -> Result<serde_json::Value, String> {
    use portvakt_wire::AdminReply;
    use serde_json::json;
    Ok(match reply {
        AdminReply::Done {} => json!({ "reply": "done" }),
        AdminReply::UserAdded { user_id } => json!({ "reply": "user_added", "user_id": user_id }),
        AdminReply::MethodAdded { method } => json!({ "reply": "method_added", "method": method }),
        AdminReply::TotpEnrolled {
            method,
            secret_base32,
            uri,
        } => json!({
            "reply": "totp_enrolled",
            "method": method,
            "uri": uri.0,
            "secret": secret_base32.0,
        }),
        AdminReply::AppPasswordCreated { id, password } => json!({
            "reply": "app_password_created",
            "id": id,
            "password": password.0,
        }),
        AdminReply::ConfirmationSent {
            challenge,
            channel,
            destination,
            code,
            expires_ms,
        } => json!({
            "reply": "confirmation_sent",
            "challenge": hex(challenge),
            "channel": kind_name(*channel),
            "destination": destination.0,
            "code": code.0,
            "expires_ms": expires_ms,
        }),
        AdminReply::ConfirmationThrottled { retry_after_s } => json!({
            "reply": "confirmation_throttled",
            "retry_after_s": retry_after_s,
        }),
        AdminReply::UserDescribed {
            user_id,
            groups,
            passwordless,
            mfa_opt_out,
            default_method,
            methods,
            app_passwords,
            devices,
        } => json!({
            "reply": "user",
            "user_id": user_id,
            "groups": groups.0,
            "passwordless": passwordless,
            "mfa_opt_out": mfa_opt_out,
            "default_method": default_method,
            "methods": methods.0.iter().map(|m| json!({
                "id": m.id,
                "kind": kind_name(m.kind),
                "active": m.active,
            })).collect::<Vec<_>>(),
            "app_passwords": app_passwords.0.iter().map(|a| json!({
                "id": a.id,
                "label": a.label,
                "created_ms": a.created_ms,
            })).collect::<Vec<_>>(),
            "devices": devices.0.iter().map(|d| json!({
                "id": d.id,
                "expires_ms": d.expires_ms,
            })).collect::<Vec<_>>(),
        }),
        AdminReply::PolicyReloaded { tenants } => {
            json!({ "reply": "policy_reloaded", "tenants": tenants })
        }
        AdminReply::SignInsFound { .. } => {
            return Err("the server answered with a frame of the wrong kind".into());
        }
    })
}

/// What to print for a failed administrator call: a refusal in the server's own words
/// ("user exists already"), anything else as the client describes it.
fn refusal(e: portvakt_client::ClientError) -> String {
    match e {
        portvakt_client::ClientError::Refused { message, .. } => message,
        other => other.to_string(),
    }
}

/// [`refusal`], naming the certificate file when the server refused the certificate.
fn refusal_with(cert: &Path) -> impl Fn(portvakt_client::ClientError) -> String + '_ {
    move |e| match e {
        e @ portvakt_client::ClientError::CertificateRefused { .. } => presented(e, cert),
        other => refusal(other),
    }
}

/// Pages through the sign-in log, printing each record as a line (or a JSON object).
async fn sign_ins(
    client: &Client,
    tenant: &str,
    user: Option<&str>,
    since: u64,
    limit: usize,
    json: bool,
) -> Result<(), String> {
    use portvakt_wire::admin::Str;
    use portvakt_wire::{Admin, AdminReply};
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX);
    let from_ms = now.saturating_sub(since.saturating_mul(1000));
    let mut cursor = 0;
    let mut shown = 0;
    let mut out = std::io::stdout().lock();
    while shown < limit {
        let page =
            u8::try_from((limit - shown).min(portvakt_wire::admin::MAX_SIGN_IN_ROWS)).unwrap_or(1);
        let answer = client
            .admin(Admin::SignIns {
                tenant: Str(tenant),
                user: Str(user.unwrap_or("")),
                from_ms,
                to_ms: u64::MAX,
                cursor,
                limit: page,
            })
            .await
            .map_err(refusal)?;
        let Ok(Frame::AdminReply(_, AdminReply::SignInsFound { rows, next })) = answer.frame()
        else {
            return Err("the server answered with a frame of the wrong kind".into());
        };
        for row in &rows.0 {
            let line = if json {
                portvakt_server::signin::to_json(row).to_string()
            } else {
                portvakt_server::signin::to_line(row)
            };
            use std::io::Write as _;
            writeln!(out, "{line}").map_err(|e| format!("standard output: {e}"))?;
        }
        shown += rows.0.len();
        match next {
            Some(n) => cursor = n,
            None => break,
        }
    }
    Ok(())
}

/// How `admin import` goes about it.
#[derive(Clone, Copy)]
struct ImportHow {
    pending: bool,
    add_methods: bool,
    parallel: usize,
    json: bool,
}

/// What importing one account changed (so a failed import can be undone) and found.
#[derive(Default)]
struct Imported {
    tenant: String,
    user: String,
    /// The user was made by this import.
    added_user: bool,
    /// The user existed and was skipped.
    skipped: bool,
    /// Methods this import added.
    methods: Vec<u32>,
    apps: usize,
    tokens: usize,
    /// Credentials the user had registered already.
    registered: usize,
}

/// Where and why the server refused part of an import.
struct ImportFailure {
    line: usize,
    user: String,
    why: String,
}

/// Imports users and their credentials from a file, all or nothing: the file is parsed
/// whole first (nothing is sent if any line has a problem), then sent with up to
/// `parallel` users in flight, with a progress bar on a terminal. If the server refuses
/// anything, no more is sent and every change already made is undone. Users that exist
/// already are skipped (or, with `add_methods`, given the file's methods), and secrets a
/// user has already are skipped, so an import can be run again.
async fn import(
    client: &Client,
    file: &Path,
    tenant: Option<&str>,
    format: FormatArg,
    how: ImportHow,
) -> Result<(), String> {
    use portvakt_server::import::{self, Format};
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let format = match format {
        FormatArg::Auto => Format::detect(&text),
        FormatArg::Uris => Format::Uris,
        FormatArg::Csv => Format::Csv,
    };
    let accounts = import::parse(&text, format, tenant).map_err(|errors| {
        let mut message = format!(
            "{}: nothing imported, {} line{} to fix:",
            file.display(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        );
        for e in errors.iter().take(20) {
            message.push_str(&format!("\n  {e}"));
        }
        if errors.len() > 20 {
            message.push_str(&format!("\n  and {} more", errors.len() - 20));
        }
        message
    })?;
    let bar = if how.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(accounts.len() as u64)
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} users  {per_sec}  {eta} left")
    {
        bar.set_style(style);
    }
    let mut running = tokio::task::JoinSet::new();
    let mut done = Vec::with_capacity(accounts.len());
    let mut failed = Vec::new();
    type Joined = Result<(Imported, Option<ImportFailure>), tokio::task::JoinError>;
    let collect = |result: Joined, done: &mut Vec<Imported>, failed: &mut Vec<ImportFailure>| {
        bar.inc(1);
        match result {
            Ok((changes, failure)) => {
                done.push(changes);
                failed.extend(failure);
            }
            Err(e) => failed.push(ImportFailure {
                line: 0,
                user: String::new(),
                why: format!("import task: {e}"),
            }),
        }
    };
    for account in accounts {
        while running.len() >= how.parallel.max(1) {
            if let Some(result) = running.join_next().await {
                collect(result, &mut done, &mut failed);
            }
        }
        // The first refusal stops the import: what is in flight finishes, nothing more
        // is sent.
        if !failed.is_empty() {
            break;
        }
        let client = client.clone();
        running.spawn(async move { import_one(&client, account, how).await });
    }
    while let Some(result) = running.join_next().await {
        collect(result, &mut done, &mut failed);
    }
    bar.finish_and_clear();
    if !failed.is_empty() {
        return Err(undo_import(client, file, &done, failed).await);
    }
    let new = done.iter().filter(|d| d.added_user);
    let (users, apps, tokens) =
        new.fold((0, 0, 0), |(u, a, t), d| (u + 1, a + d.apps, t + d.tokens));
    let extended: Vec<&Imported> = done
        .iter()
        .filter(|d| !d.added_user && !d.skipped && !d.methods.is_empty())
        .collect();
    let (more_apps, more_tokens) = extended
        .iter()
        .fold((0, 0), |(a, t), d| (a + d.apps, t + d.tokens));
    let skipped = done.iter().filter(|d| d.skipped).count();
    let registered: usize = done.iter().map(|d| d.registered).sum();
    if how.json {
        println!(
            "{}",
            serde_json::json!({
                "reply": "imported",
                "users": users,
                "apps": apps + more_apps,
                "tokens": tokens + more_tokens,
                "apps_active": !how.pending,
                "existing_users_extended": extended.len(),
                "existing_users_skipped": skipped,
                "already_registered": registered,
            })
        );
        return Ok(());
    }
    let state = if how.pending {
        "pending their first code"
    } else {
        "active"
    };
    say!(
        "imported {users} users with {apps} authenticator apps ({state}) and {tokens} hardware tokens (pending their first code)"
    );
    if !extended.is_empty() {
        say!(
            "added {more_apps} authenticator apps ({state}) and {more_tokens} hardware tokens to {} existing users",
            extended.len()
        );
    }
    if skipped > 0 {
        say!("{skipped} users existed already and were skipped (--add-methods adds to them)");
    }
    if registered > 0 {
        say!("{registered} secrets were registered for their users already and were skipped");
    }
    Ok(())
}

/// Undoes what a failed import did, newest first, and says what failed (and anything
/// that could not be undone).
async fn undo_import(
    client: &Client,
    file: &Path,
    done: &[Imported],
    mut failed: Vec<ImportFailure>,
) -> String {
    use portvakt_wire::Admin;
    use portvakt_wire::admin::Str;
    let mut stuck = Vec::new();
    for d in done.iter().rev() {
        let (tenant, user) = (Str(d.tenant.as_str()), Str(d.user.as_str()));
        if d.added_user {
            if let Err(e) = client.admin(Admin::RemoveUser { tenant, user }).await {
                stuck.push(format!("user {} was added: {}", d.user, refusal(e)));
            }
            continue;
        }
        for &method in d.methods.iter().rev() {
            if let Err(e) = client
                .admin(Admin::RemoveMethod {
                    tenant,
                    user,
                    method,
                })
                .await
            {
                stuck.push(format!(
                    "{}: method {method} was added: {}",
                    d.user,
                    refusal(e)
                ));
            }
        }
    }
    failed.sort_by_key(|f| f.line);
    let mut message = format!("{}: nothing imported, the server refused:", file.display());
    for f in &failed {
        message.push_str(&format!("\n  line {} ({}): {}", f.line, f.user, f.why));
    }
    if stuck.is_empty() {
        message.push_str("\neverything this import had done was undone");
    } else {
        message.push_str("\nthese changes could not be undone:");
        for s in &stuck {
            message.push_str(&format!("\n  {s}"));
        }
    }
    message
}

async fn import_one(
    client: &Client,
    account: portvakt_server::import::Account,
    how: ImportHow,
) -> (Imported, Option<ImportFailure>) {
    use portvakt_core::directory::DirectoryError;
    use portvakt_server::import::OtpKind;
    use portvakt_wire::admin::{Bytes, Str, StrList};
    use portvakt_wire::{Admin, AdminReply};
    let (tenant, user) = (Str(account.tenant.as_str()), Str(account.user.as_str()));
    let mut changes = Imported {
        tenant: account.tenant.clone(),
        user: account.user.clone(),
        ..Imported::default()
    };
    let fail = |line, e: portvakt_client::ClientError| ImportFailure {
        line,
        user: account.user.clone(),
        why: refusal(e),
    };
    let is = |e: &portvakt_client::ClientError, what: DirectoryError| matches!(e, portvakt_client::ClientError::Refused { message, .. } if *message == what.to_string());
    let added = client
        .admin(Admin::AddUser {
            tenant,
            user,
            groups: StrList(account.groups.iter().map(String::as_str).collect()),
            passwordless: account.passwordless,
        })
        .await;
    match added {
        Ok(_) => changes.added_user = true,
        Err(e) if is(&e, DirectoryError::UserExists) => {
            if !how.add_methods {
                changes.skipped = true;
                return (changes, None);
            }
        }
        Err(e) => return (changes, Some(fail(account.line, e))),
    }
    for (line, c) in &account.credentials {
        let secret = Bytes(c.secret.as_slice());
        let request = match c.kind {
            OtpKind::Totp {
                algorithm,
                digits,
                period,
            } => Admin::ImportTotp {
                tenant,
                user,
                secret,
                algorithm,
                digits,
                period,
                active: !how.pending,
            },
            OtpKind::Hotp { digits, counter } => Admin::AddHotp {
                tenant,
                user,
                secret,
                digits,
                counter,
            },
        };
        let added = match client.admin(request).await {
            Ok(answer) => match answer.frame() {
                Ok(Frame::AdminReply(_, AdminReply::MethodAdded { method })) => Ok(method),
                _ => Err(ImportFailure {
                    line: *line,
                    user: account.user.clone(),
                    why: "the server answered with a frame of the wrong kind".into(),
                }),
            },
            Err(e) if is(&e, DirectoryError::DuplicateSecret) => {
                changes.registered += 1;
                continue;
            }
            Err(e) => Err(fail(*line, e)),
        };
        match added {
            Ok(method) => {
                changes.methods.push(method);
                match c.kind {
                    OtpKind::Totp { .. } => changes.apps += 1,
                    OtpKind::Hotp { .. } => changes.tokens += 1,
                }
            }
            Err(failure) => return (changes, Some(failure)),
        }
    }
    (changes, None)
}
