//! The connection to the cluster, as clientv3 makes it for etcdctl.
//!
//! - Endpoints are tried in order; the first one that answers within
//!   `--dial-timeout` serves the command (failover when members are down).
//! - TLS (rustls) when a certificate, key or CA is given, with
//!   `--insecure-transport=false`, or for `https://` endpoints; the server
//!   name comes from the endpoint or `--discovery-srv`, and
//!   `--insecure-skip-tls-verify` turns verification off.
//! - With `--user`, the Auth service's token rides on every request.
//! - Message limits are clientv3's: 2 MiB to send, no limit to receive.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConfig as TlsConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use api::etcdserverpb::auth_client::AuthClient;
use api::etcdserverpb::cluster_client::ClusterClient;
use api::etcdserverpb::kv_client::KvClient;
use api::etcdserverpb::lease_client::LeaseClient;
use api::etcdserverpb::maintenance_client::MaintenanceClient;
use api::etcdserverpb::watch_client::WatchClient;
use api::etcdserverpb::AuthenticateRequest;
use api::v3electionpb::election_client::ElectionClient;
use api::v3lockpb::lock_client::LockClient;
use api::EtcdError;

use etcd_rs_client::tls::{self, CertError, SkipChain};

use crate::error::{CtlError, CtlResult, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION};
use crate::global::{ClientConfig, TlsSettings};

/// clientv3's default send limit.
pub const MAX_SEND_BYTES: usize = 2 * 1024 * 1024;

/// grpc-go pings no more often than this, whatever `--keepalive-time`
/// says; etcd's servers (`--grpc-keepalive-min-time`, 5 s) close a
/// connection pinged more often, which would break every watch and
/// keep-alive stream of a long-running command.
pub const MIN_KEEPALIVE_TIME: Duration = Duration::from_secs(10);

/// Adds the auth token to each request.
#[derive(Clone, Default)]
pub struct AuthToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for AuthToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            req.metadata_mut().insert("token", token.clone());
        }
        Ok(req)
    }
}

pub type Svc = InterceptedService<Channel, AuthToken>;

/// A connection to one member of the cluster.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    token: AuthToken,
    pub config: ClientConfig,
}

impl Client {
    /// Connects to the first endpoint that answers, then authenticates.
    pub async fn connect(config: &ClientConfig) -> CtlResult<Client> {
        if config.endpoints.is_empty() {
            return Err(CtlError::new(EXIT_BAD_ARGS, "no endpoints given"));
        }
        let mut last = None;
        for endpoint in &config.endpoints {
            match Self::connect_to(config, endpoint).await {
                Ok(client) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(CtlError::deadline))
    }

    /// Connects to one endpoint (for commands that visit each member).
    pub async fn connect_to(config: &ClientConfig, endpoint: &str) -> CtlResult<Client> {
        let channel = dial(config, endpoint).await?;
        let mut client = Client {
            channel,
            token: AuthToken::default(),
            config: config.clone(),
        };
        // clientv3 authenticates only with both a name and a password, and
        // carries on without a token when the cluster has auth disabled.
        let creds = config
            .credentials
            .as_ref()
            .filter(|c| !c.user.is_empty() && !c.password.is_empty());
        if let Some(creds) = creds {
            let request = AuthenticateRequest {
                name: creds.user.clone(),
                password: creds.password.clone(),
            };
            let resp = match client.unary(client.auth().authenticate(request)).await {
                Ok(resp) => resp,
                Err(e) if e.message == EtcdError::AuthNotEnabled.message() => return Ok(client),
                Err(e) => return Err(e.with_code(EXIT_BAD_CONNECTION)),
            };
            let token = MetadataValue::try_from(resp.token.as_str()).map_err(|_| {
                CtlError::new(
                    EXIT_BAD_CONNECTION,
                    "the server sent an unusable auth token",
                )
            })?;
            client.token = AuthToken(Some(token));
        }
        Ok(client)
    }

    fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.token.clone())
    }

    pub fn kv(&self) -> KvClient<Svc> {
        KvClient::new(self.svc())
            .max_encoding_message_size(MAX_SEND_BYTES)
            .max_decoding_message_size(usize::MAX)
    }

    pub fn watch(&self) -> WatchClient<Svc> {
        WatchClient::new(self.svc())
            .max_encoding_message_size(MAX_SEND_BYTES)
            .max_decoding_message_size(usize::MAX)
    }

    pub fn lease(&self) -> LeaseClient<Svc> {
        LeaseClient::new(self.svc())
            .max_encoding_message_size(MAX_SEND_BYTES)
            .max_decoding_message_size(usize::MAX)
    }

    pub fn cluster(&self) -> ClusterClient<Svc> {
        ClusterClient::new(self.svc())
            .max_encoding_message_size(MAX_SEND_BYTES)
            .max_decoding_message_size(usize::MAX)
    }

    pub fn maintenance(&self) -> MaintenanceClient<Svc> {
        MaintenanceClient::new(self.svc())
            .max_encoding_message_size(MAX_SEND_BYTES)
            .max_decoding_message_size(usize::MAX)
    }

    pub fn auth(&self) -> AuthClient<Svc> {
        AuthClient::new(self.svc())
            .max_encoding_message_size(MAX_SEND_BYTES)
            .max_decoding_message_size(usize::MAX)
    }

    pub fn lock(&self) -> LockClient<Svc> {
        LockClient::new(self.svc())
            .max_encoding_message_size(MAX_SEND_BYTES)
            .max_decoding_message_size(usize::MAX)
    }

    pub fn election(&self) -> ElectionClient<Svc> {
        ElectionClient::new(self.svc())
            .max_encoding_message_size(MAX_SEND_BYTES)
            .max_decoding_message_size(usize::MAX)
    }

    /// Runs one unary call under `--command-timeout`.
    pub async fn unary<T>(
        &self,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> CtlResult<T> {
        self.within(self.config.command_timeout, call).await
    }

    /// Runs one call without a deadline (etcdctl's `context.TODO()` calls:
    /// `lease timetolive`, `lease list`, the mirror's writes).
    pub async fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> CtlResult<T> {
        call.await
            .map(tonic::Response::into_inner)
            .map_err(|status| map_status(&status))
    }

    /// Runs one unary call under a deadline of its own.
    pub async fn within<T>(
        &self,
        timeout: Duration,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> CtlResult<T> {
        // A deadline that has passed before the call starts fails it, as
        // an expired Go context does (`--command-timeout=1ns`, or `0s`).
        let deadline = tokio::time::Instant::now() + timeout;
        if tokio::time::Instant::now() >= deadline {
            return Err(CtlError::deadline());
        }
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(map_status(&status)),
            Err(_) => Err(CtlError::deadline()),
        }
    }
}

