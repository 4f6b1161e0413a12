//! `portvakt-load`: drives a running Portvakt server over QUIC through `portvakt-client`
//! and reports what it measured.
//!
//! Two modes. Closed loop (no `--rate`): every worker sends its next request when the
//! last one is answered, which finds the maximum rate. Open loop (`--rate R`): requests are
//! sent on a fixed schedule whatever the server does, and each latency is measured from
//! the request's scheduled time, so a stalled server shows as latency instead of as
//! requests never sent (no coordinated omission). The first `--warmup` seconds are not
//! counted.
//!
//! `portvakt-load radius` sends the same sign-ins as RADIUS Access-Requests.
//!
//! `portvakt-load echo` runs a bare QUIC echo server with the same TLS and frame sizes, to
//! measure what the protocol costs without the engine: run the same load against it with
//! `--echo`.
#![allow(clippy::disallowed_methods)] // a load generator reads the clock, by its nature

mod echo;
mod plot;
mod radius;
mod report;
mod scenario;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use portvakt_client::{Client, ClientError, Decide, Frame, Outcome, Proof, Purpose};
use portvakt_core::Reason;
use portvakt_server::pki::{PkiFiles, client_tls};
use portvakt_wire::Admin;
use portvakt_wire::admin::{Bytes, Str, StrList};

use report::{Report, Tally, percentiles};
use scenario::{Scenario, TENANT, Users};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portvakt-load",
    version,
    about = "Load generator for Portvakt over QUIC"
)]
enum Cli {
    /// Sends sign-in decisions to a server and reports rates and latency percentiles.
    Run(RunArgs),
    /// Draws the latency distributions of earlier runs (their `--json` reports) in one SVG
    /// plot, to compare them.
    Plot {
        /// The SVG file to write.
        #[arg(long, short)]
        out: PathBuf,
        /// A title; by default one is made from the runs.
        #[arg(long)]
        title: Option<String>,
        /// JSON reports, each optionally labelled as `LABEL=FILE`.
        #[arg(required = true)]
        reports: Vec<String>,
    },
    /// Sends the same sign-ins as RADIUS Access-Requests (to Portvakt's RADIUS frontend,
    /// or to another RADIUS server as a baseline) and reports rates and percentiles.
    Radius(radius::RadiusArgs),
    /// Runs a bare QUIC echo server (same TLS and frame sizes, no engine) as a baseline.
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4434")]
        listen: SocketAddr,
        /// Data directory holding (or to hold) the development certificates.
        #[arg(long, default_value = "portvakt-data")]
        data: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The server's QUIC address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    server: SocketAddr,
    /// The server's data directory (certificates are read from its `certs/`).
    #[arg(long, default_value = "portvakt-data")]
    data: PathBuf,
    /// The kind of traffic.
    #[arg(long, value_enum, default_value = "office")]
    scenario: Scenario,
    /// How many users to sign in, in turn.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// The number of the first of them (generators aimed at several nodes of one
    /// deployment take disjoint users, as a load balancer's clients would be).
    #[arg(long, default_value_t = 0)]
    first_user: usize,
    /// Add the users (with an authenticator app and a security key each) first, using
    /// the administrator certificate. Users already there are left as they are.
    #[arg(long)]
    enroll: bool,
    /// QUIC connections.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Streams per connection.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Closed loop: requests in flight per stream.
    #[arg(long, default_value_t = 32)]
    depth: usize,
    /// Open loop at this many requests per second (all connections together).
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: requests in flight at most (all connections together). Requests due
    /// beyond it are not sent and are reported as the generator's saturation.
    #[arg(long, default_value_t = 100_000)]
    max_in_flight: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up, not counted.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// The target is `portvakt-load echo`, not a Portvakt server.
    #[arg(long)]
    echo: bool,
    /// The server's process id, to report its CPU time per request.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress lines on standard error.
    #[arg(long)]
    quiet: bool,
    /// Also draw the latency distribution as an SVG plot in this file.
    #[arg(long)]
    plot: Option<PathBuf>,
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
        match cli {
            Cli::Echo { listen, data } => echo::serve(listen, &data).await,
            Cli::Plot {
                out,
                title,
                reports,
            } => plot::from_reports(&out, title, &reports),
            Cli::Run(args) => run(args).await,
            Cli::Radius(args) => radius::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("portvakt-load: {message}");
    ExitCode::FAILURE
}

async fn run(args: RunArgs) -> Result<(), String> {
    if [
        args.users,
        args.connections,
        args.streams,
        args.depth,
        args.max_in_flight,
    ]
    .contains(&0)
    {
        return Err(
            "--users, --connections, --streams, --depth and --max-in-flight must be at least 1"
                .into(),
        );
    }
    if !(args.duration > 0.0 && args.warmup >= 0.0) {
        return Err("--duration must be positive and --warmup not negative".into());
    }
    if let Some(rate) = args.rate
        && !(rate > 0.0 && rate.is_finite())
    {
        return Err("--rate must be a positive number of requests per second".into());
    }
    let users = Arc::new(Users::new(args.first_user, args.users));
    let files = PkiFiles::in_dir(&args.data.join("certs"));
    if args.enroll && !args.echo {
        enroll(args.server, &files, &users, args.quiet).await?;
    }
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        let tls = client_tls(&files.ca, &files.frontend.0, &files.frontend.1)
            .map_err(|e| e.to_string())?;
        let client = Client::builder(args.server, tls)
            .streams(args.streams)
            .max_in_flight(1 << 20)
            .request_timeout(None)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        clients.push(client);
    }

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let answered = Arc::new(AtomicU64::new(0));
    let progress = (!args.quiet).then(|| tokio::spawn(progress(answered.clone(), start, end)));
    let cpu = Arc::new(CpuMarks::default());
    let cpu_marker = tokio::spawn(mark_cpu(cpu.clone(), measure_from, end, args.server_pid));

