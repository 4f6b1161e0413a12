//! `portvakt-load radius`: the same generated sign-ins as Access-Requests over UDP, to
//! Portvakt's RADIUS frontend or to any RADIUS server (FreeRADIUS answering from its users
//! file, as the baseline).
//!
//! Closed loop: each worker has a socket of its own and one request outstanding, as a
//! NAS's RADIUS client has per port; a request not answered within `--timeout-ms` counts
//! as a timeout and the worker goes on with the next. Every request carries a
//! Message-Authenticator (first), its user's name, a User-Password (the scenario's code,
//! or `--password` when it sends none) and the scenario's address as Calling-Station-Id;
//! every reply's authenticators are checked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portvakt_radius::{Attribute, Packet, attr, code, hide_password};
use tokio::net::UdpSocket;

use crate::report::{self, Report, Tally};
use crate::scenario::{Scenario, Users};
use crate::{CpuMarks, mark_cpu, progress, six_digits, unix_secs};

#[derive(clap::Args)]
pub(crate) struct RadiusArgs {
    /// The RADIUS server's address.
    #[arg(long, default_value = "127.0.0.1:1812")]
    server: SocketAddr,
    /// A file holding the shared secret.
    #[arg(long)]
    secret_file: PathBuf,
    /// The kind of traffic (as `run`'s).
    #[arg(long, value_enum, default_value = "office")]
    scenario: Scenario,
    /// How many users to sign in, in turn.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// The User-Password of requests whose scenario sends no code.
    #[arg(long, default_value = "")]
    password: String,
    /// Workers, each with one request outstanding.
    #[arg(long, default_value_t = 64)]
    workers: usize,
    /// How long a request waits for its reply.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up, not counted.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// The server's process id, to report its CPU time per request.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A name for the target in the report.
    #[arg(long, default_value = "radius")]
    target: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress lines on standard error.
    #[arg(long)]
    quiet: bool,
}

struct Context {
    users: Users,
    scenario: Scenario,
    password: Vec<u8>,
    secret: Vec<u8>,
    server: SocketAddr,
    timeout: Duration,
    measure_from: Instant,
    end: Instant,
    answered: Arc<AtomicU64>,
}

