//! TLS on the client side, as Go's clients (etcd, etcdctl) do it: a CA file
//! or else the system's roots, PEM certificates, and a verifier that skips
//! the chain but still checks the handshake's signatures.
//!
//! [`client_config`] puts them together from the files a user names
//! (`--cacert`, `--cert`, `--key`, `--insecure-skip-tls-verify`); a member
//! builds its peer configuration itself (its certificate reloads) from the
//! same pieces.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::Error;

/// ALPN's name for HTTP/2, which gRPC needs the server to pick.
pub const ALPN_H2: &[u8] = b"h2";

/// The files a client's TLS comes from.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// The CA bundle that server certificates must chain to; without it,
    /// the system's roots.
    pub ca: Option<PathBuf>,
    /// This client's certificate chain (needs `key`).
    pub cert: Option<PathBuf>,
    /// The private key of `cert`.
    pub key: Option<PathBuf>,
    /// Accept any server certificate chain ([`SkipChain`]); `ca` is then
    /// not read.
    pub skip_verify: bool,
}

/// A client configuration from `files`, with the ring provider, rustls's
/// default protocol versions and ALPN h2. The checks run in a fixed order
/// (roots, then the certificate, then its key), so a tool reports the same
/// failure for the same flags every time.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(Error::Versions)?;
    let builder = if files.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(SkipChain::new(provider))
    } else {
        builder.with_root_certificates(roots(files.ca.as_deref())?)
    };
    let mut config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|source| Error::Key {
                path: key.clone(),
                source,
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(Error::ClientCert)?
        }
        (Some(_), None) | (None, Some(_)) => return Err(Error::HalfKeyPair),
        (None, None) => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// Why certificates could not be read; each tool words it its own way.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file could not be opened or parsed as PEM.
    #[error("cannot read certificates from {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    /// The file holds no certificate.
    #[error("no certificate found in {}", path.display())]
    Empty { path: PathBuf },
    /// A certificate of a CA file is not one rustls can trust.
    #[error("cannot use a CA certificate of {}: {source}", path.display())]
    Untrusted {
        path: PathBuf,
        source: rustls::Error,
    },
}

/// The certificates of a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| CertError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(CertError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The roots a client trusts: every certificate of `ca`, or without one the
/// system's CA bundle (Go uses the system roots then).
pub fn roots(ca: Option<&Path>) -> Result<RootCertStore, CertError> {
    let Some(ca) = ca else {
        return Ok(system_roots());
    };
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).map_err(|source| CertError::Untrusted {
            path: ca.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

/// The system's CA bundle (empty if none of the usual places has one).
pub fn system_roots() -> RootCertStore {
    const BUNDLES: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ];
    let mut roots = RootCertStore::empty();
    if let Some(certs) = BUNDLES
        .iter()
        .map(Path::new)
        .filter(|p| p.exists())
        .find_map(|p| read_certs(p).ok())
    {
        roots.add_parsable_certificates(certs);
    }
    roots
}

/// Accepts any server certificate chain, as Go's `InsecureSkipVerify` does
/// (`etcdctl --insecure-skip-tls-verify`, a member dialing auto-TLS peers),
/// but still checks the handshake's signatures, so the session is bound to
/// the key of the certificate presented.
#[derive(Debug)]
pub struct SkipChain(Arc<CryptoProvider>);

impl SkipChain {
    /// The verifier, checking signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Arc<SkipChain> {
        Arc::new(SkipChain(provider))
    }
}

impl ServerCertVerifier for SkipChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_file_is_refused_with_its_path() {
        let dir = std::env::temp_dir().join(format!("etcd-rs-client-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        match read_certs(&empty) {
            Err(CertError::Empty { path }) => assert_eq!(path, empty),
            other => panic!("expected Empty, got {other:?}"),
        }
        let missing = dir.join("missing.pem");
        match roots(Some(&missing)) {
            Err(CertError::Read { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected Read, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_config_refuses_a_missing_file_and_half_a_key_pair() {
        let dir =
            std::env::temp_dir().join(format!("etcd-rs-client-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("missing-ca.pem");
        let files = TlsFiles {
            ca: Some(missing.clone()),
            ..TlsFiles::default()
        };
        match client_config(&files) {
            Err(Error::Cert(CertError::Read { path, .. })) => assert_eq!(path, missing),
            other => panic!("expected a CA read error, got {other:?}"),
        }
        // Skipping verification does not read the CA at all.
        let skip = TlsFiles {
            skip_verify: true,
            ..files
        };
        let config = client_config(&skip).expect("a config that skips the chain");
        assert_eq!(config.alpn_protocols, vec![ALPN_H2.to_vec()]);
        let missing_cert = dir.join("missing-cert.pem");
        let half = TlsFiles {
            cert: Some(missing_cert.clone()),
            ..skip.clone()
        };
        assert!(matches!(client_config(&half), Err(Error::HalfKeyPair)));
        let whole = TlsFiles {
            key: Some(dir.join("missing-key.pem")),
            ..half
        };
        match client_config(&whole) {
            Err(Error::Cert(CertError::Read { path, .. })) => assert_eq!(path, missing_cert),
            other => panic!("expected a certificate read error, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