    let ctx = Arc::new(Context {
        users,
        scenario: args.scenario,
        measure_from,
        end,
        answered,
        sent: AtomicU64::new(0),
    });
    let tallies = match args.rate {
        None => closed_loop(&clients, &ctx, args.streams * args.depth).await,
        Some(rate) => open_loop(&clients, &ctx, rate, args.streams, args.max_in_flight).await,
    };
    let mut tally = Tally::new();
    for t in tallies {
        tally.merge(t);
    }
    let _ = cpu_marker.await;
    if let Some(p) = progress {
        p.abort();
    }
    let (mut tx, mut rx) = (0, 0);
    for c in &clients {
        if let Some(stats) = c.connection_stats() {
            tx += stats.udp_tx.datagrams;
            rx += stats.udp_rx.datagrams;
        }
        c.close().await;
    }
    let sent_total = ctx.sent.load(Ordering::Relaxed).max(1) as f64;

    let answers = tally.latency.len();
    let measured_s = args.duration;
    let per_request = |cpu_s: f64| cpu_s * 1e6 / answers.max(1) as f64;
    let marks = cpu.read();
    let saturated = tally.errors.get(SATURATED).copied().unwrap_or(0);
    let report = Report {
        scenario: args.scenario,
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        target: if args.echo { "echo" } else { "portvakt" },
        connections: args.connections,
        streams: args.streams,
        depth: if args.rate.is_some() { 0 } else { args.depth },
        users: args.users,
        measured_s,
        offered_per_s: args.rate,
        achieved_per_s: answers as f64 / measured_s,
        answers,
        latency_us: percentiles(&tally.latency),
        outcomes: tally.outcomes,
        reasons: tally.reasons,
        errors: tally.errors,
        requests_per_datagram_sent: sent_total / tx.max(1) as f64,
        answers_per_datagram_received: sent_total / rx.max(1) as f64,
        client_cpu_us_per_request: per_request(marks.client),
        server_cpu_us_per_request: args.server_pid.map(|_| per_request(marks.server)),
        generator_saturated: saturated,
        distribution: report::distribution(&tally.latency),
    };
    if report.generator_saturated > 0 {
        eprintln!(
            "portvakt-load: {}",
            report::saturation_warning(report.generator_saturated)
        );
    }
    if let Some(path) = &args.plot {
        let series = [plot::Series::of(&report, None)];
        std::fs::write(path, plot::svg(&series, &plot::title(&series)))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
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

/// What every worker shares.
struct Context {
    users: Arc<Users>,
    scenario: Scenario,
    measure_from: Instant,
    end: Instant,
    answered: Arc<AtomicU64>,
    /// Requests sent over the whole run, warm-up included.
    sent: AtomicU64,
}

impl Context {
    /// Records one answered (or failed) request that was due at `due`.
    fn record(&self, tally: &mut Tally, due: Instant, result: Result<Answered, ClientError>) {
        if due < self.measure_from || due >= self.end {
            return;
        }
        let ns = u64::try_from(due.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Past the histogram's hour the value is clamped to it rather than lost.
        tally.latency.saturating_record(ns.max(1_000));
        self.answered.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(answer) => {
                *tally.outcomes.entry(answer.outcome.as_str()).or_default() += 1;
                *tally.reasons.entry(answer.reason).or_default() += 1;
            }
            Err(e) => *tally.errors.entry(error_kind(&e)).or_default() += 1,
        }
    }

    /// Counts a request due at `due` that the generator could not send.
    fn unsent(&self, tally: &mut Tally, due: Instant) {
        if due >= self.measure_from && due < self.end {
            *tally.errors.entry(SATURATED.to_owned()).or_default() += 1;
        }
    }
}

fn error_kind(e: &ClientError) -> String {
    match e {
        ClientError::Refused { code, .. } => format!("refused ({})", code.as_str()),
        ClientError::Closed(_) => "connection lost".into(),
        ClientError::Timeout(_) => "timeout".into(),
        other => other.to_string(),
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sends request number `n` of the run and returns the decision's outcome.
async fn one(client: &Client, ctx: &Context, n: u64) -> Result<Answered, ClientError> {
    let attempt = ctx.users.attempt(ctx.scenario, n, unix_secs());
    let digits = attempt.code.map(six_digits);
    let request = Decide {
        tenant: TENANT,
        user: attempt.user,
        ip: attempt.ip,
        purpose: Purpose::SignIn,
        first_factor: attempt.first_factor,
        proof: digits
            .as_ref()
            .and_then(|d| std::str::from_utf8(d).ok())
            .map(Proof::Totp),
        device_token: None,
        remember_device: false,
    };
    ctx.sent.fetch_add(1, Ordering::Relaxed);
    let answer = client.call(&Frame::Decide(0, request)).await?;
    match answer.frame()? {
        Frame::Decision(_, d) => Ok(Answered {
            outcome: d.outcome,
            reason: Reason::from_code(d.reason).map_or("(unknown reason)", Reason::as_str),
        }),
        _ => Err(ClientError::Unexpected("not a decision".into())),
    }
}

/// What a decision said, for the tally.
struct Answered {
    outcome: Outcome,
    reason: &'static str,
}

/// A code as the six ASCII digits a user types.
fn six_digits(code: u32) -> [u8; 6] {
    let mut d = [b'0'; 6];
    let mut c = code % 1_000_000;
    for b in d.iter_mut().rev() {
        *b = b'0' + (c % 10) as u8;
        c /= 10;
    }
    d
}

/// Every connection runs `workers` loops, each sending its next request when the last
/// is answered.
async fn closed_loop(clients: &[Client], ctx: &Arc<Context>, workers: usize) -> Vec<Tally> {
    let stride = (clients.len() * workers) as u64;
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        for w in 0..workers {
            let (client, ctx) = (client.clone(), ctx.clone());
            let first = (c * workers + w) as u64;
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut n = first;
                loop {
                    let due = Instant::now();
                    if due >= ctx.end {
                        break;
                    }
                    let result = one(&client, &ctx, n).await;
                    ctx.record(&mut tally, due, result);
                    n += stride;
                }
                tally
            }));
        }
    }
    let mut tallies = Vec::new();
    for t in tasks {
        if let Ok(t) = t.await {
            tallies.push(t);
        }
    }
    tallies
}

