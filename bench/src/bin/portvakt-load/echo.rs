//! A bare QUIC echo server: the same TLS, transport limits and frame sizes as Portvakt's,
//! answering every request frame with a canned decision of the size a real one has,
//! without deciding anything. Measuring against it shows what the protocol and QUIC cost
//! on their own.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use portvakt_server::pki::{ensure_dev_pki, server_tls};
use portvakt_wire::{Decision, Frame, Outcome, frame_len};

/// The answer a real server gives an office sign-in, so the echo sends as many bytes.
fn canned() -> BytesMut {
    let mut out = BytesMut::new();
    let decision = Decision {
        outcome: Outcome::Allow,
        reason: "single_factor_allowed",
        rule: "municipal-network-single-factor",
        location: "municipal-network",
        methods: Vec::new(),
        retry_after_s: None,
        method: None,
        device_token: None,
        approval: None,
        security_key: None,
    };
    let _ = Frame::Decision(0, decision).encode(&mut out);
    out
}

pub(crate) async fn serve(listen: SocketAddr, data: &Path) -> Result<(), String> {
    let (files, _) = ensure_dev_pki(&data.join("certs")).map_err(|e| e.to_string())?;
    let tls = server_tls(&files.ca, &files.server.0, &files.server.1).map_err(|e| e.to_string())?;
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(
        portvakt_server::frontend::quic::endpoint::transport(),
    ));
    let endpoint = quinn::Endpoint::server(config, listen).map_err(|e| e.to_string())?;
    eprintln!(
        "echo serving on {}",
        endpoint.local_addr().map_err(|e| e.to_string())?
    );
    let answer = Arc::new(canned());
    while let Some(incoming) = endpoint.accept().await {
        let answer = answer.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(echo_stream(send, recv, answer.clone()));
            }
        });
    }
    Ok(())
}

async fn echo_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    answer: Arc<BytesMut>,
) {
    let mut inbox = BytesMut::with_capacity(16 * 1024);
    let mut outbox = BytesMut::with_capacity(16 * 1024);
    loop {
        loop {
            let n = match frame_len(&inbox) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(_) => return, // not our protocol: drop the stream
            };
            let frame = inbox.split_to(n);
            let start = outbox.len();
            outbox.extend_from_slice(&answer);
            // The request's id goes into the answer, as a real server's would.
            if let (Some(dst), Some(id)) = (outbox.get_mut(start + 5..start + 9), frame.get(5..9)) {
                dst.copy_from_slice(id);
            }
        }
        if !outbox.is_empty() {
            if send.write_all(&outbox).await.is_err() {
                return;
            }
            outbox.clear();
        }
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => inbox.extend_from_slice(&chunk.bytes),
            Ok(None) | Err(_) => {
                let _ = send.finish();
                return;
            }
        }
    }
}
