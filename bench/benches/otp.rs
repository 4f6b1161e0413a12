//! TOTP verification over a ±1 window: ours against the `totp-rs` crate's `check`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portvakt_bench::{SECRET, T0, at};
use portvakt_core::otp::{Algorithm, Code, Digits, OtpKey, TotpParams, TotpWindow, verify_totp};

fn bench(c: &mut Criterion) {
    let key = OtpKey::new(Algorithm::Sha1, SECRET);
    let params = TotpParams::default();
    let window = TotpWindow {
        steps: 1,
        drift: 0,
        max_drift: 2,
        watermark: None,
    };
    let right = Code::from_value(key.hotp(T0 / 30, Digits::SIX), Digits::SIX);
    let wrong = Code::from_value(key.hotp(T0 / 30, Digits::SIX).wrapping_add(1), Digits::SIX);
    let mut g = c.benchmark_group("totp_verify_window_1");
    g.bench_function("portvakt/right_code", |b| {
        b.iter(|| verify_totp(black_box(&key), &params, black_box(right), at(T0), window))
    });
    g.bench_function("portvakt/wrong_code", |b| {
        b.iter(|| verify_totp(black_box(&key), &params, black_box(wrong), at(T0), window))
    });
    g.bench_function("portvakt/key_setup_and_right_code", |b| {
        b.iter(|| {
            let key = OtpKey::new(Algorithm::Sha1, black_box(SECRET));
            verify_totp(&key, &params, black_box(right), at(T0), window)
        })
    });

    let baseline = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(SECRET.to_vec())
        .build()
        .expect("a valid baseline");
    let right_s = format!("{:06}", right.value());
    let wrong_s = format!("{:06}", wrong.value());
    g.bench_function("totp-rs/right_code", |b| {
        b.iter(|| baseline.check(black_box(&right_s), T0))
    });
    g.bench_function("totp-rs/wrong_code", |b| {
        b.iter(|| baseline.check(black_box(&wrong_s), T0))
    });
    g.finish();

    // Sanity: both agree on what is right.
    assert!(verify_totp(&key, &params, right, at(T0), window).is_some());
    assert!(baseline.check(&right_s, T0).is_some());
    assert!(verify_totp(&key, &params, wrong, at(T0), window).is_none());
}

criterion_group!(benches, bench);
criterion_main!(benches);
