//! `portvakt`: the server and its command line.
#![allow(clippy::disallowed_methods)] // a command-line program reads the clock

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use portvakt::client::Client;
use portvakt::entropy::OsEntropy;
use portvakt::pki::{PkiFiles, client_tls, ensure_dev_pki, fingerprint, load_certs, server_tls};
use portvakt::service::Service;
use portvakt_core::secret::Pepper;
use portvakt_core::{Engine, MemoryStore, config};
use portvakt_wire::{Decide, Frame};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    },
    /// Ask for one decision, as a frontend does.
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
        #[arg(long, conflicts_with_all = ["hotp", "app_password"])]
        code: Option<String>,
        /// A hardware token's code.
        #[arg(long, conflicts_with = "app_password")]
        hotp: Option<String>,
        /// The token's next code, to resynchronise it.
        #[arg(long, requires = "hotp")]
        next: Option<String>,
        /// An app password (legacy protocols).
        #[arg(long)]
        app_password: Option<String>,
        /// A remembered-device token.
        #[arg(long)]
        device_token: Option<String>,
        /// Remember this device after a successful second factor.
        #[arg(long)]
        remember: bool,
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
            } => serve(listen, &data, policy).await,
            Command::Check {
                tenant,
                user,
                ip,
                purpose,
                first_factor,
                code,
                hotp,
                next,
                app_password,
                device_token,
                remember,
                json,
                server,
                data,
            } => {
                let proof = match (&code, &hotp, &app_password) {
                    (Some(c), _, _) => Some(portvakt_wire::Proof::Totp(c)),
                    (_, Some(h), _) => Some(portvakt_wire::Proof::Hotp {
                        code: h,
                        next: next.as_deref(),
                    }),
                    (_, _, Some(p)) => Some(portvakt_wire::Proof::AppPassword(p)),
                    _ => None,
                };
                let request = Decide {
                    tenant: &tenant,
                    user: &user,
                    ip,
                    purpose: match purpose {
                        PurposeArg::SignIn => portvakt_wire::Purpose::SignIn,
                        PurposeArg::PasswordReset => portvakt_wire::Purpose::PasswordReset,
                        PurposeArg::LegacyProtocol => portvakt_wire::Purpose::LegacyProtocol,
                    },
                    first_factor: match first_factor {
                        FirstFactorArg::Ok => portvakt_wire::FirstFactor::Ok,
                        FirstFactorArg::Failed => portvakt_wire::FirstFactor::Failed,
                        FirstFactorArg::None => portvakt_wire::FirstFactor::None,
                    },
                    proof,
                    device_token: device_token.as_deref(),
                    remember_device: remember,
                };
                check(server, &data, request, json).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
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
) -> Result<(), String> {
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
    let tenants = tenants.join(", ");
    let engine = Engine::new(policy, MemoryStore::default(), pepper, Box::new(OsEntropy));
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).map_err(|e| e.to_string())?;
    let admin = load_certs(&files.admin.0).map_err(|e| e.to_string())?;
    let admins: HashSet<String> = admin.first().map(fingerprint).into_iter().collect();
    let service = Arc::new(Service::new(Arc::new(engine), policy_file.clone()));
    let (endpoint, _task) =
        portvakt::server::start(listen, tls, admins, service).map_err(|e| e.to_string())?;
    let addr = endpoint.local_addr().map_err(|e| e.to_string())?;
    println!("portvakt serving QUIC (ALPN portvakt/1) on {addr}");
    println!(
        "  policy: {} (tenants: {tenants})",
        policy_file
            .as_ref()
            .map_or("embedded example".into(), |p| p.display().to_string())
    );
    println!(
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
    println!(
        "  frontends present {} and {}",
        files.frontend.0.display(),
        files.frontend.1.display()
    );
    println!("  administrators present {}", files.admin.0.display());
    println!("  users are held in memory only in this version: a restart forgets them");
    println!("try, from another terminal:");
    println!(
        "  portvakt check --tenant kommune --user kari@kommune.no --ip 203.0.113.9 --json --data {}",
        data.display()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("waiting for Ctrl-C: {e}"))?;
    endpoint.close(0u32.into(), b"shutting down");
    endpoint.wait_idle().await;
    Ok(())
}

fn kind_name(k: portvakt_wire::MethodKind) -> &'static str {
    use portvakt_wire::MethodKind as K;
    match k {
        K::AuthenticatorApp => "authenticator_app",
        K::HardwareToken => "hardware_token",
        K::Sms => "sms",
        K::Voice => "voice",
        K::SecurityKey => "security_key",
        K::Email => "email",
        K::SecurityQuestions => "security_questions",
    }
}

fn outcome_name(o: portvakt_wire::Outcome) -> &'static str {
    use portvakt_wire::Outcome as O;
    match o {
        O::Allow => "allow",
        O::Deny => "deny",
        O::Challenge => "challenge",
        O::Locked => "locked",
        O::Register => "register",
        O::Throttled => "throttled",
    }
}

async fn check(
    server: SocketAddr,
    data: &Path,
    request: Decide<'_>,
    json: bool,
) -> Result<(), String> {
    let files = PkiFiles::in_dir(&data.join("certs"));
    let tls =
        client_tls(&files.ca, &files.frontend.0, &files.frontend.1).map_err(|e| e.to_string())?;
    let client = Client::connect(server, "localhost", tls)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let answer = client
        .call(&Frame::Decide(client.next_id(), request))
        .await
        .map_err(|e| e.to_string())?;
    client.close();
    let d = match Frame::decode(&answer).map_err(|e| format!("the server's answer: {e}"))? {
        Frame::Decision(_, d) => d,
        Frame::Error { message, .. } => {
            return Err(format!("the server refused the request: {message}"));
        }
        other => return Err(format!("unexpected answer: {other:?}")),
    };
    if json {
        let methods: Vec<serde_json::Value> = d
            .methods
            .iter()
            .map(|m| serde_json::json!({ "id": m.id, "kind": kind_name(m.kind), "hint": m.hint }))
            .collect();
        let mut object = serde_json::json!({
            "outcome": outcome_name(d.outcome),
            "reason": d.reason,
            "rule": d.rule,
            "location": d.location,
            "methods": methods,
            "retry_after_s": d.retry_after_s,
        });
        if let Some(t) = &d.device_token {
            object["device_token"] =
                serde_json::json!({ "token": t.token, "expires_ms": t.expires_ms });
        }
        println!("{object}");
    } else {
        let mut line = format!(
            "{} ({}) rule={} location={}",
            outcome_name(d.outcome),
            d.reason,
            d.rule,
            d.location
        );
        if !d.methods.is_empty() {
            let names: Vec<&str> = d.methods.iter().map(|m| kind_name(m.kind)).collect();
            line.push_str(&format!(" methods={}", names.join(",")));
        }
        if let Some(s) = d.retry_after_s {
            line.push_str(&format!(" retry_after={s}s"));
        }
        println!("{line}");
    }
    Ok(())
}
