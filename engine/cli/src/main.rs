//! `portvakt`: the command that serves decisions (`serve`), asks for one (`check`) and
//! administers users (`admin`), on the `portvakt-server` library.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use portvakt_client::Client;
use portvakt_core::secret::Pepper;
use portvakt_core::{MemoryStore, config};
use portvakt_server::entropy::OsEntropy;
use portvakt_server::frontend::quic::endpoint::ConnectionLimits;
use portvakt_server::frontend::quic::service::Service;
use portvakt_server::pki::{
    PkiFiles, client_tls, ensure_dev_pki, fingerprint, load_certs, server_tls,
};
use portvakt_server::signin::{LogConfig, SignInLog};
use portvakt_store::Engine;
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

// After the macros, which the modules use.
mod admin;
mod authenticator;
mod check;
mod import;
mod serve;

use admin::*;
use check::*;
use import::*;
use serve::*;

/// The policy `serve` uses when no file is given: the municipality's example.
const EMBEDDED_POLICY: &str = include_str!("../../../examples/kommune.toml");
/// The RADIUS frontend that goes with the embedded policy.
const EMBEDDED_RADIUS: &str = include_str!("../../../examples/radius.toml");
/// The HTTP frontend that goes with the embedded policy.
const EMBEDDED_HTTP: &str = include_str!("../../../examples/http.toml");

/// Where `serve` keeps users and sign-in state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// In the data directory (`state/`): kept across restarts and crashes.
    Durable,
    /// In memory only: a restart forgets every user and all state.
    Memory,
    /// In one Redis shared by every node of the deployment.
    Shared(portvakt_store::redis::Options),
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Durable => f.write_str("durable"),
            Self::Memory => f.write_str("memory"),
            Self::Shared(o) => write!(f, "redis://{}/{}", o.addr, o.prefix),
        }
    }
}

