//! Reading users and their authenticator secrets from files: one `otpauth://` URI per
//! line, as authenticator apps and provisioning systems export them, or CSV.
//!
//! Parsing is all-or-nothing and needs no server: every line is checked, every problem is
//! reported with its line number, and only a file without problems is imported. Secrets
//! are zeroised when dropped and never printed.

use std::collections::HashMap;
use std::fmt;

use zeroize::Zeroizing;

/// The largest secret accepted, in bytes (the protocol's limit).
pub const MAX_SECRET: usize = 128;
/// The smallest secret accepted, in bytes (80 bits; RFC 4226 asks for 128 and more).
pub const MIN_SECRET: usize = 10;

/// What kind of file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One `otpauth://` URI per line; blank lines and lines starting with `#` are skipped.
    Uris,
    /// CSV with a header row (see [`parse`]).
    Csv,
}

impl Format {
    /// URIs if the first line that is not blank or a comment is one, else CSV.
    pub fn detect(text: &str) -> Self {
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'));
        match first {
            Some(l) if starts_with_ignore_case(l, "otpauth://") => Self::Uris,
            _ => Self::Csv,
        }
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// An OTP secret and how codes are made from it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The shared secret.
    pub secret: Zeroizing<Vec<u8>>,
    /// TOTP or HOTP, and their parameters.
    pub kind: OtpKind,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("secret", &"<redacted>")
            .field("kind", &self.kind)
            .finish()
    }
}

/// TOTP or HOTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtpKind {
    /// Time-based (an authenticator app).
    Totp {
        /// The protocol's algorithm code: 1 SHA-1, 2 SHA-256, 3 SHA-512.
        algorithm: u8,
        /// Code length.
        digits: u8,
        /// Step in seconds.
        period: u16,
    },
    /// Counter-based (a hardware token; SHA-1).
    Hotp {
        /// Code length.
        digits: u8,
        /// The token's counter now.
        counter: u64,
    },
}

/// An `otpauth://` URI, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtpUri {
    /// The issuer, from the `issuer` parameter or the label's prefix.
    pub issuer: Option<String>,
    /// The account name (the label after the issuer).
    pub account: String,
    /// The secret and parameters.
    pub credential: Credential,
}

/// Reads one `otpauth://totp/...` or `otpauth://hotp/...` URI (the key-URI format
/// authenticator apps share). Parameters other than those it knows (such as `image`)
/// are ignored.
pub fn parse_uri(uri: &str) -> Result<OtpUri, String> {
    let uri = uri.trim();
    if !starts_with_ignore_case(uri, "otpauth://") {
        return Err("does not start with otpauth://".into());
    }
    let rest = uri.get("otpauth://".len()..).unwrap_or_default();
    let (kind, rest) = rest.split_once('/').ok_or("no type (totp or hotp)")?;
    let hotp = match kind.to_ascii_lowercase().as_str() {
        "totp" => false,
        "hotp" => true,
        other => return Err(format!("unknown type {other:?} (totp or hotp)")),
    };
    let (label, query) = rest.split_once('?').ok_or("no parameters (secret=...)")?;
    let label = percent_decode(label).map_err(|e| format!("label: {e}"))?;
    let (label_issuer, account) = match label.split_once(':') {
        Some((issuer, account)) => (Some(issuer.trim().to_owned()), account.trim().to_owned()),
        None => (None, label.trim().to_owned()),
    };
    if account.is_empty() {
        return Err("no account name in the label".into());
    }
    let mut params: HashMap<String, String> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = k.to_ascii_lowercase();
        let value = percent_decode(v).map_err(|e| format!("{key}: {e}"))?;
        if params.insert(key.clone(), value).is_some() {
            return Err(format!("parameter {key} given twice"));
        }
    }
    let issuer = match (label_issuer, params.remove("issuer")) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "the label's issuer {a:?} and the issuer parameter {b:?} differ"
            ));
        }
        (a, b) => a.or(b).filter(|i| !i.is_empty()),
    };
    let secret = decode_secret(params.get("secret").ok_or("no secret")?)?;
    let algorithm = match params.get("algorithm").map(|a| a.to_ascii_uppercase()) {
        None => 1,
        Some(a) if a == "SHA1" => 1,
        Some(a) if a == "SHA256" => 2,
        Some(a) if a == "SHA512" => 3,
        Some(a) => return Err(format!("unknown algorithm {a:?} (SHA1, SHA256, SHA512)")),
    };
    let digits = match params.get("digits") {
        None => 6,
        Some(d) => number(d, "digits").and_then(digits_in_range)?,
    };
    let kind = if hotp {
        if algorithm != 1 {
            return Err("hardware tokens (hotp) are SHA1 only".into());
        }
        let counter = number(
            params.get("counter").ok_or("hotp needs a counter")?,
            "counter",
        )?;
        OtpKind::Hotp { digits, counter }
    } else {
        let period = match params.get("period") {
            None => 30,
            Some(p) => number(p, "period").and_then(period_in_range)?,
        };
        OtpKind::Totp {
            algorithm,
            digits,
            period,
        }
    };
    Ok(OtpUri {
        issuer,
        account,
        credential: Credential { secret, kind },
    })
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{what} is not a number in range: {s:?}"))
}