/// clientv3 refuses to send a message over its 2 MiB limit, in grpc-go's words.
pub fn check_send_size(msg: &impl prost::Message) -> CtlResult {
    let len = msg.encoded_len();
    if len > MAX_SEND_BYTES {
        return Err(CtlError::error(format!(
            "rpc error: code = ResourceExhausted desc = trying to send message larger than max ({len} vs. {MAX_SEND_BYTES})"
        )));
    }
    Ok(())
}

/// clientv3 reports a send over the limit in grpc-go's words.
fn map_status(status: &tonic::Status) -> CtlError {
    let msg = status.message();
    if msg.starts_with("Error, encoded message length too large") {
        let found = msg
            .split("found ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or("?");
        return CtlError::error(format!(
            "rpc error: code = ResourceExhausted desc = trying to send message larger than max ({found} vs. {MAX_SEND_BYTES})"
        ));
    }
    if status.code() == tonic::Code::Unavailable && msg.contains("transport error") {
        return CtlError::deadline();
    }
    CtlError::from_status(status)
}

/// `host:port` and whether the endpoint asks for TLS by its scheme. A host
/// written as an absolute DNS name (`a.example.com.`, as SRV discovery
/// gives them) loses its final dot: Go's resolver and certificate checks
/// treat both forms alike, the system's `getaddrinfo` does not.
fn split_endpoint(endpoint: &str) -> (String, bool) {
    let (rest, https) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (rest, true)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (rest, false)
    } else {
        (endpoint, false)
    };
    let authority = rest.trim_end_matches('/');
    let authority = match authority.rsplit_once(':') {
        Some((host, port)) if host.len() > 1 && host.ends_with('.') => {
            format!("{}:{port}", &host[..host.len() - 1])
        }
        _ => authority.to_string(),
    };
    (authority, https)
}

/// grpc-go's connect deadline when clientv3 gives none (`--dial-timeout=0s`).
const GRPC_MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

