//! TLS for the client listener, with rustls (ring provider): etcd's
//! `--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`,
//! `--client-crl-file` and `--auto-tls`.
//! ALPN offers h2 (gRPC) and http/1.1 (health, version), as etcd does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
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

/// `--auto-tls`: a self-signed certificate for the advertised client hosts,
/// written to `<data-dir>/fixtures/client` as etcd does (and reused if there).
fn auto_tls_files(data_dir: &Path, advertise_urls: &[String]) -> Result<(PathBuf, PathBuf)> {
    let dir = data_dir.join("fixtures").join("client");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let mut hosts: Vec<String> = advertise_urls
        .iter()
        .filter_map(|u| crate::config::parse_url(u).ok().map(|u| u.host))
        .collect();
    if hosts.is_empty() {
        hosts.push("localhost".into());
    }
    let key_pair = rcgen::KeyPair::generate().context("generate the auto-TLS key")?;
    let mut params =
        rcgen::CertificateParams::new(hosts).context("auto-TLS certificate parameters")?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "etcd");
    let certificate = params
        .self_signed(&key_pair)
        .context("self-sign the auto-TLS certificate")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(&cert, certificate.pem())
        .with_context(|| format!("write {}", cert.display()))?;
    std::fs::write(&key, key_pair.serialize_pem())
        .with_context(|| format!("write {}", key.display()))?;
    tracing::warn!(
        cert_file = %cert.display(),
        "automatically generated a self-signed certificate (--auto-tls)"
    );
    Ok((cert, key))
}

/// The rustls server configuration for the client listener.
pub fn server_config(
    tls: &ClientTls,
    data_dir: &Path,
    advertise_urls: &[String],
) -> Result<Arc<ServerConfig>> {
    let auto;
    let (cert, key) = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => (cert, key),
        _ if tls.auto_tls => {
            auto = auto_tls_files(data_dir, advertise_urls)?;
            (&auto.0, &auto.1)
        }
        _ => bail!("an https client URL needs --cert-file and --key-file, or --auto-tls"),
    };
    let client_cert_auth = tls.client_cert_auth && !(tls.auto_tls && tls.cert_file.is_none());
    if tls.client_cert_auth && !client_cert_auth {
        tracing::warn!("ignoring --client-cert-auth: --auto-tls cannot verify client certificates");
    }
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if client_cert_auth {
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
        let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
        if let Some(crl) = &tls.crl_file {
            let crls: Vec<_> = CertificateRevocationListDer::pem_file_iter(crl)
                .with_context(|| format!("cannot read the CRL file {}", crl.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("cannot parse the CRL file {}", crl.display()))?;
            verifier = verifier.with_crls(crls);
        }
        let verifier = verifier.build().context("client certificate verifier")?;
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