fn digits_in_range(d: u8) -> Result<u8, String> {
    if (6..=8).contains(&d) {
        Ok(d)
    } else {
        Err(format!("digits must be 6, 7 or 8, not {d}"))
    }
}

fn period_in_range(p: u16) -> Result<u16, String> {
    if (10..=120).contains(&p) {
        Ok(p)
    } else {
        Err(format!("period must be 10 to 120 seconds, not {p}"))
    }
}

/// Base32 as people and apps write it: any case, spaces and hyphens between groups,
/// padding optional.
fn decode_secret(s: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let clean: Zeroizing<String> = Zeroizing::new(
        s.chars()
            .filter(|c| !matches!(c, ' ' | '-' | '='))
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    let bytes = data_encoding::BASE32_NOPAD
        .decode(clean.as_bytes())
        .map_err(|_| "the secret is not base32".to_owned())?;
    let bytes = Zeroizing::new(bytes);
    if !(MIN_SECRET..=MAX_SECRET).contains(&bytes.len()) {
        return Err(format!(
            "the secret is {} bytes; it must be {MIN_SECRET} to {MAX_SECRET}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// `%XX` escapes to bytes, which must then be UTF-8. A `+` stays a `+`.
fn percent_decode(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next(), bytes.next()];
            let [Some(h), Some(l)] = hex else {
                return Err("a % escape is cut short".into());
            };
            let value = (hex_digit(h), hex_digit(l));
            let (Some(h), Some(l)) = value else {
                return Err("a % escape is not two hex digits".into());
            };
            out.push(h << 4 | l);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once unescaped".into())
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// One user to import: who, and the credentials to give them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Organisation.
    pub tenant: String,
    /// User name.
    pub user: String,
    /// Groups (CSV only).
    pub groups: Vec<String>,
    /// A passwordless account (CSV only).
    pub passwordless: bool,
    /// The line that named the user first.
    pub line: usize,
    /// Credentials, each with its line.
    pub credentials: Vec<(usize, Credential)>,
}

/// A problem on one line of an import file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number (for CSV, the record's line).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Reads an import file. `tenant`, when given, is the tenant of every account: a CSV
/// `tenant` cell must then name the same one or be empty, while a URI's issuer, which is
/// only a label for the app, gives way to it. Without `tenant`, the cell or the issuer
/// names the tenant.
///
/// CSV has a header row naming its columns, in any order: `user` (required), `tenant`,
/// `groups` (separated by `;`), `passwordless` (`true`/`false`), and either `uri` (an
/// `otpauth://` URI) or `secret` (base32) with `type` (`totp`, the default, or `hotp`),
/// `algorithm`, `digits`, `period` and `counter`. Empty cells are absent values; a row
/// without a secret or URI adds the user only. Several lines may name the same user to
/// give them several credentials.
///
/// Returns the accounts in the order they first appear, or every problem found.
pub fn parse(
    text: &str,
    format: Format,
    tenant: Option<&str>,
) -> Result<Vec<Account>, Vec<LineError>> {
    let mut book = Book::default();
    match format {
        Format::Uris => {
            for (i, line) in text.lines().enumerate() {
                let line_no = i + 1;
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                match parse_uri(l) {
                    Ok(uri) => {
                        let Some(t) = tenant.map(str::to_owned).or(uri.issuer) else {
                            book.error(
                                line_no,
                                "no tenant: give --tenant, or an issuer in the URI",
                            );
                            continue;
                        };
                        book.add(
                            line_no,
                            t,
                            uri.account,
                            Vec::new(),
                            false,
                            Some(uri.credential),
                        );
                    }
                    Err(e) => book.error(line_no, e),
                }
            }
        }
        Format::Csv => parse_csv(text, tenant, &mut book),
    }
    book.finish()
}

#[derive(Default)]
struct Book {
    accounts: Vec<Account>,
    index: HashMap<(String, String), usize>,
    errors: Vec<LineError>,
}

impl Book {
    fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(LineError {
            line,
            message: message.into(),
        });
    }

    fn add(
        &mut self,
        line: usize,
        tenant: String,
        user: String,
        groups: Vec<String>,
        passwordless: bool,
        credential: Option<Credential>,
    ) {
        for (what, name) in [("tenant", &tenant), ("user", &user)] {
            if let Err(e) = portvakt_core::name::validate(name) {
                return self.error(line, format!("{what}: {e}"));
            }
        }
        if let Some(g) = groups
            .iter()
            .find(|g| portvakt_core::name::validate(g).is_err())
        {
            return self.error(line, format!("group {g:?} is not a usable name"));
        }
        let key = (tenant.clone(), user.clone());
        let i = match self.index.get(&key) {
            Some(&i) => {
                let first = &self.accounts[i];
                if (!groups.is_empty() && groups != first.groups)
                    || (passwordless && !first.passwordless)
                {
                    return self.error(
                        line,
                        format!(
                            "{user}: groups or passwordless differ from line {}",
                            first.line
                        ),
                    );
                }
                i
            }
            None => {
                self.accounts.push(Account {
                    tenant,
                    user,
                    groups,
                    passwordless,
                    line,
                    credentials: Vec::new(),
                });
                self.index.insert(key, self.accounts.len() - 1);
                self.accounts.len() - 1
            }
        };
        if let (Some(c), Some(account)) = (credential, self.accounts.get_mut(i)) {
            account.credentials.push((line, c));
        }
    }

    fn finish(self) -> Result<Vec<Account>, Vec<LineError>> {
        if self.errors.is_empty() {
            Ok(self.accounts)
        } else {
            Err(self.errors)
        }
    }
}

const COLUMNS: &[&str] = &[
    "tenant",
    "user",
    "groups",
    "passwordless",
    "uri",
    "secret",
    "type",
    "algorithm",
    "digits",
    "period",
    "counter",
];

fn parse_csv(text: &str, tenant: Option<&str>, book: &mut Book) {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_ascii_lowercase).collect(),
        Err(e) => return book.error(1, format!("header: {e}")),
    };
    for (i, name) in header.iter().enumerate() {
        if !COLUMNS.contains(&name.as_str()) {
            return book.error(
                1,
                format!(
                    "unknown column {name:?}; columns are {}",
                    COLUMNS.join(", ")
                ),
            );
        }
        if header[..i].contains(name) {
            return book.error(1, format!("column {name:?} appears twice"));
        }
    }
    if !header.iter().any(|h| h == "user") {
        return book.error(1, "no user column");
    }
    if header.iter().any(|h| h == "uri") && header.iter().any(|h| h == "secret") {
        return book.error(1, "give a uri column or a secret column, not both");
    }
    let col = |name: &str| header.iter().position(|h| h == name);
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e
                    .position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                book.error(line, e.to_string());
                continue;
            }
        };
        let line = record
            .position()
            .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
        let cell = |name: &str| {
            col(name)
                .and_then(|i| record.get(i))
                .filter(|v| !v.is_empty())
        };
        match csv_row(&cell, tenant) {
            Ok((t, user, groups, passwordless, credential)) => {
                book.add(line, t, user, groups, passwordless, credential)
            }
            Err(e) => book.error(line, e),
        }
    }
}

