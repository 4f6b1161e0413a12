//! `portvakt admin import`: a file of users and secrets, checked whole, sent in
//! parallel, undone if the server refuses any of it.

use super::*;

/// How `admin import` goes about it.
#[derive(Clone, Copy)]
pub(crate) struct ImportHow {
    pub(crate) pending: bool,
    pub(crate) add_methods: bool,
    pub(crate) parallel: usize,
    pub(crate) json: bool,
}

/// What importing one account changed (so a failed import can be undone) and found.
#[derive(Default)]
pub(crate) struct Imported {
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
pub(crate) struct ImportFailure {
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
pub(crate) async fn import(
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
pub(crate) async fn undo_import(
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

pub(crate) async fn import_one(
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