/// A pacing thread releases requests on schedule, round `senders` tasks per connection;
/// each task sends what it is given at once and records each answer's latency from the
/// time the request was due. Several tasks per connection let the generator use every
/// core, so it does not fall behind the schedule itself.
///
/// Nothing grows without bound: a task holds at most `max_in_flight / tasks` requests in
/// flight, and the pacer hands over at most [`LANE_BATCHES`] batches a task has not taken
/// yet. A request due when either is full is not sent; it is counted under
/// [`SATURATED`], and the report says the run measured the generator, not the server.
async fn open_loop(
    clients: &[Client],
    ctx: &Arc<Context>,
    rate: f64,
    senders: usize,
    max_in_flight: usize,
) -> Vec<Tally> {
    let lanes_total = clients.len() * senders;
    let cap = (max_in_flight / lanes_total).max(1);
    let mut lanes = Vec::new();
    let mut tasks = Vec::new();
    for client in clients.iter().flat_map(|c| std::iter::repeat_n(c, senders)) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(u64, Instant)>>(LANE_BATCHES);
        lanes.push(tx);
        let (client, ctx) = (client.clone(), ctx.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut in_flight = FuturesUnordered::new();
            let mut open = true;
            while open || !in_flight.is_empty() {
                tokio::select! {
                    Some((due, result)) = in_flight.next(), if !in_flight.is_empty() => {
                        ctx.record(&mut tally, due, result);
                    }
                    batch = rx.recv(), if open => match batch {
                        Some(batch) => {
                            for (n, due) in batch {
                                if in_flight.len() >= cap {
                                    ctx.unsent(&mut tally, due);
                                    continue;
                                }
                                let (client, ctx) = (client.clone(), ctx.clone());
                                in_flight.push(async move { (due, one(&client, &ctx, n).await) });
                            }
                        }
                        None => open = false,
                    },
                }
            }
            tally
        }));
    }
    let (start, ctx_pacer) = (Instant::now(), ctx.clone());
    let pacer = std::thread::spawn(move || pace(lanes, rate, start, &ctx_pacer));
    let mut tallies = Vec::new();
    for t in tasks {
        if let Ok(t) = t.await {
            tallies.push(t);
        }
    }
    if let Ok(t) = pacer.join() {
        tallies.push(t);
    }
    tallies
}

