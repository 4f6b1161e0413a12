//! `portvakt admin`: one administrator operation, its answer in words or JSON, and the
//! sign-in log read page by page.

use super::*;

/// Draws the otpauth URI as a QR code in the terminal and/or writes it as SVG.
pub(crate) fn show_qr(uri: &str, svg: Option<&Path>, terminal: bool) -> Result<(), String> {
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

/// Connects with the certificate in `cert`, saying which file was presented if the
/// server refuses it.
pub(crate) async fn connect(
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
pub(crate) fn presented(e: portvakt_client::ClientError, cert: &Path) -> String {
    match e {
        e @ portvakt_client::ClientError::CertificateRefused { .. } => {
            format!("{e} (from {})", cert.display())
        }
        other => other.to_string(),
    }
}

pub(crate) async fn admin(
    server: SocketAddr,
    data: &Path,
    op: AdminOp,
    json: bool,
) -> Result<(), String> {
    use portvakt_wire::admin::{LongStr, Str, StrList};
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
    if let AdminOp::Audit {
        tenant,
        user,
        since,
        limit,
    } = &op
    {
        let result = audit(
            &client,
            tenant.as_deref(),
            user.as_deref(),
            *since,
            *limit,
            json,
        )
        .await;
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
        AdminOp::SecurityKeyStart { who: w } => {
            names = who(w);
            Admin::SecurityKeyStart {
                tenant: Str(&names.0),
                user: Str(&names.1),
            }
        }
        AdminOp::SecurityKeyFinish { who: w, response } => {
            names = who(w);
            extra = read_input(response)?.trim().to_owned();
            Admin::SecurityKeyFinish {
                tenant: Str(&names.0),
                user: Str(&names.1),
                response: LongStr(&extra),
            }
        }
        AdminOp::EnrollPush { who: w, .. } => {
            names = who(w);
            Admin::EnrollPush {
                tenant: Str(&names.0),
                user: Str(&names.1),
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
        AdminOp::Backup { file } => {
            // The server writes the file: the path must mean the same to it.
            let path = std::path::absolute(file).map_err(|e| format!("{}: {e}", file.display()))?;
            extra = path
                .to_str()
                .ok_or_else(|| format!("{}: not UTF-8", path.display()))?
                .to_owned();
            Admin::Backup {
                path: portvakt_wire::admin::LongStr(&extra),
            }
        }
        AdminOp::SignIns { .. } | AdminOp::Import { .. } | AdminOp::Audit { .. } => {
            unreachable!("answered above")
        }
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
                AdminReply::SecurityKeyOptions { options, .. } => println!("{}", options.0),
                AdminReply::PushEnrolled {
                    method,
                    token,
                    expires_ms,
                } => {
                    let AdminOp::EnrollPush { who: w, no_qr } = &op else {
                        return Err("the server enrolled a push device unasked".into());
                    };
                    let uri =
                        push_uri(server, &(w.tenant.clone(), w.user.clone()), method, token.0);
                    println!(
                        "method {method} pending until {expires_ms} ms: pair the device with the URI (portvakt authenticator enrol URI)"
                    );
                    println!("uri: {uri}");
                    show_qr(&uri, None, !no_qr)?;
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
                AdminReply::BackedUp { bytes, files } => {
                    let to = match &op {
                        AdminOp::Backup { file } => file.display().to_string(),
                        _ => String::new(),
                    };
                    println!("backup written to {to} ({bytes} bytes, {files} files)");
                    println!(
                        "keep the master key apart from it: the backup is sealed under it and useless without it"
                    );
                }
                AdminReply::SignInsFound { .. } | AdminReply::AuditFound { .. } => {
                    return Err("the server answered with a frame of the wrong kind".into());
                }
            }
            Ok(())
        }
        _ => Err("the server answered with a frame of the wrong kind".into()),
    }
}

pub(crate) fn kind_name(code: u8) -> &'static str {
    portvakt_wire::MethodKind::from_code(code).map_or("unknown", portvakt_wire::MethodKind::as_str)
}

/// The enrolment URI of a push device.
fn push_uri(
    server: SocketAddr,
    (tenant, user): &(String, String),
    method: u32,
    token: &str,
) -> String {
    portvakt_client::device::Enrolment {
        server,
        tenant: tenant.clone(),
        user: user.clone(),
        method,
        token: token.to_owned(),
    }
    .to_uri()
}

/// An administrator reply as one JSON object: `reply` names its kind, the other fields
/// are the reply's own (times in milliseconds since the Unix epoch).
pub(crate) fn reply_json(
    reply: &portvakt_wire::AdminReply<'_>,
) -> Result<serde_json::Value, String> {
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
        AdminReply::SecurityKeyOptions {
            options,
            expires_ms,
        } => json!({
            "reply": "security_key_options",
            "options": serde_json::from_str::<serde_json::Value>(options.0)
                .unwrap_or(serde_json::Value::String(options.0.to_owned())),
            "expires_ms": expires_ms,
        }),
        AdminReply::PushEnrolled {
            method,
            token,
            expires_ms,
        } => json!({
            "reply": "push_enrolled",
            "method": method,
            "token": token.0,
            "expires_ms": expires_ms,
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
        AdminReply::BackedUp { bytes, files } => {
            json!({ "reply": "backed_up", "bytes": bytes, "files": files })
        }
        AdminReply::SignInsFound { .. } | AdminReply::AuditFound { .. } => {
            return Err("the server answered with a frame of the wrong kind".into());
        }
    })
}

/// What to print for a failed administrator call: a refusal in the server's own words
/// ("user exists already"), anything else as the client describes it.
pub(crate) fn refusal(e: portvakt_client::ClientError) -> String {
    match e {
        portvakt_client::ClientError::Refused { message, .. } => message,
        other => other.to_string(),
    }
}

/// [`refusal`], naming the certificate file when the server refused the certificate.
pub(crate) fn refusal_with(cert: &Path) -> impl Fn(portvakt_client::ClientError) -> String + '_ {
    move |e| match e {
        e @ portvakt_client::ClientError::CertificateRefused { .. } => presented(e, cert),
        other => refusal(other),
    }
}

/// Prints the lines of a log the server keeps, page by page: `fetch(cursor, size)` asks
/// for one page and gives its lines and the cursor of the next, until `limit` lines are
/// printed or the log has no more.
async fn print_pages(
    limit: usize,
    page_max: usize,
    mut fetch: impl AsyncFnMut(u64, u8) -> Result<(Vec<String>, Option<u64>), String>,
) -> Result<(), String> {
    use std::io::Write as _;
    let mut cursor = 0;
    let mut shown = 0;
    let mut out = std::io::stdout().lock();
    while shown < limit {
        let size = u8::try_from((limit - shown).min(page_max)).unwrap_or(1);
        let (lines, next) = fetch(cursor, size).await?;
        for line in &lines {
            writeln!(out, "{line}").map_err(|e| format!("standard output: {e}"))?;
        }
        shown += lines.len();
        match next {
            Some(n) => cursor = n,
            None => break,
        }
    }
    Ok(())
}

/// Pages through the sign-in log, printing each record as a line (or a JSON object).
pub(crate) async fn sign_ins(
    client: &Client,
    tenant: &str,
    user: Option<&str>,
    since: u64,
    limit: usize,
    json: bool,
) -> Result<(), String> {
    use portvakt_wire::admin::Str;
    use portvakt_wire::{Admin, AdminReply};
    let now = portvakt_server::clock::now().as_millis();
    let from_ms = now.saturating_sub(since.saturating_mul(1000));
    let max = portvakt_wire::admin::MAX_SIGN_IN_ROWS;
    print_pages(limit, max, async |cursor, limit| {
        let answer = client
            .admin(Admin::SignIns {
                tenant: Str(tenant),
                user: Str(user.unwrap_or("")),
                from_ms,
                to_ms: u64::MAX,
                cursor,
                limit,
            })
            .await
            .map_err(refusal)?;
        let Ok(Frame::AdminReply(_, AdminReply::SignInsFound { rows, next })) = answer.frame()
        else {
            return Err("the server answered with a frame of the wrong kind".into());
        };
        let lines = rows
            .0
            .iter()
            .map(|row| match json {
                true => portvakt_server::signin::to_json(row).to_string(),
                false => portvakt_server::signin::to_line(row),
            })
            .collect();
        Ok((lines, next))
    })
    .await
}

/// Pages through the audit trail, printing each event as a line (or a JSON object).
pub(crate) async fn audit(
    client: &Client,
    tenant: Option<&str>,
    user: Option<&str>,
    since: Option<u64>,
    limit: usize,
    json: bool,
) -> Result<(), String> {
    use portvakt_server::audit::Event;
    use portvakt_wire::admin::Str;
    use portvakt_wire::{Admin, AdminReply};
    let from_ms = since.map_or(0, |s| {
        portvakt_server::clock::now()
            .as_millis()
            .saturating_sub(s.saturating_mul(1000))
    });
    let max = portvakt_wire::admin::MAX_AUDIT_EVENTS;
    print_pages(limit, max, async |cursor, limit| {
        let answer = client
            .admin(Admin::Audit {
                tenant: Str(tenant.unwrap_or("")),
                user: Str(user.unwrap_or("")),
                from_ms,
                to_ms: u64::MAX,
                cursor,
                limit,
            })
            .await
            .map_err(refusal)?;
        let Ok(Frame::AdminReply(_, AdminReply::AuditFound { events, next })) = answer.frame()
        else {
            return Err("the server answered with a frame of the wrong kind".into());
        };
        let lines = events
            .0
            .iter()
            .map(|bytes| match Event::decode(bytes) {
                Ok(e) if json => e.to_json(),
                Ok(e) => e.to_line(),
                Err(e) => format!("{e} ({} bytes the store kept)", bytes.len()),
            })
            .collect();
        Ok((lines, next))
    })
    .await
}

/// `portvakt restore`: the backup checked and put in place of the data directory's store.
pub(crate) fn restore(file: &Path, data: &Path, master_key: Option<&Path>) -> Result<(), String> {
    use portvakt_store::sealed::MasterKey;
    let key = match master_key {
        Some(path) => MasterKey::load(path),
        None => MasterKey::load(&data.join("master.key")),
    }
    .map_err(|e| e.to_string())?;
    let restored = portvakt_store::durable::restore(
        file,
        &data.join("state"),
        portvakt_core::state::StoreLimits::default(),
        portvakt_server::clock::now(),
        std::sync::Arc::new(key),
    )
    .map_err(|e| e.to_string())?;
    let r = &restored.recovery;
    println!(
        "restored {} into {}: {} records and {} directory batches from its snapshot, {} entries from its log",
        file.display(),
        data.join("state").display(),
        r.snapshot_records,
        r.snapshot_batches,
        r.log_frames
    );
    if let Some(old) = &restored.replaced {
        println!(
            "the store it replaced is kept in {} (remove it when the restore is confirmed)",
            old.display()
        );
    }
    Ok(())
}
