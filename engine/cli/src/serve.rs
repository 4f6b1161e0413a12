//! `portvakt serve`: the pepper, the certificates, the policy, the sign-in log and the
//! endpoint, started together.

use super::*;
use portvakt_store::sealed::{MasterKey, Purpose};

/// The pepper file's first bytes: the pepper is sealed with the master key after them.
const PEPPER_MAGIC: &[u8; 8] = b"PVPEP\0\0\x01";

/// The pepper that keys every stored digest: made once, kept in the data directory,
/// sealed with the master key. A pepper kept in the clear by an earlier version is read and
/// sealed in its place.
pub(crate) fn pepper(path: &Path, key: &MasterKey) -> Result<Pepper, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() == 32 => {
            let mut key32 = [0u8; 32];
            key32.copy_from_slice(&bytes);
            write_pepper(path, &key32, key)?;
            Ok(Pepper::new(key32))
        }
        Ok(bytes) => {
            let sealed = bytes
                .strip_prefix(PEPPER_MAGIC.as_slice())
                .ok_or_else(|| at(&"not a Portvakt pepper file"))?;
            let plain = key
                .open(Purpose::Pepper, sealed)
                .map_err(|e| at(&format!("the pepper {e}")))?;
            let key32: [u8; 32] = plain
                .try_into()
                .map_err(|_| at(&"the pepper is not 32 bytes"))?;
            Ok(Pepper::new(key32))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key32 = [0u8; 32];
            portvakt_core::secret::Entropy::fill(&OsEntropy, &mut key32);
            write_pepper(path, &key32, key)?;
            Ok(Pepper::new(key32))
        }
        Err(e) => Err(at(&e)),
    }
}

/// Writes the pepper sealed, beside the file and then over it.
fn write_pepper(path: &Path, pepper: &[u8; 32], key: &MasterKey) -> Result<(), String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut bytes = PEPPER_MAGIC.to_vec();
    bytes.extend(key.seal(Purpose::Pepper, pepper).map_err(|e| at(&e))?);
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    portvakt_store::sealed::write_private(&tmp, &bytes).map_err(|e| at(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| at(&e))
}

/// The RADIUS frontend's configuration: `--radius FILE`, none for `--radius off`, and
/// without the flag the embedded example with the embedded policy (none with a policy
/// file). Secret files are relative to the data directory.
fn radius_config(
    flag: Option<&str>,
    policy_file: bool,
    data: &Path,
) -> Result<Option<portvakt_server::frontend::radius::Config>, String> {
    use portvakt_server::frontend::radius::Config;
    let (text, source) = match flag {
        Some("off") => return Ok(None),
        None if policy_file => return Ok(None),
        None => (
            EMBEDDED_RADIUS.to_owned(),
            "the embedded RADIUS example".to_owned(),
        ),
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| format!("--radius {path}: {e}"))?,
            path.to_owned(),
        ),
    };
    Config::parse(&text, data)
        .map(Some)
        .map_err(|e| format!("{source}: {e}"))
}

/// The HTTP frontend's configuration, chosen as [`radius_config`] chooses RADIUS's.
fn http_config(
    flag: Option<&str>,
    policy_file: bool,
    data: &Path,
) -> Result<Option<portvakt_server::frontend::http::Config>, String> {
    use portvakt_server::frontend::http::Config;
    let (text, source) = match flag {
        Some("off") => return Ok(None),
        None if policy_file => return Ok(None),
        None => (
            EMBEDDED_HTTP.to_owned(),
            "the embedded HTTP example".to_owned(),
        ),
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| format!("--http {path}: {e}"))?,
            path.to_owned(),
        ),
    };
    Config::parse(&text, data)
        .map(Some)
        .map_err(|e| format!("{source}: {e}"))
}

/// Where `serve` keeps users and state, and the key that seals them.
pub(crate) struct StateOptions {
    /// Durable or in memory.
    pub(crate) store: StoreKind,
    /// The master key's file, if not the data directory's `master.key`.
    pub(crate) master_key: Option<PathBuf>,
}

/// How `serve` meets its clients: connection limits, and how push devices are told of
/// approvals.
pub(crate) struct FrontendOptions {
    /// Connections held at once.
    pub(crate) limits: ConnectionLimits,
    /// The relay push notifications are POSTed to (`http://HOST:PORT/PATH`); without it,
    /// devices wait on their list requests.
    pub(crate) push_webhook: Option<String>,
    /// A file holding the bearer token the relay expects.
    pub(crate) push_webhook_token: Option<PathBuf>,
    /// The RADIUS frontend's configuration file, `off`, or (`None`) the default.
    pub(crate) radius: Option<String>,
    /// The HTTP frontend's configuration file, `off`, or (`None`) the default.
    pub(crate) http: Option<String>,
}

