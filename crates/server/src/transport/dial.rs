//! Opening connections to a peer: the one place in a member that turns a
//! peer URL into a gRPC channel, with peer TLS for `https://` URLs. The dial
//! itself (TCP, TLS, HTTP/2, keepalives, time bounds) is
//! `etcd_rs_client::dial`'s; what stays here is the member's policy: which
//! URLs it dials, with what TLS, how long it waits, and its error texts.

use std::sync::Arc;
use std::time::Duration;

use api::peerpb::raft_client::RaftClient;
use etcd_rs_client::dial::{self, DialOptions, Scheme, Target};
use tonic::transport::Channel;

pub(super) use etcd_rs_client::error_chain;

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
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(format!("unsupported peer URL {url:?}"));
        }
        let target = Target::parse(url).map_err(|e| match e {
            etcd_rs_client::Error::InvalidEndpoint { source, .. } => {
                format!("bad peer URL {url:?}: {}", error_chain(&source))
            }
            other => format!("bad peer URL {url:?}: {}", error_chain(&other)),
        })?;
        let tls = match target.scheme() {
            Some(Scheme::Https) => match &self.tls {
                Some(tls) => Some(tls.clone()),
                None => {
                    return Err(format!(
                        "{url}: an https peer URL needs --peer-cert-file and --peer-key-file, or --peer-auto-tls"
                    ))
                }
            },
            Some(Scheme::Http) | None => None,
        };
        // The connect timeout bounds the TCP connect and the TLS handshake;
        // the dial timeout bounds the HTTP/2 handshake too.
        let options = DialOptions::new()
            .connect_timeout(Duration::from_millis(DIAL_TIMEOUT_MS))
            .dial_timeout(Duration::from_millis(DIAL_TIMEOUT_MS * 2))
            .tcp_nodelay(true)
            .keepalive(
                Duration::from_millis(KEEPALIVE_INTERVAL_MS),
                Duration::from_millis(KEEPALIVE_TIMEOUT_MS),
            )
            .tls(tls);
        dial::dial(&target, &options).await.map_err(|e| match e {
            etcd_rs_client::Error::Timeout { .. } => format!("{url}: timed out"),
            etcd_rs_client::Error::Connect { source, .. } => {
                format!("{url}: {}", error_chain(&source))
            }
            other => format!("{url}: {}", error_chain(&other)),
        })
    }
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
    dial::failover(urls, |url| async move {
        let channel = dialer.connect(url).await?;
        Ok((url.to_string(), client(channel)))
    })
    .await
    .map_err(|errors: Vec<String>| errors.join("; "))
}
