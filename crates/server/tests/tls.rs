//! Client TLS (`https://` client URLs, `--cert-file`, `--key-file`,
//! `--trusted-ca-file`, `--client-cert-auth`) driven by the real etcdctl
//! 3.5.1 and 3.4.23. Certificates are generated at test time (rcgen); no
//! private key is checked in.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Etcdctl, Kind};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams,
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

fn start(certs: &Certs, client_cert_auth: bool) -> TlsServer {
    let mut extra = vec![
        format!("--cert-file={}", certs.path("server.pem")),
        format!("--key-file={}", certs.path("server.key")),
        format!("--trusted-ca-file={}", certs.path("ca.pem")),
    ];
    if client_cert_auth {
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
        format!("--trusted-ca-file={}", certs.path("ca.pem")),
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