pub(crate) async fn serve(
    listen: SocketAddr,
    data: &Path,
    policy_file: Option<PathBuf>,
    metrics: &str,
    log_config: LogConfig,
    frontends: FrontendOptions,
    state: StateOptions,
) -> Result<(), String> {
    let StateOptions { store, master_key } = state;
    let limits = frontends.limits;
    let metrics_addr = match metrics {
        "off" => None,
        addr => Some(
            addr.parse::<SocketAddr>()
                .map_err(|e| format!("--metrics {addr}: {e}"))?,
        ),
    };
    let (files, made) = ensure_dev_pki(&data.join("certs")).map_err(|e| e.to_string())?;
    let master = match &master_key {
        Some(path) => MasterKey::load(path),
        None => MasterKey::load_or_make(&data.join("master.key")),
    }
    .map_err(|e| e.to_string())?;
    let master = Arc::new(master);
    // A shared store keeps the deployment's pepper (sealed with the master key every node
    // shares); otherwise it is this data directory's.
    let shared = match &store {
        StoreKind::Shared(options) => {
            let clock = Box::new(|| portvakt_server::clock::now().as_millis());
            let redis =
                portvakt_store::redis::Redis::connect(options.clone(), master.clone(), clock)
                    .map_err(|e| e.to_string())?;
            redis.ping().map_err(|e| format!("--store {store}: {e}"))?;
            Some(redis)
        }
        _ => None,
    };
    let pepper = match &shared {
        Some(redis) => {
            let mut made = [0u8; 32];
            portvakt_core::secret::Entropy::fill(&OsEntropy, &mut made);
            Pepper::new(
                redis
                    .pepper(made)
                    .map_err(|e| format!("--store {store}: {e}"))?,
            )
        }
        None => pepper(&data.join("pepper"), &master)?,
    };
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
    let state_dir = data.join("state");
    // Held until the server stops: a second server or a restore on the same directory
    // is refused rather than let two writers corrupt it.
    let _held = match store {
        StoreKind::Durable => {
            Some(portvakt_store::durable::lock_dir(&state_dir).map_err(|e| e.to_string())?)
        }
        StoreKind::Memory | StoreKind::Shared(_) => None,
    };
    let mut shared_snapshot = 0;
    let (engine, state_log, found) = match &store {
        StoreKind::Shared(_) => {
            let Some(redis) = &shared else {
                unreachable!("connected above")
            };
            let started = portvakt_server::clock::instant();
            let records =
                portvakt_store::Store::Shared(portvakt_store::cas::CasStore::new(redis.clone()));
            let engine = Engine::new(policy, records, pepper, Box::new(OsEntropy))
                .with_change_log(Box::new(portvakt_store::redis::SharedLog(redis.clone())));
            let loaded = redis
                .load_directory(&engine)
                .map_err(|e| format!("--store {store}: loading the directory: {e}"))?;
            shared_snapshot = loaded.snapshot;
            let summary = format!(
                "{} users; the directory's snapshot at batch {} and {} batches after it; read in {} ms",
                engine.directory().len(),
                loaded.snapshot,
                loaded.batches,
                started.elapsed().as_millis()
            );
            (engine, None, summary)
        }
        StoreKind::Memory => (
            Engine::new(
                policy,
                MemoryStore::default().into(),
                pepper,
                Box::new(OsEntropy),
            ),
            None,
            String::new(),
        ),
        StoreKind::Durable => {
            let started = portvakt_server::clock::instant();
            let opened = portvakt_store::durable::open(
                &state_dir,
                portvakt_core::state::StoreLimits::default(),
                portvakt_server::clock::now(),
                master.clone(),
            )
            .map_err(|e| e.to_string())?;
            let (engine, wal, found) = opened
                .into_engine(policy, pepper, Box::new(OsEntropy))
                .map_err(|e| e.to_string())?;
            let mut summary = format!(
                "{} users; {} records and {} directory batches from the snapshot, {} entries from the log; read in {} ms",
                engine.directory().len(),
                found.snapshot_records,
                found.snapshot_batches,
                found.log_frames,
                started.elapsed().as_millis()
            );
            if let Some((file, offset)) = &found.cut {
                summary.push_str(&format!(
                    "; {} ended in a write the last run did not finish, cut at offset {offset}",
                    file.display()
                ));
            }
            (engine, Some(wal), summary)
        }
    };
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).map_err(|e| e.to_string())?;
    let admin = load_certs(&files.admin.0).map_err(|e| e.to_string())?;
    let admins: HashSet<String> = admin.first().map(fingerprint).into_iter().collect();
    let engine = Arc::new(engine);
    if let Some(addr) = metrics_addr {
        portvakt_server::metrics::install(addr)?;
    }
    if let Some(wal) = &state_log {
        portvakt_server::state::keep(engine.clone(), wal.clone());
    }
    if let Some(redis) = &shared {
        portvakt_server::state::keep_shared(engine.clone(), redis.clone(), shared_snapshot);
    }
    // Every ten seconds: drop idle entries from the bounded tables, and count for the
    // metrics what the store holds.
    let housekeeping = engine.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            let now = portvakt_server::clock::now();
            housekeeping.store().sweep(now);
            if metrics_addr.is_some() {
                portvakt_server::metrics::record_sizes(&housekeeping, now);
            }
        }
    });
    let (log_dir, kept) = (log_config.dir.clone(), log_config.retain_bytes);
    let log = SignInLog::open(log_config).map_err(|e| e.to_string())?;
    let mut service =
        Service::new(engine.clone(), policy_file.clone()).with_sign_in_log(log.clone());
    if let Some(wal) = &state_log {
        service = service.with_state_log(wal.clone());
    }
    if let Some(redis) = &shared {
        service = service.with_shared_store(redis.clone());
    }
    if let Some(url) = &frontends.push_webhook {
        let token = match &frontends.push_webhook_token {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("--push-webhook-token {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let webhook = portvakt_server::push::Webhook::new(url, token)
            .map_err(|e| format!("--push-webhook: {e}"))?;
        service = service.with_notifier(Box::new(webhook));
    }
    let service = Arc::new(service);
    if policy_file.is_some() {
        reload_on_hangup(service.clone())?;
    }
    let radius = match radius_config(frontends.radius.as_deref(), policy_file.is_some(), data)? {
        None => None,
        Some(config) => {
            for c in &config.clients {
                if engine.policy().tenant(&c.tenant).is_none() {
                    return Err(format!(
                        "radius: client {:?} names tenant {:?}, which the policy does not have",
                        c.name, c.tenant
                    ));
                }
            }
            let names: Vec<String> = config.clients.iter().map(|c| c.name.clone()).collect();
            let listen = config.listen;
            let (addr, task) = portvakt_server::frontend::radius::start(config, service.clone())
                .await
                .map_err(|e| {
                    format!(
                        "radius on udp {listen}: {e} (another RADIUS server there? `--radius off` runs without RADIUS, `--radius FILE` listens elsewhere)"
                    )
                })?;
            Some((addr, names, task))
        }
    };
    let mut pages_url = None;
    let http = match http_config(frontends.http.as_deref(), policy_file.is_some(), data)? {
        None => None,
        Some(mut config) => {
            if let Some(pages) = &mut config.security_info {
                pages.push_server.get_or_insert(listen);
            }
            for r in &config.realms {
                if engine.policy().tenant(&r.tenant).is_none() {
                    return Err(format!(
                        "http: realm {:?} names tenant {:?}, which the policy does not have",
                        r.name, r.tenant
                    ));
                }
            }
            pages_url = config.security_info.as_ref().map(|p| p.public_url.clone());
            let listen = config.listen;
            let http_tls = server_tls(&files.ca, &files.server.0, &files.server.1)
                .map_err(|e| e.to_string())?;
            let (addr, task) = portvakt_server::frontend::http::start(
                config,
                http_tls,
                admins.clone(),
                service.clone(),
            )
            .await
            .map_err(|e| {
                format!(
                    "http on tcp {listen}: {e} (`--http off` runs without HTTP, `--http FILE` listens elsewhere)"
                )
            })?;
            Some((addr, task))
        }
    };
    let (endpoint, _task) =
        portvakt_server::frontend::quic::endpoint::start(listen, tls, admins, service, limits)
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
    match &radius {
        Some((addr, names, _)) => say!("  RADIUS on udp {addr} (clients: {})", names.join(", ")),
        None => say!("  RADIUS: off"),
    }
    match &http {
        Some((addr, _)) => {
            say!("  HTTPS on https://{addr} (privacyIDEA's /validate/check, the JSON API /v1/)")
        }
        None => say!("  HTTP: off"),
    }
    match &pages_url {
        Some(url) => {
            say!(
                "  security info: {url}/security-info (opened with a ticket: POST /v1/security-info/ticket)"
            )
        }
        None => say!("  security info: off"),
    }
    say!(
        "  sign-in log: {} (kept up to {} MiB)",
        log_dir.display(),
        kept >> 20
    );
    match (&state_log, &store) {
        (Some(_), _) => say!(
            "  users and sign-in state: {}, kept across restarts ({found})",
            state_dir.display()
        ),
        (None, StoreKind::Shared(_)) => {
            say!("  users and sign-in state: shared in {store}, with every node on it ({found})")
        }
        (None, _) => say!(
            "  users and sign-in state: in memory only (--store memory): a restart forgets them"
        ),
    }
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
    if let Some(redis) = &shared {
        redis.stop();
    }
    if let Some(wal) = state_log {
        // A snapshot now makes the next start read one file instead of the log.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = portvakt_store::durable::snapshot(&engine, &wal) {
                esay!("portvakt: no snapshot at shutdown (the log has everything): {e}");
            }
            wal.close();
        })
        .await
        .map_err(|e| format!("closing the state log: {e}"))?;
    }
    Ok(())
}

/// Reloads the policy file on SIGHUP; a file that does not compile leaves the running
/// policy in force and says why on standard error.
#[cfg(unix)]
pub(crate) fn reload_on_hangup(service: Arc<Service>) -> Result<(), String> {
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
pub(crate) fn reload_on_hangup(_: Arc<Service>) -> Result<(), String> {
    Ok(())
}