/// Batches of requests the pacer may queue for one sender task before it counts them as
/// not sent.
const LANE_BATCHES: usize = 1024;

/// The error under which requests the generator could not send on time are counted.
const SATURATED: &str = "not sent: generator saturated";

/// Releases request `n` at `start + n / rate` until the end, waking at most every 100 us.
/// Returns the requests it could not hand over.
fn pace(
    lanes: Vec<tokio::sync::mpsc::Sender<Vec<(u64, Instant)>>>,
    rate: f64,
    start: Instant,
    ctx: &Context,
) -> Tally {
    let mut unsent = Tally::new();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut n: u64 = 0;
    let mut lane = 0;
    loop {
        let now = Instant::now();
        if now >= ctx.end {
            return unsent;
        }
        let mut batches: Vec<Vec<(u64, Instant)>> = vec![Vec::new(); lanes.len()];
        loop {
            let due = start + interval.mul_f64(n as f64);
            if due > now || due >= ctx.end {
                break;
            }
            if let Some(b) = batches.get_mut(lane) {
                b.push((n, due));
            }
            lane = (lane + 1) % lanes.len();
            n += 1;
        }
        for (tx, batch) in lanes.iter().zip(batches) {
            if batch.is_empty() {
                continue;
            }
            match tx.try_send(batch) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(batch)) => {
                    for (_, due) in batch {
                        ctx.unsent(&mut unsent, due);
                    }
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return unsent,
            }
        }
        let next = start + interval.mul_f64(n as f64);
        std::thread::sleep(
            next.saturating_duration_since(Instant::now())
                .min(Duration::from_micros(100)),
        );
    }
}

