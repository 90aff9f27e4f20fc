//! Bounded calls through the `etcd-client` crate, for the tests that drive a
//! server with it: every call ends within [`CALL_TIMEOUT`], errors as text.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

/// The longest one call may take (a leader change and a retry fit in it).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(12);

/// A client of `urls`; calls are bounded by the caller (no client-wide
/// timeout, which would also cut long-lived streams).
pub async fn connect(urls: &[String]) -> Client {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
    tokio::time::timeout(Duration::from_secs(5), Client::connect(urls, Some(options)))
        .await
        .unwrap_or_else(|_| panic!("connect to {urls:?}: timed out"))
        .unwrap_or_else(|e| panic!("connect to {urls:?}: {e}"))
}

/// `Code: message` of a gRPC error (the error itself for anything else).
pub fn show_err(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => format!("{other}"),
    }
}

/// Runs one call bounded by [`CALL_TIMEOUT`]; errors as text.
pub async fn bounded<T>(
    what: &str,
    f: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(show_err(&e)),
        Err(_) => Err(format!("{what}: no answer within {CALL_TIMEOUT:?}")),
    }
}

/// [`bounded`], panicking on an error.
pub async fn must<T>(what: &str, f: impl Future<Output = Result<T, etcd_client::Error>>) -> T {
    bounded(what, f)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}
