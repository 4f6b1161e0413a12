//! Reading import files: otpauth:// URIs as apps export them, CSV, and every way a line
//! can be wrong, each reported with its line number and nothing imported.

use portvakt_server::import::{Format, OtpKind, parse, parse_uri};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"; // 20 bytes

#[test]
fn uris_as_apps_write_them() {
    let u = parse_uri(&format!(
        "otpauth://totp/Kommune:kari%40kommune.no?secret={SECRET}&issuer=Kommune"
    ))
    .unwrap();
    assert_eq!(u.issuer.as_deref(), Some("Kommune"));
    assert_eq!(u.account, "kari@kommune.no");
    assert_eq!(u.credential.secret.len(), 20);
    assert_eq!(
        u.credential.kind,
        OtpKind::Totp {
            algorithm: 1,
            digits: 6,
            period: 30
        }
    );
    // Any case, lower-case secret with spaces, an encoded colon, unknown parameters.
    let u = parse_uri(
        "OTPAUTH://TOTP/ACME%3A%20ola?secret=jbsw y3dp ehpk 3pxp&algorithm=sha256&digits=8&period=60&image=x",
    )
    .unwrap();
    assert_eq!(
        (u.issuer.as_deref(), u.account.as_str()),
        (Some("ACME"), "ola")
    );
    assert_eq!(
        u.credential.kind,
        OtpKind::Totp {
            algorithm: 2,
            digits: 8,
            period: 60
        }
    );
    let u = parse_uri(&format!(
        "otpauth://hotp/token%20ø?secret={SECRET}&counter=42"
    ))
    .unwrap();
    assert_eq!((u.issuer, u.account.as_str()), (None, "token ø"));
    assert_eq!(
        u.credential.kind,
        OtpKind::Hotp {
            digits: 6,
            counter: 42
        }
    );
}

#[test]
fn bad_uris_say_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        ("https://example.com", "otpauth://"),
        ("otpauth://totp", "no type"),
        ("otpauth://motp/x?secret=AAAA", "unknown type"),
        ("otpauth://totp/x", "no parameters"),
        ("otpauth://totp/?secret=JBSWY3DPEHPK3PXP", "no account"),
        ("otpauth://totp/x?issuer=a", "no secret"),
        ("otpauth://totp/x?secret=JBSWY3DP", "must be 10 to 128"),
        ("otpauth://totp/x?secret=11111111111111111", "not base32"),
        (
            "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=9",
            "digits must be",
        ),
        (
            "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=999",
            "not a number in range",
        ),
        (
            "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&period=1",
            "period must be",
        ),
        (
            "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&algorithm=MD5",
            "unknown algorithm",
        ),
        (
            "otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP",
            "needs a counter",
        ),
        (
            "otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP&counter=1&algorithm=SHA256",
            "SHA1 only",
        ),
        (
            "otpauth://totp/a:x?secret=JBSWY3DPEHPK3PXP&issuer=b",
            "differ",
        ),
        (
            "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&secret=JBSWY3DPEHPK3PXP",
            "twice",
        ),
        ("otpauth://totp/x%4?secret=JBSWY3DPEHPK3PXP", "% escape"),
        ("otpauth://totp/x%zz?secret=JBSWY3DPEHPK3PXP", "% escape"),
        ("otpauth://totp/x%ff?secret=JBSWY3DPEHPK3PXP", "UTF-8"),
    ];
    for (uri, expected) in cases {
        let e = parse_uri(uri).unwrap_err();
        assert!(e.contains(expected), "{uri}: {e}");
    }
}

#[test]
fn a_uri_file_groups_lines_by_user_and_reports_every_bad_line() {
    let text = format!(
        "# exported 2026-11-01\n\
         otpauth://totp/kommune:kari?secret={SECRET}\n\
         \n\
         otpauth://hotp/kommune:kari?secret={SECRET}&counter=7\n\
         otpauth://totp/ola?secret={SECRET}\n"
    );
    assert_eq!(Format::detect(&text), Format::Uris);
    // Without --tenant, ola's URI names no issuer.
    let errors = parse(&text, Format::Uris, None).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 5);
    assert!(errors[0].message.contains("no tenant"), "{}", errors[0]);
    let accounts = parse(&text, Format::Uris, Some("kommune")).unwrap();
    let names: Vec<(&str, usize, usize)> = accounts
        .iter()
        .map(|a| (a.user.as_str(), a.line, a.credentials.len()))
        .collect();
    assert_eq!(names, [("kari", 2, 2), ("ola", 5, 1)]);
    assert_eq!(accounts[0].credentials[1].0, 4);

    let bad = "otpauth://totp/k:a?secret=JBSWY3DP\nnot a uri\notpauth://totp/k:%20?secret=JBSWY3DPEHPK3PXP\n";
    let lines: Vec<usize> = parse(bad, Format::Uris, None)
        .unwrap_err()
        .iter()
        .map(|e| e.line)
        .collect();
    assert_eq!(lines, [1, 2, 3]);
}