/// CPU seconds of this process and the server's, taken when measuring starts and ends.
#[derive(Default)]
struct CpuMarks(std::sync::Mutex<[f64; 4]>);

struct CpuUsed {
    client: f64,
    server: f64,
}

impl CpuMarks {
    fn read(&self) -> CpuUsed {
        let m = self.0.lock().map(|m| *m).unwrap_or([f64::NAN; 4]);
        CpuUsed {
            client: m[1] - m[0],
            server: m[3] - m[2],
        }
    }
}

async fn mark_cpu(marks: Arc<CpuMarks>, from: Instant, to: Instant, server: Option<u32>) {
    let sample = || {
        (
            portvakt_bench::process_cpu(),
            server.map_or(f64::NAN, portvakt_bench::process_cpu_of),
        )
    };
    tokio::time::sleep_until(from.into()).await;
    let (c0, s0) = sample();
    tokio::time::sleep_until(to.into()).await;
    let (c1, s1) = sample();
    if let Ok(mut m) = marks.0.lock() {
        *m = [c0, c1, s0, s1];
    }
}

async fn progress(answered: Arc<AtomicU64>, start: Instant, end: Instant) {
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = answered.load(Ordering::Relaxed);
        eprintln!(
            "[{:>4.0} s of {:.0}] {} answers counted, {}/s",
            start.elapsed().as_secs_f64(),
            (end - start).as_secs_f64(),
            now,
            now - last
        );
        last = now;
    }
}

/// Adds the users, each with an authenticator app (active) and a security key, since the
/// embedded policy asks for two methods.
async fn enroll(
    server: SocketAddr,
    files: &PkiFiles,
    users: &Arc<Users>,
    quiet: bool,
) -> Result<(), String> {
    let tls = client_tls(&files.ca, &files.admin.0, &files.admin.1).map_err(|e| e.to_string())?;
    let admin = Client::builder(server, tls)
        .max_in_flight(4096)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut added = 0usize;
    let mut next = 0usize;
    let n = users.len();
    while next < n || !pending.is_empty() {
        while next < n && pending.len() < 512 {
            let (admin, users, i) = (admin.clone(), users.clone(), next);
            pending.push(async move { enroll_one(&admin, &users, i).await });
            next += 1;
        }
        if let Some(result) = pending.next().await {
            if result? {
                added += 1;
            }
            let done = next - pending.len();
            if !quiet && done.is_multiple_of((n / 10).max(1)) {
                eprintln!("enrolling: {done} of {n}");
            }
        }
    }
    admin.close().await;
    if !quiet {
        eprintln!(
            "enrolled {added} new users ({} were there) in {:.1} s",
            n - added,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn enroll_one(admin: &Client, users: &Users, i: usize) -> Result<bool, String> {
    let user = users.name(i);
    let add = admin
        .admin(Admin::AddUser {
            tenant: Str(TENANT),
            user: Str(user),
            groups: StrList(Vec::new()),
            passwordless: false,
        })
        .await;
    match add {
        Ok(_) => {}
        Err(ClientError::Refused { message, .. }) if message.contains("exists") => {
            return Ok(false);
        }
        Err(e) => return Err(format!("adding {user}: {e}")),
    }
    let secret = scenario::secret(users.number(i));
    admin
        .admin(Admin::ImportTotp {
            tenant: Str(TENANT),
            user: Str(user),
            secret: Bytes(&secret),
            algorithm: 1,
            digits: 6,
            period: 30,
            active: true,
        })
        .await
        .map_err(|e| format!("enrolling {user}'s app: {e}"))?;
    admin
        .admin(Admin::AddSecurityKey {
            tenant: Str(TENANT),
            user: Str(user),
        })
        .await
        .map_err(|e| format!("adding {user}'s security key: {e}"))?;
    Ok(true)
}