pub(crate) async fn run(args: RadiusArgs) -> Result<(), String> {
    if args.users == 0 || args.workers == 0 || !(args.duration > 0.0 && args.warmup >= 0.0) {
        return Err("--users and --workers at least 1, --duration positive".into());
    }
    let mut secret = std::fs::read(&args.secret_file)
        .map_err(|e| format!("{}: {e}", args.secret_file.display()))?;
    while matches!(secret.last(), Some(b'\n' | b'\r')) {
        secret.pop();
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let answered = Arc::new(AtomicU64::new(0));
    let ctx = Arc::new(Context {
        users: Users::new(0, args.users),
        scenario: args.scenario,
        password: args.password.clone().into_bytes(),
        secret,
        server: args.server,
        timeout: Duration::from_millis(args.timeout_ms),
        measure_from,
        end,
        answered: answered.clone(),
    });
    let progress = (!args.quiet).then(|| tokio::spawn(progress(answered, start, end)));
    let cpu = Arc::new(CpuMarks::default());
    let cpu_marker = tokio::spawn(mark_cpu(cpu.clone(), measure_from, end, args.server_pid));
    let mut tasks = Vec::new();
    for w in 0..args.workers {
        let ctx = ctx.clone();
        let stride = args.workers as u64;
        tasks.push(tokio::spawn(
            async move { worker(&ctx, w as u64, stride).await },
        ));
    }
    let mut tally = Tally::new();
    for t in tasks {
        tally.merge(t.await.map_err(|e| e.to_string())??);
    }
    let _ = cpu_marker.await;
    if let Some(p) = progress {
        p.abort();
    }
    let answers = tally.latency.len();
    let per_request = |cpu_s: f64| cpu_s * 1e6 / answers.max(1) as f64;
    let marks = cpu.read();
    let target: &'static str = Box::leak(args.target.into_boxed_str());
    let report = Report {
        scenario: args.scenario,
        mode: "closed",
        target,
        connections: args.workers,
        streams: 1,
        depth: 1,
        users: args.users,
        measured_s: args.duration,
        offered_per_s: None,
        achieved_per_s: answers as f64 / args.duration,
        answers,
        latency_us: report::percentiles(&tally.latency),
        outcomes: tally.outcomes,
        reasons: BTreeMap::new(),
        errors: tally.errors,
        requests_per_datagram_sent: 1.0,
        answers_per_datagram_received: 1.0,
        client_cpu_us_per_request: per_request(marks.client),
        server_cpu_us_per_request: args.server_pid.map(|_| per_request(marks.server)),
        generator_saturated: 0,
        distribution: report::distribution(&tally.latency),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        report.print();
    }
    Ok(())
}

/// One worker: requests `first`, `first + stride`, ... until the end.
async fn worker(ctx: &Context, first: u64, stride: u64) -> Result<Tally, String> {
    let local: SocketAddr = match ctx.server {
        SocketAddr::V4(_) => ([127, 0, 0, 1], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::LOCALHOST, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket
        .connect(ctx.server)
        .await
        .map_err(|e| e.to_string())?;
    let mut tally = Tally::new();
    let mut buf = vec![0u8; portvakt_radius::MAX_PACKET];
    let mut n = first;
    let mut identifier = (first % 256) as u8;
    while Instant::now() < ctx.end {
        let due = Instant::now();
        identifier = identifier.wrapping_add(1);
        let (bytes, authenticator) = request(ctx, n, identifier)?;
        socket.send(&bytes).await.map_err(|e| e.to_string())?;
        let verdict = loop {
            let Ok(got) =
                tokio::time::timeout_at((due + ctx.timeout).into(), socket.recv(&mut buf)).await
            else {
                break Err("timeout".to_owned());
            };
            let Ok(len) = got else {
                break Err("refused".to_owned());
            };
            let reply = &buf[..len];
            match Packet::decode(reply) {
                Ok(p) if p.identifier == identifier => {
                    break match Packet::verify_reply(reply, &authenticator, &ctx.secret) {
                        Ok(true) => Ok(reply_name(p.code)),
                        _ => Err("bad reply authenticator".to_owned()),
                    };
                }
                // A late reply to an earlier, timed-out request: not this one's.
                _ => {}
            }
        };
        if due >= ctx.measure_from && due < ctx.end {
            let ns = u64::try_from(due.elapsed().as_nanos()).unwrap_or(u64::MAX);
            tally.latency.saturating_record(ns.max(1_000));
            ctx.answered.fetch_add(1, Ordering::Relaxed);
            match verdict {
                Ok(name) => *tally.outcomes.entry(name).or_default() += 1,
                Err(e) => *tally.errors.entry(e).or_default() += 1,
            }
        }
        n += stride;
    }
    Ok(tally)
}

/// Request number `n`: its bytes and Request Authenticator.
fn request(ctx: &Context, n: u64, identifier: u8) -> Result<(Vec<u8>, [u8; 16]), String> {
    let attempt = ctx.users.attempt(ctx.scenario, n, unix_secs());
    let digits = attempt.code.map(six_digits);
    let password: &[u8] = match &digits {
        Some(d) => d,
        None => &ctx.password,
    };
    // Distinct for every request of the run (a NAS takes them from a random source).
    let mut authenticator = [0u8; 16];
    authenticator[..8].copy_from_slice(&n.to_be_bytes());
    authenticator[8..16].copy_from_slice(&unix_secs().to_be_bytes());
    let hidden = hide_password(password, &ctx.secret, &authenticator).map_err(|e| e.to_string())?;
    let ip = attempt.ip.to_string();
    let packet = Packet {
        code: code::ACCESS_REQUEST,
        identifier,
        authenticator,
        attributes: vec![
            Attribute {
                kind: attr::USER_NAME,
                value: attempt.user.as_bytes(),
            },
            Attribute {
                kind: attr::USER_PASSWORD,
                value: &hidden,
            },
            Attribute {
                kind: attr::CALLING_STATION_ID,
                value: ip.as_bytes(),
            },
        ],
    };
    let bytes = packet
        .sign_request(&ctx.secret)
        .map_err(|e| e.to_string())?;
    Ok((bytes, authenticator))
}

fn reply_name(code: u8) -> &'static str {
    match code {
        code::ACCESS_ACCEPT => "accept",
        code::ACCESS_REJECT => "reject",
        code::ACCESS_CHALLENGE => "challenge",
        _ => "other",
    }
}