#[test]
fn csv_with_secrets_or_uris_groups_and_flags() {
    let text = format!(
        "tenant,user,groups,passwordless,secret,type,digits,counter\n\
         kommune,kari@kommune.no,legekontor;ansatte,false,{SECRET},,,\n\
         kommune,kari@kommune.no,,,{SECRET},hotp,8,100\n\
         kommune,\"Ola, Nordmann\",,true,,,,\n"
    );
    assert_eq!(Format::detect(&text), Format::Csv);
    let accounts = parse(&text, Format::Csv, None).unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0].groups, ["legekontor", "ansatte"]);
    assert_eq!(
        accounts[0].credentials[1].1.kind,
        OtpKind::Hotp {
            digits: 8,
            counter: 100
        }
    );
    assert_eq!(accounts[1].user, "Ola, Nordmann");
    assert!(accounts[1].passwordless && accounts[1].credentials.is_empty());

    let with_uri = format!("user,uri\nkari,otpauth://totp/x:kari?secret={SECRET}&digits=7\n");
    let accounts = parse(&with_uri, Format::Csv, Some("kommune")).unwrap();
    assert_eq!(accounts[0].tenant, "kommune");
    assert_eq!(
        accounts[0].credentials[0].1.kind,
        OtpKind::Totp {
            algorithm: 1,
            digits: 7,
            period: 30
        }
    );
}

#[test]
fn bad_csv_is_refused_line_by_line() {
    let header_cases: &[(&str, &str)] = &[
        ("user,password\nkari,x\n", "unknown column \"password\""),
        ("user,user\nkari,kari\n", "appears twice"),
        ("tenant,groups\nk,a\n", "no user column"),
        ("user,uri,secret\nk,,\n", "not both"),
    ];
    for (text, expected) in header_cases {
        let e = parse(text, Format::Csv, Some("k")).unwrap_err();
        assert_eq!(e[0].line, 1);
        assert!(e[0].message.contains(expected), "{text}: {}", e[0]);
    }
    let text = format!(
        "tenant,user,secret,digits,passwordless\n\
         k,a,{SECRET},5,\n\
         ,b,{SECRET},,\n\
         k,c,,6,\n\
         k,d,{SECRET},,maybe\n\
         k,e\u{0007},{SECRET},,\n\
         k,f,{SECRET}\n\
         x,g,{SECRET},,\n"
    );
    let errors = parse(&text, Format::Csv, None).unwrap_err();
    let got: Vec<(usize, &str)> = errors
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(
        got[0].0 == 2 && got[0].1.contains("digits must be"),
        "{got:?}"
    );
    assert!(got[1].0 == 3 && got[1].1.contains("no tenant"), "{got:?}");
    assert!(got[2].0 == 4 && got[2].1.contains("no secret"), "{got:?}");
    assert!(
        got[3].0 == 5 && got[3].1.contains("passwordless"),
        "{got:?}"
    );
    assert!(got[4].0 == 6 && got[4].1.contains("user"), "{got:?}");
    assert_eq!(got[5].0, 7, "{got:?}"); // too few fields
    // With --tenant, a row naming another tenant is refused.
    let errors = parse(&text.replace(",5,", ",6,"), Format::Csv, Some("k")).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.line == 8 && e.message.contains("--tenant"))
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let u = parse_uri(&format!("otpauth://totp/k:a?secret={SECRET}")).unwrap();
    let shown = format!("{u:?}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(!shown.contains("72, 101"), "{shown}"); // "He" of "Hello!" (the secret)
}

#[test]
fn hostile_input_is_an_error_not_a_panic() {
    for text in [
        "\u{feff}otpauth://totp/k:a?secret=JBSWY3DPEHPK3PXP",
        "otpauth://totp/k:a?secret=JBSWY3DPEHPK3PXP&counter=99999999999999999999999",
        "otpauth://totp/\u{202e}k:a?secret=",
        "otpauth://totp/k:a?=&&&=secret",
        "otpauth://totp/k:a?secret=%",
        &format!(
            "otpauth://totp/k:{}?secret=JBSWY3DPEHPK3PXP",
            "a".repeat(200)
        ),
        &format!("otpauth://totp/k:a?secret={}", "A".repeat(300)),
        "user\n\"unterminated",
        "\"",
        ",,,,",
    ] {
        for format in [Format::Uris, Format::Csv] {
            let _ = parse(text, format, Some("k"));
        }
        let _ = parse_uri(text);
    }
    // A long user name is refused with a reason, not cut short.
    let e = parse(
        &format!(
            "otpauth://totp/k:{}?secret=JBSWY3DPEHPK3PXP",
            "a".repeat(200)
        ),
        Format::Uris,
        None,
    )
    .unwrap_err();
    assert!(e[0].message.contains("longer than"), "{}", e[0]);
}
