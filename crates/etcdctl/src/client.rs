//! The connection to the cluster, as clientv3 makes it for etcdctl: a thin
//! layer over `etcd_rs_client`, which dials, fails over and authenticates.
//! What stays here is etcdctl's policy and wording.
//!
//! - Endpoints are tried in order; the first one that answers within
//!   `--dial-timeout` (and authenticates) serves the command (failover
//!   when members are down).
//! - TLS (rustls) when a certificate, key or CA is given, with
//!   `--insecure-transport=false`, or for `https://` endpoints; the server
//!   name comes from the endpoint or `--discovery-srv`, and
//!   `--insecure-skip-tls-verify` turns verification off.
//! - With `--user`, the Auth service's token rides on every request.
//! - Message limits are clientv3's: 2 MiB to send, no limit to receive.
//! - Every failure is worded as etcdctl words it, with its exit code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig as TlsConfig;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use api::etcdserverpb::auth_client::AuthClient;
use api::etcdserverpb::cluster_client::ClusterClient;
use api::etcdserverpb::kv_client::KvClient;
use api::etcdserverpb::lease_client::LeaseClient;
use api::etcdserverpb::maintenance_client::MaintenanceClient;
use api::etcdserverpb::watch_client::WatchClient;
use api::etcdserverpb::AuthenticateRequest;
use api::v3electionpb::election_client::ElectionClient;
use api::v3lockpb::lock_client::LockClient;

use etcd_rs_client::auth::{self, AuthToken};
use etcd_rs_client::dial::{self, DialOptions, Target};
use etcd_rs_client::tls::{self, CertError, TlsFiles};

use crate::error::{CtlError, CtlResult, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION};
use crate::global::{ClientConfig, TlsSettings};

/// clientv3's default send limit.
pub const MAX_SEND_BYTES: usize = 2 * 1024 * 1024;

/// grpc-go pings no more often than this, whatever `--keepalive-time`
/// says; etcd's servers (`--grpc-keepalive-min-time`, 5 s) close a
/// connection pinged more often, which would break every watch and
/// keep-alive stream of a long-running command.
pub const MIN_KEEPALIVE_TIME: Duration = Duration::from_secs(10);

pub type Svc = InterceptedService<Channel, AuthToken>;

/// A connection to one member of the cluster.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    token: AuthToken,
    pub config: ClientConfig,
}

impl Client {
    /// Connects to the first endpoint that answers, then authenticates;
    /// the last endpoint's failure when none does.
    pub async fn connect(config: &ClientConfig) -> CtlResult<Client> {
        if config.endpoints.is_empty() {
            return Err(CtlError::new(EXIT_BAD_ARGS, "no endpoints given"));
        }
        dial::failover(&config.endpoints, |endpoint| {
            Self::connect_to(config, endpoint)
        })
        .await
        .map_err(|failures| {
            failures
                .into_iter()
                .last()
                .unwrap_or_else(CtlError::deadline)
        })
    }

    /// Connects to one endpoint (for commands that visit each member).
    pub async fn connect_to(config: &ClientConfig, endpoint: &str) -> CtlResult<Client> {
        let channel = connect_channel(config, endpoint).await?;
        let mut client = Client {
            channel,
            token: AuthToken::none(),
            config: config.clone(),
        };
        // clientv3 authenticates only with both a name and a password, and
        // carries on without a token when the cluster has auth disabled.
        let creds = config
            .credentials
            .as_ref()
            .filter(|c| !c.user.is_empty() && !c.password.is_empty());
        if let Some(creds) = creds {
            // clientv3's send limit holds for the request too.
            check_send_size(&AuthenticateRequest {
                name: creds.user.clone(),
                password: creds.password.clone(),
            })
            .map_err(|e| e.with_code(EXIT_BAD_CONNECTION))?;
            let authenticate =
                auth::authenticate(client.channel.clone(), &creds.user, &creds.password);
            client.token = match deadline(config.command_timeout, authenticate).await {
                Ok(Ok(token)) => token,
                Ok(Err(etcd_rs_client::Error::Authenticate(status))) => {
                    return Err(map_status(&status).with_code(EXIT_BAD_CONNECTION))
                }
                Ok(Err(_)) => {
                    return Err(CtlError::new(
                        EXIT_BAD_CONNECTION,
                        "the server sent an unusable auth token",
                    ))
                }
                Err(e) => return Err(e.with_code(EXIT_BAD_CONNECTION)),
            };
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
        match deadline(timeout, call).await? {
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) => Err(map_status(&status)),
        }
    }
}

/// Runs `work` under `timeout`. A deadline that has passed before the work
/// starts fails it, as an expired Go context does (`--command-timeout=1ns`,
/// or `0s`).
async fn deadline<F: std::future::Future>(timeout: Duration, work: F) -> CtlResult<F::Output> {
    let deadline = tokio::time::Instant::now() + timeout;
    if tokio::time::Instant::now() >= deadline {
        return Err(CtlError::deadline());
    }
    tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| CtlError::deadline())
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

