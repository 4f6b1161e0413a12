//! `portvakt authenticator`: a reference push device in a file, so a person can try push
//! approval in two terminals, and tests can drive it.
//!
//! The key file holds the device's identity and its Ed25519 key (PKCS#8, base64) as
//! `name=value` lines; it is written readable by its owner only.

use std::time::Duration;

use portvakt_client::device::{self, Authenticator, Enrolment, Outcome, Verdict};

use super::*;

pub(crate) async fn run(key: &Path, ca: &Path, op: AuthOp) -> Result<(), String> {
    if let AuthOp::Enrol { uri } = &op {
        return enrol(key, ca, uri).await;
    }
    let me = load(key)?;
    let client = device::connect(me.server, ca)
        .await
        .map_err(|e| e.to_string())?;
    let result = act(&me, &client, op).await;
    client.close().await;
    result
}

async fn act(me: &Authenticator, client: &Client, op: AuthOp) -> Result<(), String> {
    me.sign_in(client).await.map_err(|e| e.to_string())?;
    let answer = |approval: &str, verdict| {
        let id = parse_id("the approval", approval);
        async move {
            let outcome = me
                .answer(client, id?, verdict)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{}",
                match outcome {
                    Outcome::Approved => "approved",
                    Outcome::Denied => "denied",
                    Outcome::WrongNumber =>
                        "refused: that is not the number the sign-in screen shows",
                    Outcome::Reported =>
                        "reported: the sign-in was refused and the account locked away from trusted networks",
                }
            );
            match outcome {
                Outcome::WrongNumber => Err("wrong number".to_owned()),
                _ => Ok(()),
            }
        }
    };
    match op {
        AuthOp::Enrol { .. } => Err("enrolled above".into()),
        AuthOp::List { wait_s } => {
            let list = me
                .pending(client, Duration::from_secs(wait_s))
                .await
                .map_err(|e| e.to_string())?;
            if list.is_empty() {
                println!("no approvals waiting");
            }
            for a in list {
                println!(
                    "{} {} from {} at {} ms (expires {} ms)",
                    hex(&a.id),
                    a.purpose.map_or("sign-in", |p| p.as_str()),
                    a.location,
                    a.issued_ms,
                    a.expires_ms
                );
            }
            Ok(())
        }
        AuthOp::Approve { approval, number } => answer(&approval, Verdict::Approve(number)).await,
        AuthOp::Deny { approval } => answer(&approval, Verdict::Deny).await,
        AuthOp::Report { approval } => answer(&approval, Verdict::Report).await,
    }
}

async fn enrol(key: &Path, ca: &Path, uri: &str) -> Result<(), String> {
    if key.exists() {
        return Err(format!(
            "{} exists: a device key is never overwritten (remove it first)",
            key.display()
        ));
    }
    let e = Enrolment::from_uri(uri.trim())?;
    let client = device::connect(e.server, ca)
        .await
        .map_err(|e| e.to_string())?;
    let paired = Authenticator::enrol(&client, &e).await;
    client.close().await;
    let me = paired.map_err(|e| e.to_string())?;
    let text = format!(
        "server={}\ntenant={}\nuser={}\nmethod={}\nkey={}\n",
        me.server,
        me.tenant,
        me.user,
        me.method,
        data_encoding::BASE64.encode(me.pkcs8())
    );
    write_private(key, &text)?;
    println!(
        "paired: method {} of {}/{}, key in {}",
        me.method,
        me.tenant,
        me.user,
        key.display()
    );
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn load(path: &Path) -> Result<Authenticator, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (pair first: portvakt authenticator enrol URI)",
            path.display()
        )
    })?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .ok_or_else(|| format!("{}: no {name}", path.display()))
    };
    let pkcs8 = data_encoding::BASE64
        .decode(field("key")?.as_bytes())
        .map_err(|e| format!("{}: key: {e}", path.display()))?;
    Authenticator::from_parts(
        field("server")?
            .parse()
            .map_err(|e| format!("{}: server: {e}", path.display()))?,
        field("tenant")?,
        field("user")?,
        field("method")?
            .parse()
            .map_err(|e| format!("{}: method: {e}", path.display()))?,
        &pkcs8,
    )
    .map_err(|e| format!("{}: {e}", path.display()))
}
