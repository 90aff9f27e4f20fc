//! The crate's one error type: why an endpoint could not be dialed, TLS
//! could not be set up, or the auth token could not be had. Each variant
//! keeps its cause as `source()`, so a caller can print the whole chain
//! ([`error_chain`]) or reach the innermost cause (etcdctl's handshake
//! warning quotes it).

use std::path::PathBuf;
use std::time::Duration;

use crate::tls::CertError;

/// What went wrong talking to a member, or preparing to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not `host:port` or an `http(s)://` URL of one.
    #[error("invalid endpoint {endpoint:?}")]
    InvalidEndpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    /// The name to check the server's certificate against is not a DNS
    /// name or an IP address.
    #[error("invalid TLS server name {name:?}")]
    ServerName {
        name: String,
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// The TCP connect, the TLS handshake or the HTTP/2 handshake failed.
    #[error("cannot connect to {endpoint}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    /// The dial did not finish within its time.
    #[error("cannot connect to {endpoint}: timed out after {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    /// Failover was asked to pick among no endpoints.
    #[error("no endpoints given")]
    NoEndpoints,
    /// Every endpoint failed; their errors in the order they were tried.
    #[error("{}", list(.0))]
    AllFailed(Vec<Error>),
    /// A certificate file (CA or client certificate) cannot be used.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The client certificate's private key cannot be read.
    #[error("cannot read a private key from {}", path.display())]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    /// A client certificate was given without its key, or a key without
    /// its certificate.
    #[error("a client certificate needs both its certificate and its key file")]
    HalfKeyPair,
    /// rustls refused the protocol versions of its crypto provider.
    #[error("TLS protocol versions")]
    Versions(#[source] rustls::Error),
    /// rustls refused the client certificate and key (a key that does not
    /// match the certificate, or of a kind it cannot sign with).
    #[error("TLS client certificate")]
    ClientCert(#[source] rustls::Error),
    /// The Auth service refused the user name and password (or could not
    /// be reached).
    #[error("authentication failed")]
    Authenticate(#[source] tonic::Status),
    /// The token the server sent cannot ride in a gRPC header.
    #[error("the server sent an unusable auth token")]
    Token(#[source] tonic::metadata::errors::InvalidMetadataValue),
}

/// Each error's whole chain, in order, separated by `; `.
fn list(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|e| error_chain(e))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error with its causes (`cannot connect to a:1: transport error:
/// tcp connect error: Connection refused`), a cause left out when the text
/// so far already says it (tonic's messages often repeat their source's).
pub fn error_chain(error: &dyn std::error::Error) -> String {
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

/// The innermost cause of `error` (not `error` itself), if it has any:
/// what a failed dial comes down to (`invalid peer certificate: UnknownIssuer`).
pub fn innermost_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    let mut cause = error.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        source: Option<Box<Layer>>,
    }

    fn layers(texts: &[&'static str]) -> Option<Box<Layer>> {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| Some(Box::new(Layer { text, source })))
    }

    #[test]
    fn the_chain_skips_causes_already_said_and_ends_at_the_innermost() {
        let error = layers(&["outer", "middle", "middle", "inner"]).expect("layers");
        assert_eq!(error_chain(&*error), "outer: middle: inner");
        let inner = innermost_cause(&*error).expect("a cause");
        assert_eq!(inner.to_string(), "inner");
        let alone = layers(&["alone"]).expect("layer");
        assert!(innermost_cause(&*alone).is_none());
    }
}
