//! TLS with rustls (ring provider), as etcd's `TLSInfo` configures it:
//!
//! - the client listener: `--cert-file`, `--key-file`, `--trusted-ca-file`,
//!   `--client-cert-auth`, `--client-crl-file`, `--auto-tls`,
//!   `--client-cert-allowed-hostname`;
//! - the peer listener, and the connections this member opens to its peers:
//!   the same settings with `--peer-` in front, plus `--peer-cert-allowed-cn`;
//! - both: `--cipher-suites`, `--tls-min-version`, `--tls-max-version`.
//!
//! As in etcd, a trusted CA file alone already requires client certificates,
//! certificate files are read again for new connections when they change on
//! disk, and a member dialing peers that use auto-TLS does not verify their
//! (self-signed) certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::status::{bail, Context, Error, Result};
use std::sync::Mutex;
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};

use crate::config::TlsInfo;
use etcd_rs_client::tls::{self, SkipChain};

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
        "TLS1.2" => Ok::<_, Error>(2),
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
    etcd_rs_client::tls::read_certs(path).map_err(Error::from_cause)
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

/// `--auto-tls` / `--peer-auto-tls`: a self-signed certificate for the
/// listen URLs' hosts, written to `<data-dir>/fixtures/<side>` as etcd does
/// (and reused if there).
fn auto_tls_files(dir: &Path, listen_urls: &[String]) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let mut hosts: Vec<String> = listen_urls
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
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(&cert, certificate.pem())
        .with_context(|| format!("write {}", cert.display()))?;
    std::fs::write(&key, key_pair.serialize_pem())
        .with_context(|| format!("write {}", key.display()))?;
    tracing::warn!(
        cert_file = %cert.display(),
        "automatically generated a self-signed certificate"
    );
    Ok((cert, key))
}

/// Which listener a [`TlsInfo`] belongs to: names the flags in messages and
/// the auto-TLS directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Peer,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Peer => "peer",
        }
    }

    fn flag(self, flag: &str) -> String {
        match self {
            Side::Client => format!("--{flag}"),
            Side::Peer => format!("--peer-{flag}"),
        }
    }
}

/// One side's TLS material after auto-TLS has been resolved: what both the
/// listener and (for peers) the dialer are built from.
#[derive(Debug, Clone)]
pub struct Resolved {
    side: Side,
    info: TlsInfo,
    cert: PathBuf,
    key: PathBuf,
    /// The certificate was generated here (auto-TLS): peers dialing with it do
    /// not verify the other side, which has no CA either.
    self_signed: bool,
}

/// Resolves `--[peer-]auto-tls` into certificate files; `None` when the side
/// has neither certificates nor auto-TLS.
pub fn resolve(
    side: Side,
    info: &TlsInfo,
    data_dir: &Path,
    listen_urls: &[String],
) -> Result<Option<Resolved>> {
    match (&info.cert_file, &info.key_file) {
        (Some(cert), Some(key)) => {
            if info.auto_tls {
                tracing::warn!(
                    "ignoring {} since certificates are given",
                    side.flag("auto-tls")
                );
            }
            Ok(Some(Resolved {
                side,
                info: info.clone(),
                cert: cert.clone(),
                key: key.clone(),
                self_signed: false,
            }))
        }
        (Some(_), None) | (None, Some(_)) => bail!(
            "{} and {} must both be present",
            side.flag("cert-file"),
            side.flag("key-file")
        ),
        (None, None) if info.auto_tls => {
            let dir = data_dir.join("fixtures").join(side.name());
            let (cert, key) = auto_tls_files(&dir, listen_urls)?;
            if info.client_cert_auth || info.trusted_ca_file.is_some() {
                tracing::warn!(
                    "ignoring {} and {}: a generated certificate has no CA to verify peers with",
                    side.flag("client-cert-auth"),
                    side.flag("trusted-ca-file")
                );
            }
            // etcd replaces the whole TLS info with the generated one.
            let info = TlsInfo {
                cipher_suites: info.cipher_suites.clone(),
                min_version: info.min_version.clone(),
                max_version: info.max_version.clone(),
                ..TlsInfo::default()
            };
            Ok(Some(Resolved {
                side,
                info,
                cert,
                key,
                self_signed: true,
            }))
        }
        (None, None) => Ok(None),
    }
}

