//! TLS for the client listener, with rustls (ring provider): etcd's
//! `--cert-file`, `--key-file`, `--trusted-ca-file` and `--client-cert-auth`.
//! ALPN offers h2 (gRPC) and http/1.1 (health, version), as etcd does.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::ClientTls;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot parse certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate found in {}", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    if text.contains("ENCRYPTED") {
        bail!(
            "the key in {} is encrypted: etcd needs an unencrypted key",
            path.display()
        );
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes())
        .with_context(|| format!("no private key found in {}", path.display()))
}

/// The rustls server configuration for the client listener.
pub fn server_config(tls: &ClientTls) -> Result<Arc<ServerConfig>> {
    let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
        bail!("an https client URL needs --cert-file and --key-file");
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if tls.client_cert_auth {
        let ca = tls
            .trusted_ca_file
            .as_ref()
            .context("--client-cert-auth needs --trusted-ca-file")?;
        let mut roots = RootCertStore::empty();
        for c in read_certs(ca)? {
            roots
                .add(c)
                .with_context(|| format!("cannot use a CA certificate of {}", ca.display()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .context("client certificate verifier")?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(read_certs(cert)?, read_key(key)?)
        .context("the certificate and key do not make a TLS identity")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