/// grpc-go's connect deadline when clientv3 gives none (`--dial-timeout=0s`).
const GRPC_MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Dials `endpoint` as clientv3 would: TLS with the flags' settings, or
/// with the defaults for an `https://` endpoint given no TLS flags.
async fn connect_channel(config: &ClientConfig, endpoint: &str) -> CtlResult<Channel> {
    let target = Target::parse(endpoint).map_err(|e| match e {
        etcd_rs_client::Error::InvalidEndpoint { endpoint, source } => CtlError::new(
            EXIT_BAD_ARGS,
            format!("invalid endpoint {endpoint:?}: {source}"),
        ),
        other => CtlError::new(EXIT_BAD_ARGS, etcd_rs_client::error_chain(&other)),
    })?;
    let dial_timeout = if config.dial_timeout.is_zero() {
        GRPC_MIN_CONNECT_TIMEOUT
    } else {
        config.dial_timeout
    };
    let https = target.scheme() == Some(dial::Scheme::Https);
    let settings = match (&config.tls, https) {
        (Some(settings), _) => Some(settings.clone()),
        (None, true) => Some(TlsSettings::default()),
        (None, false) => None,
    };
    let mut options = DialOptions::new()
        .dial_timeout(dial_timeout)
        .keepalive(
            config.keepalive_time.max(MIN_KEEPALIVE_TIME),
            config.keepalive_timeout,
        )
        .tcp_nodelay(true);
    if let Some(settings) = &settings {
        options = options
            .tls(Some(Arc::new(tls_config(settings)?)))
            .server_name(settings.server_name.clone());
    }
    dial::dial(&target, &options).await.map_err(|e| match e {
        etcd_rs_client::Error::ServerName { source, .. } => {
            CtlError::new(EXIT_BAD_ARGS, format!("invalid server name: {source}"))
        }
        etcd_rs_client::Error::Connect { source, .. } if options.uses_tls() => {
            transport_failure(&source, target.authority())
        }
        _ => CtlError::deadline(),
    })
}

/// clientv3 keeps retrying a connection whose handshake fails until the
/// command's deadline, so etcdctl ends with `context deadline exceeded`;
/// the cause shows only in its retry interceptor's warning. We fail at once
/// with the same error and write that warning, cause included.
fn transport_failure(e: &tonic::transport::Error, authority: &str) -> CtlError {
    if let Some(cause) = etcd_rs_client::innermost_cause(e) {
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

/// The rustls configuration of etcdctl's TLS flags (ALPN h2).
pub(crate) fn tls_config(settings: &TlsSettings) -> CtlResult<TlsConfig> {
    let files = TlsFiles {
        ca: settings.cacert.as_ref().map(PathBuf::from),
        cert: settings.cert.as_ref().map(PathBuf::from),
        key: settings.key.as_ref().map(PathBuf::from),
        skip_verify: settings.skip_verify,
    };
    tls::client_config(&files).map_err(tls_error)
}

/// etcdctl's wording of a TLS setting it cannot use.
fn tls_error(e: etcd_rs_client::Error) -> CtlError {
    use etcd_rs_client::Error;
    let msg = match e {
        Error::Versions(e) => return CtlError::error(format!("tls: {e}")),
        Error::Cert(CertError::Read { path, source }) => {
            format!("open {}: {source}", path.display())
        }
        Error::Cert(CertError::Empty { path }) => {
            format!("{}: no certificates found", path.display())
        }
        Error::Cert(CertError::Untrusted { path, source }) => {
            format!("{}: {source}", path.display())
        }
        Error::Key { path, source } => format!("open {}: {source}", path.display()),
        Error::ClientCert(e) => format!("tls: {e}"),
        Error::HalfKeyPair => {
            "tls: both --cert and --key are needed for a client certificate".to_string()
        }
        other => etcd_rs_client::error_chain(&other),
    };
    CtlError::new(EXIT_BAD_ARGS, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_time_as_zap_writes_it() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_795_288_783_486);
        assert_eq!(rfc3339_millis(t), "2026-11-21T19:19:43.486Z");
    }

    #[test]
    fn tls_failures_in_etcdctl_words() {
        let missing = |flag: &str| format!("/nonexistent-etcdctl-test/{flag}.pem");
        let settings = TlsSettings {
            cacert: Some(missing("ca")),
            ..TlsSettings::default()
        };
        let e = tls_config(&settings).expect_err("no CA file");
        assert_eq!(e.code, EXIT_BAD_ARGS);
        assert!(
            e.message
                .starts_with("open /nonexistent-etcdctl-test/ca.pem: "),
            "{}",
            e.message
        );
        let settings = TlsSettings {
            cert: Some(missing("cert")),
            skip_verify: true,
            ..TlsSettings::default()
        };
        let e = tls_config(&settings).expect_err("no key");
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                EXIT_BAD_ARGS,
                "tls: both --cert and --key are needed for a client certificate"
            )
        );
    }
}