/// The certificate and key, read again when either file changes on disk
/// (etcd reads them on every handshake). A change that does not load (a
/// half-written file, a key that does not match) keeps the previous pair.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    loaded: Mutex<(FileStamp, Arc<CertifiedKey>)>,
}

/// Modification time and length of the certificate and key files.
type FileStamp = [(Option<SystemTime>, u64); 2];

impl ReloadingCert {
    fn new(cert: &Path, key: &Path, provider: Arc<rustls::crypto::CryptoProvider>) -> Result<Self> {
        let stamp = Self::stamp(cert, key);
        let loaded = Self::load(cert, key, &provider)?;
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            loaded: Mutex::new((stamp, loaded)),
        })
    }

    fn stamp(cert: &Path, key: &Path) -> FileStamp {
        let one =
            |p: &Path| std::fs::metadata(p).map_or((None, 0), |m| (m.modified().ok(), m.len()));
        [one(cert), one(key)]
    }

    fn load(
        cert: &Path,
        key: &Path,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<Arc<CertifiedKey>> {
        let certified = CertifiedKey::from_der(read_certs(cert)?, read_key(key)?, provider)
            .with_context(|| {
                format!(
                    "the certificate {} and the key {} do not make a TLS identity",
                    cert.display(),
                    key.display()
                )
            })?;
        Ok(Arc::new(certified))
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let stamp = Self::stamp(&self.cert, &self.key);
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if loaded.0 != stamp {
            match Self::load(&self.cert, &self.key, &self.provider) {
                Ok(fresh) => {
                    tracing::info!(cert_file = %self.cert.display(), "reloaded the TLS certificate");
                    *loaded = (stamp, fresh);
                }
                Err(e) => {
                    tracing::warn!(
                        cert_file = %self.cert.display(),
                        error = %format!("{e:#}"),
                        "cannot reload the TLS certificate; keeping the previous one"
                    );
                    // Do not retry on every handshake until the files change again.
                    loaded.0 = stamp;
                }
            }
        }
        loaded.1.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// What a verified client certificate must also carry: etcd's AllowedCN and
/// AllowedHostname.
#[derive(Debug)]
enum Allowed {
    CommonName(String),
    Hostname(ServerName<'static>),
}

/// A client-certificate verifier that, after the chain checks, also requires
/// the allowed CommonName or host name.
#[derive(Debug)]
struct AllowedVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Allowed,
}

impl Allowed {
    fn admits(&self, end_entity: &CertificateDer<'_>) -> bool {
        match self {
            Allowed::CommonName(cn) => common_name(end_entity).as_deref() == Some(cn.as_str()),
            Allowed::Hostname(name) => ParsedCertificate::try_from(end_entity)
                .and_then(|cert| rustls::client::verify_server_name(&cert, name))
                .is_ok(),
        }
    }
}

/// The subject CommonName of a DER certificate, if it has one.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

impl ClientCertVerifier for AllowedVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.allowed.admits(end_entity) {
            return Ok(verified);
        }
        tracing::warn!(
            common_name = %common_name(end_entity).unwrap_or_default(),
            allowed = ?self.allowed,
            "rejected a certificate: client certificate authentication failed"
        );
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl Resolved {
    fn provider(&self) -> Result<Arc<rustls::crypto::CryptoProvider>> {
        provider_with_suites(&self.info.cipher_suites)
    }

    fn versions(&self) -> Result<Vec<&'static rustls::SupportedProtocolVersion>> {
        protocol_versions(&self.info.min_version, &self.info.max_version)
    }

    fn allowed(&self) -> Result<Option<Allowed>> {
        match (&self.info.allowed_cn, &self.info.allowed_hostname) {
            (Some(cn), Some(host)) => bail!(
                "AllowedCN and AllowedHostname are mutually exclusive (cn={cn:?}, hostname={host:?})"
            ),
            (Some(cn), None) => Ok(Some(Allowed::CommonName(cn.clone()))),
            (None, Some(host)) => {
                let name = ServerName::try_from(host.clone()).with_context(|| {
                    format!(
                        "{} {host:?} is not a host name or IP address",
                        self.side.flag("cert-allowed-hostname")
                    )
                })?;
                Ok(Some(Allowed::Hostname(name)))
            }
            (None, None) => Ok(None),
        }
    }

    /// The rustls configuration for this side's listener. `alpn`: the
    /// protocols offered (the client port speaks h2 and http/1.1).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
        let info = &self.info;
        let builder = ServerConfig::builder_with_provider(self.provider()?)
            .with_protocol_versions(&self.versions()?)
            .context("TLS protocol versions and cipher suites do not fit together")?;
        let verify_clients = info.client_cert_auth || info.trusted_ca_file.is_some();
        let builder = if verify_clients {
            let ca = info.trusted_ca_file.as_ref().with_context(|| {
                format!(
                    "{} needs {}",
                    self.side.flag("client-cert-auth"),
                    self.side.flag("trusted-ca-file")
                )
            })?;
            let mut verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(tls::roots(Some(ca)).map_err(Error::from_cause)?),
                provider(),
            );
            if let Some(crl) = &info.crl_file {
                let crls: Vec<_> = CertificateRevocationListDer::pem_file_iter(crl)
                    .with_context(|| format!("cannot read the CRL file {}", crl.display()))?
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("cannot parse the CRL file {}", crl.display()))?;
                verifier = verifier.with_crls(crls);
            }
            let verifier = verifier.build().context("client certificate verifier")?;
            match self.allowed()? {
                Some(allowed) => builder.with_client_cert_verifier(Arc::new(AllowedVerifier {
                    inner: verifier,
                    allowed,
                })),
                None => builder.with_client_cert_verifier(verifier),
            }
        } else {
            if self.allowed()?.is_some() {
                tracing::warn!(
                    "ignoring the allowed CN/hostname: {} is off",
                    self.side.flag("client-cert-auth")
                );
            }
            builder.with_no_client_auth()
        };
        let certs = ReloadingCert::new(&self.cert, &self.key, provider())?;
        let mut config = builder.with_cert_resolver(Arc::new(certs));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The rustls configuration for dialing peers: this member's certificate
    /// as the client certificate; the peers' certificates checked against the
    /// trusted CA (or not at all with auto-TLS).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let provider = self.provider()?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions()?)
            .context("TLS protocol versions and cipher suites do not fit together")?;
        let builder = if self.self_signed {
            builder
                .dangerous()
                // Dialing a peer whose certificate is self-signed (auto-TLS):
                // the chain is not checked, as etcd does with
                // InsecureSkipVerify, but the handshake signatures still are.
                .with_custom_certificate_verifier(SkipChain::new(provider))
        } else {
            let roots =
                tls::roots(self.info.trusted_ca_file.as_deref()).map_err(Error::from_cause)?;
            builder.with_root_certificates(roots)
        };
        let certs = ReloadingCert::new(&self.cert, &self.key, self::provider())?;
        let mut config = builder.with_client_cert_resolver(Arc::new(certs));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate with `cn` and `hosts`, written as cert/key files.
    fn write_cert(dir: &Path, stem: &str, cn: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).expect("certificate");
        let (c, k) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c, k)
    }

    fn der(path: &Path) -> CertificateDer<'static> {
        read_certs(path).expect("read").remove(0)
    }

    #[test]
    fn common_name_and_allowed_checks() {
        let dir = tempfile::tempdir().expect("dir");
        let (member, _) = write_cert(dir.path(), "m", "member", &["127.0.0.1", "node1.example"]);
        let member = der(&member);
        assert_eq!(common_name(&member).as_deref(), Some("member"));
        assert!(Allowed::CommonName("member".into()).admits(&member));
        assert!(!Allowed::CommonName("other".into()).admits(&member));
        let host = |h: &str| Allowed::Hostname(ServerName::try_from(h.to_string()).expect("name"));
        assert!(host("127.0.0.1").admits(&member));
        assert!(host("node1.example").admits(&member));
        assert!(!host("node2.example").admits(&member));
        assert!(!host("10.0.0.1").admits(&member));
    }

    #[test]
    fn resolve_checks_the_flags_as_etcd_does() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = write_cert(dir.path(), "s", "s", &["localhost"]);
        let half = TlsInfo {
            cert_file: Some(cert.clone()),
            ..TlsInfo::default()
        };
        let e = resolve(Side::Peer, &half, dir.path(), &[]).expect_err("half a pair");
        assert_eq!(
            e.to_string(),
            "--peer-cert-file and --peer-key-file must both be present"
        );
        assert!(resolve(Side::Client, &TlsInfo::default(), dir.path(), &[])
            .expect("empty")
            .is_none());

        let both = TlsInfo {
            cert_file: Some(cert),
            key_file: Some(key),
            trusted_ca_file: None,
            client_cert_auth: true,
            allowed_cn: Some("a".into()),
            allowed_hostname: Some("b".into()),
            ..TlsInfo::default()
        };
        let resolved = resolve(Side::Peer, &both, dir.path(), &[])
            .expect("resolve")
            .expect("some");
        let e = resolved.server_config(&[b"h2"]).expect_err("no CA");
        assert_eq!(
            e.to_string(),
            "--peer-client-cert-auth needs --peer-trusted-ca-file"
        );
        assert!(resolved
            .allowed()
            .expect_err("exclusive")
            .to_string()
            .contains(
                "AllowedCN and AllowedHostname are mutually exclusive (cn=\"a\", hostname=\"b\")"
            ));
    }

    #[test]
    fn auto_tls_generates_once_and_ignores_client_cert_auth() {
        let dir = tempfile::tempdir().expect("dir");
        let info = TlsInfo {
            auto_tls: true,
            client_cert_auth: true,
            ..TlsInfo::default()
        };
        let urls = vec!["https://127.0.0.1:2380".to_string()];
        let first = resolve(Side::Peer, &info, dir.path(), &urls)
            .expect("resolve")
            .expect("some");
        assert!(first.self_signed);
        assert!(!first.info.client_cert_auth);
        assert_eq!(first.cert, dir.path().join("fixtures/peer/cert.pem"));
        let generated = std::fs::read(&first.cert).expect("read");
        let again = resolve(Side::Peer, &info, dir.path(), &urls)
            .expect("resolve")
            .expect("some");
        assert_eq!(std::fs::read(&again.cert).expect("read"), generated);
        // The generated certificate is valid for the listen host.
        let name = ServerName::try_from("127.0.0.1").expect("name");
        assert!(Allowed::Hostname(name).admits(&der(&first.cert)));
        first.server_config(&[b"h2"]).expect("server config");
        first.client_config().expect("client config");
    }

    #[test]
    fn certificate_files_reload_when_they_change() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = write_cert(dir.path(), "live", "first", &["localhost"]);
        let reloading = ReloadingCert::new(&cert, &key, provider()).expect("load");
        assert_eq!(
            common_name(&reloading.current().cert[0]).as_deref(),
            Some("first")
        );

        // A garbage certificate keeps the previous pair.
        std::fs::write(&cert, "not a certificate, and longer than before").expect("write");
        assert_eq!(
            common_name(&reloading.current().cert[0]).as_deref(),
            Some("first")
        );

        let (next_cert, next_key) = write_cert(dir.path(), "next", "second", &["localhost"]);
        std::fs::copy(next_key, &key).expect("copy");
        std::fs::copy(next_cert, &cert).expect("copy");
        assert_eq!(
            common_name(&reloading.current().cert[0]).as_deref(),
            Some("second")
        );
    }
}