fn store_kind(s: &str) -> Result<StoreKind, String> {
    match s {
        "durable" => Ok(StoreKind::Durable),
        "memory" => Ok(StoreKind::Memory),
        url if url.starts_with("redis://") => {
            portvakt_store::redis::Options::from_url(url).map(StoreKind::Shared)
        }
        other => Err(format!(
            "{other:?}: expected durable, memory or redis://HOST:PORT[/PREFIX][?timeout_ms=N]"
        )),
    }
}

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
    /// Serve decisions over QUIC, RADIUS and HTTPS (defaults: QUIC on 127.0.0.1:4433,
    /// ./portvakt-data, the embedded municipality policy with its RADIUS and HTTPS
    /// examples, development certificates made on first start).
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
        /// Where users and sign-in state live: `durable` (in the data directory, kept
        /// across restarts and crashes), `memory` (forgotten when the server stops), or
        /// `redis://HOST:PORT[/PREFIX][?timeout_ms=N]` (shared by every node started with
        /// the same Redis, prefix and master key; calls past the timeout, 250 ms by
        /// default, fail closed).
        #[arg(long, value_parser = store_kind, default_value = "durable")]
        store: StoreKind,
        /// Tell push devices of approvals through a relay (APNs, FCM): every approval is
        /// POSTed as JSON to this URL (`http://HOST:PORT/PATH`). Without it, devices wait
        /// on their list requests.
        #[arg(long)]
        push_webhook: Option<String>,
        /// A file holding the bearer token the relay expects.
        #[arg(long, requires = "push_webhook")]
        push_webhook_token: Option<PathBuf>,
        /// The RADIUS frontend's configuration (TOML; docs/operations.md), or `off`.
        /// Without it: the embedded example (127.0.0.1:1812, loopback clients) with the
        /// embedded policy, and no RADIUS with a policy file.
        #[arg(long)]
        radius: Option<String>,
        /// The HTTP frontend's configuration (TOML; docs/http.md), or `off`. Without it:
        /// the embedded example (https://127.0.0.1:8443, loopback callers) with the
        /// embedded policy, and no HTTP with a policy file.
        #[arg(long)]
        http: Option<String>,
        /// The master key that seals credential secrets and the pepper at rest (32 bytes,
        /// readable by the server's user only); without it, `master.key` in the data
        /// directory, made on first start.
        #[arg(long)]
        master_key: Option<PathBuf>,
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
        /// A push approval (32 hex digits, as the challenge printed it): waits for the
        /// device's answer, then decides.
        #[arg(long, group = "proof")]
        approval: Option<String>,
        /// A security key's answer: a file holding the browser's `PublicKeyCredential` JSON
        /// for the options the challenge gave (`-` for standard input).
        #[arg(long, group = "proof")]
        security_key: Option<PathBuf>,
        /// With --approval: how long to wait for the device, in seconds (at most 30).
        #[arg(long, default_value_t = 30, requires = "approval", value_parser = clap::value_parser!(u64).range(0..=30))]
        wait_s: u64,
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
    /// Bring back a backup made with `portvakt admin backup`, with the server stopped.
    /// The backup is checked whole and started once under the master key before it is
    /// put in place; the store it replaces is kept beside it, renamed.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Data directory to restore into (its `state` directory is replaced).
        #[arg(long, default_value = "portvakt-data")]
        data: PathBuf,
        /// The master key the backup's server used; without it, `master.key` in the data
        /// directory.
        #[arg(long)]
        master_key: Option<PathBuf>,
    },
    /// A reference push device: pairs from an enrolment URI, lists the approvals waiting
    /// and answers them. Its key is kept in a file (readable by its owner only).
    Authenticator {
        /// The device's key file.
        #[arg(long, default_value = "portvakt-device.key", global = true)]
        key: PathBuf,
        /// The CA that signed the server's certificate; without it, the data directory's.
        #[arg(long, global = true)]
        ca: Option<PathBuf>,
        /// Data directory holding the CA.
        #[arg(long, default_value = "portvakt-data", global = true)]
        data: PathBuf,
        #[command(subcommand)]
        op: AuthOp,
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

/// What the reference authenticator does.
#[derive(Subcommand)]
enum AuthOp {
    /// Pair with the server from the URI `portvakt admin enroll-push` printed.
    Enrol {
        /// The enrolment URI (portvakt-push://enrol?...).
        uri: String,
    },
    /// List the approvals waiting (with --wait-s, wait for one).
    List {
        /// Seconds to wait for an approval when none is waiting (at most 30).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=30))]
        wait_s: u64,
    },
    /// Approve, typing the number the sign-in screen shows.
    Approve {
        /// The approval (32 hex digits, as `list` printed it).
        approval: String,
        /// The number shown on the sign-in screen.
        number: u8,
    },
    /// Refuse.
    Deny {
        /// The approval.
        approval: String,
    },
    /// Refuse and report the sign-in as not yours (locks the account away from trusted
    /// networks until an administrator or the lock's end).
    Report {
        /// The approval.
        approval: String,
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
    /// Start enrolling a push device (the app's notification): prints the enrolment URI
    /// for `portvakt authenticator enrol` (or an app) and draws it as a QR code.
    EnrollPush {
        #[command(flatten)]
        who: Who,
        /// Do not draw the QR code in the terminal.
        #[arg(long)]
        no_qr: bool,
    },
    /// Start registering a security key: prints the options for the browser's
    /// `navigator.credentials.create()` (JSON).
    SecurityKeyStart {
        #[command(flatten)]
        who: Who,
    },
    /// Finish registering a security key with the browser's answer (JSON, from a file or
    /// `-` for standard input).
    SecurityKeyFinish {
        #[command(flatten)]
        who: Who,
        /// The file holding the browser's `PublicKeyCredential` JSON.
        #[arg(long)]
        response: PathBuf,
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
    /// Write a consistent copy of the durable store (users, methods, replay and lockout
    /// state, the audit trail) to FILE while the server serves. FILE is written by the
    /// server, on its machine, and must not exist; the master key is not in it.
    Backup {
        /// The new file.
        file: PathBuf,
    },
    /// Read the audit trail: every administrator operation, oldest first (one JSON object
    /// per line with --json).
    Audit {
        /// Only this organisation's.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// From this many seconds ago (all without it).
        #[arg(long)]
        since: Option<u64>,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
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
                store,
                master_key,
                push_webhook,
                push_webhook_token,
                radius,
                http,
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
                let state = serve::StateOptions { store, master_key };
                let frontends = serve::FrontendOptions {
                    limits,
                    push_webhook,
                    push_webhook_token,
                    radius,
                    http,
                };
                serve(listen, &data, policy, &metrics, log, frontends, state).await
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
                approval,
                wait_s,
                security_key,
                json,
                server,
                data,
            } => {
                let purpose = match purpose {
                    PurposeArg::SignIn => portvakt_wire::Purpose::SignIn,
                    PurposeArg::PasswordReset => portvakt_wire::Purpose::PasswordReset,
                    PurposeArg::LegacyProtocol => portvakt_wire::Purpose::LegacyProtocol,
                };
                let key_answer = security_key.as_deref().map(read_input).transpose()?;
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
                    } else if let Some(k) = &key_answer {
                        Some(Proof::SecurityKey(k.trim()))
                    } else if !answers.is_empty() {
                        Some(Proof::SecurityAnswers(
                            answers.iter().map(String::as_str).collect(),
                        ))
                    } else {
                        app_password.as_deref().map(Proof::AppPassword)
                    };
                    let request = Decide {
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
                    };
                    match approval.as_deref() {
                        Some(a) => Ask::Await(
                            request,
                            parse_id("--approval", a)?,
                            std::time::Duration::from_secs(wait_s),
                        ),
                        None => Ask::Decide(request),
                    }
                };
                return check(server, &data, ask, json).await.map(check_exit);
            }
            Command::Admin {
                server,
                data,
                json,
                op,
            } => admin(server, &data, op, json).await,
            Command::Restore {
                file,
                data,
                master_key,
            } => restore(&file, &data, master_key.as_deref()),
            Command::Authenticator { key, ca, data, op } => {
                let ca = ca.unwrap_or_else(|| PkiFiles::in_dir(&data.join("certs")).ca);
                authenticator::run(&key, &ca, op).await
            }
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
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
