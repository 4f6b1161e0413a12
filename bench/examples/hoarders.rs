//! Clients that cost a server memory and give nothing back: `N` connections (default
//! 100) to `SERVER` (default 127.0.0.1:4433) with the frontend certificate in `DATA`
//! (default `portvakt-data`), each opening every stream it may and then, by `MODE`:
//! `partial` sends each stream most of a largest-size frame and stops, `unread` sends
//! decide requests without end and never reads an answer. Prints how many connections
//! the server took and how many streams were filled, then holds them for `HOLD` seconds
//! (default 10) while the server's memory is read from outside (`bench/hoarders.sh`).
#![allow(clippy::disallowed_methods, missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use portvakt_server::pki::{PkiFiles, client_tls};
use portvakt_wire::{Decide, FirstFactor, Frame, Proof, Purpose};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let n: usize = env("N", 100);
    let server: SocketAddr = env("SERVER", "127.0.0.1:4433".parse().unwrap());
    let data: PathBuf = env("DATA", PathBuf::from("portvakt-data"));
    let mode: String = env("MODE", "unread".to_owned());
    let hold: u64 = env("HOLD", 10);
    let files = PkiFiles::in_dir(&data.join("certs"));
    let mut tls = client_tls(&files.ca, &files.frontend.0, &files.frontend.1).unwrap();
    tls.alpn_protocols = vec![portvakt_wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));

    // One decide request, repeated without end by `unread` streams.
    let mut request = BytesMut::new();
    Frame::Decide(
        1,
        Decide {
            tenant: "kommune",
            user: "someone@kommune.no",
            ip: "203.0.113.9".parse().unwrap(),
            purpose: Purpose::SignIn,
            first_factor: FirstFactor::Ok,
            proof: Some(Proof::Totp("123456")),
            device_token: None,
            remember_device: false,
        },
    )
    .encode(&mut request)
    .unwrap();
    let batch: Vec<u8> = request
        .iter()
        .copied()
        .cycle()
        .take(request.len() * 256)
        .collect();
    let batch = bytes::Bytes::from(batch);
    // Most of a frame of the largest size: the length prefix and 16,000 of its bytes.
    let mut partial = (portvakt_wire::MAX_FRAME as u32).to_be_bytes().to_vec();
    partial.resize(4 + 16_000, 0);
    let partial = bytes::Bytes::from(partial);

    let (mut taken, mut streams) = (0, 0);
    let mut held = Vec::new();
    for _ in 0..n {
        let Ok(connecting) = endpoint.connect(server, "localhost") else {
            continue;
        };
        let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), connecting).await else {
            continue;
        };
        let mut opened = 0;
        while opened < portvakt_server::frontend::quic::endpoint::MAX_STREAMS {
            let Ok(Ok((mut send, recv))) =
                tokio::time::timeout(Duration::from_millis(500), conn.open_bi()).await
            else {
                break;
            };
            opened += 1;
            let (mode, batch, partial) = (mode.clone(), batch.clone(), partial.clone());
            held.push(tokio::spawn(async move {
                let _recv = recv; // kept, never read
                if mode == "partial" {
                    let _ = send.write_all(&partial).await;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                } else {
                    while send.write_all(&batch).await.is_ok() {}
                }
            }));
        }
        // A refused connection closes at once; count only those still open.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if conn.close_reason().is_none() {
            taken += 1;
            streams += opened;
        }
        held.push(tokio::spawn(async move {
            conn.closed().await;
        }));
    }
    println!("connections taken {taken} of {n}, streams {streams}, mode {mode}");
    tokio::time::sleep(Duration::from_secs(hold)).await;
    endpoint.close(0u32.into(), b"done");
    for h in held {
        h.abort();
    }
    println!("released");
}
