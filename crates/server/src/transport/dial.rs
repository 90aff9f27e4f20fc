//! Opening connections to a peer: the one place that turns a peer URL into a
//! gRPC channel, with peer TLS for `https://` URLs.

use std::sync::Arc;
use std::time::Duration;

use api::peerpb::raft_client::RaftClient;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use super::{
    DIAL_TIMEOUT_MS, KEEPALIVE_INTERVAL_MS, KEEPALIVE_TIMEOUT_MS, PEER_GRPC_MESSAGE_SIZE_MAX_BYTES,
};

/// How this member opens connections to its peers: plain HTTP/2 for
/// `http://` peer URLs, TLS with the peer certificate for `https://` ones.
#[derive(Clone, Default)]
pub struct Dialer {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Dialer {
    /// `tls`: the peer client configuration (`--peer-cert-file` …); without it
    /// `https://` peers cannot be reached.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Dialer {
        Dialer { tls }
    }

    /// Connects to one peer URL, with peer-port keepalives and a bounded dial time.
    pub async fn connect(&self, url: &str) -> Result<Channel, String> {
        let (secure, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("unsupported peer URL {url:?}"));
        };
        // tonic sees every URL as http://: TLS, when wanted, is ours (below).
        let endpoint = Endpoint::from_shared(format!("http://{rest}"))
            .map_err(|e| format!("bad peer URL {url:?}: {e}"))?
            .connect_timeout(Duration::from_millis(DIAL_TIMEOUT_MS))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_millis(KEEPALIVE_INTERVAL_MS))
            .keep_alive_timeout(Duration::from_millis(KEEPALIVE_TIMEOUT_MS))
            .keep_alive_while_idle(true);
        // connect_timeout bounds the TCP connect (and the TLS handshake); the
        // outer timeout bounds the HTTP/2 handshake too.
        let bound = Duration::from_millis(DIAL_TIMEOUT_MS * 2);
        let connected = if !secure {
            tokio::time::timeout(bound, endpoint.connect()).await
        } else {
            let Some(tls) = self.tls.clone() else {
                return Err(format!(
                    "{url}: an https peer URL needs --peer-cert-file and --peer-key-file, or --peer-auto-tls"
                ));
            };
            let connector = tokio_rustls::TlsConnector::from(tls);
            let connect = tower::service_fn(move |uri: axum::http::Uri| {
                let connector = connector.clone();
                async move { tls_connect(connector, uri).await }
            });
            tokio::time::timeout(bound, endpoint.connect_with_connector(connect)).await
        };
        match connected {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(format!("{url}: {}", error_chain(&e))),
            Err(_) => Err(format!("{url}: timed out")),
        }
    }
}

/// TCP, then a TLS handshake naming the URL's host (a DNS name or an IP).
async fn tls_connect(
    connector: tokio_rustls::TlsConnector,
    uri: axum::http::Uri,
) -> std::io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>> {
    let host = uri
        .host()
        .ok_or_else(|| std::io::Error::other("no host in the peer URL"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    Ok(TokioIo::new(connector.connect(name, tcp).await?))
}

/// A connected client with the peer port's message limits.
pub(super) fn client(channel: Channel) -> RaftClient<Channel> {
    RaftClient::new(channel)
        .max_encoding_message_size(PEER_GRPC_MESSAGE_SIZE_MAX_BYTES)
        .max_decoding_message_size(PEER_GRPC_MESSAGE_SIZE_MAX_BYTES)
}

/// Connects to the first reachable of `urls`, in order. The error names every
/// URL tried and why it failed.
pub(super) async fn connect_any(
    dialer: &Dialer,
    urls: &[String],
) -> Result<(String, RaftClient<Channel>), String> {
    if urls.is_empty() {
        return Err("no peer URLs".to_string());
    }
    let mut errors = Vec::with_capacity(urls.len());
    for url in urls {
        match dialer.connect(url).await {
            Ok(channel) => return Ok((url.clone(), client(channel))),
            Err(e) => errors.push(e),
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
