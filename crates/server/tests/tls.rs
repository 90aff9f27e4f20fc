//! Client TLS (`https://` client URLs, `--cert-file`, `--key-file`,
//! `--trusted-ca-file`, `--client-cert-auth`) driven by the real etcdctl
//! 3.5.1 and 3.4.23, and peer TLS (`https://` peer URLs, `--peer-*`) in
//! 3-member clusters. Certificates are generated at test time (rcgen); no
//! private key is checked in.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Etcdctl, Kind};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, RevocationReason,
    RevokedCertParams, SerialNumber,
};

struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    /// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate.
    fn generate() -> Certs {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("server params");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = server.signed_by(&server_key, &issuer).expect("server cert");
        std::fs::write(dir.path().join("server.pem"), server_cert.pem()).expect("write");
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).expect("write");

        // Two client certificates; the CRL revokes the second (serial 2).
        for (name, serial) in [("client", 1u64), ("revoked", 2)] {
            let mut client = CertificateParams::new(Vec::<String>::new()).expect("client params");
            client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            client.serial_number = Some(SerialNumber::from(serial));
            let client_key = KeyPair::generate().expect("client key");
            let client_cert = client.signed_by(&client_key, &issuer).expect("client cert");
            std::fs::write(dir.path().join(format!("{name}.pem")), client_cert.pem())
                .expect("write");
            std::fs::write(
                dir.path().join(format!("{name}.key")),
                client_key.serialize_pem(),
            )
            .expect("write");
        }
        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(2u64),
                revocation_time: date_time_ymd(2020, 1, 1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .expect("sign the CRL");
        std::fs::write(dir.path().join("crl.pem"), crl.pem().expect("CRL PEM")).expect("write");

        // Peer certificates serve and dial, so they carry both usages; the
        // intruder is signed by the same CA but has another CommonName.
        for name in ["member", "intruder"] {
            let mut peer = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
                .expect("peer params");
            peer.distinguished_name.push(DnType::CommonName, name);
            peer.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let peer_key = KeyPair::generate().expect("peer key");
            let peer_cert = peer.signed_by(&peer_key, &issuer).expect("peer cert");
            std::fs::write(dir.path().join(format!("{name}.pem")), peer_cert.pem()).expect("write");
            std::fs::write(
                dir.path().join(format!("{name}.key")),
                peer_key.serialize_pem(),
            )
            .expect("write");
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

struct TlsServer {
    child: Child,
    endpoint: String,
    _data: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server with the server certificate; `client_cert_auth` adds the CA and
/// `--client-cert-auth`.
fn start(certs: &Certs, client_cert_auth: bool) -> TlsServer {
    let mut extra = vec![
        format!("--cert-file={}", certs.path("server.pem")),
        format!("--key-file={}", certs.path("server.key")),
    ];
    if client_cert_auth {
        extra.push(format!("--trusted-ca-file={}", certs.path("ca.pem")));
        extra.push("--client-cert-auth".into());
    }
    start_with(&extra)
}

fn start_with(extra: &[String]) -> TlsServer {
    let data = tempfile::tempdir().expect("data dir");
    let port = free_port();
    let endpoint = format!("https://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let log = std::fs::File::create(data.path().join("etcd.log")).expect("log");
    let mut args = vec![
        format!("--data-dir={}", data.path().join("d").display()),
        format!("--listen-client-urls={endpoint}"),
        format!("--advertise-client-urls={endpoint}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
    ];
    args.extend(extra.iter().cloned());
    let child = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start etcd");
    TlsServer {
        child,
        endpoint,
        _data: data,
    }
}

fn tls_args(certs: &Certs, with_client_cert: bool) -> Vec<String> {
    let mut args = vec![format!("--cacert={}", certs.path("ca.pem"))];
    if with_client_cert {
        args.push(format!("--cert={}", certs.path("client.pem")));
        args.push(format!("--key={}", certs.path("client.key")));
    }
    args
}

fn run(ctl: &Etcdctl, server: &TlsServer, tls: &[String], args: &[&str]) -> common::Output {
    let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
    all.push("--command-timeout=3s");
    all.extend_from_slice(args);
    ctl.run(&server.endpoint, &all, None)
}

fn wait_ready(ctl: &Etcdctl, server: &TlsServer, tls: &[String], log_dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(ctl, server, tls, &["endpoint", "health"]);
        if out.code == 0 {
            return;
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(log_dir.join("etcd.log")).unwrap_or_default();
            panic!("TLS server did not become healthy: {out:?}\nlog:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn client_cert_auth_over_tls_with_both_etcdctl_versions() {
    let certs = Certs::generate();
    let server = start(&certs, true);
    let with_cert = tls_args(&certs, true);
    let v35 = Etcdctl::reference(Kind::Ref35);
    let v34 = Etcdctl::reference(Kind::Ref34);
    wait_ready(&v35, &server, &with_cert, server._data.path());

    let put = run(&v35, &server, &with_cert, &["put", "tls-key", "tls-value"]);
    assert_eq!((put.code, put.stdout.trim()), (0, "OK"), "{put:?}");
    for ctl in [&v35, &v34] {
        let get = run(
            ctl,
            &server,
            &with_cert,
            &["get", "tls-key", "--print-value-only"],
        );
        assert_eq!((get.code, get.stdout.trim()), (0, "tls-value"), "{get:?}");
    }
    let members = run(&v35, &server, &with_cert, &["member", "list"]);
    assert!(members.stdout.contains(&server.endpoint), "{members:?}");

    // A watch over TLS sees a put made over TLS.
    let mut watcher = Command::new(common::reference_tool(Kind::Ref35, "etcdctl"))
        .arg(format!("--endpoints={}", server.endpoint))
        .args(&with_cert)
        .args(["watch", "tls-watched"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcdctl watch");
    std::thread::sleep(Duration::from_millis(700));
    let put = run(&v35, &server, &with_cert, &["put", "tls-watched", "seen"]);
    assert_eq!(put.code, 0, "{put:?}");
    std::thread::sleep(Duration::from_millis(700));
    let _ = watcher.kill();
    let output = watcher.wait_with_output().expect("watch output");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "PUT\ntls-watched\nseen\n",
        "watch over TLS"
    );

    // Without a client certificate the handshake is refused.
    let refused = run(&v35, &server, &tls_args(&certs, false), &["get", "tls-key"]);
    assert_ne!(
        refused.code, 0,
        "a client without a certificate was served: {refused:?}"
    );

    // Plain HTTP/2 to the TLS port fails, and the server keeps serving TLS clients.
    let plain = v35.run(
        &server.endpoint.replace("https://", "http://"),
        &["--command-timeout=2s", "get", "tls-key"],
        None,
    );
    assert_ne!(
        plain.code, 0,
        "plaintext gRPC was served on a TLS port: {plain:?}"
    );
    let again = run(
        &v35,
        &server,
        &with_cert,
        &["get", "tls-key", "--print-value-only"],
    );
    assert_eq!(again.stdout.trim(), "tls-value", "{again:?}");
}

#[test]
fn server_tls_without_client_certificates() {
    let certs = Certs::generate();
    let server = start(&certs, false);
    let ca_only = tls_args(&certs, false);
    let v35 = Etcdctl::reference(Kind::Ref35);
    wait_ready(&v35, &server, &ca_only, server._data.path());
    let put = run(&v35, &server, &ca_only, &["put", "k", "v"]);
    assert_eq!((put.code, put.stdout.trim()), (0, "OK"), "{put:?}");
    // A client that does not trust the CA refuses the server.
    let untrusted = v35.run(
        &server.endpoint,
        &["--command-timeout=2s", "get", "k"],
        None,
    );
    assert_ne!(untrusted.code, 0, "{untrusted:?}");
}

/// As in etcd 3.4 and 3.5, a trusted CA file alone already requires client
/// certificates, even without `--client-cert-auth`.
#[test]
fn trusted_ca_file_alone_requires_client_certificates() {
    let certs = Certs::generate();
    let server = start_with(&[
        format!("--cert-file={}", certs.path("server.pem")),
        format!("--key-file={}", certs.path("server.key")),
        format!("--trusted-ca-file={}", certs.path("ca.pem")),
    ]);
    let v35 = Etcdctl::reference(Kind::Ref35);
    wait_ready(&v35, &server, &tls_args(&certs, true), server._data.path());
    let refused = run(&v35, &server, &tls_args(&certs, false), &["get", "k"]);
    assert_ne!(
        refused.code, 0,
        "served without a client certificate: {refused:?}"
    );
}

#[test]
fn revoked_client_certificate_is_refused() {
    let certs = Certs::generate();
    let server = start_with(&[
        format!("--cert-file={}", certs.path("server.pem")),
        format!("--key-file={}", certs.path("server.key")),
        format!("--trusted-ca-file={}", certs.path("ca.pem")),
        "--client-cert-auth".into(),
        format!("--client-crl-file={}", certs.path("crl.pem")),
    ]);
    let good = tls_args(&certs, true);
    let v35 = Etcdctl::reference(Kind::Ref35);
    wait_ready(&v35, &server, &good, server._data.path());
    let ok = run(&v35, &server, &good, &["put", "k", "v"]);
    assert_eq!((ok.code, ok.stdout.trim()), (0, "OK"), "{ok:?}");
    let revoked = vec![
        format!("--cacert={}", certs.path("ca.pem")),
        format!("--cert={}", certs.path("revoked.pem")),
        format!("--key={}", certs.path("revoked.key")),
    ];
    let refused = run(&v35, &server, &revoked, &["get", "k"]);
    assert_ne!(
        refused.code, 0,
        "a revoked certificate was accepted: {refused:?}"
    );
}

#[test]
fn auto_tls_serves_with_a_generated_certificate() {
    let server = start_with(&["--auto-tls".into()]);
    let skip = vec![
        "--insecure-transport=false".to_string(),
        "--insecure-skip-tls-verify".to_string(),
    ];
    let v35 = Etcdctl::reference(Kind::Ref35);
    wait_ready(&v35, &server, &skip, server._data.path());
    let put = run(&v35, &server, &skip, &["put", "auto", "tls"]);
    assert_eq!((put.code, put.stdout.trim()), (0, "OK"), "{put:?}");
    let cert = server._data.path().join("d/fixtures/client/cert.pem");
    assert!(
        cert.exists(),
        "no generated certificate at {}",
        cert.display()
    );
}

/// A TLS 1.2 handshake with one cipher suite (OpenSSL name), as `openssl s_client`.
fn handshake(port: &str, ca: &str, tls13: bool, cipher: Option<&str>) -> bool {
    let mut args = vec!["s_client", "-connect", port, "-CAfile", ca, "-brief"];
    args.push(if tls13 { "-tls1_3" } else { "-tls1_2" });
    if let Some(c) = cipher {
        args.extend(["-cipher", c]);
    }
    let out = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    out.status.success() && String::from_utf8_lossy(&out.stderr).contains("CONNECTION ESTABLISHED")
}

#[test]
fn cipher_suites_and_tls_versions_are_enforced() {
    let certs = Certs::generate();
    let base = vec![
        format!("--cert-file={}", certs.path("server.pem")),
        format!("--key-file={}", certs.path("server.key")),
    ];
    let v35 = Etcdctl::reference(Kind::Ref35);
    let ca = certs.path("ca.pem");

    // Only one TLS 1.2 suite allowed (the test certificates are ECDSA).
    let mut args = base.clone();
    args.push("--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into());
    let server = start_with(&args);
    wait_ready(&v35, &server, &tls_args(&certs, false), server._data.path());
    let port = server.endpoint.trim_start_matches("https://").to_string();
    assert!(
        handshake(&port, &ca, false, Some("ECDHE-ECDSA-AES128-GCM-SHA256")),
        "the allowed suite was refused"
    );
    assert!(
        !handshake(&port, &ca, false, Some("ECDHE-ECDSA-AES256-GCM-SHA384")),
        "a suite outside --cipher-suites was accepted"
    );
    // The refusal names its reason in the server's log. The server logs it after
    // openssl has already seen the alert, so the line may land a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(server._data.path().join("etcd.log")).unwrap_or_default();
        if log
            .lines()
            .any(|l| l.contains("rejected a TLS handshake") && l.contains("NoCipherSuitesInCommon"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no clear refusal in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(server);

    // TLS 1.3 only (etcdctl 3.5.1 stops at TLS 1.2, so openssl checks readiness).
    let mut args = base.clone();
    args.push("--tls-min-version=TLS1.3".into());
    let server = start_with(&args);
    let port = server.endpoint.trim_start_matches("https://").to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !handshake(&port, &ca, true, None) {
        assert!(Instant::now() < deadline, "TLS 1.3 was refused");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !handshake(&port, &ca, false, None),
        "TLS 1.2 was accepted with --tls-min-version=TLS1.3"
    );
    drop(server);

    // An unsupported version stops start-up with a clear line.
    let out = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args([
            "--tls-min-version=TLS1.0",
            "--listen-client-urls=https://127.0.0.1:1",
        ])
        .args(&base)
        .output()
        .expect("run etcd");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-min-version TLS1.0 is not supported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--client-cert-allowed-hostname`: a client certificate must also be valid
/// for the host name; one from the same CA without it is refused.
#[test]
fn client_cert_allowed_hostname_is_enforced() {
    let certs = Certs::generate();
    let server = start_with(&[
        format!("--cert-file={}", certs.path("server.pem")),
        format!("--key-file={}", certs.path("server.key")),
        format!("--trusted-ca-file={}", certs.path("ca.pem")),
        "--client-cert-auth".into(),
        "--client-cert-allowed-hostname=127.0.0.1".into(),
    ]);
    // The "member" certificate names 127.0.0.1; the "client" one names no host.
    let named = vec![
        format!("--cacert={}", certs.path("ca.pem")),
        format!("--cert={}", certs.path("member.pem")),
        format!("--key={}", certs.path("member.key")),
    ];
    let v35 = Etcdctl::reference(Kind::Ref35);
    wait_ready(&v35, &server, &named, server._data.path());
    let ok = run(&v35, &server, &named, &["put", "k", "v"]);
    assert_eq!((ok.code, ok.stdout.trim()), (0, "OK"), "{ok:?}");
    let refused = run(&v35, &server, &tls_args(&certs, true), &["get", "k"]);
    assert_ne!(
        refused.code, 0,
        "a certificate without the host was accepted: {refused:?}"
    );
}

/// The subject of the certificate the server presents to a new connection.
fn presented_subject(port: &str, ca: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", port, "-CAfile", ca, "-brief"])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.lines()
        .find(|l| l.starts_with("Peer certificate:"))
        .unwrap_or_default()
        .to_string()
}

/// Certificate files replaced on disk are used for new connections, without a
/// restart, as etcd reads them for each handshake.
#[test]
fn replaced_certificate_files_are_picked_up() {
    let certs = Certs::generate();
    let live = tempfile::tempdir().expect("dir");
    let (cert, key) = (live.path().join("cert.pem"), live.path().join("key.pem"));
    std::fs::copy(certs.path("server.pem"), &cert).expect("copy");
    std::fs::copy(certs.path("server.key"), &key).expect("copy");
    let server = start_with(&[
        format!("--cert-file={}", cert.display()),
        format!("--key-file={}", key.display()),
    ]);
    let v35 = Etcdctl::reference(Kind::Ref35);
    wait_ready(&v35, &server, &tls_args(&certs, false), server._data.path());
    let port = server.endpoint.trim_start_matches("https://").to_string();
    let ca = certs.path("ca.pem");
    let before = presented_subject(&port, &ca);
    assert!(!before.contains("member"), "{before}");
    // Key first, then certificate: a handshake in between keeps the old pair.
    std::fs::copy(certs.path("member.key"), &key).expect("copy");
    std::fs::copy(certs.path("member.pem"), &cert).expect("copy");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = presented_subject(&port, &ca);
        if now.contains("CN = member") || now.contains("CN=member") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up: {now}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let put = run(&v35, &server, &tls_args(&certs, false), &["put", "k", "v"]);
    assert_eq!((put.code, put.stdout.trim()), (0, "OK"), "{put:?}");
}

/// Three members on loopback with `https://` peer URLs and plain client URLs;
/// `member_args(i)` adds each member's own flags (certificates).
struct TlsCluster {
    children: Vec<Child>,
    client_urls: Vec<String>,
    peer_urls: Vec<String>,
    dir: tempfile::TempDir,
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl TlsCluster {
    fn start(member_args: impl Fn(usize) -> Vec<String>) -> TlsCluster {
        let dir = tempfile::tempdir().expect("cluster dir");
        let client_urls: Vec<String> = (0..3)
            .map(|_| format!("http://127.0.0.1:{}", free_port()))
            .collect();
        let peer_urls: Vec<String> = (0..3)
            .map(|_| format!("https://127.0.0.1:{}", free_port()))
            .collect();
        let initial = (0..3)
            .map(|i| format!("m{i}={}", peer_urls[i]))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("tls-{}-{}", std::process::id(), free_port());
        let children = (0..3)
            .map(|i| {
                let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).expect("log");
                let mut args = vec![
                    format!("--name=m{i}"),
                    format!(
                        "--data-dir={}",
                        dir.path().join(format!("m{i}.etcd")).display()
                    ),
                    format!("--listen-client-urls={}", client_urls[i]),
                    format!("--advertise-client-urls={}", client_urls[i]),
                    format!("--listen-peer-urls={}", peer_urls[i]),
                    format!("--initial-advertise-peer-urls={}", peer_urls[i]),
                    format!("--initial-cluster={initial}"),
                    format!("--initial-cluster-token={token}"),
                    "--heartbeat-interval=50".into(),
                    "--election-timeout=500".into(),
                ];
                args.extend(member_args(i));
                Command::new(env!("CARGO_BIN_EXE_etcd"))
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::from(log))
                    .spawn()
                    .expect("start etcd")
            })
            .collect();
        TlsCluster {
            children,
            client_urls,
            peer_urls,
            dir,
        }
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("m{i}.log"))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        (0..3)
            .map(|i| format!("--- m{i}\n{}", self.log(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn healthy(&self, i: usize) -> bool {
        let port: u16 = self.client_urls[i]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("client port");
        common::http_get(port, "/health").is_some_and(|body| body.contains("\"true\""))
    }

    /// Waits (bounded) until each of `members` reports itself healthy.
    fn wait_healthy(&self, members: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !members.iter().all(|&i| self.healthy(i)) {
            assert!(
                Instant::now() < deadline,
                "members {members:?} did not become healthy\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Members with CA-signed peer certificates, verifying each other's
/// certificates and CommonName: writes replicate, and the real etcdctl sees
/// the members' https peer URLs.
#[test]
fn three_members_with_peer_tls_and_peer_client_cert_auth() {
    let certs = Certs::generate();
    let cluster = TlsCluster::start(|_| {
        vec![
            format!("--peer-cert-file={}", certs.path("member.pem")),
            format!("--peer-key-file={}", certs.path("member.key")),
            format!("--peer-trusted-ca-file={}", certs.path("ca.pem")),
            "--peer-client-cert-auth".into(),
            "--peer-cert-allowed-cn=member".into(),
        ]
    });
    cluster.wait_healthy(&[0, 1, 2]);
    let v35 = Etcdctl::reference(Kind::Ref35);
    let put = v35.run(&cluster.client_urls[0], &["put", "over", "peer-tls"], None);
    assert_eq!((put.code, put.stdout.trim()), (0, "OK"), "{put:?}");
    for i in [1, 2] {
        let get = v35.run(
            &cluster.client_urls[i],
            &["get", "over", "--print-value-only"],
            None,
        );
        assert_eq!((get.code, get.stdout.trim()), (0, "peer-tls"), "{get:?}");
    }
    let members = v35.run(&cluster.client_urls[2], &["member", "list"], None);
    for url in &cluster.peer_urls {
        assert!(members.stdout.contains(url), "{url} missing: {members:?}");
    }
}

/// A member whose peer certificate has the wrong CommonName is refused by the
/// others (`--peer-cert-allowed-cn`); the two good members keep a quorum.
#[test]
fn peer_with_the_wrong_common_name_is_refused() {
    let certs = Certs::generate();
    let cluster = TlsCluster::start(|i| {
        let name = if i == 2 { "intruder" } else { "member" };
        vec![
            format!("--peer-cert-file={}", certs.path(&format!("{name}.pem"))),
            format!("--peer-key-file={}", certs.path(&format!("{name}.key"))),
            format!("--peer-trusted-ca-file={}", certs.path("ca.pem")),
            "--peer-client-cert-auth".into(),
            "--peer-cert-allowed-cn=member".into(),
        ]
    });
    cluster.wait_healthy(&[0, 1]);
    let v35 = Etcdctl::reference(Kind::Ref35);
    let put = v35.run(&cluster.client_urls[0], &["put", "k", "v"], None);
    assert_eq!((put.code, put.stdout.trim()), (0, "OK"), "{put:?}");
    // The intruder's own streams are refused, so it never hears a quorum
    // answer and cannot serve a linearizable read.
    let denied = v35.run(
        &cluster.client_urls[2],
        &["--command-timeout=2s", "get", "k"],
        None,
    );
    assert_ne!(denied.code, 0, "the intruder served a read: {denied:?}");
    assert!(!cluster.healthy(2), "the intruder reports itself healthy");
    let refusals = cluster.log(0) + &cluster.log(1);
    assert!(
        refusals.contains("client certificate authentication failed"),
        "no refusal logged\n{}",
        cluster.logs()
    );
}

/// `--peer-auto-tls`: each member generates its own certificate (kept in
/// `<data-dir>/fixtures/peer`) and peers do not verify each other's.
#[test]
fn three_members_with_peer_auto_tls() {
    let cluster = TlsCluster::start(|_| vec!["--peer-auto-tls".into()]);
    cluster.wait_healthy(&[0, 1, 2]);
    let v34 = Etcdctl::reference(Kind::Ref34);
    let put = v34.run(&cluster.client_urls[1], &["put", "auto", "peer"], None);
    assert_eq!((put.code, put.stdout.trim()), (0, "OK"), "{put:?}");
    let get = v34.run(
        &cluster.client_urls[2],
        &["get", "auto", "--print-value-only"],
        None,
    );
    assert_eq!((get.code, get.stdout.trim()), (0, "peer"), "{get:?}");
    for i in 0..3 {
        let cert = cluster
            .dir
            .path()
            .join(format!("m{i}.etcd/fixtures/peer/cert.pem"));
        assert!(
            cert.exists(),
            "no generated certificate at {}",
            cert.display()
        );
    }
}

/// A TLS client on a plain port fails, and the member keeps serving plain
/// clients (the counterpart of plaintext on a TLS port above).
#[test]
fn tls_client_on_a_plain_port_is_refused() {
    let server = common::EtcdProcess::start(Kind::Ours, &[]);
    let v35 = Etcdctl::reference(Kind::Ref35);
    let secure = v35.run(
        &format!("https://{}", server.endpoint()),
        &[
            "--insecure-skip-tls-verify",
            "--insecure-transport=false",
            "--command-timeout=2s",
            "get",
            "k",
        ],
        None,
    );
    assert_ne!(secure.code, 0, "TLS was served on a plain port: {secure:?}");
    let port = server.endpoint();
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &port, "-brief"])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("CONNECTION ESTABLISHED"),
        "a TLS handshake succeeded on a plain port"
    );
    let put = v35.run(&server.endpoint(), &["put", "k", "v"], None);
    assert_eq!((put.code, put.stdout.trim()), (0, "OK"), "{put:?}");
}

/// With `--client-cert-auth` and auth on, a request without a token is the
/// user its client certificate names (CommonName), as etcd's
/// `AuthInfoFromTLS`; a token, when given, wins.
#[test]
fn client_certificate_common_name_is_the_user() {
    let certs = Certs::generate();
    let server = start(&certs, true);
    let ctl = Etcdctl::reference(Kind::Ref35);
    let as_member = vec![
        format!("--cacert={}", certs.path("ca.pem")),
        format!("--cert={}", certs.path("member.pem")),
        format!("--key={}", certs.path("member.key")),
    ];
    wait_ready(&ctl, &server, &as_member, server._data.path());
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "r"],
        &["role", "grant-permission", "r", "readwrite", "k"],
        &["user", "add", "member:pw"],
        &["user", "grant-role", "member", "r"],
        &["auth", "enable"],
    ] {
        let out = run(&ctl, &server, &as_member, args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
    }
    let put = run(&ctl, &server, &as_member, &["put", "k", "v"]);
    assert_eq!((put.code, put.stdout.trim()), (0, "OK"), "{put:?}");
    let denied = run(&ctl, &server, &as_member, &["put", "other", "v"]);
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(
        denied.stderr.contains("etcdserver: permission denied"),
        "{denied:?}"
    );
    // A token wins over the certificate.
    let mut with_root = as_member.clone();
    with_root.push("--user=root:rootpw".into());
    let put = run(&ctl, &server, &with_root, &["put", "other", "v"]);
    assert_eq!((put.code, put.stdout.trim()), (0, "OK"), "{put:?}");
    // A certificate naming no user of the store is refused.
    let stranger = tls_args(&certs, true);
    let get = run(&ctl, &server, &stranger, &["get", "k"]);
    assert_eq!(get.code, 1, "{get:?}");
    assert!(get.stderr.contains("permission denied"), "{get:?}");
}