type Row = (String, String, Vec<String>, bool, Option<Credential>);

fn csv_row<'r>(
    cell: &dyn Fn(&str) -> Option<&'r str>,
    tenant: Option<&str>,
) -> Result<Row, String> {
    let user = cell("user").ok_or("no user")?.to_owned();
    let t = match (tenant, cell("tenant")) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!("tenant {b:?}, but --tenant says {a:?}"));
        }
        (a, b) => b
            .or(a)
            .ok_or("no tenant: give --tenant or a tenant column")?,
    };
    let groups = cell("groups").map_or_else(Vec::new, |g| {
        g.split(';')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let passwordless = match cell("passwordless").map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "no" | "0") => false,
        Some("true" | "yes" | "1") => true,
        Some(other) => return Err(format!("passwordless must be true or false, not {other:?}")),
    };
    let credential = if let Some(uri) = cell("uri") {
        Some(parse_uri(uri)?.credential)
    } else if let Some(secret) = cell("secret") {
        let secret = decode_secret(secret)?;
        let digits =
            cell("digits").map_or(Ok(6), |d| number(d, "digits").and_then(digits_in_range))?;
        let kind = match cell("type").map(str::to_ascii_lowercase).as_deref() {
            None | Some("totp") => OtpKind::Totp {
                algorithm: match cell("algorithm").map(str::to_ascii_uppercase).as_deref() {
                    None | Some("SHA1") => 1,
                    Some("SHA256") => 2,
                    Some("SHA512") => 3,
                    Some(a) => {
                        return Err(format!("unknown algorithm {a:?} (SHA1, SHA256, SHA512)"));
                    }
                },
                digits,
                period: cell("period")
                    .map_or(Ok(30), |p| number(p, "period").and_then(period_in_range))?,
            },
            Some("hotp") => {
                if cell("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("sha1")) {
                    return Err("hardware tokens (hotp) are SHA1 only".into());
                }
                OtpKind::Hotp {
                    digits,
                    counter: cell("counter").map_or(Ok(0), |c| number(c, "counter"))?,
                }
            }
            Some(other) => return Err(format!("unknown type {other:?} (totp or hotp)")),
        };
        Some(Credential { secret, kind })
    } else {
        for c in ["type", "algorithm", "digits", "period", "counter"] {
            if cell(c).is_some() {
                return Err(format!("{c} is given, but no secret"));
            }
        }
        None
    };
    Ok((t.to_owned(), user, groups, passwordless, credential))
}
