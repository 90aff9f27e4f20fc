//! Opening connections to a peer: the one place that turns a peer URL into a
//! gRPC client, so peer TLS (client certificates, `https://` URLs) goes here.

use std::time::Duration;

use api::peerpb::raft_client::RaftClient;
use tonic::transport::{Channel, Endpoint};

use super::{
    DIAL_TIMEOUT_MS, KEEPALIVE_INTERVAL_MS, KEEPALIVE_TIMEOUT_MS, PEER_GRPC_MESSAGE_SIZE_MAX_BYTES,
};

/// A client endpoint for one peer URL (`http://host:port`).
///
/// TLS seam: when peer TLS lands, `https://` URLs get `Endpoint::tls_config` here.
pub(super) fn endpoint(url: &str) -> Result<Endpoint, String> {
    if !url.starts_with("http://") {
        return Err(format!(
            "unsupported peer URL {url:?} (only http:// for now)"
        ));
    }
    let endpoint =
        Endpoint::from_shared(url.to_string()).map_err(|e| format!("bad peer URL {url:?}: {e}"))?;
    Ok(endpoint
        .connect_timeout(Duration::from_millis(DIAL_TIMEOUT_MS))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_millis(KEEPALIVE_INTERVAL_MS))
        .keep_alive_timeout(Duration::from_millis(KEEPALIVE_TIMEOUT_MS))
        .keep_alive_while_idle(true))
}

/// A connected client with the peer port's message limits.
pub(super) fn client(channel: Channel) -> RaftClient<Channel> {
    RaftClient::new(channel)
        .max_encoding_message_size(PEER_GRPC_MESSAGE_SIZE_MAX_BYTES)
        .max_decoding_message_size(PEER_GRPC_MESSAGE_SIZE_MAX_BYTES)
}

/// Connects to the first reachable of `urls`, in order. The error names every
/// URL tried and why it failed.
pub(super) async fn connect_any(urls: &[String]) -> Result<(String, RaftClient<Channel>), String> {
    if urls.is_empty() {
        return Err("no peer URLs".to_string());
    }
    let mut errors = Vec::with_capacity(urls.len());
    for url in urls {
        let endpoint = match endpoint(url) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        // connect_timeout bounds the TCP connect; the outer timeout bounds the
        // HTTP/2 handshake too.
        let dial = tokio::time::timeout(
            Duration::from_millis(DIAL_TIMEOUT_MS * 2),
            endpoint.connect(),
        );
        match dial.await {
            Ok(Ok(channel)) => return Ok((url.clone(), client(channel))),
            Ok(Err(e)) => errors.push(format!("{url}: {}", error_chain(&e))),
            Err(_) => errors.push(format!("{url}: timed out")),
        }
    }
    Err(errors.join("; "))
}

/// An error with its sources ("transport error: connection refused"), since
/// tonic's own message is only the outermost one.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
