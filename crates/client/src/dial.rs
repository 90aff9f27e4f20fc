//! Dialing: the one place that turns an endpoint into a gRPC [`Channel`].
//!
//! ```text
//!   "https://a.example.com.:2379"
//!        │ Target::parse: scheme, authority, final dot dropped
//!        ▼
//!   Target { scheme: Https, authority: "a.example.com:2379" }
//!        │ dial(target, options): TCP (+ TLS with ALPN h2) + HTTP/2
//!        ▼
//!   Channel
//! ```
//!
//! - An endpoint is `host:port`, `http://host:port` or `https://host:port`
//!   (a trailing `/` is ignored). A host written as an absolute DNS name
//!   (`a.example.com.`, as SRV discovery gives them) loses its final dot: Go's
//!   resolver and certificate checks treat both forms alike, the system's
//!   `getaddrinfo` does not.
//! - Whether TLS is used is the caller's choice, made by putting a rustls
//!   configuration in the [`DialOptions`] (etcdctl uses TLS for every
//!   endpoint once a certificate or CA is given, a member only for
//!   `https://` peer URLs). The certificate is checked against the
//!   endpoint's host unless a server name is given (`--discovery-srv`).
//! - A dial is bounded twice: the connect timeout bounds the TCP connect
//!   and the TLS handshake, the dial timeout the whole, HTTP/2 handshake
//!   included.
//! - [`failover`] tries endpoints in order and keeps every failure;
//!   [`connect_any`] is failover over plain dials.
//!
//! Left out: resolving SRV records (etcdctl's `discovery` does that and
//! hands over endpoints), balancing requests over several members (a
//! channel talks to one member; callers fail over on their own terms),
//! unix sockets.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::tls::ALPN_H2;
use crate::Error;

/// The port a TLS dial uses when the endpoint names none (as grpc-go).
const HTTPS_PORT: u16 = 443;

/// How an endpoint asks to be reached, when it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`: plain HTTP/2.
    Http,
    /// `https://`: HTTP/2 over TLS.
    Https,
}

/// One endpoint, parsed and checked: what [`dial`] connects to.
#[derive(Debug, Clone)]
pub struct Target {
    endpoint: String,
    scheme: Option<Scheme>,
    authority: String,
    base: Endpoint,
}

impl Target {
    /// Parses `endpoint` (`host:port`, `http://…` or `https://…`).
    pub fn parse(endpoint: &str) -> Result<Target, Error> {
        let (rest, scheme) = if let Some(rest) = endpoint.strip_prefix("https://") {
            (rest, Some(Scheme::Https))
        } else if let Some(rest) = endpoint.strip_prefix("http://") {
            (rest, Some(Scheme::Http))
        } else {
            (endpoint, None)
        };
        let authority = rest.trim_end_matches('/');
        let authority = match authority.rsplit_once(':') {
            Some((host, port)) if host.len() > 1 && host.ends_with('.') => {
                format!("{}:{port}", &host[..host.len() - 1])
            }
            _ => authority.to_string(),
        };
        // tonic sees every endpoint as http://: TLS, when wanted, is ours.
        let base = Endpoint::from_shared(format!("http://{authority}")).map_err(|source| {
            Error::InvalidEndpoint {
                endpoint: endpoint.to_string(),
                source,
            }
        })?;
        Ok(Target {
            endpoint: endpoint.to_string(),
            scheme,
            authority,
            base,
        })
    }

    /// The endpoint as it was given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The scheme the endpoint was written with, if any.
    pub fn scheme(&self) -> Option<Scheme> {
        self.scheme
    }

    /// `host:port`, without scheme, trailing `/` or the host's final dot.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The port, if the endpoint names one (TLS dials 443 without).
    pub fn port(&self) -> Option<u16> {
        self.base.uri().port_u16()
    }