async fn dial(config: &ClientConfig, endpoint: &str) -> CtlResult<Channel> {
    let (authority, https) = split_endpoint(endpoint);
    let dial_timeout = if config.dial_timeout.is_zero() {
        GRPC_MIN_CONNECT_TIMEOUT
    } else {
        config.dial_timeout
    };
    let uri = format!("http://{authority}");
    let ep = Endpoint::from_shared(uri)
        .map_err(|e| CtlError::new(EXIT_BAD_ARGS, format!("invalid endpoint {endpoint:?}: {e}")))?
        .connect_timeout(dial_timeout)
        .http2_keep_alive_interval(config.keepalive_time.max(MIN_KEEPALIVE_TIME))
        .keep_alive_timeout(config.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let tls = match (&config.tls, https) {
        (Some(settings), _) => Some(settings.clone()),
        (None, true) => Some(TlsSettings::default()),
        (None, false) => None,
    };
    let connect = async {
        match tls {
            None => ep.connect().await.map_err(|_| CtlError::deadline()),
            Some(settings) => {
                let tls_config = Arc::new(tls_config(&settings)?);
                let host = authority
                    .rsplit_once(':')
                    .map(|(h, _)| h)
                    .unwrap_or(&authority);
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let name = settings.server_name.clone().unwrap_or(host);
                let server_name = ServerName::try_from(name).map_err(|e| {
                    CtlError::new(EXIT_BAD_ARGS, format!("invalid server name: {e}"))
                })?;
                let addr = authority.clone();
                let connector = tower::service_fn(move |_: Uri| {
                    let tls_config = tls_config.clone();
                    let server_name = server_name.clone();
                    let addr = addr.clone();
                    async move {
                        let tcp = TcpStream::connect(addr).await?;
                        tcp.set_nodelay(true)?;
                        let tls = TlsConnector::from(tls_config)
                            .connect(server_name, tcp)
                            .await?;
                        Ok::<_, io::Error>(TokioIo::new(tls))
                    }
                });
                ep.connect_with_connector(connector)
                    .await
                    .map_err(|e| transport_failure(&e, &authority))
            }
        }
    };
    match tokio::time::timeout(dial_timeout, connect).await {
        Ok(result) => result,
        Err(_) => Err(CtlError::deadline()),
    }
}

/// clientv3 keeps retrying a connection whose handshake fails until the
/// command's deadline, so etcdctl ends with `context deadline exceeded`;
/// the cause shows only in its retry interceptor's warning. We fail at once
/// with the same error and write that warning, cause included.
fn transport_failure(e: &tonic::transport::Error, authority: &str) -> CtlError {
    let mut causes = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if let Some(cause) = causes.last() {
        let mut line = serde_json::Map::new();
        line.insert("level".into(), "warn".into());
        line.insert(
            "ts".into(),
            rfc3339_millis(std::time::SystemTime::now()).into(),
        );
        line.insert("logger".into(), "etcd-client".into());
        line.insert("caller".into(), "v3/retry_interceptor.go:62".into());
        line.insert("msg".into(), "retrying of unary invoker failed".into());
        line.insert(
            "target".into(),
            format!("etcd-endpoints://etcdctl/{authority}").into(),
        );
        line.insert("attempt".into(), 0.into());
        line.insert(
            "error".into(),
            format!(
                "rpc error: code = DeadlineExceeded desc = latest balancer error: last connection error: \
                 connection error: desc = \"transport: authentication handshake failed: {cause}\""
            )
            .into(),
        );
        eprintln!("{}", serde_json::Value::Object(line));
    }
    CtlError::deadline()
}

/// `2026-01-02T03:04:05.678Z` (zap's ISO 8601 time as clientv3 logs it).
fn rfc3339_millis(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

pub(crate) fn tls_config(settings: &TlsSettings) -> CtlResult<TlsConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = TlsConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| CtlError::error(format!("tls: {e}")))?;
    let builder = if settings.skip_verify {
        builder
            .dangerous()
            // `--insecure-skip-tls-verify`: any server certificate (the
            // handshake's signatures are still checked).
            .with_custom_certificate_verifier(SkipChain::new(provider))
    } else {
        let roots = tls::roots(settings.cacert.as_deref().map(Path::new)).map_err(cert_error)?;
        builder.with_root_certificates(roots)
    };
    let mut config = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| CtlError::new(EXIT_BAD_ARGS, format!("open {key}: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| CtlError::new(EXIT_BAD_ARGS, format!("tls: {e}")))?
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(CtlError::new(
                EXIT_BAD_ARGS,
                "tls: both --cert and --key are needed for a client certificate",
            ))
        }
        (None, None) => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn read_certs(path: &str) -> CtlResult<Vec<CertificateDer<'static>>> {
    tls::read_certs(Path::new(path)).map_err(cert_error)
}

/// etcdctl's wording of a certificate file it cannot use.
fn cert_error(e: CertError) -> CtlError {
    let msg = match e {
        CertError::Read { path, source } => format!("open {}: {source}", path.display()),
        CertError::Empty { path } => format!("{}: no certificates found", path.display()),
        CertError::Untrusted { path, source } => format!("{}: {source}", path.display()),
    };
    CtlError::new(EXIT_BAD_ARGS, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_with_and_without_scheme() {
        assert_eq!(
            split_endpoint("127.0.0.1:2379"),
            ("127.0.0.1:2379".into(), false)
        );
        assert_eq!(split_endpoint("http://a:1/"), ("a:1".into(), false));
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_795_288_783_486);
        assert_eq!(rfc3339_millis(t), "2026-11-21T19:19:43.486Z");
        assert_eq!(split_endpoint("https://a:1"), ("a:1".into(), true));
        assert_eq!(
            split_endpoint("https://etcd.example.com.:2379"),
            ("etcd.example.com:2379".into(), true)
        );
    }
}
