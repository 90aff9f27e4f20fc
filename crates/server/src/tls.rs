//! TLS for the client listener, with rustls (ring provider): etcd's
//! `--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`,
//! `--client-crl-file`, `--auto-tls`, `--cipher-suites`, `--tls-min-version`
//! and `--tls-max-version`.
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

/// The provider restricted to `--cipher-suites` (IANA names, as etcd takes
/// them). As in Go, the list constrains TLS 1.2; TLS 1.3's suites stay.
fn provider_with_suites(names: &[String]) -> Result<Arc<rustls::crypto::CryptoProvider>> {
    let mut p = rustls::crypto::ring::default_provider();
    if names.is_empty() {
        return Ok(Arc::new(p));
    }
    let name_of = |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite());
    for n in names {
        if !p.cipher_suites.iter().any(|s| name_of(s) == *n) {
            bail!("unexpected TLS cipher suite {n:?}: not supported by this build");
        }
    }
    p.cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13 || names.contains(&name_of(s)));
    Ok(Arc::new(p))
}

/// `--tls-min-version` / `--tls-max-version` as rustls protocol versions.
fn protocol_versions(
    min: &str,
    max: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>> {
    let rank = |v: &str, flag: &str| match v {
        "TLS1.2" => Ok(2),
        "TLS1.3" => Ok(3),
        "TLS1.0" | "TLS1.1" => {
            bail!("{flag} {v} is not supported: the oldest version this build speaks is TLS1.2")
        }
        other => bail!("unexpected TLS version value {other:?} for {flag}"),
    };
    let lo = if min.is_empty() {
        2
    } else {
        rank(min, "--tls-min-version")?
    };
    let hi = if max.is_empty() {
        3
    } else {
        rank(max, "--tls-max-version")?
    };
    if lo > hi {
        bail!("--tls-min-version {min} is above --tls-max-version {max}");
    }
    let mut versions = Vec::new();
    if lo <= 3 && hi >= 3 {
        versions.push(&rustls::version::TLS13);
    }
    if lo <= 2 {
        versions.push(&rustls::version::TLS12);
    }
    Ok(versions)
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
    let builder = ServerConfig::builder_with_provider(provider_with_suites(&tls.cipher_suites)?)
        .with_protocol_versions(&protocol_versions(&tls.min_version, &tls.max_version)?)
        .context("TLS protocol versions and cipher suites do not fit together")?;
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