    /// The host, without the brackets of an IPv6 address: the name a
    /// server certificate is checked against by default.
    pub fn host(&self) -> &str {
        let host = self.base.uri().host().unwrap_or_default();
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// How to dial: time bounds, keepalives, TCP_NODELAY and TLS. The default
/// has no time bounds, no keepalives, Nagle's algorithm on and no TLS.
#[derive(Clone, Default)]
pub struct DialOptions {
    connect_timeout: Option<Duration>,
    dial_timeout: Option<Duration>,
    keepalive: Option<(Duration, Duration)>,
    tcp_nodelay: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: Option<String>,
}

impl std::fmt::Debug for DialOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("dial_timeout", &self.dial_timeout)
            .field("keepalive", &self.keepalive)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .field("tls", &self.tls.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl DialOptions {
    /// The defaults (see [`DialOptions`]).
    pub fn new() -> DialOptions {
        DialOptions::default()
    }

    /// Bounds the whole dial (TCP, TLS and HTTP/2 handshakes); also the
    /// connect timeout unless one is set.
    pub fn dial_timeout(mut self, timeout: Duration) -> DialOptions {
        self.dial_timeout = Some(timeout);
        self
    }

    /// Bounds the TCP connect and the TLS handshake.
    pub fn connect_timeout(mut self, timeout: Duration) -> DialOptions {
        self.connect_timeout = Some(timeout);
        self
    }

    /// HTTP/2 pings every `interval`, idle or not; the connection is closed
    /// when one is not answered within `timeout`.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> DialOptions {
        self.keepalive = Some((interval, timeout));
        self
    }

    /// Sets TCP_NODELAY on the connection (requests go out at once).
    pub fn tcp_nodelay(mut self, nodelay: bool) -> DialOptions {
        self.tcp_nodelay = nodelay;
        self
    }

    /// TLS with `config` (`None`: plain HTTP/2). gRPC needs HTTP/2, so a
    /// configuration that does not offer ALPN h2 is copied to offer it.
    pub fn tls(mut self, config: Option<Arc<rustls::ClientConfig>>) -> DialOptions {
        self.tls = config.map(|config| {
            if config.alpn_protocols == [ALPN_H2] {
                config
            } else {
                let mut config = (*config).clone();
                config.alpn_protocols = vec![ALPN_H2.to_vec()];
                Arc::new(config)
            }
        });
        self
    }

    /// The name to check the server's certificate against instead of the
    /// endpoint's host.
    pub fn server_name(mut self, name: Option<String>) -> DialOptions {
        self.server_name = name;
        self
    }

    /// Whether dials use TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Connects to `target` (see the module docs for what is bounded how).
pub async fn dial(target: &Target, options: &DialOptions) -> Result<Channel, Error> {
    let mut endpoint = target.base.clone().tcp_nodelay(options.tcp_nodelay);
    if let Some(timeout) = options.connect_timeout.or(options.dial_timeout) {
        endpoint = endpoint.connect_timeout(timeout);
    }
    if let Some((interval, timeout)) = options.keepalive {
        endpoint = endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true);
    }
    let connect = async {
        let connected = match &options.tls {
            None => endpoint.connect().await,
            Some(tls) => {
                let name = options
                    .server_name
                    .clone()
                    .unwrap_or_else(|| target.host().to_string());
                let server_name = ServerName::try_from(name.clone())
                    .map_err(|source| Error::ServerName { name, source })?;
                let connector = TlsConnector::from(tls.clone());
                let host = target.host().to_string();
                let port = target.port().unwrap_or(HTTPS_PORT);
                let nodelay = options.tcp_nodelay;
                let connect = tower::service_fn(move |_: Uri| {
                    let connector = connector.clone();
                    let server_name = server_name.clone();
                    let host = host.clone();
                    async move {
                        let tcp = TcpStream::connect((host.as_str(), port)).await?;
                        tcp.set_nodelay(nodelay)?;
                        let tls = connector.connect(server_name, tcp).await?;
                        Ok::<_, io::Error>(TokioIo::new(tls))
                    }
                });
                endpoint.connect_with_connector(connect).await
            }
        };
        connected.map_err(|source| Error::Connect {
            endpoint: target.endpoint.clone(),
            source,
        })
    };
    match options.dial_timeout {
        None => connect.await,
        Some(timeout) => match tokio::time::timeout(timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                endpoint: target.endpoint.clone(),
                timeout,
            }),
        },
    }
}

/// Runs `attempt` on each endpoint in order until one succeeds. Without a
/// success, every failure in the order tried (none for no endpoints).
pub async fn failover<'a, T, E, F, Fut>(
    endpoints: &'a [String],
    mut attempt: F,
) -> Result<T, Vec<E>>
where
    F: FnMut(&'a str) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut failures = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        match attempt(endpoint).await {
            Ok(done) => return Ok(done),
            Err(e) => failures.push(e),
        }
    }
    Err(failures)
}

/// Connects to the first of `endpoints` that answers, in order, with the
/// same options for each: the endpoint that answered and its channel. The
/// error names every endpoint and why it failed.
pub async fn connect_any(
    endpoints: &[String],
    options: &DialOptions,
) -> Result<(String, Channel), Error> {
    if endpoints.is_empty() {
        return Err(Error::NoEndpoints);
    }
    failover(endpoints, |endpoint| async move {
        let target = Target::parse(endpoint)?;
        let channel = dial(&target, options).await?;
        Ok((endpoint.to_string(), channel))
    })
    .await
    .map_err(Error::AllFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_chain;

    #[test]
    fn endpoints_with_and_without_scheme() {
        let plain = Target::parse("127.0.0.1:2379").expect("host:port");
        assert_eq!(plain.scheme(), None);
        assert_eq!(plain.authority(), "127.0.0.1:2379");
        assert_eq!((plain.host(), plain.port()), ("127.0.0.1", Some(2379)));
        assert_eq!(Target::parse("https://a/").expect("no port").port(), None);
        let http = Target::parse("http://a:1/").expect("http URL");
        assert_eq!(
            (http.scheme(), http.authority()),
            (Some(Scheme::Http), "a:1")
        );
        assert_eq!(http.endpoint(), "http://a:1/");
        let https = Target::parse("https://a:1").expect("https URL");
        assert_eq!(
            (https.scheme(), https.authority()),
            (Some(Scheme::Https), "a:1")
        );
        let absolute = Target::parse("https://etcd.example.com.:2379").expect("absolute name");
        assert_eq!(absolute.authority(), "etcd.example.com:2379");
        assert_eq!(absolute.host(), "etcd.example.com");
        let v6 = Target::parse("http://[::1]:2379").expect("IPv6");
        assert_eq!((v6.authority(), v6.host()), ("[::1]:2379", "::1"));
        assert_eq!(Target::parse("[::1]").expect("IPv6, no port").host(), "::1");
        // A lone "." is a host of its own, not an absolute name.
        assert_eq!(Target::parse(".:1").expect("dot").authority(), ".:1");
    }

    #[test]
    fn an_endpoint_that_is_no_uri_is_refused_by_name() {
        match Target::parse("a b:1") {
            Err(Error::InvalidEndpoint { endpoint, source }) => {
                assert_eq!(endpoint, "a b:1");
                assert_eq!(source.to_string(), "invalid URI");
            }
            other => panic!("expected InvalidEndpoint, got {other:?}"),
        }
    }

    #[test]
    fn tls_options_always_offer_h2() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let options = DialOptions::new().tls(Some(Arc::new(config)));
        let tls = options.tls.as_ref().expect("TLS");
        assert_eq!(tls.alpn_protocols, vec![ALPN_H2.to_vec()]);
        assert!(options.uses_tls());
        assert!(!DialOptions::new().uses_tls());
    }

    /// Addresses where nothing listens: bound on port 0, then let go.
    fn closed_endpoints(n: usize) -> Vec<String> {
        let listeners: Vec<_> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        listeners
            .iter()
            .map(|l| format!("127.0.0.1:{}", l.local_addr().expect("address").port()))
            .collect()
    }

    fn options() -> DialOptions {
        DialOptions::new()
            .dial_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
    }

    #[tokio::test]
    async fn failover_lists_every_failure_in_order() {
        let closed = closed_endpoints(2);
        let endpoints = vec![closed[0].clone(), "http://a b:1".into(), closed[1].clone()];
        let error = connect_any(&endpoints, &options())
            .await
            .expect_err("nothing listens");
        let Error::AllFailed(failures) = &error else {
            panic!("expected AllFailed, got {error:?}");
        };
        assert_eq!(failures.len(), 3);
        assert!(
            matches!(&failures[0], Error::Connect { endpoint, .. } if *endpoint == closed[0]),
            "{failures:?}"
        );
        assert!(matches!(&failures[1], Error::InvalidEndpoint { .. }));
        assert!(
            matches!(&failures[2], Error::Connect { endpoint, .. } if *endpoint == closed[1]),
            "{failures:?}"
        );
        let text = error_chain(&error);
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text}"))
        };
        assert!(at(&closed[0]) < at("\"http://a b:1\"") && at("a b:1") < at(&closed[1]));
        assert_eq!(text.matches("; ").count(), 2, "{text}");
        assert!(text.contains("transport error"), "{text}");
    }

    #[tokio::test]
    async fn failover_takes_the_first_that_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let live = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            // A bare HTTP/2 server: enough for the client's handshake.
            let (tcp, _) = listener.accept().await.expect("accept");
            let conn =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(tcp),
                        hyper::service::service_fn(|_req| async {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new()))
                        }),
                    );
            let _ = conn.await;
        });
        let mut endpoints = closed_endpoints(1);
        endpoints.push(live.clone());
        endpoints.extend(closed_endpoints(1));
        let (answered, _channel) = connect_any(&endpoints, &options())
            .await
            .expect("the live endpoint answers");
        assert_eq!(answered, live);
        assert!(matches!(
            connect_any(&[], &options()).await,
            Err(Error::NoEndpoints)
        ));
        server.abort();
    }

    #[tokio::test]
    async fn failover_stops_at_the_first_success() {
        let endpoints: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut tried = Vec::new();
        let result = failover(&endpoints, |endpoint| {
            tried.push(endpoint);
            async move {
                if endpoint == "b" {
                    Ok(endpoint)
                } else {
                    Err(format!("{endpoint} failed"))
                }
            }
        })
        .await;
        assert_eq!(result, Ok("b"));
        assert_eq!(tried, ["a", "b"]);
        let none: Result<(), Vec<String>> =
            failover(&endpoints, |e| async move { Err(e.to_string()) }).await;
        assert_eq!(none, Err(vec!["a".into(), "b".into(), "c".into()]));
    }
}
